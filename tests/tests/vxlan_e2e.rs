//! End to end in Calico's VXLAN mode, with real kernel VXLAN devices built the way Felix builds
//! them (`fastpath_tests::cluster`: `vxlan.calico`, block routes via the other node's tunnel
//! address, permanent neighbour and FDB entries).
//!
//! - fastpath on every node, FORWARD closed and proxy_arp off: whatever arrives was carried by
//!   the programs, in VXLAN the kernel's own devices would accept;
//! - mixed clusters, fastpath on one node and only the kernel on the other, both ways, under
//!   `--trust routes` (FORWARD closed on the fastpath node) and `--trust kernel` (beside a DNATed
//!   service whose backend is on the kernel-only node, so the NATed reply arrives in VXLAN);
//! - VXLANCrossSubnet: plain to the node in the same subnet, VXLAN to the one across a router.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use fastpath_tests::{
    cluster::{Cluster, ClusterSpec, VXLAN_DEVICE},
    cmd, reach, require_root,
    traffic::{self, ping},
    wait, Counters, Daemon, Pod,
};

const TEN_MB: usize = 10 << 20;
const SERVICE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const BACKEND_PORT: u16 = 8080;
const SERVICE_CONNECTIONS: usize = 20;

/// What the kernel's own `vxlan.calico` on node namespace `ns` carried: (received, sent) packets.
fn kernel_vxlan_packets(ns: &str) -> (u64, u64) {
    let json = cmd::ip(ns, &["-j", "-s", "link", "show", VXLAN_DEVICE]).unwrap();
    let link: serde_json::Value = serde_json::from_str(&json).unwrap();
    let stats = &link[0]["stats64"];
    (stats["rx"]["packets"].as_u64().unwrap(), stats["tx"]["packets"].as_u64().unwrap())
}

fn moved(before: &Counters, after: &Counters, reason: &str) -> u64 {
    after.packets(reason) - before.packets(reason)
}

/// Bytes counted under `reason` between two readings (a GSO packet counts once, with its length).
fn bytes_moved(before: &Counters, after: &Counters, reason: &str) -> u64 {
    let bytes = |c: &Counters| c.0.get(reason).map_or(0, |c| c.bytes);
    bytes(after) - bytes(before)
}

/// Ping both ways with TTL 62 (one hop per node, as the kernel's path) and move 10 MB both ways
/// with the contents checked.
fn both_ways(a: &Pod, b: &Pod) {
    for (from, to) in [(a, b), (b, a)] {
        let result = ping(from, to.ip, 2, &[]).unwrap();
        assert!(result.received, "{} -> {}: {}", from.ip, to.ip, result.output);
        assert_eq!(result.ttl, Some(62), "{} -> {}: {}", from.ip, to.ip, result.output);
        traffic::transfer(from, to, TEN_MB).unwrap_or_else(|e| panic!("{} -> {}: {e:#}", from.ip, to.ip));
    }
}

#[test]
fn three_vxlan_nodes_every_pod_reaches_every_pod_through_fastpath_alone() {
    require_root();
    let cluster = Cluster::build("vx3", &ClusterSpec::grid(3, 2).with_vxlan()).unwrap();
    let daemons: Vec<Daemon> =
        cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, &[]).unwrap()).collect();
    for daemon in &daemons {
        let routes = daemon.cli(&["routes"]).unwrap();
        assert_eq!(routes.lines().filter(|l| l.ends_with(" vxlan")).count(), 2, "{routes}");
    }
    reach::every_pod_reaches_every_pod(&cluster, &daemons, TEN_MB);
    for daemon in &daemons {
        let verify = daemon.cli(&["verify"]).unwrap();
        assert!(verify.contains("no drift"), "{verify}");
    }
}

#[test]
fn the_underlay_carries_vxlan_vni_4096_between_the_node_addresses_and_vteps() {
    require_root();
    let cluster = Cluster::build("vxcap", &ClusterSpec::seed_vxlan_fastpath_only()).unwrap();
    let daemons: Vec<Daemon> =
        cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, &[]).unwrap()).collect();
    let (from, to) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    assert!(ping(from, to.ip, 1, &[]).unwrap().received);
    let seen = traffic::captured_on_eth0(&cluster.nodes[0].ns.name, "udp port 4789", 2, || {
        assert!(ping(from, to.ip, 3, &[]).unwrap().received);
    });
    let (vtep1, vtep2) =
        (cluster.nodes[0].vtep.unwrap().mac_string(), cluster.nodes[1].vtep.unwrap().mac_string());
    for (src, dst, inner_src, inner_dst, inner) in [
        ("10.101.14.50", "10.101.14.51", &vtep1, &vtep2, "10.244.40.36 > 10.244.166.150: ICMP echo request"),
        ("10.101.14.51", "10.101.14.50", &vtep2, &vtep1, "10.244.166.150 > 10.244.40.36: ICMP echo reply"),
    ] {
        let outer = seen
            .lines()
            .position(|l| {
                l.contains(&format!(" {src}."))
                    && l.contains(&format!("> {dst}.4789: VXLAN, flags [I] (0x08), vni 4096"))
            })
            .unwrap_or_else(|| panic!("no VXLAN {src} → {dst} on the underlay: {seen}"));
        let rest = seen.lines().skip(outer).take(2).collect::<Vec<_>>().join(" ");
        assert!(
            rest.contains(&format!("{inner_src} > {inner_dst}, ethertype IPv4")) && rest.contains(inner),
            "inner frame of VXLAN {src} → {dst}: {rest}"
        );
    }
    assert!(daemons[0].counters().unwrap().packets("encapsulated_vxlan") >= 4);
    assert!(daemons[1].counters().unwrap().packets("decapsulated_vxlan") >= 4);
}

#[test]
fn a_fastpath_node_and_a_kernel_only_node_talk_both_ways_in_vxlan() {
    require_root();
    let cluster = Cluster::build("vxmix", &ClusterSpec::seed_vxlan_mixed()).unwrap();
    let node = &cluster.nodes[0];
    // fastpath on the first node only; its FORWARD chain is closed.
    let daemon = Daemon::start(&node.ns.name, &["--trust", "routes"]).unwrap();
    let policy = cmd::in_ns_ok(&node.ns.name, "iptables", &["-S", "FORWARD"]).unwrap();
    assert!(policy.contains("-P FORWARD DROP"), "{policy}");
    let (a, b) = (&node.pods[0], &cluster.nodes[1].pods[0]);
    let before = daemon.counters().unwrap();
    both_ways(a, b);
    let after = daemon.counters().unwrap();
    let (encapsulated, decapsulated) = (
        bytes_moved(&before, &after, "encapsulated_vxlan"),
        bytes_moved(&before, &after, "decapsulated_vxlan"),
    );
    eprintln!(
        "mixed, --trust routes: fastpath node encapsulated {} packets ({encapsulated} bytes), decapsulated {} ({decapsulated} bytes)",
        moved(&before, &after, "encapsulated_vxlan"),
        moved(&before, &after, "decapsulated_vxlan")
    );
    // 10 MB each way, every byte by the programs (the node's FORWARD chain is closed).
    let ten = TEN_MB as u64;
    assert!(encapsulated >= ten && decapsulated >= ten, "{encapsulated} B out, {decapsulated} B in");
    let peers = daemon.cli(&["peers"]).unwrap();
    assert!(
        peers.contains(&format!("(vxlan, VTEP {})", cluster.nodes[1].vtep.unwrap().mac_string())),
        "{peers}"
    );
    assert!(daemon.cli(&["verify"]).unwrap().contains("no drift"));
}

#[test]
fn under_trust_kernel_a_mixed_cluster_fast_paths_a_dnat_service_whose_backend_is_on_the_kernel_only_node() {
    require_root();
    let spec = ClusterSpec { kernel_forwarding: true, ..ClusterSpec::seed_vxlan_mixed() };
    let cluster = Cluster::build("vxtk", &spec).unwrap();
    let node = &cluster.nodes[0];
    let daemon = Daemon::start(&node.ns.name, &["--trust", "kernel"]).unwrap();
    let (a, b) = (&node.pods[0], &cluster.nodes[1].pods[0]);
    // kube-proxy's rule on the client's node: SERVICE:80 is b:8080, on the kernel-only node.
    cluster.expose_service(0, SERVICE, SocketAddr::from((b.ip, BACKEND_PORT))).unwrap();
    let kernel_before = kernel_vxlan_packets(&node.ns.name);
    let before = daemon.counters().unwrap();

    let server = traffic::serve_echo(b, BACKEND_PORT, SERVICE_CONNECTIONS).unwrap();
    for i in 0..SERVICE_CONNECTIONS {
        traffic::echo_round_trip(a, SocketAddr::from((SERVICE, 80)), 1 << 20)
            .unwrap_or_else(|e| panic!("connection {i} through the service failed: {e:#}"));
    }
    assert_eq!(server.join().unwrap().unwrap(), SERVICE_CONNECTIONS);
    both_ways(a, b);

    let after = daemon.counters().unwrap();
    let kernel_after = kernel_vxlan_packets(&node.ns.name);
    let (encapsulated, decapsulated) = (
        bytes_moved(&before, &after, "encapsulated_vxlan"),
        bytes_moved(&before, &after, "decapsulated_vxlan"),
    );
    let (kernel_rx, kernel_tx) = (kernel_after.0 - kernel_before.0, kernel_after.1 - kernel_before.1);
    eprintln!(
        "mixed, --trust kernel: fastpath node encapsulated {encapsulated} bytes, decapsulated {decapsulated}; its kernel's vxlan.calico received {kernel_rx} packets, sent {kernel_tx}"
    );
    // The service's connections (translated by the programs) and the pod-to-pod transfers went
    // by the programs once conntrack approved them, both ways. Each connection's first packets
    // are the kernel's until the daemon has written its entry, a millisecond or more, in which a
    // MiB can go by: on a loaded machine (a CI run) the kernel's share reached 13 %.
    let most = ((SERVICE_CONNECTIONS << 20) + TEN_MB) as u64 * 3 / 4;
    assert!(encapsulated >= most && decapsulated >= most, "{encapsulated} B out, {decapsulated} B in");
    // Flows began in the kernel: its own vxlan.calico carried their first packets both ways,
    // and decapsulated arriving VXLAN for real.
    assert!(kernel_rx > 0 && kernel_tx > 0, "the kernel carried {kernel_rx} in, {kernel_tx} out");
}

#[test]
fn vxlan_cross_subnet_is_plain_to_the_same_subnet_and_vxlan_across_the_router() {
    require_root();
    // The kernel delivers plain traffic arriving from another node: its FORWARD stays open.
    let spec = ClusterSpec { kernel_forwarding: true, ..ClusterSpec::grid(3, 1).vxlan_cross_subnet() };
    let cluster = Cluster::build("vxcs", &spec).unwrap();
    let daemons: Vec<Daemon> =
        cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, &[]).unwrap()).collect();
    let (a, same, across) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0], &cluster.nodes[2].pods[0]);
    assert_eq!(cluster.nodes[2].underlay_ip, Ipv4Addr::new(10, 101, 15, 50));
    let routes = daemons[0].cli(&["routes"]).unwrap();
    assert!(routes.lines().any(|l| l.starts_with("10.244.11.0/26") && l.ends_with(" none")), "{routes}");
    assert!(routes.lines().any(|l| l.starts_with("10.244.12.0/26") && l.ends_with(" vxlan")), "{routes}");

    let before = daemons[0].counters().unwrap();
    let seen = traffic::captured_on_eth0(&cluster.nodes[0].ns.name, "icmp or udp port 4789", 4, || {
        for to in [same, across] {
            let result = ping(a, to.ip, 1, &[]).unwrap();
            assert!(result.received, "{} -> {}: {}", a.ip, to.ip, result.output);
            assert_eq!(result.ttl, Some(62), "{}", result.output);
        }
    });
    for to in [same, across] {
        traffic::transfer(a, to, 1 << 20).unwrap();
        traffic::transfer(to, a, 1 << 20).unwrap();
    }
    let after = daemons[0].counters().unwrap();
    let far = daemons[2].counters().unwrap();
    eprintln!(
        "cross-subnet: node 1 routed {} bytes plain, encapsulated {} and decapsulated {} in VXLAN; node 3 decapsulated {}",
        bytes_moved(&before, &after, "routed_underlay"),
        bytes_moved(&before, &after, "encapsulated_vxlan"),
        bytes_moved(&before, &after, "decapsulated_vxlan"),
        far.0.get("decapsulated_vxlan").map_or(0, |c| c.bytes)
    );
    assert!(
        seen.contains("10.244.10.2 > 10.244.11.2: ICMP echo request") && !seen.contains("10.101.14.51.4789"),
        "plain to the same subnet: {seen}"
    );
    assert!(seen.contains("> 10.101.15.50.4789: VXLAN, flags [I] (0x08), vni 4096"), "VXLAN across: {seen}");
    const MB: u64 = 1 << 20;
    assert!(bytes_moved(&before, &after, "routed_underlay") >= MB, "1 MB plain to the same subnet");
    assert!(bytes_moved(&before, &after, "encapsulated_vxlan") >= MB, "1 MB in VXLAN across the router");
    assert!(bytes_moved(&before, &after, "decapsulated_vxlan") >= MB, "1 MB back in VXLAN");
    assert!(far.0.get("decapsulated_vxlan").map_or(0, |c| c.bytes) >= MB);
}

/// The prefix's row of `fastpath routes` (its kind and encapsulation at the end).
fn route_row(daemon: &Daemon, prefix: &str) -> String {
    let routes = daemon.cli(&["routes"]).unwrap();
    routes
        .lines()
        .find(|l| l.starts_with(prefix))
        .map_or_else(|| format!("no row for {prefix}"), str::to_string)
}

#[test]
fn a_vxlan_route_follows_its_neighbour_and_fdb_entries_live() {
    require_root();
    let cluster = Cluster::build("vxlive", &ClusterSpec::seed_vxlan_fastpath_only()).unwrap();
    let daemon = Daemon::start(&cluster.nodes[0].ns.name, &[]).unwrap();
    let _other = Daemon::start(&cluster.nodes[1].ns.name, &[]).unwrap();
    let (ns, peer) = (&cluster.nodes[0].ns.name, &cluster.nodes[1]);
    let vtep = peer.vtep.unwrap();
    let (mac, tunnel, node) = (vtep.mac_string(), vtep.tunnel_ip.to_string(), peer.underlay_ip.to_string());
    let block = format!("{}/{}", peer.block.0, peer.block.1);
    let (a, b) = (&cluster.nodes[0].pods[0], &peer.pods[0]);
    let is = |kind: &str| {
        wait::until(Duration::from_secs(2), || route_row(&daemon, &block).contains(kind).then_some(()))
            .map(|((), took)| took)
    };
    assert!(is("vxlan").is_some(), "{}", route_row(&daemon, &block));
    assert!(ping(a, b.ip, 1, &[]).unwrap().received);

    // Without its FDB entry the kernel could not send either: the route is the kernel's.
    cmd::in_ns_ok(ns, "bridge", &["fdb", "del", &mac, "dev", VXLAN_DEVICE, "dst", &node, "self"]).unwrap();
    let took = is("kernel").unwrap_or_else(|| panic!("{}", route_row(&daemon, &block)));
    eprintln!("FDB entry deleted: the route is the kernel's {took:?} later");
    assert!(!ping(a, b.ip, 1, &["-W", "1"]).unwrap().received, "FORWARD is closed: the kernel drops it");
    cmd::in_ns_ok(
        ns,
        "bridge",
        &["fdb", "add", &mac, "dev", VXLAN_DEVICE, "dst", &node, "self", "permanent"],
    )
    .unwrap();
    assert!(is("vxlan").is_some(), "{}", route_row(&daemon, &block));
    assert!(ping(a, b.ip, 1, &[]).unwrap().received);

    // The neighbour entry likewise; then a new VTEP MAC for the node, followed.
    cmd::ip(ns, &["neigh", "del", &tunnel, "dev", VXLAN_DEVICE]).unwrap();
    assert!(is("kernel").is_some(), "{}", route_row(&daemon, &block));
    let moved_mac = "66:00:00:00:00:99";
    cmd::ip(ns, &["neigh", "add", &tunnel, "lladdr", moved_mac, "dev", VXLAN_DEVICE, "nud", "permanent"])
        .unwrap();
    assert!(is("kernel").is_some(), "a MAC with no FDB entry: {}", route_row(&daemon, &block));
    cmd::in_ns_ok(
        ns,
        "bridge",
        &["fdb", "add", moved_mac, "dev", VXLAN_DEVICE, "dst", &node, "self", "permanent"],
    )
    .unwrap();
    assert!(is(moved_mac).is_some(), "{}", route_row(&daemon, &block));
    assert!(daemon.cli(&["verify"]).unwrap().contains("no drift"));
}

/// Overwrite `prefix`'s entry in the route map of `daemon` (in its mount namespace) with a VXLAN
/// route to `node` through VTEP `mac`, as a lost event would leave it.
fn write_vxlan_entry(daemon: &Daemon, prefix: (Ipv4Addr, u8), node: Ipv4Addr, mac: [u8; 6]) {
    let mut key: Vec<u8> = u32::from(prefix.1).to_le_bytes().to_vec();
    key.extend(prefix.0.octets());
    let mut value = 2u32.to_le_bytes().to_vec(); // RouteKind::RemoteBlock
    value.extend(0u32.to_le_bytes());
    value.extend(node.octets());
    value.extend(2u32.to_le_bytes()); // ROUTE_F_VXLAN
    value.extend(mac);
    value.extend([0, 0]);
    let (key, value): (Vec<String>, Vec<String>) =
        (key.iter().map(u8::to_string).collect(), value.iter().map(u8::to_string).collect());
    let pid = daemon.pid().to_string();
    let mut args =
        vec!["-t", &pid, "-m", "-n", "bpftool", "map", "update", "pinned", "/sys/fs/bpf/fastpath/FP_ROUTES"];
    args.push("key");
    args.extend(key.iter().map(String::as_str));
    args.push("value");
    args.extend(value.iter().map(String::as_str));
    cmd::run("nsenter", &args).unwrap();
}

#[test]
fn verify_names_a_stale_vtep_and_a_resync_repairs_it() {
    require_root();
    let cluster = Cluster::build("vxver", &ClusterSpec::seed_vxlan_fastpath_only()).unwrap();
    // Node 1 never resyncs, node 2 every second.
    let still = Daemon::start(&cluster.nodes[0].ns.name, &["--resync-interval", "0"]).unwrap();
    let resyncing = Daemon::start(&cluster.nodes[1].ns.name, &["--resync-interval", "1"]).unwrap();
    let (node1, node2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let stale = [0x66, 0, 0, 0, 0, 0x42];

    write_vxlan_entry(&still, node2.block, node2.underlay_ip, stale);
    let pid = still.pid().to_string();
    let bin = fastpath_tests::daemon::fastpath_bin();
    let out = cmd::output("nsenter", &["-t", &pid, "-m", "-n", bin.to_str().unwrap(), "verify"]).unwrap();
    let drift = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{drift}");
    assert_eq!(drift.lines().count(), 1, "only the overwritten entry drifted: {drift}");
    assert!(
        drift.contains(&format!(
            "drift: FP_ROUTES has 10.244.166.128/26 as remote via 10.101.14.51 (vxlan to VTEP 66:00:00:00:00:42), the kernel says remote via 10.101.14.51 (vxlan to VTEP {})",
            node2.vtep.unwrap().mac_string()
        )),
        "{drift}"
    );

    write_vxlan_entry(&resyncing, node1.block, node1.underlay_ip, stale);
    let repaired = wait::until(Duration::from_secs(5), || {
        resyncing.cli(&["verify"]).ok().filter(|v| v.contains("no drift"))
    });
    assert!(repaired.is_some(), "no resync repaired node 2:\n{}", resyncing.log());
    assert!(resyncing.log().contains("resync repaired 1 map entries"), "{}", resyncing.log());
}

#[test]
fn the_monitor_shows_the_pods_inside_vxlan() {
    require_root();
    let cluster = Cluster::build("vxmon", &ClusterSpec::seed_vxlan_fastpath_only()).unwrap();
    let daemons: Vec<Daemon> =
        cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, &[]).unwrap()).collect();
    let (a, b) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    assert!(ping(a, b.ip, 1, &[]).unwrap().received);
    let text = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(700));
            assert!(ping(a, b.ip, 3, &[]).unwrap().received);
        });
        daemons[0]
            .cli(&["monitor", "--filter", "10.244.166.150", "--count", "4", "--duration", "10"])
            .unwrap()
    });
    assert!(
        text.lines()
            .any(|l| l
                .contains("ICMP  10.244.40.36 > 10.244.166.150 echo-request REDIRECT encapsulated_vxlan")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("from_underlay")
            && l.contains("10.244.166.150 > 10.244.40.36 echo-reply REDIRECT decapsulated_vxlan")),
        "{text}"
    );
}
