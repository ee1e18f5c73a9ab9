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
//!
//! IPv6 is judged alike, into its own table: the fast path does not translate IPv6, so a
//! direction conntrack translates is written marked, and its packets stay the kernel's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fastpath_common::{
    flow::{
        Arrival, Arrived, FlowKey, FlowValue, ICMP_ECHO_REQUEST, PROTO_DCCP, PROTO_ICMP, PROTO_SCTP,
        PROTO_TCP, PROTO_UDP, PROTO_UDPLITE,
    },
    flow6::{Arrived6, FlowKey6, FlowValue6, ICMPV6_ECHO_REQUEST},
    ipv6::NEXT_ICMPV6,
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
    /// Where IPv6 packets from `src` reach this node, if the fast path may take them there: a
    /// pod of this node on its interface, a node's IPv6 VXLAN for its blocks.
    fn arrival_of6(&self, src: Ipv6Addr) -> Option<Arrived6>;
    /// Whether the fast path has an IPv6 route to `dst`.
    fn routed6(&self, dst: Ipv6Addr) -> bool;
    /// This node's own IPv6 address, if it has one.
    fn node6(&self) -> Option<Ipv6Addr>;
}

/// The flow tables' entries for one conntrack entry (in the table of its family), and whether
/// conntrack must be liberal about its TCP windows (some of its segments will not pass through
/// it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Judged {
    pub directions: Vec<(FlowKey, FlowValue)>,
    pub directions6: Vec<(FlowKey6, FlowValue6)>,
    pub liberal: bool,
}

/// The directions of `entry` the fast path may carry.
pub fn judge(entry: &Entry, places: &impl Places) -> Judged {
    let live = entry.status & IPS_CONFIRMED != 0 && entry.status & IPS_DYING == 0;
    let established = entry.original.protocol != PROTO_TCP || entry.tcp_state == Some(TCP_ESTABLISHED);
    if !live || !established || !is_named(&entry.original) {
        return Judged::default();
    }
    // The reply direction once the kernel has seen a reply.
    let ways = if entry.status & IPS_SEEN_REPLY != 0 { 2 } else { 1 };
    let mut judged = Judged::default();
    for (arrives, other) in
        [(&entry.original, &entry.reply), (&entry.reply, &entry.original)].into_iter().take(ways)
    {
        if entry.original.src.is_ipv6() {
            judged.directions6.extend(direction6(arrives, other, places));
        } else {
            judged.directions.extend(direction(arrives, other, places));
        }
    }
    // Liberal only when the fast path carries some of its segments.
    let carried = !judged.directions.is_empty() || judged.directions6.iter().any(|(_, v)| v.translated == 0);
    judged.liberal = entry.original.protocol == PROTO_TCP && carried;
    judged
}

/// A tuple the flow tables can name: one of the protocols with ports, or an ICMP or ICMPv6 echo
/// (the original direction is the request).
fn is_named(original: &Tuple) -> bool {
    match original.protocol {
        PROTO_TCP | PROTO_UDP | PROTO_UDPLITE | PROTO_SCTP | PROTO_DCCP => true,
        PROTO_ICMP => original.src.is_ipv4() && original.dport == u16::from(ICMP_ECHO_REQUEST),
        NEXT_ICMPV6 => original.src.is_ipv6() && original.dport == u16::from(ICMPV6_ECHO_REQUEST),
        _ => false,
    }
}

/// The ports a direction arriving as `arrives` leaves with: `other`'s reversed. An echo keeps
/// its type on the way; its identifier is what NAT may change.
fn leaving_ports(arrives: &Tuple, other: &Tuple) -> (u16, u16) {
    if matches!(arrives.protocol, PROTO_ICMP | NEXT_ICMPV6) {
        (other.sport, arrives.dport)
    } else {
        (other.dport, other.sport)
    }
}

fn v4(addr: IpAddr) -> Option<Ipv4Addr> {
    match addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

fn v6(addr: IpAddr) -> Option<Ipv6Addr> {
    match addr {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    }
}

/// The entry for packets arriving as `arrives`, leaving as `other` reversed.
fn direction(arrives: &Tuple, other: &Tuple, places: &impl Places) -> Option<(FlowKey, FlowValue)> {
    let key = key_of(arrives)?;
    let to = FlowKey::new(
        v4(other.dst)?.octets(),
        v4(other.src)?.octets(),
        arrives.protocol,
        leaving_ports(arrives, other),
    );
    let arrived = places.arrival_of(v4(arrives.src)?)?;
    let value = FlowValue::approved(&key, &arrived, &to);
    let to_dst = Ipv4Addr::from(to.dst);
    // The host's own traffic is the kernel's; SCTP's checksum (CRC32c) cannot follow NAT.
    if to_dst == places.node() || (value.nat != 0 && arrives.protocol == PROTO_SCTP) {
        return None;
    }
    // Translated out of a pod to where the routes do not go (natOutgoing): the programs follow
    // the kernel's FIB out of the underlay.
    let to_outside = value.nat != 0 && arrived.arrival == Arrival::Pod;
    (places.routed(to_dst) || to_outside).then_some((key, value))
}

/// [`direction`] for IPv6: an untranslated direction to where the fast path routes; a
/// translated one marked, for the programs to count as the kernel's.
fn direction6(arrives: &Tuple, other: &Tuple, places: &impl Places) -> Option<(FlowKey6, FlowValue6)> {
    let key = key6_of(arrives)?;
    let to = FlowKey6::new(
        v6(other.dst)?.octets(),
        v6(other.src)?.octets(),
        arrives.protocol,
        leaving_ports(arrives, other),
    );
    let arrived = places.arrival_of6(v6(arrives.src)?)?;
    let translated = to != key;
    let to_dst = Ipv6Addr::from(to.dst);
    if Some(to_dst) == places.node6() {
        return None;
    }
    (translated || places.routed6(to_dst)).then_some((key, FlowValue6::approved(&arrived, translated)))
}

/// The IPv4 flow table's key for packets carrying `tuple`.
fn key_of(tuple: &Tuple) -> Option<FlowKey> {
    let (src, dst) = (v4(tuple.src)?, v4(tuple.dst)?);
    Some(FlowKey::new(src.octets(), dst.octets(), tuple.protocol, (tuple.sport, tuple.dport)))
}

/// The IPv6 flow table's key for packets carrying `tuple`.
fn key6_of(tuple: &Tuple) -> Option<FlowKey6> {
    let (src, dst) = (v6(tuple.src)?, v6(tuple.dst)?);
    Some(FlowKey6::new(src.octets(), dst.octets(), tuple.protocol, (tuple.sport, tuple.dport)))
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

    fn v6(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    /// Pods 36 (ifindex 5) and 37 (ifindex 6) here, 10.244.166.128/26 in VXLAN via PEER, the
    /// outside behind GATEWAY; their IPv6 twins, the backend's block in IPv6 VXLAN via PEER6.
    struct Node(HashMap<Ipv4Addr, Arrived>, HashMap<Ipv6Addr, Arrived6>);

    fn places() -> Node {
        Node(
            HashMap::from([
                (CLIENT, Arrived::from_pod(5)),
                (LOCAL, Arrived::from_pod(6)),
                (BACKEND, Arrived::from_underlay(Arrival::Vxlan, PEER.octets())),
            ]),
            HashMap::from([
                (v6(CLIENT6), Arrived6::from_pod(5)),
                (v6(LOCAL6), Arrived6::from_pod(6)),
                (v6(BACKEND6), Arrived6::from_underlay(Arrival::Vxlan, v6(PEER6).octets())),
            ]),
        )
    }

    const CLIENT6: &str = "fd00:10:244:28::24";
    const LOCAL6: &str = "fd00:10:244:28::25";
    const BACKEND6: &str = "fd00:10:244:a6::96";
    const SERVICE6: &str = "fd00:10:96::a";
    const NODE6: &str = "fd00:10:101::32";
    const PEER6: &str = "fd00:10:101::33";

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

        fn arrival_of6(&self, src: Ipv6Addr) -> Option<Arrived6> {
            self.1.get(&src).copied()
        }

        fn routed6(&self, dst: Ipv6Addr) -> bool {
            self.1.contains_key(&dst)
        }

        fn node6(&self) -> Option<Ipv6Addr> {
            Some(v6(NODE6))
        }
    }

    fn tuple(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, protocol: u8, ports: (u16, u16)) -> Tuple {
        Tuple { src: src.into(), dst: dst.into(), protocol, sport: ports.0, dport: ports.1 }
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
        assert_eq!(*out_key, key_of(&original).unwrap());
        assert_eq!((out.nat, out.to_dst, out.to_dport), (NAT_DST, BACKEND.octets(), 8080));
        assert_eq!(out.arrived(), Some(Arrived::from_pod(5)));
        assert_eq!(*back_key, key_of(&reply).unwrap());
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
    fn ipv6_directions_go_to_their_own_table_and_translated_ones_are_marked() {
        let original = tuple(v6(CLIENT6), v6(BACKEND6), PROTO_TCP, (40000, 8080));
        let reply = tuple(v6(BACKEND6), v6(CLIENT6), PROTO_TCP, (8080, 40000));
        let judged = judge(&established(original, reply), &places());
        assert!(judged.directions.is_empty());
        assert!(judged.liberal, "the fast path carries its segments");
        let [(out_key, out), (back_key, back)] = judged.directions6.as_slice() else { panic!("{judged:?}") };
        assert_eq!(*out_key, key6_of(&original).unwrap());
        assert_eq!((out.arrived(), out.translated), (Some(Arrived6::from_pod(5)), 0));
        assert_eq!(*back_key, key6_of(&reply).unwrap());
        assert_eq!(back.arrived(), Some(Arrived6::from_underlay(Arrival::Vxlan, v6(PEER6).octets())));
        // An IPv6 service: both directions written, marked translated; conntrack sees every segment.
        let to_service = tuple(v6(CLIENT6), v6(SERVICE6), PROTO_TCP, (40001, 80));
        let answered = tuple(v6(BACKEND6), v6(CLIENT6), PROTO_TCP, (8080, 40001));
        let judged = judge(&established(to_service, answered), &places());
        assert_eq!(judged.directions6.len(), 2);
        assert!(judged.directions6.iter().all(|(_, v)| v.translated == 1));
        assert!(!judged.liberal, "the kernel sees every segment of it");
    }

    #[test]
    fn ipv6_echo_is_named_by_identifier_and_type_and_the_hosts_own_is_the_kernels() {
        let request = tuple(v6(CLIENT6), v6(LOCAL6), NEXT_ICMPV6, (0x1234, 128));
        let reply = tuple(v6(LOCAL6), v6(CLIENT6), NEXT_ICMPV6, (0x1234, 129));
        let entry =
            Entry { original: request, reply, status: IPS_CONFIRMED | IPS_SEEN_REPLY, tcp_state: None };
        let keys: Vec<FlowKey6> = judge(&entry, &places()).directions6.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                FlowKey6::new(v6(CLIENT6).octets(), v6(LOCAL6).octets(), NEXT_ICMPV6, (0x1234, 128)),
                FlowKey6::new(v6(LOCAL6).octets(), v6(CLIENT6).octets(), NEXT_ICMPV6, (0x1234, 129))
            ]
        );
        // An ICMPv4 number in an IPv6 entry, or the other way round, names nothing.
        let mixed = Entry { original: tuple(v6(CLIENT6), v6(LOCAL6), PROTO_ICMP, (1, 8)), ..entry };
        assert_eq!(judge(&mixed, &places()), Judged::default());
        let to_host = tuple(v6(CLIENT6), v6(NODE6), PROTO_TCP, (40000, 10250));
        let back = tuple(v6(NODE6), v6(CLIENT6), PROTO_TCP, (10250, 40000));
        assert_eq!(
            judge(&established(to_host, back), &places()).directions6.len(),
            0,
            "to the node, and from it"
        );
        let unrouted = tuple(v6(CLIENT6), v6("2001:db8::7"), PROTO_TCP, (40000, 443));
        let from_it = tuple(v6("2001:db8::7"), v6(CLIENT6), PROTO_TCP, (443, 40000));
        assert_eq!(judge(&established(unrouted, from_it), &places()).directions6.len(), 0);
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
