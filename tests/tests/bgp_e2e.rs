//! End to end with the routes coming only from BGP: BIRD 2 in every node namespace, configured as
//! Calico's BIRD (iBGP full mesh over the underlay, each node exporting its own block from its
//! `blackhole` route, remote blocks in the kernel as `proto bird` routes via the owning node).
//! The routing suite runs over such clusters too (`routing_e2e.rs`, `bird_routes::…`); here, what
//! only BGP does: a node's block withdrawn and restored.
//! proxy_arp is off and FORWARD drops on every node, and the daemons encapsulate (`--ipip
//! always`): the kernel could carry nothing, so what arrives was carried by fastpath, along routes
//! only BIRD wrote.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use fastpath_tests::{cmd, require_root, traffic::ping, wait, Cluster, ClusterSpec, Daemon};

fn bird_cluster(tag: &str, nodes: u8, pods: u8) -> (Cluster, Vec<Daemon>) {
    require_root();
    let cluster = Cluster::build(tag, &ClusterSpec::grid(nodes, pods).with_bird()).unwrap();
    let daemons =
        cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, &["--ipip", "always"]).unwrap()).collect();
    (cluster, daemons)
}

fn block_text(block: (Ipv4Addr, u8)) -> String {
    format!("{}/{}", block.0, block.1)
}

fn assert_no_drift(daemons: &[Daemon]) {
    for daemon in daemons {
        let out = daemon.cli(&["verify"]).unwrap();
        assert!(out.contains("no drift"), "{}: {out}", daemon.node_ns);
    }
}

#[test]
fn stopping_bird_withdraws_the_block_and_starting_it_again_restores_the_path() {
    let (mut cluster, daemons) = bird_cluster("wdr", 3, 1);
    // BIRD wrote every node's block routes, as Calico's does.
    for (i, node) in cluster.nodes.iter().enumerate() {
        let routes = cluster.bird_routes(i).unwrap();
        assert!(
            routes.iter().any(|r| r.starts_with(&format!("blackhole {}", block_text(node.block)))),
            "{routes:?}"
        );
        for peer in cluster.nodes.iter().filter(|p| p.underlay_ip != node.underlay_ip) {
            let learned = format!("{} via {} dev eth0", block_text(peer.block), peer.underlay_ip);
            assert!(routes.iter().any(|r| r.starts_with(&learned)), "node {i} lacks {learned}: {routes:?}");
            assert!(daemons[i].route_prefixes().unwrap().contains(&block_text(peer.block)));
        }
    }
    let (from, to) = (cluster.nodes[0].pods[0].ip, cluster.nodes[2].pods[0].ip);
    let gone = block_text(cluster.nodes[2].block);
    assert!(ping(cluster.pod(from).unwrap(), to, 1, &[]).unwrap().received);

    // The whole pod pool is unreachable unless a block route says otherwise, so a withdrawn
    // block is answered, not sent toward the default route.
    cmd::ip(&cluster.nodes[0].ns.name, &["route", "add", "unreachable", "10.244.0.0/16"]).unwrap();
    cluster.stop_bird(2).unwrap();
    // On the first node: when the kernel lost the route, and when the map did.
    let in_kernel = |c: &Cluster| c.bird_routes(0).unwrap().iter().any(|r| r.starts_with(&gone));
    let (mut kernel_at, mut map_at) = (None, None);
    let started = Instant::now();
    wait::until(Duration::from_secs(10), || {
        if kernel_at.is_none() && !in_kernel(&cluster) {
            kernel_at = Some(started.elapsed());
        }
        if map_at.is_none() && !daemons[0].route_prefixes().unwrap().contains(&gone) {
            map_at = Some(started.elapsed());
        }
        (kernel_at.is_some() && map_at.is_some()).then_some(())
    })
    .unwrap_or_else(|| panic!("{gone} not withdrawn within 10 s: kernel {kernel_at:?}, map {map_at:?}"));
    let (kernel_at, map_at) = (kernel_at.unwrap(), map_at.unwrap());
    eprintln!("withdrawal of {gone}: kernel after {kernel_at:?}, fastpath's map after {map_at:?}");
    assert!(
        map_at <= kernel_at + Duration::from_secs(1),
        "the map lagged the kernel: {kernel_at:?} → {map_at:?}"
    );
    // Everywhere: the other remaining node lost it too, kernel and map.
    let elsewhere = wait::until(Duration::from_secs(2), || {
        let kernel = cluster.bird_routes(1).unwrap().iter().any(|r| r.starts_with(&gone));
        (!kernel && !daemons[1].route_prefixes().unwrap().contains(&gone)).then_some(())
    });
    assert!(elsewhere.is_some(), "node 2 still routes {gone}");

    // Packets to the withdrawn block go to the kernel, which answers "unreachable", not into a
    // tunnel to a node that no longer has the block.
    let before = daemons[0].counters().unwrap();
    let result = ping(cluster.pod(from).unwrap(), to, 1, &["-W", "1"]).unwrap();
    assert!(!result.received);
    assert!(
        result.output.contains("From 10.101.14.50 icmp_seq=1 Destination Host Unreachable"),
        "{}",
        result.output
    );
    let after = daemons[0].counters().unwrap();
    assert!(after.packets("passed_no_route") > before.packets("passed_no_route"), "{after:?}");
    assert_eq!(after.packets("encapsulated"), before.packets("encapsulated"), "still tunnelled");
    let explained = daemons[0].cli(&["explain", &from.to_string(), &to.to_string()]).unwrap();
    assert!(explained.starts_with("kernel: no fastpath route"), "{explained}");

    cluster.start_bird(2).unwrap();
    for i in 0..3 {
        cluster.wait_bird_routes(i, 3, Duration::from_secs(15)).unwrap();
    }
    let back = wait::until(Duration::from_secs(5), || {
        ping(cluster.pod(from).unwrap(), to, 1, &["-W", "0.5"]).unwrap().received.then_some(())
    });
    assert!(back.is_some(), "the path did not come back with BIRD");
    assert!(daemons[0].route_prefixes().unwrap().contains(&gone));
    assert_no_drift(&daemons);
}
