//! The forwarding programs on crafted frames through BPF_PROG_TEST_RUN: verdicts, the bytes
//! that leave, and the counters.
//!
//! Each test runs in a node namespace of its own (`support::in_node`), because `bpf_fib_lookup`
//! consults the namespace of the process running the test.

mod support;

use aya::maps::{lpm_trie::Key, HashMap, LpmTrie};
use fastpath::dataplane::loader::{FROM_POD, FROM_UNDERLAY};
use fastpath_common::{
    icmp, ipv4,
    maps::{Endpoint, ENDPOINTS, ROUTES},
    route::RouteValue,
    Reason, GATEWAY_MAC,
};
use fastpath_tests::packets::{self, checksum, ETH_P_IP, POD_MAC};
use support::*;

/// A frame from a pod: Ethernet to ee:ee:…, then an ICMP echo with `ttl`, `size` bytes of IP.
fn from_pod(src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
    packets::ipv4_frame(addr(src), addr(dst), ttl)
}

fn sized_from_pod(src: [u8; 4], dst: [u8; 4], ip_len: usize, df: bool) -> Vec<u8> {
    let mut frame = packets::ethernet(GATEWAY_MAC, POD_MAC, ETH_P_IP);
    let mut payload = vec![8u8, 0, 0, 0, 0, 0, 0, 0];
    payload.resize(ip_len - 20, 0xab);
    let mut ip = packets::ipv4_packet(addr(src), addr(dst), 64, 1, &payload);
    if !df {
        ip[6] = 0;
        ip[10] = 0;
        ip[11] = 0;
        let sum = checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    frame.extend_from_slice(&ip);
    frame
}

fn assert_header_checksum_ok(ip: &[u8]) {
    assert_eq!(checksum(&ip[..20]), 0, "bad IPv4 header checksum: {:02x?}", &ip[..20]);
}

fn assert_passes_unchanged(program: &'static str, frame: Vec<u8>, reason: Reason) {
    in_node(move |ebpf, _| {
        let (verdict, out) = run(ebpf, program, &frame);
        assert_eq!(verdict, PASS, "{reason:?}");
        assert_eq!(out, frame, "{reason:?}: the frame must reach the kernel unchanged");
        assert_eq!(count(ebpf, reason), 1, "{reason:?}");
    });
}

fn assert_dropped(program: &'static str, frame: Vec<u8>, reason: Reason) {
    in_node(move |ebpf, _| {
        let (verdict, _) = run(ebpf, program, &frame);
        assert_eq!(verdict, TC_ACT_SHOT, "{reason:?}");
        assert_eq!(count(ebpf, reason), 1, "{reason:?}");
    });
}

#[test]
fn a_packet_for_a_pod_on_this_node_is_redirected_into_it() {
    in_node(|ebpf, _| {
        let frame = from_pod(POD, OTHER_LOCAL_POD, 64);
        let (verdict, out) = run(ebpf, FROM_POD, &frame);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(&out[0..6], &OTHER_POD_MAC, "Ethernet destination is the pod");
        assert_eq!(&out[6..12], &GATEWAY_MAC, "Ethernet source is ee:ee:ee:ee:ee:ee");
        assert_eq!(out[14 + 8], 63, "TTL decremented");
        assert_header_checksum_ok(&out[14..]);
        assert_eq!(&out[14 + 12..], &frame[14 + 12..], "addresses and payload untouched");
        assert_eq!(count(ebpf, Reason::RedirectedLocal), 1);
    });
}

#[test]
fn the_exact_match_endpoint_table_is_consulted_before_the_route_trie() {
    in_node(|ebpf, _| {
        // An endpoint the trie does not know (its /26 is a blackhole): only the table can
        // deliver it.
        let mut endpoints: HashMap<_, [u8; 4], Endpoint> =
            HashMap::try_from(ebpf.map_mut(ENDPOINTS).unwrap()).unwrap();
        endpoints
            .insert([10, 244, 40, 38], Endpoint { ifindex: 43, mac: [2, 0, 0, 0, 0, 0x38], _pad: [0; 2] }, 0)
            .unwrap();
        let (verdict, out) = run(ebpf, FROM_POD, &from_pod(POD, [10, 244, 40, 38], 64));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(&out[0..6], &[2, 0, 0, 0, 0, 0x38]);
        assert_eq!(count(ebpf, Reason::RedirectedLocal), 1);
    });
}

#[test]
fn the_next_hop_is_asked_of_the_fib_once_per_generation() {
    in_node(|ebpf, _| {
        let frame = from_pod(POD, REMOTE_POD, 64);
        assert_eq!(&run(ebpf, FROM_POD, &frame).1[0..6], &PEER_MAC);
        let cached = next_hop(ebpf, PEER_IP).expect("the next hop is cached");
        assert_eq!((cached.dmac, cached.generation), (PEER_MAC, 0));
        // The kernel learns another MAC for the next node; until the daemon says something
        // changed, the cached answer stands.
        let moved = [0x02, 0, 0, 0, 0, 0x99];
        set_neighbour(PEER_IP, moved);
        assert_eq!(&run(ebpf, FROM_POD, &frame).1[0..6], &PEER_MAC, "the cache answered");
        set_next_hop_generation(ebpf, 1);
        assert_eq!(&run(ebpf, FROM_POD, &frame).1[0..6], &moved, "asked the FIB again");
        assert_eq!(next_hop(ebpf, PEER_IP).map(|e| (e.dmac, e.generation)), Some((moved, 1)));
        assert_eq!(count(ebpf, Reason::Encapsulated), 3);
    });
}

#[test]
fn an_unresolved_next_hop_is_never_cached() {
    in_node(|ebpf, _| {
        assert_eq!(run(ebpf, FROM_POD, &from_pod(POD, [10, 244, 9, 9], 64)).0, TC_ACT_REDIRECT);
        assert_eq!(next_hop(ebpf, UNRESOLVED_PEER_IP), None, "bpf_redirect_neigh resolves it each time");
    });
}

#[test]
fn a_df_packet_too_big_for_the_underlay_on_a_plain_route_is_answered_with_frag_needed() {
    in_node(|ebpf, _| {
        // 1500 bytes fit the underlay; trailing bytes past the IP packet travel too, and do not.
        assert_eq!(run(ebpf, FROM_POD, &sized_from_pod(POD, [10, 244, 7, 9], 1500, true)).0, TC_ACT_REDIRECT);
        let mut padded = sized_from_pod(POD, [10, 244, 7, 9], 1500, true);
        padded.extend_from_slice(&[0; 4]);
        let (verdict, out) = run(ebpf, FROM_POD, &padded);
        assert_eq!(verdict, TC_ACT_REDIRECT, "sent back to the pod");
        assert_eq!(u16::from_be_bytes([out[34 + 6], out[34 + 7]]), 1500, "the underlay MTU");
        assert_eq!((count(ebpf, Reason::RoutedUnderlay), count(ebpf, Reason::IcmpFragNeeded)), (1, 1));
    });
}

#[test]
fn a_packet_for_a_remote_block_is_encapsulated_toward_its_node() {
    in_node(|ebpf, underlay| {
        let frame = from_pod(POD, REMOTE_POD, 64);
        let inner_len = (frame.len() - 14) as u16;
        let (verdict, out) = run(ebpf, FROM_POD, &frame);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(out.len(), frame.len() + 20);
        assert_eq!(&out[0..6], &PEER_MAC, "to the next node's MAC");
        assert_eq!(&out[6..12], &underlay.mac, "from the underlay's MAC");
        assert_eq!(&out[12..14], &ETH_P_IP.to_be_bytes());
        let outer = ipv4::outer_header(NODE_IP, PEER_IP, inner_len, 0, true);
        assert_eq!(&out[14..34], &outer, "outer header: this node → next hop, proto 4, TTL 64, DF copied");
        assert_header_checksum_ok(&out[14..34]);
        let inner = &out[34..];
        assert_eq!(inner[8], 63, "inner TTL decremented once on this node");
        assert_header_checksum_ok(inner);
        assert_eq!(&inner[12..20], &frame[14 + 12..14 + 20], "inner addresses untouched");
        assert_eq!(&inner[20..], &frame[14 + 20..], "payload untouched");
        assert_eq!(count(ebpf, Reason::Encapsulated), 1);
    });
}

#[test]
fn a_next_hop_without_a_neighbour_entry_is_left_to_redirect_neigh() {
    in_node(|ebpf, _| {
        let frame = from_pod(POD, [10, 244, 9, 9], 64);
        let (verdict, out) = run(ebpf, FROM_POD, &frame);
        assert_eq!(verdict, TC_ACT_REDIRECT, "bpf_redirect_neigh resolves it on the way out");
        assert_eq!(out.len(), frame.len() + 20);
        assert_eq!(&out[14 + 16..14 + 20], &UNRESOLVED_PEER_IP);
        assert_eq!(count(ebpf, Reason::Encapsulated), 1);
    });
}

#[test]
fn a_packet_for_a_plain_remote_block_is_routed_over_the_underlay() {
    in_node(|ebpf, underlay| {
        let frame = from_pod(POD, [10, 244, 7, 9], 64);
        let (verdict, out) = run(ebpf, FROM_POD, &frame);

        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(out.len(), frame.len());
        assert_eq!(&out[0..6], &PEER_MAC);
        assert_eq!(&out[6..12], &underlay.mac);
        assert_eq!(out[14 + 8], 63);
        assert_header_checksum_ok(&out[14..]);
        assert_eq!(count(ebpf, Reason::RoutedUnderlay), 1);
    });
}

#[test]
fn a_df_packet_too_big_for_the_tunnel_is_answered_with_frag_needed() {
    in_node(|ebpf, _| {
        let frame = sized_from_pod(POD, REMOTE_POD, 1500, true);
        let (verdict, out) = run(ebpf, FROM_POD, &frame);
        assert_eq!(verdict, TC_ACT_REDIRECT, "sent back to the pod");
        assert_eq!(out.len(), 14 + icmp::REPLY_LEN);
        assert_eq!(&out[0..6], &POD_MAC);
        assert_eq!(&out[6..12], &GATEWAY_MAC);
        let ip = &out[14..34];
        assert_header_checksum_ok(ip);
        assert_eq!(&ip[12..16], &NODE_IP, "from this node");
        assert_eq!(&ip[16..20], &POD, "to the sender");
        let message = &out[34..];
        assert_eq!(&message[..2], &[3, 4], "destination unreachable, fragmentation needed");
        assert_eq!(u16::from_be_bytes([message[6], message[7]]), 1480, "the tunnel MTU");
        assert_eq!(checksum(message), 0, "ICMP checksum");
        assert_eq!(&message[8..], &frame[14..14 + 28], "quotes the IP header and 8 bytes");
        assert_eq!(count(ebpf, Reason::IcmpFragNeeded), 1);
    });
}

#[test]
fn a_fragmentable_packet_too_big_for_the_tunnel_goes_to_the_kernel() {
    assert_passes_unchanged(FROM_POD, sized_from_pod(POD, REMOTE_POD, 1500, false), Reason::PassTooBig);
}

#[test]
fn a_packet_that_fits_the_tunnel_exactly_is_encapsulated() {
    in_node(|ebpf, _| {
        let (verdict, out) = run(ebpf, FROM_POD, &sized_from_pod(POD, REMOTE_POD, 1480, true));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(out.len(), 14 + 1500);
        assert_eq!(count(ebpf, Reason::Encapsulated), 1);
    });
}

#[test]
fn ttl_1_goes_to_the_kernel() {
    assert_passes_unchanged(FROM_POD, from_pod(POD, REMOTE_POD, 1), Reason::PassTtlExceeded);
}

#[test]
fn ip_options_go_to_the_kernel() {
    let mut frame = from_pod(POD, REMOTE_POD, 64);
    frame[14] = 0x46;
    frame.splice(34..34, [1, 1, 1, 0]);
    let total = (frame.len() - 14) as u16;
    frame[16..18].copy_from_slice(&total.to_be_bytes());
    assert_passes_unchanged(FROM_POD, frame, Reason::PassIpOptions);
}

#[test]
fn fragments_go_to_the_kernel() {
    let mut frame = from_pod(POD, REMOTE_POD, 64);
    frame[14 + 6] = 0x20; // more fragments
    assert_passes_unchanged(FROM_POD, frame, Reason::PassFragment);
}

#[test]
fn destinations_without_a_route_go_to_the_kernel() {
    assert_passes_unchanged(FROM_POD, from_pod(POD, [8, 8, 8, 8], 64), Reason::PassNoRoute);
}

#[test]
fn special_destinations_go_to_the_kernel() {
    for dst in [NODE_IP, [169, 254, 1, 1], [255, 255, 255, 255], [224, 0, 0, 5], [127, 0, 0, 1]] {
        assert_passes_unchanged(FROM_POD, from_pod(POD, dst, 64), Reason::PassSpecialDestination);
    }
}

#[test]
fn an_empty_address_in_the_local_block_is_dropped() {
    assert_dropped(FROM_POD, from_pod(POD, [10, 244, 40, 50], 64), Reason::DropNoEndpoint);
}

#[test]
fn a_pod_using_another_pods_address_is_dropped() {
    assert_dropped(FROM_POD, from_pod(OTHER_LOCAL_POD, REMOTE_POD, 64), Reason::DropSpoofedSource);
    assert_dropped(FROM_POD, from_pod(REMOTE_POD, POD, 64), Reason::DropSpoofedSource);
}

#[test]
fn a_pod_sending_from_an_unallocated_address_of_its_block_goes_to_the_kernel() {
    for dst in [OTHER_LOCAL_POD, REMOTE_POD] {
        assert_passes_unchanged(
            FROM_POD,
            from_pod([10, 244, 40, 50], dst, 64),
            Reason::PassSourceUnallocated,
        );
    }
}

#[test]
fn a_pod_sending_from_a_service_or_outside_address_goes_to_the_kernel() {
    for src in [[10, 96, 0, 10], [192, 0, 2, 7], NODE_IP] {
        for dst in [OTHER_LOCAL_POD, REMOTE_POD] {
            assert_passes_unchanged(FROM_POD, from_pod(src, dst, 64), Reason::PassSourceNotPod);
        }
    }
}

#[test]
fn a_pod_with_two_addresses_sends_from_both() {
    const SECOND: [u8; 4] = [10, 244, 40, 40];
    in_node(|ebpf, _| {
        // A second /32 via the same interface, as the daemon writes it: trie and endpoint table.
        let mut routes: LpmTrie<_, [u8; 4], RouteValue> =
            LpmTrie::try_from(ebpf.map_mut(ROUTES).unwrap()).unwrap();
        routes.insert(&Key::new(32, SECOND), RouteValue::local(TEST_IFINDEX, POD_MAC), 0).unwrap();
        let mut endpoints: HashMap<_, [u8; 4], Endpoint> =
            HashMap::try_from(ebpf.map_mut(ENDPOINTS).unwrap()).unwrap();
        endpoints.insert(SECOND, Endpoint { ifindex: TEST_IFINDEX, mac: POD_MAC, _pad: [0; 2] }, 0).unwrap();
        for src in [POD, SECOND] {
            assert_eq!(run(ebpf, FROM_POD, &from_pod(src, OTHER_LOCAL_POD, 64)).0, TC_ACT_REDIRECT);
            assert_eq!(run(ebpf, FROM_POD, &from_pod(src, REMOTE_POD, 64)).0, TC_ACT_REDIRECT);
        }
        assert_eq!(count(ebpf, Reason::RedirectedLocal), 2);
        assert_eq!(count(ebpf, Reason::Encapsulated), 2);
    });
}

/// IPIP from `outer_src` to `outer_dst` around `inner` (an IP packet), in Ethernet.
#[test]
fn ipip_from_a_peer_is_decapsulated_and_delivered_to_the_pod() {
    in_node(|ebpf, _| {
        let inner = packets::icmp_echo(addr(REMOTE_POD), addr(POD), 63);
        let (verdict, out) = run(ebpf, FROM_UNDERLAY, &ipip_frame(PEER_IP, NODE_IP, &inner));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(out.len(), 14 + inner.len(), "outer header removed");
        assert_eq!(&out[0..6], &POD_MAC);
        assert_eq!(&out[6..12], &GATEWAY_MAC);
        assert_eq!(out[14 + 8], 62, "TTL decremented on delivery");
        assert_header_checksum_ok(&out[14..]);
        assert_eq!(&out[14 + 12..], &inner[12..], "addresses and payload untouched");
        assert_eq!(count(ebpf, Reason::Decapsulated), 1);
    });
}

#[test]
fn ipip_whose_inner_source_is_not_the_senders_goes_to_the_kernel_encapsulated() {
    // A pod of a third node (its block is routed via 10.101.14.53), a pod of this node, and
    // an outside address.
    for src in [[10, 244, 9, 9], POD, [192, 0, 2, 7]] {
        let inner = packets::icmp_echo(addr(src), addr(OTHER_LOCAL_POD), 63);
        assert_passes_unchanged(
            FROM_UNDERLAY,
            ipip_frame(PEER_IP, NODE_IP, &inner),
            Reason::PassInnerSourceForeign,
        );
    }
}

#[test]
fn ipip_from_the_senders_own_address_or_blocks_is_delivered() {
    in_node(|ebpf, _| {
        // The node's host network, a pod of its IPIP block, a pod of its plain block.
        for src in [PEER_IP, REMOTE_POD, [10, 244, 7, 9]] {
            let inner = packets::icmp_echo(addr(src), addr(POD), 63);
            assert_eq!(run(ebpf, FROM_UNDERLAY, &ipip_frame(PEER_IP, NODE_IP, &inner)).0, TC_ACT_REDIRECT);
        }
        assert_eq!(count(ebpf, Reason::Decapsulated), 3);
    });
}

#[test]
fn ipip_from_an_unknown_source_is_dropped() {
    let inner = packets::icmp_echo(addr(REMOTE_POD), addr(POD), 63);
    assert_dropped(FROM_UNDERLAY, ipip_frame([10, 101, 14, 60], NODE_IP, &inner), Reason::DropUnknownPeer);
}

#[test]
fn ipip_for_another_address_or_not_for_a_local_pod_goes_to_the_kernel() {
    let inner = packets::icmp_echo(addr(REMOTE_POD), addr(POD), 63);
    assert_passes_unchanged(
        FROM_UNDERLAY,
        ipip_frame(PEER_IP, [10, 101, 14, 52], &inner),
        Reason::PassUnderlayOther,
    );
    let elsewhere = packets::icmp_echo(addr(REMOTE_POD), addr([10, 244, 166, 151]), 63);
    assert_passes_unchanged(
        FROM_UNDERLAY,
        ipip_frame(PEER_IP, NODE_IP, &elsewhere),
        Reason::PassDecapNotLocal,
    );
}

#[test]
fn plain_underlay_traffic_goes_to_the_kernel() {
    let mut frame = packets::ethernet([0x02, 0, 0, 0, 0, 0x50], PEER_MAC, ETH_P_IP);
    frame.extend_from_slice(&packets::icmp_echo(addr(PEER_IP), addr(NODE_IP), 64));
    assert_passes_unchanged(FROM_UNDERLAY, frame, Reason::PassUnderlayOther);
}
