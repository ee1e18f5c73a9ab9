//! The skb's own fields (`struct __sk_buff`, as a TC program sees them), read in one place, and
//! the one redirect that needs nothing but them: back out of the interface the packet came in on.

use aya_ebpf::{helpers::bpf_redirect, programs::TcContext};

/// The interface the program runs on: the one the packet arrived on (ingress), or the one it
/// leaves by (egress).
#[inline(always)]
pub fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: reading `ifindex` from the context is always allowed for TC programs.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// The packet's length, linear data and fragments together.
#[inline(always)]
pub fn len(ctx: &TcContext) -> u32 {
    ctx.len()
}

/// For a GSO super-packet, the payload size of each segment it will be cut into; 0 otherwise.
#[inline(always)]
pub fn gso_size(ctx: &TcContext) -> u32 {
    // SAFETY: reading `gso_size` from the context is allowed for TC programs.
    unsafe { (*ctx.skb.skb).gso_size }
}

/// The flow hash the sender's socket gave the packet (`skb->hash`), or 0 when it has none.
#[inline(always)]
pub fn hash(ctx: &TcContext) -> u32 {
    // SAFETY: reading `hash` from the context is allowed for TC programs.
    unsafe { (*ctx.skb.skb).hash }
}

/// Send the packet back out of the interface it came in on: a `cali*` device's egress is the
/// pod's ingress, so an answer (an ARP reply, an ICMP error) goes into the pod that asked. With
/// no flags, `bpf_redirect` cannot fail and returns TC_ACT_REDIRECT.
#[inline(always)]
pub fn back_out(ctx: &TcContext) -> i32 {
    // SAFETY: a plain helper call: bpf_redirect only records the target for `skb_do_redirect`.
    unsafe { bpf_redirect(ifindex(ctx), 0) as i32 }
}
