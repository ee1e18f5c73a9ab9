//! What conntrack's judgement means for the flow table (pure): for each entry, the flow
//! directions the fast path may carry and how. A direction is carried only while conntrack
//! holds the entry confirmed (the kernel forwarded its first packet, which no policy dropped:
//! an entry the FORWARD chain refuses is never confirmed), the reply direction only once the
//! kernel has seen a reply, and a TCP connection once it is established (its handshake stays
//! with the kernel; its close too: a FIN or RST hands the rest to the kernel in the programs, and
//! the directions leave the table when conntrack destroys the entry, the daemon hearing of no
//! TCP state but ESTABLISHED, `ctnetlink::event_filter`). Each direction is keyed by the tuple its packets arrive
//! with, bound to where they arrive (a pod's interface, a node's tunnel, a node or gateway on the
//! underlay), and leaves with the other direction's tuple reversed: conntrack's NAT.

use std::net::Ipv4Addr;

use fastpath_common::flow::{
    Arrived, FlowKey, FlowValue, ICMP_ECHO_REQUEST, PROTO_DCCP, PROTO_ICMP, PROTO_SCTP, PROTO_TCP, PROTO_UDP,
    PROTO_UDPLITE,
};

use crate::daemon::ctnetlink::{Entry, Tuple, IPS_CONFIRMED, IPS_DYING, IPS_SEEN_REPLY, TCP_ESTABLISHED};

/// What the judge needs to know about addresses, from the route table the programs follow.
pub trait Places {
    /// Where packets from `src` reach this node, if the fast path may take them there: a pod of
    /// this node on its interface, a node's tunnel or plain routing for its blocks, the gateway
    /// for the outside world.
    fn arrival_of(&self, src: Ipv4Addr) -> Option<Arrived>;
    /// Whether the fast path has a route to `dst` (a pod here, a block of another node).
    fn routed(&self, dst: Ipv4Addr) -> bool;
    /// This node's own address.
    fn node(&self) -> Ipv4Addr;
}

/// The flow table's entries for one conntrack entry, and whether conntrack must be liberal about
/// its TCP windows (some of its segments will not pass through it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Judged {
    pub directions: Vec<(FlowKey, FlowValue)>,
    pub liberal: bool,
}

/// The directions of `entry` the fast path may carry.
pub fn judge(entry: &Entry, places: &impl Places) -> Judged {
    let live = entry.status & IPS_CONFIRMED != 0 && entry.status & IPS_DYING == 0;
    let established = entry.original.protocol != PROTO_TCP || entry.tcp_state == Some(TCP_ESTABLISHED);
    if !live || !established || !is_named(&entry.original) {
        return Judged::default();
    }
    let mut directions = Vec::with_capacity(2);
    directions.extend(direction(&entry.original, &entry.reply, places));
    if entry.status & IPS_SEEN_REPLY != 0 {
        directions.extend(direction(&entry.reply, &entry.original, places));
    }
    let liberal = entry.original.protocol == PROTO_TCP && !directions.is_empty();
    Judged { directions, liberal }
}

/// A tuple the flow table can name: one of the protocols with ports, or an ICMP echo (the
/// original direction is the request).
fn is_named(original: &Tuple) -> bool {
    match original.protocol {
        PROTO_TCP | PROTO_UDP | PROTO_UDPLITE | PROTO_SCTP | PROTO_DCCP => true,
        PROTO_ICMP => original.dport == u16::from(ICMP_ECHO_REQUEST),
        _ => false,
    }
}

/// The entry for packets arriving as `arrives`, leaving as `other` reversed.
fn direction(arrives: &Tuple, other: &Tuple, places: &impl Places) -> Option<(FlowKey, FlowValue)> {
    let key = key_of(arrives);
    // An ICMP echo keeps its type on the way; its identifier is what NAT may change.
    let ports = if arrives.protocol == PROTO_ICMP {
        (other.sport, arrives.dport)
    } else {
        (other.dport, other.sport)
    };
    let to = FlowKey::new(other.dst.octets(), other.src.octets(), arrives.protocol, ports);
    let arrived = places.arrival_of(arrives.src)?;
    let value = FlowValue::approved(&key, &arrived, &to);
    let to_dst = Ipv4Addr::from(to.dst);
    // The host's own traffic is the kernel's; SCTP's checksum (CRC32c) cannot follow NAT.
    if to_dst == places.node() || (value.nat != 0 && arrives.protocol == PROTO_SCTP) {
        return None;
    }
    // Translated out of a pod to where the routes do not go (natOutgoing): the programs follow
    // the kernel's FIB out of the underlay.
    let to_outside = value.nat != 0 && arrived.arrival == fastpath_common::flow::Arrival::Pod;
    (places.routed(to_dst) || to_outside).then_some((key, value))
}

/// The flow table's key for packets carrying `tuple`.
pub fn key_of(tuple: &Tuple) -> FlowKey {
    FlowKey::new(tuple.src.octets(), tuple.dst.octets(), tuple.protocol, (tuple.sport, tuple.dport))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use fastpath_common::flow::{Arrival, NAT_DST, NAT_SRC};

    use super::*;
    use crate::daemon::ctnetlink::IPS_ASSURED;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 40, 36);
    const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 244, 40, 37);
    const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 244, 166, 150);
    const SERVICE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
    const NODE: Ipv4Addr = Ipv4Addr::new(10, 101, 14, 50);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 101, 14, 51);
    const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 101, 14, 62);
    const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

    /// Pods 36 (ifindex 5) and 37 (ifindex 6) here, 10.244.166.128/26 in VXLAN via PEER, the
    /// outside behind GATEWAY.
    struct Node(HashMap<Ipv4Addr, Arrived>);

    fn places() -> Node {
        Node(HashMap::from([
            (CLIENT, Arrived::from_pod(5)),
            (LOCAL, Arrived::from_pod(6)),
            (BACKEND, Arrived::from_underlay(Arrival::Vxlan, PEER.octets())),
        ]))
    }

    impl Places for Node {
        fn arrival_of(&self, src: Ipv4Addr) -> Option<Arrived> {
            self.0.get(&src).copied().or_else(|| {
                (src == OUTSIDE).then_some(Arrived::from_underlay(Arrival::Plain, GATEWAY.octets()))
            })
        }

        fn routed(&self, dst: Ipv4Addr) -> bool {
            self.0.contains_key(&dst)
        }

        fn node(&self) -> Ipv4Addr {
            NODE
        }
    }

    fn tuple(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, ports: (u16, u16)) -> Tuple {
        Tuple { src, dst, protocol, sport: ports.0, dport: ports.1 }
    }

    fn established(original: Tuple, reply: Tuple) -> Entry {
        Entry {
            original,
            reply,
            status: IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED,
            tcp_state: Some(TCP_ESTABLISHED),
        }
    }

    #[test]
    fn a_service_connection_is_translated_both_ways() {
        let original = tuple(CLIENT, SERVICE, PROTO_TCP, (40000, 80));
        let reply = tuple(BACKEND, CLIENT, PROTO_TCP, (8080, 40000));
        let judged = judge(&established(original, reply), &places());
        assert!(judged.liberal);
        let [(out_key, out), (back_key, back)] = judged.directions.as_slice() else { panic!("{judged:?}") };
        assert_eq!(*out_key, key_of(&original));
        assert_eq!((out.nat, out.to_dst, out.to_dport), (NAT_DST, BACKEND.octets(), 8080));
        assert_eq!(out.arrived(), Some(Arrived::from_pod(5)));
        assert_eq!(*back_key, key_of(&reply));
        assert_eq!((back.nat, back.to_src, back.to_sport), (NAT_SRC, SERVICE.octets(), 80));
        assert_eq!(back.arrived(), Some(Arrived::from_underlay(Arrival::Vxlan, PEER.octets())));
    }

    #[test]
    fn masquerade_to_the_outside_is_carried_and_its_replies_come_through_the_gateway() {
        let original = tuple(CLIENT, OUTSIDE, PROTO_TCP, (40000, 443));
        let reply = tuple(OUTSIDE, NODE, PROTO_TCP, (443, 61000));
        let judged = judge(&established(original, reply), &places());
        let [(_, out), (back_key, back)] = judged.directions.as_slice() else { panic!("{judged:?}") };
        assert_eq!((out.nat, out.to_src, out.to_sport), (NAT_SRC, NODE.octets(), 61000));
        assert_eq!(back_key.dst, NODE.octets(), "the reply arrives for the node");
        assert_eq!((back.nat, back.to_dst, back.to_dport), (NAT_DST, CLIENT.octets(), 40000));
        assert_eq!(back.arrived(), Some(Arrived::from_underlay(Arrival::Plain, GATEWAY.octets())));
    }

    #[test]
    fn only_what_the_kernel_forwarded_is_carried() {
        let original = tuple(CLIENT, LOCAL, PROTO_UDP, (5000, 53));
        let reply = tuple(LOCAL, CLIENT, PROTO_UDP, (53, 5000));
        let confirmed = Entry { original, reply, status: IPS_CONFIRMED, tcp_state: None };
        assert_eq!(judge(&confirmed, &places()).directions.len(), 1, "no reply seen yet: one way");
        let answered = Entry { status: IPS_CONFIRMED | IPS_SEEN_REPLY, ..confirmed };
        assert_eq!(judge(&answered, &places()).directions.len(), 2);
        assert!(!judge(&answered, &places()).liberal, "UDP has no window");
        let unconfirmed = Entry { status: 0, ..confirmed };
        assert_eq!(judge(&unconfirmed, &places()), Judged::default());
        let dying = Entry { status: IPS_CONFIRMED | IPS_DYING, ..confirmed };
        assert_eq!(judge(&dying, &places()), Judged::default());
        let tcp = |state| Entry {
            tcp_state: Some(state),
            ..established(
                tuple(CLIENT, LOCAL, PROTO_TCP, (40000, 80)),
                tuple(LOCAL, CLIENT, PROTO_TCP, (80, 40000)),
            )
        };
        assert_eq!(judge(&tcp(2), &places()), Judged::default(), "SYN_RECV: the handshake is the kernel's");
        assert_eq!(judge(&tcp(4), &places()), Judged::default(), "FIN_WAIT: the close is the kernel's");
    }

    #[test]
    fn icmp_echo_is_named_by_identifier_and_type_and_other_protocols_never() {
        let request = tuple(CLIENT, LOCAL, PROTO_ICMP, (0x1234, 8));
        let reply = tuple(LOCAL, CLIENT, PROTO_ICMP, (0x1234, 0));
        let judged = judge(
            &Entry { original: request, reply, status: IPS_CONFIRMED | IPS_SEEN_REPLY, tcp_state: None },
            &places(),
        );
        let keys: Vec<FlowKey> = judged.directions.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            vec![
                FlowKey::new(CLIENT.octets(), LOCAL.octets(), 1, (0x1234, 8)),
                FlowKey::new(LOCAL.octets(), CLIENT.octets(), 1, (0x1234, 0))
            ]
        );
        assert!(judged.directions.iter().all(|(_, v)| v.nat == 0));
        let gre = tuple(CLIENT, LOCAL, 47, (0, 0));
        assert_eq!(
            judge(&Entry { original: gre, reply: gre, status: IPS_CONFIRMED, tcp_state: None }, &places()),
            Judged::default()
        );
    }

    #[test]
    fn sctp_is_named_by_its_ports_and_never_translated() {
        let original = tuple(CLIENT, LOCAL, PROTO_SCTP, (5000, 1000));
        let reply = tuple(LOCAL, CLIENT, PROTO_SCTP, (1000, 5000));
        let plain = Entry { original, reply, status: IPS_CONFIRMED, tcp_state: None };
        assert_eq!(
            judge(&plain, &places()).directions[0].0,
            FlowKey::new(CLIENT.octets(), LOCAL.octets(), PROTO_SCTP, (5000, 1000))
        );
        let nated = Entry { reply: tuple(LOCAL, CLIENT, PROTO_SCTP, (1001, 5000)), ..plain };
        assert_eq!(judge(&nated, &places()).directions, vec![]);
    }

    #[test]
    fn the_hosts_own_traffic_and_unrouted_destinations_are_the_kernels() {
        let to_host = tuple(CLIENT, NODE, PROTO_TCP, (40000, 10250));
        let back = tuple(NODE, CLIENT, PROTO_TCP, (10250, 40000));
        assert_eq!(
            judge(&established(to_host, back), &places()).directions.len(),
            0,
            "to the node, and from it"
        );
        let outside = tuple(CLIENT, OUTSIDE, PROTO_TCP, (40000, 443));
        let untranslated = tuple(OUTSIDE, CLIENT, PROTO_TCP, (443, 40000));
        let judged = judge(&established(outside, untranslated), &places());
        assert_eq!(
            judged.directions.len(),
            1,
            "without NAT the outside is not routed; its replies to a pod are"
        );
    }
}
