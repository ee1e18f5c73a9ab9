//! The maps heal, and a full map never drops (issue 17): every kind of entry deleted behind the
//! daemon's back is repaired by the next resync, a restart on a pin set missing one map fills it
//! again, and a route map too small for its routes hands what does not fit to the kernel, which
//! carries it as it would without fastpath.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use fastpath_tests::{
    cluster::{Cluster, ClusterSpec},
    cmd,
    daemon::{fastpath_bin, node_cli},
    require_root,
    traffic::{self, ping},
    wait, Bpffs, Daemon,
};

/// A cluster whose nodes keep their pins on a bpffs that outlives each daemon.
struct Bed {
    daemons: Vec<Daemon>,
    cluster: Cluster,
    bpffs: Vec<Bpffs>,
}

impl Bed {
    fn new(tag: &str, spec: &ClusterSpec) -> Self {
        require_root();
        let cluster = Cluster::build(tag, spec).unwrap();
        let bpffs = cluster.nodes.iter().map(|_| Bpffs::new(tag).unwrap()).collect();
        Self { daemons: Vec::new(), cluster, bpffs }
    }

    fn start(&self, node: usize, args: &[&str]) -> Daemon {
        Daemon::start_pinned(&self.cluster.nodes[node].ns.name, &self.bpffs[node].pin_dir(), args).unwrap()
    }

    fn pin(&self, node: usize, map: &str) -> String {
        self.bpffs[node].pin_dir().join(map).display().to_string()
    }

    /// `fastpath ARGS` on node `node`: exit code and standard output.
    fn cli(&self, node: usize, args: &[&str]) -> (Option<i32>, String) {
        let dir = self.bpffs[node].pin_dir().display().to_string();
        let bin = fastpath_bin().display().to_string();
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--bpffs", &dir]);
        let out = cmd::in_ns(&self.cluster.nodes[node].ns.name, &bin, &full).unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn cli_ok(&self, node: usize, args: &[&str]) -> String {
        node_cli(&self.cluster.nodes[node].ns.name, &self.bpffs[node].pin_dir(), args).unwrap()
    }

    fn verify_clean(&self, node: usize) -> bool {
        self.cli(node, &["verify"]).0 == Some(0)
    }
}

fn bytes(values: impl IntoIterator<Item = u8>) -> Vec<String> {
    values.into_iter().map(|b| b.to_string()).collect()
}

/// `bpftool map delete pinned PATH key BYTES`.
fn delete_key(path: &str, key: &[String]) {
    let mut args = vec!["map", "delete", "pinned", path, "key"];
    args.extend(key.iter().map(String::as_str));
    cmd::run("bpftool", &args).unwrap();
}

/// The route map's key for a prefix: its length (u32, host order) and the address.
fn route_key((addr, len): (Ipv4Addr, u8)) -> Vec<String> {
    bytes(u32::from(len).to_le_bytes().into_iter().chain(addr.octets()))
}

/// Zero FP_NODE's one slot, as a bad tool or a stray write might.
fn zero_node_config(path: &str) {
    let info = cmd::run("bpftool", &["map", "show", "pinned", path, "--json"]).unwrap();
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    let size = info["bytes_value"].as_u64().unwrap() as usize;
    let value = bytes(vec![0; size]);
    let mut args = vec!["map", "update", "pinned", path, "key", "0", "0", "0", "0", "value"];
    args.extend(value.iter().map(String::as_str));
    cmd::run("bpftool", &args).unwrap();
}

/// A way to remove one map entry behind the daemon's back.
type Deletion<'a> = Box<dyn Fn() + 'a>;

/// The number of times the daemon logged `needle`.
fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// The number of warnings the daemon logged that say `needle`.
fn warned(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(" WARN ") && l.contains(needle)).count()
}

/// Every kind of entry (route, endpoint, peer, node configuration) removed behind the daemon's
/// back: `verify` names it at once, the next resync (2 s here) repairs it and counts it, `verify`
/// is clean after and the pods reach each other through the fast path again.
#[test]
fn each_kind_of_entry_deleted_behind_the_daemons_back_is_repaired_by_the_next_resync() {
    let mut bed = Bed::new("heal", &ClusterSpec::seed_fastpath_only());
    // The kernel alone cannot carry this cluster (tunl0 leads nowhere): only fastpath can.
    let (pod1_ip, pod2_ip) = (bed.cluster.nodes[0].pods[0].ip, bed.cluster.nodes[1].pods[0].ip);
    assert!(!ping(&bed.cluster.nodes[0].pods[0], pod2_ip, 1, &["-W", "1"]).unwrap().received);
    bed.daemons.push(bed.start(0, &["--resync-interval", "2"]));
    bed.daemons.push(bed.start(1, &[]));
    let pod1 = &bed.cluster.nodes[0].pods[0];
    assert!(ping(pod1, pod2_ip, 1, &[]).unwrap().received);
    assert!(bed.verify_clean(0));

    let node2 = bed.cluster.nodes[1].underlay_ip;
    let remote_block = bed.cluster.nodes[1].block;
    let entries: [(&str, Deletion); 4] = [
        ("FP_ROUTES", Box::new(|| delete_key(&bed.pin(0, "FP_ROUTES"), &route_key(remote_block)))),
        ("FP_ENDPOINTS", Box::new(|| delete_key(&bed.pin(0, "FP_ENDPOINTS"), &bytes(pod1_ip.octets())))),
        ("FP_PEERS", Box::new(|| delete_key(&bed.pin(0, "FP_PEERS"), &bytes(node2.octets())))),
        ("FP_NODE", Box::new(|| zero_node_config(&bed.pin(0, "FP_NODE")))),
    ];
    for (map, delete) in &entries {
        let repairs_before = count(&bed.daemons[0].log(), "resync repaired 1 map entries");
        delete();
        let deleted = Instant::now();
        let (code, drift) = bed.cli(0, &["verify"]);
        assert_eq!(code, Some(1), "{map}: verify found no drift:\n{drift}");
        assert!(drift.contains(map), "{map}: {drift}");
        let healed = wait::until(Duration::from_secs(4), || bed.verify_clean(0).then_some(()));
        let heal_time = deleted.elapsed();
        assert!(healed.is_some(), "{map}: no resync repaired it within 4 s:\n{}", bed.daemons[0].log());
        eprintln!(
            "{map}: entry deleted behind the daemon's back, repaired in {heal_time:?} (resync every 2 s)"
        );
        let log = bed.daemons[0].log();
        assert_eq!(count(&log, "resync repaired 1 map entries"), repairs_before + 1, "{map}: {log}");
        assert!(ping(pod1, pod2_ip, 2, &[]).unwrap().received, "{map}: the pods do not reach each other");
    }
    let counters = bed.daemons[1].counters().unwrap();
    assert!(counters.packets("decapsulated") > 0, "node 2 decapsulated nothing: not the fast path");
}

/// A daemon restarted on a pin set that lacks one map (an upgrade that lost a pin, a hand that
/// removed it) creates it and fills it from the kernel: nothing stays missing, nothing is dropped.
#[test]
fn a_restart_with_one_maps_pin_removed_fills_it_again() {
    let mut bed = Bed::new("pins", &ClusterSpec::seed_fastpath_only());
    bed.daemons.push(bed.start(0, &[]));
    bed.daemons.push(bed.start(1, &[]));
    let pod2_ip = bed.cluster.nodes[1].pods[0].ip;
    assert!(ping(&bed.cluster.nodes[0].pods[0], pod2_ip, 1, &[]).unwrap().received);
    for map in ["FP_PEERS", "FP_ROUTES", "FP_ENDPOINTS", "FP_NODE"] {
        assert!(bed.daemons[0].terminate().unwrap().success());
        std::fs::remove_file(bed.pin(0, map)).unwrap();
        let dropped_before = bed.daemons[1].counters().unwrap().packets("dropped_unknown_tunnel_peer");
        let started = Instant::now();
        bed.daemons[0] = bed.start(0, &[]);
        eprintln!("{map} pin removed: the restarted daemon served in {:?}", started.elapsed());
        let log = bed.daemons[0].log();
        assert!(log.contains(&format!("{map} not pinned in")), "{map}: {log}");
        assert!(Path::new(&bed.pin(0, map)).exists(), "{map} was not pinned again");
        let (code, drift) = bed.cli(0, &["verify"]);
        assert_eq!(code, Some(0), "{map}: {drift}");
        assert!(ping(&bed.cluster.nodes[0].pods[0], pod2_ip, 2, &[]).unwrap().received, "{map}");
        let counters = bed.daemons[0].counters().unwrap();
        assert_eq!(counters.packets("dropped_unknown_tunnel_peer"), 0, "{map}");
        assert_eq!(bed.daemons[1].counters().unwrap().packets("dropped_unknown_tunnel_peer"), dropped_before);
    }
}

/// `ip -batch` lines adding (`add`) or removing (`del`) `count` /24 routes 10.200.N.0/24 via
/// `via` on eth0, as BGP would install them.
fn bgp_routes(verb: &str, range: std::ops::Range<u32>, via: Ipv4Addr) -> String {
    range.map(|n| format!("route {verb} 10.200.{n}.0/24 via {via} dev eth0\n")).collect()
}

fn metrics_page(ns: &str, addr: &'static str) -> String {
    traffic::in_netns(ns, move || {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    })
    .unwrap()
}

/// The route map holds 64 entries, node 1 wants 67 (its pod, its blackhole block, node 2's block
/// and 64 BGP routes): the daemon runs anyway and says so once; a pod added then is reachable
/// through the kernel from its own node and from the other, never blackholed; `status` and the
/// metrics show the map full; once routes go, the pod's /32 is written and its block is a
/// blackhole again; a daemon restarted on the full node runs too.
#[test]
fn a_route_map_too_small_for_its_routes_hands_what_does_not_fit_to_the_kernel() {
    // Plain routes over the underlay and proxy_arp: the kernel alone carries this cluster.
    let spec = ClusterSpec { proxy_arp: true, ..ClusterSpec::seed() };
    let mut bed = Bed::new("full", &spec);
    let (n1, n2) = (bed.cluster.nodes[0].ns.name.clone(), bed.cluster.nodes[1].ns.name.clone());
    let node2 = bed.cluster.nodes[1].underlay_ip;
    assert!(ping(&bed.cluster.nodes[0].pods[0], bed.cluster.nodes[1].pods[0].ip, 1, &[]).unwrap().received);
    cmd::in_ns_with_input(&n1, "ip", &["-batch", "-"], bgp_routes("add", 0..64, node2).as_bytes()).unwrap();

    let args = ["--route-capacity", "64", "--metrics-addr", "127.0.0.1:9471", "--resync-interval", "1"];
    let started = Instant::now();
    bed.daemons.push(bed.start(0, &args));
    eprintln!("full map: the daemon served in {:?}", started.elapsed());
    bed.daemons.push(bed.start(1, &[]));
    let log = bed.daemons[0].log();
    assert_eq!(warned(&log, "FP_ROUTES is full (64 entries): 3 prefixes are not in it"), 1, "{log}");

    // A new pod on the full node: its /32 does not fit, so its block hands its traffic to the
    // kernel instead of blackholing it.
    let new_ip = Ipv4Addr::new(10, 244, 40, 40);
    bed.cluster.add_pod(0, new_ip).unwrap();
    let block = wait::until(Duration::from_secs(5), || {
        let routes = bed.cli_ok(0, &["routes"]);
        routes.lines().any(|l| l.starts_with("10.244.40.0/26") && l.contains("kernel")).then_some(routes)
    });
    assert!(block.is_some(), "the block never went to the kernel:\n{}", bed.daemons[0].log());
    let pod1 = bed.cluster.pod(Ipv4Addr::new(10, 244, 40, 36)).unwrap();
    let pod2 = bed.cluster.pod(Ipv4Addr::new(10, 244, 166, 150)).unwrap();
    assert!(ping(pod1, new_ip, 3, &[]).unwrap().received, "not reachable from its own node");
    assert!(ping(pod2, new_ip, 3, &[]).unwrap().received, "not reachable from the other node");
    let counters = bed.daemons[0].counters().unwrap();
    assert!(counters.packets("passed_map_overflow") >= 3, "{counters:?}");
    assert_eq!(counters.packets("dropped_no_endpoint"), 0, "{counters:?}");
    let explain = bed.cli_ok(0, &["explain", "10.244.40.36", "10.244.40.40"]);
    assert!(explain.contains("the route map had no room"), "{explain}");

    let status = bed.cli_ok(0, &["status"]);
    assert!(status.contains("FP_ROUTES 64/64 FULL"), "{status}");
    assert!(status.contains("10.244.40.0/26 (the route map had no room for a prefix inside it)"), "{status}");
    let json: serde_json::Value = serde_json::from_str(&bed.cli_ok(0, &["status", "--json"])).unwrap();
    assert_eq!(json["maps"]["FP_ROUTES"]["entries"], 64, "{json}");
    assert_eq!(json["maps"]["FP_ROUTES"]["max"], 64, "{json}");
    assert_eq!(json["maps"]["FP_ROUTES"]["full"], true, "{json}");
    let page = metrics_page(&n1, "127.0.0.1:9471");
    for needle in
        ["fastpath_map_entries{map=\"FP_ROUTES\"} 64\n", "fastpath_map_capacity{map=\"FP_ROUTES\"} 64\n"]
    {
        assert!(page.contains(needle), "missing {needle:?}:\n{page}");
    }

    // A new pod and several resyncs later: not one more word about it.
    std::thread::sleep(Duration::from_millis(2500));
    let log = bed.daemons[0].log();
    let warnings = log.lines().filter(|l| l.contains(" WARN ")).count();
    eprintln!("full map: {warnings} WARN lines after the start, a new pod and 2 resyncs");
    assert_eq!(warnings, 1, "{log}");

    // Room comes: the pod's /32 is written first, then its block is a blackhole again.
    cmd::in_ns_with_input(&n1, "ip", &["-batch", "-"], bgp_routes("del", 0..10, node2).as_bytes()).unwrap();
    let written = wait::until(Duration::from_secs(5), || {
        let routes = bed.cli_ok(0, &["routes"]);
        let pod = routes.lines().any(|l| l.starts_with("10.244.40.40/32") && l.contains("local"));
        let blackhole = routes.lines().any(|l| l.starts_with("10.244.40.0/26") && l.contains("blackhole"));
        (pod && blackhole).then_some(())
    });
    assert!(written.is_some(), "{}", bed.cli_ok(0, &["routes"]));
    assert!(bed.daemons[0].log().contains("the maps have room again"), "{}", bed.daemons[0].log());
    let redirected = bed.daemons[0].counters().unwrap().packets("redirected_local");
    assert!(ping(pod1, new_ip, 2, &[]).unwrap().received);
    assert!(bed.daemons[0].counters().unwrap().packets("redirected_local") > redirected, "not the fast path");

    // Full again, 10 route events one after the other: one warning, not ten.
    cmd::in_ns_with_input(&n1, "ip", &["-batch", "-"], bgp_routes("add", 0..10, node2).as_bytes()).unwrap();
    let full_again = wait::until(Duration::from_secs(5), || {
        (warned(&bed.daemons[0].log(), "FP_ROUTES is full") == 2).then_some(())
    });
    assert!(full_again.is_some(), "{}", bed.daemons[0].log());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(warned(&bed.daemons[0].log(), "FP_ROUTES is full"), 2, "{}", bed.daemons[0].log());

    // The daemon restarted on the full node: it runs, and the kernel carries what does not fit.
    assert!(bed.daemons[0].terminate().unwrap().success());
    let started = Instant::now();
    bed.daemons[0] = bed.start(0, &args);
    eprintln!("full map: the restarted daemon served in {:?}", started.elapsed());
    assert!(bed.daemons[0].log().contains("FP_ROUTES is full (64 entries)"), "{}", bed.daemons[0].log());
    assert!(ping(pod2, new_ip, 2, &[]).unwrap().received);
    assert!(ping(pod1, new_ip, 2, &[]).unwrap().received);
    drop(n2);
}
