//! End to end under `--trust kernel` (the default): fastpath beside iptables policy. The cluster
//! is the seed's, Calico-shaped with direct routing (block routes via the other node on eth0), so
//! the kernel can carry every packet itself; fastpath must carry only what the kernel's conntrack
//! confirmed, and nothing a rule forbids. (Services and NAT under conntrack's judgement:
//! `conntrack_e2e.rs`.)

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use fastpath_tests::{
    cluster::{Cluster, ClusterSpec},
    cmd, require_root,
    traffic::{self, ping},
    Counters, Daemon,
};

const SERVICE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const BACKEND_PORT: u16 = 8080;
const MESSAGE: usize = 1 << 20;
const FASTPATH_EXCHANGE: usize = 64 << 10;

const A: Ipv4Addr = Ipv4Addr::new(10, 244, 40, 36);
const B: Ipv4Addr = Ipv4Addr::new(10, 244, 40, 37);
const C: Ipv4Addr = Ipv4Addr::new(10, 244, 40, 38);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 244, 166, 150);

/// The seed cluster with pods A, B and C on the first node and REMOTE on the second, Calico's
/// first FORWARD rule on both nodes (with it, conntrack tracks there), a daemon on each node with
/// `args` (dropped, and so stopped, first).
fn cluster(tag: &str, args: &[&str]) -> (Cluster, Vec<Daemon>) {
    let cluster = bare_cluster(tag);
    cluster.accept_established().unwrap();
    let daemons = cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, args).unwrap()).collect();
    (cluster, daemons)
}

/// The cluster without any rule: nothing asks conntrack to track.
fn bare_cluster(tag: &str) -> Cluster {
    require_root();
    let mut spec = ClusterSpec::seed();
    spec.nodes[0].pods = vec![A, B, C];
    Cluster::build(tag, &spec).unwrap()
}

#[test]
fn where_conntrack_tracks_nothing_no_flow_is_approved_and_the_daemon_says_why() {
    let cluster = bare_cluster("untr");
    let daemons: Vec<Daemon> =
        cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, &["--trust", "kernel"]).unwrap()).collect();
    let before = daemons[0].counters().unwrap();
    traffic::transfer(cluster.pod(A).unwrap(), cluster.pod(REMOTE).unwrap(), 200 << 20).unwrap();
    let said = fastpath_tests::wait::until(Duration::from_secs(5), || {
        daemons[0]
            .log()
            .contains("the kernel's conntrack holds no entry in this network namespace")
            .then_some(())
    });
    let after = daemons[0].counters().unwrap();
    let pending = after.packets("passed_flow_pending") - before.packets("passed_flow_pending");
    assert!(said.is_some(), "{pending} pending: {}", daemons[0].log());
    assert_eq!(after.packets("routed_underlay"), before.packets("routed_underlay"), "nothing approved");
    assert!(after.packets("passed_flow_pending") > before.packets("passed_flow_pending"));
}

fn flows(daemon: &Daemon) -> Vec<serde_json::Value> {
    let json = daemon.cli(&["flows", "--json"]).unwrap();
    serde_json::from_str::<serde_json::Value>(&json).unwrap().as_array().unwrap().clone()
}

/// The flow directions from `src` to `dst`:`dport` in `daemon`'s table.
fn flows_to(daemon: &Daemon, src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> Vec<serde_json::Value> {
    flows(daemon)
        .into_iter()
        .filter(|f| f["src"] == src.to_string() && f["dst"] == dst.to_string() && f["dport"] == dport)
        .collect()
}

/// The control: under `--trust routes` the backend's reply is short-circuited into the client
/// without the kernel's reverse NAT, so the connection cannot be made. This is what `--trust
/// kernel` exists to prevent (`conntrack_e2e.rs` carries the same service under it).
#[test]
fn under_trust_routes_the_same_service_breaks() {
    let (cluster, _daemons) = cluster("svcx", &["--trust", "routes"]);
    cluster.expose_service(0, SERVICE, SocketAddr::from((B, BACKEND_PORT))).unwrap();
    let _server = traffic::serve_echo(cluster.pod(B).unwrap(), BACKEND_PORT, 1).unwrap();
    let connected =
        traffic::connects(cluster.pod(A).unwrap(), SocketAddr::from((SERVICE, 80)), Duration::from_secs(2))
            .unwrap();
    assert!(!connected, "the reply bypassed the reverse NAT, yet the connection was made");
}

fn forward_drop(cluster: &Cluster, from: Ipv4Addr, to: Ipv4Addr) {
    let (from, to) = (from.to_string(), to.to_string());
    cmd::in_ns_ok(
        &cluster.nodes[0].ns.name,
        "iptables",
        &["-A", "FORWARD", "-s", &from, "-d", &to, "-j", "DROP"],
    )
    .unwrap();
}

#[test]
fn a_forward_drop_rule_holds_before_and_after_other_flows_are_fast_pathed() {
    let (cluster, daemons) = cluster("pol", &["--trust", "kernel"]);
    let (a, c) = (cluster.pod(A).unwrap(), cluster.pod(C).unwrap());
    let (remote, node) = (cluster.pod(REMOTE).unwrap(), &daemons[0]);
    forward_drop(&cluster, A, C);
    let _c_server = traffic::serve_echo(c, BACKEND_PORT, 1).unwrap();
    let to_c = SocketAddr::from((C, BACKEND_PORT));
    assert!(!ping(a, C, 2, &[]).unwrap().received, "the policy drops A → C");
    assert!(!traffic::connects(a, to_c, Duration::from_secs(2)).unwrap(), "the policy drops A → C");

    // A ↔ REMOTE is allowed: the kernel forwards its first packets, fastpath the rest.
    let server = traffic::serve_echo(remote, BACKEND_PORT, 2).unwrap();
    let to_remote = SocketAddr::from((REMOTE, BACKEND_PORT));
    traffic::echo_round_trip(a, to_remote, MESSAGE).unwrap();
    let mut open = traffic::OpenConnection::new(a, to_remote).unwrap();
    open.exchange(FASTPATH_EXCHANGE).unwrap();
    let approved = flows_to(node, A, REMOTE, BACKEND_PORT);
    assert!(
        approved.iter().any(|f| f["state"] == "approved" && f["fast_packets"].as_u64().unwrap() > 0),
        "{approved:?}"
    );

    assert!(!ping(a, C, 2, &[]).unwrap().received, "approving A ↔ REMOTE must not open A → C");
    assert!(!traffic::connects(a, to_c, Duration::from_secs(2)).unwrap(), "A → C after approvals");
    let to_c_flows = flows_to(node, A, C, BACKEND_PORT);
    assert!(to_c_flows.is_empty(), "conntrack confirmed nothing of A → C: {to_c_flows:?}");

    // The open, approved connection to REMOTE; then the policy closes A → REMOTE.
    forward_drop(&cluster, A, REMOTE);
    assert!(
        !traffic::connects(a, to_remote, Duration::from_secs(2)).unwrap(),
        "a new connection after the drop rule must fail at once"
    );
    // conntrack's ESTABLISHED semantics: the approved connection carries on, and its close,
    // which goes through the kernel, is accepted as established: the daemon made conntrack
    // liberal about this entry's segments it never saw (else the close would be INVALID and meet
    // the drop rule), without the node-wide setting.
    let liberal = cmd::in_ns_ok(
        &cluster.nodes[0].ns.name,
        "sysctl",
        &["-n", "net.netfilter.nf_conntrack_tcp_be_liberal"],
    );
    assert_eq!(liberal.unwrap().trim(), "0");
    open.exchange(FASTPATH_EXCHANGE).unwrap();
    drop(open);
    assert_eq!(server.join().unwrap().unwrap(), 2, "the round trip and the open connection");
}

/// Fast-path packets and kernel-bound ones of pod traffic, summed over the nodes.
fn fast_and_kernel(before: &[Counters], after: &[Counters]) -> (u64, u64) {
    let delta = |reasons: &[&str]| -> u64 {
        before
            .iter()
            .zip(after)
            .map(|(b, a)| reasons.iter().map(|r| a.packets(r) - b.packets(r)).sum::<u64>())
            .sum()
    };
    let fast = delta(&[
        "redirected_local",
        "encapsulated",
        "routed_underlay",
        "decapsulated",
        "routed_from_underlay",
    ]);
    let kernel = delta(&[
        "passed_flow_pending",
        "passed_flow_elsewhere",
        "passed_flow_closing",
        "passed_flow_untracked",
        "passed_underlay_other",
    ]);
    (fast, kernel)
}

/// A 10-second iperf3 stream from A to REMOTE under the daemons started with `args`: at least
/// 99 % of its packets by the fast path, over both nodes, and the programs of each side counted
/// under `sent` (node 1) and `delivered` (node 2).
fn iperf_goes_by_the_fast_path(tag: &str, args: &[&str], sent: &str, delivered: &str) {
    let (cluster, daemons) = cluster(tag, args);
    let (a, remote) = (cluster.pod(A).unwrap(), cluster.pod(REMOTE).unwrap());
    let before: Vec<Counters> = daemons.iter().map(|d| d.counters().unwrap()).collect();
    let report = traffic::iperf(a, remote, 10).unwrap();
    let after: Vec<Counters> = daemons.iter().map(|d| d.counters().unwrap()).collect();
    let (fast, kernel) = fast_and_kernel(&before, &after);
    let share = fast as f64 / (fast + kernel) as f64;
    eprintln!("iperf3 10 s across nodes ({args:?}): {report}; {fast} packets by the fast path, {kernel} by the kernel ({:.3}%)", share * 100.0);
    assert!(fast > 10_000, "only {fast} packets on the fast path");
    assert!(share >= 0.99, "{fast} fast, {kernel} kernel: {:.3}% < 99%", share * 100.0);
    // Sent on one node, delivered on the other, after the local kernels approved.
    assert!(after[0].packets(sent) > before[0].packets(sent));
    assert!(after[1].packets(delivered) > before[1].packets(delivered));
}

#[test]
fn an_iperf_stream_across_nodes_goes_at_least_99_percent_by_the_fast_path() {
    iperf_goes_by_the_fast_path(
        "ipf",
        &["--trust", "kernel", "--ipip", "always"],
        "encapsulated",
        "decapsulated",
    );
}

/// The default mode on plain block routes, as the seed cluster routes them: the receiving node
/// delivers the stream too, once its kernel has delivered the flow.
#[test]
fn an_iperf_stream_on_plain_routes_goes_at_least_99_percent_by_the_fast_path_on_both_nodes() {
    iperf_goes_by_the_fast_path("ipfp", &["--trust", "kernel"], "routed_underlay", "routed_from_underlay");
}

/// The warning a daemon gives at start when it is told to send IPIP under `--trust kernel` on a
/// kernel with no IPIP device (this one has no ipip module).
const IPIP_WARNING: &str = "--trust kernel with IPIP";

#[test]
fn ipip_under_trust_kernel_without_an_ipip_device_is_said_at_start() {
    require_root();
    let cluster = Cluster::build("ipipwarn", &ClusterSpec::seed()).unwrap();
    let node = &cluster.nodes[0].ns.name;
    for (args, warned) in [
        (&["--trust", "kernel", "--ipip", "always"][..], true),
        (&["--trust", "kernel", "--ipip", "cross-subnet"], true),
        (&["--trust", "kernel"], false),
        (&["--trust", "kernel", "--ipip", "never"], false),
        (&["--trust", "routes", "--ipip", "always"], false),
    ] {
        let daemon = Daemon::start(node, args).unwrap();
        let log = daemon.log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(IPIP_WARNING)).collect();
        assert_eq!(lines.len(), usize::from(warned), "{args:?}: {lines:?}\n{log}");
        if warned {
            assert!(lines[0].contains("cannot decapsulate what the other node's fast path"), "{}", lines[0]);
        }
    }
}
