//! What the BPF_PROG_TEST_RUN suites share: a node to run the programs in, running a program
//! once, and reading a counter.
#![allow(dead_code, reason = "each suite uses its own part of this module")]

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, PerCpuArray},
    programs::{TestRun as _, TestRunOptions},
    Ebpf,
};
use fastpath::dataplane::loader::{self, FROM_POD, FROM_UNDERLAY};
use fastpath_common::{
    flow::{Arrival, Arrived, FlowKey, FlowValue},
    flow6::{Arrived6, FlowKey6, FlowValue6},
    maps::{
        Counter, Endpoint, NextHopEntry, Node6Config, NodeConfig, COUNTERS, ENDPOINTS, ENDPOINTS6, FLOWS,
        FLOWS6, NEXT_HOPS, NODE, NODE6, NODE6_F_READY, NODE6_F_VXLAN, NODE_F_READY, NODE_F_TRUST_KERNEL,
        NODE_F_VXLAN, ROUTES, ROUTES6, TUNNEL_PEERS, TUNNEL_PEERS6,
    },
    route::RouteValue,
    route6::RouteValue6,
    vxlan::VxlanConfig,
    Reason,
};
use fastpath_tests::{
    cmd, names,
    packets::{self, POD_MAC},
    require_root, traffic, Netns,
};
use proptest::prelude::*;

/// The verdict that hands a packet on unchanged: `TC_ACT_UNSPEC` (-1, tcx's `TCX_NEXT`), so the
/// classic tc filters behind the programs still run.
pub const PASS: u32 = -1i32 as u32;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

/// Run `program` once on `frame` (a second run would see the already rewritten packet); return
/// the verdict and the frame as it left the program, with room for it to grow.
pub fn run(ebpf: &mut Ebpf, program: &'static str, frame: &[u8]) -> (u32, Vec<u8>) {
    try_run(ebpf, program, frame).expect("BPF_PROG_TEST_RUN")
}

/// As [`run`], with the kernel's refusal as an error.
pub fn try_run(
    ebpf: &mut Ebpf,
    program: &'static str,
    frame: &[u8],
) -> Result<(u32, Vec<u8>), aya::programs::ProgramError> {
    let program = loader::classifier(ebpf, program).expect("program");
    let mut out = vec![0u8; frame.len() + 256];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.data_out = Some(&mut out);
    let result = program.test_run(opts)?;
    out.truncate(result.data_size_out as usize);
    Ok((result.return_value, out))
}

/// As [`run`], with the packet's `skb->mark` going in and the program's coming out.
pub fn run_marked(ebpf: &mut Ebpf, program: &'static str, frame: &[u8], mark: u32) -> (u32, Vec<u8>, u32) {
    let (verdict, out, mark_out, _) = run_marked_timed(ebpf, program, frame, mark);
    (verdict, out, mark_out)
}

/// As [`run_marked`], with the kernel's time for the run, in nanoseconds.
pub fn run_marked_timed(
    ebpf: &mut Ebpf,
    program: &'static str,
    frame: &[u8],
    mark: u32,
) -> (u32, Vec<u8>, u32, u64) {
    let program = loader::classifier(ebpf, program).expect("program");
    let mut out = vec![0u8; frame.len() + 256];
    // The start of a `struct __sk_buff`: len and pkt_type (which must be 0), then mark.
    let mut ctx_in = [0u8; 12];
    ctx_in[8..].copy_from_slice(&mark.to_ne_bytes());
    // Room for the whole `struct __sk_buff` the kernel writes back.
    let mut ctx_out = [0u8; 256];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.data_out = Some(&mut out);
    opts.ctx_in = Some(&ctx_in);
    opts.ctx_out = Some(&mut ctx_out);
    let result = program.test_run(opts).expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    let mark_out = u32::from_ne_bytes([ctx_out[8], ctx_out[9], ctx_out[10], ctx_out[11]]);
    (result.return_value, out, mark_out, result.duration.as_nanos() as u64)
}

/// Offsets in `struct __sk_buff` the kernel lets BPF_PROG_TEST_RUN set.
const CTX_IFINDEX: usize = 40;
const CTX_GSO_SEGS: usize = 164;
const CTX_GSO_SIZE: usize = 176;

/// Run `program` once on `frame` with the context `ctx_in` (the start of a `struct __sk_buff`);
/// the verdict, the frame that left and the context the kernel wrote back.
fn run_with_ctx(
    ebpf: &mut Ebpf,
    program: &'static str,
    frame: &[u8],
    ctx_in: &[u8],
) -> (u32, Vec<u8>, Vec<u8>) {
    let program = loader::classifier(ebpf, program).expect("program");
    let mut out = vec![0u8; frame.len() + 256];
    let mut ctx_out = vec![0u8; 256];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.data_out = Some(&mut out);
    opts.ctx_in = Some(ctx_in);
    opts.ctx_out = Some(&mut ctx_out);
    let result = program.test_run(opts).expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out, ctx_out)
}

/// As [`run`], as if the frame came in on interface `ifindex` (which must exist in the node's
/// namespace: the kernel runs the program on that device).
pub fn run_on(ebpf: &mut Ebpf, program: &'static str, frame: &[u8], ifindex: u32) -> (u32, Vec<u8>) {
    let mut ctx_in = [0u8; CTX_IFINDEX + 4];
    ctx_in[CTX_IFINDEX..].copy_from_slice(&ifindex.to_ne_bytes());
    let (verdict, out, _) = run_with_ctx(ebpf, program, frame, &ctx_in);
    (verdict, out)
}

/// As [`run`], with the frame a GSO aggregate of `segs` segments of `size` bytes of payload;
/// also returns the segment count as the kernel left it.
pub fn run_gso(
    ebpf: &mut Ebpf,
    program: &'static str,
    frame: &[u8],
    size: u32,
    segs: u32,
) -> (u32, Vec<u8>, u32) {
    let mut ctx_in = [0u8; CTX_GSO_SIZE + 4];
    ctx_in[CTX_GSO_SEGS..CTX_GSO_SEGS + 4].copy_from_slice(&segs.to_ne_bytes());
    ctx_in[CTX_GSO_SIZE..].copy_from_slice(&size.to_ne_bytes());
    let (verdict, out, ctx_out) = run_with_ctx(ebpf, program, frame, &ctx_in);
    let segs_out = u32::from_ne_bytes(ctx_out[CTX_GSO_SEGS..CTX_GSO_SEGS + 4].try_into().unwrap());
    (verdict, out, segs_out)
}

/// Packets counted under `reason`, over every CPU.
pub fn count(ebpf: &Ebpf, reason: Reason) -> u64 {
    let map: PerCpuArray<_, Counter> =
        PerCpuArray::try_from(ebpf.map(COUNTERS).expect("counters map")).unwrap();
    // A retired code is in no listing: nothing counts it.
    fastpath::dataplane::counters::totals(&map)
        .unwrap()
        .iter()
        .find(|t| t.reason == reason)
        .map_or(0, |t| t.total.packets)
}

pub fn addr(a: [u8; 4]) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(a)
}

/// VXLAN from `outer_src` to `outer_dst` (UDP source port `sport`, VNI `vni`, inner Ethernet to
/// `inner_dst_mac`) around the IPv4 packet `inner`, as the underlay brings it.
pub fn vxlan_frame(
    outer_src: [u8; 4],
    outer_dst: [u8; 4],
    vni: u32,
    inner_dst_mac: [u8; 6],
    inner: &[u8],
) -> Vec<u8> {
    let mut frame = packets::ethernet([0x02, 0, 0, 0, 0, 0x50], PEER_MAC, packets::ETH_P_IP);
    let vxlan = packets::Vxlan {
        sport: 51000,
        port: VXLAN_PORT,
        vni,
        dst_mac: inner_dst_mac,
        src_mac: PEER_VTEP_MAC,
    };
    frame.extend_from_slice(&vxlan.packet(addr(outer_src), addr(outer_dst), inner));
    frame
}

/// VXLAN from the next node to this one, for a pod here, as the next node's `vxlan.calico`
/// sends it.
pub fn vxlan_from_peer(inner: &[u8]) -> Vec<u8> {
    vxlan_frame(PEER_IP, NODE_IP, VNI, NODE_VTEP_MAC, inner)
}

/// Frames worth starting from: one of each kind the programs tell apart (the fuzz harness
/// mutates them; `explain_agrees.rs` runs them through the programs and `explain` alike).
pub fn seed_frames() -> Vec<Vec<u8>> {
    let ipip = |src: [u8; 4], inner: Vec<u8>| {
        let mut frame = packets::ethernet([2, 0, 0, 0, 0, 0x50], [2, 0, 0, 0, 0, 0x51], packets::ETH_P_IP);
        frame.extend(packets::ipv4_packet(addr(src), addr(NODE_IP), 64, 4, &inner));
        frame
    };
    let to_pod = packets::icmp_echo(addr(REMOTE_POD), addr(POD), 63);
    let tcp =
        |src: [u8; 4], dst: [u8; 4], flags| packets::tcp_segment(addr(src), addr(dst), (40000, 80), flags);
    // VXLAN as the next node's vxlan.calico sends it, and as this node's leaves the underlay.
    let vxlan = |src: [u8; 4], dst: [u8; 4], inner: Vec<u8>| {
        let (from, to) =
            if src == NODE_IP { (NODE_VTEP_MAC, PEER_VTEP_MAC) } else { (PEER_VTEP_MAC, NODE_VTEP_MAC) };
        let device = packets::Vxlan { sport: 50000, port: VXLAN_PORT, vni: VNI, dst_mac: to, src_mac: from };
        let mut frame = packets::ethernet([2, 0, 0, 0, 0, 0x50], [2, 0, 0, 0, 0, 0x51], packets::ETH_P_IP);
        frame.extend(device.packet(addr(src), addr(dst), &inner));
        frame
    };
    vec![
        packets::pod_frame(&tcp(POD, REMOTE_POD, packets::TCP_SYN)),
        packets::pod_frame(&tcp(POD, OTHER_LOCAL_POD, packets::TCP_FIN | packets::TCP_ACK)),
        packets::pod_frame(&tcp(REMOTE_POD, POD, packets::TCP_ACK)),
        ipip(PEER_IP, tcp(REMOTE_POD, POD, packets::TCP_RST)),
        packets::Arp::request(addr(POD), std::net::Ipv4Addr::new(169, 254, 1, 1))
            .frame(packets::BROADCAST, POD_MAC),
        packets::ipv4_frame(addr(POD), addr(OTHER_LOCAL_POD), 64),
        packets::ipv4_frame(addr(POD), addr(REMOTE_POD), 64),
        packets::ipv4_frame(addr(POD), [10, 244, 7, 9].into(), 1),
        // Sources no pod of this interface owns: unallocated in the block, a service, outside.
        packets::ipv4_frame([10, 244, 40, 50].into(), addr(OTHER_LOCAL_POD), 64),
        packets::ipv4_frame([10, 96, 0, 10].into(), addr(REMOTE_POD), 64),
        packets::ipv4_frame([192, 0, 2, 7].into(), addr(OTHER_LOCAL_POD), 64),
        ipip(PEER_IP, to_pod.clone()),
        ipip([10, 101, 14, 60], to_pod.clone()),
        ipip(PEER_IP, packets::ipv4_packet(addr(PEER_IP), addr(NODE_IP), 64, 4, &to_pod)),
        // Inner sources that are not the sender's: a third node's pod, a pod of this node.
        ipip(PEER_IP, packets::icmp_echo([10, 244, 9, 9].into(), addr(OTHER_LOCAL_POD), 63)),
        ipip(PEER_IP, packets::icmp_echo(addr(POD), addr(OTHER_LOCAL_POD), 63)),
        // VXLAN: to a pod behind a VXLAN block, from the next node (TCP, ICMP), from a stranger,
        // with an inner source of a third node, and this node's own leaving the underlay.
        packets::pod_frame(&tcp(POD, VXLAN_POD, packets::TCP_SYN)),
        vxlan(PEER_IP, NODE_IP, tcp(VXLAN_POD, POD, packets::TCP_ACK)),
        vxlan(PEER_IP, NODE_IP, to_pod.clone()),
        vxlan([10, 101, 14, 60], NODE_IP, to_pod.clone()),
        vxlan(PEER_IP, NODE_IP, packets::icmp_echo([10, 244, 9, 9].into(), addr(OTHER_LOCAL_POD), 63)),
        vxlan(NODE_IP, PEER_IP, tcp(POD, VXLAN_POD, packets::TCP_SYN)),
        // A router's "fragmentation needed" about this node's IPIP and VXLAN.
        frag_needed_from_router(4, 0, 1400),
        frag_needed_from_router(17, VXLAN_PORT, 1400),
        // IPv6: the kernel's own capture of a pod soliciting its gateway, and of a router
        // solicitation; TCP and UDP to a pod here, to a pod of another node, from another pod's
        // address, with a hop-by-hop header, with hop limit 1, to all nodes.
        fastpath_common::ndp::captured::GATEWAY_NS.to_vec(),
        fastpath_common::ndp::captured::ROUTER_SOLICITATION.to_vec(),
        packets::ipv6_frame(POD6, OTHER6, 64, 6),
        packets::ipv6_frame(POD6, OTHER6, 64, 17),
        packets::ipv6_frame(POD6, REMOTE_POD6, 64, 6),
        packets::ipv6_frame(OTHER6, POD6, 64, 6),
        packets::ipv6_frame(POD6, OTHER6, 64, fastpath_common::ipv6::NEXT_HOP_BY_HOP),
        packets::ipv6_frame(POD6, OTHER6, 1, 6),
        packets::ipv6_frame(POD6, ALL_NODES6, 64, 58),
        // IPv6 across nodes: to the next node in VXLAN and plain, to this node's block, too big
        // for the tunnel; IPv6 VXLAN from the next node (for a pod here, with a third node's
        // inner source) and from a stranger.
        tcp6(POD6, VXLAN6_POD, 0),
        echo6(POD6, PLAIN6_POD, 64),
        echo6(POD6, UNALLOCATED6, 64),
        tcp6(POD6, VXLAN6_POD, VXLAN6_MTU as usize),
        vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &tcp6(VXLAN6_POD, POD6, 0)[14..]),
        vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &echo6(UNRESOLVED6_POD, POD6, 63)[14..]),
        // A router's ICMPv6 "packet too big" about this node's IPv6 VXLAN, and about another UDP
        // packet of it.
        too_big6_from_router(17, VXLAN_PORT, 1400),
        too_big6_from_router(17, 53, 1400),
        vxlan6_frame(
            node6([10, 101, 14, 60]),
            NODE6_IP,
            VNI,
            NODE_VTEP6_MAC,
            &echo6(VXLAN6_POD, POD6, 63)[14..],
        ),
    ]
}

/// A pod of another node, by its IPv6 address.
pub const REMOTE_POD6: [u8; 16] =
    [0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0, 0, 0, 0, 0, 0, 0x0a, 0xf4, 0xa6, 0x96];
/// `ff02::1`.
const ALL_NODES6: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// A seed with bytes overwritten (in the first 80 bytes: VXLAN's headers end at 64), a length
/// field or header length bent, and cut or padded; or bytes at random.
pub fn mutated_frames() -> impl Strategy<Value = Vec<u8>> {
    let seeds = seed_frames();
    let mutated = (
        0..seeds.len(),
        prop::collection::vec((0usize..80, any::<u8>()), 0..6),
        prop_oneof![Just(None), (14usize..1600).prop_map(Some)],
        prop_oneof![
            Just(None),
            (0u8..16).prop_map(Some),
            any::<u16>().prop_map(|l| Some((l >> 8) as u8 | 0x40))
        ],
    )
        .prop_map(move |(seed, flips, length, ihl)| {
            let mut frame = seeds[seed].clone();
            for (at, byte) in flips {
                if let Some(b) = frame.get_mut(at) {
                    *b = byte;
                }
            }
            if let (Some(ihl), Some(b)) = (ihl, frame.get_mut(14)) {
                *b = 0x40 | (ihl & 0x0f);
            }
            if let Some(length) = length {
                frame.resize(length, 0);
            }
            frame
        });
    let random = prop::collection::vec(any::<u8>(), 14..1600);
    prop_oneof![4 => mutated, 1 => random]
}

/// A router's "fragmentation needed" (next-hop MTU `mtu`) to this node about its packet to
/// the next node of `protocol` (4: IPIP; 17: UDP to `dport`, VXLAN's port for ours), as the
/// underlay brings it: the ICMP quotes that packet's header and 8 bytes after it.
pub fn frag_needed_from_router(protocol: u8, dport: u16, mtu: u16) -> Vec<u8> {
    let mut quoted = packets::ipv4_packet(addr(NODE_IP), addr(PEER_IP), 64, protocol, &[0; 8]);
    quoted[2..4].copy_from_slice(&1500u16.to_be_bytes());
    quoted[22..24].copy_from_slice(&dport.to_be_bytes());
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(&quoted);
    let sum = packets::checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut frame = packets::ethernet([0x02, 0, 0, 0, 0, 0x50], [0x02, 0, 0, 0, 0, 0x62], packets::ETH_P_IP);
    frame.extend_from_slice(&packets::ipv4_packet([10, 101, 14, 62].into(), addr(NODE_IP), 64, 1, &icmp));
    frame
}

/// The router on the underlay that answers this node's packets, by its IPv6 address.
pub const ROUTER6_IP: [u8; 16] = node6([10, 101, 14, 62]);

/// A router's ICMPv6 "packet too big" (MTU `mtu`) to this node about its IPv6 packet to the next
/// node of `next_header` (17: UDP to `dport`, VXLAN's port for ours), as the underlay brings it:
/// the message quotes that packet's header, its 8 bytes after and a little more, checksum made.
pub fn too_big6_from_router(next_header: u8, dport: u16, mtu: u32) -> Vec<u8> {
    let mut quoted = vec![0x60, 0, 0, 0];
    quoted.extend_from_slice(&(1500u16 - 40).to_be_bytes());
    quoted.extend_from_slice(&[next_header, 64]);
    quoted.extend_from_slice(&NODE6_IP);
    quoted.extend_from_slice(&PEER6_IP);
    quoted.extend_from_slice(&51000u16.to_be_bytes());
    quoted.extend_from_slice(&dport.to_be_bytes());
    quoted.extend_from_slice(&(1500u16 - 40).to_be_bytes());
    quoted.extend_from_slice(&[0x12, 0x34]);
    quoted.extend_from_slice(&[0x08, 0, 0, 0, 0, 0x10, 0, 0]);
    let mut icmp = vec![fastpath_common::ipv6::TYPE_PACKET_TOO_BIG, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(&quoted);
    let sum = fastpath_common::ipv6::upper_layer_checksum(&ROUTER6_IP, &NODE6_IP, 58, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut frame =
        packets::ethernet([0x02, 0, 0, 0, 0, 0x50], [0x02, 0, 0, 0, 0, 0x62], packets::ETH_P_IPV6);
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[58, 64]);
    frame.extend_from_slice(&ROUTER6_IP);
    frame.extend_from_slice(&NODE6_IP);
    frame.extend_from_slice(&icmp);
    frame
}

/// IPIP from `outer_src` to `outer_dst` around the IPv4 packet `inner`, as the underlay brings it.
pub fn ipip_frame(outer_src: [u8; 4], outer_dst: [u8; 4], inner: &[u8]) -> Vec<u8> {
    let mut frame = packets::ethernet([0x02, 0, 0, 0, 0, 0x50], PEER_MAC, packets::ETH_P_IP);
    frame.extend_from_slice(&packets::ipv4_packet(addr(outer_src), addr(outer_dst), 64, 4, inner));
    frame
}

/// Switch the loaded programs to `--trust kernel`.
pub fn trust_kernel(ebpf: &mut Ebpf) {
    let mut array: Array<_, NodeConfig> = Array::try_from(ebpf.map_mut(NODE).unwrap()).unwrap();
    let node = array.get(&0, 0).unwrap();
    array.set(0, NodeConfig { flags: node.flags | NODE_F_TRUST_KERNEL, ..node }, 0).unwrap();
}

/// Write what the daemon writes for a direction the kernel's conntrack approved: `key`, arriving
/// as `arrived`, leaving as `to`.
pub fn approve(ebpf: &mut Ebpf, key: FlowKey, arrived: Arrived, to: FlowKey) {
    let mut flows: HashMap<_, FlowKey, FlowValue> = HashMap::try_from(ebpf.map_mut(FLOWS).unwrap()).unwrap();
    flows.insert(key, FlowValue::approved(&key, &arrived, &to), 0).unwrap();
}

/// [`approve`] for an IPv6 direction: `key`, arriving as `arrived`; `translated` when conntrack
/// translates it.
pub fn approve6(ebpf: &mut Ebpf, key: FlowKey6, arrived: Arrived6, translated: bool) {
    let mut flows: HashMap<_, FlowKey6, FlowValue6> =
        HashMap::try_from(ebpf.map_mut(FLOWS6).unwrap()).unwrap();
    flows.insert(key, FlowValue6::approved(&arrived, translated), 0).unwrap();
}

/// The IPv6 flow table's entry for `key`, if any.
pub fn flow6(ebpf: &Ebpf, key: &FlowKey6) -> Option<FlowValue6> {
    let map: HashMap<_, FlowKey6, FlowValue6> = HashMap::try_from(ebpf.map(FLOWS6).unwrap()).unwrap();
    map.get(key, 0).ok()
}

/// What the programs' next-hop cache holds for `addr`.
pub fn next_hop(ebpf: &Ebpf, addr: [u8; 4]) -> Option<NextHopEntry> {
    let map: HashMap<_, [u8; 4], NextHopEntry> = HashMap::try_from(ebpf.map(NEXT_HOPS).unwrap()).unwrap();
    map.get(&addr, 0).ok()
}

/// What the daemon does when the underlay's neighbours or routes change.
pub fn set_next_hop_generation(ebpf: &mut Ebpf, generation: u32) {
    let mut array: Array<_, NodeConfig> = Array::try_from(ebpf.map_mut(NODE).unwrap()).unwrap();
    let node = array.get(&0, 0).unwrap();
    array.set(0, NodeConfig { next_hop_generation: generation, ..node }, 0).unwrap();
}

/// Give next node `addr` another MAC in the neighbour table of the namespace this runs in (the
/// node's, in [`in_node`]).
pub fn set_neighbour(addr: [u8; 4], mac: [u8; 6]) {
    let mac = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let addr = std::net::Ipv4Addr::from(addr).to_string();
    cmd::run("ip", &["neigh", "replace", &addr, "lladdr", &mac, "dev", "eth0", "nud", "permanent"]).unwrap();
}

/// Switch the loaded programs back to `--trust routes`.
pub fn trust_routes(ebpf: &mut Ebpf) {
    let mut array: Array<_, NodeConfig> = Array::try_from(ebpf.map_mut(NODE).unwrap()).unwrap();
    let node = array.get(&0, 0).unwrap();
    array.set(0, NodeConfig { flags: node.flags & !NODE_F_TRUST_KERNEL, ..node }, 0).unwrap();
}

/// A service's cluster IP, an address outside the cluster, and a pod of the block routed to the
/// next node without a tunnel.
pub const SERVICE: [u8; 4] = [10, 96, 0, 10];
pub const OUTSIDE: [u8; 4] = [198, 51, 100, 7];
pub const PLAIN_POD: [u8; 4] = [10, 244, 7, 9];

/// The node's way to the outside world: through the next node as its gateway.
pub fn route_outside() {
    cmd::run("ip", &["route", "add", "198.51.100.0/24", "via", "10.101.14.51", "dev", "eth0"]).unwrap();
}

/// What the daemon would write for the seeds' flows and a few NATed connections had the
/// kernel's conntrack confirmed them, each direction as it arrives.
pub fn approve_seen_flows(ebpf: &mut Ebpf) {
    let pod = Arrived::from_pod(TEST_IFINDEX);
    let ipip = Arrived::from_underlay(Arrival::Ipip, PEER_IP);
    let vxlan = Arrived::from_underlay(Arrival::Vxlan, PEER_IP);
    let plain = Arrived::from_underlay(Arrival::Plain, PEER_IP);
    let tcp = |src, dst, ports| FlowKey::new(src, dst, 6, ports);
    let echo = |src, dst| FlowKey::new(src, dst, 1, (0, 8));
    let unchanged = [
        (tcp(POD, REMOTE_POD, (40000, 80)), pod),
        (tcp(POD, OTHER_LOCAL_POD, (40000, 80)), pod),
        (tcp(POD, VXLAN_POD, (40000, 80)), pod),
        (tcp(REMOTE_POD, POD, (40000, 80)), ipip),
        (tcp(VXLAN_POD, POD, (40000, 80)), vxlan),
        (tcp(PLAIN_POD, POD, (8081, 40002)), plain),
        (echo(POD, OTHER_LOCAL_POD), pod),
        (echo(POD, REMOTE_POD), pod),
        (echo(REMOTE_POD, POD), ipip),
    ];
    for (key, arrived) in unchanged {
        approve(ebpf, key, arrived, key);
    }
    let translated = [
        // A service DNATed to a backend behind the IPIP block, and the backend's reply.
        (tcp(POD, SERVICE, (40001, 80)), pod, tcp(POD, REMOTE_POD, (40001, 8080))),
        (tcp(REMOTE_POD, POD, (8080, 40001)), ipip, tcp(SERVICE, POD, (80, 40001))),
        // natOutgoing: masqueraded to the node's address, the reply through the gateway.
        (tcp(POD, OUTSIDE, (40003, 443)), pod, tcp(NODE_IP, OUTSIDE, (61003, 443))),
        (tcp(OUTSIDE, NODE_IP, (443, 61003)), plain, tcp(OUTSIDE, POD, (443, 40003))),
    ];
    for (key, arrived, to) in translated {
        approve(ebpf, key, arrived, to);
    }
    // IPv6: TCP to the next node's pod in VXLAN and its reply, an echo to its plain block, UDP
    // to the other pod here translated (an IPv6 service: the kernel's), TCP to it approved on
    // the other pod's interface (arriving elsewhere).
    let seed_ports = (0x3a00, 0x0104);
    let unchanged6 = [
        (FlowKey6::new(POD6, VXLAN6_POD, 6, TCP6_PORTS), Arrived6::from_pod(TEST_IFINDEX), false),
        (
            FlowKey6::new(VXLAN6_POD, POD6, 6, TCP6_PORTS),
            Arrived6::from_underlay(Arrival::Vxlan, PEER6_IP),
            false,
        ),
        (FlowKey6::new(POD6, PLAIN6_POD, 58, (0x1234, 128)), Arrived6::from_pod(TEST_IFINDEX), false),
        (FlowKey6::new(POD6, OTHER6, 17, seed_ports), Arrived6::from_pod(TEST_IFINDEX), true),
        (FlowKey6::new(POD6, OTHER6, 6, seed_ports), Arrived6::from_pod(OTHER_IFINDEX), false),
    ];
    for (key, arrived, translated) in unchanged6 {
        approve6(ebpf, key, arrived, translated);
    }
}

/// The flow table's entry for `key`, if any.
pub fn flow(ebpf: &Ebpf, key: &FlowKey) -> Option<FlowValue> {
    let map: HashMap<_, FlowKey, FlowValue> = HashMap::try_from(ebpf.map(FLOWS).unwrap()).unwrap();
    map.get(key, 0).ok()
}

pub const NODE_IP: [u8; 4] = [10, 101, 14, 50];
pub const PEER_IP: [u8; 4] = [10, 101, 14, 51];
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x51];
/// A node on the underlay subnet that the neighbour table does not know yet.
pub const UNRESOLVED_PEER_IP: [u8; 4] = [10, 101, 14, 53];
pub const POD: [u8; 4] = [10, 244, 40, 36];
pub const OTHER_LOCAL_POD: [u8; 4] = [10, 244, 40, 37];
pub const OTHER_POD_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x37];
pub const REMOTE_POD: [u8; 4] = [10, 244, 166, 150];
/// A pod in a block the next node owns, routed in VXLAN (10.244.8.0/26).
pub const VXLAN_POD: [u8; 4] = [10, 244, 8, 9];
/// This node's `vxlan.calico` MAC, and the next node's.
pub const NODE_VTEP_MAC: [u8; 6] = [0x66, 0, 10, 101, 14, 50];
pub const PEER_VTEP_MAC: [u8; 6] = [0x66, 0, 10, 101, 14, 51];
pub const VNI: u32 = 4096;
pub const VXLAN_PORT: u16 = 4789;
pub const VXLAN_IFINDEX: u32 = 77;
/// BPF_PROG_TEST_RUN runs the program on the loopback device: ifindex 1.
pub const TEST_IFINDEX: u32 = 1;
/// A pod on the test's interface, by its IPv6 address (`fd5f:a1b2:c3d4::af4:2824`, the pod of
/// `fastpath_common::ndp::captured`).
pub const POD6: [u8; 16] = [0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0, 0, 0, 0, 0, 0, 0x0a, 0xf4, 0x28, 0x24];
/// Another pod on this node, on `OTHER_IFINDEX`.
pub const OTHER6: [u8; 16] = [0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0, 0, 0, 0, 0, 0, 0x0a, 0xf4, 0x28, 0x25];
pub const OTHER_IFINDEX: u32 = 42;

/// Calico's IPv6 layout, as `fastpath_tests::dual_stack` builds it: pods in fd5f:a1b2:c3d4::/96
/// and nodes in fd00:101::/96, each mapped from its IPv4 address.
pub const fn pod6(v4: [u8; 4]) -> [u8; 16] {
    [0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0, 0, 0, 0, 0, 0, v4[0], v4[1], v4[2], v4[3]]
}
pub const fn node6(v4: [u8; 4]) -> [u8; 16] {
    [0xfd, 0, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, v4[0], v4[1], v4[2], v4[3]]
}
/// This node's IPv6 address on the underlay, the next node's, and one the neighbour table does
/// not know.
pub const NODE6_IP: [u8; 16] = node6(NODE_IP);
pub const PEER6_IP: [u8; 16] = node6(PEER_IP);
pub const UNRESOLVED_PEER6_IP: [u8; 16] = node6(UNRESOLVED_PEER_IP);
/// A pod of the next node's block routed in IPv6 VXLAN, one of its block routed plain, one of a
/// block of the unresolved node (plain), and an address of this node's block with no pod.
pub const VXLAN6_POD: [u8; 16] = pod6(VXLAN_POD);
pub const PLAIN6_POD: [u8; 16] = pod6(PLAIN_POD);
pub const UNRESOLVED6_POD: [u8; 16] = pod6([10, 244, 9, 9]);
pub const UNALLOCATED6: [u8; 16] = pod6([10, 244, 40, 50]);
/// This node's `vxlan-v6.calico` MAC, and the next node's.
pub const NODE_VTEP6_MAC: [u8; 6] = [0x66, 0x06, 10, 101, 14, 50];
pub const PEER_VTEP6_MAC: [u8; 6] = [0x66, 0x06, 10, 101, 14, 51];
pub const VXLAN6_IFINDEX: u32 = 78;
/// `vxlan-v6.calico`'s MTU on a 1500 underlay.
pub const VXLAN6_MTU: u32 = 1430;

/// What the daemon writes for this node's IPv6 side: `vxlan-v6.calico` as Felix makes it (VNI
/// 4096, port 4789, the kernel's default port range, hop limit 64).
pub fn node6_config() -> Node6Config {
    Node6Config {
        flags: NODE6_F_READY | NODE6_F_VXLAN,
        vxlan_mtu: VXLAN6_MTU,
        node_ip: NODE6_IP,
        vxlan: VxlanConfig {
            ifindex: VXLAN6_IFINDEX,
            vni: VNI,
            mac: NODE_VTEP6_MAC,
            port: VXLAN_PORT,
            port_min: 32768,
            port_max: 60999,
            ttl: 64,
            tos: 0,
            df: 0,
            _pad: 0,
        },
    }
}

/// Write `node6` as this node's IPv6 side.
pub fn set_node6(ebpf: &mut Ebpf, node6: Node6Config) {
    let mut array: Array<_, Node6Config> = Array::try_from(ebpf.map_mut(NODE6).unwrap()).unwrap();
    array.set(0, node6, 0).unwrap();
}

/// The node as the test namespace has it.
pub struct Underlay {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// Run `test` in a fresh, forwarding namespace with an underlay `eth0` (10.101.14.50/28, MTU
/// 1500) and the next node 10.101.14.51 in its neighbour table, with the object loaded and its
/// maps filled: this node has a `vxlan.calico`; 10.244.166.128/26 is IPIP to the next node,
/// 10.244.8.0/26 VXLAN to it, 10.244.7.0/26 plain.
pub fn in_node(test: impl FnOnce(&mut Ebpf, &Underlay) + Send + 'static) {
    require_root();
    let ns = Netns::new(names::unique("prog")).unwrap();
    cmd::ip(&ns.name, &["link", "add", "eth0", "type", "veth", "peer", "name", "peer0"]).unwrap();
    cmd::ip(&ns.name, &["addr", "add", "10.101.14.50/28", "dev", "eth0"]).unwrap();
    // bpf_fib_lookup refuses on an interface that does not forward (BPF_FIB_LKUP_RET_FWD_DISABLED),
    // as a router's FIB would; every Kubernetes node forwards.
    cmd::sysctl(&ns.name, "net.ipv4.ip_forward", "1").unwrap();
    // The same for IPv6 (`bpf_ipv6_fib_lookup` checks the interface's forwarding too); the
    // address without duplicate address detection, so the FIB may use it at once.
    cmd::sysctl(&ns.name, "net.ipv6.conf.all.forwarding", "1").unwrap();
    cmd::ip(&ns.name, &["-6", "addr", "add", "fd00:101::a65:e32/96", "dev", "eth0", "nodad"]).unwrap();
    cmd::ip(&ns.name, &["link", "set", "eth0", "up"]).unwrap();
    cmd::ip(&ns.name, &["link", "set", "peer0", "up"]).unwrap();
    cmd::ip(
        &ns.name,
        &["neigh", "add", "10.101.14.51", "lladdr", "02:00:00:00:00:51", "dev", "eth0", "nud", "permanent"],
    )
    .unwrap();
    cmd::ip(
        &ns.name,
        &[
            "-6",
            "neigh",
            "add",
            "fd00:101::a65:e33",
            "lladdr",
            "02:00:00:00:00:51",
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    )
    .unwrap();
    let link: serde_json::Value =
        serde_json::from_str(&cmd::ip(&ns.name, &["-j", "link", "show", "eth0"]).unwrap()).unwrap();
    let ifindex = link[0]["ifindex"].as_u64().unwrap() as u32;
    let mac_text = link[0]["address"].as_str().unwrap().to_string();
    let mut mac = [0u8; 6];
    for (byte, text) in mac.iter_mut().zip(mac_text.split(':')) {
        *byte = u8::from_str_radix(text, 16).unwrap();
    }
    let underlay = Underlay { ifindex, mac };
    traffic::in_netns(&ns.name, move || {
        let mut ebpf = loader::load_object(log::LevelFilter::Off).expect("load the embedded object");
        for program in [FROM_POD, FROM_UNDERLAY] {
            loader::loaded_program(&mut ebpf, program).expect("load the programs");
        }
        fill_maps(&mut ebpf, &underlay);
        test(&mut ebpf, &underlay);
        Ok(())
    })
    .unwrap();
}

fn fill_maps(ebpf: &mut Ebpf, underlay: &Underlay) {
    let node = NodeConfig {
        underlay_ifindex: underlay.ifindex,
        node_ip: NODE_IP,
        node_mac: underlay.mac,
        _pad: [0; 2],
        underlay_mtu: 1500,
        flags: NODE_F_READY | NODE_F_VXLAN,
        next_hop_generation: 0,
        // Felix's vxlan.calico, as the daemon reads it: VNI 4096, port 4789, the kernel's
        // default port range and TTL, TOS 0 and DF unset.
        vxlan: VxlanConfig {
            ifindex: VXLAN_IFINDEX,
            vni: VNI,
            mac: NODE_VTEP_MAC,
            port: VXLAN_PORT,
            port_min: 32768,
            port_max: 60999,
            ttl: 64,
            tos: 0,
            df: 0,
            _pad: 0,
        },
        ipip_mtu: 1480,
        vxlan_mtu: 1450,
    };
    let mut array: Array<_, NodeConfig> = Array::try_from(ebpf.map_mut(NODE).unwrap()).unwrap();
    array.set(0, node, 0).unwrap();
    let mut routes: LpmTrie<_, [u8; 4], RouteValue> =
        LpmTrie::try_from(ebpf.map_mut(ROUTES).unwrap()).unwrap();
    for (len, addr, value) in [
        (32, POD, RouteValue::local(TEST_IFINDEX, POD_MAC)),
        (32, OTHER_LOCAL_POD, RouteValue::local(OTHER_IFINDEX, OTHER_POD_MAC)),
        (26, [10, 244, 40, 0], RouteValue::blackhole()),
        (26, [10, 244, 166, 128], RouteValue::remote(PEER_IP, true)),
        (26, [10, 244, 7, 0], RouteValue::remote(PEER_IP, false)),
        (26, [10, 244, 9, 0], RouteValue::remote(UNRESOLVED_PEER_IP, true)),
        (26, [10, 244, 8, 0], RouteValue::vxlan(PEER_IP, PEER_VTEP_MAC)),
    ] {
        routes.insert(&Key::new(len, addr), value, 0).unwrap();
    }
    let mut peers: HashMap<_, [u8; 4], u32> = HashMap::try_from(ebpf.map_mut(TUNNEL_PEERS).unwrap()).unwrap();
    peers.insert(PEER_IP, 1, 0).unwrap();
    // The daemon writes every local endpoint in the exact-match table too.
    put_endpoints(
        ebpf,
        ENDPOINTS,
        [(POD, TEST_IFINDEX, POD_MAC), (OTHER_LOCAL_POD, OTHER_IFINDEX, OTHER_POD_MAC)],
    );
    put_endpoints(ebpf, ENDPOINTS6, [(POD6, TEST_IFINDEX, POD_MAC), (OTHER6, OTHER_IFINDEX, OTHER_POD_MAC)]);
    // IPv6: this node's /122 a blackhole, the next node's blocks in VXLAN and plain, a block of
    // the unresolved node plain. 10.244.166.128's twin has no IPv6 route.
    set_node6(ebpf, node6_config());
    let mut routes6: LpmTrie<_, [u8; 16], RouteValue6> =
        LpmTrie::try_from(ebpf.map_mut(ROUTES6).unwrap()).unwrap();
    for (len, addr, value) in [
        (122, pod6([10, 244, 40, 0]), RouteValue6::blackhole()),
        (122, pod6([10, 244, 8, 0]), RouteValue6::vxlan(PEER6_IP, PEER_VTEP6_MAC)),
        (122, pod6([10, 244, 7, 0]), RouteValue6::plain(PEER6_IP)),
        (122, pod6([10, 244, 9, 0]), RouteValue6::plain(UNRESOLVED_PEER6_IP)),
    ] {
        routes6.insert(&Key::new(len, addr), value, 0).unwrap();
    }
    let mut peers6: HashMap<_, [u8; 16], u32> =
        HashMap::try_from(ebpf.map_mut(TUNNEL_PEERS6).unwrap()).unwrap();
    peers6.insert(PEER6_IP, 1, 0).unwrap();
}

/// IPv6 VXLAN from `outer_src` to `outer_dst` (VNI `vni`, inner Ethernet to `inner_dst_mac`,
/// from the next node's VTEP) around the IPv6 packet `inner`, with its UDP checksum, as
/// `vxlan-v6.calico` sends it and the underlay brings it.
pub fn vxlan6_frame(
    outer_src: [u8; 16],
    outer_dst: [u8; 16],
    vni: u32,
    inner_dst_mac: [u8; 6],
    inner: &[u8],
) -> Vec<u8> {
    let mut udp = Vec::new();
    udp.extend_from_slice(&51000u16.to_be_bytes());
    udp.extend_from_slice(&VXLAN_PORT.to_be_bytes());
    udp.extend_from_slice(&((8 + 8 + 14 + inner.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&[0x08, 0, 0, 0]);
    udp.extend_from_slice(&vni.to_be_bytes()[1..]);
    udp.push(0);
    udp.extend_from_slice(&inner_dst_mac);
    udp.extend_from_slice(&PEER_VTEP6_MAC);
    udp.extend_from_slice(&packets::ETH_P_IPV6.to_be_bytes());
    udp.extend_from_slice(inner);
    let sum = fastpath_common::ipv6::upper_layer_checksum(&outer_src, &outer_dst, 17, &udp);
    udp[6..8].copy_from_slice(&fastpath_common::ipv6::udp_checksum_field(sum).to_be_bytes());
    let mut frame = packets::ethernet([0x02, 0, 0, 0, 0, 0x50], PEER_MAC, packets::ETH_P_IPV6);
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[17, 64]);
    frame.extend_from_slice(&outer_src);
    frame.extend_from_slice(&outer_dst);
    frame.extend_from_slice(&udp);
    frame
}

/// A TCP segment (ACK) over IPv6 from a pod, checksum made, `payload` bytes after a 20-byte
/// header.
pub fn tcp6(src: [u8; 16], dst: [u8; 16], payload: usize) -> Vec<u8> {
    tcp6_flags(src, dst, payload, packets::TCP_ACK)
}

/// The ports of [`tcp6`]'s segments.
pub const TCP6_PORTS: (u16, u16) = (40000, 5201);

/// [`tcp6`] with TCP flags `flags`.
pub fn tcp6_flags(src: [u8; 16], dst: [u8; 16], payload: usize, flags: u8) -> Vec<u8> {
    let mut tcp = vec![0u8; 20 + payload];
    tcp[..2].copy_from_slice(&TCP6_PORTS.0.to_be_bytes());
    tcp[2..4].copy_from_slice(&TCP6_PORTS.1.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    for (i, b) in tcp[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let sum = fastpath_common::ipv6::upper_layer_checksum(&src, &dst, 6, &tcp);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    ip6_frame(src, dst, 6, &tcp)
}

/// An IPv6 frame from a pod to its gateway MAC: `upper` after a fixed header naming
/// `next_header`, hop limit 64.
pub fn ip6_frame(src: [u8; 16], dst: [u8; 16], next_header: u8, upper: &[u8]) -> Vec<u8> {
    let mut frame = packets::ethernet(fastpath_common::GATEWAY_MAC, POD_MAC, packets::ETH_P_IPV6);
    let header = fastpath_common::ipv6::Ipv6Fields {
        version: 6,
        traffic_class: 0,
        flow_label: 0x4_5678,
        payload_len: upper.len() as u16,
        next_header,
        hop_limit: 64,
        src,
        dst,
    };
    frame.extend_from_slice(&header.header());
    frame.extend_from_slice(upper);
    frame
}

/// An ICMPv6 echo request from a pod (`packets::ipv6_frame`) with its checksum made, as the pod's
/// kernel sends it.
pub fn echo6(src: [u8; 16], dst: [u8; 16], hop_limit: u8) -> Vec<u8> {
    let mut frame = packets::ipv6_frame(src, dst, hop_limit, 58);
    let sum = fastpath_common::ipv6::upper_layer_checksum(&src, &dst, 58, &frame[54..]);
    frame[56..58].copy_from_slice(&sum.to_be_bytes());
    frame
}

/// This node's pods, by address (IPv4 or IPv6), in the endpoint table `map`.
fn put_endpoints<A: aya::Pod>(ebpf: &mut Ebpf, map: &str, pods: [(A, u32, [u8; 6]); 2]) {
    let mut endpoints: HashMap<_, A, Endpoint> = HashMap::try_from(ebpf.map_mut(map).unwrap()).unwrap();
    for (pod, ifindex, mac) in pods {
        endpoints.insert(pod, Endpoint { ifindex, mac, _pad: [0; 2] }, 0).unwrap();
    }
}
