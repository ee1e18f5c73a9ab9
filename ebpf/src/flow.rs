//! `--trust kernel` in the programs: the flow tables' one write the walk may ask for besides the
//! entry it holds (`walk.rs` `Maps::settle`, `Maps::settle6`). The gates themselves are
//! `fastpath_common::pipeline`'s, their decisions `fastpath_common::flow`'s and `flow6`'s.

use fastpath_common::{
    flow::{FlowKey, FlowState},
    flow6::FlowKey6,
};

use crate::maps::{FP_FLOWS, FP_FLOWS6};

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

/// [`close`] for an IPv6 direction.
#[inline(never)]
pub fn close6(key: &FlowKey6) {
    if let Some(entry) = FP_FLOWS6.get_ptr_mut(*key) {
        // SAFETY: a live map value; a state byte, written whole.
        unsafe { (*entry).state = FlowState::Closing as u8 };
    }
}
