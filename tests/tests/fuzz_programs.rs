//! Hostile and malformed frames through every program (BPF_PROG_TEST_RUN), generated with
//! proptest strategies for as long as `FASTPATH_FUZZ_SECONDS` says (30 s by default, what CI
//! runs), checking what must hold for any frame:
//!
//! - the verdict is PASS, TC_ACT_SHOT or TC_ACT_REDIRECT;
//! - a frame handed to the kernel (PASS) leaves unchanged: fail open;
//! - only a valid ARP request produces an ARP reply;
//! - a frame that is not valid IPv4 or IPv6 (or ARP) is never redirected;
//! - every run is counted under exactly one reason (checked every 256 frames: the counters grew
//!   by exactly the number of runs, since reading them costs a syscall per reason).
//!
//! Every program runs on every frame, half the time under `--trust routes` and half under
//! `--trust kernel` (the mode flips every 4096 frames), so the flow table's paths are fuzzed too.
//!
//! Run longer with `FASTPATH_FUZZ_SECONDS=600 cargo test -p fastpath-tests --test fuzz_programs
//! -- --nocapture`.

mod support;

use std::time::{Duration, Instant};

use aya::Ebpf;
use fastpath::dataplane::loader::{FROM_POD, FROM_UNDERLAY};
use fastpath_common::{
    arp::{classify_request, ArpFields},
    ipv4::{is_well_formed, Ipv4Fields, HEADER_LEN},
    ipv6::{self, Ipv6Fields},
    Reason,
};
use fastpath_tests::packets::{ETH_P_ARP, ETH_P_IP, ETH_P_IPV6};
use proptest::{
    strategy::{Strategy as _, ValueTree as _},
    test_runner::{Config, TestRunner},
};
use support::*;

const TC_ACT_SHOT_: u32 = 2;

fn total_count(ebpf: &Ebpf) -> u64 {
    Reason::ALL.iter().map(|r| count(ebpf, *r)).sum()
}

fn is_valid_arp_request(frame: &[u8]) -> bool {
    if frame.len() < 42 || frame[12..14] != ETH_P_ARP.to_be_bytes() {
        return false;
    }
    let a: &[u8; 28] = frame[14..42].try_into().expect("28 bytes");
    classify_request(&ArpFields::parse(a)).is_ok()
}

fn is_arp_reply(frame: &[u8]) -> bool {
    frame.len() >= 42 && frame[12..14] == ETH_P_ARP.to_be_bytes() && frame[20..22] == [0, 2]
}

/// A well-formed IPv6 header (the kernel's `ip6_rcv_core` would take it): what a neighbour
/// solicitation, a packet forwarded or IPv6 VXLAN taken apart starts with.
fn is_valid_ipv6(frame: &[u8]) -> bool {
    if frame.len() < 14 + ipv6::HEADER_LEN || frame[12..14] != ETH_P_IPV6.to_be_bytes() {
        return false;
    }
    let header: &[u8; ipv6::HEADER_LEN] = frame[14..14 + ipv6::HEADER_LEN].try_into().unwrap();
    ipv6::is_well_formed(&Ipv6Fields::parse(header), (frame.len() - 14) as u32)
}

fn is_valid_ipv4(frame: &[u8]) -> bool {
    if frame.len() < 14 + HEADER_LEN || frame[12..14] != ETH_P_IP.to_be_bytes() {
        return false;
    }
    let header: &[u8; HEADER_LEN] = frame[14..14 + HEADER_LEN].try_into().unwrap();
    is_well_formed(&Ipv4Fields::parse(header), (frame.len() - 14) as u32)
}

/// What one frame through one program came to.
enum Checked {
    Held,
    /// BPF_PROG_TEST_RUN itself refuses some frames (an IPv4 ethertype with less than an IPv4
    /// header after it): the program never sees them.
    Refused,
}

/// Check one frame through one program; describe the first broken invariant.
fn check(ebpf: &mut Ebpf, program: &'static str, frame: &[u8]) -> Result<Checked, String> {
    let Ok((verdict, out)) = try_run(ebpf, program, frame) else {
        return Ok(Checked::Refused);
    };
    let fail = |what: &str| Err(format!("{program}: {what}; verdict {verdict}; frame {frame:02x?}"));
    if ![PASS, TC_ACT_SHOT_, TC_ACT_REDIRECT].contains(&verdict) {
        return fail("a verdict other than OK, SHOT or REDIRECT");
    }
    if verdict == PASS && out != frame {
        return fail("handed to the kernel changed");
    }
    if is_arp_reply(&out) && !is_arp_reply(frame) && !is_valid_arp_request(frame) {
        return fail("an ARP reply to something that is not a valid request");
    }
    if verdict == TC_ACT_REDIRECT
        && !is_valid_ipv4(frame)
        && !is_valid_ipv6(frame)
        && !is_valid_arp_request(frame)
    {
        return fail("redirected a frame that is neither valid IPv4 or IPv6 nor a valid ARP request");
    }
    Ok(Checked::Held)
}

#[test]
fn random_and_mutated_frames_keep_every_invariant() {
    let seconds: u64 = std::env::var("FASTPATH_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    in_node(move |ebpf, _| {
        // Under --trust kernel the seeds' flows are approved, as the daemon would write them.
        route_outside();
        approve_seen_flows(ebpf);
        let mut runner = TestRunner::new(Config::default());
        let strategy = mutated_frames();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let (mut frames, mut refused, mut runs) = (0u64, 0u64, 0u64);
        let mut counted_before = total_count(ebpf);
        while Instant::now() < deadline {
            let frame = strategy.new_tree(&mut runner).expect("a frame").current();
            if frames % 8192 == 4096 {
                trust_kernel(ebpf);
            } else if frames % 8192 == 0 {
                trust_routes(ebpf);
            }
            for program in [FROM_POD, FROM_UNDERLAY] {
                match check(ebpf, program, &frame) {
                    Ok(Checked::Held) => runs += 1,
                    Ok(Checked::Refused) => refused += 1,
                    Err(broken) => panic!("after {frames} frames: {broken}"),
                }
            }
            frames += 1;
            if frames % 256 == 0 {
                let counted = total_count(ebpf);
                assert_eq!(counted - counted_before, runs, "runs and counts differ in the last 256 frames");
                (counted_before, runs) = (counted, 0);
            }
        }
        assert_eq!(total_count(ebpf) - counted_before, runs, "runs and counts differ in the last frames");
        eprintln!(
            "fuzz: {frames} frames through both programs in {seconds} s, every invariant held \
             ({refused} runs refused by BPF_PROG_TEST_RUN itself)"
        );
        assert!(frames > 1000, "only {frames} frames in {seconds} s");
        assert!(refused < frames, "BPF_PROG_TEST_RUN refused nearly everything: the strategy is broken");
    });
}
