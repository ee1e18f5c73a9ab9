//! `--trust kernel`: the kernel's conntrack is the judge. A flow direction takes the fast path
//! only while conntrack holds a confirmed entry for it that the kernel has forwarded, and the
//! fast path then does what that entry says (its NAT included). The daemon follows conntrack
//! through ctnetlink and writes one entry per direction into the flow table, keyed by the tuple
//! the packets arrive with; the programs only read it. The decisions about an entry are the pure
//! functions here, which the programs, the daemon, the host tests and `fastpath explain` share.

use crate::Reason;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_DCCP: u8 = 33;
pub const PROTO_SCTP: u8 = 132;
pub const PROTO_UDPLITE: u8 = 136;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;

/// What an entry of the flow table says about its flow direction (`FlowValue::state`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowState {
    /// Conntrack holds a confirmed entry the kernel forwarded in this direction: its packets
    /// take the fast path.
    Approved = 1,
    /// TCP FIN, RST or SYN seen: the kernel carries the rest, so conntrack sees the close.
    Closing = 3,
}

impl FlowState {
    pub const fn as_str(self) -> &'static str {
        match self {
            FlowState::Approved => "approved",
            FlowState::Closing => "closing",
        }
    }
}

impl FlowState {
    /// The state a `FlowValue::state` byte holds, if it holds one.
    pub const fn of(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Approved),
            3 => Some(Self::Closing),
            _ => None,
        }
    }
}

impl TryFrom<u8> for FlowState {
    type Error = u8;

    fn try_from(v: u8) -> Result<Self, u8> {
        Self::of(v).ok_or(v)
    }
}

/// How a flow direction's packets reach this node (`FlowValue::arrival`): the one place they
/// may take the fast path from.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// From a pod of this node, on its interface (`FlowValue::ifindex`).
    Pod = 1,
    /// From the underlay, unencapsulated, sent by `FlowValue::peer` (the node whose block holds
    /// the source, or the gateway toward an outside source): its MAC is the frame's source.
    Plain = 2,
    /// In IPIP from node `FlowValue::peer`.
    Ipip = 3,
    /// In VXLAN from node `FlowValue::peer`.
    Vxlan = 4,
}

impl Arrival {
    pub const fn as_str(self) -> &'static str {
        match self {
            Arrival::Pod => "pod",
            Arrival::Plain => "plain",
            Arrival::Ipip => "ipip",
            Arrival::Vxlan => "vxlan",
        }
    }
}

impl Arrival {
    /// The arrival a `FlowValue::arrival` byte holds, if it holds one.
    pub const fn of(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Pod),
            2 => Some(Self::Plain),
            3 => Some(Self::Ipip),
            4 => Some(Self::Vxlan),
            _ => None,
        }
    }
}

impl TryFrom<u8> for Arrival {
    type Error = u8;

    fn try_from(v: u8) -> Result<Self, u8> {
        Self::of(v).ok_or(v)
    }
}

/// Where a packet arrived, as the program that saw it knows: the kind of arrival and the
/// interface (a pod's) or the node (the underlay's sender).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrived {
    pub arrival: Arrival,
    pub ifindex: u32,
    pub peer: [u8; 4],
}

impl Arrived {
    pub const fn from_pod(ifindex: u32) -> Self {
        Self { arrival: Arrival::Pod, ifindex, peer: [0; 4] }
    }

    pub const fn from_underlay(arrival: Arrival, peer: [u8; 4]) -> Self {
        Self { arrival, ifindex: 0, peer }
    }
}

/// One direction of a flow: the key of the flow table, the tuple its packets arrive with (before
/// any NAT). Ports are in host order. TCP, UDP, UDP-Lite, SCTP and DCCP are named by their
/// ports; an ICMP echo by its identifier (`sport`) and its type (`dport`: a request and the
/// reply it answers are the two directions of one flow, and an unsolicited reply is not).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub protocol: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<FlowKey>() == 16);

impl FlowKey {
    pub const fn new(src: [u8; 4], dst: [u8; 4], protocol: u8, ports: (u16, u16)) -> Self {
        Self { src, dst, sport: ports.0, dport: ports.1, protocol, _pad: [0; 3] }
    }

    /// A hash of this flow direction (every field mixed, then murmur3's finalizer), never 0:
    /// what spreads flows over a tunnel's UDP source ports when the packet carries no hash of
    /// its own. Far cheaper than the kernel's flow dissector, and as stable per flow.
    pub const fn hash(&self) -> u32 {
        let ports = (self.sport as u32) << 16 | self.dport as u32;
        let mut h = u32::from_be_bytes(self.src)
            ^ u32::from_be_bytes(self.dst).rotate_left(13)
            ^ ports.rotate_left(7)
            ^ (self.protocol as u32).wrapping_mul(0x9e37_79b9);
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^= h >> 16;
        if h == 0 {
            1
        } else {
            h
        }
    }
}

/// `FlowValue::nat`: the source address or port is rewritten.
pub const NAT_SRC: u8 = 1;
/// `FlowValue::nat`: the destination address or port is rewritten.
pub const NAT_DST: u8 = 2;

/// The value of a flow table entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    /// A [`FlowState`].
    pub state: u8,
    /// An [`Arrival`].
    pub arrival: u8,
    /// `NAT_*`: what conntrack translates in this direction.
    pub nat: u8,
    pub _pad: u8,
    /// For [`Arrival::Pod`]: the pod's interface.
    pub ifindex: u32,
    /// For an arrival from the underlay: the node (or gateway) it comes from.
    pub peer: [u8; 4],
    /// The tuple after conntrack's NAT (the same as the key's without NAT): what the packet
    /// leaves with.
    pub to_src: [u8; 4],
    pub to_dst: [u8; 4],
    pub to_sport: u16,
    pub to_dport: u16,
    /// `bpf_ktime_get_ns()` of the last packet the fast path carried (0: none yet).
    pub last_seen_ns: u64,
    /// Packets the fast path carried.
    pub fast_packets: u64,
    /// Packets of the flow the programs handed to the kernel while it was in the table.
    pub kernel_packets: u64,
}

const _: () = assert!(core::mem::size_of::<FlowValue>() == 48);

impl FlowValue {
    /// An approved direction arriving as `arrived`, leaving as `to` (`key` itself without NAT).
    pub const fn approved(key: &FlowKey, arrived: &Arrived, to: &FlowKey) -> Self {
        let src_changed = to.src[0] != key.src[0]
            || to.src[1] != key.src[1]
            || to.src[2] != key.src[2]
            || to.src[3] != key.src[3]
            || to.sport != key.sport;
        let dst_changed = to.dst[0] != key.dst[0]
            || to.dst[1] != key.dst[1]
            || to.dst[2] != key.dst[2]
            || to.dst[3] != key.dst[3]
            || to.dport != key.dport;
        let nat = if src_changed { NAT_SRC } else { 0 } | if dst_changed { NAT_DST } else { 0 };
        Self {
            state: FlowState::Approved as u8,
            arrival: arrived.arrival as u8,
            nat,
            _pad: 0,
            ifindex: arrived.ifindex,
            peer: arrived.peer,
            to_src: to.src,
            to_dst: to.dst,
            to_sport: to.sport,
            to_dport: to.dport,
            last_seen_ns: 0,
            fast_packets: 0,
            kernel_packets: 0,
        }
    }

    /// Where the direction's packets may arrive from.
    pub const fn arrived(&self) -> Option<Arrived> {
        let Some(arrival) = Arrival::of(self.arrival) else { return None };
        Some(Arrived { arrival, ifindex: self.ifindex, peer: self.peer })
    }

    /// The tuple the packets leave with.
    pub const fn leaves_as(&self, key: &FlowKey) -> FlowKey {
        FlowKey::new(self.to_src, self.to_dst, key.protocol, (self.to_sport, self.to_dport))
    }

    /// The key of the other direction of `key`'s connection: the tuple this one leaves with,
    /// reversed (a reply arrives addressed to the translated source).
    pub const fn reply_key(&self, key: &FlowKey) -> FlowKey {
        FlowKey::new(self.to_dst, self.to_src, key.protocol, (self.to_dport, self.to_sport))
    }

    /// What the fast path rewrites in a packet of direction `key`.
    pub const fn translation(&self, key: &FlowKey) -> Translation {
        Translation {
            protocol: key.protocol,
            nat: self.nat,
            sport: key.sport,
            dport: key.dport,
            to_src: self.to_src,
            to_dst: self.to_dst,
            to_sport: self.to_sport,
            to_dport: self.to_dport,
        }
    }
}

/// What the fast path rewrites in a packet of an approved direction: its ports as they arrive,
/// and the tuple it leaves with (the addresses it arrives with are the packet's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub protocol: u8,
    /// `NAT_*`.
    pub nat: u8,
    pub sport: u16,
    pub dport: u16,
    pub to_src: [u8; 4],
    pub to_dst: [u8; 4],
    pub to_sport: u16,
    pub to_dport: u16,
}

impl Translation {
    /// Nothing rewritten: the packet from `src` to `dst` leaves as it came.
    pub const fn none(protocol: u8, src: [u8; 4], dst: [u8; 4]) -> Self {
        Self { protocol, nat: 0, sport: 0, dport: 0, to_src: src, to_dst: dst, to_sport: 0, to_dport: 0 }
    }
}

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;

/// What a packet's TCP flags mean for its flow (nothing, for other protocols).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Signal {
    /// FIN, RST or SYN: conntrack must see this packet and the rest of its direction, to follow
    /// the close (or the reopening of a tuple it still holds).
    pub closing: bool,
    /// RST or SYN: the other direction too. After a reset, or a SYN on a tuple conntrack holds as
    /// established (a new connection reusing it), a segment of the other direction that skipped
    /// conntrack would reach it out of window and be INVALID. A FIN ends only its own direction:
    /// a half-closed connection keeps sending the other way.
    pub both_ways: bool,
}

impl Signal {
    pub const fn of_tcp_flags(flags: u8) -> Self {
        Self {
            closing: flags & (TCP_FIN | TCP_RST | TCP_SYN) != 0,
            both_ways: flags & (TCP_RST | TCP_SYN) != 0,
        }
    }
}

/// Bytes of the transport header [`ports_of`] reads (ICMP: type, code, checksum, identifier).
pub const PORTS_LEN: usize = 6;

/// The key's ports of a packet of `protocol` whose transport header starts with `l4`: the two
/// ports for the protocols that carry them in their first four bytes; an ICMP echo request or
/// reply's identifier and type. `None` for anything else (an ICMP error, which only conntrack
/// can relate to its flow; a protocol without ports): never fast-pathed under `--trust kernel`.
pub const fn ports_of(protocol: u8, l4: &[u8; PORTS_LEN]) -> Option<(u16, u16)> {
    match protocol {
        PROTO_TCP | PROTO_UDP | PROTO_UDPLITE | PROTO_SCTP | PROTO_DCCP => {
            Some((u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]])))
        }
        PROTO_ICMP => match l4[0] {
            ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY => Some((u16::from_be_bytes([l4[4], l4[5]]), l4[0] as u16)),
            _ => None,
        },
        _ => None,
    }
}

/// What an ingress program does with a packet of a flow the table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// `Ok` for the fast path; `Err(reason)` to hand it to the kernel.
    pub verdict: Result<(), Reason>,
    /// The entry's state from now on.
    pub state: FlowState,
    /// The other direction's entry is to be closed too ([`Signal::both_ways`]).
    pub close_reply: bool,
}

/// The ingress decision for a packet that `arrived` as it did, with TCP flags saying `signal`,
/// of a direction the table holds as `value`: the fast path only for an approved direction,
/// arriving where the flow enters, that is not closing. A FIN, RST or SYN hands the rest of its
/// direction to the kernel (an RST or SYN the other direction's too), so conntrack sees the
/// close; the entry stays until conntrack's goes (the daemon removes it). A packet arriving
/// elsewhere changes nothing.
pub fn admission(value: &FlowValue, arrived: &Arrived, signal: Signal) -> Admission {
    admit(value.state, value.arrived().as_ref() == Some(arrived), signal)
}

/// [`admission`] for an entry in `state`, whose packet arrived where the flow enters (`here`) or
/// not: both families' gates decide by it.
pub const fn admit(state: u8, here: bool, signal: Signal) -> Admission {
    let Some(state) = FlowState::of(state) else {
        return Admission {
            verdict: Err(Reason::PassFlowPending),
            state: FlowState::Closing,
            close_reply: false,
        };
    };
    if !here {
        return Admission { verdict: Err(Reason::PassFlowElsewhere), state, close_reply: false };
    }
    let close_reply = signal.both_ways;
    match state {
        FlowState::Approved if signal.closing => {
            Admission { verdict: Err(Reason::PassFlowClosing), state: FlowState::Closing, close_reply }
        }
        FlowState::Approved => Admission { verdict: Ok(()), state, close_reply },
        FlowState::Closing => Admission { verdict: Err(Reason::PassFlowClosing), state, close_reply },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: [u8; 4] = [10, 244, 40, 36];
    const REMOTE: [u8; 4] = [10, 244, 166, 150];
    const NODE: [u8; 4] = [10, 101, 14, 51];
    const QUIET: Signal = Signal { closing: false, both_ways: false };
    const FIN: Signal = Signal { closing: true, both_ways: false };
    const BOTH: Signal = Signal { closing: true, both_ways: true };

    fn key() -> FlowKey {
        FlowKey::new(POD, REMOTE, PROTO_TCP, (40000, 80))
    }

    #[test]
    fn an_approved_direction_takes_the_fast_path_only_where_it_enters() {
        let here = Arrived::from_pod(7);
        let value = FlowValue::approved(&key(), &here, &key());
        assert_eq!(
            admission(&value, &here, QUIET),
            Admission { verdict: Ok(()), state: FlowState::Approved, close_reply: false }
        );
        for elsewhere in [
            Arrived::from_pod(8),
            Arrived::from_underlay(Arrival::Vxlan, NODE),
            Arrived::from_underlay(Arrival::Plain, NODE),
        ] {
            assert_eq!(
                admission(&value, &elsewhere, QUIET).verdict,
                Err(Reason::PassFlowElsewhere),
                "{elsewhere:?}"
            );
        }
        let tunnelled = FlowValue::approved(&key(), &Arrived::from_underlay(Arrival::Vxlan, NODE), &key());
        let plain = Arrived::from_underlay(Arrival::Plain, NODE);
        assert_eq!(admission(&tunnelled, &plain, QUIET).verdict, Err(Reason::PassFlowElsewhere));
    }

    #[test]
    fn fin_rst_or_syn_hands_the_rest_to_the_kernel() {
        let here = Arrived::from_pod(7);
        let value = FlowValue::approved(&key(), &here, &key());
        assert_eq!(
            admission(&value, &here, FIN),
            Admission {
                verdict: Err(Reason::PassFlowClosing),
                state: FlowState::Closing,
                close_reply: false
            }
        );
        assert_eq!(
            admission(&value, &here, BOTH),
            Admission { verdict: Err(Reason::PassFlowClosing), state: FlowState::Closing, close_reply: true }
        );
        let elsewhere = Arrived::from_pod(8);
        assert!(
            !admission(&value, &elsewhere, BOTH).close_reply,
            "a packet arriving elsewhere closes nothing"
        );
        let closing = FlowValue { state: FlowState::Closing as u8, ..value };
        assert_eq!(admission(&closing, &here, QUIET).verdict, Err(Reason::PassFlowClosing));
        let bogus = FlowValue { state: 9, ..value };
        assert_eq!(admission(&bogus, &here, QUIET).verdict, Err(Reason::PassFlowPending));
    }

    #[test]
    fn nat_is_what_the_leaving_tuple_changes() {
        let here = Arrived::from_pod(7);
        assert_eq!(FlowValue::approved(&key(), &here, &key()).nat, 0);
        let backend = FlowKey::new(POD, REMOTE, PROTO_TCP, (40000, 8080));
        let dnat =
            FlowValue::approved(&FlowKey::new(POD, [10, 96, 0, 10], PROTO_TCP, (40000, 80)), &here, &backend);
        assert_eq!(dnat.nat, NAT_DST);
        assert_eq!(dnat.leaves_as(&backend), backend);
        let masqueraded = FlowKey::new([10, 101, 14, 50], [192, 0, 2, 7], PROTO_TCP, (61000, 443));
        let snat = FlowValue::approved(
            &FlowKey::new(POD, [192, 0, 2, 7], PROTO_TCP, (40000, 443)),
            &here,
            &masqueraded,
        );
        assert_eq!(snat.nat, NAT_SRC);
    }

    #[test]
    fn the_reply_key_is_the_leaving_tuple_reversed() {
        let here = Arrived::from_pod(7);
        let plain = FlowKey::new(POD, REMOTE, PROTO_TCP, (40000, 8080));
        let value = FlowValue::approved(&plain, &here, &plain);
        assert_eq!(value.reply_key(&plain), FlowKey::new(REMOTE, POD, PROTO_TCP, (8080, 40000)));
        let service = FlowKey::new(POD, [10, 96, 0, 10], PROTO_TCP, (40000, 80));
        let dnat = FlowValue::approved(&service, &here, &plain);
        assert_eq!(dnat.reply_key(&service), FlowKey::new(REMOTE, POD, PROTO_TCP, (8080, 40000)));
    }

    #[test]
    fn ports_name_every_protocol_that_has_them_and_icmp_echo_by_id_and_type() {
        let l4 = [0x1f, 0x90, 0, 80, 0, 0];
        for protocol in [PROTO_TCP, PROTO_UDP, PROTO_UDPLITE, PROTO_SCTP, PROTO_DCCP] {
            assert_eq!(ports_of(protocol, &l4), Some((8080, 80)), "{protocol}");
        }
        assert_eq!(ports_of(PROTO_ICMP, &[8, 0, 0xab, 0xcd, 0x12, 0x34]), Some((0x1234, 8)));
        assert_eq!(ports_of(PROTO_ICMP, &[0, 0, 0xab, 0xcd, 0x12, 0x34]), Some((0x1234, 0)));
        assert_eq!(ports_of(PROTO_ICMP, &[3, 4, 0, 0, 0, 0]), None, "an error: conntrack's to relate");
        assert_eq!(ports_of(47, &l4), None, "GRE: no ports, never fast-pathed");
    }

    #[test]
    fn tcp_flags() {
        assert_eq!(Signal::of_tcp_flags(0x10), QUIET, "ACK");
        assert_eq!(Signal::of_tcp_flags(0x18), QUIET, "PSH ACK");
        assert_eq!(Signal::of_tcp_flags(0x11), FIN, "FIN ACK: its own direction only");
        assert_eq!(Signal::of_tcp_flags(0x04), BOTH, "RST");
        assert_eq!(Signal::of_tcp_flags(0x02), BOTH, "SYN: a tuple reused");
        assert_eq!(Signal::of_tcp_flags(0x12), BOTH, "SYN ACK");
    }

    #[test]
    fn flow_hashes_are_stable_and_spread() {
        let key = |sport| FlowKey::new(POD, REMOTE, 6, (sport, 80));
        assert_eq!(key(40000).hash(), key(40000).hash());
        let mut buckets = [0u32; 16];
        for sport in 40000..40064 {
            let h = key(sport).hash();
            assert_ne!(h, 0);
            buckets[(h >> 28) as usize] += 1;
        }
        // 64 flows over 16 buckets of their top bits (what scaling into a port range keeps).
        assert!(buckets.iter().all(|b| *b <= 12), "{buckets:?}");
    }
}
