//! End to end: pods on namespace nodes reach each other through fastpath alone. Every node has
//! proxy_arp off and `iptables -P FORWARD DROP`, and cross-node routes go via a `tunl0` that
//! leads nowhere (this kernel has no ipip module): a packet that arrives was carried by our
//! programs.
//!
//! Each check but the route-change one runs twice: `static_routes::…` over routes the test bed
//! writes, and `bird_routes::…` over routes only BIRD 2 wrote (Calico's configuration, see
//! `fastpath_tests::bird`: blocks via the owning node on eth0, so the daemons run `--ipip
//! always`). The route-change check edits kernel routes by hand, which BIRD would fight;
//! `bgp_e2e.rs` withdraws and restores routes through BGP instead.

use std::{
    net::Ipv4Addr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use fastpath_tests::{
    cluster::{Cluster, ClusterSpec, RouteSource},
    cmd, names, packets, reach, require_root,
    traffic::{self, ping},
    wait, Daemon, Netns,
};

/// Every check that runs over both route sources, as `static_routes::NAME` and `bird_routes::NAME`.
macro_rules! over_both_route_sources {
    ($($check:ident),* $(,)?) => {
        mod static_routes {
            $( #[test] fn $check() { super::$check(super::RouteSource::Static) } )*
        }
        mod bird_routes {
            $( #[test] fn $check() { super::$check(super::RouteSource::Bird) } )*
        }
    };
}

over_both_route_sources!(
    every_pod_reaches_every_pod_on_three_nodes_through_fastpath_alone,
    the_underlay_carries_ipip_between_the_node_addresses,
    a_new_pod_is_reachable_from_every_pod_within_two_seconds,
    ipip_from_an_unknown_node_and_spoofed_pod_sources_are_dropped_and_counted,
    ttl_1_gets_time_exceeded_from_the_pods_own_node,
    a_pod_at_mtu_1500_is_told_the_tunnel_mtu,
    without_fastpath_the_kernel_carries_nothing_here,
);

/// `spec` with its routes from `source`.
fn routed(spec: ClusterSpec, source: RouteSource) -> ClusterSpec {
    match source {
        RouteSource::Static => spec,
        RouteSource::Bird => spec.with_bird(),
    }
}

/// The seed cluster, fastpath alone, a daemon on each node (dropped, and so stopped, first).
fn seed_with_fastpath(tag: &str, source: RouteSource) -> (Cluster, Vec<Daemon>) {
    require_root();
    let cluster = Cluster::build(tag, &routed(ClusterSpec::seed_fastpath_only(), source)).unwrap();
    let daemons = start_daemons(&cluster, source);
    (cluster, daemons)
}

/// BIRD's routes go via the other node on eth0, which `--ipip follow` would route plain; Calico
/// in IPIP mode encapsulates them.
fn start_daemons(cluster: &Cluster, source: RouteSource) -> Vec<Daemon> {
    let args: &[&str] = if source == RouteSource::Bird { &["--ipip", "always"] } else { &[] };
    cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, args).unwrap()).collect()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn every_pod_reaches_every_pod_on_three_nodes_through_fastpath_alone(source: RouteSource) {
    require_root();
    let cluster = Cluster::build("all", &routed(ClusterSpec::grid(3, 2), source)).unwrap();
    let daemons = start_daemons(&cluster, source);
    reach::every_pod_reaches_every_pod(&cluster, &daemons, 10 << 20);
}

fn the_underlay_carries_ipip_between_the_node_addresses(source: RouteSource) {
    let (cluster, _daemons) = seed_with_fastpath("cap", source);
    let (from, to) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    assert!(ping(from, to.ip, 1, &[]).unwrap().received);

    let capture = Command::new("ip")
        .args(["netns", "exec", &cluster.nodes[0].ns.name, "timeout", "10", "tcpdump", "-n", "-l", "-c", "2"])
        .args(["-i", "eth0", "ip proto 4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(ping(from, to.ip, 3, &[]).unwrap().received);
    let seen = String::from_utf8_lossy(&capture.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        seen.contains("10.101.14.50 > 10.101.14.51: IP 10.244.40.36 > 10.244.166.150"),
        "no IPIP from node to node on the underlay: {seen:?}"
    );
    assert!(
        seen.contains("10.101.14.51 > 10.101.14.50: IP 10.244.166.150 > 10.244.40.36"),
        "no IPIP back: {seen:?}"
    );
}

/// The programs keep the FIB's answer for each next hop; a neighbour change on the underlay
/// must reach them at once. Node 1 is told node 2's address is at node 3's MAC: its IPIP then
/// goes to node 3, which is not its destination and drops it (FORWARD closed); told the truth
/// again, it reaches node 2.
#[test]
fn a_changed_underlay_neighbour_is_followed_at_once() {
    require_root();
    let cluster = Cluster::build("neigh", &ClusterSpec::grid(3, 1)).unwrap();
    let _daemons = start_daemons(&cluster, RouteSource::Static);
    let (from, to) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    assert!(ping(from, to.ip, 1, &[]).unwrap().received);
    let mac_of = |node: usize| {
        let link: serde_json::Value = serde_json::from_str(
            &cmd::ip(&cluster.nodes[node].ns.name, &["-j", "link", "show", "eth0"]).unwrap(),
        )
        .unwrap();
        link[0]["address"].as_str().unwrap().to_string()
    };
    let node2 = cluster.nodes[1].underlay_ip.to_string();
    let point_at = |mac: &str| {
        cmd::ip(
            &cluster.nodes[0].ns.name,
            &["neigh", "replace", &node2, "lladdr", mac, "dev", "eth0", "nud", "permanent"],
        )
        .unwrap()
    };
    point_at(&mac_of(2));
    assert!(!ping(from, to.ip, 2, &["-W", "1"]).unwrap().received, "node 1 still sends to node 2's MAC");
    point_at(&mac_of(1));
    assert!(ping(from, to.ip, 1, &[]).unwrap().received, "node 1 did not follow the neighbour back");
}

#[test]
fn route_changes_reach_the_map_within_100_ms_and_traffic_follows() {
    let (cluster, daemons) = seed_with_fastpath("rt", RouteSource::Static);
    let (from, to) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    let block = cluster.nodes[1].block;
    let prefix = format!("{}/{}", block.0, block.1);
    let via = cluster.nodes[1].underlay_ip;
    assert!(ping(from, to.ip, 1, &[]).unwrap().received);

    let started = Instant::now();
    cluster.unroute_block(0, block, via).unwrap();
    let removed = wait::until(Duration::from_secs(2), || {
        (!daemons[0].route_prefixes().unwrap().contains(&prefix)).then_some(())
    });
    let removed_after = started.elapsed();
    assert!(removed.is_some(), "{prefix} still in the map 2 s after `ip route del`");
    assert!(!ping(from, to.ip, 1, &[]).unwrap().received, "traffic still flows without the route");

    let started = Instant::now();
    cluster.route_block(0, block, via).unwrap();
    let added = wait::until(Duration::from_secs(2), || {
        daemons[0].route_prefixes().unwrap().contains(&prefix).then_some(())
    });
    let added_after = started.elapsed();
    assert!(added.is_some(), "{prefix} not in the map 2 s after `ip route add`");
    assert!(ping(from, to.ip, 1, &[]).unwrap().received, "traffic does not follow the route back");

    eprintln!("route map latency (ip route → visible in `fastpath routes`): del {removed_after:?}, add {added_after:?}");
    assert!(removed_after <= Duration::from_millis(100), "removal took {removed_after:?}");
    assert!(added_after <= Duration::from_millis(100), "addition took {added_after:?}");
}

fn a_new_pod_is_reachable_from_every_pod_within_two_seconds(source: RouteSource) {
    require_root();
    let mut cluster = Cluster::build("new", &routed(ClusterSpec::grid(2, 1), source)).unwrap();
    let _daemons = start_daemons(&cluster, source);
    let created = Instant::now();
    let new_ip = ip("10.244.11.40");
    cluster.add_pod(1, new_ip).unwrap();
    let new_pod = cluster.pod(new_ip).unwrap();
    for (_, other) in cluster.pods().filter(|(_, p)| p.ip != new_ip) {
        let reached = wait::until(Duration::from_secs(2).saturating_sub(created.elapsed()), || {
            ping(other, new_ip, 1, &["-W", "0.3"]).unwrap().received.then_some(())
        });
        assert!(reached.is_some(), "{} could not reach the new pod within 2 s", other.ip);
        assert!(ping(new_pod, other.ip, 1, &[]).unwrap().received, "the new pod cannot reach {}", other.ip);
    }
    eprintln!("new pod reachable from every pod {:?} after its veth was created", created.elapsed());
}

fn ipip_from_an_unknown_node_and_spoofed_pod_sources_are_dropped_and_counted(source: RouteSource) {
    let (cluster, daemons) = seed_with_fastpath("bad", source);
    let (pod1, pod2) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    assert!(ping(pod1, pod2.ip, 1, &[]).unwrap().received);

    // A host on the underlay that is no node sends IPIP to node 2.
    let rogue = Netns::new(names::unique("rogue")).unwrap();
    cmd::ip(
        &cluster.switch.name,
        &["link", "add", "rogue", "type", "veth", "peer", "name", "eth0", "netns", &rogue.name],
    )
    .unwrap();
    cmd::ip(&cluster.switch.name, &["link", "set", "rogue", "master", "br0", "up"]).unwrap();
    cmd::ip(&rogue.name, &["addr", "add", "10.101.14.60/28", "dev", "eth0"]).unwrap();
    cmd::ip(&rogue.name, &["link", "set", "eth0", "up"]).unwrap();
    let inner = packets::icmp_echo(ip("10.101.14.60"), pod2.ip, 64);
    let ipip = packets::ipv4_packet(ip("10.101.14.60"), cluster.nodes[1].underlay_ip, 64, 4, &inner);
    traffic::send_raw_ipv4(&rogue.name, ipip).unwrap();
    let dropped = wait::until(Duration::from_secs(3), || {
        (daemons[1].counters().unwrap().packets("dropped_unknown_tunnel_peer") > 0).then_some(())
    });
    assert!(dropped.is_some(), "IPIP from 10.101.14.60 was not dropped as from an unknown peer");

    // Pod 1 sends with pod 2's address as its source.
    let spoofed = packets::icmp_echo(pod2.ip, ip("10.244.166.151"), 64);
    traffic::send_raw_ipv4(&pod1.ns.name, spoofed).unwrap();
    let dropped = wait::until(Duration::from_secs(3), || {
        (daemons[0].counters().unwrap().packets("dropped_spoofed_source") > 0).then_some(())
    });
    assert!(dropped.is_some(), "a spoofed source from a pod was not dropped");
}

fn ttl_1_gets_time_exceeded_from_the_pods_own_node(source: RouteSource) {
    let (cluster, daemons) = seed_with_fastpath("ttl", source);
    let (from, to) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    let result = ping(from, to.ip, 1, &["-t", "1"]).unwrap();
    assert!(
        result.output.contains("From 10.101.14.50") && result.output.contains("Time to live exceeded"),
        "{}",
        result.output
    );
    assert!(daemons[0].counters().unwrap().packets("passed_ttl_expiring") > 0);
}

fn a_pod_at_mtu_1500_is_told_the_tunnel_mtu(source: RouteSource) {
    require_root();
    let mut cluster = Cluster::build("mtu", &routed(ClusterSpec::seed_fastpath_only(), source)).unwrap();
    let big = ip("10.244.40.40");
    cluster.add_pod_with_mtu(0, big, 1500).unwrap();
    let daemons = start_daemons(&cluster, source);
    let (from, to) = (cluster.pod(big).unwrap(), &cluster.nodes[1].pods[0]);
    let result = ping(from, to.ip, 1, &["-M", "do", "-s", "1472"]).unwrap();
    assert!(result.output.contains("mtu = 1480"), "{}", result.output);
    assert!(daemons[0].counters().unwrap().packets("icmp_frag_needed_sent") > 0);
    let result = ping(from, to.ip, 1, &["-M", "do", "-s", "1452"]).unwrap();
    assert!(result.received, "{}", result.output);
}

fn without_fastpath_the_kernel_carries_nothing_here(source: RouteSource) {
    require_root();
    // Even with proxy_arp on, the kernel cannot: FORWARD drops (and a static route's tunl0 leads
    // nowhere).
    let spec = routed(ClusterSpec { proxy_arp: true, ..ClusterSpec::grid(2, 2) }, source);
    let cluster = Cluster::build("ctl", &spec).unwrap();
    let pods: Vec<_> = cluster.pods().map(|(_, p)| p).collect();
    for (from, to) in [(pods[0], pods[1]), (pods[0], pods[2])] {
        let result = ping(from, to.ip, 1, &["-W", "1"]).unwrap();
        assert!(!result.received, "the kernel carried {} -> {}: {}", from.ip, to.ip, result.output);
    }
}
