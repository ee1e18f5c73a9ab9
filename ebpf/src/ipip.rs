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
    ipv4::{self, Ipv4Fields, HEADER_LEN, PROTO_TCP, PROTO_UDP},
    maps::NodeConfig,
    Reason,
};
use network_types::eth::EthHdr;

use crate::{
    fib::{self, NextHop},
    icmp, ip, parse,
    stats::Outcome,
};

const TUNNEL_OVERHEAD: u32 = HEADER_LEN as u32;

/// Encapsulate toward `next_hop` and send it out of the underlay.
#[inline(always)]
pub fn encapsulate(ctx: &TcContext, node: &NodeConfig, inner: &Ipv4Fields, next_hop: [u8; 4]) -> Outcome {
    let tunnel_mtu = node.tunnel_mtu();
    if largest_segment(ctx, inner) > tunnel_mtu {
        return too_big(ctx, node, inner, tunnel_mtu);
    }
    // Ask the FIB before touching the packet, so a failure still leaves it to the kernel intact.
    let hop = fib::lookup(ctx, node, next_hop)?;
    ctx.adjust_room(TUNNEL_OVERHEAD as i32, BPF_ADJ_ROOM_MAC, u64::from(BPF_F_ADJ_ROOM_ENCAP_L3_IPV4))
        .map_err(|_| Reason::PassEncapFailed)?;
    write_outer_header(ctx, node, inner, next_hop)?;
    ip::decrement_ttl_at(ctx, EthHdr::LEN + HEADER_LEN)?;
    if let NextHop::Resolved { smac, dmac, .. } = &hop {
        let eth: *mut EthHdr = parse::header_mut(ctx, 0).ok_or(Reason::DropRewriteFailed)?;
        // SAFETY: bounds-checked by `header_mut`.
        unsafe {
            (*eth).src_addr = *smac;
            (*eth).dst_addr = *dmac;
        }
    }
    Ok((fib::redirect(&hop), Reason::Encapsulated))
}

/// Remove the outer header (the packet must start Ethernet, outer IPv4, inner IPv4).
#[inline(always)]
pub fn decapsulate(ctx: &TcContext) -> Result<(), Reason> {
    ctx.adjust_room(-(TUNNEL_OVERHEAD as i32), BPF_ADJ_ROOM_MAC, u64::from(BPF_F_ADJ_ROOM_DECAP_L3_IPV4))
        .map_err(|_| Reason::PassEncapFailed)
}

/// A packet that will not fit once encapsulated: DF gets the ICMP a router sends, the rest the
/// kernel may fragment.
#[inline(always)]
fn too_big(ctx: &TcContext, node: &NodeConfig, inner: &Ipv4Fields, tunnel_mtu: u32) -> Outcome {
    if inner.dont_fragment() {
        icmp::frag_needed(ctx, node, tunnel_mtu as u16)
    } else {
        Err(Reason::PassTooBig)
    }
}

/// The IP length of the largest packet that will leave: the packet itself, or for a GSO
/// super-packet one segment (gso_size plus its IP and TCP/UDP headers).
#[inline(always)]
fn largest_segment(ctx: &TcContext, inner: &Ipv4Fields) -> u32 {
    // SAFETY: reading `gso_size` from the context is allowed for TC programs.
    let gso_size = unsafe { (*ctx.skb.skb).gso_size };
    if gso_size == 0 {
        return u32::from(inner.total_len);
    }
    gso_size + HEADER_LEN as u32 + transport_header_len(ctx, inner.protocol)
}

#[inline(always)]
fn transport_header_len(ctx: &TcContext, protocol: u8) -> u32 {
    let l4 = EthHdr::LEN + HEADER_LEN;
    match protocol {
        PROTO_TCP => match parse::header_mut::<[u8; 13]>(ctx, l4) {
            // SAFETY: bounds-checked by `header_mut`; byte 12 holds the data offset.
            Some(tcp) => u32::from(unsafe { (*tcp)[12] } >> 4) * 4,
            None => 20,
        },
        PROTO_UDP => 8,
        _ => 0,
    }
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
