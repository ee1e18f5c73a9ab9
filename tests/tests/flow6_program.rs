//! `--trust kernel` for IPv6 in the programs, on crafted frames through BPF_PROG_TEST_RUN: the
//! test writes what the daemon would for a direction conntrack approved (`FP_FLOWS6`), and the
//! programs carry a packet only by such an entry, arriving where its flow enters; one conntrack
//! translates, and every packet before approval, is the kernel's. Each step is checked in the
//! counters and the entry.

mod support;

use fastpath::dataplane::loader::{FROM_POD, FROM_UNDERLAY};
use fastpath_common::{
    flow::{Arrival, FlowState, PROTO_TCP},
    flow6::{Arrived6, FlowKey6},
    ipv6::NEXT_ICMPV6,
    Reason,
};
use fastpath_tests::packets::{TCP_ACK, TCP_FIN, TCP_RST};
use support::*;

/// POD6 → OTHER6 (a pod on this node), as `tcp6_flags` names it.
fn local_key() -> FlowKey6 {
    FlowKey6::new(POD6, OTHER6, PROTO_TCP, TCP6_PORTS)
}

/// VXLAN6_POD (the next node's, in IPv6 VXLAN) → POD6.
fn decap_key() -> FlowKey6 {
    FlowKey6::new(VXLAN6_POD, POD6, PROTO_TCP, TCP6_PORTS)
}

/// The IPv6 VXLAN frame the next node sends with VXLAN6_POD's segment to POD6.
fn from_peer(flags: u8) -> Vec<u8> {
    let inner = tcp6_flags(VXLAN6_POD, POD6, 32, flags);
    vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &inner[14..])
}

/// Run `program` on `frame` and check it reached the kernel unchanged, counted under `reason`.
fn passes(ebpf: &mut aya::Ebpf, program: &'static str, frame: &[u8], reason: Reason) {
    let before = count(ebpf, reason);
    let (verdict, out) = run(ebpf, program, frame);
    assert_eq!(verdict, PASS, "{program} {reason:?}");
    assert_eq!(out, frame, "{program}: the frame must reach the kernel unchanged");
    assert_eq!(count(ebpf, reason), before + 1, "{program}: counted under {reason:?}");
}

fn state(ebpf: &aya::Ebpf, key: &FlowKey6) -> Option<FlowState> {
    flow6(ebpf, key).and_then(|v| FlowState::of(v.state))
}

#[test]
fn a_direction_is_carried_only_once_approved_and_only_where_it_enters() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        let segment = tcp6_flags(POD6, OTHER6, 32, TCP_ACK);
        passes(ebpf, FROM_POD, &segment, Reason::PassFlowPending);
        // Approved for a pod on another interface: this one is elsewhere.
        approve6(ebpf, local_key(), Arrived6::from_pod(OTHER_IFINDEX), false);
        passes(ebpf, FROM_POD, &segment, Reason::PassFlowElsewhere);
        approve6(ebpf, local_key(), Arrived6::from_pod(TEST_IFINDEX), false);
        let (verdict, out) = run(ebpf, FROM_POD, &segment);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(&out[0..6], &OTHER_POD_MAC);
        assert_eq!(out[14 + 7], 63, "hop limit decremented");
        assert_eq!(count(ebpf, Reason::RedirectedLocal), 1);
        let value = flow6(ebpf, &local_key()).unwrap();
        assert_eq!((value.fast_packets, value.kernel_packets), (1, 0));
        assert_ne!(value.last_seen_ns, 0, "the daemon refreshes conntrack by it");
    });
}

#[test]
fn a_direction_conntrack_translates_is_the_kernels() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        approve6(ebpf, local_key(), Arrived6::from_pod(TEST_IFINDEX), true);
        passes(ebpf, FROM_POD, &tcp6_flags(POD6, OTHER6, 32, TCP_ACK), Reason::PassIpv6Translated);
        assert_eq!(flow6(ebpf, &local_key()).unwrap().kernel_packets, 1);
    });
}

#[test]
fn fin_hands_its_direction_to_the_kernel_and_rst_both() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        let reply = local_key().reversed();
        approve6(ebpf, local_key(), Arrived6::from_pod(TEST_IFINDEX), false);
        approve6(ebpf, reply, Arrived6::from_pod(OTHER_IFINDEX), false);
        passes(ebpf, FROM_POD, &tcp6_flags(POD6, OTHER6, 0, TCP_FIN | TCP_ACK), Reason::PassFlowClosing);
        assert_eq!(state(ebpf, &local_key()), Some(FlowState::Closing));
        assert_eq!(state(ebpf, &reply), Some(FlowState::Approved), "a FIN ends its own direction only");
        passes(ebpf, FROM_POD, &tcp6_flags(POD6, OTHER6, 32, TCP_ACK), Reason::PassFlowClosing);
        approve6(ebpf, local_key(), Arrived6::from_pod(TEST_IFINDEX), false);
        passes(ebpf, FROM_POD, &tcp6_flags(POD6, OTHER6, 0, TCP_RST), Reason::PassFlowClosing);
        assert_eq!(state(ebpf, &reply), Some(FlowState::Closing), "an RST the other direction too");
    });
}

#[test]
fn an_icmpv6_echo_is_named_by_its_identifier_and_type() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        let echo = echo6(POD6, OTHER6, 64);
        // packets::ipv6_frame's echo request: identifier 0x1234.
        let id = u16::from_be_bytes([echo[58], echo[59]]);
        let key = FlowKey6::new(POD6, OTHER6, NEXT_ICMPV6, (id, 128));
        approve6(ebpf, key, Arrived6::from_pod(TEST_IFINDEX), false);
        let (verdict, _) = run(ebpf, FROM_POD, &echo);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(flow6(ebpf, &key).unwrap().fast_packets, 1);
    });
}

#[test]
fn to_another_node_an_approved_direction_is_encapsulated() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        let segment = tcp6_flags(POD6, VXLAN6_POD, 32, TCP_ACK);
        passes(ebpf, FROM_POD, &segment, Reason::PassFlowPending);
        approve6(
            ebpf,
            FlowKey6::new(POD6, VXLAN6_POD, PROTO_TCP, TCP6_PORTS),
            Arrived6::from_pod(TEST_IFINDEX),
            false,
        );
        let (verdict, _) = run(ebpf, FROM_POD, &segment);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(count(ebpf, Reason::EncapsulatedVxlan), 1);
    });
}

#[test]
fn from_another_node_an_approved_direction_is_taken_apart_only_from_its_node() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        let frame = from_peer(TCP_ACK);
        passes(ebpf, FROM_UNDERLAY, &frame, Reason::PassFlowPending);
        // Approved from a third node: the next node's tunnel is elsewhere.
        approve6(ebpf, decap_key(), Arrived6::from_underlay(Arrival::Vxlan, UNRESOLVED_PEER6_IP), false);
        passes(ebpf, FROM_UNDERLAY, &frame, Reason::PassFlowElsewhere);
        // Approved from the next node, but plain: not in its tunnel.
        approve6(ebpf, decap_key(), Arrived6::from_underlay(Arrival::Plain, PEER6_IP), false);
        passes(ebpf, FROM_UNDERLAY, &frame, Reason::PassFlowElsewhere);
        approve6(ebpf, decap_key(), Arrived6::from_underlay(Arrival::Vxlan, PEER6_IP), false);
        let (verdict, out) = run(ebpf, FROM_UNDERLAY, &frame);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(count(ebpf, Reason::DecapsulatedVxlan), 1);
        let inner = tcp6_flags(VXLAN6_POD, POD6, 32, TCP_ACK);
        assert_eq!(&out[14 + 8..], &inner[14 + 8..], "the inner packet, as it was sent");
        assert_eq!(flow6(ebpf, &decap_key()).unwrap().fast_packets, 1);
    });
}
