//! `--trust kernel` in the programs, on crafted frames through BPF_PROG_TEST_RUN. The daemon
//! writes a flow table entry for each direction the kernel's conntrack confirmed (here the test
//! writes what the daemon would); the programs carry a packet only by such an entry, arriving
//! where its flow enters, and rewrite it as conntrack's NAT says, leaving the checksums a
//! receiver verifies correct. Each step is checked in the counters and the entry.

mod support;

use fastpath::dataplane::loader::{FROM_POD, FROM_UNDERLAY};
use fastpath_common::{
    flow::{Arrival, Arrived, FlowKey, FlowState},
    Reason, GATEWAY_MAC,
};
use fastpath_tests::packets::{self, POD_MAC, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use support::*;

const CLIENT_PORT: u16 = 40000;
const MASQUERADE_PORT: u16 = 61003;

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

fn from_pod() -> Arrived {
    Arrived::from_pod(TEST_IFINDEX)
}

fn state(ebpf: &aya::Ebpf, key: &FlowKey) -> Option<FlowState> {
    flow(ebpf, key).map(|v| FlowState::try_from(v.state).unwrap())
}

/// Run `program` on `frame` and check it reached the kernel unchanged, counted under `reason`.
fn passes(ebpf: &mut aya::Ebpf, program: &'static str, frame: &[u8], reason: Reason) {
    let before = count(ebpf, reason);
    let (verdict, out) = run(ebpf, program, frame);
    assert_eq!(verdict, PASS, "{program}");
    assert_eq!(out, frame, "{program}: the frame must reach the kernel unchanged");
    assert_eq!(count(ebpf, reason), before + 1, "{program}: counted under {reason:?}");
}

/// The IPv4 packet of an Ethernet frame.
fn ip_of(frame: &[u8]) -> &[u8] {
    &frame[14..]
}

/// The plain frame the underlay brings from `mac` with the IPv4 packet `ip`.
fn plain_from(underlay_mac: [u8; 6], mac: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut frame = packets::ethernet(underlay_mac, mac, packets::ETH_P_IP);
    frame.extend_from_slice(ip);
    frame
}

#[test]
fn a_flow_takes_the_fast_path_only_once_the_daemon_wrote_what_conntrack_confirmed() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        passes(ebpf, FROM_POD, &outgoing(TCP_SYN), Reason::PassFlowPending);
        assert_eq!(flow(ebpf, &outgoing_key()), None, "the programs never write the table");

        approve(ebpf, outgoing_key(), from_pod(), outgoing_key());
        let (verdict, _) = run(ebpf, FROM_POD, &outgoing(TCP_ACK));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(count(ebpf, Reason::Encapsulated), 1);
        let value = flow(ebpf, &outgoing_key()).unwrap();
        assert_eq!((value.fast_packets, value.kernel_packets), (1, 0));
        assert_ne!(value.last_seen_ns, 0, "the daemon reads when the fast path last carried it");

        // Approved as entering from another pod's interface: this one is not where it enters.
        approve(ebpf, outgoing_key(), Arrived::from_pod(OTHER_IFINDEX), outgoing_key());
        passes(ebpf, FROM_POD, &outgoing(TCP_ACK), Reason::PassFlowElsewhere);
        assert_eq!(flow(ebpf, &outgoing_key()).unwrap().kernel_packets, 1);
    });
}

/// POD ← REMOTE_POD:80, the reply direction's key.
fn incoming_key() -> FlowKey {
    FlowKey::new(REMOTE_POD, POD, 6, (80, CLIENT_PORT))
}

#[test]
fn a_syn_or_rst_hands_both_directions_to_the_kernel_a_fin_only_its_own() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        let remote = Arrived::from_underlay(Arrival::Ipip, PEER_IP);
        for (flags, both) in [(TCP_FIN | TCP_ACK, false), (TCP_RST, true), (TCP_SYN, true)] {
            approve(ebpf, outgoing_key(), from_pod(), outgoing_key());
            approve(ebpf, incoming_key(), remote, incoming_key());
            passes(ebpf, FROM_POD, &outgoing(flags), Reason::PassFlowClosing);
            assert_eq!(state(ebpf, &outgoing_key()), Some(FlowState::Closing), "{flags:#x}");
            // The last ACK goes through the kernel too, so conntrack sees the whole close.
            passes(ebpf, FROM_POD, &outgoing(TCP_ACK), Reason::PassFlowClosing);
            // A half-closed connection still sends the other way; after a reset or a reused
            // tuple, a reply that skipped conntrack would reach it out of window.
            let reply = if both { FlowState::Closing } else { FlowState::Approved };
            assert_eq!(state(ebpf, &incoming_key()), Some(reply), "{flags:#x}: the other direction");
        }
    });
}

#[test]
fn a_syn_closes_a_translated_connections_other_direction_by_its_translated_key() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        let to_service = FlowKey::new(POD, SERVICE, 6, (CLIENT_PORT, 80));
        let to_backend = FlowKey::new(POD, REMOTE_POD, 6, (CLIENT_PORT, 8080));
        let from_backend = FlowKey::new(REMOTE_POD, POD, 6, (8080, CLIENT_PORT));
        let from_service = FlowKey::new(SERVICE, POD, 6, (80, CLIENT_PORT));
        approve(ebpf, to_service, from_pod(), to_backend);
        approve(ebpf, from_backend, Arrived::from_underlay(Arrival::Ipip, PEER_IP), from_service);
        let syn = packets::pod_frame(&tcp(POD, SERVICE, (CLIENT_PORT, 80), TCP_SYN));
        passes(ebpf, FROM_POD, &syn, Reason::PassFlowClosing);
        assert_eq!(state(ebpf, &from_backend), Some(FlowState::Closing));
        // A packet that arrives where the flow does not enter closes nothing.
        approve(ebpf, from_backend, Arrived::from_underlay(Arrival::Ipip, PEER_IP), from_service);
        approve(ebpf, to_service, Arrived::from_pod(OTHER_IFINDEX), to_backend);
        passes(ebpf, FROM_POD, &syn, Reason::PassFlowElsewhere);
        assert_eq!(state(ebpf, &from_backend), Some(FlowState::Approved));
    });
}

#[test]
fn a_service_connection_is_translated_as_conntrack_says_both_ways() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        // kube-proxy's DNAT: the pod asks the service, a backend behind the IPIP block answers.
        let to_service = FlowKey::new(POD, SERVICE, 6, (CLIENT_PORT, 80));
        let to_backend = FlowKey::new(POD, REMOTE_POD, 6, (CLIENT_PORT, 8080));
        let from_backend = FlowKey::new(REMOTE_POD, POD, 6, (8080, CLIENT_PORT));
        let from_service = FlowKey::new(SERVICE, POD, 6, (80, CLIENT_PORT));
        let request = packets::pod_frame(&tcp(POD, SERVICE, (CLIENT_PORT, 80), TCP_ACK));
        // Before conntrack confirmed it: the kernel's, as a destination no route holds.
        passes(ebpf, FROM_POD, &request, Reason::PassNoRoute);
        approve(ebpf, to_service, from_pod(), to_backend);
        approve(ebpf, from_backend, Arrived::from_underlay(Arrival::Ipip, PEER_IP), from_service);

        let (verdict, out) = run(ebpf, FROM_POD, &request);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(count(ebpf, Reason::Encapsulated), 1);
        let inner = &out[34..];
        assert_eq!((&inner[12..16], &inner[16..20]), (&POD[..], &REMOTE_POD[..]), "DNATed to the backend");
        assert_eq!(&inner[22..24], &8080u16.to_be_bytes(), "and its port");
        assert!(packets::checksums_hold(inner), "IPv4 and TCP checksums after DNAT: {inner:02x?}");

        let reply = ipip_frame(PEER_IP, NODE_IP, &tcp(REMOTE_POD, POD, (8080, CLIENT_PORT), TCP_ACK));
        let (verdict, out) = run(ebpf, FROM_UNDERLAY, &reply);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(count(ebpf, Reason::Decapsulated), 1);
        assert_eq!((&out[0..6], &out[6..12]), (&POD_MAC[..], &GATEWAY_MAC[..]));
        let delivered = ip_of(&out);
        assert_eq!(&delivered[12..16], &SERVICE[..], "the reply comes from the service address");
        assert_eq!(&delivered[20..22], &80u16.to_be_bytes(), "and its port");
        assert!(packets::checksums_hold(delivered), "checksums after un-DNAT: {delivered:02x?}");
        // The reply from the backend's own address straight from the pod's view is another flow.
        assert_eq!(flow(ebpf, &from_backend).unwrap().fast_packets, 1);
    });
}

#[test]
fn masquerade_to_the_outside_leaves_with_the_nodes_address_and_its_replies_come_back_in() {
    in_node(|ebpf, underlay| {
        route_outside();
        trust_kernel(ebpf);
        let out_key = FlowKey::new(POD, OUTSIDE, 6, (CLIENT_PORT, 443));
        let masqueraded = FlowKey::new(NODE_IP, OUTSIDE, 6, (MASQUERADE_PORT, 443));
        let back_key = FlowKey::new(OUTSIDE, NODE_IP, 6, (443, MASQUERADE_PORT));
        let delivered_key = FlowKey::new(OUTSIDE, POD, 6, (443, CLIENT_PORT));
        approve(ebpf, out_key, from_pod(), masqueraded);
        approve(ebpf, back_key, Arrived::from_underlay(Arrival::Plain, PEER_IP), delivered_key);

        let request = packets::pod_frame(&tcp(POD, OUTSIDE, (CLIENT_PORT, 443), TCP_ACK));
        let (verdict, out) = run(ebpf, FROM_POD, &request);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(count(ebpf, Reason::RoutedUnderlay), 1);
        assert_eq!((&out[0..6], &out[6..12]), (&PEER_MAC[..], &underlay.mac[..]), "to the gateway");
        let ip = ip_of(&out);
        assert_eq!(&ip[12..16], &NODE_IP[..], "leaves with the node's address");
        assert_eq!(&ip[20..22], &MASQUERADE_PORT.to_be_bytes());
        assert_eq!(ip[8], 63, "TTL decremented");
        assert!(packets::checksums_hold(ip), "checksums after SNAT: {ip:02x?}");

        let reply = tcp(OUTSIDE, NODE_IP, (443, MASQUERADE_PORT), TCP_ACK);
        let (verdict, out) = run(ebpf, FROM_UNDERLAY, &plain_from(underlay.mac, PEER_MAC, &reply));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(count(ebpf, Reason::RoutedFromUnderlay), 1);
        let ip = ip_of(&out);
        assert_eq!(&ip[16..20], &POD[..], "delivered to the pod behind the node's address");
        assert_eq!(&ip[22..24], &CLIENT_PORT.to_be_bytes());
        assert!(packets::checksums_hold(ip), "checksums after un-SNAT: {ip:02x?}");
        // The same reply from another sender than the gateway: not where the flow enters.
        passes(
            ebpf,
            FROM_UNDERLAY,
            &plain_from(underlay.mac, [2, 0, 0, 0, 0, 0x99], &reply),
            Reason::PassFlowElsewhere,
        );
        // Plain traffic to the node itself of no flow: the host's own, untouched.
        let other = tcp(OUTSIDE, NODE_IP, (443, 22), TCP_ACK);
        passes(ebpf, FROM_UNDERLAY, &plain_from(underlay.mac, PEER_MAC, &other), Reason::PassUnderlayOther);
    });
}

#[test]
fn udp_and_icmp_echo_are_translated_with_their_checksums() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        // A DNS query to a service, DNATed to a pod here.
        let query = packets::udp_datagram(addr(POD), addr(SERVICE), (CLIENT_PORT, 53), b"query");
        approve(
            ebpf,
            FlowKey::new(POD, SERVICE, 17, (CLIENT_PORT, 53)),
            from_pod(),
            FlowKey::new(POD, OTHER_LOCAL_POD, 17, (CLIENT_PORT, 5353)),
        );
        let (verdict, out) = run(ebpf, FROM_POD, &packets::pod_frame(&query));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(count(ebpf, Reason::RedirectedLocal), 1);
        let ip = ip_of(&out);
        assert_eq!((&ip[16..20], &ip[22..24]), (&OTHER_LOCAL_POD[..], &5353u16.to_be_bytes()[..]));
        assert!(packets::checksums_hold(ip), "UDP checksum after DNAT: {ip:02x?}");
        // A UDP datagram without a checksum (0) keeps none.
        let mut unsummed = packets::udp_datagram(addr(POD), addr(SERVICE), (CLIENT_PORT + 1, 53), b"query");
        unsummed[26..28].copy_from_slice(&[0, 0]);
        approve(
            ebpf,
            FlowKey::new(POD, SERVICE, 17, (CLIENT_PORT + 1, 53)),
            from_pod(),
            FlowKey::new(POD, OTHER_LOCAL_POD, 17, (CLIENT_PORT + 1, 5353)),
        );
        let (_, out) = run(ebpf, FROM_POD, &packets::pod_frame(&unsummed));
        assert_eq!(&ip_of(&out)[26..28], &[0, 0]);

        // A ping masqueraded: conntrack may change its identifier, as the "port" of ICMP.
        let ping = packets::icmp_echo_id(addr(POD), addr(REMOTE_POD), 8, 0x1234);
        approve(
            ebpf,
            FlowKey::new(POD, REMOTE_POD, 1, (0x1234, 8)),
            from_pod(),
            FlowKey::new(NODE_IP, REMOTE_POD, 1, (0x4321, 8)),
        );
        let (verdict, out) = run(ebpf, FROM_POD, &packets::pod_frame(&ping));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        let inner = &out[34..];
        assert_eq!((&inner[12..16], &inner[24..26]), (&NODE_IP[..], &0x4321u16.to_be_bytes()[..]));
        assert!(packets::checksums_hold(inner), "ICMP checksum after the identifier changed: {inner:02x?}");
    });
}

#[test]
fn what_no_flow_names_or_no_checksum_allows_is_the_kernels() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        // Destination unreachable, port unreachable: about another flow, which only conntrack
        // can relate to it.
        let error = packets::ipv4_packet(addr(POD), addr(REMOTE_POD), 64, 1, &[3, 3, 0, 0, 0, 0, 0, 0]);
        passes(ebpf, FROM_POD, &packets::pod_frame(&error), Reason::PassFlowUntracked);
        // A protocol without ports (GRE).
        let gre = packets::ipv4_packet(addr(POD), addr(REMOTE_POD), 64, 47, &[0; 8]);
        passes(ebpf, FROM_POD, &packets::pod_frame(&gre), Reason::PassFlowUntracked);
        // SCTP's CRC32c cannot be patched: a translated SCTP entry (which the daemon never
        // writes) still goes to the kernel.
        let sctp = packets::ipv4_packet(
            addr(POD),
            addr(SERVICE),
            64,
            132,
            &[0x9c, 0x40, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        approve(
            ebpf,
            FlowKey::new(POD, SERVICE, 132, (CLIENT_PORT, 80)),
            from_pod(),
            FlowKey::new(POD, REMOTE_POD, 132, (CLIENT_PORT, 80)),
        );
        passes(ebpf, FROM_POD, &packets::pod_frame(&sctp), Reason::PassFlowPending);
    });
}

#[test]
fn tunnels_and_plain_traffic_are_delivered_only_from_where_the_flow_enters() {
    in_node(|ebpf, underlay| {
        trust_kernel(ebpf);
        let inner = tcp(REMOTE_POD, POD, (80, CLIENT_PORT), TCP_ACK);
        let tunnelled = ipip_frame(PEER_IP, NODE_IP, &inner);
        passes(ebpf, FROM_UNDERLAY, &tunnelled, Reason::PassFlowPending);
        let key = FlowKey::new(REMOTE_POD, POD, 6, (80, CLIENT_PORT));
        approve(ebpf, key, Arrived::from_underlay(Arrival::Ipip, PEER_IP), key);
        let (verdict, out) = run(ebpf, FROM_UNDERLAY, &tunnelled);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(out.len(), 14 + inner.len(), "outer header removed");
        assert_eq!(count(ebpf, Reason::Decapsulated), 1);
        // In VXLAN from the same node: elsewhere.
        passes(ebpf, FROM_UNDERLAY, &vxlan_from_peer(&inner), Reason::PassFlowElsewhere);

        // Plain from the node the block is routed through, by its MAC.
        let plain = tcp(PLAIN_POD, POD, (80, CLIENT_PORT), TCP_ACK);
        let plain_key = FlowKey::new(PLAIN_POD, POD, 6, (80, CLIENT_PORT));
        passes(ebpf, FROM_UNDERLAY, &plain_from(underlay.mac, PEER_MAC, &plain), Reason::PassFlowPending);
        approve(ebpf, plain_key, Arrived::from_underlay(Arrival::Plain, PEER_IP), plain_key);
        let (verdict, out) = run(ebpf, FROM_UNDERLAY, &plain_from(underlay.mac, PEER_MAC, &plain));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!((&out[0..6], &out[6..12]), (&POD_MAC[..], &GATEWAY_MAC[..]));
        assert_eq!(out[14 + 8], plain[8] - 1, "TTL decremented");
        assert_eq!(count(ebpf, Reason::RoutedFromUnderlay), 1);
        passes(
            ebpf,
            FROM_UNDERLAY,
            &plain_from(underlay.mac, [2, 0, 0, 0, 0, 0x99], &plain),
            Reason::PassFlowElsewhere,
        );
        // A packet posing as a pod of this node stays the kernel's.
        let posing = tcp(OTHER_LOCAL_POD, POD, (80, CLIENT_PORT), TCP_ACK);
        passes(ebpf, FROM_UNDERLAY, &plain_from(underlay.mac, PEER_MAC, &posing), Reason::PassUnderlayOther);
        // Under --trust routes plain traffic is the kernel's, approved or not.
        trust_routes(ebpf);
        passes(ebpf, FROM_UNDERLAY, &plain_from(underlay.mac, PEER_MAC, &plain), Reason::PassUnderlayOther);
    });
}

#[test]
fn under_trust_routes_the_table_is_never_read() {
    in_node(|ebpf, _| {
        // An entry saying "elsewhere" changes nothing: the routes decide.
        approve(ebpf, outgoing_key(), Arrived::from_pod(OTHER_IFINDEX), outgoing_key());
        let (verdict, _) = run(ebpf, FROM_POD, &outgoing(TCP_SYN));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(count(ebpf, Reason::Encapsulated), 1);
        assert_eq!(flow(ebpf, &outgoing_key()).unwrap().fast_packets, 0);
    });
}
