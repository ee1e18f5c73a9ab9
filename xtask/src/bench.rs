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
//!
//! The IPv6 rows (`v6`) measure the same paths in dual-stack clusters, over the pods' IPv6
//! addresses: on one node, and across nodes in IPv6 VXLAN (`vxlan-v6.calico`); on the
//! calico-node paths every node holds the ruleset of both families, as a dual-stack Calico
//! node does.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use fastpath_tests::{
    calico_node::{self, Family, Service},
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
    /// (plain across nodes for the kernel, which has no ipip module here), or its VXLAN mode;
    /// in dual stack for IPv6 (IPv6 plain across nodes beside IPIP, in IPv6 VXLAN beside VXLAN;
    /// the bench builds only the latter).
    fn cluster_spec(self, mode: Mode, family: Family) -> Option<ClusterSpec> {
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
        Some(spec.with_family(family))
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
}

/// The clusters of one path, in the order a round builds them: each mode for IPv4, then VXLAN
/// mode in dual stack for the IPv6 rows (one cluster for both, as a dual-stack Calico cluster in
/// VXLAN mode carries IPv6 in `vxlan-v6.calico`).
const CLUSTERS: [(Mode, Family); 3] =
    [(Mode::Ipip, Family::Ipv4), (Mode::Vxlan, Family::Ipv4), (Mode::Vxlan, Family::Ipv6)];

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
    /// Two pods of one node over IPv6, in the dual-stack VXLAN-mode cluster (pod MTU 1430; the
    /// limit's veth pair over IPv6, on that path).
    #[value(name = "same-node-v6")]
    SameNodeV6,
    /// Pods on two nodes over IPv6, in IPv6 VXLAN (`vxlan-v6.calico`): the dual-stack
    /// VXLAN-mode cluster.
    #[value(name = "cross-vxlan-v6")]
    CrossVxlanV6,
}

/// The rows' placements, in the table's order.
const PLACEMENTS: [Placement; 7] = [
    Placement::SameNode,
    Placement::CrossNode,
    Placement::CrossVxlan,
    Placement::ServiceSameNode,
    Placement::ServiceCrossNode,
    Placement::SameNodeV6,
    Placement::CrossVxlanV6,
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
            Placement::SameNodeV6 => "same node v6",
            Placement::CrossVxlanV6 => "cross VXLAN v6",
        }
    }

    /// The overlay mode of the cluster it is measured in.
    pub(crate) fn mode(self) -> Mode {
        match self {
            Placement::CrossVxlan | Placement::SameNodeV6 | Placement::CrossVxlanV6 => Mode::Vxlan,
            _ => Mode::Ipip,
        }
    }

    /// The family the pods address each other in (IPv6 in a dual-stack cluster).
    pub(crate) fn family(self) -> Family {
        match self {
            Placement::SameNodeV6 | Placement::CrossVxlanV6 => Family::Ipv6,
            _ => Family::Ipv4,
        }
    }

    /// The same-node placement of its family: where the limit (one veth pair) stands for it.
    fn same_node(self) -> Placement {
        match self.family() {
            Family::Ipv4 => Placement::SameNode,
            Family::Ipv6 => Placement::SameNodeV6,
        }
    }

    fn through_service(self) -> bool {
        matches!(self, Placement::ServiceSameNode | Placement::ServiceCrossNode)
    }

    /// Whether `path` measures it. Services exist only where kube-proxy's rules are (the
    /// calico-node ruleset); the limit has one veth pair, which stands for every placement.
    fn measured_on(self, path: Path) -> bool {
        match self {
            Placement::SameNode | Placement::SameNodeV6 => true,
            Placement::CrossNode | Placement::CrossVxlan | Placement::CrossVxlanV6 => path != Path::Limit,
            Placement::ServiceSameNode | Placement::ServiceCrossNode => path.has_ruleset(),
        }
    }
}

/// The benchmark's two services, last in `KUBE-SERVICES` after the generated ones (so a new
/// connection to them meets every other service's rule first, on both paths alike): port
/// [`SERVICE_PORT`] of each ClusterIP to [`SERVICE_TARGET_PORT`] of its one endpoint. In a
/// dual-stack cluster they are dual-stack services: their IPv6 halves are in the IPv6 ruleset.
const SERVICE_SAME_NODE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const SERVICE_CROSS_NODE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
const SERVICE_PORT: u16 = 80;
const SERVICE_TARGET_PORT: u16 = 8080;
/// Where iperf3 listens when no service is in between: its own default.
const IPERF_PORT: u16 = 5201;

/// Two endpoints of one measurement: (namespace, address) of the client and of the server, both
/// of one family.
pub(crate) struct Pair {
    pub(crate) client: (String, IpAddr),
    pub(crate) server: (String, IpAddr),
    /// The ClusterIP service the client reaches the server through, if any: the client connects
    /// to its address and port, the server listens on the service's target port.
    pub(crate) service: Option<Service>,
}

impl Pair {
    fn direct(client: (String, IpAddr), server: (String, IpAddr)) -> Self {
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

/// A topology set up for one path, in one mode and family; dropping it removes everything.
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
    /// The pair measured at `placement` (in this setup's mode and family), if the path has it.
    pub(crate) fn pair(&self, placement: Placement) -> Option<&Pair> {
        match placement {
            Placement::SameNode | Placement::SameNodeV6 => Some(&self.same_node),
            Placement::CrossNode | Placement::CrossVxlan | Placement::CrossVxlanV6 => {
                self.cross_node.as_ref()
            }
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

/// What runs between two pods: each of the bench's measures comes from one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// 1-byte request/response on one TCP connection.
    Rr,
    /// A new TCP connection per 1-byte request/response.
    Crr,
    /// One TCP stream (iperf3).
    Stream,
    /// Four TCP streams (iperf3).
    Streams4,
    /// UDP, 64-byte payloads, unthrottled (iperf3).
    Udp,
}

impl Workload {
    /// In the order the bench runs them.
    const ALL: [Workload; 5] =
        [Workload::Stream, Workload::Streams4, Workload::Udp, Workload::Rr, Workload::Crr];

    /// What the progress line says while it runs.
    fn describe(self) -> &'static str {
        match self {
            Workload::Stream => "TCP, 1 stream",
            Workload::Streams4 => "TCP, 4 streams",
            Workload::Udp => "UDP, 64-byte payloads",
            Workload::Rr => "TCP request/response, 1 byte",
            Workload::Crr => "TCP connect/request/response, 1 byte",
        }
    }

    /// Its column in the program cost table, its key in the JSON.
    fn label(self) -> &'static str {
        match self {
            Workload::Stream => "TCP 1",
            Workload::Streams4 => "TCP 4",
            Workload::Udp => "UDP 64",
            Workload::Rr => "RR",
            Workload::Crr => "CRR",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Workload::Stream => "tcp_1_stream",
            Workload::Streams4 => "tcp_4_streams",
            Workload::Udp => "udp_64",
            Workload::Rr => "request_response",
            Workload::Crr => "connect_request_response",
        }
    }

    /// Whether it runs between the pods of `pair`: the ruleset's services are TCP only.
    fn runs_on(self, pair: &Pair) -> bool {
        self != Workload::Udp || pair.service.is_none()
    }
}

pub(crate) const PROGRAMS: [&str; 4] = ["from_pod", "from_underlay", "to_pod", "to_underlay"];

/// Run time the kernel accounted to one program (over every daemon of a path) while one
/// workload ran at one placement (`kernel.bpf_stats_enabled`).
#[derive(Clone, Debug, PartialEq)]
struct ProgramCost {
    path: Path,
    placement: Placement,
    workload: Workload,
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
         (cross VXLAN) every path crosses in VXLAN, the kernel through its own vxlan.calico; the v6 rows run over \
         IPv6 in the same clusters built dual stack (cross VXLAN v6: in vxlan-v6.calico), the calico-node \
         ruleset rendered for ip6tables beside iptables",
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
    let mut rulesets_shown = Vec::new();
    let stats = BpfStats::enable()?;
    for round in 1..=options.rounds {
        for &path in &paths {
            for (mode, family) in CLUSTERS {
                let here: Vec<Placement> = placements
                    .iter()
                    .copied()
                    .filter(|p| (p.mode(), p.family()) == (mode, family) && p.measured_on(path))
                    .collect();
                if here.is_empty() {
                    continue;
                }
                let setup = setup(path, &options, mode, family)?;
                if let Some(ruleset) = setup.ruleset.as_ref().filter(|_| !rulesets_shown.contains(&family)) {
                    eprintln!("\r\x1b[2Kbench: the calico-node ruleset on each node: {ruleset}");
                    rulesets_shown.push(family);
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
                    measure(
                        pair,
                        &options,
                        &setup.daemons,
                        progress,
                        &mut |measure, value| samples.push(Sample { path, placement, measure, value }),
                        &mut |workload, program, (time_ns, runs)| {
                            program_costs.push(ProgramCost {
                                path,
                                placement,
                                workload,
                                program,
                                time_ns,
                                runs,
                            })
                        },
                    )?;
                    let after = counters(&setup.daemons)?;
                    for (after, before) in after.iter().zip(&before) {
                        verdicts.push((path, placement, after.since(before)));
                    }
                }
            }
        }
    }
    eprintln!("\r\x1b[2Kbench: done");
    let rows = summarize(&samples);
    print!("{}", table(&rows));
    let costs = per_packet_costs(&program_costs);
    if !costs.is_empty() {
        print!("{}", cost_table(&costs));
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

/// Every workload between the pods of `pair`: each measure pushed as it is taken, and each
/// program's run time over `daemons` while each workload ran (run time, runs).
fn measure(
    pair: &Pair,
    options: &Options,
    daemons: &[Daemon],
    progress: impl Fn(&str),
    push: &mut dyn FnMut(Measure, f64),
    cost: &mut dyn FnMut(Workload, &'static str, (u64, u64)),
) -> Result<()> {
    for workload in Workload::ALL.into_iter().filter(|w| w.runs_on(pair)) {
        progress(workload.describe());
        let before = program_runs(daemons);
        for (measure, value) in run_workload(pair, workload, options.seconds)? {
            push(measure, value);
        }
        for ((program, (time, runs)), (_, (time_before, runs_before))) in
            program_runs(daemons).into_iter().zip(before)
        {
            cost(workload, program, (time.saturating_sub(time_before), runs.saturating_sub(runs_before)));
        }
    }
    Ok(())
}

/// The measures `workload` gives between the pods of `pair`, run for `seconds`.
fn run_workload(pair: &Pair, workload: Workload, seconds: u32) -> Result<Vec<(Measure, f64)>> {
    let duration = Duration::from_secs(u64::from(seconds));
    Ok(match workload {
        Workload::Stream => {
            let (gbits, cpu_per_gb) = iperf_tcp(pair, 1, seconds)?;
            vec![(Measure::Tcp1, gbits), (Measure::CpuPerGb, cpu_per_gb)]
        }
        Workload::Streams4 => vec![(Measure::Tcp4, iperf_tcp(pair, 4, seconds)?.0)],
        Workload::Udp => vec![(Measure::Udp64, iperf_udp_small(pair, seconds)? / 1e3)],
        Workload::Rr => {
            let rr = pair.request_response(duration)?;
            vec![
                (Measure::RequestResponse, rr.per_second() / 1e3),
                (Measure::LatencyP50, rr.percentile_us(0.50)),
                (Measure::LatencyP99, rr.percentile_us(0.99)),
            ]
        }
        Workload::Crr => {
            vec![(Measure::ConnectRate, pair.connect_request_response(duration)?.per_second() / 1e3)]
        }
    })
}

/// Run time and runs of every program the daemons attached, summed over them, by program name
/// in the order of [`PROGRAMS`].
pub(crate) fn program_runs(daemons: &[Daemon]) -> Vec<(&'static str, (u64, u64))> {
    PROGRAMS
        .into_iter()
        .map(|program| {
            let ids = daemons.iter().flat_map(|d| d.attached_prog_ids(program));
            let sum =
                ids.filter_map(program_run_time).fold((0, 0), |(t, r), (time, runs)| (t + time, r + runs));
            (program, sum)
        })
        .collect()
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
        let backend = SocketAddr::from((backend, SERVICE_TARGET_PORT));
        Service::new(&format!("bench/{name}:http"), cluster_ip, SERVICE_PORT, backend)
    };
    [service("same-node", SERVICE_SAME_NODE, local), service("cross-node", SERVICE_CROSS_NODE, remote)]
}

/// The families whose rulesets a node of a cluster built for `family` holds: IPv4's alone, or
/// both in dual stack.
fn ruleset_families(family: Family) -> &'static [Family] {
    match family {
        Family::Ipv4 => &[Family::Ipv4],
        Family::Ipv6 => &Family::BOTH,
    }
}

/// `path`'s cluster in `mode` (dual stack for `family` IPv6), its rules and daemons, and the
/// pairs of pods that address each other in `family`.
pub(crate) fn setup(path: Path, options: &Options, mode: Mode, family: Family) -> Result<Setup> {
    let Some(mut spec) = path.cluster_spec(mode, family) else { return setup_limit(family) };
    spec.nodes[0].pods.push(Ipv4Addr::new(10, 244, 40, 37));
    let cluster = Cluster::build("bench", &spec)?;
    let pod = |node: usize, pod: usize| &cluster.nodes[node].pods[pod];
    let endpoint = |node: usize, index: usize| -> Result<(String, IpAddr)> {
        let p = pod(node, index);
        let address = p.address(family).with_context(|| format!("pod {} has no {family:?} address", p.ip))?;
        Ok((p.ns.name.clone(), address))
    };
    let (client, local, remote) = (endpoint(0, 0)?, endpoint(0, 1)?, endpoint(1, 0)?);
    let services = services(pod(0, 1).ip, pod(1, 0).ip);
    // The rules go in before the daemon starts, as on a node where Calico and kube-proxy run
    // before fastpath is deployed. kube-proxy renders every service on every node.
    let mut ruleset = None;
    if path.has_ruleset() {
        for node in &cluster.nodes {
            let mut loaded = Vec::new();
            for &family in ruleset_families(family) {
                let spec = services
                    .iter()
                    .fold(calico_node::Spec::for_node(node, options.services), |spec, s| {
                        spec.with_service(s.clone())
                    })
                    .in_family(family);
                let installed = calico_node::install_spec(&node.ns.name, &spec)?;
                loaded.push(format!(
                    "{}: {} (loaded in {:.2} s)",
                    family.name(),
                    installed.ruleset.summary(),
                    installed.took.as_secs_f64()
                ));
            }
            ruleset = Some(loaded.join("; "));
        }
    }
    let daemons = match path.daemon_args() {
        Some(args) => cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, args)).collect::<Result<_>>()?,
        None => vec![],
    };
    let through = |server: &(String, IpAddr), service: &Service| {
        path.has_ruleset().then(|| Pair {
            client: client.clone(),
            server: server.clone(),
            service: Some(service.in_family(family)),
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

/// The limit's two ends: (IPv4, IPv6) address of each, on one /24 and one /64.
const LIMIT_ADDRESSES: [(Ipv4Addr, Ipv6Addr); 2] = [
    (Ipv4Addr::new(10, 0, 0, 1), Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
    (Ipv4Addr::new(10, 0, 0, 2), Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
];

/// The limit: two namespaces joined by one veth pair, addressed in `family` (IPv6 without
/// duplicate address detection, so it is usable at once).
fn setup_limit(family: Family) -> Result<Setup> {
    let a = Netns::new(names::unique("lim-a"))?;
    let b = Netns::new(names::unique("lim-b"))?;
    cmd::ip(&a.name, &["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b.name])?;
    let mut ends = Vec::new();
    for (ns, (v4, v6)) in [&a, &b].into_iter().zip(LIMIT_ADDRESSES) {
        let address = match family {
            Family::Ipv4 => {
                cmd::ip(&ns.name, &["addr", "add", &format!("{v4}/24"), "dev", "eth0"])?;
                IpAddr::V4(v4)
            }
            Family::Ipv6 => {
                cmd::sysctl(&ns.name, "net.ipv6.conf.all.disable_ipv6", "0")?;
                cmd::ip(&ns.name, &["-6", "addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"])?;
                IpAddr::V6(v6)
            }
        };
        cmd::ip(&ns.name, &["link", "set", "eth0", "up"])?;
        ends.push((ns.name.clone(), address));
    }
    let [client, server]: [(String, IpAddr); 2] = ends.try_into().expect("two ends");
    Ok(Setup {
        _limit: vec![a, b],
        daemons: vec![],
        _cluster: None,
        same_node: Pair::direct(client, server),
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
            // One veth is the limit for every placement of its family.
            let medians = PATHS.map(|path| {
                med(path, measure, if path == Path::Limit { placement.same_node() } else { placement })
            });
            let row = Row { measure, placement, medians };
            if PATHS.iter().any(|p| *p != Path::Limit && row.median(*p).is_some()) {
                rows.push(row);
            }
        }
    }
    rows
}

/// One program's run time on one path at one placement, over every daemon and round: in all,
/// and while each workload ran.
#[derive(Clone, Debug, PartialEq)]
struct CostRow {
    path: Path,
    placement: Placement,
    program: &'static str,
    /// (run time in ns, runs), in all.
    all: (u64, u64),
    /// The same per workload, in the order of [`Workload::ALL`].
    workloads: [(u64, u64); Workload::ALL.len()],
}

impl CostRow {
    fn per_packet((time_ns, runs): (u64, u64)) -> Option<f64> {
        (runs > 0).then(|| time_ns as f64 / runs as f64)
    }
}

/// Run time per packet of each program on each path and placement, in the order of [`PATHS`] and
/// [`PLACEMENTS`]; programs that never ran are left out.
fn per_packet_costs(costs: &[ProgramCost]) -> Vec<CostRow> {
    let mut rows: Vec<CostRow> = Vec::new();
    for cost in costs {
        let key = (cost.path, cost.placement, cost.program);
        let index = match rows.iter().position(|r| (r.path, r.placement, r.program) == key) {
            Some(index) => index,
            None => {
                let (path, placement, program) = key;
                rows.push(CostRow { path, placement, program, all: (0, 0), workloads: Default::default() });
                rows.len() - 1
            }
        };
        let row = &mut rows[index];
        let w = Workload::ALL.iter().position(|w| *w == cost.workload).expect("every workload is in ALL");
        for total in [&mut row.all, &mut row.workloads[w]] {
            total.0 += cost.time_ns;
            total.1 += cost.runs;
        }
    }
    rows.retain(|r| r.all.1 > 0);
    let order = |r: &CostRow| {
        let path = PATHS.iter().position(|p| *p == r.path);
        (
            path,
            PLACEMENTS.iter().position(|p| *p == r.placement),
            PROGRAMS.iter().position(|p| *p == r.program),
        )
    };
    rows.sort_by_key(order);
    rows
}

/// The program costs as a table: ns per packet in all and while each workload ran, and the
/// packets counted.
fn cost_table(rows: &[CostRow]) -> String {
    let mut out = format!(
        "program run time per packet, ns (kernel.bpf_stats_enabled; its own clock reads included)\n{:<11} {:<14} {:<14} {:>6}",
        "path", "pods", "program", "all"
    );
    for workload in Workload::ALL {
        out.push_str(&format!(" {:>6}", workload.label()));
    }
    out.push_str(&format!(" {:>10}\n", "packets"));
    for r in rows {
        let cell = |total| CostRow::per_packet(total).map_or("-".to_string(), |ns| format!("{ns:.0}"));
        out.push_str(&format!(
            "{:<11} {:<14} {:<14} {:>6}",
            r.path.name(),
            r.placement.label(),
            r.program,
            cell(r.all)
        ));
        for total in r.workloads {
            out.push_str(&format!(" {:>6}", cell(total)));
        }
        out.push_str(&format!(" {:>10}\n", r.all.1));
    }
    out
}

/// The verdicts that carry a pod's packet on the fast path.
const FAST_PATH: [&str; 8] = [
    "redirected_local",
    "redirected_vxlan6_device",
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

fn to_json(rows: &[Row], costs: &[CostRow], options: &Options) -> String {
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
            let workloads: serde_json::Map<String, serde_json::Value> = Workload::ALL
                .iter()
                .zip(c.workloads)
                .map(|(w, total)| (w.key().to_string(), number(CostRow::per_packet(total))))
                .collect();
            serde_json::json!({
                "path": c.path.name(),
                "pods": c.placement.label(),
                "mode": c.placement.mode().name(),
                "family": c.placement.family().name(),
                "program": c.program,
                "ns_per_packet": number(CostRow::per_packet(c.all)),
                "packets": c.all.1,
                "ns_per_packet_by_workload": workloads,
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
    use fastpath_tests::dual_stack::RemoteVia6;

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
        let costs = per_packet_costs(&[ProgramCost {
            path: Path::FastpathDefault,
            placement: Placement::SameNode,
            workload: Workload::Rr,
            program: "from_pod",
            time_ns: 3000,
            runs: 20,
        }]);
        let json: serde_json::Value = serde_json::from_str(&to_json(&rows, &costs, &options)).unwrap();
        assert_eq!(json["services"], 1000);
        assert_eq!(json["results"][0]["fastpath_default_per_calico_node"], 1.875);
        assert_eq!(json["results"][0]["fastpath_trust_routes_per_kernel"], 1.2);
        assert_eq!(json["results"][0]["fastpath_default_per_limit"], 0.75);
        assert_eq!(json["results"][0]["calico_node"], 8.0);
        assert_eq!(json["results"][1]["kernel"], serde_json::Value::Null);
        assert_eq!(json["programs"][0]["path"], "fp-default");
        assert_eq!(json["programs"][0]["pods"], "same node");
        assert_eq!(json["programs"][0]["ns_per_packet"], 150.0);
        assert_eq!(json["programs"][0]["ns_per_packet_by_workload"]["request_response"], 150.0);
        assert_eq!(json["programs"][0]["ns_per_packet_by_workload"]["udp_64"], serde_json::Value::Null);
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
                    Placement::SameNode | Placement::SameNodeV6 => true,
                    Placement::CrossNode | Placement::CrossVxlan | Placement::CrossVxlanV6 => {
                        path != Path::Limit
                    }
                    Placement::ServiceSameNode | Placement::ServiceCrossNode => {
                        matches!(path, Path::CalicoNode | Path::FastpathDefault)
                    }
                };
                assert_eq!(placement.measured_on(path), expected, "{placement:?} on {path:?}");
            }
            assert_eq!(
                placement.mode() == Mode::Vxlan,
                matches!(placement, Placement::CrossVxlan | Placement::SameNodeV6 | Placement::CrossVxlanV6)
            );
            assert_eq!(
                placement.family() == Family::Ipv6,
                matches!(placement, Placement::SameNodeV6 | Placement::CrossVxlanV6)
            );
            // Each (mode, family) a placement needs is a cluster the rounds build.
            assert!(CLUSTERS.contains(&(placement.mode(), placement.family())), "{placement:?}");
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
        let client = ("client".to_string(), IpAddr::V4(Ipv4Addr::new(10, 244, 40, 36)));
        let remote = IpAddr::V4(remote);
        let pair = Pair {
            client: client.clone(),
            server: ("server".into(), remote),
            service: Some(to_remote.clone()),
        };
        assert_eq!(pair.connect(), Some("10.96.0.11:80".parse().unwrap()));
        assert_eq!(pair.listen(IPERF_PORT), "10.244.166.150:8080".parse().unwrap());
        let direct = Pair::direct(client, ("server".into(), remote));
        assert_eq!(
            (direct.connect(), direct.listen(IPERF_PORT)),
            (None, "10.244.166.150:5201".parse().unwrap())
        );
        // kube-proxy's rules for them, last in KUBE-SERVICES after the generated ones.
        let spec =
            calico_node::Spec::new(&[], 3).with_service(to_local.clone()).with_service(pair.service.unwrap());
        let rules = calico_node::Ruleset::build(&spec).render();
        let portals: Vec<&str> = rules.lines().filter(|l| l.starts_with("-A KUBE-SERVICES ")).collect();
        assert!(portals[3].contains("-d 10.96.0.10/32 --dport 80"), "{portals:?}");
        assert!(portals[4].contains("-d 10.96.0.11/32 --dport 80"), "{portals:?}");
        for backend in ["10.244.40.37:8080", "10.244.166.150:8080"] {
            assert!(rules.contains(&format!("-j DNAT --to-destination {backend}")), "{backend}");
        }
        // Over IPv6, their IPv6 halves: the client connects to the IPv6 cluster IP, the server
        // listens on the remote pod's IPv6 address (the test bed's twin of its IPv4 one).
        let to_remote6 = to_remote.in_family(Family::Ipv6);
        let remote6: IpAddr = "fd5f:a1b2:c3d4::af4:a696".parse().unwrap();
        let client6 = ("client".to_string(), "fd5f:a1b2:c3d4::af4:2824".parse().unwrap());
        let pair6 = Pair { client: client6, server: ("server".into(), remote6), service: Some(to_remote6) };
        assert_eq!(pair6.connect(), Some("[fd00:10:96::a60:b]:80".parse().unwrap()));
        assert_eq!(pair6.listen(IPERF_PORT), "[fd5f:a1b2:c3d4::af4:a696]:8080".parse().unwrap());
        let spec6 = calico_node::Spec::new(&[], 3)
            .with_service(to_local)
            .with_service(to_remote)
            .in_family(Family::Ipv6);
        let rules6 = calico_node::Ruleset::build(&spec6).render();
        assert!(rules6.contains("-d fd00:10:96::a60:b/128 --dport 80"), "{rules6}");
        assert!(rules6.contains("-j DNAT --to-destination [fd5f:a1b2:c3d4::af4:a696]:8080"), "{rules6}");
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
        for (mode, family) in CLUSTERS {
            let calico = Path::CalicoNode.cluster_spec(mode, family).unwrap();
            let default = Path::FastpathDefault.cluster_spec(mode, family).unwrap();
            assert_eq!(
                format!("{calico:?}"),
                format!("{default:?}"),
                "the daemon must be the only difference"
            );
            let kernel = Path::Kernel.cluster_spec(mode, family).unwrap();
            assert_eq!(format!("{kernel:?}"), format!("{calico:?}"), "and the rules, on the kernel paths");
            // Dual stack exactly for the IPv6 rows, and IPv6 crosses nodes as IPv4 does in
            // VXLAN mode.
            let routes = Path::FastpathRoutes.cluster_spec(mode, family).unwrap();
            for spec in [&calico, &routes] {
                let via6 = spec.ipv6.map(|layout| layout.remote_via);
                let expected = match (family, mode) {
                    (Family::Ipv4, _) => None,
                    (Family::Ipv6, Mode::Ipip) => Some(RemoteVia6::Underlay),
                    (Family::Ipv6, Mode::Vxlan) => Some(RemoteVia6::Vxlan),
                };
                assert_eq!(via6, expected, "{mode:?} {family:?}");
            }
        }
        assert_eq!(ruleset_families(Family::Ipv4), [Family::Ipv4]);
        assert_eq!(ruleset_families(Family::Ipv6), Family::BOTH, "a dual-stack node holds both rulesets");
        assert!(Path::CalicoNode.has_ruleset() && Path::FastpathDefault.has_ruleset());
        assert!(!Path::Kernel.has_ruleset() && !Path::FastpathRoutes.has_ruleset());
        assert_eq!(Path::CalicoNode.daemon_args(), None);
        assert_eq!(Path::FastpathDefault.daemon_args(), Some(&["--trust", "kernel"][..]));
        assert_eq!(Path::FastpathRoutes.daemon_args(), Some(&["--trust", "routes"][..]));
        assert!(Path::Limit.cluster_spec(Mode::Ipip, Family::Ipv4).is_none());
    }

    #[test]
    fn program_costs_add_up_per_path_placement_and_program_with_each_workloads_share() {
        let cost = |path, placement, workload, program, time_ns, runs| ProgramCost {
            path,
            placement,
            workload,
            program,
            time_ns,
            runs,
        };
        let (v4, v6) = (Placement::CrossVxlan, Placement::CrossVxlanV6);
        let rows = per_packet_costs(&[
            cost(Path::FastpathRoutes, v6, Workload::Udp, "from_pod", 500, 1),
            cost(Path::FastpathDefault, v4, Workload::Udp, "from_pod", 100, 1),
            cost(Path::FastpathDefault, v4, Workload::Udp, "from_pod", 500, 3),
            cost(Path::FastpathDefault, v4, Workload::Rr, "from_pod", 400, 1),
            cost(Path::FastpathDefault, v4, Workload::Rr, "from_underlay", 50, 1),
            cost(Path::FastpathRoutes, v4, Workload::Stream, "from_pod", 50, 1),
            cost(Path::FastpathRoutes, v4, Workload::Stream, "to_pod", 0, 0),
        ]);
        // In the order of the paths, placements and programs; what never ran is left out.
        let keys: Vec<_> = rows.iter().map(|r| (r.path, r.placement, r.program)).collect();
        assert_eq!(
            keys,
            [
                (Path::FastpathRoutes, v4, "from_pod"),
                (Path::FastpathRoutes, v6, "from_pod"),
                (Path::FastpathDefault, v4, "from_pod"),
                (Path::FastpathDefault, v4, "from_underlay"),
            ]
        );
        let default = &rows[2];
        assert_eq!(default.all, (1000, 5));
        let at = |w| Workload::ALL.iter().position(|x| *x == w).unwrap();
        assert_eq!(default.workloads[at(Workload::Udp)], (600, 4));
        assert_eq!(default.workloads[at(Workload::Rr)], (400, 1));
        assert_eq!(default.workloads[at(Workload::Stream)], (0, 0));
        let table = cost_table(&rows);
        let line = table.lines().find(|l| l.starts_with("fp-default") && l.contains("from_pod")).unwrap();
        // all, TCP 1, TCP 4, UDP 64, RR, CRR, packets
        assert_eq!(
            line.split_whitespace().skip(4).collect::<Vec<_>>(),
            ["200", "-", "-", "150", "400", "-", "5"],
            "{table}"
        );
        assert!(table.lines().any(|l| l.starts_with("fp-routes   cross VXLAN v6 from_pod")), "{table}");
    }

    #[test]
    fn the_ipv6_rows_follow_the_ipv4_ones_with_the_ipv6_limit() {
        let samples = vec![
            sample(Path::Limit, Placement::SameNode, Measure::Tcp1, 20.0),
            sample(Path::Limit, Placement::SameNodeV6, Measure::Tcp1, 16.0),
            sample(Path::Kernel, Placement::SameNodeV6, Measure::Tcp1, 8.0),
            sample(Path::CalicoNode, Placement::CrossVxlanV6, Measure::Tcp1, 4.0),
            sample(Path::FastpathDefault, Placement::CrossVxlanV6, Measure::Tcp1, 6.0),
            sample(Path::CalicoNode, Placement::CrossVxlan, Measure::Tcp1, 5.0),
        ];
        let rows = summarize(&samples);
        let placements: Vec<Placement> = rows.iter().map(|r| r.placement).collect();
        assert_eq!(placements, [Placement::CrossVxlan, Placement::SameNodeV6, Placement::CrossVxlanV6]);
        // The IPv4 limit for IPv4 rows, the IPv6 one for IPv6 rows.
        assert_eq!(rows[0].median(Path::Limit), Some(20.0));
        assert_eq!(rows[1].median(Path::Limit), Some(16.0));
        assert_eq!(rows[2].median(Path::Limit), Some(16.0));
        let t = table(&rows);
        let v6 = t.lines().nth(3).unwrap();
        assert!(v6.starts_with("TCP 1 stream Gbit/s      cross VXLAN v6 "), "{t}");
        assert_eq!(
            v6.split_whitespace().skip(7).collect::<Vec<_>>(),
            ["16.00", "-", "4.00", "-", "6.00", "1.50x", "-", "0.38x"],
            "{t}"
        );
        for (placement, flag) in
            [(Placement::SameNodeV6, "same-node-v6"), (Placement::CrossVxlanV6, "cross-vxlan-v6")]
        {
            assert_eq!(<Placement as clap::ValueEnum>::from_str(flag, false), Ok(placement));
            assert_eq!(placement.same_node(), Placement::SameNodeV6);
        }
        assert_eq!(Placement::CrossVxlan.same_node(), Placement::SameNode);
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
