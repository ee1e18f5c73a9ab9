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
use fastpath::dataplane::loader::{self, FROM_POD, FROM_UNDERLAY};
use fastpath_common::{
    flow::{Arrival, Arrived, FlowKey},
    flow6::{Arrived6, FlowKey6},
    ndp::captured,
};
use fastpath_tests::packets::{self, TCP_ACK};
use support::*;

/// One decision to time: its name, the program, the frame, and under `--trust kernel` the flow
/// directions the daemon would have approved for it (key, arrival, and the tuple it leaves with;
/// for IPv6, key and arrival).
struct Case {
    name: &'static str,
    program: &'static str,
    frame: Vec<u8>,
    trust_kernel: bool,
    approved: Vec<(FlowKey, Arrived, FlowKey)>,
    approved6: Vec<(FlowKey6, Arrived6)>,
}

const PORTS: (u16, u16) = (40000, 5201);

fn tcp(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    packets::tcp_segment(addr(src), addr(dst), PORTS, TCP_ACK)
}

fn key(src: [u8; 4], dst: [u8; 4]) -> FlowKey {
    FlowKey::new(src, dst, 6, PORTS)
}

fn cases() -> Vec<Case> {
    let pod = |src, dst| packets::pod_frame(&tcp(src, dst));
    let tunnelled = |src, dst| ipip_frame(PEER_IP, NODE_IP, &tcp(src, dst));
    let case = |name, program, frame| Case {
        name,
        program,
        frame,
        trust_kernel: false,
        approved: Vec::new(),
        approved6: Vec::new(),
    };
    // Under --trust kernel, the same frame with its direction approved as it arrives, unchanged.
    let approved = |name, program, frame, key: FlowKey, arrived| Case {
        name,
        program,
        frame,
        trust_kernel: true,
        approved: vec![(key, arrived, key)],
        approved6: Vec::new(),
    };
    let here = Arrived::from_pod(TEST_IFINDEX);
    let ipip = Arrived::from_underlay(Arrival::Ipip, PEER_IP);
    let vxlan = Arrived::from_underlay(Arrival::Vxlan, PEER_IP);
    let mut cases = vec![
        case("baseline: not IPv4, IPv6 or ARP (from_pod)", FROM_POD, lldp_frame()),
        case("same node, redirected (routes)", FROM_POD, pod(POD, OTHER_LOCAL_POD)),
        case("IPv6 same node, redirected (routes)", FROM_POD, packets::ipv6_frame(POD6, OTHER6, 64, 58)),
        case("IPv6 neighbour solicitation answered", FROM_POD, captured::GATEWAY_NS.to_vec()),
        case("cross node, IPIP (routes)", FROM_POD, pod(POD, REMOTE_POD)),
        case("cross node, plain (routes)", FROM_POD, pod(POD, [10, 244, 7, 9])),
        case("decapsulated (routes)", FROM_UNDERLAY, tunnelled(REMOTE_POD, POD)),
        case("cross node, VXLAN (routes)", FROM_POD, pod(POD, VXLAN_POD)),
        case("VXLAN decapsulated (routes)", FROM_UNDERLAY, vxlan_from_peer(&tcp(VXLAN_POD, POD))),
        case("IPv6 cross node, plain (routes)", FROM_POD, tcp6(POD6, PLAIN6_POD, 0)),
        case("IPv6 cross node, VXLAN (routes)", FROM_POD, tcp6(POD6, VXLAN6_POD, 0)),
        case(
            "IPv6 VXLAN decapsulated (routes)",
            FROM_UNDERLAY,
            vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &tcp6(VXLAN6_POD, POD6, 0)[14..]),
        ),
        approved(
            "same node, redirected (kernel, approved)",
            FROM_POD,
            pod(POD, OTHER_LOCAL_POD),
            key(POD, OTHER_LOCAL_POD),
            here,
        ),
        approved(
            "cross node, IPIP (kernel, approved)",
            FROM_POD,
            pod(POD, REMOTE_POD),
            key(POD, REMOTE_POD),
            here,
        ),
        approved(
            "cross node, plain (kernel, approved)",
            FROM_POD,
            pod(POD, [10, 244, 7, 9]),
            key(POD, [10, 244, 7, 9]),
            here,
        ),
        approved(
            "decapsulated (kernel, approved)",
            FROM_UNDERLAY,
            tunnelled(REMOTE_POD, POD),
            key(REMOTE_POD, POD),
            ipip,
        ),
        approved(
            "cross node, VXLAN (kernel, approved)",
            FROM_POD,
            pod(POD, VXLAN_POD),
            key(POD, VXLAN_POD),
            here,
        ),
        approved(
            "VXLAN decapsulated (kernel, approved)",
            FROM_UNDERLAY,
            vxlan_from_peer(&tcp(VXLAN_POD, POD)),
            key(VXLAN_POD, POD),
            vxlan,
        ),
        // kube-proxy's DNAT, done by the fast path: to a service, leaving in IPIP to its backend;
        // the backend's reply, decapsulated and leaving the service's address.
        Case {
            approved: vec![(key(POD, SERVICE), here, FlowKey::new(POD, REMOTE_POD, 6, (PORTS.0, 8080)))],
            ..approved(
                "service, DNAT + IPIP (kernel, approved)",
                FROM_POD,
                pod(POD, SERVICE),
                key(POD, SERVICE),
                here,
            )
        },
        Case {
            approved: vec![(
                FlowKey::new(REMOTE_POD, POD, 6, (8080, PORTS.0)),
                ipip,
                FlowKey::new(SERVICE, POD, 6, (PORTS.1, PORTS.0)),
            )],
            ..approved(
                "service reply, un-DNAT + decap (kernel, approved)",
                FROM_UNDERLAY,
                ipip_frame(
                    PEER_IP,
                    NODE_IP,
                    &packets::tcp_segment(addr(REMOTE_POD), addr(POD), (8080, PORTS.0), TCP_ACK),
                ),
                key(REMOTE_POD, POD),
                ipip,
            )
        },
        Case {
            trust_kernel: true,
            ..case("cross node, IPIP, no entry (kernel first)", FROM_POD, pod(POD, REMOTE_POD))
        },
    ];
    // IPv6 under --trust kernel: the same decisions with their directions in FP_FLOWS6.
    let key6 = |src, dst| FlowKey6::new(src, dst, 6, TCP6_PORTS);
    let pod6 = Arrived6::from_pod(TEST_IFINDEX);
    let vxlan6 = Arrived6::from_underlay(Arrival::Vxlan, PEER6_IP);
    let approved6 = |name, program, frame, key, arrived| Case {
        trust_kernel: true,
        approved6: vec![(key, arrived)],
        ..case(name, program, frame)
    };
    cases.extend([
        approved6(
            "IPv6 same node, redirected (kernel, approved)",
            FROM_POD,
            tcp6(POD6, OTHER6, 0),
            key6(POD6, OTHER6),
            pod6,
        ),
        approved6(
            "IPv6 cross node, VXLAN (kernel, approved)",
            FROM_POD,
            tcp6(POD6, VXLAN6_POD, 0),
            key6(POD6, VXLAN6_POD),
            pod6,
        ),
        approved6(
            "IPv6 VXLAN decapsulated (kernel, approved)",
            FROM_UNDERLAY,
            vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &tcp6(VXLAN6_POD, POD6, 0)[14..]),
            key6(VXLAN6_POD, POD6),
            vxlan6,
        ),
    ]);
    cases.extend([
        case("no route (source check passed)", FROM_POD, pod(POD, [8, 8, 8, 8])),
        case("source not a pod's (service)", FROM_POD, pod([10, 96, 0, 10], OTHER_LOCAL_POD)),
        case(
            "IPIP, inner source checked, not for a pod here",
            FROM_UNDERLAY,
            tunnelled(REMOTE_POD, [10, 244, 166, 151]),
        ),
        case("IPIP, inner source foreign", FROM_UNDERLAY, tunnelled([10, 244, 9, 9], POD)),
        case("plain underlay traffic (routes)", FROM_UNDERLAY, plain_underlay()),
        Case {
            trust_kernel: true,
            ..case("plain underlay traffic, no entry (kernel)", FROM_UNDERLAY, plain_underlay())
        },
    ]);
    cases
}

/// LLDP: a frame `from_pod` hands on at once.
fn lldp_frame() -> Vec<u8> {
    let mut frame = packets::ethernet([0x01, 0x80, 0xc2, 0, 0, 0x0e], packets::POD_MAC, 0x88cc);
    frame.resize(14 + 40, 0);
    frame
}

fn plain_underlay() -> Vec<u8> {
    let mut frame = packets::ethernet([2, 0, 0, 0, 0, 0x50], PEER_MAC, packets::ETH_P_IP);
    frame.extend(tcp(REMOTE_POD, POD));
    frame
}

/// The kernel's time for one run of `program` on `frame`, in nanoseconds.
fn time_once(ebpf: &mut Ebpf, program: &'static str, frame: &[u8]) -> u64 {
    run_marked_timed(ebpf, program, frame, 0).3
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
        time_once(ebpf, case.program, &case.frame);
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
                trust_kernel(ebpf);
                for (key, arrived, to) in &case.approved {
                    approve(ebpf, *key, *arrived, *to);
                }
                for (key, arrived) in &case.approved6 {
                    approve6(ebpf, *key, *arrived, false);
                }
            } else {
                trust_routes(ebpf);
            }
            let mut times: Vec<u64> = (0..runs).map(|_| time_once(ebpf, case.program, &case.frame)).collect();
            times.sort_unstable();
            let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
            let accounted = accounted(ebpf, &case, runs);
            println!("{:<52} {:>6} {:>6} {:>6} {:>11}", case.name, at(0.1), at(0.5), at(0.9), accounted);
        }
    });
}
