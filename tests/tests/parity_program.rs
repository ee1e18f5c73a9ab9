//! What the kernel would have done, on crafted frames through BPF_PROG_TEST_RUN: a pod whose
//! interface has classic tc configuration and a destination an ip rule routes elsewhere go to
//! the kernel (both ways); the tunnel MTU is the tunnel device's when lower; a router's
//! "fragmentation needed" about this node's tunnel packets lowers the path MTU toward that node;
//! IPIP decapsulation keeps the segment size of an aggregate.

mod support;

use aya::maps::{lpm_trie::Key, Array, HashMap, LpmTrie};
use fastpath::dataplane::loader::{FROM_POD, FROM_UNDERLAY};
use fastpath_common::{
    maps::{Endpoint, NodeConfig, PathMtu, ENDPOINTS, NODE, PATH_MTU, PATH_MTU_EXPIRES_NS, ROUTES},
    route::RouteValue,
    Reason,
};
use fastpath_tests::packets::{self, checksum, ETH_P_IP, POD_MAC};
use support::*;

fn set_route(ebpf: &mut aya::Ebpf, len: u32, addr: [u8; 4], value: RouteValue) {
    let mut routes: LpmTrie<_, [u8; 4], RouteValue> =
        LpmTrie::try_from(ebpf.map_mut(ROUTES).unwrap()).unwrap();
    routes.insert(&Key::new(len, addr), value, 0).unwrap();
}

/// The pod at `addr` gets classic tc configuration, as the daemon writes it: its /32 a "kernel"
/// entry, its endpoint entry gone.
fn configure_tc(ebpf: &mut aya::Ebpf, addr: [u8; 4], ifindex: u32) {
    set_route(ebpf, 32, addr, RouteValue::local_with_tc(ifindex));
    let mut endpoints: HashMap<_, [u8; 4], Endpoint> =
        HashMap::try_from(ebpf.map_mut(ENDPOINTS).unwrap()).unwrap();
    endpoints.remove(&addr).unwrap();
}

fn set_node(ebpf: &mut aya::Ebpf, change: impl FnOnce(NodeConfig) -> NodeConfig) {
    let mut array: Array<_, NodeConfig> = Array::try_from(ebpf.map_mut(NODE).unwrap()).unwrap();
    let node = array.get(&0, 0).unwrap();
    array.set(0, change(node), 0).unwrap();
}

fn path_mtu(ebpf: &aya::Ebpf, node: [u8; 4]) -> Option<PathMtu> {
    let map: HashMap<_, [u8; 4], PathMtu> = HashMap::try_from(ebpf.map(PATH_MTU).unwrap()).unwrap();
    map.get(&node, 0).ok()
}

/// A DF ICMP echo of `ip_len` IP bytes from a pod.
fn sized(src: [u8; 4], dst: [u8; 4], ip_len: usize) -> Vec<u8> {
    let mut payload = vec![8u8, 0, 0, 0, 0, 0, 0, 0];
    payload.resize(ip_len - 20, 0xab);
    packets::pod_frame(&packets::ipv4_packet(addr(src), addr(dst), 64, 1, &payload))
}

/// The MTU the ICMP "fragmentation needed" that left says.
fn told_mtu(verdict: u32, out: &[u8]) -> u16 {
    assert_eq!(verdict, TC_ACT_REDIRECT, "the ICMP goes back into the pod");
    assert_eq!((out[14 + 20], out[14 + 21]), (3, 4), "fragmentation needed");
    assert_eq!(checksum(&out[14 + 20..]), 0, "ICMP checksum");
    u16::from_be_bytes([out[14 + 26], out[14 + 27]])
}

#[test]
fn a_pod_with_classic_tc_is_the_kernels_from_it_to_it_and_after_decapsulation() {
    in_node(|ebpf, _| {
        // The other pod's interface, for the program to run on.
        let index = OTHER_IFINDEX.to_string();
        // (A command run from here runs in the node's namespace, as this thread does.)
        fastpath_tests::cmd::run(
            "ip",
            &["link", "add", "calitc", "index", &index, "type", "veth", "peer", "name", "calitc-pod"],
        )
        .unwrap();
        configure_tc(ebpf, OTHER_LOCAL_POD, OTHER_IFINDEX);
        // From it: its own address on its own interface, still not the fast path's.
        let from_it = packets::ipv4_frame(addr(OTHER_LOCAL_POD), addr(POD), 64);
        for (frame, what) in
            [(from_it, "from it"), (packets::ipv4_frame(addr(POD), addr(OTHER_LOCAL_POD), 64), "to it")]
        {
            let before = count(ebpf, Reason::PassEndpointTc);
            let ingress = if what == "from it" { OTHER_IFINDEX } else { TEST_IFINDEX };
            let (verdict, out) = run_on(ebpf, FROM_POD, &frame, ingress);
            assert_eq!(verdict, PASS, "{what}");
            assert_eq!(out, frame, "{what}: unchanged, so its qdiscs and filters see it");
            assert_eq!(count(ebpf, Reason::PassEndpointTc), before + 1, "{what}");
        }
        let ipip =
            ipip_frame(PEER_IP, NODE_IP, &packets::icmp_echo(addr(REMOTE_POD), addr(OTHER_LOCAL_POD), 63));
        let (verdict, out) = run(ebpf, FROM_UNDERLAY, &ipip);
        assert_eq!((verdict, &out), (PASS, &ipip), "to the kernel still encapsulated");
        assert_eq!(count(ebpf, Reason::PassEndpointTc), 3);
        // Another pod sending with its address is still spoofing.
        let (verdict, _) =
            run(ebpf, FROM_POD, &packets::ipv4_frame(addr(OTHER_LOCAL_POD), addr(REMOTE_POD), 64));
        assert_eq!(verdict, TC_ACT_SHOT);
        assert_eq!(count(ebpf, Reason::DropSpoofedSource), 1);
    });
}

#[test]
fn a_destination_an_ip_rule_sends_elsewhere_is_the_kernels() {
    in_node(|ebpf, _| {
        set_route(ebpf, 26, [10, 244, 166, 128], RouteValue::policy(0));
        let frame = packets::ipv4_frame(addr(POD), addr(REMOTE_POD), 64);
        let (verdict, out) = run(ebpf, FROM_POD, &frame);
        assert_eq!((verdict, out), (PASS, frame));
        assert_eq!(count(ebpf, Reason::PassPolicyRoute), 1);
        assert_eq!(count(ebpf, Reason::Encapsulated), 0, "nothing left over the underlay");
    });
}

#[test]
fn the_tunnel_mtu_is_the_tunnel_devices_when_lower() {
    in_node(|ebpf, _| {
        set_node(ebpf, |n| NodeConfig { ipip_mtu: 1400, vxlan_mtu: 1300, ..n });
        let (verdict, out) = run(ebpf, FROM_POD, &sized(POD, REMOTE_POD, 1448));
        assert_eq!(told_mtu(verdict, &out), 1400, "IPIP: tunl0's MTU");
        let (verdict, out) = run(ebpf, FROM_POD, &sized(POD, VXLAN_POD, 1348));
        assert_eq!(told_mtu(verdict, &out), 1300, "VXLAN: vxlan.calico's MTU");
        let (verdict, _) = run(ebpf, FROM_POD, &sized(POD, REMOTE_POD, 1400));
        assert_eq!(verdict, TC_ACT_REDIRECT, "1400 bytes fit");
        assert_eq!(count(ebpf, Reason::IcmpFragNeeded), 2);
        assert_eq!(count(ebpf, Reason::Encapsulated), 1);
    });
}

#[test]
fn a_routers_fragmentation_needed_about_our_ipip_lowers_the_path_mtu() {
    in_node(|ebpf, _| {
        let started = fastpath::clock::monotonic_ns();
        let icmp = frag_needed_from_router(4, 0, 1400);
        let (verdict, out) = run(ebpf, FROM_UNDERLAY, &icmp);
        assert_eq!((verdict, &out), (PASS, &icmp), "the kernel gets the message too");
        assert_eq!(count(ebpf, Reason::PathMtuLearned), 1);
        let learned = path_mtu(ebpf, PEER_IP).expect("the path MTU toward the next node");
        assert_eq!(learned.mtu, 1400);
        let expires_in = learned.expires_ns - started;
        assert!(
            expires_in > PATH_MTU_EXPIRES_NS - 5_000_000_000
                && expires_in <= PATH_MTU_EXPIRES_NS + 5_000_000_000,
            "{expires_in}"
        );
        // The pod's next packet too big for the path is told the path's MTU less IPIP's 20.
        let (verdict, out) = run(ebpf, FROM_POD, &sized(POD, REMOTE_POD, 1448));
        assert_eq!(told_mtu(verdict, &out), 1380);
        let (verdict, _) = run(ebpf, FROM_POD, &sized(POD, REMOTE_POD, 1380));
        assert_eq!(verdict, TC_ACT_REDIRECT, "1380 bytes fit the path");
        // Other nodes keep the tunnel's own MTU.
        let (verdict, _) = run(ebpf, FROM_POD, &sized(POD, [10, 244, 9, 9], 1448));
        assert_eq!(verdict, TC_ACT_REDIRECT);
    });
}

#[test]
fn a_routers_fragmentation_needed_about_our_vxlan_lowers_the_path_mtu() {
    in_node(|ebpf, _| {
        let (verdict, _) = run(ebpf, FROM_UNDERLAY, &frag_needed_from_router(17, VXLAN_PORT, 1400));
        assert_eq!(verdict, PASS);
        assert_eq!(path_mtu(ebpf, PEER_IP).map(|p| p.mtu), Some(1400));
        let (verdict, out) = run(ebpf, FROM_POD, &sized(POD, VXLAN_POD, 1400));
        assert_eq!(told_mtu(verdict, &out), 1350, "the path's MTU less VXLAN's 50");
    });
}

#[test]
fn other_icmp_teaches_nothing() {
    in_node(|ebpf, _| {
        // About another UDP packet, about TCP, and too small a claim raised to the minimum.
        for frame in [frag_needed_from_router(17, 53, 1400), frag_needed_from_router(6, 80, 1400)] {
            let (verdict, out) = run(ebpf, FROM_UNDERLAY, &frame);
            assert_eq!((verdict, out), (PASS, frame));
        }
        assert_eq!(count(ebpf, Reason::PathMtuLearned), 0);
        assert_eq!(path_mtu(ebpf, PEER_IP), None);
        run(ebpf, FROM_UNDERLAY, &frag_needed_from_router(4, 0, 100));
        assert_eq!(path_mtu(ebpf, PEER_IP).map(|p| p.mtu), Some(552), "net.ipv4.route.min_pmtu");
    });
}

#[test]
fn an_ipip_aggregate_is_never_mangled_by_decapsulation() {
    // BPF_PROG_TEST_RUN can make a GSO skb (gso_size, gso_segs) but not give it a GSO type, and
    // `bpf_skb_net_shrink` refuses to resize a GSO skb that is neither TCP nor UDP_L4: such a
    // packet must reach the kernel unchanged, never be taken apart with a segment size grown by
    // the 20 bytes removed. (That a real aggregate keeps its segment size is shown end to end:
    // `parity_e2e.rs`, an_ipip_aggregate_keeps_its_segment_size_through_decapsulation.)
    in_node(|ebpf, _| {
        let mut inner = packets::tcp_segment(addr(REMOTE_POD), addr(POD), (40000, 80), packets::TCP_ACK);
        inner.resize(20 + 20 + 2 * 1400, 0x5a);
        inner[2..4].copy_from_slice(&((20 + 20 + 2 * 1400) as u16).to_be_bytes());
        inner[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum(&inner[..20]);
        inner[10..12].copy_from_slice(&sum.to_be_bytes());
        let frame = ipip_frame(PEER_IP, NODE_IP, &inner);
        let (verdict, out, segs_out) = run_gso(ebpf, FROM_UNDERLAY, &frame, 1400, 2);
        assert_eq!((verdict, &out), (PASS, &frame), "refused whole, to the kernel");
        assert_eq!(segs_out, 2, "the segment count untouched");
        assert_eq!(count(ebpf, Reason::PassEncapFailed), 1);
        // The same packet without GSO is taken apart and delivered.
        let (verdict, out) = run(ebpf, FROM_UNDERLAY, &frame);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(out.len(), frame.len() - 20);
        let _ = (ETH_P_IP, POD_MAC);
    });
}
