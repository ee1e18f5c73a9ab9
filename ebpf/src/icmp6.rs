//! Answering an IPv6 packet too big for the way out with ICMPv6 "packet too big", as a router
//! must (RFC 8200 §5: IPv6 is never fragmented on the way), written in place over the packet it
//! answers as `icmp.rs` writes IPv4's "fragmentation needed": the packet is cut to the reply's
//! size, its fixed header and the 8 bytes after it moved behind the ICMPv6 header, and the
//! checksum summed by `bpf_csum_diff` over the packet itself.

use aya_ebpf::{
    helpers::{bpf_csum_diff, bpf_skb_change_tail},
    programs::TcContext,
};
use fastpath_common::{
    ipv6::{self, HEADER_LEN, NEXT_ICMPV6, TOO_BIG_MESSAGE_LEN, TOO_BIG_QUOTE_LEN},
    Reason, GATEWAY_MAC,
};
use network_types::eth::EthHdr;

use crate::{
    maps,
    outcome::{self, Outcome, Packed},
    parse, skb,
};

const IP: usize = EthHdr::LEN;
const ICMP: usize = IP + HEADER_LEN;
/// Where the quote goes: behind the ICMPv6 header's 8 bytes.
const QUOTE: usize = ICMP + 8;
/// The reply's frame: Ethernet, IPv6, the message.
const FRAME_LEN: usize = ICMP + TOO_BIG_MESSAGE_LEN;
/// What the checksum sums where it lies: the reply's addresses and its message, one run of bytes.
const SUMMED: usize = IP + 8;
const SUMMED_LEN: usize = FRAME_LEN - SUMMED;

/// Turn the packet into "packet too big" with `mtu` and send it back to the pod it came from.
#[inline(always)]
pub fn packet_too_big(ctx: &TcContext, mtu: u32) -> Outcome {
    outcome::unpack(reply(ctx, mtu))
}

/// A function of its own (a BPF subprogram), as `icmp.rs`'s reply is.
#[inline(never)]
fn reply(ctx: &TcContext, mtu: u32) -> Packed {
    // Back out of the pod's `cali*`, i.e. into the pod.
    outcome::pack(rewrite(ctx, mtu).map(|()| (skb::back_out(ctx), Reason::Icmp6PacketTooBig)))
}

#[inline(always)]
fn rewrite(ctx: &TcContext, mtu: u32) -> Result<(), Reason> {
    // The reply comes from this node's IPv6 address (the walk found it written), as the kernel's
    // source address selection picks a global one for a pod's global destination.
    let node6 = maps::node6().ok_or(Reason::PassTooBig)?;
    // A packet shorter than the reply is not one too big for any MTU IPv6 allows: the kernel's.
    if skb::len(ctx) < FRAME_LEN as u32 {
        return Err(Reason::PassTooBig);
    }
    let eth: *const EthHdr = parse::header_mut(ctx, 0).ok_or(Reason::PassTooBig)?;
    // SAFETY: bounds-checked by `header_mut`; copied before the packet changes.
    let pod_mac = unsafe { (*eth).src_addr };
    // Cut it to the reply's bytes (the helper makes them linear). On failure it is unchanged and
    // goes to the kernel, which answers it.
    // SAFETY: a plain helper call.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, FRAME_LEN as u32, 0) } != 0 {
        return Err(Reason::PassTooBig);
    }
    let from: *const [u8; TOO_BIG_QUOTE_LEN] = parse::header_mut(ctx, IP).ok_or(Reason::DropRewriteFailed)?;
    let to: *mut [u8; TOO_BIG_QUOTE_LEN] = parse::header_mut(ctx, QUOTE).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: both bounds-checked by `header_mut`, disjoint (the quote ends where it goes).
    unsafe { core::ptr::copy_nonoverlapping(from, to, 1) };
    let message: *mut [u8; 8] = parse::header_mut(ctx, ICMP).ok_or(Reason::DropRewriteFailed)?;
    let start: *mut [u8; 8] = parse::header_mut(ctx, IP).ok_or(Reason::DropRewriteFailed)?;
    let src: *mut [u8; 16] = parse::header_mut(ctx, IP + 8).ok_or(Reason::DropRewriteFailed)?;
    let dst: *mut [u8; 16] = parse::header_mut(ctx, IP + 24).ok_or(Reason::DropRewriteFailed)?;
    // The pod's address, the quoted header's source.
    let pod: *const [u8; 16] = parse::header_mut(ctx, QUOTE + 8).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: all bounds-checked by `header_mut`; the quote is not among what is written.
    unsafe {
        *message = ipv6::too_big_message_header(mtu);
        *start = ipv6::too_big_header_start();
        *src = node6.node_ip;
        core::ptr::copy_nonoverlapping(pod, dst, 1);
    }
    let summed: *mut [u8; SUMMED_LEN] = parse::header_mut(ctx, SUMMED).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: the pointer is to `SUMMED_LEN` bytes of the packet, bounds-checked by `header_mut`.
    let sum = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, summed.cast(), SUMMED_LEN as u32, 0) };
    if sum < 0 {
        return Err(Reason::DropRewriteFailed);
    }
    // The kernel sums the machine's own 16-bit words: folded, its bytes are the big-endian sum's.
    let sum = sum as u32;
    let sum = (sum & 0xffff) + (sum >> 16);
    let folded = ((sum & 0xffff) + (sum >> 16)) as u16;
    let summed = u32::from(u16::from_be_bytes(folded.to_ne_bytes()));
    let check = ipv6::checksum_with_pseudo_rest(summed, TOO_BIG_MESSAGE_LEN as u32, NEXT_ICMPV6);
    let field: *mut [u8; 2] = parse::header_mut(ctx, ICMP + 2).ok_or(Reason::DropRewriteFailed)?;
    let eth: *mut EthHdr = parse::header_mut(ctx, 0).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: both bounds-checked by `header_mut`.
    unsafe {
        *field = check.to_be_bytes();
        (*eth).dst_addr = pod_mac;
        (*eth).src_addr = GATEWAY_MAC;
    }
    Ok(())
}
