//! `--trust kernel` in the programs, on crafted frames through BPF_PROG_TEST_RUN: the ingress
//! programs carry only approved flows; the egress programs approve what the kernel forwarded
//! unchanged and disown what it rewrote or made. Each step is checked in the flow table and the
//! counters.

mod support;

use fastpath::dataplane::loader::{FROM_POD, FROM_UNDERLAY, TO_POD, TO_UNDERLAY};
use fastpath_common::{
    flow::{FlowKey, FlowState, FlowValue},
    maps::FLOWS,
    Reason, FAST_PATH_MARK, GATEWAY_MAC,
};
use fastpath_tests::packets::{self, POD_MAC, TCP_ACK, TCP_FIN, TCP_SYN};
use support::*;

const CLIENT_PORT: u16 = 40000;
const SERVICE: [u8; 4] = [10, 96, 0, 10];

fn tcp(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), flags: u8) -> Vec<u8> {
    packets::tcp_segment(addr(src), addr(dst), ports, flags)
}

/// POD → REMOTE_POD:80, as the pod sends it.
fn outgoing(flags: u8) -> Vec<u8> {
    packets::pod_frame(&tcp(POD, REMOTE_POD, (CLIENT_PORT, 80), flags))
}

fn outgoing_key() -> FlowKey {
    FlowKey::new(POD, REMOTE_POD, 6, (CLIENT_PORT, 80))
}

fn state(ebpf: &aya::Ebpf, key: &FlowKey) -> Option<FlowState> {
    flow(ebpf, key).map(|v| FlowState::try_from(v.state).unwrap())
}

/// Run `program` on `frame` and check it reached the kernel unchanged.
fn passes(ebpf: &mut aya::Ebpf, program: &'static str, frame: &[u8]) {
    let (verdict, out) = run(ebpf, program, frame);
    assert_eq!(verdict, TC_ACT_OK, "{program}");
    assert_eq!(out, frame, "{program}: the frame must reach the kernel unchanged");
}

#[test]
fn a_flow_takes_the_fast_path_only_after_the_kernel_forwarded_it() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf, 60);
        passes(ebpf, FROM_POD, &outgoing(TCP_SYN));
        assert_eq!(count(ebpf, Reason::PassFlowPending), 1);
        assert_eq!(state(ebpf, &outgoing_key()), Some(FlowState::Pending));

        // The kernel forwards it unchanged toward the other node: its egress approves it.
        passes(ebpf, TO_UNDERLAY, &outgoing(TCP_SYN));
        assert_eq!(count(ebpf, Reason::FlowApproved), 1);
        assert_eq!(state(ebpf, &outgoing_key()), Some(FlowState::Approved));

        let (verdict, _) = run(ebpf, FROM_POD, &outgoing(TCP_ACK));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(count(ebpf, Reason::Encapsulated), 1);
        let value = flow(ebpf, &outgoing_key()).unwrap();
        assert_eq!((value.fast_packets, value.kernel_packets), (1, 1));
        // Our own encapsulated packet leaving the underlay is a flow already judged.
        let (_, encapsulated) = run(ebpf, FROM_POD, &outgoing(TCP_ACK));
        passes(ebpf, TO_UNDERLAY, &encapsulated);
        assert_eq!(count(ebpf, Reason::FlowEgressKnown), 1);
        assert_eq!(state(ebpf, &outgoing_key()), Some(FlowState::Approved));
    });
}

#[test]
fn the_fast_paths_own_packets_are_known_at_the_underlays_egress_by_their_mark() {
    const CALICO_ACCEPT: u32 = 0x10000;
    in_node(|ebpf, _| {
        trust_kernel(ebpf, 60);
        passes(ebpf, FROM_POD, &outgoing(TCP_SYN));
        passes(ebpf, TO_UNDERLAY, &outgoing(TCP_SYN));
        // Sent by the fast path: the mark joins whatever bits the packet carried.
        let (verdict, encapsulated, mark) = run_marked(ebpf, FROM_POD, &outgoing(TCP_ACK), CALICO_ACCEPT);
        assert_eq!((verdict, mark), (TC_ACT_REDIRECT, CALICO_ACCEPT | FAST_PATH_MARK));
        // The underlay's egress takes it off and judges nothing.
        let lookups_before = flow(ebpf, &outgoing_key());
        let (verdict, out, mark) = run_marked(ebpf, TO_UNDERLAY, &encapsulated, mark);
        assert_eq!((verdict, mark), (TC_ACT_OK, CALICO_ACCEPT));
        assert_eq!(out, encapsulated);
        assert_eq!(count(ebpf, Reason::FlowEgressKnown), 1);
        assert_eq!(flow(ebpf, &outgoing_key()), lookups_before);
        // Plain routing to another node is marked too; delivery into a pod (no egress program
        // of ours sees it) and every packet under --trust routes are not.
        let plain = packets::pod_frame(&tcp(POD, [10, 244, 7, 9], (CLIENT_PORT, 80), TCP_SYN));
        passes(ebpf, FROM_POD, &plain);
        passes(ebpf, TO_UNDERLAY, &plain);
        assert_eq!(run_marked(ebpf, FROM_POD, &plain, 0).2, FAST_PATH_MARK);
        trust_routes(ebpf);
        assert_eq!(run_marked(ebpf, FROM_POD, &outgoing(TCP_ACK), 0).2, 0);
        assert_eq!(
            run_marked(ebpf, FROM_POD, &packets::pod_frame(&tcp(POD, OTHER_LOCAL_POD, (1, 2), TCP_ACK)), 0).2,
            0
        );
    });
}

#[test]
fn fin_hands_the_rest_of_the_connection_to_the_kernel_until_a_new_syn() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf, 60);
        passes(ebpf, FROM_POD, &outgoing(TCP_SYN));
        passes(ebpf, TO_UNDERLAY, &outgoing(TCP_SYN));
        passes(ebpf, FROM_POD, &outgoing(TCP_FIN | TCP_ACK));
        assert_eq!(state(ebpf, &outgoing_key()), Some(FlowState::Closing));
        // The last ACK goes through the kernel too, and forwarding it approves nothing.
        passes(ebpf, FROM_POD, &outgoing(TCP_ACK));
        passes(ebpf, TO_UNDERLAY, &outgoing(TCP_ACK));
        assert_eq!(count(ebpf, Reason::PassFlowClosing), 2);
        assert_eq!(state(ebpf, &outgoing_key()), Some(FlowState::Closing));
        // The same tuple reused by a new connection starts over.
        passes(ebpf, FROM_POD, &outgoing(TCP_SYN));
        assert_eq!(state(ebpf, &outgoing_key()), Some(FlowState::Pending));
    });
}

#[test]
fn a_flow_the_kernel_rewrote_is_kernel_owned_both_ways() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf, 60);
        // The client talks to a service address: no fastpath route, so the kernel has it.
        passes(ebpf, FROM_POD, &packets::pod_frame(&tcp(POD, SERVICE, (CLIENT_PORT, 80), TCP_SYN)));
        assert_eq!(count(ebpf, Reason::PassNoRoute), 1);
        // The kernel DNATs it to a backend on the other node: a tuple no ingress handed it.
        let dnat = packets::pod_frame(&tcp(POD, REMOTE_POD, (CLIENT_PORT, 8080), TCP_SYN));
        passes(ebpf, TO_UNDERLAY, &dnat);
        assert_eq!(count(ebpf, Reason::FlowMarkedKernelOwned), 1);
        let to_backend = FlowKey::new(POD, REMOTE_POD, 6, (CLIENT_PORT, 8080));
        assert_eq!(state(ebpf, &to_backend), Some(FlowState::KernelOwned));
        assert_eq!(state(ebpf, &to_backend.reversed()), Some(FlowState::KernelOwned));
        // The backend's reply arrives in IPIP: it goes to the kernel still encapsulated, to be
        // decapsulated and un-NATed there.
        let reply = tcp(REMOTE_POD, POD, (8080, CLIENT_PORT), TCP_SYN | TCP_ACK);
        passes(ebpf, FROM_UNDERLAY, &ipip_frame(PEER_IP, NODE_IP, &reply));
        assert_eq!(count(ebpf, Reason::PassFlowKernelOwned), 1);
        // And the kernel's un-NATed reply into the pod disowns the service's tuple too.
        passes(ebpf, TO_POD, &packets::pod_frame(&tcp(SERVICE, POD, (80, CLIENT_PORT), TCP_SYN | TCP_ACK)));
        let from_service = FlowKey::new(SERVICE, POD, 6, (80, CLIENT_PORT));
        assert_eq!(state(ebpf, &from_service), Some(FlowState::KernelOwned));
        assert_eq!(state(ebpf, &from_service.reversed()), Some(FlowState::KernelOwned));
    });
}

#[test]
fn delivery_after_decapsulation_waits_for_the_local_kernel() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf, 60);
        let inner = tcp(REMOTE_POD, POD, (80, CLIENT_PORT), TCP_ACK);
        let tunnelled = ipip_frame(PEER_IP, NODE_IP, &inner);
        passes(ebpf, FROM_UNDERLAY, &tunnelled);
        assert_eq!(count(ebpf, Reason::PassFlowPending), 1);
        // The kernel here decapsulates and delivers it into the pod: approved.
        passes(ebpf, TO_POD, &packets::pod_frame(&inner));
        let key = FlowKey::new(REMOTE_POD, POD, 6, (80, CLIENT_PORT));
        assert_eq!(state(ebpf, &key), Some(FlowState::Approved));
        let (verdict, out) = run(ebpf, FROM_UNDERLAY, &tunnelled);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(out.len(), 14 + inner.len(), "outer header removed");
        assert_eq!(count(ebpf, Reason::Decapsulated), 1);
    });
}

#[test]
fn plain_traffic_from_another_node_is_delivered_once_the_kernel_delivered_its_flow() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf, 60);
        let inner = tcp(REMOTE_POD, POD, (80, CLIENT_PORT), TCP_ACK);
        let arriving = packets::ethernet([2, 0, 0, 0, 0, 0x50], PEER_MAC, packets::ETH_P_IP)
            .into_iter()
            .chain(inner.iter().copied())
            .collect::<Vec<u8>>();
        passes(ebpf, FROM_UNDERLAY, &arriving);
        assert_eq!(count(ebpf, Reason::PassFlowPending), 1);
        let key = FlowKey::new(REMOTE_POD, POD, 6, (80, CLIENT_PORT));
        assert_eq!(state(ebpf, &key), Some(FlowState::Pending));
        // The kernel routes it into the pod: approved, and the rest is delivered straight.
        passes(ebpf, TO_POD, &packets::pod_frame(&inner));
        assert_eq!(state(ebpf, &key), Some(FlowState::Approved));
        let (verdict, out) = run(ebpf, FROM_UNDERLAY, &arriving);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!((&out[0..6], &out[6..12]), (&POD_MAC[..], &GATEWAY_MAC[..]));
        assert_eq!(out[14 + 8], inner[8] - 1, "TTL decremented");
        assert_eq!(count(ebpf, Reason::RoutedFromUnderlay), 1);
        // A packet posing as a pod of this node, or for no pod here, stays the kernel's.
        let posing = packets::ethernet([2, 0, 0, 0, 0, 0x50], PEER_MAC, packets::ETH_P_IP)
            .into_iter()
            .chain(tcp(OTHER_LOCAL_POD, POD, (80, CLIENT_PORT), TCP_ACK))
            .collect::<Vec<u8>>();
        passes(ebpf, FROM_UNDERLAY, &posing);
        assert_eq!(count(ebpf, Reason::PassUnderlayOther), 1);
        // Under --trust routes plain traffic is the kernel's, approved or not.
        trust_routes(ebpf);
        passes(ebpf, FROM_UNDERLAY, &arriving);
        assert_eq!(count(ebpf, Reason::PassUnderlayOther), 2);
    });
}

#[test]
fn an_idle_approval_is_judged_by_the_kernel_again() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf, 1);
        let mut flows: aya::maps::HashMap<_, FlowKey, FlowValue> =
            aya::maps::HashMap::try_from(ebpf.map_mut(FLOWS).unwrap()).unwrap();
        // Last seen at boot: idle far longer than a second.
        flows.insert(outgoing_key(), FlowValue::new(FlowState::Approved, 0), 0).unwrap();
        passes(ebpf, FROM_POD, &outgoing(TCP_ACK));
        assert_eq!(count(ebpf, Reason::PassFlowExpired), 1);
        assert_eq!(state(ebpf, &outgoing_key()), Some(FlowState::Pending));
    });
}

#[test]
fn icmp_echo_is_a_flow_and_icmp_errors_are_the_kernels() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf, 60);
        passes(ebpf, FROM_POD, &packets::ipv4_frame(addr(POD), addr(REMOTE_POD), 64));
        assert_eq!(count(ebpf, Reason::PassFlowPending), 1);
        assert_eq!(state(ebpf, &FlowKey::new(POD, REMOTE_POD, 1, (0, 0))), Some(FlowState::Pending));
        // Destination unreachable, port unreachable: about another flow.
        let error = packets::ipv4_packet(addr(POD), addr(REMOTE_POD), 64, 1, &[3, 3, 0, 0, 0, 0, 0, 0]);
        passes(ebpf, FROM_POD, &packets::pod_frame(&error));
        assert_eq!(count(ebpf, Reason::PassFlowUntracked), 1);
    });
}

#[test]
fn egress_judges_only_packets_toward_where_the_fast_path_would_send_them() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf, 60);
        // Into this interface's pod from the node itself: the kernel's own, so kernel-owned.
        passes(ebpf, TO_POD, &packets::pod_frame(&tcp(NODE_IP, POD, (10250, 8080), TCP_SYN)));
        assert_eq!(count(ebpf, Reason::FlowMarkedKernelOwned), 1);
        // Toward another pod than the one behind this interface, toward the internet, and ARP:
        // none is judged.
        passes(
            ebpf,
            TO_POD,
            &packets::pod_frame(&tcp(REMOTE_POD, OTHER_LOCAL_POD, (80, CLIENT_PORT), TCP_ACK)),
        );
        passes(ebpf, TO_UNDERLAY, &packets::pod_frame(&tcp(POD, [8, 8, 8, 8], (CLIENT_PORT, 443), TCP_SYN)));
        let arp = packets::Arp::request(addr(NODE_IP), addr(PEER_IP)).frame(packets::BROADCAST, [2; 6]);
        passes(ebpf, TO_UNDERLAY, &arp);
        assert_eq!(count(ebpf, Reason::FlowEgressOther), 3);
        assert_eq!(state(ebpf, &FlowKey::new(POD, [8, 8, 8, 8], 6, (CLIENT_PORT, 443))), None);
    });
}

#[test]
fn under_trust_routes_nothing_waits_and_egress_judges_nothing() {
    in_node(|ebpf, _| {
        let (verdict, _) = run(ebpf, FROM_POD, &outgoing(TCP_SYN));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        passes(ebpf, TO_UNDERLAY, &outgoing(TCP_SYN));
        assert_eq!(count(ebpf, Reason::FlowEgressOther), 1);
        assert_eq!(state(ebpf, &outgoing_key()), None);
    });
}
