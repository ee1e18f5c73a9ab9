//! Bounds-checked access to packet headers in the linear part of the skb.

use core::mem::size_of;

use aya_ebpf::programs::TcContext;

/// A pointer to a `T` at `offset` bytes into the packet, or `None` when the packet's linear data
/// is too short. The comparison against `data_end` is what lets the verifier accept the access.
#[inline(always)]
pub fn header_mut<T>(ctx: &TcContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// The interface the program runs on: the one the packet arrived on (ingress), or the one it
/// leaves by (egress).
#[inline(always)]
pub fn device_ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: reading `ifindex` from the context is always allowed for TC programs.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// The payload size of each segment of a GSO super-packet; 0 for a plain packet.
#[inline(always)]
pub fn gso_size(ctx: &TcContext) -> u32 {
    // SAFETY: reading `gso_size` from the context is allowed for TC programs.
    unsafe { (*ctx.skb.skb).gso_size }
}
