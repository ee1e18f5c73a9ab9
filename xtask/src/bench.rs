//! `cargo xtask bench`: fastpath beside the kernel paths users run and the physical limit,
//! measured in one run, the paths alternating round by round so drift on a shared machine hits
//! all alike.
//!
//! The headline compares a Calico node's kernel path (`calico-node`: Felix's and kube-proxy's
//! rules, conntrack on every packet) with fastpath in its default mode on the very same rules,
//! so the daemon is the only difference; `--trust routes` is compared with the bare kernel path
//! (no rules at all), and both with one veth pair (`limit`).
//!
//! Pods address each other directly, or through a ClusterIP service (the `svc` rows): the client
//! connects to the service's address, which kube-proxy's rules in the calico-node ruleset DNAT
//! to a backend on the same node or on the other one. Only the two paths with that ruleset have
//! services; under fastpath's default mode the kernel DNATs each connection's first packets and
//! fastpath applies the same translation to the rest.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use fastpath_tests::{
    calico_node::{self, Service},
    cmd, names, traffic, Cluster, ClusterSpec, Counters, Daemon, Netns,
};

use crate::build;

/// The ways a packet can go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Path {
    /// Two namespaces joined by one veth pair: no routing at all.
    #[value(name = "limit")]
    Limit,
    /// Calico's path through the kernel with no netfilter rule (conntrack never runs): proxy_arp,
    /// /32 and block routes, forwarding; across nodes without encapsulation (this kernel has no
    /// ipip module).
    #[value(name = "kernel")]
    Kernel,
    /// The kernel path of a Calico node: [`Path::Kernel`] with the calico-node ruleset
    /// (`tests/src/calico_node.rs`) in every node namespace.
    #[value(name = "calico-node")]
    CalicoNode,
    /// fastpath `--trust routes` on each node, proxy_arp off, the kernel's FORWARD closed, IPIP
    /// across nodes.
    #[value(name = "fp-routes")]
    FastpathRoutes,
    /// fastpath in its default mode (`--trust kernel`, `--ipip follow`) on [`Path::CalicoNode`]'s
    /// cluster and rules: the kernel forwards each flow's first packets through the rules,
    /// fastpath the rest; block routes go via eth0, so across nodes it routes plain, like the
    /// kernel.
    #[value(name = "fp-default")]
    FastpathDefault,
}

const PATHS: [Path; 5] =
    [Path::Limit, Path::Kernel, Path::CalicoNode, Path::FastpathRoutes, Path::FastpathDefault];

impl Path {
    /// Its name in the output and the JSON (and on `cargo xtask profile`'s command line).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Path::Limit => "limit",
            Path::Kernel => "kernel",
            Path::CalicoNode => "calico-node",
            Path::FastpathRoutes => "fp-routes",
            Path::FastpathDefault => "fp-default",
        }
    }

    /// The daemon's flags on this path, if it runs one. The default mode is named anyway: the
    /// test bed's daemon guard would otherwise add `--trust routes`.
    fn daemon_args(self) -> Option<&'static [&'static str]> {
        match self {
            Path::Limit | Path::Kernel | Path::CalicoNode => None,
            Path::FastpathRoutes => Some(&["--trust", "routes"]),
            Path::FastpathDefault => Some(&["--trust", "kernel"]),
        }
    }

    /// Whether every node carries the calico-node ruleset.
    fn has_ruleset(self) -> bool {
        matches!(self, Path::CalicoNode | Path::FastpathDefault)
    }

    /// The seed cluster as this path builds it (none for the limit): Calico's IPIP-mode routes
    /// (plain across nodes for the kernel, which has no ipip module here), or its VXLAN mode.
    fn cluster_spec(self, mode: Mode) -> Option<ClusterSpec> {
        let spec = match (self, mode) {
            (Path::Limit, _) => return None,
            // proxy_arp on, as Calico's CNI sets it; under fastpath its ARP answer comes first.
            (Path::Kernel | Path::CalicoNode | Path::FastpathDefault, Mode::Ipip) => {
                ClusterSpec { proxy_arp: true, ..ClusterSpec::seed() }
            }
            (Path::Kernel | Path::CalicoNode | Path::FastpathDefault, Mode::Vxlan) => {
                ClusterSpec { proxy_arp: true, ..ClusterSpec::seed().with_vxlan() }
            }
            (Path::FastpathRoutes, Mode::Ipip) => ClusterSpec::seed_fastpath_only(),
            (Path::FastpathRoutes, Mode::Vxlan) => ClusterSpec::seed_vxlan_fastpath_only(),
        };
        Some(spec)
    }
}

/// Calico's two overlay modes, each a cluster of its own. In IPIP mode the kernel paths cross
/// nodes plain (this kernel cannot decapsulate IPIP) and `fp-routes` encapsulates; in VXLAN mode
/// every path crosses in VXLAN, the kernel's through its own `vxlan.calico`: like for like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Ipip,
    Vxlan,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Ipip => "ipip",
            Mode::Vxlan => "vxlan",
        }
    }

    /// What a line about this mode's cluster adds to the path's name.
    fn suffix(self) -> &'static str {
        match self {
            Mode::Ipip => "",
            Mode::Vxlan => " (VXLAN mode)",
        }
    }
}

/// Where the two pods of a measurement are, and how the client addresses the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Placement {
    /// Two pods of one node (the limit's one veth pair, on that path).
    #[value(name = "same-node")]
    SameNode,
    /// Pods on two nodes of Calico's IPIP-mode cluster.
    #[value(name = "cross-node")]
    CrossNode,
    /// Pods on two nodes of Calico's VXLAN-mode cluster.
    #[value(name = "cross-vxlan")]
    CrossVxlan,
    /// Client → ClusterIP → a backend on the client's node (calico-node and fp-default only).
    #[value(name = "service-same-node")]
    ServiceSameNode,
    /// Client → ClusterIP → a backend on the other node, in the IPIP-mode cluster (calico-node
    /// and fp-default only).
    #[value(name = "service-cross-node")]
    ServiceCrossNode,
}

/// The rows' placements, in the table's order.
const PLACEMENTS: [Placement; 5] = [
    Placement::SameNode,
    Placement::CrossNode,
    Placement::CrossVxlan,
    Placement::ServiceSameNode,
    Placement::ServiceCrossNode,
];

impl Placement {
    /// Its name in the table's `pods` column and the JSON.
    fn label(self) -> &'static str {
        match self {
            Placement::SameNode => "same node",
            Placement::CrossNode => "cross node",
            Placement::CrossVxlan => "cross VXLAN",
            Placement::ServiceSameNode => "svc same node",
            Placement::ServiceCrossNode => "svc cross node",
        }
    }

    /// The cluster it is measured in.
    fn mode(self) -> Mode {
        match self {
            Placement::CrossVxlan => Mode::Vxlan,
            _ => Mode::Ipip,
        }
    }

    fn through_service(self) -> bool {
        matches!(self, Placement::ServiceSameNode | Placement::ServiceCrossNode)
    }

    /// Whether `path` measures it. Services exist only where kube-proxy's rules are (the
    /// calico-node ruleset); the limit has one veth pair, which stands for every placement.
    fn measured_on(self, path: Path) -> bool {
        match self {
            Placement::SameNode => true,
            Placement::CrossNode | Placement::CrossVxlan => path != Path::Limit,
            Placement::ServiceSameNode | Placement::ServiceCrossNode => path.has_ruleset(),
        }
    }
}

/// The benchmark's two services, last in `KUBE-SERVICES` after the generated ones (so a new
/// connection to them meets every other service's rule first, on both paths alike): port
/// [`SERVICE_PORT`] of each ClusterIP to [`SERVICE_TARGET_PORT`] of its one endpoint.
const SERVICE_SAME_NODE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const SERVICE_CROSS_NODE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
const SERVICE_PORT: u16 = 80;
const SERVICE_TARGET_PORT: u16 = 8080;
/// Where iperf3 listens when no service is in between: its own default.
const IPERF_PORT: u16 = 5201;

/// Two endpoints of one measurement: (namespace, address) of the client and of the server.
pub(crate) struct Pair {
    pub(crate) client: (String, Ipv4Addr),
    pub(crate) server: (String, Ipv4Addr),
    /// The ClusterIP service the client reaches the server through, if any: the client connects
    /// to its address and port, the server listens on the service's target port.
    pub(crate) service: Option<Service>,
}

impl Pair {
    fn direct(client: (String, Ipv4Addr), server: (String, Ipv4Addr)) -> Self {
        Self { client, server, service: None }
    }

    /// Where the server listens: through a service, on its endpoint; otherwise on `port` (0 for
    /// any).
    fn listen(&self, port: u16) -> SocketAddr {
        match &self.service {
            Some(service) => service.backend,
            None => SocketAddr::from((self.server.1, port)),
        }
    }

    /// Where the client connects, when that is not where the server listens.
    fn connect(&self) -> Option<SocketAddr> {
        self.service.as_ref().map(|s| SocketAddr::from((s.cluster_ip, s.port)))
    }

    pub(crate) fn request_response(&self, duration: Duration) -> Result<traffic::RequestResponse> {
        let (client, server) = (&self.client.0, &self.server.0);
        traffic::tcp_request_response_via(client, server, self.listen(0), self.connect(), duration)
    }

    pub(crate) fn connect_request_response(&self, duration: Duration) -> Result<traffic::RequestResponse> {
        let (client, server) = (&self.client.0, &self.server.0);
        traffic::tcp_connect_request_response_via(client, server, self.listen(0), self.connect(), duration)
    }
}

/// A topology set up for one path; dropping it removes everything.
pub(crate) struct Setup {
    _limit: Vec<Netns>,
    pub(crate) daemons: Vec<Daemon>,
    _cluster: Option<Cluster>,
    pub(crate) same_node: Pair,
    pub(crate) cross_node: Option<Pair>,
    /// Through the benchmark's services, when the path has the ruleset: to the backend on the
    /// client's node, and to the one on the other node.
    pub(crate) service_same_node: Option<Pair>,
    pub(crate) service_cross_node: Option<Pair>,
    /// What was installed in each node, when the path has the ruleset.
    ruleset: Option<String>,
}

impl Setup {
    /// The pair measured at `placement` (in this setup's mode), if the path has it.
    pub(crate) fn pair(&self, placement: Placement) -> Option<&Pair> {
        match placement {
            Placement::SameNode => Some(&self.same_node),
            Placement::CrossNode | Placement::CrossVxlan => self.cross_node.as_ref(),
            Placement::ServiceSameNode => self.service_same_node.as_ref(),
            Placement::ServiceCrossNode => self.service_cross_node.as_ref(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    pub(crate) rounds: usize,
    pub(crate) seconds: u32,
    /// Services in the calico-node ruleset.
    pub(crate) services: usize,
}

/// One number of one run.
#[derive(Clone, Debug)]
struct Sample {
    path: Path,
    placement: Placement,
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
    ConnectRate,
    CpuPerGb,
}

impl Measure {
    const ALL: [Measure; 8] = [
        Measure::Tcp1,
        Measure::Tcp4,
        Measure::Udp64,
        Measure::RequestResponse,
        Measure::LatencyP50,
        Measure::LatencyP99,
        Measure::ConnectRate,
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
            Measure::ConnectRate => "TCP CRR kconn/s",
            Measure::CpuPerGb => "CPU s per GB (TCP 1)",
        }
    }
}

pub(crate) const PROGRAMS: [&str; 4] = ["from_pod", "from_underlay", "to_pod", "to_underlay"];

/// Run time the kernel accounted to one program of one daemon (`kernel.bpf_stats_enabled`).
#[derive(Clone, Debug, PartialEq)]
struct ProgramCost {
    path: Path,
    mode: Mode,
    program: &'static str,
    time_ns: u64,
    runs: u64,
}

/// What `cargo xtask bench` is asked for.
pub struct Request {
    pub quick: bool,
    pub rounds: usize,
    /// The paths to measure; none means every one.
    pub paths: Vec<Path>,
    /// The placements to measure; none means every one.
    pub placements: Vec<Placement>,
    pub services: usize,
}

pub fn run(request: &Request, json: Option<&std::path::Path>) -> Result<()> {
    let Request { quick, rounds, services, .. } = *request;
    let paths: Vec<Path> =
        PATHS.into_iter().filter(|p| request.paths.is_empty() || request.paths.contains(p)).collect();
    let placements: Vec<Placement> = PLACEMENTS
        .into_iter()
        .filter(|p| request.placements.is_empty() || request.placements.contains(p))
        .collect();
    if !crate::shell::is_root() {
        bail!("the benchmark builds network namespaces: run it as root");
    }
    let bin = build::daemon(true)?;
    std::env::set_var("FASTPATH_BIN", &bin);
    let (rounds, seconds) = if quick { (1, 1) } else { (rounds, 3) };
    let options = Options { rounds, seconds, services };
    let names: Vec<&str> = paths.iter().map(|p| p.name()).collect();
    println!(
        "bench: {} rounds of {} s per measurement, paths alternating: {}; calico-node and fp-default carry the \
         calico-node ruleset ({} services and the benchmark's 2); in Calico's IPIP mode the kernel paths and \
         fp-default cross nodes plain (this kernel has no ipip module) and fp-routes in IPIP; in its VXLAN mode \
         (cross VXLAN) every path crosses in VXLAN, the kernel through its own vxlan.calico",
        options.rounds,
        options.seconds,
        names.join(", "),
        options.services
    );
    if placements.iter().any(|p| p.through_service()) {
        println!("{}", service_note());
    }
    let mut samples = Vec::new();
    let mut program_costs = Vec::new();
    let mut verdicts: Vec<(Path, Placement, Counters)> = Vec::new();
    let mut ruleset_shown = false;
    let stats = BpfStats::enable()?;
    for round in 1..=options.rounds {
        for &path in &paths {
            for mode in [Mode::Ipip, Mode::Vxlan] {
                let here: Vec<Placement> =
                    placements.iter().copied().filter(|p| p.mode() == mode && p.measured_on(path)).collect();
                if here.is_empty() {
                    continue;
                }
                let setup = setup(path, &options, mode)?;
                if let Some(ruleset) = setup.ruleset.as_ref().filter(|_| !ruleset_shown) {
                    eprintln!("\r\x1b[2Kbench: the calico-node ruleset on each node: {ruleset}");
                    ruleset_shown = true;
                }
                for placement in here {
                    let Some(pair) = setup.pair(placement) else { continue };
                    let progress = |what: &str| {
                        eprint!(
                            "\r\x1b[2Kbench: round {round}/{}: {}, {}: {what}",
                            options.rounds,
                            path.name(),
                            placement.label()
                        )
                    };
                    let before = counters(&setup.daemons)?;
                    measure(pair, &options, progress, &mut |measure, value| {
                        samples.push(Sample { path, placement, measure, value })
                    })?;
                    let after = counters(&setup.daemons)?;
                    for (after, before) in after.iter().zip(&before) {
                        verdicts.push((path, placement, after.since(before)));
                    }
                }
                for daemon in &setup.daemons {
                    for program in PROGRAMS {
                        for id in daemon.attached_prog_ids(program) {
                            if let Some((time_ns, runs)) = program_run_time(id) {
                                program_costs.push(ProgramCost { path, mode, program, time_ns, runs });
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!("\r\x1b[2Kbench: done");
    let rows = summarize(&samples);
    print!("{}", table(&rows));
    let costs = per_packet_costs(&program_costs);
    for cost in &costs {
        println!(
            "{} {}{}: {:.0} ns per packet over {} packets (kernel.bpf_stats_enabled run time)",
            cost.path.name(),
            cost.program,
            cost.mode.suffix(),
            cost.time_ns as f64 / cost.runs as f64,
            cost.runs
        );
    }
    for path in PATHS {
        for placement in PLACEMENTS {
            let counters: Vec<&Counters> = verdicts
                .iter()
                .filter(|(p, at, _)| (*p, *at) == (path, placement))
                .map(|(_, _, c)| c)
                .collect();
            if !counters.is_empty() {
                println!(
                    "{}, {}: ingress verdicts: {}",
                    path.name(),
                    placement.label(),
                    verdict_summary(&counters)
                );
            }
        }
    }
    if let Some(path) = json {
        std::fs::write(path, to_json(&rows, &costs, &options))?;
        println!("bench: wrote {}", path.display());
    }
    // The kernel's run-time accounting adds its own clock reads to every run: off for the
    // decisions' own costs.
    drop(stats);
    decision_costs(quick)
}

/// What the service rows are, printed with the run.
fn service_note() -> String {
    format!(
        "bench: svc rows: the client pod connects to a ClusterIP service (port {SERVICE_PORT}), which \
         kube-proxy's rules in the calico-node ruleset DNAT to its one backend (port {SERVICE_TARGET_PORT}) on \
         the client's node (svc same node) or on the other node (svc cross node); only calico-node and \
         fp-default have those rules (kernel and fp-routes run no kube-proxy: no ClusterIP there), and the \
         limit's one veth stands for every row; no UDP row (the ruleset's services are TCP)"
    )
}

/// The counters of each daemon (none on a path without fastpath).
fn counters(daemons: &[Daemon]) -> Result<Vec<Counters>> {
    daemons.iter().map(Daemon::counters).collect()
}

/// Every measure between the pods of `pair`, each pushed as it is taken.
fn measure(
    pair: &Pair,
    options: &Options,
    progress: impl Fn(&str),
    push: &mut dyn FnMut(Measure, f64),
) -> Result<()> {
    progress("TCP, 1 stream");
    let (gbits, cpu_per_gb) = iperf_tcp(pair, 1, options.seconds)?;
    push(Measure::Tcp1, gbits);
    push(Measure::CpuPerGb, cpu_per_gb);
    progress("TCP, 4 streams");
    push(Measure::Tcp4, iperf_tcp(pair, 4, options.seconds)?.0);
    // The ruleset's services are TCP only.
    if pair.service.is_none() {
        progress("UDP, 64-byte payloads");
        push(Measure::Udp64, iperf_udp_small(pair, options.seconds)? / 1e3);
    }
    let duration = Duration::from_secs(u64::from(options.seconds));
    progress("TCP request/response, 1 byte");
    let rr = pair.request_response(duration)?;
    push(Measure::RequestResponse, rr.per_second() / 1e3);
    push(Measure::LatencyP50, rr.percentile_us(0.50));
    push(Measure::LatencyP99, rr.percentile_us(0.99));
    progress("TCP connect/request/response, 1 byte");
    let crr = pair.connect_request_response(duration)?;
    push(Measure::ConnectRate, crr.per_second() / 1e3);
    Ok(())
}

/// Each decision's own cost, through BPF_PROG_TEST_RUN (`tests/examples/program_cost.rs`).
fn decision_costs(quick: bool) -> Result<()> {
    let example = build::example("program_cost")?;
    let runs = if quick { "2000" } else { "20000" };
    crate::shell::run(Command::new(example).env("FASTPATH_COST_RUNS", runs))
}

/// The benchmark's two services, in front of the backend pod `local` on the client's node and
/// `remote` on the other node.
fn services(local: Ipv4Addr, remote: Ipv4Addr) -> [Service; 2] {
    let service = |name: &str, cluster_ip: Ipv4Addr, backend: Ipv4Addr| {
        let backend = SocketAddrV4::new(backend, SERVICE_TARGET_PORT);
        Service::new(&format!("bench/{name}:http"), cluster_ip, SERVICE_PORT, backend)
    };
    [service("same-node", SERVICE_SAME_NODE, local), service("cross-node", SERVICE_CROSS_NODE, remote)]
}

pub(crate) fn setup(path: Path, options: &Options, mode: Mode) -> Result<Setup> {
    let Some(mut spec) = path.cluster_spec(mode) else { return setup_limit() };
    spec.nodes[0].pods.push(Ipv4Addr::new(10, 244, 40, 37));
    let cluster = Cluster::build("bench", &spec)?;
    let endpoint = |node: usize, pod: usize| {
        let p = &cluster.nodes[node].pods[pod];
        (p.ns.name.clone(), p.ip)
    };
    let (client, local, remote) = (endpoint(0, 0), endpoint(0, 1), endpoint(1, 0));
    let services = services(local.1, remote.1);
    // The rules go in before the daemon starts, as on a node where Calico and kube-proxy run
    // before fastpath is deployed. kube-proxy renders every service on every node.
    let mut ruleset = None;
    if path.has_ruleset() {
        for node in &cluster.nodes {
            let spec =
                services.iter().fold(calico_node::Spec::for_node(node, options.services), |spec, s| {
                    spec.with_service(s.clone())
                });
            let installed = calico_node::install_spec(&node.ns.name, &spec)?;
            ruleset = Some(format!(
                "{} (loaded in {:.2} s)",
                installed.ruleset.summary(),
                installed.took.as_secs_f64()
            ));
        }
    }
    let daemons = match path.daemon_args() {
        Some(args) => cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, args)).collect::<Result<_>>()?,
        None => vec![],
    };
    let through = |server: &(String, Ipv4Addr), service: &Service| {
        path.has_ruleset().then(|| Pair {
            client: client.clone(),
            server: server.clone(),
            service: Some(service.clone()),
        })
    };
    let [to_local, to_remote] = &services;
    Ok(Setup {
        _limit: vec![],
        daemons,
        same_node: Pair::direct(client.clone(), local.clone()),
        cross_node: Some(Pair::direct(client.clone(), remote.clone())),
        service_same_node: through(&local, to_local),
        service_cross_node: through(&remote, to_remote),
        _cluster: Some(cluster),
        ruleset,
    })
}

fn setup_limit() -> Result<Setup> {
    let a = Netns::new(names::unique("lim-a"))?;
    let b = Netns::new(names::unique("lim-b"))?;
    cmd::ip(&a.name, &["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b.name])?;
    for (ns, addr) in [(&a, "10.0.0.1/24"), (&b, "10.0.0.2/24")] {
        cmd::ip(&ns.name, &["addr", "add", addr, "dev", "eth0"])?;
        cmd::ip(&ns.name, &["link", "set", "eth0", "up"])?;
    }
    let same_node = Pair::direct(
        (a.name.clone(), Ipv4Addr::new(10, 0, 0, 1)),
        (b.name.clone(), Ipv4Addr::new(10, 0, 0, 2)),
    );
    Ok(Setup {
        _limit: vec![a, b],
        daemons: vec![],
        _cluster: None,
        same_node,
        cross_node: None,
        service_same_node: None,
        service_cross_node: None,
        ruleset: None,
    })
}

/// TCP throughput with iperf3, in Gbit/s as the receiver counted it, and the machine's
/// system + softirq CPU time per GB received during the run.
pub(crate) fn iperf_tcp(pair: &Pair, streams: u32, seconds: u32) -> Result<(f64, f64)> {
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
pub(crate) fn iperf_udp_small(pair: &Pair, seconds: u32) -> Result<f64> {
    let json = iperf(pair, &["-u", "-l", "64", "-b", "0", "-t", &seconds.to_string()])?;
    let sum = &json["end"]["sum"];
    let packets = sum["packets"].as_f64().context("iperf3 reported no packets")?;
    let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
    let secs = sum["seconds"].as_f64().context("iperf3 reported no duration")?;
    Ok((packets - lost) / secs)
}

fn iperf(pair: &Pair, args: &[&str]) -> Result<serde_json::Value> {
    let listen = pair.listen(IPERF_PORT);
    let server = IperfServer::start(&pair.server.0, listen)?;
    std::thread::sleep(Duration::from_millis(200));
    let connect = pair.connect().unwrap_or(listen);
    let (addr, port) = (connect.ip().to_string(), connect.port().to_string());
    let mut full = vec!["-c", addr.as_str(), "-p", port.as_str(), "-J"];
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
pub(crate) struct BpfStats(String);

impl BpfStats {
    pub(crate) fn enable() -> Result<Self> {
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
pub(crate) fn program_run_time(id: u32) -> Option<(u64, u64)> {
    let out = cmd::run("bpftool", &["prog", "show", "id", &id.to_string(), "--json"]).ok()?;
    let json: serde_json::Value = serde_json::from_str(&out).ok()?;
    Some((json["run_time_ns"].as_u64()?, json["run_cnt"].as_u64()?))
}

struct IperfServer(Child);

impl IperfServer {
    fn start(ns: &str, at: SocketAddr) -> Result<Self> {
        let (addr, port) = (at.ip().to_string(), at.port().to_string());
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "iperf3", "-s", "-1", "-B", &addr, "-p", &port])
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
    placement: Placement,
    /// In the order of [`PATHS`].
    medians: [Option<f64>; PATHS.len()],
}

/// What a column shows: a path's median, or the ratio of two paths' medians.
#[derive(Clone, Copy, Debug)]
enum Value {
    Median(Path),
    Ratio(Path, Path),
}

/// One column of the table and the JSON.
struct Column {
    heading: &'static str,
    width: usize,
    key: &'static str,
    value: Value,
}

/// The table's and the JSON's columns, in order. The headline is `fp/calico`: fastpath's
/// default mode against the Calico node's kernel path, on the same rules.
const COLUMNS: [Column; 8] = [
    Column { heading: "limit", width: 8, key: "limit", value: Value::Median(Path::Limit) },
    Column { heading: "kernel", width: 8, key: "kernel", value: Value::Median(Path::Kernel) },
    Column { heading: "calico", width: 8, key: "calico_node", value: Value::Median(Path::CalicoNode) },
    Column {
        heading: "fp-routes",
        width: 9,
        key: "fastpath_trust_routes",
        value: Value::Median(Path::FastpathRoutes),
    },
    Column {
        heading: "fp-default",
        width: 10,
        key: "fastpath_default",
        value: Value::Median(Path::FastpathDefault),
    },
    Column {
        heading: "fp/calico",
        width: 9,
        key: "fastpath_default_per_calico_node",
        value: Value::Ratio(Path::FastpathDefault, Path::CalicoNode),
    },
    Column {
        heading: "routes/kern",
        width: 11,
        key: "fastpath_trust_routes_per_kernel",
        value: Value::Ratio(Path::FastpathRoutes, Path::Kernel),
    },
    Column {
        heading: "fp/limit",
        width: 8,
        key: "fastpath_default_per_limit",
        value: Value::Ratio(Path::FastpathDefault, Path::Limit),
    },
];

impl Row {
    fn median(&self, path: Path) -> Option<f64> {
        PATHS.iter().position(|p| *p == path).and_then(|i| self.medians[i])
    }

    /// The values of [`COLUMNS`], in their order.
    fn values(&self) -> [Option<f64>; COLUMNS.len()] {
        COLUMNS.each_ref().map(|column| match column.value {
            Value::Median(path) => self.median(path),
            Value::Ratio(a, b) => ratio(self.median(a), self.median(b)),
        })
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn summarize(samples: &[Sample]) -> Vec<Row> {
    let med = |path: Path, measure: Measure, placement: Placement| {
        median(
            samples
                .iter()
                .filter(|s| s.path == path && s.measure == measure && s.placement == placement)
                .map(|s| s.value)
                .collect(),
        )
    };
    let mut rows = Vec::new();
    for placement in PLACEMENTS {
        for measure in Measure::ALL {
            // One veth is the limit for every placement.
            let medians = PATHS.map(|path| {
                med(path, measure, if path == Path::Limit { Placement::SameNode } else { placement })
            });
            let row = Row { measure, placement, medians };
            if PATHS.iter().any(|p| *p != Path::Limit && row.median(*p).is_some()) {
                rows.push(row);
            }
        }
    }
    rows
}

/// Run time per packet of each program on each path, over every daemon and round.
fn per_packet_costs(costs: &[ProgramCost]) -> Vec<ProgramCost> {
    let mut totals: Vec<ProgramCost> = Vec::new();
    for cost in costs {
        match totals.iter_mut().find(|t| (t.path, t.mode, t.program) == (cost.path, cost.mode, cost.program))
        {
            Some(total) => {
                total.time_ns += cost.time_ns;
                total.runs += cost.runs;
            }
            None => totals.push(cost.clone()),
        }
    }
    totals.retain(|t| t.runs > 0);
    totals
}

/// The verdicts that carry a pod's packet on the fast path.
const FAST_PATH: [&str; 7] = [
    "redirected_local",
    "encapsulated",
    "encapsulated_vxlan",
    "routed_underlay",
    "decapsulated",
    "decapsulated_vxlan",
    "routed_from_underlay",
];

/// What the ingress programs did with the packets they saw, over `counters` (every daemon of
/// a path, every round): the share the fast path carried, then every verdict with packets,
/// most first. Shows where `--trust kernel` leaves packets to the kernel.
fn verdict_summary(counters: &[&Counters]) -> String {
    let mut totals: Vec<(&str, u64)> = Vec::new();
    for counters in counters {
        for (reason, count) in &counters.0 {
            let (is_fast, is_pass) = (FAST_PATH.contains(&reason.as_str()), reason.starts_with("passed_"));
            if count.packets == 0 || !(is_fast || is_pass || reason.starts_with("dropped_")) {
                continue;
            }
            match totals.iter_mut().find(|(r, _)| r == reason) {
                Some((_, total)) => *total += count.packets,
                None => totals.push((reason, count.packets)),
            }
        }
    }
    totals.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let all: u64 = totals.iter().map(|(_, n)| n).sum();
    let fast: u64 = totals.iter().filter(|(r, _)| FAST_PATH.contains(r)).map(|(_, n)| n).sum();
    let share = if all > 0 { 100.0 * fast as f64 / all as f64 } else { 0.0 };
    let each: Vec<String> = totals.iter().map(|(r, n)| format!("{r} {n}")).collect();
    format!("{share:.1} % by the fast path ({})", each.join(", "))
}

fn table(rows: &[Row]) -> String {
    let mut out = format!("{:<24} {:<14}", "measure", "pods");
    for column in &COLUMNS {
        out.push_str(&format!(" {:>width$}", column.heading, width = column.width));
    }
    out.push('\n');
    for r in rows {
        out.push_str(&format!("{:<24} {:<14}", r.measure.name(), r.placement.label()));
        for (column, value) in COLUMNS.iter().zip(r.values()) {
            let cell = value.map_or("-".to_string(), |v| match column.value {
                Value::Ratio(..) => format!("{v:.2}x"),
                Value::Median(_) => format!("{v:.2}"),
            });
            out.push_str(&format!(" {cell:>width$}", width = column.width));
        }
        out.push('\n');
    }
    out
}

fn to_json(rows: &[Row], costs: &[ProgramCost], options: &Options) -> String {
    let number = |value: Option<f64>| value.map_or(serde_json::Value::Null, |v| serde_json::json!(v));
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut item = serde_json::Map::new();
            item.insert("measure".into(), r.measure.name().into());
            item.insert("pods".into(), r.placement.label().into());
            for (column, value) in COLUMNS.iter().zip(r.values()) {
                item.insert(column.key.into(), number(value));
            }
            serde_json::Value::Object(item)
        })
        .collect();
    let programs: Vec<serde_json::Value> = costs
        .iter()
        .map(|c| {
            serde_json::json!({
                "path": c.path.name(),
                "mode": c.mode.name(),
                "program": c.program,
                "ns_per_packet": c.time_ns as f64 / c.runs as f64,
                "packets": c.runs,
            })
        })
        .collect();
    serde_json::json!({
        "rounds": options.rounds,
        "seconds_per_measurement": options.seconds,
        "services": options.services,
        "results": results,
        "programs": programs,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(path: Path, placement: Placement, measure: Measure, value: f64) -> Sample {
        Sample { path, placement, measure, value }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(4.0));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn rows_have_medians_and_the_three_ratios() {
        let samples = vec![
            sample(Path::Limit, Placement::SameNode, Measure::Tcp1, 20.0),
            sample(Path::Kernel, Placement::SameNode, Measure::Tcp1, 10.0),
            sample(Path::CalicoNode, Placement::SameNode, Measure::Tcp1, 8.0),
            sample(Path::FastpathRoutes, Placement::SameNode, Measure::Tcp1, 12.0),
            sample(Path::FastpathDefault, Placement::SameNode, Measure::Tcp1, 15.0),
            sample(Path::FastpathDefault, Placement::SameNode, Measure::Tcp1, 14.0),
            sample(Path::FastpathDefault, Placement::SameNode, Measure::Tcp1, 99.0),
            sample(Path::Limit, Placement::SameNode, Measure::ConnectRate, 10.0),
            sample(Path::CalicoNode, Placement::CrossNode, Measure::ConnectRate, 4.0),
            sample(Path::FastpathDefault, Placement::CrossNode, Measure::ConnectRate, 5.0),
        ];
        let rows = summarize(&samples);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].median(Path::FastpathDefault), Some(15.0), "median of 14, 15, 99");
        let t = table(&rows);
        let same = t.lines().nth(1).unwrap();
        // fp-default / calico, fp-routes / kernel, fp-default / limit
        assert!(same.ends_with("1.88x       1.20x    0.75x"), "{t}");
        let cross = t.lines().nth(2).unwrap();
        assert!(cross.starts_with("TCP CRR kconn/s") && cross.contains("cross node"), "{t}");
        assert!(
            cross.contains("10.00") && cross.ends_with("1.25x           -    0.50x"),
            "limit for both: {t}"
        );
        let options = Options { rounds: 3, seconds: 3, services: 1000 };
        let costs = [ProgramCost {
            path: Path::FastpathDefault,
            mode: Mode::Ipip,
            program: "from_pod",
            time_ns: 3000,
            runs: 20,
        }];
        let json: serde_json::Value = serde_json::from_str(&to_json(&rows, &costs, &options)).unwrap();
        assert_eq!(json["services"], 1000);
        assert_eq!(json["results"][0]["fastpath_default_per_calico_node"], 1.875);
        assert_eq!(json["results"][0]["fastpath_trust_routes_per_kernel"], 1.2);
        assert_eq!(json["results"][0]["fastpath_default_per_limit"], 0.75);
        assert_eq!(json["results"][0]["calico_node"], 8.0);
        assert_eq!(json["results"][1]["kernel"], serde_json::Value::Null);
        assert_eq!(json["programs"][0]["path"], "fp-default");
        assert_eq!(json["programs"][0]["ns_per_packet"], 150.0);
    }

    #[test]
    fn service_rows_compare_calico_node_and_fp_default_below_the_direct_rows() {
        let samples = vec![
            sample(Path::Limit, Placement::SameNode, Measure::Tcp1, 20.0),
            sample(Path::CalicoNode, Placement::ServiceCrossNode, Measure::Tcp1, 8.0),
            sample(Path::FastpathDefault, Placement::ServiceCrossNode, Measure::Tcp1, 10.0),
            sample(Path::CalicoNode, Placement::CrossNode, Measure::Tcp1, 9.0),
        ];
        let rows = summarize(&samples);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].placement, rows[1].placement),
            (Placement::CrossNode, Placement::ServiceCrossNode)
        );
        let t = table(&rows);
        let service = t.lines().nth(2).unwrap();
        assert!(service.starts_with("TCP 1 stream Gbit/s      svc cross node "), "{t}");
        // limit, kernel, calico, fp-routes, fp-default, fp/calico, routes/kern, fp/limit
        assert_eq!(
            service.split_whitespace().skip(7).collect::<Vec<_>>(),
            ["20.00", "-", "8.00", "-", "10.00", "1.25x", "-", "0.50x"],
            "{t}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&to_json(&rows, &[], &Options { rounds: 1, seconds: 1, services: 0 }))
                .unwrap();
        assert_eq!(json["results"][1]["pods"], "svc cross node");
        assert_eq!(json["results"][1]["fastpath_default_per_calico_node"], 1.25);
    }

    #[test]
    fn services_exist_only_on_the_paths_with_kube_proxys_rules() {
        for placement in PLACEMENTS {
            for path in PATHS {
                let expected = match placement {
                    Placement::SameNode => true,
                    Placement::CrossNode | Placement::CrossVxlan => path != Path::Limit,
                    Placement::ServiceSameNode | Placement::ServiceCrossNode => {
                        matches!(path, Path::CalicoNode | Path::FastpathDefault)
                    }
                };
                assert_eq!(placement.measured_on(path), expected, "{placement:?} on {path:?}");
            }
            assert_eq!(placement.mode() == Mode::Vxlan, placement == Placement::CrossVxlan);
            assert_eq!(
                <Placement as clap::ValueEnum>::from_str(&placement.label().replace(' ', "-"), true).ok(),
                (!placement.through_service()).then_some(placement),
                "the direct rows' flags are their labels"
            );
        }
        for (flag, placement) in [
            ("service-same-node", Placement::ServiceSameNode),
            ("service-cross-node", Placement::ServiceCrossNode),
        ] {
            assert_eq!(<Placement as clap::ValueEnum>::from_str(flag, false), Ok(placement));
        }
    }

    #[test]
    fn a_service_pair_connects_to_the_cluster_ip_and_listens_on_the_endpoint() {
        let (local, remote) = (Ipv4Addr::new(10, 244, 40, 37), Ipv4Addr::new(10, 244, 166, 150));
        let [to_local, to_remote] = services(local, remote);
        let client = ("client".to_string(), Ipv4Addr::new(10, 244, 40, 36));
        let pair =
            Pair { client: client.clone(), server: ("server".into(), remote), service: Some(to_remote) };
        assert_eq!(pair.connect(), Some("10.96.0.11:80".parse().unwrap()));
        assert_eq!(pair.listen(IPERF_PORT), "10.244.166.150:8080".parse().unwrap());
        let direct = Pair::direct(client, ("server".into(), remote));
        assert_eq!(
            (direct.connect(), direct.listen(IPERF_PORT)),
            (None, "10.244.166.150:5201".parse().unwrap())
        );
        // kube-proxy's rules for them, last in KUBE-SERVICES after the generated ones.
        let spec = calico_node::Spec::new(&[], 3).with_service(to_local).with_service(pair.service.unwrap());
        let rules = calico_node::Ruleset::build(&spec).render();
        let portals: Vec<&str> = rules.lines().filter(|l| l.starts_with("-A KUBE-SERVICES ")).collect();
        assert!(portals[3].contains("-d 10.96.0.10/32 --dport 80"), "{portals:?}");
        assert!(portals[4].contains("-d 10.96.0.11/32 --dport 80"), "{portals:?}");
        for backend in ["10.244.40.37:8080", "10.244.166.150:8080"] {
            assert!(rules.contains(&format!("-j DNAT --to-destination {backend}")), "{backend}");
        }
    }

    #[test]
    fn the_table_and_the_json_share_one_list_of_columns() {
        let rows = summarize(&[sample(Path::Kernel, Placement::SameNode, Measure::Udp64, 1.0)]);
        let heading = table(&rows).lines().next().unwrap().to_string();
        let json: serde_json::Value =
            serde_json::from_str(&to_json(&rows, &[], &Options { rounds: 1, seconds: 1, services: 0 }))
                .unwrap();
        for column in &COLUMNS {
            assert!(heading.contains(column.heading), "{heading}");
            assert!(json["results"][0].get(column.key).is_some(), "{json}");
        }
        assert_eq!(json["results"][0].as_object().unwrap().len(), COLUMNS.len() + 2);
    }

    #[test]
    fn every_measure_of_the_targets_is_measured() {
        for measure in [
            Measure::Tcp1,
            Measure::Udp64,
            Measure::RequestResponse,
            Measure::LatencyP99,
            Measure::ConnectRate,
            Measure::CpuPerGb,
        ] {
            assert!(Measure::ALL.contains(&measure), "{measure:?}");
        }
        // Each headline ratio compares two paths the run measures.
        for column in &COLUMNS {
            if let Value::Ratio(a, b) = column.value {
                assert!(PATHS.contains(&a) && PATHS.contains(&b) && a != b);
            }
        }
    }

    #[test]
    fn only_the_default_mode_path_shares_the_calico_node_paths_cluster_and_rules() {
        for mode in [Mode::Ipip, Mode::Vxlan] {
            let calico = Path::CalicoNode.cluster_spec(mode).unwrap();
            let default = Path::FastpathDefault.cluster_spec(mode).unwrap();
            assert_eq!(
                format!("{calico:?}"),
                format!("{default:?}"),
                "the daemon must be the only difference"
            );
            let kernel = Path::Kernel.cluster_spec(mode).unwrap();
            assert_eq!(format!("{kernel:?}"), format!("{calico:?}"), "and the rules, on the kernel paths");
        }
        assert!(Path::CalicoNode.has_ruleset() && Path::FastpathDefault.has_ruleset());
        assert!(!Path::Kernel.has_ruleset() && !Path::FastpathRoutes.has_ruleset());
        assert_eq!(Path::CalicoNode.daemon_args(), None);
        assert_eq!(Path::FastpathDefault.daemon_args(), Some(&["--trust", "kernel"][..]));
        assert_eq!(Path::FastpathRoutes.daemon_args(), Some(&["--trust", "routes"][..]));
        assert!(Path::Limit.cluster_spec(Mode::Ipip).is_none());
    }

    #[test]
    fn program_costs_add_up_per_path_and_program() {
        let cost =
            |path, program, time_ns, runs| ProgramCost { path, mode: Mode::Ipip, program, time_ns, runs };
        let totals = per_packet_costs(&[
            cost(Path::FastpathDefault, "from_pod", 100, 1),
            cost(Path::FastpathDefault, "from_pod", 500, 3),
            cost(Path::FastpathRoutes, "from_pod", 50, 1),
            cost(Path::FastpathRoutes, "to_pod", 0, 0),
        ]);
        assert_eq!(
            totals,
            [cost(Path::FastpathDefault, "from_pod", 600, 4), cost(Path::FastpathRoutes, "from_pod", 50, 1)]
        );
    }

    #[test]
    fn verdicts_add_up_over_daemons_with_the_fast_path_share_first() {
        let node1 = Counters::parse(
            r#"{"redirected_local":{"packets":60,"bytes":0},"passed_flow_pending":{"packets":10,"bytes":0},
                "arp_replied":{"packets":5,"bytes":0},"flow_approved":{"packets":7,"bytes":0},
                "passed_no_route":{"packets":0,"bytes":0}}"#,
        )
        .unwrap();
        let node2 = Counters::parse(
            r#"{"routed_underlay":{"packets":20,"bytes":0},"passed_underlay_other":{"packets":10,"bytes":0}}"#,
        )
        .unwrap();
        assert_eq!(
            verdict_summary(&[&node1, &node2]),
            "80.0 % by the fast path (redirected_local 60, routed_underlay 20, passed_flow_pending 10, \
             passed_underlay_other 10)"
        );
        assert_eq!(verdict_summary(&[]), "0.0 % by the fast path ()");
    }

    #[test]
    fn kernel_cpu_time_is_read() {
        assert!(kernel_cpu_seconds().unwrap() > 0.0);
    }
}
