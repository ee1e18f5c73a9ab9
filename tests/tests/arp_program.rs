//! The ARP responder on crafted frames through BPF_PROG_TEST_RUN: verdicts, bytes out, counters.

mod support;

use std::net::Ipv4Addr;

use aya::Ebpf;
use fastpath::dataplane::loader::{self, FROM_POD};
use fastpath_common::{Reason, GATEWAY_MAC};
use fastpath_tests::{
    packets::{self, Arp, BROADCAST, ETH_P_IPV6, POD_MAC},
    require_root,
};
use support::{count, run, PASS, TC_ACT_REDIRECT};

const POD: Ipv4Addr = Ipv4Addr::new(10, 244, 40, 36);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 166, 150);

/// A freshly loaded object: its own maps, so tests running in parallel never share counters.
fn load() -> Ebpf {
    require_root();
    let mut ebpf = loader::load_object(log::LevelFilter::Off).expect("load the embedded object");
    loader::loaded_program(&mut ebpf, FROM_POD).expect("load from_pod");
    ebpf
}

/// Expect `frame` to be counted under `reason` and handed to the kernel untouched.
fn assert_passes_unchanged(frame: &[u8], reason: Reason) {
    let mut ebpf = load();
    let (verdict, out) = run(&mut ebpf, FROM_POD, frame);
    assert_eq!(verdict, PASS, "{reason:?}: verdict");
    assert_eq!(out, frame, "{reason:?}: the frame must reach the kernel unchanged");
    assert_eq!(count(&ebpf, reason), 1, "{reason:?}: counter");
    assert_eq!(count(&ebpf, Reason::ArpReplied), 0, "{reason:?}: must not be answered");
}

/// Expect a byte-exact reply to `request`: "`request.tpa` is at ee:ee:ee:ee:ee:ee".
fn assert_answered(request: Arp) {
    let mut ebpf = load();
    let (verdict, out) = run(&mut ebpf, FROM_POD, &request.frame(BROADCAST, POD_MAC));
    let expected = Arp { op: 2, sha: GATEWAY_MAC, spa: request.tpa, tha: request.sha, tpa: request.spa }
        .frame(POD_MAC, GATEWAY_MAC);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(out, expected);
    assert_eq!(count(&ebpf, Reason::ArpReplied), 1);
}

#[test]
fn request_for_the_gateway_is_answered_with_ee() {
    assert_answered(Arp::request(POD, GATEWAY));
}

#[test]
fn request_for_a_remote_pod_is_answered_as_proxy_arp_would() {
    assert_answered(Arp::request(POD, REMOTE_POD));
}

#[test]
fn unicast_revalidation_is_answered_too() {
    // The kernel re-checks a STALE neighbour with a request sent to the cached MAC.
    let request = Arp::request(POD, GATEWAY);
    let mut ebpf = load();
    let (verdict, out) = run(&mut ebpf, FROM_POD, &request.frame(GATEWAY_MAC, POD_MAC));
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(&out[0..6], &POD_MAC);
    assert_eq!(&out[6..12], &GATEWAY_MAC);
}

#[test]
fn gratuitous_arp_passes() {
    assert_passes_unchanged(&Arp::request(POD, POD).frame(BROADCAST, POD_MAC), Reason::PassArpGratuitous);
}

#[test]
fn dad_probe_passes() {
    let probe = Arp::request(Ipv4Addr::UNSPECIFIED, POD);
    assert_passes_unchanged(&probe.frame(BROADCAST, POD_MAC), Reason::PassArpProbe);
}

#[test]
fn arp_reply_passes() {
    let reply = Arp { op: 2, ..Arp::request(POD, GATEWAY) };
    assert_passes_unchanged(&reply.frame(BROADCAST, POD_MAC), Reason::PassArpNotRequest);
}

#[test]
fn truncated_arp_passes() {
    let frame = Arp::request(POD, GATEWAY).frame(BROADCAST, POD_MAC);
    assert_passes_unchanged(&frame[..14 + 20], Reason::PassArpMalformed);
}

#[test]
fn non_ipv4_arp_passes() {
    let mut frame = Arp::request(POD, GATEWAY).frame(BROADCAST, POD_MAC);
    frame[16..18].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    assert_passes_unchanged(&frame, Reason::PassArpMalformed);
}

#[test]
fn arp_with_wrong_address_lengths_passes() {
    let mut frame = Arp::request(POD, GATEWAY).frame(BROADCAST, POD_MAC);
    frame[18] = 8;
    assert_passes_unchanged(&frame, Reason::PassArpMalformed);
}

#[test]
fn ipv4_passes_to_the_kernel_until_the_node_is_configured() {
    assert_passes_unchanged(&packets::ipv4_frame(POD, REMOTE_POD, 64), Reason::PassNotReady);
}

#[test]
fn other_ethertypes_pass() {
    // LLDP: neither ARP, IPv4 nor IPv6 (which `ipv6_program.rs` covers).
    let mut frame = packets::ethernet(BROADCAST, POD_MAC, 0x88cc);
    frame.extend_from_slice(&[0u8; 40]);
    assert_passes_unchanged(&frame, Reason::PassOtherEthertype);
}
