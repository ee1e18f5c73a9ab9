//! IPIP: push an outer IPv4 header toward another node, or strip it from one.
//!
//! `bpf_skb_adjust_room` with the ENCAP/DECAP flags keeps GSO packets valid: the kernel records
//! the inner headers and the tunnel type, so a 64 KB TCP super-packet is segmented correctly
//! wherever it is segmented; `BPF_F_ADJ_ROOM_FIXED_GSO` both ways keeps the segment size the
//! sender chose, as VXLAN does.

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4,
        BPF_F_ADJ_ROOM_FIXED_GSO,
    },
    programs::TcContext,
};
use fastpath_common::{
    ipv4::{self, Ipv4Fields, HEADER_LEN},
    maps::NodeConfig,
    tunnel::IPIP_OVERHEAD,
    Reason,
};
use network_types::eth::EthHdr;

use crate::{deliver, fib::NextHop, ip, outcome::Outcome, parse};

/// Encapsulate toward `next_hop` and send it out of the underlay toward `hop`.
#[inline(always)]
pub fn encapsulate(
    ctx: &TcContext,
    node: &NodeConfig,
    inner: &Ipv4Fields,
    next_hop: [u8; 4],
    hop: &NextHop,
) -> Outcome {
    // A GSO packet keeps the segment size its pod chose (each segment was checked against the
    // tunnel MTU above), as the kernel's own tunnel segments the inner packet: without
    // BPF_F_ADJ_ROOM_FIXED_GSO the helper would lower it by the 20 bytes pushed.
    let flags = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO;
    ctx.adjust_room(IPIP_OVERHEAD as i32, BPF_ADJ_ROOM_MAC, u64::from(flags))
        .map_err(|_| Reason::PassEncapFailed)?;
    write_outer_header(ctx, node, inner, next_hop)?;
    ip::decrement_ttl_at(ctx, EthHdr::LEN + HEADER_LEN)?;
    deliver::send(ctx, hop, Reason::Encapsulated)
}

/// Remove the outer header of IPIP arriving at this node (the packet must start Ethernet,
/// outer IPv4, inner IPv4). A GSO packet keeps the segment size its sender chose: without
/// `BPF_F_ADJ_ROOM_FIXED_GSO`, `bpf_skb_net_shrink` would grow it by the 20 bytes removed, and
/// a pod re-segmenting an aggregate the kernel's own IPIP sent (forwarding it on) would send
/// segments 20 bytes over its MTU.
#[inline(always)]
pub fn strip(ctx: &TcContext) -> Result<(), Reason> {
    let flags = BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO;
    ctx.adjust_room(-(IPIP_OVERHEAD as i32), BPF_ADJ_ROOM_MAC, u64::from(flags))
        .map_err(|_| Reason::PassEncapFailed)
}

#[inline(always)]
fn write_outer_header(
    ctx: &TcContext,
    node: &NodeConfig,
    inner: &Ipv4Fields,
    next_hop: [u8; 4],
) -> Result<(), Reason> {
    let outer: *mut [u8; HEADER_LEN] =
        parse::header_mut(ctx, EthHdr::LEN).ok_or(Reason::DropRewriteFailed)?;
    let tos: *const [u8; 2] =
        parse::header_mut(ctx, EthHdr::LEN + HEADER_LEN).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: both bounds-checked by `header_mut`; byte 1 of the inner header is its TOS.
    unsafe {
        *outer =
            ipv4::outer_header(node.node_ip, next_hop, inner.total_len, (*tos)[1], inner.dont_fragment());
    }
    Ok(())
}
