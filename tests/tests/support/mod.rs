//! What the BPF_PROG_TEST_RUN suites share: running a program once and reading a counter.

use aya::{
    maps::PerCpuArray,
    programs::{TestRun as _, TestRunOptions},
    Ebpf,
};
use fastpath::loader;
use fastpath_common::{
    maps::{Counter, COUNTERS},
    Reason,
};

pub const TC_ACT_OK: u32 = 0;
#[allow(dead_code, reason = "not every suite drops packets")]
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

/// Run `program` once on `frame` (a second run would see the already rewritten packet); return
/// the verdict and the frame as it left the program, with room for it to grow.
pub fn run(ebpf: &mut Ebpf, program: &'static str, frame: &[u8]) -> (u32, Vec<u8>) {
    let program = loader::classifier(ebpf, program).expect("program");
    let mut out = vec![0u8; frame.len() + 256];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.data_out = Some(&mut out);
    let result = program.test_run(opts).expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

/// Packets counted under `reason`, over every CPU.
pub fn count(ebpf: &Ebpf, reason: Reason) -> u64 {
    let map: PerCpuArray<_, Counter> =
        PerCpuArray::try_from(ebpf.map(COUNTERS).expect("counters map")).unwrap();
    fastpath::stats::totals(&map).unwrap().iter().find(|t| t.reason == reason).unwrap().total.packets
}
