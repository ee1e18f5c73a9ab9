//! Counting every outcome under its reason.

use fastpath_common::Reason;

use crate::{
    maps::FP_COUNTERS,
    monitor::{self, Watched},
    outcome::{self, Outcome},
};

/// Count the outcome under `bytes` (the packet's length as it arrived), tell a watching
/// monitor, and return the verdict.
#[inline(always)]
pub fn finish(bytes: u32, outcome: Outcome, watched: Option<Watched>) -> i32 {
    let (verdict, reason) = outcome::decided(outcome);
    count(reason, bytes);
    monitor::report(watched, verdict, reason);
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
