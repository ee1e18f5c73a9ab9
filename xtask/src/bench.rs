//! `cargo xtask bench`: fastpath beside the kernel's own path and the physical limit, measured in
//! one run, the three alternating round by round so drift on a shared machine hits all alike.

use std::{
    net::Ipv4Addr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use fastpath_tests::{cmd, names, traffic, Cluster, ClusterSpec, Daemon, Netns};

use crate::build;

/// The three ways a packet can go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// Two namespaces joined by one veth pair: no routing at all.
    Limit,
    /// Calico's path through the kernel: proxy_arp, /32 and block routes, forwarding; across
    /// nodes without encapsulation (this kernel has no ipip module).
    Kernel,
    /// fastpath `--trust routes` on each node, proxy_arp off, IPIP across nodes.
    Fastpath,
    /// fastpath `--trust kernel` on each node, IPIP across nodes: the kernel forwards each flow's
    /// first packets (its routes go via the other node, unencapsulated), fastpath the rest.
    TrustKernel,
}

const PATHS: [Path; 4] = [Path::Limit, Path::Kernel, Path::Fastpath, Path::TrustKernel];

impl Path {
    /// The daemon's flags on this path, if it runs one.
    fn daemon_args(self) -> Option<&'static [&'static str]> {
        match self {
            Path::Limit | Path::Kernel => None,
            Path::Fastpath => Some(&["--trust", "routes"]),
            Path::TrustKernel => Some(&["--trust", "kernel", "--ipip", "always"]),
        }
    }
}

/// Two endpoints of one measurement: (namespace, address) of the client and of the server.
struct Pair {
    client: (String, Ipv4Addr),
    server: (String, Ipv4Addr),
}

/// A topology set up for one path; dropping it removes everything.
struct Setup {
    _limit: Vec<Netns>,
    _daemons: Vec<Daemon>,
    _cluster: Option<Cluster>,
    same_node: Pair,
    cross_node: Option<Pair>,
}

#[derive(Clone, Copy, Debug)]
struct Options {
    rounds: usize,
    seconds: u32,
}

/// One number of one run.
#[derive(Clone, Debug)]
struct Sample {
    path: Path,
    placement: &'static str,
    measure: Measure,
    value: f64,
}

/// What is measured, and which way is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Measure {
    Tcp1,
    Tcp4,
    Udp64,
    RequestResponse,
    LatencyP50,
    LatencyP99,
    CpuPerGb,
}

impl Measure {
    const ALL: [Measure; 7] = [
        Measure::Tcp1,
        Measure::Tcp4,
        Measure::Udp64,
        Measure::RequestResponse,
        Measure::LatencyP50,
        Measure::LatencyP99,
        Measure::CpuPerGb,
    ];

    fn name(self) -> &'static str {
        match self {
            Measure::Tcp1 => "TCP 1 stream Gbit/s",
            Measure::Tcp4 => "TCP 4 streams Gbit/s",
            Measure::Udp64 => "UDP 64 B kpkt/s rcvd",
            Measure::RequestResponse => "TCP 1 B req/resp k/s",
            Measure::LatencyP50 => "TCP RR latency p50 us",
            Measure::LatencyP99 => "TCP RR latency p99 us",
            Measure::CpuPerGb => "CPU s per GB (TCP 1)",
        }
    }
}

const PROGRAMS: [&str; 4] = ["from_pod", "from_underlay", "to_pod", "to_underlay"];

pub fn run(quick: bool, json: Option<&std::path::Path>) -> Result<()> {
    if !crate::shell::is_root() {
        bail!("the benchmark builds network namespaces: run it as root");
    }
    let bin = build::daemon(true)?;
    std::env::set_var("FASTPATH_BIN", &bin);
    let options = if quick { Options { rounds: 1, seconds: 1 } } else { Options { rounds: 3, seconds: 3 } };
    println!(
        "bench: {} rounds of {} s per measurement, paths alternating; the kernel path crosses nodes without encapsulation (this kernel has no ipip module), fastpath with IPIP (--trust routes and --trust kernel)",
        options.rounds, options.seconds
    );
    let mut samples = Vec::new();
    let mut program_costs: Vec<(String, u64, u64)> = Vec::new();
    let _stats = BpfStats::enable()?;
    for round in 1..=options.rounds {
        for path in PATHS {
            let setup = setup(path)?;
            for (placement, pair) in
                [("same node", Some(&setup.same_node)), ("cross node", setup.cross_node.as_ref())]
            {
                let Some(pair) = pair else { continue };
                let progress = |what: &str| {
                    eprint!("\r\x1b[2Kbench: round {round}/{}: {path:?}, {placement}: {what}", options.rounds)
                };
                let mut push = |measure, value| samples.push(Sample { path, placement, measure, value });
                progress("TCP, 1 stream");
                let (gbits, cpu_per_gb) = iperf_tcp(pair, 1, options.seconds)?;
                push(Measure::Tcp1, gbits);
                push(Measure::CpuPerGb, cpu_per_gb);
                progress("TCP, 4 streams");
                push(Measure::Tcp4, iperf_tcp(pair, 4, options.seconds)?.0);
                progress("UDP, 64-byte payloads");
                push(Measure::Udp64, iperf_udp_small(pair, options.seconds)? / 1e3);
                progress("TCP request/response, 1 byte");
                let rr = traffic::tcp_request_response(
                    &pair.client.0,
                    &pair.server.0,
                    pair.server.1,
                    Duration::from_secs(u64::from(options.seconds)),
                )?;
                push(Measure::RequestResponse, rr.per_second() / 1e3);
                push(Measure::LatencyP50, rr.percentile_us(0.50));
                push(Measure::LatencyP99, rr.percentile_us(0.99));
            }
            let mode = if path == Path::TrustKernel { "trust kernel" } else { "trust routes" };
            for daemon in &setup._daemons {
                for program in PROGRAMS {
                    for id in daemon.attached_prog_ids(program) {
                        if let Some((time_ns, runs)) = program_run_time(id) {
                            program_costs.push((format!("{program} ({mode})"), time_ns, runs));
                        }
                    }
                }
            }
        }
    }
    eprintln!("\r\x1b[2Kbench: done");
    let rows = summarize(&samples);
    print!("{}", table(&rows));
    let mut programs: Vec<&String> = program_costs.iter().map(|(p, _, _)| p).collect();
    programs.sort();
    programs.dedup();
    for program in programs {
        let (time_ns, runs) = program_costs
            .iter()
            .filter(|(p, _, _)| p == program)
            .fold((0u64, 0u64), |(t, r), (_, time_ns, runs)| (t + time_ns, r + runs));
        if runs > 0 {
            println!(
                "{program}: {:.0} ns per packet over {runs} packets (kernel.bpf_stats_enabled run time)",
                time_ns as f64 / runs as f64
            );
        }
    }
    if let Some(path) = json {
        std::fs::write(path, to_json(&rows, &options))?;
        println!("bench: wrote {}", path.display());
    }
    Ok(())
}

fn setup(path: Path) -> Result<Setup> {
    match path {
        Path::Limit => {
            let a = Netns::new(names::unique("lim-a"))?;
            let b = Netns::new(names::unique("lim-b"))?;
            cmd::ip(
                &a.name,
                &["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b.name],
            )?;
            for (ns, addr) in [(&a, "10.0.0.1/24"), (&b, "10.0.0.2/24")] {
                cmd::ip(&ns.name, &["addr", "add", addr, "dev", "eth0"])?;
                cmd::ip(&ns.name, &["link", "set", "eth0", "up"])?;
            }
            let same_node = Pair {
                client: (a.name.clone(), Ipv4Addr::new(10, 0, 0, 1)),
                server: (b.name.clone(), Ipv4Addr::new(10, 0, 0, 2)),
            };
            Ok(Setup { _limit: vec![a, b], _daemons: vec![], _cluster: None, same_node, cross_node: None })
        }
        Path::Kernel | Path::Fastpath | Path::TrustKernel => {
            let mut spec = match path {
                Path::Kernel => ClusterSpec { proxy_arp: true, ..ClusterSpec::seed() },
                Path::TrustKernel => ClusterSpec::seed(),
                _ => ClusterSpec::seed_fastpath_only(),
            };
            spec.nodes[0].pods.push(Ipv4Addr::new(10, 244, 40, 37));
            let cluster = Cluster::build("bench", &spec)?;
            let daemons = match path.daemon_args() {
                Some(args) => {
                    cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, args)).collect::<Result<_>>()?
                }
                None => vec![],
            };
            let endpoint = |node: usize, pod: usize| {
                let p = &cluster.nodes[node].pods[pod];
                (p.ns.name.clone(), p.ip)
            };
            let same_node = Pair { client: endpoint(0, 0), server: endpoint(0, 1) };
            let cross_node = Some(Pair { client: endpoint(0, 0), server: endpoint(1, 0) });
            Ok(Setup { _limit: vec![], _daemons: daemons, _cluster: Some(cluster), same_node, cross_node })
        }
    }
}

/// TCP throughput with iperf3, in Gbit/s as the receiver counted it, and the machine's
/// system + softirq CPU time per GB received during the run.
fn iperf_tcp(pair: &Pair, streams: u32, seconds: u32) -> Result<(f64, f64)> {
    let (streams, secs) = (streams.to_string(), seconds.to_string());
    let cpu_before = kernel_cpu_seconds()?;
    let json = iperf(pair, &["-t", &secs, "-P", &streams])?;
    let cpu = kernel_cpu_seconds()? - cpu_before;
    let sum = &json["end"]["sum_received"];
    let bps = sum["bits_per_second"].as_f64().context("iperf3 reported no throughput")?;
    let bytes = sum["bytes"].as_f64().context("iperf3 reported no bytes")?;
    Ok((bps / 1e9, cpu / (bytes / 1e9)))
}

/// Packets per second received, UDP with 64-byte payloads, the sender unthrottled.
fn iperf_udp_small(pair: &Pair, seconds: u32) -> Result<f64> {
    let json = iperf(pair, &["-u", "-l", "64", "-b", "0", "-t", &seconds.to_string()])?;
    let sum = &json["end"]["sum"];
    let packets = sum["packets"].as_f64().context("iperf3 reported no packets")?;
    let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
    let secs = sum["seconds"].as_f64().context("iperf3 reported no duration")?;
    Ok((packets - lost) / secs)
}

fn iperf(pair: &Pair, args: &[&str]) -> Result<serde_json::Value> {
    let server = IperfServer::start(&pair.server.0, pair.server.1)?;
    std::thread::sleep(Duration::from_millis(200));
    let addr = pair.server.1.to_string();
    let mut full = vec!["-c", addr.as_str(), "-J"];
    full.extend_from_slice(args);
    let out = cmd::in_ns_ok(&pair.client.0, "iperf3", &full)?;
    drop(server);
    serde_json::from_str(&out).context("iperf3 -J output")
}

/// System plus softirq time of every CPU so far, in seconds (/proc/stat, USER_HZ ticks).
fn kernel_cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cpu = stat.lines().next().context("/proc/stat is empty")?;
    let fields: Vec<f64> = cpu.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq ...
    anyhow::ensure!(fields.len() >= 7, "unexpected /proc/stat: {cpu}");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((fields[2] + fields[6]) / hz)
}

/// `kernel.bpf_stats_enabled` on for the run (the kernel then times every program run), back to
/// what it was afterwards.
struct BpfStats(String);

impl BpfStats {
    fn enable() -> Result<Self> {
        let before = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")?.trim().to_string();
        std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")?;
        Ok(Self(before))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", &self.0);
    }
}

/// (run_time_ns, run_cnt) of a program, from bpftool.
fn program_run_time(id: u32) -> Option<(u64, u64)> {
    let out = cmd::run("bpftool", &["prog", "show", "id", &id.to_string(), "--json"]).ok()?;
    let json: serde_json::Value = serde_json::from_str(&out).ok()?;
    Some((json["run_time_ns"].as_u64()?, json["run_cnt"].as_u64()?))
}

struct IperfServer(Child);

impl IperfServer {
    fn start(ns: &str, addr: Ipv4Addr) -> Result<Self> {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "iperf3", "-s", "-1", "-B", &addr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start iperf3")?;
        Ok(Self(child))
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// Medians of one measure and placement on each path.
#[derive(Clone, Debug)]
struct Row {
    measure: Measure,
    placement: &'static str,
    limit: Option<f64>,
    kernel: Option<f64>,
    fastpath: Option<f64>,
    trusting: Option<f64>,
}

/// A row's numeric columns, in order: table heading and width, JSON key, and whether it is a
/// ratio (shown with an "x").
const COLUMNS: [(&str, usize, &str, bool); 7] = [
    ("limit", 9, "limit", false),
    ("kernel", 9, "kernel", false),
    ("fastpath", 9, "fastpath", false),
    ("fp-trust", 9, "fastpath_trust_kernel", false),
    ("fp/kernel", 10, "fastpath_per_kernel", true),
    ("trust/kern", 10, "fastpath_trust_kernel_per_kernel", true),
    ("fp/limit", 9, "fastpath_per_limit", true),
];

impl Row {
    /// The values of [`COLUMNS`], in their order.
    fn values(&self) -> [Option<f64>; COLUMNS.len()] {
        [
            self.limit,
            self.kernel,
            self.fastpath,
            self.trusting,
            ratio(self.fastpath, self.kernel),
            ratio(self.trusting, self.kernel),
            ratio(self.fastpath, self.limit),
        ]
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn summarize(samples: &[Sample]) -> Vec<Row> {
    let med = |path: Path, measure: Measure, placement: &str| {
        median(
            samples
                .iter()
                .filter(|s| s.path == path && s.measure == measure && s.placement == placement)
                .map(|s| s.value)
                .collect(),
        )
    };
    let mut rows = Vec::new();
    for placement in ["same node", "cross node"] {
        for measure in Measure::ALL {
            let row = Row {
                measure,
                placement,
                // One veth is the limit for both placements.
                limit: med(Path::Limit, measure, "same node"),
                kernel: med(Path::Kernel, measure, placement),
                fastpath: med(Path::Fastpath, measure, placement),
                trusting: med(Path::TrustKernel, measure, placement),
            };
            if row.kernel.is_some() || row.fastpath.is_some() || row.trusting.is_some() {
                rows.push(row);
            }
        }
    }
    rows
}

fn table(rows: &[Row]) -> String {
    let mut out = format!("{:<24} {:<11}", "measure", "pods");
    for (heading, width, _, _) in COLUMNS {
        out.push_str(&format!(" {heading:>width$}"));
    }
    out.push('\n');
    for r in rows {
        out.push_str(&format!("{:<24} {:<11}", r.measure.name(), r.placement));
        for ((_, width, _, is_ratio), value) in COLUMNS.iter().zip(r.values()) {
            let cell =
                value.map_or(
                    "-".to_string(),
                    |v| if *is_ratio { format!("{v:.2}x") } else { format!("{v:.2}") },
                );
            out.push_str(&format!(" {cell:>width$}"));
        }
        out.push('\n');
    }
    out
}

fn to_json(rows: &[Row], options: &Options) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            let fields: Vec<String> = COLUMNS
                .iter()
                .zip(r.values())
                .map(|((_, _, key, _), value)| {
                    format!(r#""{key}":{}"#, value.map_or("null".to_string(), |v| format!("{v:.4}")))
                })
                .collect();
            format!(r#"{{"measure":"{}","pods":"{}",{}}}"#, r.measure.name(), r.placement, fields.join(","))
        })
        .collect();
    format!(
        r#"{{"rounds":{},"seconds_per_measurement":{},"results":[{}]}}"#,
        options.rounds,
        options.seconds,
        items.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(path: Path, placement: &'static str, measure: Measure, value: f64) -> Sample {
        Sample { path, placement, measure, value }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(4.0));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn rows_have_medians_and_ratios_against_kernel_and_limit() {
        let samples = vec![
            sample(Path::Limit, "same node", Measure::Tcp1, 20.0),
            sample(Path::Kernel, "same node", Measure::Tcp1, 10.0),
            sample(Path::Fastpath, "same node", Measure::Tcp1, 15.0),
            sample(Path::Fastpath, "same node", Measure::Tcp1, 14.0),
            sample(Path::Fastpath, "same node", Measure::Tcp1, 99.0),
            sample(Path::Kernel, "cross node", Measure::Tcp1, 8.0),
            sample(Path::Fastpath, "cross node", Measure::Tcp1, 12.0),
            sample(Path::TrustKernel, "cross node", Measure::Tcp1, 4.0),
        ];
        let rows = summarize(&samples);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].fastpath, Some(15.0), "median of 14, 15, 99");
        let t = table(&rows);
        let same = t.lines().nth(1).unwrap();
        assert!(same.contains("20.00") && same.contains("1.50x") && same.contains("0.75x"), "{t}");
        let cross = t.lines().nth(2).unwrap();
        assert!(cross.contains("cross node") && cross.contains("1.50x") && cross.contains("0.50x"), "{t}");
        let json: serde_json::Value =
            serde_json::from_str(&to_json(&rows, &Options { rounds: 3, seconds: 3 })).unwrap();
        assert_eq!(json["results"][0]["fastpath_per_kernel"], 1.5);
        assert_eq!(json["results"][1]["fastpath_trust_kernel_per_kernel"], 0.5);
    }

    #[test]
    fn kernel_cpu_time_is_read() {
        assert!(kernel_cpu_seconds().unwrap() > 0.0);
    }
}
