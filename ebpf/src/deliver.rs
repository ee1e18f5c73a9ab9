//! The last step of forwarding: rewrite the Ethernet header, decrement the TTL, redirect.

use aya_ebpf::{
    helpers::{bpf_redirect, bpf_redirect_peer},
    programs::TcContext,
};
use fastpath_common::{Reason, GATEWAY_MAC};
use network_types::eth::EthHdr;

use crate::{
    fib::{self, NextHop, NextHop6},
    ip,
    outcome::Outcome,
    parse,
};

/// Into the pod behind host-side `ifindex`: from ee:ee:ee:ee:ee:ee to the pod's MAC, TTL − 1,
/// then `bpf_redirect_peer`, which puts the packet straight on the pod's side of the veth
/// without a second pass through the host's stack (`skb_do_redirect` → peer ingress).
#[inline(always)]
pub fn to_pod(ctx: &TcContext, ifindex: u32, mac: [u8; 6], reason: Reason) -> Outcome {
    rewrite(ctx, GATEWAY_MAC, mac)?;
    // SAFETY: a plain helper call; with flags 0 it returns TC_ACT_REDIRECT.
    let verdict = unsafe { bpf_redirect_peer(ifindex, 0) } as i32;
    Ok((verdict, reason))
}

/// IPv6 into the pod behind host-side `ifindex`: from ee:ee:ee:ee:ee:ee to the pod's MAC, hop
/// limit − 1 (IPv6 has no header checksum to patch), then `bpf_redirect_peer`.
#[inline(always)]
pub fn to_pod_v6(ctx: &TcContext, ifindex: u32, mac: [u8; 6], reason: Reason) -> Outcome {
    rewrite6(ctx, GATEWAY_MAC, mac)?;
    // SAFETY: a plain helper call; with flags 0 it returns TC_ACT_REDIRECT.
    let verdict = unsafe { bpf_redirect_peer(ifindex, 0) } as i32;
    Ok((verdict, reason))
}

/// IPv6 into this node's `vxlan-v6.calico` (`ifindex`, MAC `src`) for it to encapsulate: inner
/// Ethernet from the device to the other node's VTEP MAC `dst` (the device's FDB finds the node
/// by it), hop limit − 1, then `bpf_redirect` to the device's transmit, past the kernel's
/// forwarding.
#[inline(always)]
pub fn to_device_v6(ctx: &TcContext, ifindex: u32, src: [u8; 6], dst: [u8; 6]) -> Outcome {
    rewrite6(ctx, src, dst)?;
    // SAFETY: a plain helper call; with flags 0 (egress) it returns TC_ACT_REDIRECT.
    let verdict = unsafe { bpf_redirect(ifindex, 0) } as i32;
    Ok((verdict, Reason::Vxlan6ByDevice))
}

/// IPv6 out of the underlay toward `hop`, unencapsulated: with its MACs when the kernel knows
/// them (else `bpf_redirect_neigh` resolves them on the way out), hop limit − 1.
#[inline(always)]
pub fn to_hop6(ctx: &TcContext, hop: &NextHop6) -> Outcome {
    // The hop limit is byte 7 of the IPv6 header; the walk checked it is above 1.
    let hop_limit: *mut u8 = parse::header_mut(ctx, EthHdr::LEN + 7).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: bounds-checked by `header_mut`.
    unsafe { *hop_limit -= 1 };
    send6(ctx, hop, Reason::RoutedUnderlay)
}

/// [`send`] for an IPv6 next hop.
#[inline(always)]
pub fn send6(ctx: &TcContext, hop: &NextHop6, reason: Reason) -> Outcome {
    if let NextHop6::Resolved { smac, dmac, .. } = hop {
        let eth: *mut EthHdr = parse::header_mut(ctx, 0).ok_or(Reason::DropRewriteFailed)?;
        // SAFETY: bounds-checked by `header_mut`.
        unsafe {
            (*eth).src_addr = *smac;
            (*eth).dst_addr = *dmac;
        }
    }
    Ok((fib::redirect6(hop), reason))
}

/// Out of the underlay toward `hop`, unencapsulated: with its MAC when the kernel knows it
/// (else `bpf_redirect_neigh` resolves it on the way out), TTL − 1.
#[inline(always)]
pub fn to_hop(ctx: &TcContext, hop: &NextHop) -> Outcome {
    match hop {
        NextHop::Resolved { smac, dmac, .. } => rewrite(ctx, *smac, *dmac)?,
        NextHop::Unresolved { .. } => ip::decrement_ttl_at(ctx, EthHdr::LEN)?,
    }
    Ok((fib::redirect(hop), Reason::RoutedUnderlay))
}

/// New MACs and hop limit − 1 on the IPv6 packet after the Ethernet header (IPv6 has no header
/// checksum to patch).
#[inline(always)]
fn rewrite6(ctx: &TcContext, src: [u8; 6], dst: [u8; 6]) -> Result<(), Reason> {
    let eth: *mut EthHdr = parse::header_mut(ctx, 0).ok_or(Reason::DropRewriteFailed)?;
    // The hop limit is byte 7 of the IPv6 header; the walk checked it is above 1.
    let hop_limit: *mut u8 = parse::header_mut(ctx, EthHdr::LEN + 7).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: both bounds-checked by `header_mut`.
    unsafe {
        (*eth).src_addr = src;
        (*eth).dst_addr = dst;
        *hop_limit -= 1;
    }
    Ok(())
}

/// New MACs and TTL − 1 on the IPv4 packet after the Ethernet header.
#[inline(always)]
pub fn rewrite(ctx: &TcContext, src: [u8; 6], dst: [u8; 6]) -> Result<(), Reason> {
    let eth: *mut EthHdr = parse::header_mut(ctx, 0).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: bounds-checked by `header_mut`.
    unsafe {
        (*eth).src_addr = src;
        (*eth).dst_addr = dst;
    }
    ip::decrement_ttl_at(ctx, EthHdr::LEN)
}

/// Send an encapsulated packet out of the underlay toward `hop`, with the next hop's MAC when
/// the kernel knows it (else `bpf_redirect_neigh` resolves it on the way out).
#[inline(always)]
pub fn send(ctx: &TcContext, hop: &NextHop, reason: Reason) -> Outcome {
    if let NextHop::Resolved { smac, dmac, .. } = hop {
        let eth: *mut EthHdr = parse::header_mut(ctx, 0).ok_or(Reason::DropRewriteFailed)?;
        // SAFETY: bounds-checked by `header_mut`.
        unsafe {
            (*eth).src_addr = *smac;
            (*eth).dst_addr = *dmac;
        }
    }
    Ok((fib::redirect(hop), reason))
}
