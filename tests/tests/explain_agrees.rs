//! `fastpath explain` and the programs decide alike. They make the same decisions in two
//! orchestrations (the programs in `ebpf/`, `explain` in `userspace/src/commands/explain.rs`),
//! so this suite feeds the same frames to both — every seed kind of the fuzz harness, then
//! mutated frames — over the maps of a filled node, in both trust modes, and requires the same
//! verdict and the same reason: the programs' through BPF_PROG_TEST_RUN and their counters,
//! `explain`'s from its decision, taken on the maps as they were just before the run.

mod support;

use std::net::Ipv4Addr;

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, PerCpuArray},
    Ebpf,
};
use fastpath::{
    cli::Encap,
    commands::explain::{self, Maps, Program, Verdict},
    dataplane::{
        counters,
        loader::{FROM_POD, FROM_UNDERLAY},
    },
};
use fastpath_common::{
    flow::{FlowKey, FlowState, FlowValue},
    flow6::{FlowKey6, FlowValue6},
    maps::{
        Counter, Endpoint, NextHopEntry, Node6Config, NodeConfig, PathMtu, COUNTERS, ENDPOINTS, ENDPOINTS6,
        FLOWS, FLOWS6, NEXT_HOPS, NODE, NODE6, PATH_MTU, PATH_MTU6, ROUTES, ROUTES6, TUNNEL_PEERS,
        TUNNEL_PEERS6,
    },
    route::RouteValue,
    route6::RouteValue6,
    Reason,
};
use fastpath_tests::packets;
use proptest::{
    strategy::{Strategy as _, ValueTree as _},
    test_runner::{Config, TestRunner},
};
use support::*;

/// Mutated frames after the seeds, in each trust mode: enough to reach most branches (a few
/// seconds here).
const MUTATED_FRAMES: usize = 3000;

/// Every counter, summed over CPUs, by reason code.
fn counters(ebpf: &Ebpf) -> Vec<u64> {
    let map: PerCpuArray<_, Counter> = PerCpuArray::try_from(ebpf.map(COUNTERS).unwrap()).unwrap();
    let totals = counters::totals(&map).unwrap();
    Reason::ALL
        .iter()
        .map(|r| totals.iter().find(|t| t.reason == *r).map_or(0, |t| t.total.packets))
        .collect()
}

/// `explain`'s decision about `frame`, on the maps of `ebpf` as they are now.
fn explained(ebpf: &Ebpf, program: Program, frame: &[u8]) -> explain::Decision {
    let node: NodeConfig = Array::try_from(ebpf.map(NODE).unwrap()).unwrap().get(&0, 0).unwrap();
    let trie: LpmTrie<_, [u8; 4], RouteValue> = LpmTrie::try_from(ebpf.map(ROUTES).unwrap()).unwrap();
    let endpoints: HashMap<_, [u8; 4], Endpoint> = HashMap::try_from(ebpf.map(ENDPOINTS).unwrap()).unwrap();
    let endpoints6: HashMap<_, [u8; 16], Endpoint> =
        HashMap::try_from(ebpf.map(ENDPOINTS6).unwrap()).unwrap();
    let peers: HashMap<_, [u8; 4], u32> = HashMap::try_from(ebpf.map(TUNNEL_PEERS).unwrap()).unwrap();
    let flows: HashMap<_, FlowKey, FlowValue> = HashMap::try_from(ebpf.map(FLOWS).unwrap()).unwrap();
    let flows6: HashMap<_, FlowKey6, FlowValue6> = HashMap::try_from(ebpf.map(FLOWS6).unwrap()).unwrap();
    let path_mtus: HashMap<_, [u8; 4], PathMtu> = HashMap::try_from(ebpf.map(PATH_MTU).unwrap()).unwrap();
    let path_mtus6: HashMap<_, [u8; 16], PathMtu> = HashMap::try_from(ebpf.map(PATH_MTU6).unwrap()).unwrap();
    let next_hops: HashMap<_, [u8; 4], NextHopEntry> =
        HashMap::try_from(ebpf.map(NEXT_HOPS).unwrap()).unwrap();
    let node6: Node6Config = Array::try_from(ebpf.map(NODE6).unwrap()).unwrap().get(&0, 0).unwrap();
    let trie6: LpmTrie<_, [u8; 16], RouteValue6> = LpmTrie::try_from(ebpf.map(ROUTES6).unwrap()).unwrap();
    let peers6: HashMap<_, [u8; 16], u32> = HashMap::try_from(ebpf.map(TUNNEL_PEERS6).unwrap()).unwrap();
    let maps = Maps {
        node,
        next_hop_mac: &|addr| {
            let entry = next_hops.get(&addr, 0).ok()?;
            (entry.generation == node.next_hop_generation).then_some(entry.dmac)
        },
        route: &|addr| trie.get(&Key::new(32, addr), 0).ok(),
        endpoint: &|addr| endpoints.get(&addr, 0).ok(),
        endpoint6: &|addr| endpoints6.get(&addr, 0).ok(),
        is_peer: &|addr| peers.get(&addr, 0).is_ok(),
        node6,
        route6: &|addr| trie6.get(&Key::new(128, addr), 0).ok(),
        is_peer6: &|addr| peers6.get(&addr, 0).is_ok(),
        path_mtu: &|addr| path_mtus.get(&addr, 0).ok(),
        path_mtu6: &|addr| path_mtus6.get(&addr, 0).ok(),
        flow: &|key| flows.get(key, 0).ok(),
        flow6: &|key| flows6.get(key, 0).ok(),
        flows: &[],
        now_ns: fastpath::clock::monotonic_ns(),
        ifname: &|_| None,
    };
    explain::decide(program, frame, &maps)
}

/// What one frame came to in one program, as (verdict, reason).
#[derive(Debug, PartialEq, Eq)]
struct Outcome(Verdict, Reason);

/// Run `frame` through the program and through `explain`; `None` when BPF_PROG_TEST_RUN refuses
/// the frame (the program never sees it).
fn both(ebpf: &mut Ebpf, program: Program, frame: &[u8]) -> Option<(Outcome, Outcome, explain::Decision)> {
    let decision = explained(ebpf, program, frame);
    let before = counters(ebpf);
    let name = match program {
        Program::FromPod { .. } => FROM_POD,
        Program::FromUnderlay => FROM_UNDERLAY,
    };
    let (verdict, _) = try_run(ebpf, name, frame).ok()?;
    let after = counters(ebpf);
    let grew: Vec<Reason> = Reason::ALL
        .iter()
        .zip(before.iter().zip(&after))
        .filter(|(_, (b, a))| a > b)
        .map(|(r, _)| *r)
        .collect();
    assert_eq!(grew.len(), 1, "{name} counted {grew:?} for one frame {frame:02x?}");
    let verdict = match verdict {
        PASS => Verdict::Kernel,
        TC_ACT_SHOT => Verdict::Drop,
        TC_ACT_REDIRECT => Verdict::Redirect,
        other => panic!("{name} returned {other} for {frame:02x?}"),
    };
    Some((Outcome(verdict, grew[0]), Outcome(decision.verdict, decision.reason), decision))
}

/// Both ingress programs on `frame`: the same outcome from the program and from `explain`.
/// Returns the programs' reasons.
fn agree(ebpf: &mut Ebpf, frame: &[u8]) -> Vec<Reason> {
    let mut reasons = Vec::new();
    for program in [Program::FromPod { ingress: TEST_IFINDEX }, Program::FromUnderlay] {
        let Some((ran, said, decision)) = both(ebpf, program, frame) else { continue };
        assert_eq!(
            ran,
            said,
            "{program:?} and explain disagree on {frame:02x?}\nexplain: {}\n  because {}",
            decision.words,
            decision.why.join("\n  because ")
        );
        reasons.push(ran.1);
    }
    reasons
}

/// Every flow both tables hold, closing (as a FIN or RST would leave it).
fn close_every_flow(ebpf: &mut Ebpf) {
    let mut flows: HashMap<_, FlowKey, FlowValue> = HashMap::try_from(ebpf.map_mut(FLOWS).unwrap()).unwrap();
    let keys: Vec<FlowKey> = flows.keys().map(Result::unwrap).collect();
    for key in keys {
        let value = flows.get(&key, 0).unwrap();
        flows.insert(key, FlowValue { state: FlowState::Closing as u8, ..value }, 0).unwrap();
    }
    let mut flows6: HashMap<_, FlowKey6, FlowValue6> =
        HashMap::try_from(ebpf.map_mut(FLOWS6).unwrap()).unwrap();
    let keys6: Vec<FlowKey6> = flows6.keys().map(Result::unwrap).collect();
    for key in keys6 {
        let value = flows6.get(&key, 0).unwrap();
        flows6.insert(key, FlowValue6 { state: FlowState::Closing as u8, ..value }, 0).unwrap();
    }
}

#[test]
fn explain_decides_every_seed_kind_as_the_programs_do() {
    in_node(|ebpf, underlay| {
        route_outside();
        let underlay_mac = underlay.mac;
        let mut routes_mode = Vec::new();
        for frame in seed_frames() {
            routes_mode.extend(agree(ebpf, &frame));
        }
        // Under --trust kernel: first with an empty flow table, then with the directions the
        // daemon would approve from conntrack (as each arrives), then with some closing.
        support::trust_kernel(ebpf);
        let tcp = |src, dst, ports| packets::tcp_segment(addr(src), addr(dst), ports, packets::TCP_ACK);
        // A connection to a service, DNATed to a backend behind the IPIP block, and its reply.
        let to_service = packets::pod_frame(&tcp(POD, SERVICE, (40001, 80)));
        let reply = ipip_frame(PEER_IP, NODE_IP, &tcp(REMOTE_POD, POD, (8080, 40001)));
        // Masqueraded to the outside world, and its reply through the gateway (and from elsewhere).
        let to_outside = packets::pod_frame(&tcp(POD, OUTSIDE, (40003, 443)));
        let from_outside = |mac| {
            let mut frame = packets::ethernet(underlay_mac, mac, packets::ETH_P_IP);
            frame.extend(tcp(OUTSIDE, NODE_IP, (443, 61003)));
            frame
        };
        // A plain connection from a pod of the other node (a block route without a tunnel).
        let plain = |mac| {
            let mut frame = packets::ethernet(underlay_mac, mac, packets::ETH_P_IP);
            frame.extend(tcp(PLAIN_POD, POD, (8081, 40002)));
            frame
        };
        let extra = [
            to_service,
            reply,
            to_outside,
            from_outside(PEER_MAC),
            from_outside([2; 6]),
            plain(PEER_MAC),
            plain([2; 6]),
        ];
        let mut kernel_mode = Vec::new();
        for round in 0..3 {
            match round {
                1 => approve_seen_flows(ebpf),
                2 => close_every_flow(ebpf),
                _ => {}
            }
            for frame in seed_frames().iter().chain(&extra) {
                kernel_mode.extend(agree(ebpf, frame));
            }
        }
        for reason in [
            Reason::PassSourceUnallocated,
            Reason::PassSourceNotPod,
            Reason::PassInnerSourceForeign,
            Reason::DropSpoofedSource,
            Reason::DropUnknownPeer,
            Reason::Decapsulated,
            Reason::Encapsulated,
            Reason::RedirectedLocal,
            Reason::ArpReplied,
            Reason::PassTtlExceeded,
            Reason::EncapsulatedVxlan,
            Reason::DecapsulatedVxlan,
            // IPv6's walk: a solicitation answered, others left, headers the kernel keeps, and
            // across nodes: the underlay, no endpoint after decapsulation, packet too big.
            Reason::NdpReplied,
            Reason::PassNdpNotSolicitation,
            Reason::PassIpv6ExtensionHeader,
            Reason::PassSpecialDestination,
            Reason::RoutedUnderlay,
            Reason::DropNoEndpoint,
            Reason::Icmp6PacketTooBig,
        ] {
            assert!(
                routes_mode.contains(&reason),
                "no seed reached {reason:?} under --trust routes: {routes_mode:?}"
            );
        }
        for reason in [
            Reason::RoutedFromUnderlay,
            Reason::RoutedUnderlay,
            Reason::PassFlowPending,
            Reason::PassFlowElsewhere,
            Reason::PassFlowClosing,
            Reason::PassFlowUntracked,
            Reason::Encapsulated,
            Reason::Decapsulated,
            Reason::DecapsulatedVxlan,
            Reason::RedirectedLocal,
            Reason::PassSourceNotPod,
            Reason::PassInnerSourceForeign,
            // IPv6 by its own flow table: one conntrack translates is the kernel's.
            Reason::PassIpv6Translated,
            Reason::EncapsulatedVxlan,
        ] {
            assert!(
                kernel_mode.contains(&reason),
                "no seed reached {reason:?} under --trust kernel: {kernel_mode:?}"
            );
        }
    });
}

#[test]
fn explain_decides_mutated_frames_as_the_programs_do() {
    in_node(|ebpf, _| {
        let mut runner = TestRunner::new(Config::default());
        let strategy = mutated_frames();
        let mut kinds = Vec::new();
        for trust_kernel in [false, true] {
            if trust_kernel {
                route_outside();
                support::trust_kernel(ebpf);
                approve_seen_flows(ebpf);
            }
            for _ in 0..MUTATED_FRAMES {
                let frame = strategy.new_tree(&mut runner).expect("a frame").current();
                for reason in agree(ebpf, &frame) {
                    if !kinds.contains(&reason) {
                        kinds.push(reason);
                    }
                }
            }
        }
        eprintln!(
            "explain agreed with the programs on {} mutated frames, reaching {kinds:?}",
            2 * MUTATED_FRAMES
        );
        assert!(kinds.len() >= 15, "the mutations reached only {kinds:?}");
    });
}

#[test]
fn a_frame_the_command_line_describes_is_decided_as_the_programs_do() {
    in_node(|ebpf, _| {
        let ask = |src: [u8; 4], dst: [u8; 4]| explain::Question {
            src: src.into(),
            dst: dst.into(),
            arp: false,
            from_underlay: None,
            encap: Encap::Ipip,
            ingress: Some(TEST_IFINDEX),
            ttl: 64,
            size: 84,
            df: true,
        };
        let ask6 = |src: [u8; 16], dst: [u8; 16]| explain::Question {
            src: src.into(),
            dst: dst.into(),
            ..ask(POD, POD)
        };
        let questions = [
            ask(POD, OTHER_LOCAL_POD),
            ask(POD, REMOTE_POD),
            ask([10, 96, 0, 10], OTHER_LOCAL_POD),
            ask([10, 244, 40, 50], REMOTE_POD),
            explain::Question { size: 1500, ..ask(POD, REMOTE_POD) },
            explain::Question { arp: true, ..ask(POD, [169, 254, 1, 1]) },
            explain::Question { from_underlay: Some(Ipv4Addr::from(PEER_IP)), ..ask(REMOTE_POD, POD) },
            explain::Question { from_underlay: Some(Ipv4Addr::from(PEER_IP)), ..ask([10, 244, 9, 9], POD) },
            ask(POD, VXLAN_POD),
            explain::Question { size: 1451, ..ask(POD, VXLAN_POD) },
            explain::Question {
                from_underlay: Some(Ipv4Addr::from(PEER_IP)),
                encap: Encap::Vxlan,
                ..ask(VXLAN_POD, POD)
            },
            explain::Question {
                from_underlay: Some(Ipv4Addr::from([10, 101, 14, 60])),
                encap: Encap::Vxlan,
                ..ask(VXLAN_POD, POD)
            },
            explain::Question {
                from_underlay: Some(Ipv4Addr::from(PEER_IP)),
                encap: Encap::None,
                ..ask(REMOTE_POD, POD)
            },
            // IPv6: to a pod here and elsewhere, the gateway's solicitation, another pod's
            // source, hop limit 1.
            ask6(POD6, OTHER6),
            ask6(POD6, REMOTE_POD6),
            explain::Question { arp: true, ..ask6(POD6, fastpath_common::ipv6::GATEWAY_LINK_LOCAL) },
            ask6(OTHER6, POD6),
            explain::Question { ttl: 1, ..ask6(POD6, OTHER6) },
        ];
        for q in questions {
            let (program, frame) = {
                let node: NodeConfig = Array::try_from(ebpf.map(NODE).unwrap()).unwrap().get(&0, 0).unwrap();
                let maps = Maps {
                    node,
                    next_hop_mac: &|_| None,
                    route: &|_| None,
                    endpoint: &|_| None,
                    endpoint6: &|_| None,
                    is_peer: &|_| false,
                    node6: Node6Config::default(),
                    route6: &|_| None,
                    is_peer6: &|_| false,
                    path_mtu: &|_| None,
                    path_mtu6: &|_| None,
                    flow: &|_| None,
                    flow6: &|_| None,
                    flows: &[],
                    now_ns: 0,
                    ifname: &|_| None,
                };
                explain::question_frame(&q, &maps)
            };
            let (ran, said, decision) = both(ebpf, program, &frame).expect("a frame the programs take");
            assert_eq!(ran, said, "{q:?}: explain says {}", decision.words);
        }
    });
}
