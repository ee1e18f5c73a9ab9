//! The `calico-node` ruleset (`fastpath_tests::calico_node`, Felix's and kube-proxy's chains with
//! 1000 services) on the seed cluster, the kernel alone carrying the pods' traffic as on a real
//! Calico node: it loads with iptables-nft exactly as rendered, pods reach each other through it
//! both ways with conntrack following, the reverse-path rule drops a pod's spoofed source, and a
//! service IP is DNATed to its backend. No fastpath daemon runs here.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use fastpath_tests::{
    calico_node::{self, Service, Spec},
    cluster::{Cluster, ClusterSpec},
    packets, require_root,
    traffic::{self, ping},
    wait,
};

const SERVICES: usize = 1000;
const A: Ipv4Addr = Ipv4Addr::new(10, 244, 40, 36);
const B: Ipv4Addr = Ipv4Addr::new(10, 244, 40, 37);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 244, 166, 150);
const SERVICE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const BACKEND_PORT: u16 = 8080;
const ECHO_PORT: u16 = 7070;

/// The seed cluster on the kernel's own path (proxy_arp on, block routes via the other node on
/// eth0), A and B on the first node, REMOTE on the second; the ruleset on both nodes, with
/// `SERVICE`:80 → B:8080 after the 1000 generated services, as kube-proxy renders it on every
/// node.
fn calico_cluster(tag: &str) -> (Cluster, Vec<calico_node::Installed>) {
    require_root();
    let mut spec = ClusterSpec { proxy_arp: true, ..ClusterSpec::seed() };
    spec.nodes[0].pods = vec![A, B];
    let cluster = Cluster::build(tag, &spec).unwrap();
    let service = Service::new("default/web:http", SERVICE, 80, SocketAddrV4::new(B, BACKEND_PORT));
    let installed = cluster
        .nodes
        .iter()
        .map(|node| {
            calico_node::install_spec(
                &node.ns.name,
                &Spec::for_node(node, SERVICES).with_service(service.clone()),
            )
            .unwrap()
        })
        .collect();
    (cluster, installed)
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
    let (cluster, installed) = calico_cluster("cnreach");
    for (node, installed) in cluster.nodes.iter().zip(&installed) {
        let saved = calico_node::saved_rules(&node.ns.name).unwrap();
        for table in &installed.ruleset.tables {
            let held = saved.iter().find(|(t, _)| t == table.name).map_or(0, |(_, n)| *n);
            assert_eq!(
                held,
                installed.ruleset.rules_in(table.name),
                "{} {}: rules held",
                node.ns.name,
                table.name
            );
        }
        eprintln!("{}: {} loaded in {:?}", node.ns.name, installed.ruleset.summary(), installed.took);
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
        let accepted =
            calico_node::rule_packets(node_of(&cluster, pod), "filter", &chain, "RELATED,ESTABLISHED")
                .unwrap();
        assert!(accepted > 10, "{chain} ({pod}) accepted {accepted} established packets");
    }
}

#[test]
fn the_reverse_path_rule_drops_a_spoofed_source_from_a_pod() {
    let (cluster, _installed) = calico_cluster("cnrpf");
    let node = node_of(&cluster, A);
    let a = cluster.pod(A).unwrap();
    assert!(ping(a, REMOTE, 1, &[]).unwrap().received);
    assert_eq!(calico_node::rpfilter_drops(node).unwrap(), 0, "A's own address passes the check");

    // A sends as B (a pod behind another interface of the same node) and as an address that
    // lives on the other node.
    const SPOOFED: u64 = 3;
    for _ in 0..SPOOFED {
        traffic::send_raw_ipv4(&a.ns.name, packets::icmp_echo(B, REMOTE, 64)).unwrap();
    }
    traffic::send_raw_ipv4(&a.ns.name, packets::icmp_echo(Ipv4Addr::new(10, 244, 166, 151), B, 64)).unwrap();
    let dropped = wait::until(Duration::from_secs(3), || {
        (calico_node::rpfilter_drops(node).ok()? == SPOOFED + 1).then_some(())
    });
    assert!(
        dropped.is_some(),
        "rpfilter dropped {:?} packets, not {}",
        calico_node::rpfilter_drops(node),
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
    assert_eq!(calico_node::rpfilter_drops(node).unwrap(), SPOOFED + 1, "a true source is never dropped");
}

#[test]
fn a_service_ip_is_dnated_to_its_backend_from_either_node() {
    let (cluster, _installed) = calico_cluster("cnsvc");
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
