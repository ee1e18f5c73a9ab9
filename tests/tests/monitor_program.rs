//! `fastpath monitor`'s reports through BPF_PROG_TEST_RUN: with a monitor's lease in
//! `FP_MONITOR`, each program reports the packet it decided about to `FP_EVENTS`, in either
//! family (IPv4 IPv4-mapped), the pods' conversation inside a tunnel, before the handler changes
//! the packet; the filter takes a prefix of either family; with no monitor, or a lapsed lease,
//! nothing is reported. The verdict is the same whether a monitor watches or not.

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::{
    maps::{Array, RingBuf},
    Ebpf,
};
use fastpath::dataplane::loader::{FROM_POD, FROM_UNDERLAY};
use fastpath_common::{
    ipv4::PROTO_ICMP,
    ipv6::{v4_mapped, NEXT_ICMPV6},
    maps::{
        MonitorControl, MonitorEvent, EVENTS, FAMILY_IPV4, FAMILY_IPV6, MONITOR, PROGRAM_FROM_POD,
        PROGRAM_FROM_UNDERLAY,
    },
    Reason,
};
use fastpath_tests::packets::{self, TCP_ACK};
use support::*;

/// A prefix of either family.
type Filter = (IpAddr, u8);

/// Ask for reports about `filter` (IPv4 or IPv6 prefix; `None`: every packet), as `fastpath
/// monitor` does, with a lease that outlives the test.
fn watch(ebpf: &mut Ebpf, filter: Option<Filter>) {
    let control = match filter {
        Some((IpAddr::V4(a), len)) => MonitorControl::filter(a.to_ipv6_mapped().octets(), 96 + len),
        Some((IpAddr::V6(a), len)) => MonitorControl::filter(a.octets(), len),
        None => MonitorControl::default(),
    };
    set_control(ebpf, MonitorControl { until_ns: u64::MAX, ..control });
}

fn set_control(ebpf: &mut Ebpf, control: MonitorControl) {
    let mut array: Array<_, MonitorControl> = Array::try_from(ebpf.map_mut(MONITOR).unwrap()).unwrap();
    array.set(0, control, 0).unwrap();
}

/// Every event waiting in the ring buffer.
fn events(ebpf: &mut Ebpf) -> Vec<MonitorEvent> {
    let mut ring = RingBuf::try_from(ebpf.map_mut(EVENTS).unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        assert_eq!(item.len(), size_of::<MonitorEvent>(), "whole events only");
        // SAFETY: the programs write whole MonitorEvents; read_unaligned copies one out.
        out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<MonitorEvent>()) });
    }
    out
}

/// Run `program` on `frame` and return its verdict and the one event it reported, if any.
fn run_watched(ebpf: &mut Ebpf, program: &'static str, frame: &[u8]) -> (u32, Option<MonitorEvent>) {
    let (verdict, _) = run(ebpf, program, frame);
    let mut reported = events(ebpf);
    assert!(reported.len() <= 1, "one event per packet: {reported:?}");
    (verdict, reported.pop())
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn v6(a: [u8; 16]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(a))
}

/// A TCP segment from a pod to `dst`, ports 40000 → 5201.
fn tcp4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    packets::pod_frame(&packets::tcp_segment(addr(src), addr(dst), (40000, 5201), TCP_ACK))
}

#[test]
fn ipv4_from_a_pod_is_reported_before_it_is_encapsulated() {
    in_node(|ebpf, _| {
        watch(ebpf, None);
        let frame = tcp4(POD, REMOTE_POD);
        let (verdict, event) = run_watched(ebpf, FROM_POD, &frame);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        let e = event.expect("an event");
        assert_eq!((e.family, e.src, e.dst), (FAMILY_IPV4, v4_mapped(POD), v4_mapped(REMOTE_POD)));
        assert_eq!((e.protocol, e.sport, e.dport, e.icmp_type), (6, 40000, 5201, 0));
        assert_eq!((e.program, e.ifindex, e.len), (PROGRAM_FROM_POD, TEST_IFINDEX, frame.len() as u32));
        assert_eq!((e.verdict, e.reason), (TC_ACT_REDIRECT as i32, Reason::Encapsulated.index()));
        assert!(e.time_ns > 0);
        assert_eq!(count(ebpf, Reason::Encapsulated), 1, "counted once, as without a monitor");

        // ICMP: the message type, no ports.
        let (_, event) =
            run_watched(ebpf, FROM_POD, &packets::ipv4_frame(addr(POD), addr(OTHER_LOCAL_POD), 64));
        let e = event.expect("an event");
        assert_eq!((e.protocol, e.sport, e.dport, e.icmp_type), (PROTO_ICMP, 0, 0, 8));
        assert_eq!(e.reason, Reason::RedirectedLocal.index());
    });
}

#[test]
fn ipv4_in_vxlan_is_reported_by_its_inner_pods() {
    in_node(|ebpf, _| {
        watch(ebpf, None);
        let inner = packets::tcp_segment(addr(VXLAN_POD), addr(POD), (5201, 40000), TCP_ACK);
        let (verdict, event) = run_watched(ebpf, FROM_UNDERLAY, &vxlan_from_peer(&inner));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        let e = event.expect("an event");
        assert_eq!((e.family, e.src, e.dst), (FAMILY_IPV4, v4_mapped(VXLAN_POD), v4_mapped(POD)));
        assert_eq!((e.sport, e.dport, e.program), (5201, 40000, PROGRAM_FROM_UNDERLAY));
        assert_eq!(e.reason, Reason::DecapsulatedVxlan.index());
    });
}

#[test]
fn ipv6_from_a_pod_is_reported() {
    in_node(|ebpf, _| {
        watch(ebpf, None);
        let frame = echo6(POD6, OTHER6, 64);
        let (verdict, event) = run_watched(ebpf, FROM_POD, &frame);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        let e = event.expect("an event");
        assert_eq!((e.family, e.src, e.dst), (FAMILY_IPV6, POD6, OTHER6));
        assert_eq!((e.protocol, e.sport, e.dport, e.icmp_type), (NEXT_ICMPV6, 0, 0, 128));
        assert_eq!((e.program, e.ifindex, e.len), (PROGRAM_FROM_POD, TEST_IFINDEX, frame.len() as u32));
        assert_eq!((e.verdict, e.reason), (TC_ACT_REDIRECT as i32, Reason::RedirectedLocal.index()));
        assert_eq!(count(ebpf, Reason::RedirectedLocal), 1);

        // TCP toward another node's block in IPv6 VXLAN: ports, and the addresses before the
        // packet is encapsulated.
        let (verdict, event) = run_watched(ebpf, FROM_POD, &tcp6(POD6, VXLAN6_POD, 0));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        let e = event.expect("an event");
        assert_eq!((e.src, e.dst, e.protocol, e.sport, e.dport), (POD6, VXLAN6_POD, 6, 40000, 5201));
        assert_eq!(e.reason, Reason::EncapsulatedVxlan.index());

        // What the programs hand to the kernel is reported too, with the kernel's reason.
        let (verdict, event) = run_watched(ebpf, FROM_POD, &echo6(POD6, REMOTE_POD6, 64));
        assert_eq!(verdict, PASS);
        let e = event.expect("an event");
        assert_eq!((e.dst, e.verdict, e.reason), (REMOTE_POD6, -1, Reason::PassNoRoute.index()));
    });
}

#[test]
fn ipv6_in_ipv6_vxlan_is_reported_by_its_inner_pods() {
    in_node(|ebpf, _| {
        watch(ebpf, None);
        let frame = vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &tcp6(VXLAN6_POD, POD6, 0)[14..]);
        let (verdict, event) = run_watched(ebpf, FROM_UNDERLAY, &frame);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        let e = event.expect("an event");
        assert_eq!((e.family, e.src, e.dst), (FAMILY_IPV6, VXLAN6_POD, POD6), "the inner packet's");
        assert_eq!((e.protocol, e.sport, e.dport), (6, 40000, 5201));
        assert_eq!((e.program, e.len), (PROGRAM_FROM_UNDERLAY, frame.len() as u32));
        assert_eq!(e.reason, Reason::DecapsulatedVxlan.index());

        // IPv6 VXLAN from a stranger: dropped, and still reported by its inner pods.
        let stranger = node6([10, 101, 14, 60]);
        let frame = vxlan6_frame(stranger, NODE6_IP, VNI, NODE_VTEP6_MAC, &echo6(VXLAN6_POD, POD6, 63)[14..]);
        let (verdict, event) = run_watched(ebpf, FROM_UNDERLAY, &frame);
        assert_eq!(verdict, TC_ACT_SHOT);
        let e = event.expect("an event");
        assert_eq!((e.src, e.dst, e.icmp_type), (VXLAN6_POD, POD6, 128));
        assert_eq!((e.verdict, e.reason), (TC_ACT_SHOT as i32, Reason::DropUnknownPeer.index()));

        // Plain IPv6 on the underlay: its own addresses.
        let plain = echo6(PEER6_IP, NODE6_IP, 64);
        let (_, event) = run_watched(ebpf, FROM_UNDERLAY, &plain);
        let e = event.expect("an event");
        assert_eq!((e.src, e.dst), (PEER6_IP, NODE6_IP));
    });
}

#[test]
fn the_filter_takes_a_prefix_of_either_family_and_only_that_family() {
    in_node(|ebpf, _| {
        let ipv4 = tcp4(POD, REMOTE_POD);
        let ipv6 = echo6(POD6, OTHER6, 64);
        let ipv6_vxlan =
            vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &tcp6(VXLAN6_POD, POD6, 0)[14..]);
        let cases: [(Option<Filter>, &[u8], &'static str, bool); 12] = [
            // IPv4: its source, its destination's block, neither.
            (Some((v4(POD), 32)), &ipv4, FROM_POD, true),
            (Some((v4([10, 244, 166, 128]), 26)), &ipv4, FROM_POD, true),
            (Some((v4(OTHER_LOCAL_POD), 32)), &ipv4, FROM_POD, false),
            // IPv6: its destination, its source's /122, another pod.
            (Some((v6(OTHER6), 128)), &ipv6, FROM_POD, true),
            (Some((v6(pod6([10, 244, 40, 0])), 122)), &ipv6, FROM_POD, true),
            (Some((v6(REMOTE_POD6), 128)), &ipv6, FROM_POD, false),
            // The inner pods of IPv6 VXLAN, not the nodes.
            (Some((v6(VXLAN6_POD), 128)), &ipv6_vxlan, FROM_UNDERLAY, true),
            (Some((v6(PEER6_IP), 128)), &ipv6_vxlan, FROM_UNDERLAY, false),
            // A filter of one family never matches the other: not even 0.0.0.0/0 IPv6, nor an
            // IPv6 prefix holding the IPv4 pod's digits IPv4.
            (Some((v4([0, 0, 0, 0]), 0)), &ipv6, FROM_POD, false),
            (Some((v6(pod6(POD)), 128)), &ipv4, FROM_POD, false),
            (Some((v4([0, 0, 0, 0]), 0)), &ipv4, FROM_POD, true),
            // ::/0 takes both.
            (Some((v6([0; 16]), 0)), &ipv4, FROM_POD, true),
        ];
        for (filter, frame, program, reported) in cases {
            watch(ebpf, filter);
            let (_, event) = run_watched(ebpf, program, frame);
            assert_eq!(event.is_some(), reported, "{filter:?} on {program}: {event:?}");
        }
        watch(ebpf, Some((v6([0; 16]), 0)));
        assert!(run_watched(ebpf, FROM_POD, &ipv6).1.is_some());
    });
}

#[test]
fn without_a_monitor_nothing_is_reported_and_the_verdicts_are_the_same() {
    in_node(|ebpf, _| {
        let frames: [(&'static str, Vec<u8>); 4] = [
            (FROM_POD, tcp4(POD, REMOTE_POD)),
            (FROM_POD, echo6(POD6, OTHER6, 64)),
            (FROM_POD, echo6(POD6, REMOTE_POD6, 64)),
            (
                FROM_UNDERLAY,
                vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &tcp6(VXLAN6_POD, POD6, 0)[14..]),
            ),
        ];
        let mut watched = Vec::new();
        watch(ebpf, None);
        for (program, frame) in &frames {
            let (verdict, out) = run(ebpf, program, frame);
            watched.push((verdict, out));
        }
        assert_eq!(events(ebpf).len(), frames.len());
        // No monitor (the map as the daemon creates it), then a lease that lapsed.
        for control in
            [MonitorControl::default(), MonitorControl { until_ns: 1, ..MonitorControl::default() }]
        {
            set_control(ebpf, control);
            for ((program, frame), watched) in frames.iter().zip(&watched) {
                assert_eq!(&run(ebpf, program, frame), watched, "the same verdict and bytes unwatched");
            }
            assert!(events(ebpf).is_empty(), "{control:?}");
        }
    });
}

#[test]
fn ipv6_vxlan_cut_inside_its_inner_header_is_not_reported() {
    // (BPF_PROG_TEST_RUN itself refuses a frame shorter than its outer IP header.)
    in_node(|ebpf, _| {
        watch(ebpf, None);
        let mut frame =
            vxlan6_frame(PEER6_IP, NODE6_IP, VNI, NODE_VTEP6_MAC, &tcp6(VXLAN6_POD, POD6, 0)[14..]);
        frame.truncate(14 + 70 + 20);
        let (verdict, event) = run_watched(ebpf, FROM_UNDERLAY, &frame);
        assert_eq!((verdict, event), (PASS, None));
    });
}
