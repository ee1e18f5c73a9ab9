//! `--trust kernel` in the programs: the flow table's one write the walk may ask for besides the
//! entry it holds (`walk.rs` `Maps::settle`). The gate itself is `fastpath_common::pipeline`'s,
//! its decisions `fastpath_common::flow`'s.

use fastpath_common::flow::{FlowKey, FlowState};

use crate::maps::FP_FLOWS;

/// Hand the direction `key` to the kernel from its next packet on, if the table holds it.
///
/// A subprogram of its own: inlined, its map lookup's frame would sit on `from_pod`'s stack,
/// already near the verifier's 512 bytes.
#[inline(never)]
pub fn close(key: &FlowKey) {
    if let Some(entry) = FP_FLOWS.get_ptr_mut(*key) {
        // SAFETY: a live map value; a state byte, written whole.
        unsafe { (*entry).state = FlowState::Closing as u8 };
    }
}
