//! IPv6 from a pod through BPF_PROG_TEST_RUN: the NDP responder (byte for byte against the
//! kernel's own answers), a packet to another pod on this node, and every reason IPv6 is handed to
//! the kernel or dropped for.

mod support;

use fastpath::dataplane::loader::FROM_POD;
use fastpath_common::{
    ipv6::{self, NEXT_HOP_BY_HOP, NEXT_ICMPV6},
    ndp::captured::{GATEWAY_NA, GATEWAY_NS, PROXY_NA, PROXY_NS, ROUTER_SOLICITATION},
    Reason, GATEWAY_MAC,
};
use fastpath_tests::packets;
use support::*;

fn assert_passes_unchanged(frame: Vec<u8>, reason: Reason, trust_kernel_too: bool) {
    in_node(move |ebpf, _| {
        if trust_kernel_too {
            trust_kernel(ebpf);
        }
        let (verdict, out) = run(ebpf, FROM_POD, &frame);
        assert_eq!(verdict, PASS, "{reason:?}");
        assert_eq!(out, frame, "{reason:?}: the frame must reach the kernel unchanged");
        assert_eq!(count(ebpf, reason), 1, "{reason:?}");
    });
}

/// Expect `solicitation` answered with exactly `answer`, the kernel's.
fn assert_answered(solicitation: Vec<u8>, answer: [u8; 86]) {
    in_node(move |ebpf, _| {
        let (verdict, out) = run(ebpf, FROM_POD, &solicitation);
        assert_eq!(verdict, TC_ACT_REDIRECT, "back out of the pod's interface");
        assert_eq!(out, answer, "the kernel's own advertisement, byte for byte");
        assert_eq!(count(ebpf, Reason::NdpReplied), 1);
    });
}

#[test]
fn a_solicitation_for_the_gateway_is_answered_as_the_kernel_answers_it() {
    assert_answered(GATEWAY_NS.to_vec(), GATEWAY_NA);
}

#[test]
fn a_solicitation_for_another_address_is_answered_as_the_kernels_proxy_answers_it() {
    assert_answered(PROXY_NS.to_vec(), PROXY_NA);
}

#[test]
fn a_solicitation_without_the_senders_link_layer_option_is_answered_too() {
    // The same solicitation without its 8-byte option: payload 24, checksum made anew.
    let mut frame = GATEWAY_NS[..78].to_vec();
    frame[18..20].copy_from_slice(&24u16.to_be_bytes());
    frame[56..58].copy_from_slice(&[0, 0]);
    let ip = ipv6::Ipv6Fields::parse(frame[14..54].try_into().unwrap());
    let sum = ipv6::upper_layer_checksum(&ip.src, &ip.dst, NEXT_ICMPV6, &frame[54..]);
    frame[56..58].copy_from_slice(&sum.to_be_bytes());
    assert_answered(frame, GATEWAY_NA);
}

#[test]
fn what_neighbour_discovery_must_leave_alone_goes_to_the_kernel() {
    let mut dad = GATEWAY_NS.to_vec();
    dad[22..38].copy_from_slice(&[0; 16]);
    assert_passes_unchanged(dad, Reason::PassNdpDadProbe, false);
    let mut bad_checksum = GATEWAY_NS.to_vec();
    bad_checksum[57] ^= 0xff;
    assert_passes_unchanged(bad_checksum, Reason::PassNdpMalformed, false);
    let mut hop_limit_64 = GATEWAY_NS.to_vec();
    hop_limit_64[21] = 64;
    assert_passes_unchanged(hop_limit_64, Reason::PassNdpMalformed, false);
    assert_passes_unchanged(ROUTER_SOLICITATION.to_vec(), Reason::PassNdpNotSolicitation, false);
}

#[test]
fn a_packet_for_a_pod_on_this_node_is_redirected_into_it() {
    in_node(|ebpf, _| {
        let frame = packets::ipv6_frame(POD6, OTHER6, 64, NEXT_ICMPV6);
        let (verdict, out) = run(ebpf, FROM_POD, &frame);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(&out[0..6], &OTHER_POD_MAC, "Ethernet destination is the pod");
        assert_eq!(&out[6..12], &GATEWAY_MAC, "Ethernet source is ee:ee:ee:ee:ee:ee");
        assert_eq!(out[14 + 7], 63, "hop limit decremented");
        assert_eq!(&out[14 + 8..], &frame[14 + 8..], "addresses and payload untouched");
        assert_eq!(count(ebpf, Reason::RedirectedLocal), 1);
    });
}

#[test]
fn a_pod_using_another_pods_address_is_dropped() {
    in_node(|ebpf, _| {
        let (verdict, _) = run(ebpf, FROM_POD, &packets::ipv6_frame(OTHER6, POD6, 64, NEXT_ICMPV6));
        assert_eq!(verdict, TC_ACT_SHOT);
        assert_eq!(count(ebpf, Reason::DropSpoofedSource), 1);
    });
}

#[test]
fn what_the_fast_path_does_not_carry_goes_to_the_kernel() {
    let multicast = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    for (frame, reason) in [
        (packets::ipv6_frame(REMOTE_POD6, OTHER6, 64, NEXT_ICMPV6), Reason::PassSourceNotPod),
        (packets::ipv6_frame(POD6, REMOTE_POD6, 64, NEXT_ICMPV6), Reason::PassNoRoute),
        (packets::ipv6_frame(POD6, OTHER6, 1, NEXT_ICMPV6), Reason::PassTtlExceeded),
        (packets::ipv6_frame(POD6, OTHER6, 64, NEXT_HOP_BY_HOP), Reason::PassIpv6ExtensionHeader),
        (packets::ipv6_frame(POD6, multicast, 64, NEXT_ICMPV6), Reason::PassSpecialDestination),
    ] {
        assert_passes_unchanged(frame, reason, false);
    }
    let mut cut = packets::ipv6_frame(POD6, OTHER6, 64, NEXT_ICMPV6);
    cut.truncate(cut.len() - 1);
    assert_passes_unchanged(cut, Reason::PassIpv6Malformed, false);
}

#[test]
fn under_trust_kernel_ipv6_is_the_kernels_until_conntrack_approves_it() {
    assert_passes_unchanged(echo6(POD6, OTHER6, 64), Reason::PassFlowPending, true);
    // An ICMPv6 error (destination unreachable) names no flow: only conntrack can relate it.
    let unreachable = ip6_frame(POD6, OTHER6, NEXT_ICMPV6, &[1, 4, 0, 0, 0, 0, 0, 0]);
    assert_passes_unchanged(unreachable, Reason::PassFlowUntracked, true);
}

#[test]
fn ipv6_is_answered_before_the_node_is_configured_only_for_neighbour_discovery() {
    // A fresh object: no node settings, no endpoints.
    fastpath_tests::require_root();
    let mut ebpf = fastpath::dataplane::loader::load_object(log::LevelFilter::Off).unwrap();
    fastpath::dataplane::loader::loaded_program(&mut ebpf, FROM_POD).unwrap();
    let (verdict, _) = run(&mut ebpf, FROM_POD, &GATEWAY_NS);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let frame = packets::ipv6_frame(POD6, OTHER6, 64, NEXT_ICMPV6);
    let (verdict, out) = run(&mut ebpf, FROM_POD, &frame);
    assert_eq!((verdict, out), (PASS, frame));
    assert_eq!(count(&ebpf, Reason::PassNotReady), 1);
}
