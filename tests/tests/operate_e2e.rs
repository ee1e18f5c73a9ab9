//! Operating fastpath like a node agent: every inspection command on a running cluster, metrics
//! and health, restarts that lose nothing, cleanup, and maps of another layout.

use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use fastpath_tests::{
    bpf::{links_of_program, program_exists},
    cluster::{Cluster, ClusterSpec},
    cmd,
    daemon::{fastpath_bin, node_cli},
    require_root,
    traffic::{self, ping},
    Bpffs, Daemon,
};

/// The seed cluster, fastpath alone, each node's pins on a bpffs that outlives its daemon.
struct Bed {
    daemons: Vec<Daemon>,
    cluster: Cluster,
    bpffs: Vec<Bpffs>,
}

impl Bed {
    fn new(tag: &str, args: &[&str]) -> Self {
        require_root();
        let cluster = Cluster::build(tag, &ClusterSpec::seed_fastpath_only()).unwrap();
        let bpffs: Vec<Bpffs> = cluster.nodes.iter().map(|_| Bpffs::new(tag).unwrap()).collect();
        let mut bed = Self { daemons: Vec::new(), cluster, bpffs };
        for i in 0..bed.cluster.nodes.len() {
            bed.daemons.push(bed.start(i, args));
        }
        bed
    }

    fn start(&self, node: usize, args: &[&str]) -> Daemon {
        Daemon::start_pinned(&self.cluster.nodes[node].ns.name, &self.bpffs[node].pin_dir(), args).unwrap()
    }

    /// `fastpath ARGS` on node `node`, with its pin folder; the output whatever the exit code.
    fn cli(&self, node: usize, args: &[&str]) -> std::process::Output {
        let dir = self.bpffs[node].pin_dir().display().to_string();
        let mut full = vec![fastpath_bin().display().to_string()];
        full.extend(args.iter().map(|a| a.to_string()));
        full.extend(["--bpffs".to_string(), dir]);
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        cmd::in_ns(&self.cluster.nodes[node].ns.name, refs[0], &refs[1..]).unwrap()
    }

    fn cli_ok(&self, node: usize, args: &[&str]) -> String {
        node_cli(&self.cluster.nodes[node].ns.name, &self.bpffs[node].pin_dir(), args).unwrap()
    }

    fn pods(&self) -> (&fastpath_tests::Pod, &fastpath_tests::Pod) {
        (&self.cluster.nodes[0].pods[0], &self.cluster.nodes[1].pods[0])
    }
}

#[test]
fn status_endpoints_peers_routes_and_explain_as_a_user_sees_them() {
    let bed = Bed::new("show", &[]);
    let (pod1, pod2) = bed.pods();
    assert!(ping(pod1, pod2.ip, 1, &[]).unwrap().received);

    let status = bed.cli_ok(0, &["status"]);
    for expected in [
        "ready",
        "IPIP follow, VXLAN follow",
        "node 10.101.14.50",
        "MTU 1500 (IPIP 1480, VXLAN 1450)",
        "FP_ROUTES 3/",
        "FP_PEERS 1/",
    ] {
        assert!(status.contains(expected), "status lacks {expected:?}:\n{status}");
    }
    let pod_prog = bed.daemons[0].attached_prog_ids("from_pod")[0];
    let line = status.lines().find(|l| l.contains(&pod1.host_iface)).unwrap_or_else(|| panic!("{status}"));
    assert!(
        line.contains("from_pod") && line.contains(&pod_prog.to_string()) && line.contains("tcx ingress"),
        "{line}"
    );
    assert!(status.lines().any(|l| l.contains("eth0") && l.contains("from_underlay")), "{status}");
    let json: serde_json::Value = serde_json::from_str(&bed.cli_ok(0, &["status", "--json"])).unwrap();
    assert_eq!(json["node_ip"], "10.101.14.50");
    assert_eq!(json["attached"].as_array().unwrap().len(), 2);

    let endpoints = bed.cli_ok(0, &["endpoints"]);
    assert!(
        endpoints.lines().any(|l| l.starts_with("10.244.40.36")
            && l.contains(&pod1.host_iface)
            && l.contains("fast path")),
        "{endpoints}"
    );
    let peers = bed.cli_ok(0, &["peers", "--json"]);
    assert_eq!(
        peers,
        "[{\"node\":\"10.101.14.51\",\"blocks\":[{\"block\":\"10.244.166.128/26\",\"encap\":\"ipip\"}]}]\n"
    );
    let routes = bed.cli_ok(0, &["routes"]);
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("10.244.166.128/26") && l.contains("10.101.14.51") && l.contains("ipip")),
        "{routes}"
    );

    let explain = bed.cli_ok(0, &["explain", "10.244.40.36", "10.244.166.150"]);
    assert!(explain.starts_with("IPIP to 10.101.14.51 via eth0"), "{explain}");
    let explain =
        bed.cli_ok(1, &["explain", "--from-underlay", "10.101.14.50", "10.244.40.36", "10.244.166.150"]);
    assert!(
        explain.starts_with(&format!("decapsulate, then redirect to pod on {}", pod2.host_iface)),
        "{explain}"
    );
    let explain = bed.cli_ok(0, &["explain", "10.244.40.36", "8.8.8.8"]);
    assert!(explain.starts_with("kernel: no fastpath route"), "{explain}");
    let explain = bed.cli_ok(0, &["explain", "10.244.166.150", "10.244.40.36"]);
    assert!(explain.starts_with("drop: spoofed source"), "{explain}");
    let explain = bed.cli_ok(0, &["explain", "--arp", "10.244.40.36", "169.254.1.1"]);
    assert!(explain.starts_with("ARP reply"), "{explain}");

    // The maps carry BTF: bpftool prints their field names.
    for (map, field) in [
        ("FP_ROUTES", "next_hop"),
        ("FP_NODE", "underlay_mtu"),
        ("FP_COUNTERS", "packets"),
        ("FP_AGENT", "heartbeat_unix_ms"),
        ("FP_MONITOR", "until_ns"),
    ] {
        let path = bed.bpffs[0].pin_dir().join(map).display().to_string();
        let dump = cmd::run("bpftool", &["map", "dump", "pinned", &path]).unwrap();
        assert!(dump.contains(&format!("\"{field}\"")), "{map}: no {field} in\n{dump}");
    }

    let stats = bed.cli_ok(0, &["stats", "--json"]);
    let counters = fastpath_tests::Counters::parse(&stats).unwrap();
    assert!(counters.packets("encapsulated") > 0);
    let watch = Command::new("ip")
        .args(["netns", "exec", &bed.cluster.nodes[0].ns.name, "timeout", "2.5"])
        .arg(fastpath_bin())
        .args(["stats", "--watch", "--bpffs", &bed.bpffs[0].pin_dir().display().to_string()])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&watch.stdout);
    assert!(screen.contains("PACKETS/S") && screen.contains("encapsulated"), "{screen}");
}

#[test]
fn monitor_streams_decisions_only_while_it_runs() {
    let bed = Bed::new("mon", &[]);
    let (pod1, pod2) = bed.pods();
    assert!(ping(pod1, pod2.ip, 1, &[]).unwrap().received);
    let dir = bed.bpffs[0].pin_dir().display().to_string();
    let monitor = Command::new("ip")
        .args(["netns", "exec", &bed.cluster.nodes[0].ns.name])
        .arg(fastpath_bin())
        .args(["monitor", "--filter", "10.244.166.150", "--count", "4", "--duration", "10", "--bpffs", &dir])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(ping(pod1, pod2.ip, 3, &[]).unwrap().received);
    let out = monitor.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ICMP  10.244.40.36 > 10.244.166.150 echo-request REDIRECT encapsulated")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.contains("10.244.166.150 > 10.244.40.36 echo-reply REDIRECT decapsulated")),
        "{text}"
    );
    // Off again once the monitor is gone.
    let control = cmd::in_ns_ok(
        &bed.cluster.nodes[0].ns.name,
        "bpftool",
        &["map", "dump", "pinned", &format!("{dir}/FP_MONITOR"), "--json"],
    )
    .unwrap();
    let control: serde_json::Value = serde_json::from_str(&control).unwrap();
    assert_eq!(control[0]["formatted"]["value"]["until_ns"], 0, "{control}");

    // Filtered by verdict and reason, in JSON with names: only the decapsulated replies of
    // three pings, though the requests were encapsulated meanwhile.
    let monitor = Command::new("ip")
        .args(["netns", "exec", &bed.cluster.nodes[0].ns.name])
        .arg(fastpath_bin())
        .args(["monitor", "--json", "--verdict", "redirect", "--reason", "decapsulated"])
        .args(["--count", "3", "--duration", "10", "--bpffs", &dir])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(ping(pod1, pod2.ip, 3, &[]).unwrap().received);
    let out = monitor.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let events: Vec<fastpath::commands::stats::EventRow> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert_eq!(events.len(), 3, "{text}");
    for e in &events {
        assert_eq!(
            (e.verdict.as_str(), e.reason.as_str(), e.protocol.as_str()),
            ("redirect", "decapsulated", "icmp")
        );
        assert_eq!((e.src, e.dst), (pod2.ip.into(), pod1.ip.into()), "{text}");
        assert_eq!(e.icmp_type.as_deref(), Some("echo-reply"), "{text}");
        assert_eq!(e.program, "from_underlay");
    }
    // A drop filter over the same traffic shows nothing.
    let quiet = Command::new("ip")
        .args(["netns", "exec", &bed.cluster.nodes[0].ns.name])
        .arg(fastpath_bin())
        .args(["monitor", "--verdict", "drop", "--duration", "2", "--bpffs", &dir])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(ping(pod1, pod2.ip, 2, &[]).unwrap().received);
    let out = quiet.wait_with_output().unwrap();
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
}

const METRICS: &str = "127.0.0.1:9469";
const HEALTH: &str = "127.0.0.1:9468";

/// `GET path` on `addr` in namespace `ns`: the whole response.
fn http_get(ns: &str, addr: &'static str, path: &'static str) -> String {
    try_http_get(ns, addr, path).unwrap()
}

/// `GET path`, as a probe makes it: one attempt, which may fail.
fn try_http_get(ns: &str, addr: &'static str, path: &'static str) -> anyhow::Result<String> {
    traffic::in_netns(ns, move || {
        let mut stream = TcpStream::connect_timeout(&addr.parse()?, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    })
}

/// The README's metrics table: (name, type, label names), from its `## Metrics and health`.
fn readme_metrics() -> BTreeSet<(String, String, Vec<String>)> {
    let readme = include_str!("../../README.md");
    let section = readme.split("\n## Metrics and health\n").nth(1).expect("a Metrics section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let labels: BTreeSet<String> = cells[3]
                .split(',')
                .map(|c| c.trim().trim_matches('`').to_string())
                .filter(|c| !c.is_empty() && c != "none")
                .collect();
            let labels = labels.into_iter().collect();
            (cells[1].trim_matches('`').to_string(), cells[2].to_string(), labels)
        })
        .collect()
}

/// A page's families: (name, type, label names but a histogram's `le`), from its `# TYPE` lines
/// and its samples.
fn page_metrics(page: &str) -> BTreeSet<(String, String, Vec<String>)> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            let mut labels = BTreeSet::new();
            for sample in page.lines().filter(|s| !s.starts_with('#')) {
                let Some(rest) = sample.strip_prefix(name) else { continue };
                let Some(inside) = rest
                    .strip_prefix('{')
                    .or_else(|| rest.strip_prefix("_bucket{"))
                    .and_then(|r| r.split_once('}'))
                    .map(|(inside, _)| inside)
                else {
                    continue;
                };
                labels.extend(
                    inside.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, _)| k.to_string()),
                );
            }
            labels.remove("le");
            (name.to_string(), kind.to_string(), labels.into_iter().collect())
        })
        .collect()
}

#[test]
fn metrics_and_health_endpoints() {
    let bed = Bed::new("met", &["--metrics-addr", METRICS, "--health-addr", HEALTH]);
    let (pod1, pod2) = bed.pods();
    assert!(ping(pod1, pod2.ip, 2, &[]).unwrap().received);
    let ns = bed.cluster.nodes[0].ns.name.clone();
    assert!(http_get(&ns, HEALTH, "/healthz").starts_with("HTTP/1.1 200"), "healthz");
    assert!(http_get(&ns, HEALTH, "/readyz").starts_with("HTTP/1.1 200"), "readyz");
    // Apart: neither listener serves the other's endpoints.
    assert!(http_get(&ns, HEALTH, "/metrics").starts_with("HTTP/1.1 404"));
    assert!(http_get(&ns, METRICS, "/healthz").starts_with("HTTP/1.1 404"));
    let response = http_get(&ns, METRICS, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("Content-Type: text/plain; version=0.0.4"), "{response}");
    let page = response.split_once("\r\n\r\n").unwrap().1;

    // Every sample parses with a parser of the text format, and each family has samples.
    let scrape = prometheus_parse::Scrape::parse(page.lines().map(|l| Ok(l.to_string()))).unwrap();
    let raw_samples: Vec<&str> =
        page.lines().filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains("_bucket{")).collect();
    for line in &raw_samples {
        let (name, value) = line.rsplit_once(' ').unwrap();
        let metric = name.split('{').next().unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(
            scrape.samples.iter().any(|s| s.metric == metric
                && match &s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => *v == value,
                    prometheus_parse::Value::Histogram(_) | prometheus_parse::Value::Summary(_) => true,
                }),
            "not parsed: {line}"
        );
    }
    let sample = |metric: &str, labels: &[(&str, &str)]| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {metric} {labels:?} in:\n{page}"));
        match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{metric}: {other:?}"),
        }
    };
    assert!(sample("fastpath_packets_total", &[("reason", "encapsulated"), ("verdict", "redirect")]) >= 2.0);
    assert!(sample("fastpath_bytes_total", &[("reason", "decapsulated"), ("verdict", "redirect")]) > 0.0);
    assert_eq!(
        sample("fastpath_packets_total", &[("reason", "dropped_spoofed_source"), ("verdict", "drop")]),
        0.0
    );
    assert_eq!(sample("fastpath_map_entries", &[("map", "FP_ROUTES")]), 3.0);
    assert_eq!(sample("fastpath_map_entries", &[("map", "FP_PEERS")]), 1.0);
    assert_eq!(sample("fastpath_map_capacity", &[("map", "FP_FLOWS")]), 65_536.0);
    assert_eq!(sample("fastpath_map_capacity", &[("map", "FP_ROUTES")]), 262_144.0);
    assert_eq!(sample("fastpath_attach_failures_total", &[]), 0.0);
    assert_eq!(sample("fastpath_resync_repairs_total", &[]), 0.0);
    assert_eq!(sample("fastpath_netlink_overruns_total", &[]), 0.0);
    assert!(sample("fastpath_netlink_events_total", &[]) >= 0.0);
    assert_eq!(sample("fastpath_ready", &[]), 1.0);
    assert_eq!(sample("fastpath_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert!(sample("process_resident_memory_bytes", &[]) > 1e6);
    assert!(sample("process_open_fds", &[]) >= 10.0);
    assert!(sample("process_cpu_seconds_total", &[]) > 0.0);
    let sync = scrape.samples.iter().find(|s| s.metric == "fastpath_route_sync_seconds").unwrap();
    assert!(matches!(&sync.value, prometheus_parse::Value::Histogram(b) if b.len() == 10), "{sync:?}");
    // Each reason once per counter family: registered once, and no retired reason.
    let reasons = scrape.samples.iter().filter(|s| s.metric == "fastpath_packets_total").count();
    let live = fastpath_common::Reason::ALL.iter().filter(|r| !r.is_retired()).count();
    assert_eq!(reasons, live);
    assert_eq!(page.matches("# TYPE fastpath_packets_total ").count(), 1);

    // What /metrics serves is what the README documents, and the README documents nothing else.
    let (served, documented) = (page_metrics(page), readme_metrics());
    assert!(!documented.is_empty());
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(undocumented.is_empty(), "served but not in the README's table (or otherwise): {undocumented:?}");
    assert!(unserved.is_empty(), "in the README's table but not served (or otherwise): {unserved:?}");
}

#[test]
fn every_listing_deserializes_into_its_struct() {
    use fastpath::commands::{flows::FlowRow, inspect, show::RouteRow, stats::StatsListing};
    let bed = Bed::new("lists", &[]);
    let (pod1, pod2) = bed.pods();
    assert!(ping(pod1, pod2.ip, 1, &[]).unwrap().received);
    // Each in JSON (both spellings) and in YAML, into the one struct both render.
    fn parse<T: serde::de::DeserializeOwned>(bed: &Bed, listing: &str) -> T {
        let json = bed.cli_ok(0, &[listing, "--json"]);
        assert_eq!(json, bed.cli_ok(0, &[listing, "-o", "json"]), "{listing}: --json is -o json");
        let from_json: T = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{listing}: {e}: {json}"));
        let yaml = bed.cli_ok(0, &[listing, "-o", "yaml"]);
        let _: T = serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{listing}: {e}: {yaml}"));
        from_json
    }
    let status: inspect::Status = parse(&bed, "status");
    assert!(status.ready && status.running);
    assert_eq!((status.ipip_mode.as_str(), status.vxlan_mode.as_str()), ("follow", "follow"));
    assert_eq!((status.ipip_mtu, status.vxlan_mtu), (1480, 1450));
    assert_eq!(status.maps["FP_ROUTES"].entries, 3);
    let routes: Vec<RouteRow> = parse(&bed, "routes");
    assert!(routes.iter().any(|r| r.prefix == "10.244.166.128/26" && r.encap.as_deref() == Some("ipip")));
    let endpoints: Vec<RouteRow> = parse(&bed, "endpoints");
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].iface.as_deref(), Some(pod1.host_iface.as_str()));
    let peers: Vec<inspect::PeerRow> = parse(&bed, "peers");
    assert_eq!(peers[0].node.to_string(), "10.101.14.51");
    let flows: Vec<FlowRow> = parse(&bed, "flows");
    assert!(flows.is_empty(), "--trust routes writes no flow: {flows:?}");
    let stats: StatsListing = parse(&bed, "stats");
    assert!(stats["encapsulated"].packets > 0);
    assert_eq!(stats["dropped_no_endpoint"].verdict, "drop");
    assert!(!stats.contains_key("flow_approved"), "a retired reason is listed");
    let version: inspect::Version = parse(&bed, "version");
    let daemon = version.daemon.expect("the running daemon's version");
    assert_eq!((daemon.version.as_str(), daemon.pid), (env!("CARGO_PKG_VERSION"), bed.daemons[0].pid()));
    // And the one-line readiness.
    let brief = bed.cli(0, &["status", "--brief"]);
    assert!(brief.status.success(), "{brief:?}");
    assert!(String::from_utf8_lossy(&brief.stdout).starts_with("ready (fastpath "), "{brief:?}");
}

#[test]
fn an_accept_flood_past_the_fd_limit_leaves_health_and_new_pods_alone() {
    let mut bed = Bed::new("flood", &["--metrics-addr", METRICS, "--health-addr", HEALTH]);
    let pid = bed.daemons[0].pid();
    // systemd's default soft limit, which the flood below goes three times past.
    cmd::run("prlimit", &["--pid", &pid.to_string(), "--nofile=1024:1024"]).unwrap();
    let ns = bed.cluster.nodes[0].ns.name.clone();
    // Hold 3 000 connections to /metrics, silent, in a thread of the node's namespace.
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<usize>();
    let flooder = {
        let ns = ns.clone();
        std::thread::spawn(move || {
            traffic::in_netns(&ns, move || {
                let addr = METRICS.parse()?;
                let held: Vec<TcpStream> = (0..3000)
                    .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok())
                    .collect();
                held_tx.send(held.len())?;
                let _ = hold_rx.recv();
                drop(held);
                Ok(())
            })
            .unwrap();
        })
    };
    let held = held_rx.recv_timeout(Duration::from_secs(60)).expect("the flood connected");
    assert!(held > 1024, "only {held} connections held");
    let cpu = || -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<u64> =
            stat.rsplit_once(')').unwrap().1.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        // utime and stime (fields 14 and 15; the state, field 3, is not a number).
        fields[10] + fields[11]
    };
    let (cpu_before, at) = (cpu(), Instant::now());

    // Health answers within 2 s, during the flood. A probe that meets the process at its
    // descriptor limit for an instant may be reset, and is tried again, as a kubelet's would be.
    let started = Instant::now();
    for path in ["/healthz", "/readyz"] {
        let answered = fastpath_tests::wait::until(Duration::from_secs(2), || {
            try_http_get(&ns, HEALTH, path).ok().filter(|r| r.starts_with("HTTP/1.1 200"))
        });
        assert!(answered.is_some(), "{path} never answered 200 within 2 s");
    }
    assert!(started.elapsed() < Duration::from_secs(4), "health took {:?}", started.elapsed());
    // A pod created during the flood is attached and reachable.
    let new_pod = std::net::Ipv4Addr::new(10, 244, 40, 40);
    bed.cluster.add_pod(0, new_pod).unwrap();
    let remote = &bed.cluster.nodes[1].pods[0];
    let reached = fastpath_tests::wait::until(Duration::from_secs(10), || {
        ping(remote, new_pod, 1, &["-W", "1"]).ok().filter(|p| p.received).map(|_| ())
    });
    assert!(
        reached.is_some(),
        "the pod created during the flood is not reachable:\n{}",
        bed.daemons[0].log()
    );
    let status: fastpath::commands::inspect::Status =
        serde_json::from_str(&bed.cli_ok(0, &["status", "-o", "json"])).unwrap();
    assert!(status.ready, "{status:?}");
    // The daemon never spun while the flood lasted.
    std::thread::sleep(Duration::from_secs(2));
    let ticks = cpu() - cpu_before;
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let busy = ticks as f64 / hz / at.elapsed().as_secs_f64();
    assert!(busy < 0.5, "the daemon used {:.0} % of a CPU during the flood", busy * 100.0);

    hold_tx.send(()).unwrap();
    flooder.join().unwrap();
    // Once the flood is gone, /metrics answers again and counted the connections it refused.
    // Connections of the flood still queued are accepted and refused first, so a request may
    // meet a reset for a moment: it is tried again.
    let page = fastpath_tests::wait::until(Duration::from_secs(10), || {
        try_http_get(&ns, METRICS, "/metrics").ok().filter(|r| r.starts_with("HTTP/1.1 200"))
    })
    .expect("/metrics answers after the flood")
    .0;
    let refused: f64 = page
        .lines()
        .find_map(|l| l.strip_prefix("fastpath_http_refused_connections_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused > 1000.0, "{refused} connections refused");
}

#[test]
fn the_dataplane_outlives_the_daemon_and_cleanup_removes_it() {
    let mut bed = Bed::new("keep", &[]);
    let (pod1, pod2) = (bed.cluster.nodes[0].pods[0].ip, bed.cluster.nodes[1].pods[0].ip);
    let prog = bed.daemons[0].attached_prog_ids("from_pod")[0];
    for daemon in &mut bed.daemons {
        assert!(daemon.terminate().unwrap().success());
    }
    // No daemon: status says so with exit code 1, the programs still forward.
    let status = bed.cli(0, &["status"]);
    assert_eq!(status.status.code(), Some(1), "{status:?}");
    assert!(String::from_utf8_lossy(&status.stderr).contains("no fastpath daemon is running"), "{status:?}");
    let p1 = bed.cluster.pod(pod1).unwrap();
    assert!(ping(p1, pod2, 2, &[]).unwrap().received, "traffic stopped with the daemon");
    assert_eq!(links_of_program(prog), 1);

    for node in 0..2 {
        let out = bed.cli_ok(node, &["cleanup"]);
        assert!(out.contains("removed"), "{out}");
    }
    assert_eq!(links_of_program(prog), 0, "a link outlived cleanup");
    assert!(!program_exists(prog), "the program outlived cleanup");
    assert!(!bed.bpffs[0].pin_dir().exists(), "the pin folder outlived cleanup");
    assert!(!ping(p1, pod2, 1, &["-W", "1"]).unwrap().received, "traffic flows without any fastpath");
}

#[test]
fn cleanup_on_exit_leaves_nothing() {
    let mut bed = Bed::new("coe", &["--cleanup-on-exit"]);
    let progs = [
        bed.daemons[0].attached_prog_ids("from_pod")[0],
        bed.daemons[0].attached_prog_ids("from_underlay")[0],
    ];
    assert!(bed.daemons[0].terminate().unwrap().success());
    for prog in progs {
        assert_eq!(links_of_program(prog), 0);
        assert!(!program_exists(prog));
    }
    assert!(!bed.bpffs[0].pin_dir().exists());
}

/// 100 pings a second for 10 s and an iperf3 stream between pods on different nodes while both
/// daemons are stopped and started three times: no ping lost, no 100 ms interval without data.
#[test]
fn restarts_lose_no_packets() {
    let mut bed = Bed::new("rst", &[]);
    let (pod1, pod2) = bed.pods();
    assert!(ping(pod1, pod2.ip, 1, &[]).unwrap().received);
    let pinger = Command::new("ip")
        .args(["netns", "exec", &pod1.ns.name, "ping", "-n", "-q", "-i", "0.01", "-c", "1000", "-W", "1"])
        .arg(pod2.ip.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let server = Command::new("ip")
        .args(["netns", "exec", &pod2.ns.name, "iperf3", "-s", "-1", "-B"])
        .arg(pod2.ip.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let client = Command::new("ip")
        .args(["netns", "exec", &pod1.ns.name, "iperf3", "-c"])
        .arg(pod2.ip.to_string())
        .args(["-t", "10", "-i", "0.1", "-J", "-b", "200M"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    let started = Instant::now();
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(1500));
        for node in 0..2 {
            let status = bed.daemons[node].terminate().unwrap();
            assert!(status.success(), "round {round}: {status}");
            bed.daemons[node] = bed.start(node, &[]);
            assert!(
                bed.daemons[node].log().contains("adopted the link"),
                "round {round}: {}",
                bed.daemons[node].log()
            );
        }
    }
    eprintln!("3 restarts of both daemons in {:?}", started.elapsed());

    let pings = String::from_utf8_lossy(&pinger.wait_with_output().unwrap().stdout).into_owned();
    let iperf = client.wait_with_output().unwrap();
    let mut server = server;
    let _ = server.kill();
    let _ = server.wait();
    assert!(pings.contains("1000 packets transmitted, 1000 received"), "pings lost:\n{pings}");
    let report: serde_json::Value = serde_json::from_slice(&iperf.stdout).expect("iperf3 -J");
    let intervals = report["intervals"].as_array().expect("intervals");
    assert!(intervals.len() >= 95, "{} intervals", intervals.len());
    let stalls: Vec<f64> = intervals
        .iter()
        .filter(|i| i["sum"]["bytes"].as_u64() == Some(0))
        .map(|i| i["sum"]["start"].as_f64().unwrap_or(-1.0))
        .collect();
    assert!(stalls.is_empty(), "the stream stalled (a 100 ms interval carried nothing) at {stalls:?} s");
}

#[test]
fn a_map_of_another_layout_is_recreated_not_misread() {
    require_root();
    let cluster = Cluster::build("lay", &ClusterSpec::seed_fastpath_only()).unwrap();
    let bpffs = Bpffs::new("lay").unwrap();
    let dir = bpffs.pin_dir();
    std::fs::create_dir_all(&dir).unwrap();
    // What an older version might have left: FP_ROUTES with 16-byte values.
    let old = dir.join("FP_ROUTES").display().to_string();
    cmd::run(
        "bpftool",
        &[
            "map",
            "create",
            &old,
            "type",
            "lpm_trie",
            "key",
            "8",
            "value",
            "16",
            "entries",
            "64",
            "name",
            "FP_ROUTES",
            "flags",
            "1",
        ],
    )
    .unwrap();
    let daemon = Daemon::start_pinned(&cluster.nodes[0].ns.name, &dir, &[]).unwrap();
    assert!(
        daemon.log().contains("pinned map FP_ROUTES has another layout (key 8→8 bytes, value 16→24 bytes"),
        "{}",
        daemon.log()
    );
    let routes = daemon.cli(&["routes"]).unwrap();
    assert!(routes.contains("10.244.166.128/26"), "{routes}");
}

/// Remove FP_ROUTES' entry for `block` behind the daemon's back.
fn delete_route_entry(bed: &Bed, node: usize, block: (std::net::Ipv4Addr, u8)) {
    let path = bed.bpffs[node].pin_dir().join("FP_ROUTES").display().to_string();
    let mut key: Vec<String> = u32::from(block.1).to_le_bytes().iter().map(|b| b.to_string()).collect();
    key.extend(block.0.octets().iter().map(|b| b.to_string()));
    let mut args = vec!["map", "delete", "pinned", path.as_str(), "key"];
    args.extend(key.iter().map(String::as_str));
    cmd::run("bpftool", &args).unwrap();
}

#[test]
fn verify_finds_drift_and_a_resync_repairs_it() {
    require_root();
    let cluster = Cluster::build("ver", &ClusterSpec::seed_fastpath_only()).unwrap();
    let bpffs: Vec<Bpffs> = cluster.nodes.iter().map(|_| Bpffs::new("ver").unwrap()).collect();
    // Node 1 never resyncs, node 2 every second.
    let mut bed = Bed { daemons: Vec::new(), cluster, bpffs };
    bed.daemons.push(bed.start(0, &["--resync-interval", "0"]));
    bed.daemons.push(bed.start(1, &["--resync-interval", "1"]));
    for node in 0..2 {
        let out = bed.cli(node, &["verify"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stdout).contains("no drift"));
    }

    let remote_block = bed.cluster.nodes[1].block;
    delete_route_entry(&bed, 0, remote_block);
    let out = bed.cli(0, &["verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("drift: FP_ROUTES lacks 10.244.166.128/26 (remote via 10.101.14.51 (ipip))"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "only the deleted entry drifted: {text}");

    let local_block = bed.cluster.nodes[1].block;
    delete_route_entry(&bed, 1, local_block);
    let repaired = fastpath_tests::wait::until(Duration::from_secs(5), || {
        (bed.cli(1, &["verify"]).status.code() == Some(0)).then_some(())
    });
    assert!(repaired.is_some(), "no resync repaired node 2:\n{}", bed.daemons[1].log());
    assert!(bed.daemons[1].log().contains("resync repaired 1 map entries"), "{}", bed.daemons[1].log());
}

#[test]
fn a_second_daemon_on_the_same_folder_is_refused_in_one_line() {
    let bed = Bed::new("two", &[]);
    let dir = bed.bpffs[0].pin_dir().display().to_string();
    let out = Command::new("ip")
        .args(["netns", "exec", &bed.cluster.nodes[0].ns.name])
        .arg(fastpath_bin())
        .args(["run", "--bpffs", &dir])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("another fastpath daemon is running on"), "{stderr}");
    // The first daemon is untouched and still serving.
    assert!(bed.cli_ok(0, &["status"]).contains("ready"));
}

/// The programs `status --json` lists as attached, sorted.
fn attached_programs(bed: &Bed, node: usize) -> (String, Vec<String>) {
    let status: serde_json::Value = serde_json::from_str(&bed.cli_ok(node, &["status", "--json"])).unwrap();
    let mut programs: Vec<String> = status["attached"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("{} {}", l["program"].as_str().unwrap(), l["attach"].as_str().unwrap()))
        .collect();
    programs.sort();
    (status["trust"].as_str().unwrap().to_string(), programs)
}

#[test]
fn switching_the_trust_mode_on_restart_changes_the_mode_and_keeps_the_two_programs() {
    let mut bed = Bed::new("trst", &["--trust", "kernel"]);
    let (trust, programs) = attached_programs(&bed, 0);
    assert_eq!(trust, "kernel");
    assert_eq!(programs, ["from_pod tcx ingress", "from_underlay tcx ingress"]);
    assert!(bed.cli_ok(0, &["verify"]).contains("no drift"));

    assert!(bed.daemons[0].terminate().unwrap().success());
    let restarted = bed.start(0, &["--trust", "routes"]);
    bed.daemons[0] = restarted;
    let (trust, programs) = attached_programs(&bed, 0);
    assert_eq!(trust, "routes");
    assert_eq!(programs, ["from_pod tcx ingress", "from_underlay tcx ingress"]);
    assert!(bed.cli_ok(0, &["verify"]).contains("no drift"));
}
