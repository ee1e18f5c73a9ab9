//! What a handler decided, and the verdict that follows from it.

use aya_ebpf::bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC};
use fastpath_common::Reason;

/// The verdict that hands a packet on unchanged: to the next tcx program, then the classic tc
/// filters (`sch_handle_ingress` and `sch_handle_egress` run them only after `TC_ACT_UNSPEC`,
/// tcx's `TCX_NEXT`; `TC_ACT_OK` would end classification and skip them, a bandwidth limit's
/// mirred redirect among them), then the stack. Under legacy tc it continues with the next
/// filter, as well.
pub const PASS: i32 = TC_ACT_UNSPEC;

/// What a handler decided: `Ok((verdict, reason))` when it acted, `Err(reason)` when it did
/// not: a drop reason drops the packet, any other hands it to the kernel unchanged (fail open).
pub type Outcome = Result<(i32, Reason), Reason>;

/// The verdict and the reason of an outcome: a refusal's verdict follows from its reason.
#[inline(always)]
pub fn decided(outcome: Outcome) -> (i32, Reason) {
    outcome.unwrap_or_else(|reason| (verdict_of_refusal(reason), reason))
}

#[inline(always)]
fn verdict_of_refusal(reason: Reason) -> i32 {
    if reason.is_drop() {
        TC_ACT_SHOT
    } else {
        PASS
    }
}

/// An [`Outcome`] as one integer, for a BPF subprogram (a function kept out of line so that its
/// values do not sit in its caller's stack frame, which the kernel limits to 512 bytes for the
/// whole call chain) to return: the kernel refuses the BTF rustc writes for a `Result` carrying
/// data (a union member at a non-zero offset), and with it every map of the object.
pub type Packed = u64;

/// In the low word beside the reason's code; the verdict is the high word.
const ACTED: u64 = 1 << 31;

#[inline(always)]
pub fn pack(outcome: Outcome) -> Packed {
    match outcome {
        Ok((verdict, reason)) => ACTED | u64::from(verdict as u32) << 32 | u64::from(reason.index()),
        Err(reason) => u64::from(reason.index()),
    }
}

#[inline(always)]
pub fn unpack(packed: Packed) -> Outcome {
    let code = packed as u32 & !(ACTED as u32);
    let reason = if code < Reason::COUNT as u32 {
        // SAFETY: `Reason` is `repr(u32)` with the codes 0..COUNT, each a variant (checked where
        // it is defined).
        unsafe { core::mem::transmute::<u32, Reason>(code) }
    } else {
        Reason::DropRewriteFailed
    };
    if packed & ACTED != 0 {
        Ok(((packed >> 32) as u32 as i32, reason))
    } else {
        Err(reason)
    }
}
