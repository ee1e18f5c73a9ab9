//! VXLAN in the programs, on crafted frames through BPF_PROG_TEST_RUN: the frame `from_pod`
//! builds toward a VXLAN block, byte for byte as the node's `vxlan.calico` would send it; VXLAN
//! from the next node taken apart and delivered by `from_underlay`; every refusal handed to the
//! kernel unchanged; under `--trust kernel`, only what the daemon approved, arriving where it enters.
//!
//! The node (`support::in_node`) has Felix's `vxlan.calico`: VNI 4096, port 4789, MAC
//! 66:00:0a:65:0e:32; 10.244.8.0/26 is routed in VXLAN to the next node 10.101.14.51, whose
//! VTEP MAC is 66:00:0a:65:0e:33.

mod support;

use std::collections::BTreeSet;

use aya::{maps::Array, Ebpf};
use fastpath::dataplane::loader::{FROM_POD, FROM_UNDERLAY};
use fastpath_common::{
    flow::{Arrival, Arrived, FlowKey},
    icmp,
    ipv4::OuterIpv4,
    maps::{NodeConfig, NODE, NODE_F_VXLAN},
    vxlan::{self, Encap, DF_INHERIT, TOS_INHERIT, TTL_INHERIT},
    Reason, GATEWAY_MAC,
};
use fastpath_tests::packets::{self, checksum, ETH_P_IP, POD_MAC, TCP_ACK, TCP_SYN};
use support::*;

const CLIENT_PORT: u16 = 40000;

/// A TCP segment from the local pod to the pod behind the VXLAN block, as the pod sends it.
fn to_vxlan_block(sport: u16, flags: u8) -> Vec<u8> {
    packets::pod_frame(&packets::tcp_segment(addr(POD), addr(VXLAN_POD), (sport, 80), flags))
}

/// An ICMP echo of `ip_len` bytes (DF as asked) from the local pod to the VXLAN block.
fn sized_to_vxlan_block(ip_len: usize, df: bool) -> Vec<u8> {
    let mut payload = vec![8u8, 0, 0, 0, 0, 0, 0, 0];
    payload.resize(ip_len - 20, 0xab);
    let mut ip = packets::ipv4_packet(addr(POD), addr(VXLAN_POD), 64, 1, &payload);
    if !df {
        ip[6] = 0;
        ip[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    packets::pod_frame(&ip)
}

fn node_config(ebpf: &Ebpf) -> NodeConfig {
    let array: Array<_, NodeConfig> = Array::try_from(ebpf.map(NODE).unwrap()).unwrap();
    array.get(&0, 0).unwrap()
}

fn set_node_config(ebpf: &mut Ebpf, config: NodeConfig) {
    let mut array: Array<_, NodeConfig> = Array::try_from(ebpf.map_mut(NODE).unwrap()).unwrap();
    array.set(0, config, 0).unwrap();
}

fn passes(ebpf: &mut Ebpf, program: &'static str, frame: &[u8], reason: Reason) {
    let before = count(ebpf, reason);
    let (verdict, out) = run(ebpf, program, frame);
    assert_eq!(verdict, PASS, "{reason:?}");
    assert_eq!(out, frame, "{reason:?}: the frame must reach the kernel unchanged");
    assert_eq!(count(ebpf, reason), before + 1, "{reason:?}");
}

fn source_port(out: &[u8]) -> u16 {
    u16::from_be_bytes([out[34], out[35]])
}

#[test]
fn a_packet_for_a_vxlan_block_leaves_as_the_nodes_vxlan_device_would_send_it() {
    in_node(|ebpf, underlay| {
        let frame = to_vxlan_block(CLIENT_PORT, TCP_SYN);
        let inner_len = (frame.len() - 14) as u16;
        let (verdict, out) = run(ebpf, FROM_POD, &frame);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(out.len(), frame.len() + 50);
        assert_eq!(count(ebpf, Reason::EncapsulatedVxlan), 1);

        // Field by field, as the kernel's vxlan_xmit_one sets them.
        assert_eq!(&out[0..6], &PEER_MAC, "outer Ethernet to the next node's MAC");
        assert_eq!(&out[6..12], &underlay.mac, "from the underlay's");
        assert_eq!(&out[12..14], &ETH_P_IP.to_be_bytes());
        let ip = &out[14..34];
        assert_eq!(checksum(ip), 0, "outer header checksum");
        assert_eq!(
            &ip[..4],
            &[0x45, 0, 0, (inner_len + 50) as u8],
            "TOS 0: the device's, with the inner ECN (none)"
        );
        assert_eq!(&ip[6..10], &[0, 0, 64, 17], "no DF (df unset), TTL 64, UDP");
        assert_eq!(&ip[12..20], &[10, 101, 14, 50, 10, 101, 14, 51], "this node → the FDB's destination");
        let sport = source_port(&out);
        assert!((32768..60999).contains(&sport), "source port {sport} in ip_local_port_range");
        assert_eq!(&out[36..38], &4789u16.to_be_bytes(), "to 4789");
        assert_eq!(u16::from_be_bytes([out[38], out[39]]), inner_len + 30, "UDP length");
        assert_eq!(&out[40..42], &[0, 0], "UDP checksum 0");
        assert_eq!(&out[42..50], &[0x08, 0, 0, 0, 0, 0x10, 0, 0], "flag I, VNI 4096");
        assert_eq!(&out[50..56], &PEER_VTEP_MAC, "inner Ethernet to the next node's vxlan.calico");
        assert_eq!(&out[56..62], &NODE_VTEP_MAC, "from this node's");
        assert_eq!(&out[62..64], &ETH_P_IP.to_be_bytes());
        let inner = &out[64..];
        assert_eq!(inner[8], 63, "inner TTL decremented once on this node");
        assert_eq!(checksum(&inner[..20]), 0, "inner header checksum");
        assert_eq!(&inner[12..], &frame[14 + 12..], "addresses and payload untouched");

        // And the whole frame, byte for byte, with the port and id the program chose.
        let config = node_config(ebpf).vxlan;
        let outer = OuterIpv4 {
            src: NODE_IP,
            dst: PEER_IP,
            protocol: 17,
            tos: 0,
            ttl: 64,
            df: false,
            id: u16::from_be_bytes([out[18], out[19]]),
        };
        let headers =
            vxlan::headers(&Encap { outer, source_port: sport, config, peer_mac: PEER_VTEP_MAC }, inner_len)
                .unwrap();
        let mut expected = packets::ethernet(PEER_MAC, underlay.mac, ETH_P_IP);
        expected.extend_from_slice(&headers);
        let mut inner_expected = frame[14..].to_vec();
        inner_expected[8] = 63;
        let check =
            fastpath_common::ipv4::checksum_after_ttl_decrement([inner_expected[10], inner_expected[11]]);
        inner_expected[10..12].copy_from_slice(&check);
        expected.extend_from_slice(&inner_expected);
        assert_eq!(out, expected, "byte for byte");
    });
}

#[test]
fn the_udp_source_port_is_a_stable_hash_of_the_inner_flow() {
    in_node(|ebpf, _| {
        let first = source_port(&run(ebpf, FROM_POD, &to_vxlan_block(CLIENT_PORT, TCP_SYN)).1);
        let again = source_port(&run(ebpf, FROM_POD, &to_vxlan_block(CLIENT_PORT, TCP_ACK)).1);
        assert_eq!(first, again, "one flow, one source port");
        let ports: BTreeSet<u16> = (0..32)
            .map(|i| source_port(&run(ebpf, FROM_POD, &to_vxlan_block(CLIENT_PORT + 1 + i, TCP_SYN)).1))
            .collect();
        assert!(ports.len() >= 24, "32 flows spread over only {} source ports: {ports:?}", ports.len());
        assert!(ports.iter().all(|p| (32768..60999).contains(p)), "{ports:?}");
    });
}

#[test]
fn the_devices_ttl_tos_and_df_settings_are_obeyed() {
    in_node(|ebpf, _| {
        let ecn_ce_with_dscp = |frame: &mut Vec<u8>| {
            frame[15] = 0xbb; // DSCP 46, ECN CE
            frame[24..26].copy_from_slice(&[0, 0]);
            let sum = checksum(&frame[14..34]);
            frame[24..26].copy_from_slice(&sum.to_be_bytes());
        };
        let mut frame = to_vxlan_block(CLIENT_PORT, TCP_ACK);
        ecn_ce_with_dscp(&mut frame);
        let (_, out) = run(ebpf, FROM_POD, &frame);
        assert_eq!(out[15], 0x02, "TOS 0 with CE encapsulated as ECT(0), DSCP not copied");

        let mut inheriting = node_config(ebpf);
        inheriting.vxlan.ttl = TTL_INHERIT;
        inheriting.vxlan.tos = TOS_INHERIT;
        inheriting.vxlan.df = DF_INHERIT;
        set_node_config(ebpf, inheriting);
        let (_, out) = run(ebpf, FROM_POD, &frame);
        assert_eq!(out[14 + 1], 0xba, "tos inherit: the DS field, CE as ECT(0)");
        assert_eq!(out[14 + 8], 63, "ttl inherit: the inner TTL after this node's hop");
        assert_eq!(out[14 + 6] & 0x40, 0x40, "df inherit: the pod's DF");
        assert_eq!(checksum(&out[14..34]), 0);
    });
}

#[test]
fn a_df_packet_too_big_for_the_vxlan_mtu_is_answered_with_frag_needed() {
    in_node(|ebpf, _| {
        let (verdict, out) = run(ebpf, FROM_POD, &sized_to_vxlan_block(1451, true));
        assert_eq!(verdict, TC_ACT_REDIRECT, "sent back to the pod");
        assert_eq!(out.len(), 14 + icmp::REPLY_LEN);
        assert_eq!(&out[0..6], &POD_MAC);
        assert_eq!(&out[6..12], &GATEWAY_MAC);
        assert_eq!(&out[34..36], &[3, 4], "destination unreachable, fragmentation needed");
        assert_eq!(u16::from_be_bytes([out[40], out[41]]), 1450, "the VXLAN MTU: underlay - 50");
        assert_eq!(count(ebpf, Reason::IcmpFragNeeded), 1);

        let (verdict, out) = run(ebpf, FROM_POD, &sized_to_vxlan_block(1450, true));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(out.len(), 14 + 1500, "exactly the underlay MTU");
        assert_eq!(count(ebpf, Reason::EncapsulatedVxlan), 1);
        passes(ebpf, FROM_POD, &sized_to_vxlan_block(1451, false), Reason::PassTooBig);
    });
}

#[test]
fn vxlan_from_the_next_node_is_taken_apart_and_delivered_to_the_pod() {
    in_node(|ebpf, _| {
        let inner = packets::tcp_segment(addr(VXLAN_POD), addr(POD), (80, CLIENT_PORT), TCP_ACK);
        let (verdict, out) = run(ebpf, FROM_UNDERLAY, &vxlan_from_peer(&inner));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(out.len(), 14 + inner.len(), "outer IPv4, UDP, VXLAN and inner Ethernet removed");
        assert_eq!(&out[0..6], &POD_MAC);
        assert_eq!(&out[6..12], &GATEWAY_MAC);
        assert_eq!(&out[12..14], &ETH_P_IP.to_be_bytes());
        assert_eq!(out[14 + 8], inner[8] - 1, "TTL decremented on delivery");
        assert_eq!(checksum(&out[14..34]), 0);
        assert_eq!(&out[14 + 12..], &inner[12..], "addresses and payload untouched");
        assert_eq!(count(ebpf, Reason::DecapsulatedVxlan), 1);
        // The kernel's own vxlan device sends a UDP checksum unless told otherwise.
        let mut checksummed = vxlan_from_peer(&inner);
        checksummed[40..42].copy_from_slice(&[0x5a, 0x17]);
        let (verdict, _) = run(ebpf, FROM_UNDERLAY, &checksummed);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(count(ebpf, Reason::DecapsulatedVxlan), 2);
    });
}

#[test]
fn vxlan_whose_inner_source_is_not_the_senders_goes_to_the_kernel_encapsulated() {
    // The same rule as IPIP's (one check for both tunnels): a pod of a third node (its block is
    // routed via 10.101.14.53), a pod of this node, an outside address.
    for src in [[10, 244, 9, 9], POD, [192, 0, 2, 7]] {
        in_node(move |ebpf, _| {
            let inner = packets::icmp_echo(addr(src), addr(OTHER_LOCAL_POD), 63);
            passes(ebpf, FROM_UNDERLAY, &vxlan_from_peer(&inner), Reason::PassInnerSourceForeign);
        });
    }
    in_node(|ebpf, _| {
        // The node's host network, a pod of its VXLAN block, of its IPIP block, of its plain one.
        for src in [PEER_IP, VXLAN_POD, REMOTE_POD, [10, 244, 7, 9]] {
            let inner = packets::icmp_echo(addr(src), addr(POD), 63);
            assert_eq!(run(ebpf, FROM_UNDERLAY, &vxlan_from_peer(&inner)).0, TC_ACT_REDIRECT, "{src:?}");
        }
        assert_eq!(count(ebpf, Reason::DecapsulatedVxlan), 4);
    });
}

#[test]
fn vxlan_from_a_stranger_is_dropped() {
    in_node(|ebpf, _| {
        let inner = packets::icmp_echo(addr(VXLAN_POD), addr(POD), 63);
        let frame = vxlan_frame([10, 101, 14, 60], NODE_IP, VNI, NODE_VTEP_MAC, &inner);
        let (verdict, _) = run(ebpf, FROM_UNDERLAY, &frame);
        assert_eq!(verdict, TC_ACT_SHOT);
        assert_eq!(count(ebpf, Reason::DropUnknownPeer), 1);
    });
}

#[test]
fn every_vxlan_the_programs_do_not_take_apart_reaches_the_kernel_unchanged() {
    in_node(|ebpf, _| {
        let inner = packets::icmp_echo(addr(VXLAN_POD), addr(POD), 63);
        let good = vxlan_from_peer(&inner);
        let with = |change: &dyn Fn(&mut Vec<u8>)| {
            let mut frame = good.clone();
            change(&mut frame);
            frame
        };
        let cases: Vec<(&str, Vec<u8>, Reason)> = vec![
            (
                "another VNI",
                vxlan_frame(PEER_IP, NODE_IP, 4097, NODE_VTEP_MAC, &inner),
                Reason::PassVxlanOther,
            ),
            (
                "broadcast in the overlay",
                vxlan_frame(PEER_IP, NODE_IP, VNI, [0xff; 6], &inner),
                Reason::PassVxlanOther,
            ),
            (
                "another VTEP's MAC",
                vxlan_frame(PEER_IP, NODE_IP, VNI, PEER_VTEP_MAC, &inner),
                Reason::PassVxlanOther,
            ),
            ("other VXLAN flags", with(&|f| f[42] = 0x0c), Reason::PassVxlanOther),
            (
                "ARP in the overlay",
                with(&|f| f[62..64].copy_from_slice(&[0x08, 0x06])),
                Reason::PassVxlanOther,
            ),
            (
                "UDP to another port",
                with(&|f| f[36..38].copy_from_slice(&8472u16.to_be_bytes())),
                Reason::PassUnderlayOther,
            ),
            (
                "to another node",
                vxlan_frame(PEER_IP, [10, 101, 14, 52], VNI, NODE_VTEP_MAC, &inner),
                Reason::PassUnderlayOther,
            ),
            (
                "for no pod here",
                vxlan_from_peer(&packets::icmp_echo(addr(VXLAN_POD), addr([10, 244, 40, 50]), 63)),
                Reason::DropNoEndpoint,
            ),
            (
                "for a pod on another node",
                vxlan_from_peer(&packets::icmp_echo(addr(VXLAN_POD), addr(REMOTE_POD), 63)),
                Reason::PassDecapNotLocal,
            ),
            (
                "an inner TTL of 1",
                vxlan_from_peer(&packets::icmp_echo(addr(VXLAN_POD), addr(POD), 1)),
                Reason::PassTtlExceeded,
            ),
        ];
        for (what, frame, reason) in cases {
            if reason.is_drop() {
                let before = count(ebpf, reason);
                let (verdict, _) = run(ebpf, FROM_UNDERLAY, &frame);
                let counted: Vec<_> = Reason::ALL.iter().filter(|r| count(ebpf, **r) > 0).collect();
                assert_eq!(verdict, TC_ACT_SHOT, "{what}: {counted:?}");
                assert_eq!(count(ebpf, reason), before + 1, "{what}: counted as {reason:?}");
                continue;
            }
            let before = count(ebpf, reason);
            let (verdict, out) = run(ebpf, FROM_UNDERLAY, &frame);
            assert_eq!(verdict, PASS, "{what}");
            assert_eq!(out, frame, "{what}: the frame must reach the kernel unchanged");
            assert_eq!(count(ebpf, reason), before + 1, "{what}: counted as {reason:?}");
        }
        assert_eq!(count(ebpf, Reason::DecapsulatedVxlan), 0);
    });
}

#[test]
fn without_a_vxlan_device_to_stand_in_for_vxlan_is_the_kernels_both_ways() {
    in_node(|ebpf, _| {
        let without = NodeConfig { flags: node_config(ebpf).flags & !NODE_F_VXLAN, ..node_config(ebpf) };
        set_node_config(ebpf, without);
        let inner = packets::icmp_echo(addr(VXLAN_POD), addr(POD), 63);
        passes(ebpf, FROM_UNDERLAY, &vxlan_from_peer(&inner), Reason::PassUnderlayOther);
        passes(ebpf, FROM_POD, &to_vxlan_block(CLIENT_PORT, TCP_SYN), Reason::PassKernelRoute);
    });
}

#[test]
fn under_trust_kernel_vxlan_of_a_flow_conntrack_has_not_approved_goes_to_the_kernel_still_encapsulated() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        let reply = packets::tcp_segment(addr(VXLAN_POD), addr(POD), (80, CLIENT_PORT), TCP_ACK);
        let key = FlowKey::new(VXLAN_POD, POD, 6, (80, CLIENT_PORT));
        passes(ebpf, FROM_UNDERLAY, &vxlan_from_peer(&reply), Reason::PassFlowPending);
        assert_eq!(flow(ebpf, &key), None, "only the daemon writes the flow table");
        // The daemon approves the direction as conntrack saw it arrive: in VXLAN from the peer.
        approve(ebpf, key, Arrived::from_underlay(Arrival::Vxlan, PEER_IP), key);
        let (verdict, _) = run(ebpf, FROM_UNDERLAY, &vxlan_from_peer(&reply));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(count(ebpf, Reason::DecapsulatedVxlan), 1);
        // The same direction in IPIP is not where it enters: the kernel's.
        passes(
            ebpf,
            FROM_UNDERLAY,
            &support::ipip_frame(PEER_IP, NODE_IP, &reply),
            Reason::PassFlowElsewhere,
        );
        assert_eq!(flow(ebpf, &key).map(|v| (v.fast_packets, v.kernel_packets)), Some((1, 1)));
    });
}

#[test]
fn an_approved_flow_to_a_vxlan_block_is_encapsulated_and_counted_in_its_entry() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        let key = FlowKey::new(POD, VXLAN_POD, 6, (CLIENT_PORT, 80));
        passes(ebpf, FROM_POD, &to_vxlan_block(CLIENT_PORT, TCP_SYN), Reason::PassFlowPending);
        approve(ebpf, key, Arrived::from_pod(TEST_IFINDEX), key);
        let (verdict, _) = run(ebpf, FROM_POD, &to_vxlan_block(CLIENT_PORT, TCP_ACK));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(count(ebpf, Reason::EncapsulatedVxlan), 1);
        let value = flow(ebpf, &key).unwrap();
        assert_eq!((value.fast_packets, value.kernel_packets), (1, 0));
        assert_ne!(value.last_seen_ns, 0);
    });
}
