//! The `calico-node` ruleset (`fastpath_tests::calico_node`, Felix's and kube-proxy's chains with
//! 1000 services) on the seed cluster, the kernel alone carrying the pods' traffic as on a real
//! Calico node: it loads with iptables-nft exactly as rendered, pods reach each other through it
//! both ways with conntrack following, the reverse-path rule drops a pod's spoofed source, and a
//! service IP is DNATed to its backend. The same in dual stack over IPv6, with the ruleset
//! rendered for both families (ip6tables-nft for IPv6). No fastpath daemon runs here.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use fastpath_tests::{
    calico_node::{self, Family, Service, Spec},
    cluster::{Cluster, ClusterSpec},
    packets, require_root,
    traffic::{self, ping, ping6},
    wait, Pod,
};

const SERVICES: usize = 1000;
const A: Ipv4Addr = Ipv4Addr::new(10, 244, 40, 36);
const B: Ipv4Addr = Ipv4Addr::new(10, 244, 40, 37);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 244, 166, 150);
const SERVICE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const BACKEND_PORT: u16 = 8080;
const ECHO_PORT: u16 = 7070;

/// The service every node's ruleset ends with: `SERVICE`:80 → B:8080.
fn web() -> Service {
    Service::new("default/web:http", SERVICE, 80, SocketAddrV4::new(B, BACKEND_PORT))
}

/// The seed cluster on the kernel's own path (proxy_arp on, block routes via the other node on
/// eth0), A and B on the first node, REMOTE on the second; the ruleset on both nodes, with
/// [`web`] after the 1000 generated services, as kube-proxy renders it on every node. For IPv6
/// the cluster is dual stack and every node holds the ruleset of each family, as a dual-stack
/// Calico node does; the IPv6 one is listed second.
fn calico_cluster(tag: &str, family: Family) -> (Cluster, Vec<calico_node::Installed>) {
    require_root();
    let mut spec = ClusterSpec { proxy_arp: true, ..ClusterSpec::seed() }.with_family(family);
    spec.nodes[0].pods = vec![A, B];
    let cluster = Cluster::build(tag, &spec).unwrap();
    let families: &[Family] = if family == Family::Ipv4 { &[Family::Ipv4] } else { &Family::BOTH };
    let mut installed = Vec::new();
    for node in &cluster.nodes {
        for &family in families {
            let spec = Spec::for_node(node, SERVICES).with_service(web()).in_family(family);
            installed.push(calico_node::install_spec(&node.ns.name, &spec).unwrap());
        }
    }
    (cluster, installed)
}

/// Every table of `installed` holds in `ns` what it was rendered with.
fn assert_loaded_as_rendered(ns: &str, installed: &calico_node::Installed) {
    let family = installed.ruleset.family;
    let saved = calico_node::saved_rules(ns, family).unwrap();
    for table in &installed.ruleset.tables {
        let held = saved.iter().find(|(t, _)| t == table.name).map_or(0, |(_, n)| *n);
        assert_eq!(
            held,
            installed.ruleset.rules_in(table.name),
            "{ns} {family:?} {}: rules held",
            table.name
        );
    }
    eprintln!("{ns}: {family:?} {} loaded in {:?}", installed.ruleset.summary(), installed.took);
}

fn node_of(cluster: &Cluster, pod: Ipv4Addr) -> &str {
    &cluster.nodes.iter().find(|n| n.pods.iter().any(|p| p.ip == pod)).unwrap().ns.name
}

/// conntrack's entries in `ns` that mention every one of `words`.
fn tracked(ns: &str, words: &[&str]) -> Vec<String> {
    calico_node::conntrack(ns).unwrap().into_iter().filter(|e| words.iter().all(|w| e.contains(w))).collect()
}

#[test]
fn the_ruleset_loads_as_rendered_and_pods_reach_each_other_through_it_with_conntrack_following() {
    let (cluster, installed) = calico_cluster("cnreach", Family::Ipv4);
    for (node, installed) in cluster.nodes.iter().zip(&installed) {
        assert_loaded_as_rendered(&node.ns.name, installed);
    }

    for (from, to, ttl) in [(A, B, 63), (B, A, 63), (A, REMOTE, 62), (REMOTE, A, 62)] {
        let result = ping(cluster.pod(from).unwrap(), to, 1, &[]).unwrap();
        assert!(result.received, "{from} -> {to}: {}", result.output);
        assert_eq!(result.ttl, Some(ttl), "{from} -> {to}: {}", result.output);
        traffic::transfer(cluster.pod(from).unwrap(), cluster.pod(to).unwrap(), 1 << 20)
            .unwrap_or_else(|e| panic!("{from} -> {to}: {e:#}"));
    }

    // A connection kept open across nodes: both nodes' conntrack hold it, established.
    let server = traffic::serve_echo(cluster.pod(REMOTE).unwrap(), ECHO_PORT, 1).unwrap();
    let mut open =
        traffic::OpenConnection::new(cluster.pod(A).unwrap(), SocketAddr::from((REMOTE, ECHO_PORT))).unwrap();
    open.exchange(64 << 10).unwrap();
    let (tuple, port) = (format!("src={A} dst={REMOTE} "), format!("dport={ECHO_PORT} "));
    for node in &cluster.nodes {
        let entries = tracked(&node.ns.name, &["tcp", "ESTABLISHED", &tuple, &port]);
        assert_eq!(entries.len(), 1, "{}: {:?}", node.ns.name, calico_node::conntrack(&node.ns.name));
    }
    open.exchange(64 << 10).unwrap();
    drop(open);
    assert_eq!(server.join().unwrap().unwrap(), 1);

    // The traffic went through the workload chains: their established rules counted it. Every
    // pod's sends are accepted in its `cali-fw-…` (a terminal ACCEPT, so traffic between pods of
    // one node never reaches the receiver's `cali-tw-…`); what arrives from the other node is
    // accepted in the receiver's `cali-tw-…`.
    let chains = [(A, "fw"), (B, "fw"), (REMOTE, "fw"), (A, "tw"), (REMOTE, "tw")];
    for (pod, direction) in chains {
        let chain = format!("cali-{direction}-{}", cluster.pod(pod).unwrap().host_iface);
        let accepted = calico_node::rule_packets(
            node_of(&cluster, pod),
            Family::Ipv4,
            "filter",
            &chain,
            "RELATED,ESTABLISHED",
        )
        .unwrap();
        assert!(accepted > 10, "{chain} ({pod}) accepted {accepted} established packets");
    }
}

#[test]
fn the_reverse_path_rule_drops_a_spoofed_source_from_a_pod() {
    let (cluster, _installed) = calico_cluster("cnrpf", Family::Ipv4);
    let node = node_of(&cluster, A);
    let a = cluster.pod(A).unwrap();
    assert!(ping(a, REMOTE, 1, &[]).unwrap().received);
    assert_eq!(
        calico_node::rpfilter_drops(node, Family::Ipv4).unwrap(),
        0,
        "A's own address passes the check"
    );

    // A sends as B (a pod behind another interface of the same node) and as an address that
    // lives on the other node.
    const SPOOFED: u64 = 3;
    for _ in 0..SPOOFED {
        traffic::send_raw_ipv4(&a.ns.name, packets::icmp_echo(B, REMOTE, 64)).unwrap();
    }
    traffic::send_raw_ipv4(&a.ns.name, packets::icmp_echo(Ipv4Addr::new(10, 244, 166, 151), B, 64)).unwrap();
    let dropped = wait::until(Duration::from_secs(3), || {
        (calico_node::rpfilter_drops(node, Family::Ipv4).ok()? == SPOOFED + 1).then_some(())
    });
    assert!(
        dropped.is_some(),
        "rpfilter dropped {:?} packets, not {}",
        calico_node::rpfilter_drops(node, Family::Ipv4),
        SPOOFED + 1
    );
    // Dropped in raw, before conntrack: nothing of them is tracked, on either node.
    for ns in cluster.nodes.iter().map(|n| n.ns.name.as_str()) {
        assert!(
            tracked(ns, &["icmp", &format!("src={B} dst={REMOTE} ")]).is_empty(),
            "{ns} tracked the spoof"
        );
    }
    assert!(ping(a, REMOTE, 1, &[]).unwrap().received);
    assert_eq!(
        calico_node::rpfilter_drops(node, Family::Ipv4).unwrap(),
        SPOOFED + 1,
        "a true source is never dropped"
    );
}

#[test]
fn a_service_ip_is_dnated_to_its_backend_from_either_node() {
    let (cluster, _installed) = calico_cluster("cnsvc", Family::Ipv4);
    let server = traffic::serve_echo(cluster.pod(B).unwrap(), BACKEND_PORT, 2).unwrap();
    for client in [A, REMOTE] {
        traffic::echo_round_trip(cluster.pod(client).unwrap(), SocketAddr::from((SERVICE, 80)), 64 << 10)
            .unwrap_or_else(|e| panic!("{client} -> {SERVICE}:80: {e:#}"));
        // The original direction to the service, the reply from the backend.
        let dnated = tracked(
            node_of(&cluster, client),
            &[
                &format!("src={client} dst={SERVICE} "),
                "dport=80 ",
                &format!("src={B} dst={client} sport={BACKEND_PORT} "),
            ],
        );
        assert_eq!(dnated.len(), 1, "{client}: {:?}", calico_node::conntrack(node_of(&cluster, client)));
    }
    assert_eq!(server.join().unwrap().unwrap(), 2);
}

fn ip6(pod: &Pod) -> std::net::Ipv6Addr {
    pod.ip6.expect("a dual-stack pod")
}

/// An IPv6 address as `/proc/net/nf_conntrack` prints it (`%pI6`: eight groups of four digits).
fn ct(addr: impl Into<std::net::IpAddr>) -> String {
    match addr.into() {
        std::net::IpAddr::V6(addr) => addr.segments().map(|s| format!("{s:04x}")).join(":"),
        v4 => v4.to_string(),
    }
}

#[test]
fn the_ipv6_ruleset_loads_as_rendered_and_carries_pods_and_a_service_over_ipv6() {
    let (cluster, installed) = calico_cluster("cnreach6", Family::Ipv6);
    // Per node the IPv4 ruleset, then the IPv6 one: each family's tables hold their own.
    for (i, installed) in installed.iter().enumerate() {
        assert_loaded_as_rendered(&cluster.nodes[i / 2].ns.name, installed);
    }
    assert_eq!(installed[0].ruleset.summary(), installed[1].ruleset.summary(), "the same rules");
    assert_eq!(installed[1].ruleset.family, Family::Ipv6);

    for (from, to, hop_limit) in [(A, B, 63), (B, A, 63), (A, REMOTE, 62), (REMOTE, A, 62)] {
        let (from, to) = (cluster.pod(from).unwrap(), cluster.pod(to).unwrap());
        let result = ping6(from, ip6(to), 1, &[]).unwrap();
        assert!(result.received, "{} -> {}: {}", ip6(from), ip6(to), result.output);
        assert_eq!(result.ttl, Some(hop_limit), "{} -> {}: {}", ip6(from), ip6(to), result.output);
        traffic::transfer6(from, to, 1 << 20)
            .unwrap_or_else(|e| panic!("{} -> {}: {e:#}", ip6(from), ip6(to)));
    }
    // Through the IPv6 workload chains, as IPv4's go through theirs; the reverse-path rule passed
    // every pod's own IPv6 address.
    for (pod, direction) in [(A, "fw"), (REMOTE, "fw"), (A, "tw"), (REMOTE, "tw")] {
        let chain = format!("cali-{direction}-{}", cluster.pod(pod).unwrap().host_iface);
        let accepted = calico_node::rule_packets(
            node_of(&cluster, pod),
            Family::Ipv6,
            "filter",
            &chain,
            "RELATED,ESTABLISHED",
        )
        .unwrap();
        assert!(accepted > 10, "{chain} ({pod}) accepted {accepted} established IPv6 packets");
    }
    for node in &cluster.nodes {
        assert_eq!(calico_node::rpfilter_drops(&node.ns.name, Family::Ipv6).unwrap(), 0, "{}", node.ns.name);
    }

    // The service's IPv6 cluster IP, DNATed to B's IPv6 address by kube-proxy's IPv6 rules.
    let web6 = web().in_family(Family::Ipv6);
    let b = cluster.pod(B).unwrap();
    let server = traffic::serve_echo_at(&b.ns.name, web6.backend, 2).unwrap();
    for client in [A, REMOTE] {
        let pod = cluster.pod(client).unwrap();
        traffic::echo_round_trip(pod, SocketAddr::from((web6.cluster_ip, web6.port)), 64 << 10)
            .unwrap_or_else(|e| panic!("{} -> {}: {e:#}", ip6(pod), web6.cluster_ip));
        let dnated = tracked(
            node_of(&cluster, client),
            &[
                "ipv6",
                &format!("src={} dst={} ", ct(ip6(pod)), ct(web6.cluster_ip)),
                "dport=80 ",
                &format!("src={} dst={} sport={BACKEND_PORT} ", ct(ip6(b)), ct(ip6(pod))),
            ],
        );
        assert_eq!(dnated.len(), 1, "{client}: {:?}", calico_node::conntrack(node_of(&cluster, client)));
    }
    assert_eq!(server.join().unwrap().unwrap(), 2);
}
