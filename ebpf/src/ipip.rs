//! IPIP: push an outer IPv4 header toward another node, or strip it from one.
//!
//! `bpf_skb_adjust_room` with the ENCAP/DECAP flags keeps GSO packets valid: the kernel records
//! the inner headers and the tunnel type, so a 64 KB TCP super-packet is segmented correctly
//! wherever it is segmented.

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4,
    },
    programs::TcContext,
};
use fastpath_common::{
    ipv4::{self, Ipv4Fields, HEADER_LEN, PROTO_IPIP},
    maps::NodeConfig,
    tunnel::{Tunnel, IPIP_OVERHEAD},
    Reason,
};
use network_types::eth::EthHdr;

use crate::{fib, ip, parse, stats::Outcome, tunnel};

/// Encapsulate toward `next_hop` and send it out of the underlay.
#[inline(always)]
pub fn encapsulate(ctx: &TcContext, node: &NodeConfig, inner: &Ipv4Fields, next_hop: [u8; 4]) -> Outcome {
    if let Some(outcome) = tunnel::too_big(ctx, node, inner, node.tunnel_mtu(&Tunnel::Ipip)) {
        return outcome;
    }
    // Ask the FIB before touching the packet, so a failure still leaves it to the kernel intact.
    let hop = fib::lookup(ctx, node, next_hop)?;
    ctx.adjust_room(IPIP_OVERHEAD as i32, BPF_ADJ_ROOM_MAC, u64::from(BPF_F_ADJ_ROOM_ENCAP_L3_IPV4))
        .map_err(|_| Reason::PassEncapFailed)?;
    write_outer_header(ctx, node, inner, next_hop)?;
    ip::decrement_ttl_at(ctx, EthHdr::LEN + HEADER_LEN)?;
    tunnel::send(ctx, node, &hop, Reason::Encapsulated)
}

/// IPIP arriving at this node ([`tunnel::deliver`]).
pub struct Arriving;

impl tunnel::Arrival for Arriving {
    const INNER_L3: usize = EthHdr::LEN + HEADER_LEN;
    const DELIVERED: Reason = Reason::Decapsulated;

    /// Nothing lies between the two IPv4 headers.
    #[inline(always)]
    fn check(_: &TcContext, _: &NodeConfig, _: &Ipv4Fields) -> Result<(), Reason> {
        Ok(())
    }

    /// Remove the outer header (the packet must start Ethernet, outer IPv4, inner IPv4).
    #[inline(always)]
    fn strip(ctx: &TcContext) -> Result<(), Reason> {
        ctx.adjust_room(-(IPIP_OVERHEAD as i32), BPF_ADJ_ROOM_MAC, u64::from(BPF_F_ADJ_ROOM_DECAP_L3_IPV4))
            .map_err(|_| Reason::PassEncapFailed)
    }
}

/// Whether `outer` carries IPIP (with room for an inner header).
#[inline(always)]
pub fn carries_ipip(outer: &Ipv4Fields) -> bool {
    outer.protocol == PROTO_IPIP && u32::from(outer.total_len) >= 2 * HEADER_LEN as u32
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
