//! `--trust kernel`: a flow takes the fast path only once the kernel has forwarded one of its
//! packets unchanged. The programs keep one entry per flow direction in an LRU hash; the
//! decisions about an entry are the pure functions here, which the host tests and `fastpath
//! explain` call too.
//!
//! The kernel stays the judge of NAT and policy: a packet the kernel forwards with the 5-tuple it
//! came in with approves its direction of the flow; a packet the kernel sends that no ingress
//! handed it (its tuple rewritten by NAT, or its own) marks the flow kernel-owned, both ways.

use crate::Reason;

/// What an entry of the flow table says about its flow direction (`FlowValue::state`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowState {
    /// Seen going into the kernel; the kernel has not forwarded it yet.
    Pending = 0,
    /// The kernel forwarded a packet of it unchanged: its packets take the fast path.
    Approved = 1,
    /// NAT changed it or the kernel originated it: the kernel carries all of it, both ways.
    KernelOwned = 2,
    /// TCP FIN or RST seen: the kernel carries the rest, so conntrack sees the close.
    Closing = 3,
}

impl FlowState {
    pub const fn as_str(self) -> &'static str {
        match self {
            FlowState::Pending => "pending",
            FlowState::Approved => "approved",
            FlowState::KernelOwned => "kernel-owned",
            FlowState::Closing => "closing",
        }
    }
}

impl TryFrom<u32> for FlowState {
    type Error = u32;

    fn try_from(v: u32) -> Result<Self, u32> {
        match v {
            0 => Ok(Self::Pending),
            1 => Ok(Self::Approved),
            2 => Ok(Self::KernelOwned),
            3 => Ok(Self::Closing),
            other => Err(other),
        }
    }
}

/// One direction of a flow: the key of the flow table. Ports are in host order; an ICMP echo
/// uses its identifier as both ports, so that a request and its reply are each other's reverse.
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

    /// The other direction of the same flow.
    pub const fn reversed(&self) -> Self {
        Self::new(self.dst, self.src, self.protocol, (self.dport, self.sport))
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

/// The value of a flow table entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    /// A [`FlowState`].
    pub state: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()` of the last packet an ingress program saw.
    pub last_seen_ns: u64,
    /// Packets the fast path carried.
    pub fast_packets: u64,
    /// Packets handed to the kernel.
    pub kernel_packets: u64,
}

const _: () = assert!(core::mem::size_of::<FlowValue>() == 32);

impl FlowValue {
    pub const fn new(state: FlowState, now_ns: u64) -> Self {
        Self { state: state as u32, _pad: 0, last_seen_ns: now_ns, fast_packets: 0, kernel_packets: 0 }
    }
}

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// What a packet's TCP flags mean for its flow (nothing, for other protocols).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Signal {
    /// FIN or RST: the connection is ending.
    pub closing: bool,
    /// A SYN without ACK: a new connection, possibly reusing a closed one's tuple.
    pub opening: bool,
}

impl Signal {
    pub const fn of_tcp_flags(flags: u8) -> Self {
        Self {
            closing: flags & (TCP_FIN | TCP_RST) != 0,
            opening: flags & TCP_SYN != 0 && flags & TCP_ACK == 0,
        }
    }
}

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

/// The ports of an ICMP message from its first 6 bytes (type, code, checksum, identifier): an echo
/// request or reply is named by its identifier; any other ICMP message belongs to another flow
/// (an error about it), which only the kernel can relate, so it has no name here.
pub const fn icmp_ports(l4: &[u8; 6]) -> Option<(u16, u16)> {
    match l4[0] {
        ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            Some((id, id))
        }
        _ => None,
    }
}

/// The ports of a TCP or UDP header's first 4 bytes.
pub const fn transport_ports(l4: &[u8; 4]) -> (u16, u16) {
    (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]))
}

/// What an ingress program does with a packet whose route allows the fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// `Ok` for the fast path; `Err(reason)` to hand it to the kernel.
    pub verdict: Result<(), Reason>,
    /// The entry's state from now on.
    pub state: FlowState,
}

const fn admit(state: FlowState) -> Admission {
    Admission { verdict: Ok(()), state }
}

const fn to_kernel(reason: Reason, state: FlowState) -> Admission {
    Admission { verdict: Err(reason), state }
}

/// The ingress decision for a packet of a flow the table holds in `state`, last seen at
/// `last_seen_ns`: the fast path only for an approved flow that is neither closing nor idle
/// longer than `idle_ns`. An idle entry of any kind starts over as pending, so the kernel judges
/// the flow again.
pub const fn admission(
    state: FlowState,
    last_seen_ns: u64,
    now_ns: u64,
    idle_ns: u64,
    signal: Signal,
) -> Admission {
    let idle = now_ns.saturating_sub(last_seen_ns) > idle_ns;
    match state {
        FlowState::Approved | FlowState::Pending if signal.closing => {
            to_kernel(Reason::PassFlowClosing, FlowState::Closing)
        }
        FlowState::Approved if idle => to_kernel(Reason::PassFlowExpired, FlowState::Pending),
        FlowState::Approved => admit(FlowState::Approved),
        FlowState::Closing if signal.opening || idle => {
            to_kernel(Reason::PassFlowPending, FlowState::Pending)
        }
        FlowState::Closing => to_kernel(Reason::PassFlowClosing, FlowState::Closing),
        FlowState::KernelOwned if idle => to_kernel(Reason::PassFlowPending, FlowState::Pending),
        FlowState::KernelOwned => to_kernel(Reason::PassFlowKernelOwned, FlowState::KernelOwned),
        FlowState::Pending => to_kernel(Reason::PassFlowPending, FlowState::Pending),
    }
}

/// What an egress program does when the kernel sends a packet of a flow out toward a pod or
/// another node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// It came in through an ingress program with this very tuple: approve this direction.
    Approve,
    /// No ingress handed the kernel this tuple: NAT rewrote it or the kernel made it. The kernel
    /// owns it and its reverse.
    KernelOwned,
    /// Already judged; nothing changes.
    Known,
}

/// The egress decision for a packet whose flow direction the table holds in `state` (`None`:
/// absent).
pub const fn judgement(state: Option<FlowState>) -> Judgement {
    match state {
        None => Judgement::KernelOwned,
        Some(FlowState::Pending) => Judgement::Approve,
        Some(_) => Judgement::Known,
    }
}

impl Judgement {
    pub const fn reason(self) -> Reason {
        match self {
            Judgement::Approve => Reason::FlowApproved,
            Judgement::KernelOwned => Reason::FlowMarkedKernelOwned,
            Judgement::Known => Reason::FlowEgressKnown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: u64 = 1_000;
    const QUIET: Signal = Signal { closing: false, opening: false };
    const FIN: Signal = Signal { closing: true, opening: false };
    const SYN: Signal = Signal { closing: false, opening: true };

    fn at(state: FlowState, signal: Signal) -> Admission {
        admission(state, 100, 200, IDLE, signal)
    }

    fn idle(state: FlowState, signal: Signal) -> Admission {
        admission(state, 100, 100 + IDLE + 1, IDLE, signal)
    }

    #[test]
    fn only_an_approved_flow_takes_the_fast_path() {
        assert_eq!(at(FlowState::Approved, QUIET), admit(FlowState::Approved));
        assert_eq!(at(FlowState::Pending, QUIET), to_kernel(Reason::PassFlowPending, FlowState::Pending));
        assert_eq!(
            at(FlowState::KernelOwned, QUIET),
            to_kernel(Reason::PassFlowKernelOwned, FlowState::KernelOwned)
        );
        assert_eq!(at(FlowState::Closing, QUIET), to_kernel(Reason::PassFlowClosing, FlowState::Closing));
    }

    #[test]
    fn fin_or_rst_hands_the_rest_of_the_flow_to_the_kernel() {
        assert_eq!(at(FlowState::Approved, FIN), to_kernel(Reason::PassFlowClosing, FlowState::Closing));
        assert_eq!(at(FlowState::Pending, FIN), to_kernel(Reason::PassFlowClosing, FlowState::Closing));
        assert_eq!(
            at(FlowState::KernelOwned, FIN),
            to_kernel(Reason::PassFlowKernelOwned, FlowState::KernelOwned)
        );
    }

    #[test]
    fn a_new_connection_on_a_closed_tuple_starts_over() {
        assert_eq!(at(FlowState::Closing, SYN), to_kernel(Reason::PassFlowPending, FlowState::Pending));
    }

    #[test]
    fn idle_entries_are_judged_again() {
        assert_eq!(idle(FlowState::Approved, QUIET), to_kernel(Reason::PassFlowExpired, FlowState::Pending));
        assert_eq!(
            idle(FlowState::KernelOwned, QUIET),
            to_kernel(Reason::PassFlowPending, FlowState::Pending)
        );
        assert_eq!(idle(FlowState::Closing, QUIET), to_kernel(Reason::PassFlowPending, FlowState::Pending));
        // Exactly at the limit is not idle yet.
        assert_eq!(admission(FlowState::Approved, 100, 100 + IDLE, IDLE, QUIET), admit(FlowState::Approved));
    }

    #[test]
    fn egress_approves_only_what_an_ingress_saw() {
        assert_eq!(judgement(Some(FlowState::Pending)), Judgement::Approve);
        assert_eq!(judgement(None), Judgement::KernelOwned);
        for known in [FlowState::Approved, FlowState::KernelOwned, FlowState::Closing] {
            assert_eq!(judgement(Some(known)), Judgement::Known);
        }
    }

    #[test]
    fn tcp_flags_and_ports() {
        assert_eq!(Signal::of_tcp_flags(0x02), SYN);
        assert_eq!(Signal::of_tcp_flags(0x12), QUIET);
        assert_eq!(Signal::of_tcp_flags(0x11), FIN);
        assert_eq!(Signal::of_tcp_flags(0x04), FIN);
        assert_eq!(transport_ports(&[0x1f, 0x90, 0, 80]), (8080, 80));
        assert_eq!(icmp_ports(&[8, 0, 0xab, 0xcd, 0x12, 0x34]), Some((0x1234, 0x1234)));
        assert_eq!(icmp_ports(&[0, 0, 0xab, 0xcd, 0x12, 0x34]), Some((0x1234, 0x1234)));
        assert_eq!(icmp_ports(&[3, 4, 0, 0, 0, 0]), None);
    }

    #[test]
    fn flow_hashes_are_stable_and_spread() {
        let key = |sport| FlowKey::new([10, 244, 40, 36], [10, 244, 166, 150], 6, (sport, 80));
        assert_eq!(key(40000).hash(), key(40000).hash());
        let mut seen: [u32; 64] = [0; 64];
        for (i, sport) in (40000..40064).enumerate() {
            seen[i] = key(sport).hash();
            assert_ne!(seen[i], 0);
        }
        // 64 flows over 16 buckets of their top bits (what scaling into a port range keeps).
        let mut buckets = [0u32; 16];
        for h in seen {
            buckets[(h >> 28) as usize] += 1;
        }
        assert!(buckets.iter().all(|b| *b <= 12), "{buckets:?}");
        assert_ne!(key(40000).hash(), key(40000).reversed().hash());
    }

    #[test]
    fn reversing_twice_is_the_same_key() {
        let key = FlowKey::new([10, 244, 40, 36], [10, 244, 166, 150], 6, (40000, 80));
        let back = key.reversed();
        assert_eq!((back.src, back.dst, back.sport, back.dport), (key.dst, key.src, 80, 40000));
        assert_eq!(back.reversed(), key);
    }
}
