//! Counting every outcome under its reason, and turning an outcome into a verdict.

use aya_ebpf::bindings::{TC_ACT_OK, TC_ACT_SHOT};
use fastpath_common::Reason;

use crate::{
    maps::FP_COUNTERS,
    monitor::{self, Watched},
};

/// What a handler decided: `Ok((verdict, reason))` when it acted, `Err(reason)` when it did
/// not: a drop reason drops the packet, any other hands it to the kernel unchanged (fail open).
pub type Outcome = Result<(i32, Reason), Reason>;

/// Count the outcome under `bytes` (the packet's length as it arrived), tell a watching
/// monitor, and return the verdict.
#[inline(always)]
pub fn finish(bytes: u32, outcome: Outcome, watched: Option<Watched>) -> i32 {
    let (verdict, reason) = outcome.unwrap_or_else(|reason| (verdict_of_refusal(reason), reason));
    count(reason, bytes);
    monitor::report(watched, verdict, reason);
    verdict
}

#[inline(always)]
fn verdict_of_refusal(reason: Reason) -> i32 {
    if reason.is_drop() {
        TC_ACT_SHOT
    } else {
        TC_ACT_OK
    }
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
