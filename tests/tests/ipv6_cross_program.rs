//! IPv6 across nodes through BPF_PROG_TEST_RUN: a pod's packet to another node's block leaves
//! plain or in IPv6 VXLAN (its bytes checked against what `vxlan-v6.calico` sends, its UDP
//! checksum verified), IPv6 VXLAN from a known node is taken apart into the pod, and every
//! reason such a packet is dropped or handed to the kernel for.

mod support;

use fastpath::dataplane::loader::{FROM_POD, FROM_UNDERLAY};
use fastpath_common::{
    ipv6::{self, Ipv6Fields},
    maps::{NextHopEntry, Node6Config, NEXT_HOPS6, NODE6_F_READY},
    route::ROUTE_F_POLICY,
    route6::RouteValue6,
    Reason, GATEWAY_MAC,
};
use fastpath_tests::packets::POD_MAC;
use support::*;

/// The next node's MAC on the underlay (its permanent neighbour entry).
const PEER_UNDERLAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x51];

fn assert_passes_unchanged(ebpf: &mut aya::Ebpf, program: &'static str, frame: &[u8], reason: Reason) {
    let (verdict, out) = run(ebpf, program, frame);
    assert_eq!(verdict, PASS, "{reason:?}");
    assert_eq!(out, frame, "{reason:?}: the frame must reach the kernel unchanged");
    assert_eq!(count(ebpf, reason), 1, "{reason:?}");
}

/// A UDP datagram over IPv6 from a pod; without a checksum when `checksum` is false.
fn udp6(src: [u8; 16], dst: [u8; 16], checksum: bool) -> Vec<u8> {
    udp6_sized(src, dst, checksum, b"query")
}

/// [`udp6`] carrying `data`.
fn udp6_sized(src: [u8; 16], dst: [u8; 16], checksum: bool, data: &[u8]) -> Vec<u8> {
    let mut udp = vec![0x9c, 0x40, 0, 53];
    udp.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(data);
    if checksum {
        let sum = ipv6::udp_checksum_field(ipv6::upper_layer_checksum(&src, &dst, ipv6::NEXT_UDP, &udp));
        udp[6..8].copy_from_slice(&sum.to_be_bytes());
    }
    ip6_frame(src, dst, ipv6::NEXT_UDP, &udp)
}

/// Check `out` is `sent` in IPv6 VXLAN from this node to the next, as `vxlan-v6.calico` sends it.
fn assert_vxlan6(out: &[u8], sent: &[u8], underlay: &Underlay) {
    assert_eq!(out.len(), sent.len() + 70);
    assert_eq!(&out[..6], &PEER_UNDERLAY_MAC, "to the next node's MAC on the underlay");
    assert_eq!(&out[6..12], &underlay.mac, "from this node's");
    assert_eq!(&out[12..14], &[0x86, 0xdd]);
    let outer = Ipv6Fields::parse(out[14..54].try_into().unwrap());
    assert_eq!((outer.version, outer.traffic_class, outer.flow_label), (6, 0, 0));
    assert_eq!(usize::from(outer.payload_len), out.len() - 54);
    assert_eq!((outer.next_header, outer.hop_limit), (17, 64), "UDP, the device's hop limit");
    assert_eq!((outer.src, outer.dst), (NODE6_IP, PEER6_IP));
    let udp = &out[54..62];
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    assert!((32768..60999).contains(&sport), "source port {sport} in the device's range");
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4789);
    assert_eq!(usize::from(u16::from_be_bytes([udp[4], udp[5]])), out.len() - 54);
    assert_ne!(&udp[6..8], &[0, 0], "a real UDP checksum: vxlan-v6.calico drops a zero one");
    assert_eq!(
        ipv6::upper_layer_checksum(&outer.src, &outer.dst, 17, &out[54..]),
        0,
        "the UDP checksum verifies"
    );
    assert_eq!(&out[62..70], &[0x08, 0, 0, 0, 0, 0x10, 0, 0], "flag I, VNI 4096");
    assert_eq!(&out[70..76], &PEER_VTEP6_MAC);
    assert_eq!(&out[76..82], &NODE_VTEP6_MAC);
    assert_eq!(&out[82..84], &[0x86, 0xdd]);
    let mut inner = sent[14..].to_vec();
    inner[7] -= 1;
    assert_eq!(&out[84..], &inner[..], "the pod's packet, hop limit − 1");
}

#[test]
fn a_packet_for_a_plain_block_is_routed_to_the_node_on_the_underlay() {
    in_node(|ebpf, underlay| {
        let frame = echo6(POD6, PLAIN6_POD, 64);
        let (verdict, out) = run(ebpf, FROM_POD, &frame);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(&out[..6], &PEER_UNDERLAY_MAC);
        assert_eq!(&out[6..12], &underlay.mac);
        assert_eq!(out[14 + 7], 63, "hop limit − 1");
        assert_eq!(&out[14 + 8..], &frame[14 + 8..]);
        assert_eq!(count(ebpf, Reason::RoutedUnderlay), 1);
        // The FIB's answer is kept for the next packets, under the daemon's generation.
        let cache: aya::maps::HashMap<_, [u8; 16], NextHopEntry> =
            aya::maps::HashMap::try_from(ebpf.map(NEXT_HOPS6).unwrap()).unwrap();
        let entry = cache.get(&PEER6_IP, 0).expect("cached");
        assert_eq!(
            (entry.ifindex, entry.dmac, entry.smac),
            (underlay.ifindex, PEER_UNDERLAY_MAC, underlay.mac)
        );
        let (verdict, again) = run(ebpf, FROM_POD, &frame);
        assert_eq!((verdict, again), (TC_ACT_REDIRECT, out), "from the cache, the same");
    });
}

#[test]
fn a_packet_to_a_node_without_a_neighbour_entry_leaves_by_redirect_neigh() {
    in_node(|ebpf, _| {
        let frame = echo6(POD6, UNRESOLVED6_POD, 64);
        let (verdict, out) = run(ebpf, FROM_POD, &frame);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(&out[..14], &frame[..14], "MACs left to the kernel's neighbour resolution");
        assert_eq!(out[14 + 7], 63);
        assert_eq!(count(ebpf, Reason::RoutedUnderlay), 1);
    });
}

#[test]
fn icmpv6_tcp_and_udp_leave_in_ipv6_vxlan_as_vxlan_v6_calico_sends_them() {
    in_node(|ebpf, underlay| {
        let frames =
            [echo6(POD6, VXLAN6_POD, 64), tcp6(POD6, VXLAN6_POD, 1000), udp6(POD6, VXLAN6_POD, true)];
        for frame in &frames {
            let (verdict, out) = run(ebpf, FROM_POD, frame);
            assert_eq!(verdict, TC_ACT_REDIRECT);
            assert_vxlan6(&out, frame, underlay);
        }
        assert_eq!(count(ebpf, Reason::EncapsulatedVxlan), 3);
    });
}

/// Check `out` is ICMPv6 "packet too big" with `mtu` from this node to the pod that sent `sent`,
/// quoting its header and the 8 bytes after it.
fn assert_packet_too_big(out: &[u8], sent: &[u8], mtu: u32) {
    assert_eq!(out.len(), 14 + 40 + 8 + 48);
    assert_eq!(&out[..6], &POD_MAC, "back to the pod");
    assert_eq!(&out[6..12], &GATEWAY_MAC);
    assert_eq!(&out[12..14], &[0x86, 0xdd]);
    assert_eq!(&out[14..22], &[0x60, 0, 0, 0, 0, 56, 58, 64], "ICMPv6, hop limit 64");
    assert_eq!(&out[22..38], &NODE6_IP, "from this node");
    assert_eq!(&out[38..54], &sent[22..38], "to the sender");
    assert_eq!(&out[54..56], &[2, 0], "packet too big");
    assert_eq!(&out[58..62], &mtu.to_be_bytes());
    assert_eq!(&out[62..], &sent[14..62], "the header and 8 bytes after it");
    assert_eq!(ipv6::upper_layer_checksum(&NODE6_IP, &POD6, 58, &out[54..]), 0, "the checksum verifies");
}

#[test]
fn the_largest_packet_the_tunnel_carries_leaves_and_one_byte_more_is_answered_packet_too_big() {
    in_node(|ebpf, underlay| {
        let fits = tcp6(POD6, VXLAN6_POD, VXLAN6_MTU as usize - 60);
        let (verdict, out) = run(ebpf, FROM_POD, &fits);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_vxlan6(&out, &fits, underlay);
        assert_eq!(out.len() - 14, 1500, "an underlay packet of the underlay's MTU");
        let too_big = tcp6(POD6, VXLAN6_POD, VXLAN6_MTU as usize - 59);
        let (verdict, out) = run(ebpf, FROM_POD, &too_big);
        assert_eq!(verdict, TC_ACT_REDIRECT, "back out of the pod's interface");
        assert_packet_too_big(&out, &too_big, VXLAN6_MTU);
        assert_eq!(count(ebpf, Reason::Icmp6PacketTooBig), 1);
    });
    in_node(|ebpf, _| {
        let too_big = tcp6(POD6, PLAIN6_POD, 1500 - 59);
        let (verdict, out) = run(ebpf, FROM_POD, &too_big);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_packet_too_big(&out, &too_big, 1500);
        assert_eq!(count(ebpf, Reason::Icmp6PacketTooBig), 1);
    });
}

/// What `from_pod` hands to `vxlan-v6.calico`: the same packet, inner Ethernet from this node's
/// VTEP to the other node's, hop limit − 1, nothing else changed.
fn assert_handed_to_the_device(sent: &[u8], verdict: u32, out: &[u8]) {
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!((&out[0..6], &out[6..12]), (&PEER_VTEP6_MAC[..], &NODE_VTEP6_MAC[..]));
    assert_eq!(out[14 + 7], sent[14 + 7] - 1, "hop limit − 1");
    assert_eq!((&out[12..21], &out[22..]), (&sent[12..21], &sent[22..]), "nothing else changed");
}

#[test]
fn what_ipv6_vxlan_cannot_checksum_without_reading_the_payload_goes_to_the_kernels_device() {
    let sctp = ip6_frame(POD6, VXLAN6_POD, ipv6::NEXT_SCTP, &[0; 32]);
    let mut padded = echo6(POD6, VXLAN6_POD, 64);
    padded.push(0);
    for frame in [udp6(POD6, VXLAN6_POD, false), sctp, padded] {
        in_node(move |ebpf, _| {
            let (verdict, out) = run(ebpf, FROM_POD, &frame);
            assert_handed_to_the_device(&frame, verdict, &out);
            assert_eq!(count(ebpf, Reason::Vxlan6ByDevice), 1);
        });
    }
}

#[test]
fn a_gso_packet_of_equal_segments_is_encapsulated_by_the_program() {
    // 3000 bytes of TCP data or UDP datagrams in pieces of 1000: every segment carries one UDP
    // checksum, which the program makes (`vxlan::udp_checksum6`, shown segment by segment in its
    // unit tests). A GSO skb made by BPF_PROG_TEST_RUN has no GSO type, so `bpf_skb_adjust_room`
    // refuses to grow it and the packet reaches the kernel whole, counted where the program's
    // encapsulation failed, never handed to the device; that a real aggregate is encapsulated,
    // cut and taken apart by the kernel's `vxlan-v6.calico` is `ipv6_e2e.rs`'s mixed cluster.
    let tcp = tcp6(POD6, VXLAN6_POD, 3000);
    let udp = udp6_sized(POD6, VXLAN6_POD, true, &[0x5a; 3000]);
    for frame in [tcp, udp] {
        in_node(move |ebpf, _| {
            let (verdict, out, segs_out) = run_gso(ebpf, FROM_POD, &frame, 1000, 3);
            assert_eq!((verdict, &out, segs_out), (PASS, &frame, 3));
            assert_eq!(count(ebpf, Reason::PassEncapFailed), 1);
            assert_eq!(count(ebpf, Reason::Vxlan6ByDevice), 0);
            // A shorter last piece (pieces of 1100): that segment's checksum would differ from
            // the others', so the device makes each one.
            let (verdict, out, _) = run_gso(ebpf, FROM_POD, &frame, 1100, 3);
            assert_handed_to_the_device(&frame, verdict, &out);
            assert_eq!(count(ebpf, Reason::Vxlan6ByDevice), 1);
        });
    }
    in_node(|ebpf, _| {
        // One segment's worth as a whole packet is encapsulated.
        let whole = tcp6(POD6, VXLAN6_POD, 1000);
        let (verdict, out) = run(ebpf, FROM_POD, &whole);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(out.len(), whole.len() + 70);
        assert_eq!(count(ebpf, Reason::EncapsulatedVxlan), 1);
    });
}

#[test]
fn a_gso_packet_on_a_plain_route_is_measured_by_its_segments() {
    in_node(|ebpf, _| {
        let frame = tcp6(POD6, PLAIN6_POD, 3000);
        let (verdict, out, _) = run_gso(ebpf, FROM_POD, &frame, 1440, 3);
        assert_eq!(verdict, TC_ACT_REDIRECT, "40 + 20 + 1440 fits the underlay's 1500");
        assert_eq!(out[14 + 7], 63);
        let (verdict, out, _) = run_gso(ebpf, FROM_POD, &frame, 1441, 3);
        assert_eq!(verdict, TC_ACT_REDIRECT, "a segment of 1501 bytes: packet too big");
        assert_packet_too_big(&out, &frame, 1500);
        assert_eq!(count(ebpf, Reason::Icmp6PacketTooBig), 1);
    });
}

#[test]
fn an_unallocated_address_of_this_nodes_block_is_dropped() {
    in_node(|ebpf, _| {
        let (verdict, _) = run(ebpf, FROM_POD, &echo6(POD6, UNALLOCATED6, 64));
        assert_eq!(verdict, TC_ACT_SHOT);
        assert_eq!(count(ebpf, Reason::DropNoEndpoint), 1);
    });
}

#[test]
fn what_the_routes_or_the_node_leave_to_the_kernel_goes_there() {
    in_node(|ebpf, _| {
        let mut routes6: aya::maps::LpmTrie<_, [u8; 16], RouteValue6> =
            aya::maps::LpmTrie::try_from(ebpf.map_mut(fastpath_common::maps::ROUTES6).unwrap()).unwrap();
        let policy = pod6([10, 244, 60, 0]);
        routes6
            .insert(&aya::maps::lpm_trie::Key::new(122, policy), RouteValue6::kernel(ROUTE_F_POLICY), 0)
            .unwrap();
        // A node the FIB has no route to: no address of the underlay's subnet.
        let nowhere = pod6([10, 244, 61, 0]);
        let unroutable = RouteValue6::plain([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        routes6.insert(&aya::maps::lpm_trie::Key::new(122, nowhere), unroutable, 0).unwrap();
        assert_passes_unchanged(
            ebpf,
            FROM_POD,
            &echo6(POD6, pod6([10, 244, 60, 1]), 64),
            Reason::PassPolicyRoute,
        );
        assert_passes_unchanged(
            ebpf,
            FROM_POD,
            &echo6(POD6, pod6([10, 244, 61, 1]), 64),
            Reason::PassFibFailed,
        );
    });
    in_node(|ebpf, _| {
        // No vxlan-v6.calico the programs stand in for: its routes are the kernel's.
        set_node6(ebpf, Node6Config { flags: NODE6_F_READY, ..node6_config() });
        assert_passes_unchanged(ebpf, FROM_POD, &echo6(POD6, VXLAN6_POD, 64), Reason::PassKernelRoute);
    });
    in_node(|ebpf, _| {
        // The daemon has not written this node's IPv6 side.
        set_node6(ebpf, Node6Config::default());
        assert_passes_unchanged(ebpf, FROM_POD, &echo6(POD6, PLAIN6_POD, 64), Reason::PassNotReady);
        // A pod here needs none of it.
        let (verdict, _) = run(ebpf, FROM_POD, &echo6(POD6, OTHER6, 64));
        assert_eq!(verdict, TC_ACT_REDIRECT);
    });
}

#[test]
fn ipv6_vxlan_from_the_next_node_is_taken_apart_into_the_pod() {
    in_node(|ebpf, _| {
        let inner = echo6(VXLAN6_POD, POD6, 63)[14..].to_vec();
        let frame = vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &inner);
        let (verdict, out) = run(ebpf, FROM_UNDERLAY, &frame);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(&out[..6], &POD_MAC, "to the pod");
        assert_eq!(&out[6..12], &GATEWAY_MAC, "from ee:ee:ee:ee:ee:ee");
        assert_eq!(&out[12..14], &[0x86, 0xdd]);
        let mut expected = inner.clone();
        expected[7] -= 1;
        assert_eq!(&out[14..], &expected[..], "the inner packet, hop limit − 1");
        assert_eq!(count(ebpf, Reason::DecapsulatedVxlan), 1);
        // The next node's own host network may reach a pod too.
        let inner = echo6(PEER6_IP, POD6, 64)[14..].to_vec();
        let (verdict, _) =
            run(ebpf, FROM_UNDERLAY, &vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &inner));
        assert_eq!(verdict, TC_ACT_REDIRECT);
    });
}

#[test]
fn ipv6_vxlan_from_a_stranger_is_dropped() {
    in_node(|ebpf, _| {
        let inner = echo6(VXLAN6_POD, POD6, 63)[14..].to_vec();
        let frame = vxlan6_frame(node6([10, 101, 14, 60]), NODE6_IP, VNI, NODE_VTEP6_MAC, &inner);
        let (verdict, _) = run(ebpf, FROM_UNDERLAY, &frame);
        assert_eq!(verdict, TC_ACT_SHOT);
        assert_eq!(count(ebpf, Reason::DropUnknownPeer), 1);
    });
}

#[test]
fn ipv6_vxlan_the_programs_do_not_take_apart_goes_to_the_kernel_still_encapsulated() {
    fn inner(src: [u8; 16], dst: [u8; 16], hop_limit: u8) -> Vec<u8> {
        echo6(src, dst, hop_limit)[14..].to_vec()
    }
    let mut zero_checksum =
        vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &inner(VXLAN6_POD, POD6, 63));
    zero_checksum[60..62].copy_from_slice(&[0, 0]);
    let cases = [
        (
            vxlan6_frame(PEER6_IP, NODE6_IP, VNI + 1, NODE_VTEP6_MAC, &inner(VXLAN6_POD, POD6, 63)),
            Reason::PassVxlanOther,
        ),
        (zero_checksum, Reason::PassVxlanOther),
        // A third node's pod, sent by the next node.
        (
            vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &inner(UNRESOLVED6_POD, POD6, 63)),
            Reason::PassInnerSourceForeign,
        ),
        // Not for a pod here.
        (
            vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &inner(VXLAN6_POD, PLAIN6_POD, 63)),
            Reason::PassDecapNotLocal,
        ),
        (
            vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &inner(VXLAN6_POD, POD6, 1)),
            Reason::PassTtlExceeded,
        ),
        // Not to this node, or plain IPv6.
        (
            vxlan6_frame(PEER6_IP, UNRESOLVED_PEER6_IP, VNI, NODE_VTEP6_MAC, &inner(VXLAN6_POD, POD6, 63)),
            Reason::PassUnderlayOther,
        ),
        (echo6(VXLAN6_POD, POD6, 63), Reason::PassUnderlayOther),
    ];
    for (frame, reason) in cases {
        in_node(move |ebpf, _| assert_passes_unchanged(ebpf, FROM_UNDERLAY, &frame, reason));
    }
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        let frame = vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &inner(VXLAN6_POD, POD6, 63));
        assert_passes_unchanged(ebpf, FROM_UNDERLAY, &frame, Reason::PassFlowPending);
    });
}

#[test]
fn under_trust_kernel_ipv6_for_other_nodes_is_the_kernels_until_conntrack_approves_it() {
    in_node(|ebpf, _| {
        trust_kernel(ebpf);
        assert_passes_unchanged(ebpf, FROM_POD, &echo6(POD6, VXLAN6_POD, 64), Reason::PassFlowPending);
    });
}

/// Put `frame` on the wire of `ifname` as it is (an AF_PACKET socket), as the redirect would.
fn send_raw(ifname: &std::ffi::CStr, frame: &[u8]) {
    // SAFETY: plain socket calls on our own descriptor and buffers of the sizes given.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(fd >= 0, "AF_PACKET socket");
        let mut to: libc::sockaddr_ll = std::mem::zeroed();
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = libc::if_nametoindex(ifname.as_ptr()) as i32;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        let sent = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        libc::close(fd);
        assert_eq!(sent, frame.len() as isize, "sent whole");
    }
}

/// Packets the device `dev` in namespace `ns` received, as `ip -s link` counts them.
fn rx_packets(ns: &str, dev: &str) -> u64 {
    let json = fastpath_tests::cmd::ip(ns, &["-j", "-s", "link", "show", dev]).unwrap();
    let link: serde_json::Value = serde_json::from_str(&json).unwrap();
    link[0]["stats64"]["rx"]["packets"].as_u64().expect("rx packets")
}

#[test]
fn the_kernels_vxlan_v6_calico_takes_apart_what_the_programs_send() {
    in_node(|ebpf, _| {
        // The next node on the other end of the underlay: the MAC this node's neighbour entry
        // names, its address, and vxlan-v6.calico as Felix makes it (no udp6zerocsumrx: a zero
        // or wrong UDP checksum is dropped before the device sees the packet).
        let peer = fastpath_tests::Netns::new(fastpath_tests::names::unique("peer6")).unwrap();
        let ns = peer.name.as_str();
        fastpath_tests::cmd::run("ip", &["link", "set", "peer0", "netns", ns]).unwrap();
        let ip = |args: &[&str]| fastpath_tests::cmd::ip(ns, args).unwrap();
        ip(&["link", "set", "peer0", "address", "02:00:00:00:00:51", "up"]);
        ip(&["-6", "addr", "add", "fd00:101::a65:e33/96", "dev", "peer0", "nodad"]);
        ip(&[
            "link",
            "add",
            "vxlan-v6.calico",
            "address",
            "66:06:0a:65:0e:33",
            "type",
            "vxlan",
            "id",
            "4096",
            "dstport",
            "4789",
            "local",
            "fd00:101::a65:e33",
            "dev",
            "peer0",
        ]);
        ip(&["link", "set", "vxlan-v6.calico", "up"]);
        let frames =
            [echo6(POD6, VXLAN6_POD, 64), tcp6(POD6, VXLAN6_POD, 1000), udp6(POD6, VXLAN6_POD, true)];
        let mut sent = Vec::new();
        for frame in &frames {
            let (verdict, out) = run(ebpf, FROM_POD, frame);
            assert_eq!(verdict, TC_ACT_REDIRECT);
            sent.push(out);
        }
        for out in &sent {
            send_raw(c"eth0", out);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while rx_packets(ns, "vxlan-v6.calico") < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(rx_packets(ns, "vxlan-v6.calico"), 3, "the device took apart all three");
        // A copy with its UDP checksum one off: the kernel must refuse it, or this test proves
        // nothing about the checksum.
        let mut wrong = sent[1].clone();
        wrong[61] ^= 1;
        send_raw(c"eth0", &wrong);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(rx_packets(ns, "vxlan-v6.calico"), 3, "a wrong checksum is dropped before the device");
    });
}
