//! The TTL a router decrements, in place.

use aya_ebpf::programs::TcContext;
use fastpath_common::{
    ipv4::{self, HEADER_LEN},
    Reason,
};

use crate::parse;

/// Decrement the TTL of the IPv4 header at `offset` and patch its checksum incrementally, as the
/// kernel's `ip_decrease_ttl` does. Callers have checked TTL > 1.
#[inline(always)]
pub fn decrement_ttl_at(ctx: &TcContext, offset: usize) -> Result<(), Reason> {
    let header: *mut [u8; HEADER_LEN] = parse::header_mut(ctx, offset).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: bounds-checked by `header_mut`.
    let header = unsafe { &mut *header };
    let check = ipv4::checksum_after_ttl_decrement([header[10], header[11]]);
    header[8] -= 1;
    header[10] = check[0];
    header[11] = check[1];
    Ok(())
}
