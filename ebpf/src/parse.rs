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
