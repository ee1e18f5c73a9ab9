//! The routing suite's central check, shared by every way a cluster gets its routes.

use crate::{
    traffic::{self, ping},
    Cluster, Daemon,
};

/// Every pod pings every other pod with the kernel path's TTL (63 on one node, 62 across: one
/// router hop per node), each pair moves `bytes` over TCP with its contents checked, and every
/// daemon's counters show the programs answered ARP, delivered locally, encapsulated and
/// decapsulated (in VXLAN when the cluster is in VXLAN mode, else IPIP). Panics on the first
/// failure, naming the pair.
pub fn every_pod_reaches_every_pod(cluster: &Cluster, daemons: &[Daemon], bytes: usize) {
    let pods: Vec<_> = cluster.pods().collect();
    for (i, (from_node, from)) in pods.iter().enumerate() {
        for (j, (to_node, to)) in pods.iter().enumerate() {
            if i == j {
                continue;
            }
            let result = ping(from, to.ip, 1, &[]).unwrap();
            assert!(result.received, "{} -> {}: {}", from.ip, to.ip, result.output);
            let expected_ttl = if from_node == to_node { 63 } else { 62 };
            assert_eq!(result.ttl, Some(expected_ttl), "{} -> {}: {}", from.ip, to.ip, result.output);
            if i < j {
                traffic::transfer(from, to, bytes)
                    .unwrap_or_else(|e| panic!("{} -> {}: {e:#}", from.ip, to.ip));
            }
        }
    }
    let tunnel = match cluster.nodes[0].vtep {
        Some(_) => ["encapsulated_vxlan", "decapsulated_vxlan"],
        None => ["encapsulated", "decapsulated"],
    };
    for daemon in daemons {
        let counters = daemon.counters().unwrap();
        for reason in ["redirected_local", "arp_replied"].into_iter().chain(tunnel) {
            assert!(counters.packets(reason) > 0, "{}: {reason} did not move: {counters:?}", daemon.node_ns);
        }
    }
}
