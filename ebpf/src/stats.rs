//! Counting every outcome under its reason, and turning an outcome into a verdict.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use fastpath_common::Reason;

use crate::maps::FP_COUNTERS;

/// What a handler decided: `Ok((verdict, reason))` when it acted, `Err(reason)` when it handed
/// the packet to the kernel unchanged.
pub type Outcome = Result<(i32, Reason), Reason>;

/// Count the outcome and return its verdict. A handler that gave up (`Err`) never touched the
/// packet, so the kernel gets it as it came: fail open.
#[inline(always)]
pub fn finish(ctx: &TcContext, outcome: Outcome) -> i32 {
    let (verdict, reason) = outcome.unwrap_or_else(|reason| (TC_ACT_OK, reason));
    count(reason, ctx.len());
    verdict
}

#[inline(always)]
fn count(reason: Reason, bytes: u32) {
    if let Some(counter) = FP_COUNTERS.get_ptr_mut(reason.index()) {
        // SAFETY: the pointer is this CPU's slot of a per-CPU array; nothing else writes it while
        // this program runs (TC programs are not preempted on their CPU).
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += u64::from(bytes);
        }
    }
}
