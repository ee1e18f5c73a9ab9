//! Per-packet reports for `fastpath monitor`, made only while a monitor asks for them.
//!
//! Off, this costs one array lookup per packet. On, the 5-tuple is read before the handler
//! changes the packet, and one event per matching packet goes to the ring buffer; a full ring
//! drops the event, never the packet.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TcContext};
use fastpath_common::{
    ipv4::{Ipv4Fields, HEADER_LEN, PROTO_IPIP, PROTO_TCP, PROTO_UDP},
    maps::MonitorEvent,
    pipeline, Reason,
};
use network_types::eth::{EthHdr, EtherType};

use crate::{
    maps::{self, FP_EVENTS, FP_MONITOR, FP_SCRATCH, SCRATCH_MONITOR},
    parse, skb, vxlan,
    walk::Packet,
};

/// The packet's addresses and ports, captured before anything changes it: in this CPU's
/// scratch slot, not on the stack, where 48 bytes would sit in every path's frame for a monitor
/// that is rarely there.
pub struct Watched {
    event: &'static mut MonitorEvent,
}

/// Capture the packet if a monitor wants it.
#[inline(always)]
pub fn watch(ctx: &TcContext, program: u32) -> Option<Watched> {
    let control = FP_MONITOR.get(0)?;
    // SAFETY: a plain helper call.
    if control.until_ns == 0 || control.until_ns < unsafe { bpf_ktime_get_ns() } {
        return None;
    }
    let (ip, offset) = innermost_ipv4(ctx)?;
    if !control.matches(ip.src, ip.dst) {
        return None;
    }
    let (sport, dport) = ports(ctx, offset + HEADER_LEN, ip.protocol);
    let slot = FP_SCRATCH.get_ptr_mut(SCRATCH_MONITOR)?.cast::<MonitorEvent>();
    // SAFETY: this CPU's slot, of 64 bytes and 8-byte alignment (`[u64; 8]`) for the event's 48;
    // nothing else uses it until this program returns (TC programs are not preempted on their
    // CPU). Written field by field, and only the fields this capture knows: the time, verdict and
    // reason are the report's, and the padding is never written by anyone, so it stays as the map
    // was created, zero. (Zeroing it here becomes a `memset` call whose return the verifier then
    // refuses to follow.)
    let event = unsafe { &mut *slot };
    event.ifindex = skb::ifindex(ctx);
    event.program = program;
    event.src = ip.src;
    event.dst = ip.dst;
    event.sport = sport;
    event.dport = dport;
    event.protocol = ip.protocol;
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
        vxlan::is_sent_by(ctx, node, outer)
            || (outer.dst == node.node_ip && pipeline::carries_vxlan_for(&Packet(ctx), node, outer))
    })
}

#[inline(always)]
fn read_ipv4(ctx: &TcContext, offset: usize) -> Option<Ipv4Fields> {
    let header: *const [u8; HEADER_LEN] = parse::header_mut(ctx, offset)?;
    // SAFETY: bounds-checked by `header_mut`.
    Some(Ipv4Fields::parse(unsafe { &*header }))
}

#[inline(always)]
fn ports(ctx: &TcContext, offset: usize, protocol: u8) -> (u16, u16) {
    if protocol != PROTO_TCP && protocol != PROTO_UDP {
        return (0, 0);
    }
    match parse::header_mut::<[u8; 4]>(ctx, offset) {
        // SAFETY: bounds-checked by `header_mut`.
        Some(p) => unsafe {
            (u16::from_be_bytes([(*p)[0], (*p)[1]]), u16::from_be_bytes([(*p)[2], (*p)[3]]))
        },
        None => (0, 0),
    }
}
