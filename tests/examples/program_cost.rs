//! What each decision of the programs costs, by itself: every kind of frame through its program
//! with BPF_PROG_TEST_RUN, thousands of times, over the maps of a filled node (the BPF suites'
//! node, `tests/tests/support`), and the kernel's own timing of each run. Each run starts from
//! the crafted frame again (a redirect would change it), so the figures include the test run's
//! two clock reads (the `baseline` line: a frame the programs reject at once) and no hook
//! dispatch; compare decisions with each other and one build with another, not with
//! `kernel.bpf_stats_enabled`'s figures from live traffic.
//!
//! Beside BPF_PROG_TEST_RUN's timing (p10, median, p90), the last column is what the kernel's
//! own accounting (`kernel.bpf_stats_enabled`, turned on for it alone) reports per run of the same
//! decision: the figure `cargo xtask bench` reads from live traffic, here with warm caches, and
//! including the accounting's own clock read.
//!
//! `cargo run --release -p fastpath-tests --example program_cost` (as root, after `cargo xtask
//! build`; `FASTPATH_COST_RUNS` sets the runs per decision, 20 000 by default). `cargo xtask bench`
//! runs it after the traffic measurements.

#[path = "../tests/support/mod.rs"]
mod support;

use aya::Ebpf;
use fastpath::dataplane::loader::{self, FROM_POD, FROM_UNDERLAY, TO_POD, TO_UNDERLAY};
use fastpath_common::FAST_PATH_MARK;
use fastpath_tests::packets::{self, TCP_ACK};
use support::*;

/// One decision to time: its name, the program, the frame, whether `--trust kernel` is on, and
/// the packet's `skb->mark`.
struct Case {
    name: &'static str,
    program: &'static str,
    frame: Vec<u8>,
    trust_kernel: bool,
    mark: u32,
}

fn tcp(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    packets::tcp_segment(addr(src), addr(dst), (40000, 5201), TCP_ACK)
}

fn cases() -> Vec<Case> {
    let pod = |src, dst| packets::pod_frame(&tcp(src, dst));
    let tunnelled = |src, dst| ipip_frame(PEER_IP, NODE_IP, &tcp(src, dst));
    let case = |name, program, frame, trust_kernel| Case { name, program, frame, trust_kernel, mark: 0 };
    let mut cases = vec![case("baseline: not IPv4 or ARP (from_pod)", FROM_POD, ipv6_frame(), false)];
    for trust_kernel in [false, true] {
        let mode = |routes: &'static str, kernel: &'static str| if trust_kernel { kernel } else { routes };
        cases.extend([
            case(
                mode("same node, redirected (routes)", "same node, redirected (kernel, approved)"),
                FROM_POD,
                pod(POD, OTHER_LOCAL_POD),
                trust_kernel,
            ),
            case(
                mode("cross node, IPIP (routes)", "cross node, IPIP (kernel, approved)"),
                FROM_POD,
                pod(POD, REMOTE_POD),
                trust_kernel,
            ),
            case(
                mode("cross node, plain (routes)", "cross node, plain (kernel, approved)"),
                FROM_POD,
                pod(POD, [10, 244, 7, 9]),
                trust_kernel,
            ),
            case(
                mode("decapsulated (routes)", "decapsulated (kernel, approved)"),
                FROM_UNDERLAY,
                tunnelled(REMOTE_POD, POD),
                trust_kernel,
            ),
            case(
                mode("cross node, VXLAN (routes)", "cross node, VXLAN (kernel, approved)"),
                FROM_POD,
                pod(POD, VXLAN_POD),
                trust_kernel,
            ),
            case(
                mode("VXLAN decapsulated (routes)", "VXLAN decapsulated (kernel, approved)"),
                FROM_UNDERLAY,
                vxlan_from_peer(&tcp(VXLAN_POD, POD)),
                trust_kernel,
            ),
        ]);
    }
    cases.extend([
        case("no route (source check passed)", FROM_POD, pod(POD, [8, 8, 8, 8]), false),
        case("source not a pod's (service)", FROM_POD, pod([10, 96, 0, 10], OTHER_LOCAL_POD), false),
        case(
            "IPIP, inner source checked, not for a pod here",
            FROM_UNDERLAY,
            tunnelled(REMOTE_POD, [10, 244, 166, 151]),
            false,
        ),
        case("IPIP, inner source foreign", FROM_UNDERLAY, tunnelled([10, 244, 9, 9], POD), false),
        case("plain underlay traffic (routes)", FROM_UNDERLAY, plain_underlay(), false),
        case("plain underlay traffic (kernel)", FROM_UNDERLAY, plain_underlay(), true),
        case("egress: IPIP leaving, unmarked (kernel)", TO_UNDERLAY, own_ipip(), true),
        Case {
            mark: FAST_PATH_MARK,
            ..case("egress: the fast path's IPIP leaving (kernel)", TO_UNDERLAY, own_ipip(), true)
        },
        case("egress: kernel delivering to a pod (kernel)", TO_POD, pod(REMOTE_POD, POD), true),
    ]);
    cases
}

fn ipv6_frame() -> Vec<u8> {
    let mut frame = packets::ethernet([0xee; 6], packets::POD_MAC, packets::ETH_P_IPV6);
    frame.resize(14 + 40, 0);
    frame
}

fn plain_underlay() -> Vec<u8> {
    let mut frame = packets::ethernet([2, 0, 0, 0, 0, 0x50], PEER_MAC, packets::ETH_P_IP);
    frame.extend(tcp(REMOTE_POD, POD));
    frame
}

/// This node's IPIP to the next node, as the fast path sends it out of the underlay.
fn own_ipip() -> Vec<u8> {
    let mut frame = packets::ethernet(PEER_MAC, [2, 0, 0, 0, 0, 0x50], packets::ETH_P_IP);
    frame.extend(packets::ipv4_packet(addr(NODE_IP), addr(PEER_IP), 64, 4, &tcp(POD, REMOTE_POD)));
    frame
}

/// The kernel's time for one run of `program` on `frame` with `mark`, in nanoseconds.
fn time_once(ebpf: &mut Ebpf, program: &'static str, frame: &[u8], mark: u32) -> u64 {
    run_marked_timed(ebpf, program, frame, mark).3
}

/// Let the flows of `case` be approved, as the kernel forwarding their first packets would.
fn approve(ebpf: &mut Ebpf, case: &Case) {
    let _ = try_run(ebpf, case.program, &case.frame);
    let inner = match case.program {
        // The inner IPv4 packet starts after the outer Ethernet, IPv4 and (for VXLAN) UDP, VXLAN
        // and inner Ethernet headers.
        FROM_UNDERLAY if case.frame[23] == 17 => packets::pod_frame(&case.frame[14 + 50..]),
        FROM_UNDERLAY => packets::pod_frame(&case.frame[34..]),
        _ => case.frame.clone(),
    };
    for egress in [TO_POD, TO_UNDERLAY] {
        let _ = try_run(ebpf, egress, &inner);
    }
}

/// The kernel's own accounting (`kernel.bpf_stats_enabled`), on while it lives, back to what it
/// was afterwards.
struct BpfStats(String);

impl BpfStats {
    const PATH: &'static str = "/proc/sys/kernel/bpf_stats_enabled";

    fn enable() -> Self {
        let before = std::fs::read_to_string(Self::PATH).expect("bpf_stats_enabled").trim().to_string();
        std::fs::write(Self::PATH, "1").expect("bpf_stats_enabled");
        Self(before)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, &self.0);
    }
}

/// What `kernel.bpf_stats_enabled` reports per run of `case`'s program over `runs` runs: the
/// figure `cargo xtask bench` takes from live traffic, here for one decision with warm caches.
fn accounted(ebpf: &mut Ebpf, case: &Case, runs: usize) -> u64 {
    let info =
        |ebpf: &mut Ebpf| loader::classifier(ebpf, case.program).expect("program").info().expect("info");
    let _stats = BpfStats::enable();
    let before = info(ebpf);
    for _ in 0..runs {
        time_once(ebpf, case.program, &case.frame, case.mark);
    }
    let after = info(ebpf);
    let time = after.run_time().saturating_sub(before.run_time()).as_nanos() as u64;
    time / (after.run_count() - before.run_count()).max(1)
}

fn main() {
    let runs: usize = std::env::var("FASTPATH_COST_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(20_000);
    in_node(move |ebpf, _| {
        println!(
            "{:<52} {:>6} {:>6} {:>6} {:>11}",
            "decision (ns per run)", "p10", "median", "p90", "bpf_stats"
        );
        for case in cases() {
            if case.trust_kernel {
                trust_kernel(ebpf, 60);
                approve(ebpf, &case);
            } else {
                trust_routes(ebpf);
            }
            let mut times: Vec<u64> =
                (0..runs).map(|_| time_once(ebpf, case.program, &case.frame, case.mark)).collect();
            times.sort_unstable();
            let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
            let accounted = accounted(ebpf, &case, runs);
            println!("{:<52} {:>6} {:>6} {:>6} {:>11}", case.name, at(0.1), at(0.5), at(0.9), accounted);
        }
    });
}
