//! IPv6 in dual-stack clusters (issue 20).
//!
//! First the kernel alone, the floor fastpath's IPv6 must stand on. Calico's IPv6 layout
//! ([`fastpath_tests::dual_stack`]) carries pod traffic with no fastpath at all:
//!
//! - between two pods of one node, one router hop: hop limit 63;
//! - across nodes on plain IPv6 block routes, and in `vxlan-v6.calico`: two hops, hop limit 62;
//! - the pods find their gateway `fe80::ecee:eeff:feee:eeee` by NDP, answered by the kernel;
//! - with `ip6tables -P FORWARD DROP` nothing crosses.
//!
//! Then fastpath under `--trust routes`, with the kernel's FORWARD chains closed for both
//! families, so that what arrives was carried by the programs: on one node, the pods resolve
//! their gateway by the programs' NDP answer, reach each other with hop limit 63, and move 10 MB
//! each way; `endpoints` and `verify` show the pods' IPv6 addresses, `monitor` their pings (on
//! one node, and inside IPv6 VXLAN across nodes); a pod's packets from an address that is not
//! its own reach nobody.
//!
//! Across a router whose link carries less than the tunnel, IPv6 VXLAN learns the path MTU from
//! the router's "packet too big" and a pod's TCP converges.
//!
//! Every ping is bounded (count and `-W`), every capture by `timeout`.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use fastpath_tests::{
    cluster::{Cluster, ClusterSpec, RemoteVia},
    cmd,
    dual_stack::{RemoteVia6, POD_GATEWAY6, VXLAN6_DEVICE},
    require_root,
    traffic::{self, ping6},
    wait, Daemon, Pod,
};

/// The kernel's own path: forwarding open, proxy_arp on (for IPv4; IPv6's gateway is the host
/// end's own address).
fn kernel_spec(spec: ClusterSpec) -> ClusterSpec {
    ClusterSpec { kernel_forwarding: true, proxy_arp: true, ..spec }.dual_stack()
}

fn ip6(pod: &Pod) -> Ipv6Addr {
    pod.ip6.expect("a dual-stack pod has an IPv6 address")
}

/// `from` pings `to` over IPv6 once; the reply must come with `hop_limit`.
fn assert_reaches(from: &Pod, to: &Pod, hop_limit: u8) {
    let result = ping6(from, ip6(to), 1, &[]).unwrap();
    assert!(result.received, "{} -> {}: {}", ip6(from), ip6(to), result.output);
    assert_eq!(result.ttl, Some(hop_limit), "{} -> {}: {}", ip6(from), ip6(to), result.output);
}

/// What a node's link `device` carried: (received, sent) packets.
fn link_packets(ns: &str, device: &str) -> (u64, u64) {
    let json = cmd::ip(ns, &["-j", "-s", "link", "show", device]).unwrap();
    let link: serde_json::Value = serde_json::from_str(&json).unwrap();
    let stats = &link[0]["stats64"];
    (stats["rx"]["packets"].as_u64().unwrap(), stats["tx"]["packets"].as_u64().unwrap())
}

#[test]
fn two_pods_on_one_node_reach_each_other_with_hop_limit_63() {
    require_root();
    let spec = kernel_spec(ClusterSpec { remote_via: RemoteVia::Underlay, ..ClusterSpec::grid(1, 2) });
    let cluster = Cluster::build("v6local", &spec).unwrap();
    let pods = &cluster.nodes[0].pods;
    assert_reaches(&pods[0], &pods[1], 63);
    assert_reaches(&pods[1], &pods[0], 63);
}

#[test]
fn pods_across_nodes_reach_each_other_on_plain_routes_with_hop_limit_62() {
    require_root();
    let spec = kernel_spec(ClusterSpec::seed());
    assert_eq!(spec.ipv6.map(|l| l.remote_via), Some(RemoteVia6::Underlay));
    let cluster = Cluster::build("v6plain", &spec).unwrap();
    let (a, b) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    // The pods' IPv6 packets cross the underlay unencapsulated, between the pods' addresses.
    let seen = traffic::captured_on_eth0(
        &cluster.nodes[1].ns.name,
        &format!("icmp6 and host {}", ip6(a)),
        2,
        || {
            assert_reaches(a, b, 62);
        },
    );
    assert!(seen.contains(&format!("{} > {}", ip6(a), ip6(b))), "on node 2's eth0: {seen}");
    assert_reaches(b, a, 62);
}

#[test]
fn pods_across_nodes_reach_each_other_in_ipv6_vxlan_with_hop_limit_62() {
    require_root();
    let spec = kernel_spec(ClusterSpec::seed().with_vxlan());
    assert_eq!(spec.ipv6.map(|l| l.remote_via), Some(RemoteVia6::Vxlan));
    assert_eq!(spec.pod_mtu, 1430, "IPv6 VXLAN's pod MTU (1500 - 70)");
    let cluster = Cluster::build("v6vxlan", &spec).unwrap();
    let (a, b) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    let (node1, node2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let before = link_packets(&node1.ns.name, VXLAN6_DEVICE);
    // On the underlay: UDP to port 4789 between the nodes' IPv6 addresses.
    let seen =
        traffic::captured_on_eth0(&node2.ns.name, "ip6 and udp port 4789", 2, || assert_reaches(a, b, 62));
    let (n1, n2) = (node1.ipv6.unwrap().underlay_ip, node2.ipv6.unwrap().underlay_ip);
    assert!(
        seen.contains(&format!("{n1}.")) && seen.contains(&format!("{n2}.4789")),
        "on node 2's eth0: {seen}"
    );
    let after = link_packets(&node1.ns.name, VXLAN6_DEVICE);
    assert!(after.0 > before.0 && after.1 > before.1, "{VXLAN6_DEVICE} on node 1: {before:?} -> {after:?}");
    assert_reaches(b, a, 62);
}

#[test]
fn pods_resolve_their_gateway_by_ndp_answered_by_the_kernel() {
    require_root();
    let spec = kernel_spec(ClusterSpec { remote_via: RemoteVia::Underlay, ..ClusterSpec::grid(1, 2) });
    let cluster = Cluster::build("v6ndp", &spec).unwrap();
    let pods = &cluster.nodes[0].pods;
    assert_reaches(&pods[0], &pods[1], 63);
    for pod in pods {
        // The node found the pod by NDP on its host end (to deliver the ping or its reply).
        let node_side =
            cmd::ip(&cluster.nodes[0].ns.name, &["-6", "neigh", "show", &ip6(pod).to_string()]).unwrap();
        assert!(node_side.contains(&pod.host_iface) && node_side.contains("lladdr"), "{node_side}");
        // A pod that heard the node's solicitation first learnt the gateway from it, without the
        // Router flag (a solicitation has none): forget it, and solicit.
        cmd::ip(&pod.ns.name, &["-6", "neigh", "flush", "dev", "eth0"]).unwrap();
        let gateway = ping6(pod, POD_GATEWAY6.parse().unwrap(), 1, &["-I", "eth0"]).unwrap();
        assert!(gateway.received, "{}: {}", ip6(pod), gateway.output);
        let neigh = cmd::ip(&pod.ns.name, &["-6", "neigh", "show", POD_GATEWAY6, "dev", "eth0"]).unwrap();
        // "fe80::ecee:eeff:feee:eeee lladdr ee:ee:ee:ee:ee:ee router REACHABLE": the kernel's
        // advertisement came from ee:ee:ee:ee:ee:ee with the Router flag.
        assert!(
            neigh.contains("lladdr ee:ee:ee:ee:ee:ee")
                && neigh.contains("router")
                && neigh.contains("REACHABLE"),
            "{}: {neigh}",
            ip6(pod)
        );
    }
}

#[test]
fn with_ip6tables_forward_closed_nothing_crosses() {
    require_root();
    let spec = ClusterSpec {
        kernel_forwarding: false,
        proxy_arp: true,
        remote_via: RemoteVia::Underlay,
        ..ClusterSpec::grid(2, 2)
    }
    .dual_stack();
    let cluster = Cluster::build("v6closed", &spec).unwrap();
    for node in &cluster.nodes {
        let policy = cmd::in_ns_ok(&node.ns.name, "ip6tables", &["-S", "FORWARD"]).unwrap();
        assert!(policy.contains("-P FORWARD DROP"), "{policy}");
    }
    let pods: Vec<_> = cluster.pods().map(|(_, p)| p).collect();
    for from in &pods {
        for to in pods.iter().filter(|to| to.ip != from.ip) {
            let result = ping6(from, ip6(to), 1, &["-W", "1"]).unwrap();
            assert!(!result.received, "the kernel carried {} -> {}: {}", ip6(from), ip6(to), result.output);
        }
    }
    // The gateway itself still answers (NDP and the ping are the node's own, not forwarded).
    let gateway = ping6(pods[0], POD_GATEWAY6.parse().unwrap(), 1, &["-I", "eth0"]).unwrap();
    assert!(gateway.received, "{}", gateway.output);
}

/// One node of `pods` dual-stack pods that only fastpath may carry (FORWARD closed for both
/// families, proxy_arp off), with its daemon under `--trust routes`.
fn fastpath_node(tag: &str, pods: u8) -> (Cluster, Daemon) {
    require_root();
    let spec = ClusterSpec {
        remote_via: RemoteVia::Underlay,
        kernel_forwarding: false,
        ..ClusterSpec::grid(1, pods)
    }
    .dual_stack();
    let cluster = Cluster::build(tag, &spec).unwrap();
    for family in ["iptables", "ip6tables"] {
        let policy = cmd::in_ns_ok(&cluster.nodes[0].ns.name, family, &["-S", "FORWARD"]).unwrap();
        assert!(policy.contains("-P FORWARD DROP"), "{family}: {policy}");
    }
    let daemon = Daemon::start(&cluster.nodes[0].ns.name, &[]).unwrap();
    (cluster, daemon)
}

/// ICMPv6 echo requests a pod's kernel has received (`Icmp6InEchos` in its /proc/net/snmp6).
fn echoes6_received(pod: &Pod) -> u64 {
    let snmp = cmd::in_ns_ok(&pod.ns.name, "cat", &["/proc/net/snmp6"]).unwrap();
    snmp.lines()
        .find_map(|l| l.strip_prefix("Icmp6InEchos"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Icmp6InEchos")
}

/// The rows of `fastpath endpoints --json` for IPv6 addresses: (address, state) pairs.
fn ipv6_endpoints(daemon: &Daemon) -> Vec<(String, Option<String>)> {
    let rows: serde_json::Value =
        serde_json::from_str(&daemon.cli(&["endpoints", "--json"]).unwrap()).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            let prefix = r["prefix"].as_str()?.strip_suffix("/128")?;
            Some((prefix.to_string(), r["mac"].as_str().map(str::to_string)))
        })
        .collect()
}

/// `fastpath monitor --filter FILTER --count COUNT` on `daemon`'s node while `from` pings `to`
/// three times over IPv6: the lines it printed.
fn monitor_ping6(daemon: &Daemon, from: &Pod, to: &Pod, filter: &str, count: &str) -> String {
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // The monitor takes its lease first.
            std::thread::sleep(Duration::from_millis(700));
            assert!(ping6(from, ip6(to), 3, &["-W", "1"]).unwrap().received);
        });
        daemon.cli(&["monitor", "--filter", filter, "--count", count, "--duration", "10"]).unwrap()
    })
}

#[test]
fn fastpath_carries_ipv6_between_pods_of_one_node_with_forward_closed() {
    let (cluster, daemon) = fastpath_node("v6fpone", 2);
    let pods = &cluster.nodes[0].pods;
    // The daemon wrote both pods' IPv6 addresses, with their MACs.
    let listed = ipv6_endpoints(&daemon);
    let mut want: Vec<String> = pods.iter().map(|p| ip6(p).to_string()).collect();
    want.sort();
    assert_eq!(listed.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>(), want, "{listed:?}");
    assert!(listed.iter().all(|(_, mac)| mac.is_some()), "{listed:?}");
    let verify = daemon.cli(&["verify"]).unwrap();
    assert!(!verify.contains("FP_ENDPOINTS6"), "{verify}");
    let (a, b) = (ip6(&pods[0]).to_string(), ip6(&pods[1]).to_string());
    let explain = daemon.cli(&["explain", &a, &b]).unwrap();
    assert!(explain.starts_with(&format!("redirect to pod on {}", pods[1].host_iface)), "{explain}");
    let explain = daemon.cli(&["explain", "--arp", &a, POD_GATEWAY6]).unwrap();
    assert!(
        explain.starts_with("neighbour advertisement: fe80::ecee:eeff:feee:eeee is at ee:ee:ee:ee:ee:ee"),
        "{explain}"
    );

    // The gateway by NDP, answered by the program, then one router hop.
    let before = daemon.counters().unwrap();
    for pod in pods {
        cmd::ip(&pod.ns.name, &["-6", "neigh", "flush", "dev", "eth0"]).unwrap();
    }
    assert_reaches(&pods[0], &pods[1], 63);
    assert_reaches(&pods[1], &pods[0], 63);
    let neigh = cmd::ip(&pods[0].ns.name, &["-6", "neigh", "show", POD_GATEWAY6, "dev", "eth0"]).unwrap();
    assert!(neigh.contains("lladdr ee:ee:ee:ee:ee:ee") && neigh.contains("router"), "{neigh}");

    // `fastpath monitor` shows the pings as it shows IPv4's: each way, from each pod's interface.
    let text = monitor_ping6(&daemon, &pods[0], &pods[1], &a, "4");
    for (iface, line) in [
        (&pods[0].host_iface, format!("ICMP6 {a} > {b} echo-request REDIRECT redirected_local")),
        (&pods[1].host_iface, format!("ICMP6 {b} > {a} echo-reply REDIRECT redirected_local")),
    ] {
        assert!(
            text.lines().any(|l| l.contains(iface.as_str()) && l.contains("from_pod") && l.contains(&line)),
            "{line} on {iface}:\n{text}"
        );
    }

    // 10 MB each way over TCP, contents checked.
    for (from, to) in [(&pods[0], &pods[1]), (&pods[1], &pods[0])] {
        traffic::transfer6(from, to, 10 << 20).unwrap();
    }
    let carried = daemon.counters().unwrap().since(&before);
    assert!(carried.packets("ndp_replied") >= 2, "both pods solicited the gateway: {carried:?}");
    // Both transfers' 20 MiB went through the programs (in GRO aggregates: bytes, not packets,
    // are what to count).
    assert!(carried.bytes("redirected_local") >= 2 * (10 << 20), "{carried:?}");
    assert_eq!(carried.packets("passed_no_route"), 0, "{carried:?}");

    // A pod's /128 route goes: its entry goes with it, and the kernel has no route to it either.
    let host_iface = &pods[1].host_iface;
    let node = &cluster.nodes[0].ns.name;
    let route = format!("{}/128", ip6(&pods[1]));
    cmd::ip(node, &["-6", "route", "del", &route, "dev", host_iface]).unwrap();
    let gone = wait::until(Duration::from_secs(3), || (ipv6_endpoints(&daemon).len() == 1).then_some(()));
    assert!(gone.is_some(), "{:?}\n{}", ipv6_endpoints(&daemon), daemon.log());
    let result = ping6(&pods[0], ip6(&pods[1]), 1, &["-W", "1"]).unwrap();
    assert!(!result.received, "{}", result.output);
    cmd::ip(node, &["-6", "route", "add", &route, "dev", host_iface, "scope", "link"]).unwrap();
    let back = wait::until(Duration::from_secs(3), || (ipv6_endpoints(&daemon).len() == 2).then_some(()));
    assert!(back.is_some(), "{:?}\n{}", ipv6_endpoints(&daemon), daemon.log());
    assert_reaches(&pods[0], &pods[1], 63);
}

#[test]
fn a_pods_ipv6_packets_from_an_address_not_its_own_reach_nobody() {
    let (cluster, daemon) = fastpath_node("v6fpsrc", 3);
    let (a, b, c) = (&cluster.nodes[0].pods[0], &cluster.nodes[0].pods[1], &cluster.nodes[0].pods[2]);
    assert_reaches(a, b, 63);
    // Pod A takes addresses that are not its own onto its eth0, as a hostile pod could: pod C's,
    // an unallocated one of the node's block, and one outside the cluster.
    let unallocated = Ipv6Addr::from(u128::from(ip6(c)) + 40);
    let outside: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let spoofed = [
        (ip6(c), "dropped_spoofed_source"),
        (unallocated, "passed_source_not_pod"),
        (outside, "passed_source_not_pod"),
    ];
    for (addr, _) in &spoofed {
        cmd::ip(&a.ns.name, &["-6", "addr", "add", &format!("{addr}/128"), "dev", "eth0", "nodad"]).unwrap();
    }
    for (addr, reason) in spoofed {
        let (before, echoes) = (daemon.counters().unwrap(), echoes6_received(b));
        let result = ping6(a, ip6(b), 1, &["-W", "1", "-I", &addr.to_string()]).unwrap();
        assert!(!result.received, "from {addr}: {}", result.output);
        assert_eq!(echoes6_received(b), echoes, "from {addr}: pod B received the echo");
        let counted = daemon.counters().unwrap().since(&before);
        assert!(counted.packets(reason) >= 1, "from {addr}: not counted as {reason}: {counted:?}");
        assert_eq!(counted.packets("redirected_local"), 0, "from {addr}: {counted:?}");
    }
    // From its own address it still does.
    assert_reaches(a, b, 63);
}

/// Neither of pods `a` and `b` reaches the other over IPv6.
fn assert_the_kernel_carries_nothing(a: &Pod, b: &Pod) {
    for (from, to) in [(a, b), (b, a)] {
        let result = ping6(from, ip6(to), 1, &["-W", "1"]).unwrap();
        assert!(!result.received, "the kernel carried {} -> {}: {}", ip6(from), ip6(to), result.output);
    }
}

/// `fastpath run --trust routes` on every node of `cluster`.
fn daemons_on_every_node(cluster: &Cluster) -> Vec<Daemon> {
    cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, &[]).unwrap()).collect()
}

#[test]
fn fastpath_carries_ipv6_to_another_nodes_pods_on_plain_routes() {
    require_root();
    let spec = ClusterSpec { kernel_forwarding: false, ..ClusterSpec::seed() }.dual_stack();
    assert_eq!(spec.ipv6.map(|l| l.remote_via), Some(RemoteVia6::Underlay));
    let cluster = Cluster::build("v6fpplain", &spec).unwrap();
    // Both FORWARD chains are closed, but IPv6 arriving from the underlay is let through: plain
    // IPv6 from another node is the kernel's to deliver under --trust routes (nothing tells a
    // node's packet from anyone's), so what the kernel cannot forward is only what pods send.
    for node in &cluster.nodes {
        cmd::in_ns_ok(&node.ns.name, "ip6tables", &["-A", "FORWARD", "-i", "eth0", "-j", "ACCEPT"]).unwrap();
    }
    let (a, b) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    // The floor: the kernel alone carries nothing between them here.
    assert_the_kernel_carries_nothing(a, b);
    let daemons = daemons_on_every_node(&cluster);
    for (node, daemon) in cluster.nodes.iter().zip(&daemons) {
        let ipv6 = node.ipv6.unwrap().underlay_ip;
        assert!(daemon.log().contains(&format!("IPv6 {ipv6}, no {VXLAN6_DEVICE}")), "{}", daemon.log());
    }
    let explain = daemons[0].cli(&["explain", &ip6(a).to_string(), &ip6(b).to_string()]).unwrap();
    let node2 = cluster.nodes[1].ipv6.unwrap().underlay_ip;
    assert!(explain.contains(&node2.to_string()), "{explain}");

    // Out of each node by the programs (hop limit − 1), into the other pod by its kernel (− 1).
    let before: Vec<_> = daemons.iter().map(|d| d.counters().unwrap()).collect();
    assert_reaches(a, b, 62);
    assert_reaches(b, a, 62);
    for (from, to) in [(a, b), (b, a)] {
        traffic::transfer6(from, to, 10 << 20).unwrap();
    }
    for (daemon, before) in daemons.iter().zip(&before) {
        let carried = daemon.counters().unwrap().since(before);
        // Each node sent one transfer's 10 MiB (in GSO aggregates: bytes, not packets).
        assert!(carried.bytes("routed_underlay") >= 10 << 20, "{carried:?}");
        assert_eq!(carried.packets("passed_no_route"), 0, "{carried:?}");
    }

    // An address of this node's block with no pod: the blackhole, as the kernel's route says.
    let unallocated = Ipv6Addr::from(u128::from(ip6(a)) + 1);
    let before = daemons[0].counters().unwrap();
    let result = ping6(a, unallocated, 1, &["-W", "1"]).unwrap();
    assert!(!result.received, "{}", result.output);
    let counted = daemons[0].counters().unwrap().since(&before);
    assert!(counted.packets("dropped_no_endpoint") >= 1, "{counted:?}");

    // The block's route goes on node 1: its entry goes with it, and nothing carries a → b.
    let block = cluster.nodes[1].ipv6.unwrap().block;
    let block = format!("{}/{}", block.0, block.1);
    let node1 = &cluster.nodes[0].ns.name;
    let via = node2.to_string();
    cmd::ip(node1, &["-6", "route", "del", &block, "via", &via, "dev", "eth0"]).unwrap();
    let gone = wait::until(Duration::from_secs(3), || {
        let result = ping6(a, ip6(b), 1, &["-W", "1"]).unwrap();
        (!result.received).then_some(())
    });
    assert!(gone.is_some(), "{}", daemons[0].log());
    cmd::ip(node1, &["-6", "route", "add", &block, "via", &via, "dev", "eth0"]).unwrap();
    let back = wait::until(Duration::from_secs(3), || {
        ping6(a, ip6(b), 1, &["-W", "1"]).unwrap().received.then_some(())
    });
    assert!(back.is_some(), "{}", daemons[0].log());
}

/// Bytes counted under `label` by each of `daemons` since `before`.
fn bytes_since(daemons: &[Daemon], before: &[fastpath_tests::daemon::Counters], label: &str) -> Vec<u64> {
    daemons.iter().zip(before).map(|(d, b)| d.counters().unwrap().since(b).bytes(label)).collect()
}

/// IPv6 VXLAN each of `daemons` sent since `before`, in bytes: encapsulated by the programs, or
/// handed to `vxlan-v6.calico` (a GSO packet with a shorter last segment, whose segments' UDP
/// checksums the device makes).
fn sent_in_vxlan6(daemons: &[Daemon], before: &[fastpath_tests::daemon::Counters]) -> Vec<u64> {
    let encapsulated = bytes_since(daemons, before, "encapsulated_vxlan");
    let by_device = bytes_since(daemons, before, "redirected_vxlan6_device");
    encapsulated.iter().zip(by_device).map(|(e, d)| e + d).collect()
}

/// Each of `daemons` sent at least `bytes` in IPv6 VXLAN and took as many apart.
fn assert_sent_and_taken_apart(daemons: &[Daemon], before: &[fastpath_tests::daemon::Counters], bytes: u64) {
    let (sent, taken_apart) =
        (sent_in_vxlan6(daemons, before), bytes_since(daemons, before, "decapsulated_vxlan"));
    assert!(
        sent.iter().chain(&taken_apart).all(|b| *b >= bytes),
        "sent {sent:?}, taken apart {taken_apart:?}"
    );
}

#[test]
fn fastpath_carries_ipv6_vxlan_between_nodes_with_forward_closed() {
    require_root();
    let spec = ClusterSpec::seed_vxlan_fastpath_only().dual_stack();
    assert_eq!(spec.ipv6.map(|l| l.remote_via), Some(RemoteVia6::Vxlan));
    let cluster = Cluster::build("v6fpvxlan", &spec).unwrap();
    let (a, b) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    // The floor: with FORWARD closed the kernel's vxlan-v6.calico carries nothing between them.
    assert_the_kernel_carries_nothing(a, b);

    let daemons = daemons_on_every_node(&cluster);
    for (node, daemon) in cluster.nodes.iter().zip(&daemons) {
        assert!(daemon.log().contains(&format!("{VXLAN6_DEVICE} VNI 4096 port 4789")), "{}", daemon.log());
        let status = daemon.cli(&["status"]).unwrap();
        let want = format!("ipv6:      node {}, {VXLAN6_DEVICE} (ifindex", node.ipv6.unwrap().underlay_ip);
        assert!(status.contains(&want) && status.contains("port 4789"), "{status}");
        // Its block (the blackhole), the other node's, and its own tunnel address inside its block.
        assert!(status.contains("MTU 1430") && status.contains("FP_ROUTES6 3/65536"), "{status}");
        assert!(status.contains("FP_PEERS6 1/"), "the other node: {status}");
        let verify = daemon.cli(&["verify"]).unwrap();
        assert!(
            !verify.contains("FP_ROUTES6") && !verify.contains("FP_PEERS6") && !verify.contains("FP_NODE6"),
            "{verify}"
        );
    }
    // Node 1's view of node 2: its block in IPv6 VXLAN to its VTEP, and node 2 a peer.
    let (node2, block2) = (cluster.nodes[1].ipv6.unwrap().underlay_ip, cluster.nodes[1].ipv6.unwrap().block);
    let block2 = format!("{}/{}", block2.0, block2.1);
    let vtep2 = cluster.nodes[1].ipv6.unwrap().vtep.unwrap().mac_string();
    let routes = daemons[0].cli(&["routes"]).unwrap();
    let row = routes.lines().find(|l| l.starts_with(&block2)).unwrap_or_else(|| panic!("{routes}"));
    let words: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(words, [block2.as_str(), "remote", "-", &vtep2, &node2.to_string(), "vxlan"], "{routes}");
    let peers = daemons[0].cli(&["peers"]).unwrap();
    assert!(
        peers.contains(&format!("{block2} (vxlan, VTEP {vtep2})")) && peers.contains(&node2.to_string()),
        "{peers}"
    );
    let node1 = &cluster.nodes[0].ns.name;
    let device_before = link_packets(node1, VXLAN6_DEVICE);
    let before: Vec<_> = daemons.iter().map(|d| d.counters().unwrap()).collect();
    // Encapsulated by one node's programs, taken apart by the other's: two hops.
    assert_reaches(a, b, 62);
    assert_reaches(b, a, 62);
    // `fastpath monitor` on node 1, filtered by node 2's block: the pods' pings, the replies
    // inside IPv6 VXLAN as they arrived on the underlay.
    let text = monitor_ping6(&daemons[0], a, b, &block2, "4");
    let (a6, b6) = (ip6(a), ip6(b));
    assert!(
        text.lines().any(|l| l.contains("from_pod")
            && l.contains(&format!("ICMP6 {a6} > {b6} echo-request REDIRECT encapsulated_vxlan"))),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("from_underlay")
            && l.contains(&format!("ICMP6 {b6} > {a6} echo-reply REDIRECT decapsulated_vxlan"))),
        "{text}"
    );
    for (from, to) in [(a, b), (b, a)] {
        traffic::transfer6(from, to, 10 << 20).unwrap();
    }
    // Each node sent one transfer's 10 MiB, and took the other's apart.
    assert_sent_and_taken_apart(&daemons, &before, 10 << 20);
    // The kernel's device took apart none of it (thousands of packets went by): only what the
    // programs handed it to encapsulate went through it.
    let device_after = link_packets(node1, VXLAN6_DEVICE);
    assert!(device_after.0 - device_before.0 < 50, "{VXLAN6_DEVICE}: {device_before:?} -> {device_after:?}");

    // Pod A and its host end at 1500, above the tunnel's 1430: a full-size packet is answered
    // with "packet too big" carrying 1430, and TCP still gets through.
    cmd::ip(&a.ns.name, &["link", "set", "eth0", "mtu", "1500"]).unwrap();
    cmd::ip(node1, &["link", "set", &a.host_iface, "mtu", "1500"]).unwrap();
    let before: Vec<_> = daemons.iter().map(|d| d.counters().unwrap()).collect();
    let result = ping6(a, ip6(b), 1, &["-W", "1", "-M", "do", "-s", "1452"]).unwrap();
    assert!(!result.received && result.output.contains("mtu=1430"), "{}", result.output);
    let counted = daemons[0].counters().unwrap().since(&before[0]);
    assert!(counted.packets("icmp6_packet_too_big_sent") >= 1, "{counted:?}");
    traffic::transfer6(a, b, 1 << 20).unwrap();
    assert!(sent_in_vxlan6(&daemons, &before)[0] >= 1 << 20);
}

#[test]
fn a_mixed_cluster_carries_ipv6_vxlan_both_ways() {
    require_root();
    // Node 1 runs fastpath with FORWARD closed; node 2 only the kernel's vxlan-v6.calico.
    let spec = ClusterSpec::seed_vxlan_mixed().dual_stack();
    let cluster = Cluster::build("v6mixed", &spec).unwrap();
    let (a, b) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    let daemons = [Daemon::start(&cluster.nodes[0].ns.name, &[]).unwrap()];
    let before = [daemons[0].counters().unwrap()];
    assert_reaches(a, b, 62);
    assert_reaches(b, a, 62);
    for (from, to) in [(a, b), (b, a)] {
        traffic::transfer6(from, to, 4 << 20).unwrap();
    }
    // The kernel's device took apart what the programs sent (a real UDP checksum), and the
    // programs what it sent.
    assert_sent_and_taken_apart(&daemons, &before, 4 << 20);
    let node2 = link_packets(&cluster.nodes[1].ns.name, VXLAN6_DEVICE);
    // 4 MiB each way is at least 64 GRO aggregates of 64 KiB each way through its device.
    assert!(node2.0 >= 64 && node2.1 >= 64, "node 2's {VXLAN6_DEVICE}: {node2:?}");
}

/// IPv6 UDP datagrams namespace `ns` received whose checksum did not hold (`Udp6InCsumErrors`).
fn udp6_checksum_errors(ns: &str) -> u64 {
    let snmp6 = cmd::in_ns_ok(ns, "cat", &["/proc/net/snmp6"]).unwrap();
    let row = snmp6.lines().find(|l| l.starts_with("Udp6InCsumErrors")).unwrap_or_else(|| panic!("{snmp6}"));
    row.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `send` from node 1, whose underlay cuts GSO packets and checksums them in software (as a NIC
/// without tunnel offloads would), to node 2, whose kernel checks every segment's UDP checksum
/// (`udp6_csum_init`) before its `vxlan-v6.calico` takes it apart.
fn checked_segment_by_segment<T>(cluster: &Cluster, send: impl FnOnce() -> T) -> T {
    let node2 = &cluster.nodes[1].ns.name;
    let errors = udp6_checksum_errors(node2);
    let sent = send();
    assert_eq!(udp6_checksum_errors(node2), errors, "segments whose UDP checksum did not hold");
    sent
}

/// One UDP aggregate of `total` bytes cut into datagrams of 1000 (`UDP_SEGMENT`), checked segment
/// by segment: the sizes that arrived, their contents as sent.
fn udp_aggregate(cluster: &Cluster, from: &Pod, to: &Pod, total: usize) -> Vec<usize> {
    checked_segment_by_segment(cluster, || traffic::udp_gso_send6(from, to, 1000, total).unwrap())
}

#[test]
fn every_segment_of_a_pods_tcp_and_udp_in_ipv6_vxlan_carries_a_udp_checksum_that_holds() {
    require_root();
    let spec = ClusterSpec::seed_vxlan_mixed().dual_stack();
    let cluster = Cluster::build("v6segs", &spec).unwrap();
    let (a, b) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    let (node1, node2) = (&cluster.nodes[0].ns.name, &cluster.nodes[1].ns.name);
    // Node 1's underlay segments and checksums in software: what leaves it is segments, each
    // with the UDP checksum it will be checked by. Node 2's takes none of that for granted.
    let segment_in_software =
        ["-K", "eth0", "tx-udp_tnl-segmentation", "off", "tx-udp_tnl-csum-segmentation", "off", "tx", "off"];
    cmd::in_ns_ok(node1, "ethtool", &segment_in_software).unwrap();
    cmd::in_ns_ok(node2, "ethtool", &["-K", "eth0", "rx", "off"]).unwrap();
    // The floor: node 1's kernel, its FORWARD open for the while, encapsulating in its own
    // vxlan-v6.calico (SKB_GSO_UDP_TUNNEL_CSUM: a checksum per segment).
    cmd::in_ns_ok(node1, "ip6tables", &["-P", "FORWARD", "ACCEPT"]).unwrap();
    let device_before = link_packets(node1, VXLAN6_DEVICE);
    checked_segment_by_segment(&cluster, || traffic::transfer6(a, b, 4 << 20).unwrap());
    assert_eq!(udp_aggregate(&cluster, a, b, 3000), [1000, 1000, 1000]);
    assert_eq!(udp_aggregate(&cluster, a, b, 2500), [1000, 1000, 500]);
    let device_after = link_packets(node1, VXLAN6_DEVICE);
    assert!(device_after.1 - device_before.1 >= 64, "the kernel's device sent it");
    cmd::in_ns_ok(node1, "ip6tables", &["-P", "FORWARD", "DROP"]).unwrap();

    let daemons = [Daemon::start(node1, &[]).unwrap()];
    let before = [daemons[0].counters().unwrap()];
    checked_segment_by_segment(&cluster, || traffic::transfer6(a, b, 4 << 20).unwrap());
    let counted = daemons[0].counters().unwrap().since(&before[0]);
    let (packets, bytes) = (counted.packets("encapsulated_vxlan"), counted.bytes("encapsulated_vxlan"));
    let by_device = counted.bytes("redirected_vxlan6_device");
    // The programs encapsulated nearly all of the transfer, GSO aggregates among it: more bytes
    // than 1430 a packet on average, where one segment is at most 1430. The device got only
    // the aggregates with a shorter last segment.
    assert!(bytes + by_device >= 4 << 20 && bytes >= 3 << 20, "{counted:?}");
    assert!(bytes / packets.max(1) > 1430, "{counted:?}");
    // A UDP aggregate of equal datagrams: encapsulated by the programs whole, the device given
    // nothing; one whose last datagram is shorter: the device's.
    let before = [daemons[0].counters().unwrap()];
    assert_eq!(udp_aggregate(&cluster, a, b, 3000), [1000, 1000, 1000]);
    let counted = daemons[0].counters().unwrap().since(&before[0]);
    assert!(counted.bytes("encapsulated_vxlan") >= 3000, "{counted:?}");
    assert_eq!(counted.packets("redirected_vxlan6_device"), 0, "{counted:?}");
    let before = [daemons[0].counters().unwrap()];
    assert_eq!(udp_aggregate(&cluster, a, b, 2500), [1000, 1000, 500]);
    let counted = daemons[0].counters().unwrap().since(&before[0]);
    assert!(counted.bytes("redirected_vxlan6_device") >= 2500, "{counted:?}");
}

#[test]
fn a_mixed_cluster_carries_ipv6_vxlan_both_ways_under_trust_kernel() {
    require_root();
    // Node 1 runs fastpath under --trust kernel, its FORWARD chains open for the kernel to carry
    // each flow's first packets, with Calico's first rule for IPv6 (with it, conntrack tracks);
    // node 2 only the kernel's vxlan-v6.calico.
    let spec = ClusterSpec { kernel_forwarding: true, ..ClusterSpec::seed_vxlan_mixed() }.dual_stack();
    let cluster = Cluster::build("v6mixedk", &spec).unwrap();
    let (a, b) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    let node1 = &cluster.nodes[0].ns.name;
    let established =
        ["-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"];
    cmd::in_ns_ok(node1, "ip6tables", &established).unwrap();
    let daemons = [Daemon::start(node1, &["--trust", "kernel"]).unwrap()];
    let before = [daemons[0].counters().unwrap()];
    let device_before = link_packets(node1, VXLAN6_DEVICE);
    assert_reaches(a, b, 62);
    assert_reaches(b, a, 62);
    for (from, to) in [(a, b), (b, a)] {
        traffic::transfer6(from, to, 4 << 20).unwrap();
    }
    // The kernel carried each flow until conntrack confirmed it, the programs the rest: nearly
    // all of each transfer, in both directions.
    let counted = daemons[0].counters().unwrap().since(&before[0]);
    assert!(counted.packets("passed_flow_pending") >= 1, "{counted:?}");
    assert_sent_and_taken_apart(&daemons, &before, 3 << 20);
    let device_after = link_packets(node1, VXLAN6_DEVICE);
    assert!(
        device_after.0 - device_before.0 < 200 && device_after.1 - device_before.1 < 200,
        "{VXLAN6_DEVICE} on node 1 carried the flows: {device_before:?} -> {device_after:?}"
    );
    // `flows` lists the IPv6 directions it carried, from the pod and from node 2's tunnel (the
    // transfers' connections closing now: their FINs went to the kernel).
    let flows: serde_json::Value =
        serde_json::from_str(&daemons[0].cli(&["flows", "--json"]).unwrap()).unwrap();
    let carried = |src: Ipv6Addr, arrives: &str| {
        flows.as_array().unwrap().iter().any(|f| {
            f["src"] == src.to_string()
                && f["protocol"] == "tcp"
                && f["arrives"].as_str().unwrap().starts_with(arrives)
                && f["fast_packets"].as_u64().unwrap() >= 50
        })
    };
    assert!(carried(ip6(a), "from a pod") && carried(ip6(b), "in VXLAN from"), "{flows:#}");
}

#[test]
fn an_ipv6_address_the_underlay_gains_after_start_readies_the_node_at_once() {
    require_root();
    let spec = ClusterSpec::seed_vxlan_fastpath_only().dual_stack();
    let cluster = Cluster::build("v6late", &spec).unwrap();
    let (a, b) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    let node1 = &cluster.nodes[0].ns.name;
    let address = format!(
        "{}/{}",
        cluster.nodes[0].ipv6.unwrap().underlay_ip,
        spec.ipv6.unwrap().underlay_prefix_len()
    );
    // Node 1 starts with no IPv6 address on its underlay: IPv6 between nodes is the kernel's
    // (whose FORWARD is closed), and its vxlan-v6.calico, whose local address it is, unusable.
    cmd::ip(node1, &["-6", "addr", "del", &address, "dev", "eth0"]).unwrap();
    let daemons = daemons_on_every_node(&cluster);
    let status = daemons[0].cli(&["status"]).unwrap();
    assert!(status.contains("ipv6:      no IPv6 address on the underlay"), "{status}");
    assert!(!ping6(a, ip6(b), 1, &["-W", "1"]).unwrap().received);
    // The address comes back, through duplicate address detection as an operator's would: the
    // node is ready when detection ends, not at the next resync a minute later.
    cmd::ip(node1, &["-6", "addr", "add", &address, "dev", "eth0"]).unwrap();
    let ready = wait::until(Duration::from_secs(5), || {
        daemons[0].cli(&["status"]).ok()?.contains(&format!("{VXLAN6_DEVICE} (ifindex")).then_some(())
    });
    assert!(ready.is_some(), "{}", daemons[0].log());
    let before = daemons[0].counters().unwrap();
    assert_reaches(a, b, 62);
    assert!(daemons[0].counters().unwrap().since(&before).packets("encapsulated_vxlan") >= 1);
}

/// A router with a narrower link between two subnets of nodes, in IPv6 VXLAN (IPv4's
/// `parity_e2e.rs` ipip_learns_the_path_mtu_from_a_router_and_tcp_converges, for the other
/// family): the second node sits across the switch namespace's router, whose link toward it
/// carries 1400 bytes. A pod's full-size packets (1430, 1500 outside) die at the router, whose
/// ICMPv6 "packet too big" teaches node 1's programs the path; from then on the pod is told 1330
/// (the path's 1400 less IPv6 VXLAN's 70), and its TCP converges.
#[test]
fn ipv6_vxlan_learns_the_path_mtu_from_a_router_and_tcp_converges() {
    require_root();
    let mut spec = ClusterSpec::seed_vxlan_fastpath_only().dual_stack();
    spec.nodes[1].underlay_ip = Ipv4Addr::new(10, 101, 15, 50);
    let cluster = Cluster::build("v6pmtu", &spec).unwrap();
    // The second subnet's bridge is br1; the switch namespace routes to it.
    cmd::ip(&cluster.switch.name, &["link", "set", "br1", "mtu", "1400"]).unwrap();
    let (a, b) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    let node2 = cluster.nodes[1].ipv6.unwrap().underlay_ip;

    let daemons = daemons_on_every_node(&cluster);
    let before = daemons[0].counters().unwrap();
    let started = std::time::Instant::now();
    traffic::transfer6(a, b, 10 << 20).unwrap();
    let counted = daemons[0].counters().unwrap().since(&before);
    println!(
        "10 MB across the narrow router in IPv6 VXLAN in {:?}: path MTU learned {} times, {} packet too big to the pod",
        started.elapsed(),
        counted.packets("path_mtu_learned"),
        counted.packets("icmp6_packet_too_big_sent")
    );
    assert!(counted.packets("path_mtu_learned") >= 1, "{counted:?}");
    assert!(counted.packets("icmp6_packet_too_big_sent") >= 1, "{counted:?}");
    assert!(sent_in_vxlan6(&daemons, &[before])[0] >= 10 << 20, "carried by the fast path");
    // The pod's own cache holds what the programs said; forgotten, the programs say it again: the
    // path's MTU less 70.
    let cached = ping6(a, ip6(b), 1, &["-W", "1", "-M", "do", "-s", "1382"]).unwrap();
    assert!(!cached.received && cached.output.contains("mtu: 1330"), "{}", cached.output);
    cmd::ip(&a.ns.name, &["-6", "route", "flush", "cache"]).unwrap();
    let before = daemons[0].counters().unwrap();
    let result = ping6(a, ip6(b), 1, &["-W", "1", "-M", "do", "-s", "1382"]).unwrap();
    assert!(!result.received && result.output.contains("mtu=1330"), "{}", result.output);
    let counted = daemons[0].counters().unwrap().since(&before);
    assert_eq!(counted.packets("icmp6_packet_too_big_sent"), 1, "{counted:?}");
    let status = daemons[0].cli(&["status"]).unwrap();
    assert!(status.contains(&format!("to {node2} 1400")), "{status}");
}
