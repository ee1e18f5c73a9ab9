//! End to end: the fast path carries a pod's packet only from an address of that pod's own
//! interface, and a tunnel's packet only from a source that belongs to the node it came from.
//!
//! A hostile pod sends from an unallocated address of its node's block, a service address, an
//! outside address and another node's pod's address (raw IPv4, as a pod that added the address
//! to its interface would send it). Under `--trust routes`, with the kernel's FORWARD chain
//! closed and proxy_arp off, none of it reaches a pod on the same node or on the other node, and
//! each is counted under its reason; a pod with two /32 routes reaches other pods from both. A
//! node that tunnels a third node's pod's packet, or this node's, gets it handed to the kernel.
//! Under `--trust kernel` beside Calico's strict rpfilter rule (raw table), the kernel drops what
//! the fast path handed it, and no flow from those sources is ever approved.

use std::{net::Ipv4Addr, time::Duration};

use fastpath_tests::{
    cluster::{Cluster, ClusterSpec, Pod},
    cmd, packets, require_root,
    traffic::{self, ping},
    wait, Daemon,
};

const A: Ipv4Addr = Ipv4Addr::new(10, 244, 40, 36);
const B: Ipv4Addr = Ipv4Addr::new(10, 244, 40, 37);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 244, 166, 150);

/// The sources a hostile pod on node 1 tries, each with the reason node 1's fast path counts.
const SPOOFED: [(Ipv4Addr, &str); 4] = [
    (Ipv4Addr::new(10, 244, 40, 50), "passed_source_unallocated"),
    (Ipv4Addr::new(10, 96, 0, 10), "passed_source_not_pod"),
    (Ipv4Addr::new(192, 0, 2, 7), "passed_source_not_pod"),
    (REMOTE, "dropped_spoofed_source"),
];

/// The seed cluster from `spec` with pods A and B on node 1 and REMOTE on node 2, and a daemon on
/// each node started with `args`.
fn seed(tag: &str, mut spec: ClusterSpec, args: &[&str]) -> (Cluster, Vec<Daemon>) {
    require_root();
    spec.nodes[0].pods = vec![A, B];
    let cluster = Cluster::build(tag, &spec).unwrap();
    let daemons = cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, args).unwrap()).collect();
    (cluster, daemons)
}

/// ICMP echo requests a pod's kernel has received (`Icmp: InEchos` in its /proc/net/snmp).
fn echoes_received(pod: &Pod) -> u64 {
    let snmp = cmd::in_ns_ok(&pod.ns.name, "cat", &["/proc/net/snmp"]).unwrap();
    let icmp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Icmp:")).collect();
    let (names, values) = (icmp[0].split_whitespace(), icmp[1].split_whitespace());
    names.zip(values).find(|(n, _)| *n == "InEchos").and_then(|(_, v)| v.parse().ok()).expect("InEchos")
}

/// Wait (at most 3 s) until `daemon` has counted at least `want` packets under `reason`; the
/// count it reached.
fn counted(daemon: &Daemon, reason: &str, want: u64) -> u64 {
    let reached = wait::until(Duration::from_secs(3), || {
        Some(daemon.counters().unwrap().packets(reason)).filter(|n| *n >= want)
    });
    reached.map_or_else(|| daemon.counters().unwrap().packets(reason), |(n, _)| n)
}

/// From pod `from`, one echo request with source `src` to each of `to`, as raw IPv4.
fn send_from(from: &Pod, src: Ipv4Addr, to: &[&Pod]) {
    for pod in to {
        traffic::send_raw_ipv4(&from.ns.name, packets::icmp_echo(src, pod.ip, 64)).unwrap();
    }
}

/// A sends from every spoofed source to B (same node) and REMOTE (other node): node 1 counts
/// each under its reason, and neither pod receives any of them. Then A's own address reaches
/// both, so the test sees a delivery when there is one.
fn spoofed_sources_reach_no_pod(cluster: &Cluster, daemons: &[Daemon]) {
    let a = cluster.pod(A).unwrap();
    let targets = [cluster.pod(B).unwrap(), cluster.pod(REMOTE).unwrap()];
    let before: Vec<u64> = targets.iter().map(|p| echoes_received(p)).collect();
    for (src, reason) in SPOOFED {
        let already = daemons[0].counters().unwrap().packets(reason);
        send_from(a, src, &targets);
        let now = counted(&daemons[0], reason, already + 2);
        assert_eq!(now - already, 2, "{src}: node 1 counted {} under {reason}, not 2", now - already);
    }
    // Time for the kernel to deliver whatever it was handed, had it done so.
    std::thread::sleep(Duration::from_millis(300));
    let after: Vec<u64> = targets.iter().map(|p| echoes_received(p)).collect();
    assert_eq!(after, before, "spoofed echo requests reached B or REMOTE");
    for (pod, seen) in targets.iter().zip(after) {
        assert!(ping(a, pod.ip, 1, &[]).unwrap().received, "A cannot reach {}", pod.ip);
        assert!(echoes_received(pod) > seen, "{} did not count A's own echo request", pod.ip);
    }
}

#[test]
fn under_trust_routes_a_pod_reaches_no_pod_from_an_address_it_does_not_own() {
    let (cluster, daemons) = seed("spoof", ClusterSpec::seed_fastpath_only(), &[]);
    spoofed_sources_reach_no_pod(&cluster, &daemons);
}

#[test]
fn a_pod_with_two_addresses_reaches_other_pods_from_both() {
    let (cluster, daemons) = seed("twoaddr", ClusterSpec::seed_fastpath_only(), &[]);
    let a = cluster.pod(A).unwrap();
    let second = Ipv4Addr::new(10, 244, 40, 40);
    // What Calico's CNI plugin does for a second IP: the address in the pod, a /32 to its
    // interface on the node.
    cmd::ip(&a.ns.name, &["addr", "add", &format!("{second}/32"), "dev", "eth0"]).unwrap();
    cmd::ip(
        &cluster.nodes[0].ns.name,
        &["route", "add", &second.to_string(), "dev", &a.host_iface, "scope", "link"],
    )
    .unwrap();
    let prefix = format!("{second}/32");
    let mapped = wait::until(Duration::from_secs(2), || {
        daemons[0].route_prefixes().unwrap().contains(&prefix).then_some(())
    });
    assert!(mapped.is_some(), "{prefix} is not in node 1's map");
    for to in [B, REMOTE] {
        for from in [A, second] {
            let result = ping(a, to, 2, &["-I", &from.to_string()]).unwrap();
            assert!(result.received, "{from} cannot reach {to}: {}", result.output);
        }
    }
    let counters = daemons[0].counters().unwrap();
    assert_eq!(counters.packets("passed_source_not_pod") + counters.packets("passed_source_unallocated"), 0);
}

#[test]
fn a_node_cannot_tunnel_packets_that_pose_as_another_nodes_pods() {
    require_root();
    // Nodes 10.101.14.50, .51, .52 with blocks 10.244.10.0/26, .11.0/26, .12.0/26; pods .2, .3.
    let cluster = Cluster::build("tunsrc", &ClusterSpec::grid(3, 2)).unwrap();
    let daemons: Vec<Daemon> =
        cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, &[]).unwrap()).collect();
    let (node1, node2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let target = &node1.pods[0];
    // Node 2 sends IPIP to node 1, as its fast path would, around a packet from `inner_src`.
    let tunnel = |inner_src: Ipv4Addr| {
        let inner = packets::icmp_echo(inner_src, target.ip, 63);
        traffic::send_raw_ipv4(
            &node2.ns.name,
            packets::ipv4_packet(node2.underlay_ip, node1.underlay_ip, 64, 4, &inner),
        )
        .unwrap();
    };
    let before = echoes_received(target);
    let (third_nodes_pod, this_nodes_pod) = (cluster.nodes[2].pods[0].ip, node1.pods[1].ip);
    for src in [third_nodes_pod, this_nodes_pod] {
        tunnel(src);
    }
    let foreign = counted(&daemons[0], "passed_inner_source_foreign", 2);
    assert_eq!(foreign, 2, "node 1 handed {foreign} tunnelled packets to the kernel as foreign, not 2");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(echoes_received(target), before, "a foreign inner source reached {}", target.ip);
    assert_eq!(daemons[0].counters().unwrap().packets("decapsulated"), 0);
    // Node 2's own pod and node 2 itself are its to send.
    for src in [node2.pods[0].ip, node2.underlay_ip] {
        tunnel(src);
    }
    let delivered = counted(&daemons[0], "decapsulated", 2);
    assert_eq!(delivered, 2, "node 1 decapsulated {delivered} of node 2's own packets, not 2");
    let reached =
        wait::until(Duration::from_secs(2), || (echoes_received(target) == before + 2).then_some(()));
    assert!(reached.is_some(), "node 2's own packets did not reach {}", target.ip);
}

/// Calico's raw-table rule (Felix `static.go`: packets from a workload interface must pass a
/// strict reverse-path check, `--validmark` so a policy-routing mark counts) on every node.
fn calico_rpfilter(cluster: &Cluster) {
    for node in &cluster.nodes {
        cmd::in_ns_ok(
            &node.ns.name,
            "iptables",
            &[
                "-t",
                "raw",
                "-A",
                "PREROUTING",
                "-i",
                "cali+",
                "-m",
                "rpfilter",
                "--validmark",
                "--invert",
                "-j",
                "DROP",
            ],
        )
        .unwrap();
    }
}

/// Packets the raw rpfilter rule dropped on node `index`.
fn rpfilter_drops(cluster: &Cluster, index: usize) -> u64 {
    let listing = cmd::in_ns_ok(
        &cluster.nodes[index].ns.name,
        "iptables",
        &["-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n"],
    )
    .unwrap();
    let rule = listing.lines().find(|l| l.contains("rpfilter")).expect("the rpfilter rule");
    rule.split_whitespace().next().and_then(|n| n.parse().ok()).expect("a packet count")
}

#[test]
fn under_trust_kernel_calicos_rpfilter_drops_them_and_no_flow_from_them_is_approved() {
    // The kernel's path open (direct routing, FORWARD accepting), as on a Calico node.
    let (cluster, daemons) = seed("spoofk", ClusterSpec::seed(), &["--trust", "kernel"]);
    cluster.accept_established().unwrap();
    calico_rpfilter(&cluster);
    let dropped_before = rpfilter_drops(&cluster, 0);
    spoofed_sources_reach_no_pod(&cluster, &daemons);
    // Three sources handed to the kernel, to two pods each; the fourth was the fast path's to drop.
    assert_eq!(rpfilter_drops(&cluster, 0) - dropped_before, 6, "Calico's rpfilter rule did not drop them");
    let flows: serde_json::Value =
        serde_json::from_str(&daemons[0].cli(&["flows", "--json"]).unwrap()).unwrap();
    let flows = flows.as_array().unwrap();
    // (REMOTE → A is there: the replies to A's own echo requests.)
    for (src, _) in SPOOFED {
        let spoofed: Vec<_> = flows
            .iter()
            .filter(|f| {
                f["src"] == src.to_string() && (f["dst"] == B.to_string() || f["dst"] == REMOTE.to_string())
            })
            .collect();
        assert!(spoofed.is_empty(), "node 1's flow table holds flows from {src}: {spoofed:?}");
    }
    // A's own echo requests to REMOTE were approved by the kernel's forwarding of the first.
    let approved = flows
        .iter()
        .any(|f| f["src"] == A.to_string() && f["dst"] == REMOTE.to_string() && f["state"] == "approved");
    assert!(approved, "A → REMOTE is not approved: {flows:?}");
}
