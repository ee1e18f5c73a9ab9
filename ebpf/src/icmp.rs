//! Answering a DF packet too big for the tunnel with ICMP "fragmentation needed", as a router
//! on the path would, so path-MTU discovery works even where the kernel's route has no tunnel MTU.

use aya_ebpf::{
    helpers::{bpf_redirect, bpf_skb_change_tail},
    programs::TcContext,
};
use fastpath_common::{
    icmp::{self, QUOTE_LEN, REPLY_LEN},
    ipv4::HEADER_LEN,
    maps::NodeConfig,
    Reason, GATEWAY_MAC,
};
use network_types::eth::EthHdr;

use crate::{parse, stats::Outcome};

/// Turn the packet into the ICMP reply (trimmed to its size, rewritten in place) and send it
/// back to the pod it came from.
#[inline(always)]
pub fn frag_needed(ctx: &TcContext, node: &NodeConfig, mtu: u16) -> Outcome {
    let quote_ptr: *const [u8; QUOTE_LEN] = parse::header_mut(ctx, EthHdr::LEN).ok_or(Reason::PassTooBig)?;
    let eth_ptr: *const EthHdr = parse::header_mut(ctx, 0).ok_or(Reason::PassTooBig)?;
    // SAFETY: both bounds-checked by `header_mut`; copied before the packet changes.
    let (quote, pod_mac) = unsafe { (*quote_ptr, (*eth_ptr).src_addr) };
    let pod_ip = [quote[12], quote[13], quote[14], quote[15]];

    // SAFETY: a plain helper call. On failure the packet is unchanged and goes to the kernel.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (EthHdr::LEN + REPLY_LEN) as u32, 0) } != 0 {
        return Err(Reason::PassTooBig);
    }
    let eth: *mut EthHdr = parse::header_mut(ctx, 0).ok_or(Reason::DropRewriteFailed)?;
    let ip: *mut [u8; HEADER_LEN] = parse::header_mut(ctx, EthHdr::LEN).ok_or(Reason::DropRewriteFailed)?;
    let message: *mut [u8; icmp::MESSAGE_LEN] =
        parse::header_mut(ctx, EthHdr::LEN + HEADER_LEN).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: all three bounds-checked by `header_mut` after the resize.
    unsafe {
        (*eth).dst_addr = pod_mac;
        (*eth).src_addr = GATEWAY_MAC;
        *ip = icmp::reply_header(node.node_ip, pod_ip);
        *message = icmp::frag_needed_message(&quote, mtu);
    }
    // SAFETY: a plain helper call: back out of the pod's `cali*`, i.e. into the pod.
    let verdict = unsafe { bpf_redirect(parse::device_ifindex(ctx), 0) } as i32;
    Ok((verdict, Reason::IcmpFragNeeded))
}
