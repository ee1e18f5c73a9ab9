//! `--trust kernel` for IPv6: the same judge and the same gate as IPv4's ([`crate::flow`]), over
//! 16-byte addresses. One difference: the fast path does not translate IPv6. A direction
//! conntrack translates (kube-proxy's IPv6 services, natOutgoing for IPv6) is written to the
//! table all the same, marked, and its packets go to the kernel counted as such
//! ([`Reason::PassIpv6Translated`]), so `fastpath flows` and the counters tell why.

use crate::{
    flow::{admit, ports_of, Admission, Arrival, Signal, PORTS_LEN, PROTO_ICMP},
    ipv6::NEXT_ICMPV6,
    Reason,
};

pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;

/// One direction of an IPv6 flow: the key of `FP_FLOWS6`, named as [`crate::flow::FlowKey`]
/// names an IPv4 one (an ICMPv6 echo by its identifier and type).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub protocol: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<FlowKey6>() == 40);

impl FlowKey6 {
    pub const fn new(src: [u8; 16], dst: [u8; 16], protocol: u8, ports: (u16, u16)) -> Self {
        Self { src, dst, sport: ports.0, dport: ports.1, protocol, _pad: [0; 3] }
    }

    /// The other direction of the connection (nothing is translated: its tuple reversed).
    pub const fn reversed(&self) -> Self {
        Self::new(self.dst, self.src, self.protocol, (self.dport, self.sport))
    }
}

/// Where an IPv6 packet arrived: [`crate::flow::Arrived`] with a node's IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrived6 {
    pub arrival: Arrival,
    pub ifindex: u32,
    pub peer: [u8; 16],
}

impl Arrived6 {
    pub const fn from_pod(ifindex: u32) -> Self {
        Self { arrival: Arrival::Pod, ifindex, peer: [0; 16] }
    }

    pub const fn from_underlay(arrival: Arrival, peer: [u8; 16]) -> Self {
        Self { arrival, ifindex: 0, peer }
    }
}

/// The value of an `FP_FLOWS6` entry: [`crate::flow::FlowValue`]'s fields but the tuple it
/// leaves with, which is the key's own.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue6 {
    /// A [`crate::flow::FlowState`].
    pub state: u8,
    /// An [`Arrival`].
    pub arrival: u8,
    /// Non-zero: conntrack translates this direction, so the kernel carries it.
    pub translated: u8,
    pub _pad: u8,
    /// For [`Arrival::Pod`]: the pod's interface.
    pub ifindex: u32,
    /// For an arrival from the underlay: the node it comes from.
    pub peer: [u8; 16],
    /// `bpf_ktime_get_ns()` of the last packet the fast path carried (0: none yet).
    pub last_seen_ns: u64,
    /// Packets the fast path carried.
    pub fast_packets: u64,
    /// Packets of the flow the programs handed to the kernel while it was in the table.
    pub kernel_packets: u64,
}

const _: () = assert!(core::mem::size_of::<FlowValue6>() == 48);

impl FlowValue6 {
    /// An approved direction arriving as `arrived`; `translated` when conntrack translates it.
    pub const fn approved(arrived: &Arrived6, translated: bool) -> Self {
        Self {
            state: crate::flow::FlowState::Approved as u8,
            arrival: arrived.arrival as u8,
            translated: translated as u8,
            _pad: 0,
            ifindex: arrived.ifindex,
            peer: arrived.peer,
            last_seen_ns: 0,
            fast_packets: 0,
            kernel_packets: 0,
        }
    }

    /// Where the direction's packets may arrive from.
    pub const fn arrived(&self) -> Option<Arrived6> {
        let Some(arrival) = Arrival::of(self.arrival) else { return None };
        Some(Arrived6 { arrival, ifindex: self.ifindex, peer: self.peer })
    }
}

/// The ingress decision for an IPv6 packet that arrived as `arrival` (on pod interface
/// `ifindex`, or from node `peer`), of a direction the table holds as `value`: IPv4's
/// ([`crate::flow::admission`]), and a translated direction the kernel's. The arrival comes as
/// its parts, compared where they lie, so the programs build no copy of it.
#[inline(always)]
pub fn admission6(
    value: &FlowValue6,
    arrival: Arrival,
    ifindex: u32,
    peer: &[u8; 16],
    signal: Signal,
) -> Admission {
    // The addresses as one 128-bit word each: two 64-bit comparisons in a program. Byte by byte,
    // LLVM turns the comparison into a branch per byte, and the verifier walks every combination.
    let here = value.arrival == arrival as u8
        && value.ifindex == ifindex
        && u128::from_ne_bytes(value.peer) == u128::from_ne_bytes(*peer);
    let mut admission = admit(value.state, here, signal);
    if value.translated != 0 && admission.verdict.is_ok() {
        admission.verdict = Err(Reason::PassIpv6Translated);
    }
    admission
}

/// The key's ports of an IPv6 packet whose upper layer is `next_header` ([`ports_of`]'s, with
/// ICMPv6's echo in place of ICMP's).
pub const fn ports_of6(next_header: u8, l4: &[u8; PORTS_LEN]) -> Option<(u16, u16)> {
    match next_header {
        NEXT_ICMPV6 => match l4[0] {
            ICMPV6_ECHO_REQUEST | ICMPV6_ECHO_REPLY => {
                Some((u16::from_be_bytes([l4[4], l4[5]]), l4[0] as u16))
            }
            _ => None,
        },
        PROTO_ICMP => None,
        _ => ports_of(next_header, l4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{FlowState, PROTO_TCP, PROTO_UDP};

    const NODE: [u8; 16] = [0xfd, 0, 0x10, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 51];
    const QUIET: Signal = Signal { closing: false, both_ways: false };

    #[test]
    fn an_approved_direction_takes_the_fast_path_only_where_it_enters() {
        let value = FlowValue6::approved(&Arrived6::from_underlay(Arrival::Vxlan, NODE), false);
        assert_eq!(admission6(&value, Arrival::Vxlan, 0, &NODE, QUIET).verdict, Ok(()));
        let mut other = NODE;
        other[15] = 52;
        assert_eq!(
            admission6(&value, Arrival::Vxlan, 0, &other, QUIET).verdict,
            Err(Reason::PassFlowElsewhere)
        );
        assert_eq!(
            admission6(&value, Arrival::Pod, 0, &[0; 16], QUIET).verdict,
            Err(Reason::PassFlowElsewhere)
        );
        let pod = FlowValue6::approved(&Arrived6::from_pod(7), false);
        assert_eq!(admission6(&pod, Arrival::Pod, 7, &[0; 16], QUIET).verdict, Ok(()));
        assert_eq!(
            admission6(&pod, Arrival::Pod, 8, &[0; 16], QUIET).verdict,
            Err(Reason::PassFlowElsewhere)
        );
        assert_eq!(pod.arrived(), Some(Arrived6::from_pod(7)));
    }

    #[test]
    fn a_translated_direction_is_the_kernels_and_closes_as_any_other() {
        let value = FlowValue6::approved(&Arrived6::from_pod(7), true);
        assert_eq!(
            admission6(&value, Arrival::Pod, 7, &[0; 16], QUIET).verdict,
            Err(Reason::PassIpv6Translated)
        );
        let rst = Signal { closing: true, both_ways: true };
        let closed = admission6(&value, Arrival::Pod, 7, &[0; 16], rst);
        assert_eq!(
            (closed.verdict, closed.state, closed.close_reply),
            (Err(Reason::PassFlowClosing), FlowState::Closing, true)
        );
        let pending = FlowValue6 { state: 0, ..value };
        assert_eq!(
            admission6(&pending, Arrival::Pod, 7, &[0; 16], QUIET).verdict,
            Err(Reason::PassFlowPending)
        );
    }

    #[test]
    fn icmpv6_echo_is_named_by_identifier_and_type_and_icmpv4_never() {
        assert_eq!(ports_of6(NEXT_ICMPV6, &[128, 0, 0xab, 0xcd, 0x12, 0x34]), Some((0x1234, 128)));
        assert_eq!(ports_of6(NEXT_ICMPV6, &[129, 0, 0xab, 0xcd, 0x12, 0x34]), Some((0x1234, 129)));
        assert_eq!(ports_of6(NEXT_ICMPV6, &[1, 4, 0, 0, 0, 0]), None, "an error: conntrack's to relate");
        assert_eq!(ports_of6(NEXT_ICMPV6, &[135, 0, 0, 0, 0, 0]), None, "neighbour discovery");
        assert_eq!(ports_of6(PROTO_ICMP, &[8, 0, 0, 0, 0x12, 0x34]), None);
        assert_eq!(ports_of6(PROTO_TCP, &[0x1f, 0x90, 0, 80, 0, 0]), Some((8080, 80)));
        assert_eq!(ports_of6(PROTO_UDP, &[0, 53, 0x13, 0x88, 0, 0]), Some((53, 5000)));
    }

    #[test]
    fn the_reverse_direction_swaps_addresses_and_ports() {
        let mut pod = NODE;
        pod[0] = 0xfd;
        pod[15] = 9;
        let key = FlowKey6::new(pod, NODE, PROTO_TCP, (40000, 80));
        assert_eq!(key.reversed(), FlowKey6::new(NODE, pod, PROTO_TCP, (80, 40000)));
        assert_eq!(key.reversed().reversed(), key);
    }
}
