//! Every map the programs use. BTF-defined, so `bpftool map dump` shows field names.

use aya_ebpf::{btf_maps::PerCpuArray, macros::btf_map};
use fastpath_common::{maps::Counter, reason::COUNTER_SLOTS};

/// Packets and bytes per reason, per CPU (name: `fastpath_common::maps::COUNTERS`).
#[btf_map]
pub static FP_COUNTERS: PerCpuArray<Counter, { COUNTER_SLOTS as usize }> = PerCpuArray::new();
