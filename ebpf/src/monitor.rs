//! Per-packet reports for `fastpath monitor`, made only while a monitor asks for them.
//!
//! Off, this costs one array lookup per packet. On, the addresses, ports and ICMP type are read
//! before the handler changes the packet, and one event per matching packet goes to the ring
//! buffer; a full ring drops the event, never the packet. Both families are reported in one
//! event layout, IPv4 addresses IPv4-mapped; each family is read in a BPF subprogram of its own.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TcContext};
use fastpath_common::{
    ipv4::{Ipv4Fields, HEADER_LEN, PROTO_ICMP, PROTO_IPIP, PROTO_TCP, PROTO_UDP},
    ipv6::{self, NEXT_ICMPV6, UNSPECIFIED},
    maps::{MonitorEvent, FAMILY_IPV4, FAMILY_IPV6},
    pipeline::{self, ETH_LEN},
    vxlan::{self, OVERHEAD6},
    Reason,
};
use network_types::eth::{EthHdr, EtherType};

use crate::{
    maps::{self, Scratch, FP_EVENTS, FP_MONITOR, FP_SCRATCH, SCRATCH_MONITOR},
    parse, skb, vxlan as vxlan_tc,
    walk::Packet,
};

/// The packet's addresses and ports, captured before anything changes it: in this CPU's
/// scratch slot, not on the stack, where 72 bytes would sit in every path's frame for a monitor
/// that is rarely there.
pub struct Watched {
    event: &'static mut MonitorEvent,
}

const _: () = assert!(core::mem::size_of::<MonitorEvent>() <= core::mem::size_of::<Scratch>());

/// Capture the packet if a monitor wants it.
#[inline(always)]
pub fn watch(ctx: &TcContext, program: u32) -> Option<Watched> {
    let control = FP_MONITOR.get(0)?;
    // SAFETY: a plain helper call.
    if control.until_ns == 0 || control.until_ns < unsafe { bpf_ktime_get_ns() } {
        return None;
    }
    // Each family's capture is a BPF subprogram of its own, so that without a monitor the
    // programs keep their code and their stack frame as they were: inline, a capture would sit
    // in the middle of every program, its locals in the frame under each walk (and the kernel
    // allows 512 bytes for a whole call chain). Inline beside each other, LLVM would also share
    // registers across the two in ways the verifier refuses (as `handle.rs` says of the walks).
    // Each finds the filter and the slot itself and fills the slot before `event` below
    // borrows it.
    let captured = if is_ipv6(ctx) { capture_ipv6(ctx) } else { capture_ipv4(ctx) };
    if captured == 0 {
        return None;
    }
    let slot = FP_SCRATCH.get_ptr_mut(SCRATCH_MONITOR)?.cast::<MonitorEvent>();
    // SAFETY: this CPU's slot, of 72 bytes and 8-byte alignment (`Scratch`) for the event's 72;
    // nothing else uses it until this program returns (TC programs are not preempted on their
    // CPU; the capture has returned). Written field by field, and only the fields the captures
    // know: the time, verdict and reason are the report's, and the padding is never written by
    // anyone, so it stays as the map was created, zero. (Zeroing it here becomes a `memset` call
    // whose return the verifier then refuses to follow.)
    let event = unsafe { &mut *slot };
    event.ifindex = skb::ifindex(ctx);
    event.program = program;
    event.len = skb::len(ctx);
    Some(Watched { event })
}

/// Send the captured packet's decision to the monitor.
#[inline(always)]
pub fn report(watched: Option<Watched>, verdict: i32, reason: Reason) {
    let Some(watched) = watched else { return };
    // SAFETY: a plain helper call.
    watched.event.time_ns = unsafe { bpf_ktime_get_ns() };
    watched.event.verdict = verdict;
    watched.event.reason = reason.index();
    // By reference: the event goes from the scratch slot to the ring, never through the stack.
    #[allow(clippy::needless_borrows_for_generic_args)]
    let _ = FP_EVENTS.output(&*watched.event, 0);
}

#[inline(always)]
fn is_ipv6(ctx: &TcContext) -> bool {
    match parse::header_mut::<EthHdr>(ctx, 0) {
        // SAFETY: bounds-checked by `header_mut`.
        Some(eth) => (unsafe { (*eth).ether_type }) == EtherType::Ipv6 as u16,
        None => false,
    }
}

/// An IPv4 frame: if a monitor's filter takes it, its innermost header's addresses (mapped),
/// protocol, ports and ICMP type into the monitor's slot; 1 if so, else 0. A subprogram, run only
/// while a monitor is attached.
#[inline(never)]
fn capture_ipv4(ctx: &TcContext) -> u32 {
    let (Some(control), Some(slot)) = (FP_MONITOR.get(0), FP_SCRATCH.get_ptr_mut(SCRATCH_MONITOR)) else {
        return 0;
    };
    let Some((ip, offset)) = innermost_ipv4(ctx) else { return 0 };
    // SAFETY: as in `watch`, which borrows the slot only after this returns.
    let event = unsafe { &mut *slot.cast::<MonitorEvent>() };
    event.src = ipv6::v4_mapped(ip.src);
    event.dst = ipv6::v4_mapped(ip.dst);
    if !control.matches(&event.src, &event.dst) {
        return 0;
    }
    let (sport, dport, icmp_type) = transport(ctx, offset + HEADER_LEN, ip.protocol, PROTO_ICMP);
    event.sport = sport;
    event.dport = dport;
    event.protocol = ip.protocol;
    event.family = FAMILY_IPV4;
    event.icmp_type = icmp_type;
    1
}

/// The IPv4 header to report: for IPIP and this node's VXLAN, the inner one (the pods'
/// conversation).
#[inline(always)]
fn innermost_ipv4(ctx: &TcContext) -> Option<(Ipv4Fields, usize)> {
    let eth: *const EthHdr = parse::header_mut(ctx, 0)?;
    // SAFETY: bounds-checked by `header_mut`.
    if unsafe { (*eth).ether_type } != EtherType::Ipv4 as u16 {
        return None;
    }
    let outer = read_ipv4(ctx, EthHdr::LEN)?;
    if outer.protocol == PROTO_IPIP {
        if let Some(inner) = read_ipv4(ctx, EthHdr::LEN + HEADER_LEN) {
            return Some((inner, EthHdr::LEN + HEADER_LEN));
        }
    }
    if outer.protocol == PROTO_UDP && is_vxlan(ctx, &outer) {
        if let Some(inner) = read_ipv4(ctx, pipeline::VXLAN_INNER_L3) {
            return Some((inner, pipeline::VXLAN_INNER_L3));
        }
    }
    Some((outer, EthHdr::LEN))
}

/// VXLAN of this node's `vxlan.calico`, arriving or leaving.
#[inline(always)]
fn is_vxlan(ctx: &TcContext, outer: &Ipv4Fields) -> bool {
    maps::node().is_ok_and(|node| {
        vxlan_tc::is_sent_by(ctx, node, outer)
            || (outer.dst == node.node_ip && pipeline::carries_vxlan_for(&Packet(ctx), node, outer))
    })
}

#[inline(always)]
fn read_ipv4(ctx: &TcContext, offset: usize) -> Option<Ipv4Fields> {
    let header: *const [u8; HEADER_LEN] = parse::header_mut(ctx, offset)?;
    // SAFETY: bounds-checked by `header_mut`.
    Some(Ipv4Fields::parse(unsafe { &*header }))
}

/// Where the inner IPv6 header of IPv6 VXLAN starts (`pipeline::v6`'s offsets).
const VXLAN6_INNER_L3: usize = ETH_LEN + OVERHEAD6;

/// An IPv6 frame, plain or IPv6 VXLAN of this node's `vxlan-v6.calico`: if a monitor's filter
/// takes it, its innermost header's addresses, next header, ports and ICMPv6 type into the
/// monitor's slot; 1 if so, else 0. A subprogram, run only while a monitor is attached.
#[inline(never)]
fn capture_ipv6(ctx: &TcContext) -> u32 {
    let (Some(control), Some(slot)) = (FP_MONITOR.get(0), FP_SCRATCH.get_ptr_mut(SCRATCH_MONITOR)) else {
        return 0;
    };
    // SAFETY: as in `watch`, which borrows the slot only after this returns.
    let event = unsafe { &mut *slot.cast::<MonitorEvent>() };
    let l3 = if is_vxlan6(ctx) { VXLAN6_INNER_L3 } else { ETH_LEN };
    let Some(header) = parse::header_mut::<[u8; ipv6::HEADER_LEN]>(ctx, l3) else { return 0 };
    // SAFETY: bounds-checked by `header_mut`.
    let h = unsafe { &*header };
    if h[0] >> 4 != ipv6::VERSION {
        return 0;
    }
    let src: &[u8; 16] = h[8..24].try_into().unwrap_or(&UNSPECIFIED);
    let dst: &[u8; 16] = h[24..40].try_into().unwrap_or(&UNSPECIFIED);
    if !control.matches(src, dst) {
        return 0;
    }
    let next_header = h[6];
    // Ports only right after the fixed header: behind an extension header they stay 0.
    let (sport, dport, icmp_type) = transport(ctx, l3 + ipv6::HEADER_LEN, next_header, NEXT_ICMPV6);
    event.src = *src;
    event.dst = *dst;
    event.sport = sport;
    event.dport = dport;
    event.protocol = next_header;
    event.family = FAMILY_IPV6;
    event.icmp_type = icmp_type;
    1
}

/// IPv6 VXLAN to or from this node's `vxlan-v6.calico` port, carrying IPv6: the pods'
/// conversation is inside it.
#[inline(always)]
fn is_vxlan6(ctx: &TcContext) -> bool {
    let Some(node6) = maps::node6().filter(|n| n.has_vxlan()) else { return false };
    let Some(outer) = parse::header_mut::<[u8; OVERHEAD6]>(ctx, ETH_LEN) else { return false };
    // SAFETY: bounds-checked by `header_mut`.
    let h = unsafe { &*outer };
    const UDP: usize = ipv6::HEADER_LEN;
    const INNER_ETH: usize = UDP + vxlan::UDP_HEADER_LEN + vxlan::HEADER_LEN;
    let src: &[u8; 16] = h[8..24].try_into().unwrap_or(&UNSPECIFIED);
    let dst: &[u8; 16] = h[24..40].try_into().unwrap_or(&UNSPECIFIED);
    h[6] == ipv6::NEXT_UDP
        && (ipv6::same_address(dst, &node6.node_ip) || ipv6::same_address(src, &node6.node_ip))
        && u16::from_be_bytes([h[UDP + 2], h[UDP + 3]]) == node6.vxlan.port
        && u16::from_be_bytes([h[INNER_ETH + 12], h[INNER_ETH + 13]]) == ipv6::ETHERTYPE
}

/// The source and destination ports of TCP and UDP, or the type of ICMP (`icmp`: 1 for IPv4, 58
/// for IPv6), at `offset`; zeros for anything else or a packet too short.
#[inline(always)]
fn transport(ctx: &TcContext, offset: usize, protocol: u8, icmp: u8) -> (u16, u16, u8) {
    if protocol != PROTO_TCP && protocol != PROTO_UDP && protocol != icmp {
        return (0, 0, 0);
    }
    match parse::header_mut::<[u8; 4]>(ctx, offset) {
        Some(p) => {
            // SAFETY: bounds-checked by `header_mut`.
            let p = unsafe { &*p };
            if protocol == icmp {
                (0, 0, p[0])
            } else {
                (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]), 0)
            }
        }
        None => (0, 0, 0),
    }
}
