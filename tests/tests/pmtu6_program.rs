//! IPv6's path MTU through BPF_PROG_TEST_RUN, IPv4's rule (`parity_program.rs`) for the other
//! family: a router's ICMPv6 "packet too big" about one of this node's IPv6 VXLAN packets teaches
//! `FP_PATH_MTU6` the path MTU toward the node it was going to, and goes on to the kernel
//! unchanged; from then on a pod's packet too big for the path is answered with the path's MTU
//! less IPv6 VXLAN's 70 bytes, and one that fits is encapsulated. Any other ICMPv6, and a claim
//! below IPv6's 1280, teaches nothing.

mod support;

use aya::maps::HashMap;
use fastpath::dataplane::loader::{FROM_POD, FROM_UNDERLAY};
use fastpath_common::{
    ipv6,
    maps::{PathMtu, PATH_MTU6, PATH_MTU_EXPIRES_NS},
    Reason, GATEWAY_MAC,
};
use fastpath_tests::packets::POD_MAC;
use support::*;

fn path_mtu6(ebpf: &aya::Ebpf, node: [u8; 16]) -> Option<PathMtu> {
    let map: HashMap<_, [u8; 16], PathMtu> = HashMap::try_from(ebpf.map(PATH_MTU6).unwrap()).unwrap();
    map.get(&node, 0).ok()
}

/// A TCP segment from the pod whose IPv6 packet is `ip_len` bytes long.
fn sized6(dst: [u8; 16], ip_len: usize) -> Vec<u8> {
    tcp6(POD6, dst, ip_len - 40 - 20)
}

/// The MTU the ICMPv6 "packet too big" that went back into the pod says, its checksum verified.
fn told_mtu(verdict: u32, out: &[u8], sent: &[u8]) -> u32 {
    assert_eq!(verdict, TC_ACT_REDIRECT, "the ICMPv6 goes back into the pod");
    assert_eq!(&out[..6], &POD_MAC);
    assert_eq!(&out[6..12], &GATEWAY_MAC);
    assert_eq!(&out[22..38], &NODE6_IP, "from this node");
    assert_eq!(&out[38..54], &POD6, "to the pod");
    assert_eq!(&out[54..56], &[2, 0], "packet too big");
    assert_eq!(&out[62..], &sent[14..62], "quoting the pod's header and 8 bytes after it");
    assert_eq!(ipv6::upper_layer_checksum(&NODE6_IP, &POD6, 58, &out[54..]), 0, "ICMPv6 checksum");
    u32::from_be_bytes(out[58..62].try_into().unwrap())
}

#[test]
fn a_routers_packet_too_big_about_our_ipv6_vxlan_lowers_the_path_mtu() {
    in_node(|ebpf, _| {
        let started = fastpath::clock::monotonic_ns();
        let icmp = too_big6_from_router(17, VXLAN_PORT, 1400);
        let (verdict, out) = run(ebpf, FROM_UNDERLAY, &icmp);
        assert_eq!((verdict, &out), (PASS, &icmp), "the kernel gets the message too, unchanged");
        assert_eq!(count(ebpf, Reason::PathMtuLearned), 1);
        let learned = path_mtu6(ebpf, PEER6_IP).expect("the path MTU toward the next node");
        assert_eq!(learned.mtu, 1400);
        let expires_in = learned.expires_ns - started;
        assert!(
            expires_in > PATH_MTU_EXPIRES_NS - 5_000_000_000
                && expires_in <= PATH_MTU_EXPIRES_NS + 5_000_000_000,
            "{expires_in}"
        );
        // The pod's next packet too big for the path is told the path's MTU less IPv6 VXLAN's 70.
        let too_big = sized6(VXLAN6_POD, 1331);
        let (verdict, out) = run(ebpf, FROM_POD, &too_big);
        assert_eq!(told_mtu(verdict, &out, &too_big), 1330);
        assert_eq!(count(ebpf, Reason::Icmp6PacketTooBig), 1);
        // One that fits the path leaves in IPv6 VXLAN, at the path's MTU.
        let fits = sized6(VXLAN6_POD, 1330);
        let (verdict, out) = run(ebpf, FROM_POD, &fits);
        assert_eq!(verdict, TC_ACT_REDIRECT, "1330 bytes fit the path");
        assert_eq!(out.len() - 14, 1400, "an outer packet of the path's MTU");
        assert_eq!(count(ebpf, Reason::EncapsulatedVxlan), 1);
        // The IPv4 table learnt nothing.
        assert_eq!(count(ebpf, Reason::PathMtuLearned), 1);
    });
}

#[test]
fn a_path_wider_than_the_device_changes_nothing() {
    in_node(|ebpf, _| {
        let (verdict, _) = run(ebpf, FROM_UNDERLAY, &too_big6_from_router(17, VXLAN_PORT, 1600));
        assert_eq!(verdict, PASS);
        assert_eq!(path_mtu6(ebpf, PEER6_IP).map(|p| p.mtu), Some(1600), "noted as said");
        let too_big = sized6(VXLAN6_POD, VXLAN6_MTU as usize + 1);
        let (verdict, out) = run(ebpf, FROM_POD, &too_big);
        assert_eq!(told_mtu(verdict, &out, &too_big), VXLAN6_MTU, "vxlan-v6.calico's MTU still");
    });
}

#[test]
fn other_icmpv6_teaches_nothing_and_goes_to_the_kernel() {
    in_node(|ebpf, _| {
        // About another UDP packet, about TCP, below IPv6's minimum (RFC 8201 ignores it), not
        // "packet too big" at all (destination unreachable), and one to another address.
        let mut unreachable = too_big6_from_router(17, VXLAN_PORT, 1400);
        unreachable[54] = 1;
        let mut elsewhere = too_big6_from_router(17, VXLAN_PORT, 1400);
        elsewhere[38..54].copy_from_slice(&PEER6_IP);
        let mut not_ours = too_big6_from_router(17, VXLAN_PORT, 1400);
        not_ours[54 + 8 + 8..54 + 8 + 24].copy_from_slice(&PEER6_IP);
        for frame in [
            too_big6_from_router(17, 53, 1400),
            too_big6_from_router(6, VXLAN_PORT, 1400),
            too_big6_from_router(17, VXLAN_PORT, 1279),
            unreachable,
            elsewhere,
            not_ours,
        ] {
            let (verdict, out) = run(ebpf, FROM_UNDERLAY, &frame);
            assert_eq!((verdict, out), (PASS, frame.clone()));
        }
        assert_eq!(count(ebpf, Reason::PathMtuLearned), 0);
        assert_eq!(count(ebpf, Reason::PassUnderlayOther), 6);
        assert_eq!(path_mtu6(ebpf, PEER6_IP), None);
        assert_eq!(path_mtu6(ebpf, NODE6_IP), None);
        // The least IPv6 allows is learnt: 1280, so 1210 inside the tunnel.
        run(ebpf, FROM_UNDERLAY, &too_big6_from_router(17, VXLAN_PORT, 1280));
        assert_eq!(path_mtu6(ebpf, PEER6_IP).map(|p| p.mtu), Some(1280));
    });
}

#[test]
fn a_path_too_narrow_for_ipv6_inside_the_tunnel_leaves_what_does_not_fit_to_the_kernel() {
    in_node(|ebpf, _| {
        run(ebpf, FROM_UNDERLAY, &too_big6_from_router(17, VXLAN_PORT, 1280));
        // 1210 bytes inside: no pod may be told less than 1280, so the kernel's device sends it in
        // fragments of the outer packet; what fits still leaves here.
        let frame = sized6(VXLAN6_POD, 1211);
        let (verdict, out) = run(ebpf, FROM_POD, &frame);
        assert_eq!((verdict, out), (PASS, frame));
        assert_eq!(count(ebpf, Reason::PassTooBig), 1);
        let (verdict, out) = run(ebpf, FROM_POD, &sized6(VXLAN6_POD, 1210));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(out.len() - 14, 1280);
    });
}

#[test]
fn a_learnt_path_mtu_ages_out() {
    in_node(|ebpf, _| {
        let mut map: HashMap<_, [u8; 16], PathMtu> =
            HashMap::try_from(ebpf.map_mut(PATH_MTU6).unwrap()).unwrap();
        // Expired a moment ago.
        let expired = PathMtu { mtu: 1400, _pad: 0, expires_ns: fastpath::clock::monotonic_ns() - 1 };
        map.insert(PEER6_IP, expired, 0).unwrap();
        let frame = sized6(VXLAN6_POD, 1331);
        let (verdict, _) = run(ebpf, FROM_POD, &frame);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(count(ebpf, Reason::EncapsulatedVxlan), 1, "the tunnel's own MTU again");
    });
}
