//! Answering a DF packet too big for the tunnel with ICMP "fragmentation needed", as a router
//! on the path would, so path-MTU discovery works even where the kernel's route has no tunnel MTU.
//!
//! The reply is written in place over the packet it answers: the packet is cut to the reply's
//! size, the quote (the offending IPv4 header and the 8 bytes after it) moved behind the ICMP
//! header, and the checksums summed by `bpf_csum_diff` over the packet itself, so no copy of the
//! reply ever sits on the program's stack (which every path that may answer "too big" shares).

use aya_ebpf::{
    helpers::{bpf_csum_diff, bpf_skb_change_tail},
    programs::TcContext,
};
use fastpath_common::{
    icmp::{self, QUOTE_LEN, REPLY_LEN},
    ipv4::HEADER_LEN,
    maps::NodeConfig,
    Reason, GATEWAY_MAC,
};
use network_types::eth::EthHdr;

use crate::{
    outcome::{self, Outcome, Packed},
    parse, skb,
};

const IP: usize = EthHdr::LEN;
const ICMP: usize = IP + HEADER_LEN;
/// Where the quote goes: behind the ICMP header's 8 bytes.
const QUOTE: usize = ICMP + 8;

/// Turn the packet into the ICMP reply and send it back to the pod it came from.
#[inline(always)]
pub fn frag_needed(ctx: &TcContext, node: &NodeConfig, mtu: u16) -> Outcome {
    outcome::unpack(reply(ctx, node, mtu))
}

/// A function of its own (a BPF subprogram), called from every path that may answer "too big".
#[inline(never)]
fn reply(ctx: &TcContext, node: &NodeConfig, mtu: u16) -> Packed {
    // Back out of the pod's `cali*`, i.e. into the pod.
    outcome::pack(rewrite(ctx, node, mtu).map(|()| (skb::back_out(ctx), Reason::IcmpFragNeeded)))
}

#[inline(always)]
fn rewrite(ctx: &TcContext, node: &NodeConfig, mtu: u16) -> Result<(), Reason> {
    let eth: *const EthHdr = parse::header_mut(ctx, 0).ok_or(Reason::PassTooBig)?;
    let source: *const [u8; 4] = parse::header_mut(ctx, IP + 12).ok_or(Reason::PassTooBig)?;
    // SAFETY: both bounds-checked by `header_mut`; copied before the packet changes.
    let (pod_mac, pod_ip) = unsafe { ((*eth).src_addr, *source) };
    // The packet keeps at least the reply's bytes (the caller found it too big for an MTU far
    // above that); cut it to them. On failure it is unchanged and goes to the kernel.
    // SAFETY: a plain helper call.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (EthHdr::LEN + REPLY_LEN) as u32, 0) } != 0 {
        return Err(Reason::PassTooBig);
    }
    // The quote first, from where the offending header is to behind the ICMP header: the two
    // places do not overlap.
    let from: *const [u8; QUOTE_LEN] = parse::header_mut(ctx, IP).ok_or(Reason::DropRewriteFailed)?;
    let to: *mut [u8; QUOTE_LEN] = parse::header_mut(ctx, QUOTE).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: both bounds-checked by `header_mut`, disjoint.
    unsafe { core::ptr::copy_nonoverlapping(from, to, 1) };
    let message: *mut [u8; 8] = parse::header_mut(ctx, ICMP).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: bounds-checked by `header_mut`.
    unsafe { *message = icmp::frag_needed_header(mtu) };
    let check = checksum_over::<{ icmp::MESSAGE_LEN }>(ctx, ICMP)?;
    // SAFETY: as above; the pointer is taken again after the helper call.
    let message: *mut [u8; 8] = parse::header_mut(ctx, ICMP).ok_or(Reason::DropRewriteFailed)?;
    let [high, low] = check.to_ne_bytes();
    unsafe {
        (*message)[2] = high;
        (*message)[3] = low;
    }
    let ip: *mut [u8; HEADER_LEN] = parse::header_mut(ctx, IP).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: bounds-checked by `header_mut`; the checksum field is 0 until summed.
    unsafe { *ip = icmp::reply_header_unsummed(node.node_ip, pod_ip) };
    let check = checksum_over::<HEADER_LEN>(ctx, IP)?;
    let ip: *mut [u8; HEADER_LEN] = parse::header_mut(ctx, IP).ok_or(Reason::DropRewriteFailed)?;
    let eth: *mut EthHdr = parse::header_mut(ctx, 0).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: both bounds-checked by `header_mut`.
    unsafe {
        let [high, low] = check.to_ne_bytes();
        (*ip)[10] = high;
        (*ip)[11] = low;
        (*eth).dst_addr = pod_mac;
        (*eth).src_addr = GATEWAY_MAC;
    }
    Ok(())
}

/// The Internet checksum of the `N` bytes at `offset` (`N` a multiple of 4, as
/// `bpf_csum_diff` wants), summed by the kernel over the packet itself.
#[inline(always)]
fn checksum_over<const N: usize>(ctx: &TcContext, offset: usize) -> Result<u16, Reason> {
    let bytes: *mut [u8; N] = parse::header_mut(ctx, offset).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: the pointer is to `N` bytes of the packet, bounds-checked by `header_mut`.
    let sum = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, bytes.cast(), N as u32, 0) };
    if sum < 0 {
        return Err(Reason::DropRewriteFailed);
    }
    Ok(icmp::fold(sum as u32))
}
