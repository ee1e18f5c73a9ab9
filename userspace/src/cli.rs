//! Command-line interface. Doc comments are the help text; every flag can also come from a
//! `FASTPATH_*` environment variable (for a DaemonSet).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use fastpath_common::maps::{
    DEFAULT_PIN_DIR, ENDPOINTS_MAX, FLOWS_DEFAULT_MAX, ROUTES_MAX, TUNNEL_PEERS_MAX,
};

use crate::{
    dataplane::capacities::Capacities,
    modes::{EncapMode, Modes, Trust},
    output::Format,
};

/// An eBPF fast path for Calico-style pod networking.
#[derive(Debug, Parser)]
#[command(name = "fastpath", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the programs, attach them to every pod interface as pods come and go, and serve.
    Run(RunArgs),
    /// Show the daemon: mode, underlay, node address, attached interfaces, map fill, uptime
    /// (exit code 1 when no daemon is running; with --brief, also when it is not ready).
    Status(StatusArgs),
    /// Print the per-reason packet and byte counters.
    Stats(StatsArgs),
    /// Print the route table the programs follow.
    Routes(ListArgs),
    /// Print the pods on this node the programs deliver to.
    Endpoints(ListArgs),
    /// Print the nodes whose tunnels (IPIP, VXLAN) the programs accept, with their blocks.
    Peers(ListArgs),
    /// Print the flow table of --trust kernel: each flow direction the kernel's conntrack
    /// confirmed, where it enters, what its NAT makes of it, approved or closing.
    Flows(ListArgs),
    /// Tell what the programs would do with a packet from SRC to DST, and why.
    Explain(ExplainArgs),
    /// Stream the programs' per-packet decisions while it runs.
    Monitor(MonitorArgs),
    /// Compare every map with what the kernel says now; exit code 1 on drift.
    Verify(BpffsOnly),
    /// Remove every program, link and pin fastpath made (stops the fast path).
    Cleanup(BpffsOnly),
    /// Print this binary's version and git revision, and the running daemon's version.
    Version(VersionArgs),
    /// Print a shell completion script (bash: `source <(fastpath completion bash)`).
    Completion(CompletionArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Attach to every interface whose name starts with this prefix (Calico: cali).
    #[arg(long, env = "FASTPATH_IFACE_PREFIX", default_value = "cali", value_parser = parse_iface_name)]
    pub iface_prefix: String,

    /// Also attach to this interface, whatever its name; it must exist at start (repeatable).
    #[arg(long = "iface", env = "FASTPATH_IFACES", value_delimiter = ',', value_name = "IFACE", value_parser = parse_iface_name)]
    pub ifaces: Vec<String>,

    /// The interface toward the other nodes (default: the default route's interface).
    #[arg(long, env = "FASTPATH_UNDERLAY", value_name = "IFACE", value_parser = parse_iface_name)]
    pub underlay: Option<String>,

    /// When to encapsulate toward another node in IPIP (Calico's ipipMode): follow (as the
    /// routes say: via tunl0 means IPIP), always, cross-subnet (only to nodes outside the underlay
    /// subnet), never.
    #[arg(long, env = "FASTPATH_IPIP", value_enum, default_value_t = EncapMode::Follow)]
    pub ipip: EncapMode,

    /// When to encapsulate toward another node in VXLAN (Calico's vxlanMode): follow (as the
    /// routes say: via vxlan.calico means VXLAN), always, cross-subnet, never. At most one of
    /// --ipip and --vxlan may be always or cross-subnet.
    #[arg(long, env = "FASTPATH_VXLAN", value_enum, default_value_t = EncapMode::Follow)]
    pub vxlan: EncapMode,

    /// Which packets take the fast path. kernel: a flow direction only while the kernel's
    /// conntrack holds a confirmed entry for it that the kernel forwarded, translated as that
    /// entry says, so kube-proxy's NAT and iptables policy keep working. routes: every packet the
    /// routes allow (no NAT or policy between pods).
    #[arg(long, env = "FASTPATH_TRUST", value_enum, default_value_t = Trust::Kernel)]
    pub trust: Trust,

    /// Flow directions the flow table holds (--trust kernel); when full, the least recently used
    /// is forgotten and goes through the kernel again.
    #[arg(long, env = "FASTPATH_FLOW_TABLE_SIZE", value_name = "ENTRIES", default_value_t = FLOWS_DEFAULT_MAX,
          value_parser = clap::value_parser!(u32).range(1024..=16_777_216))]
    pub flow_table_size: u32,

    /// Prefixes the route map holds (local pods' /32s, blocks, other routes the fast path
    /// follows). A prefix that does not fit is routed by the kernel, as is every entry covering
    /// it until it fits; the daemon says so once. A new size recreates the map.
    #[arg(long, env = "FASTPATH_ROUTE_CAPACITY", value_name = "ENTRIES", default_value_t = ROUTES_MAX,
          value_parser = clap::value_parser!(u32).range(64..=16_777_216))]
    pub route_capacity: u32,

    /// Pods on this node the endpoint maps hold (FP_ENDPOINTS, and FP_ENDPOINTS6 for their IPv6
    /// addresses); one that does not fit is carried through its route instead (its IPv6 address
    /// by the kernel). A new size recreates the map.
    #[arg(long, env = "FASTPATH_ENDPOINT_CAPACITY", value_name = "ENTRIES", default_value_t = ENDPOINTS_MAX,
          value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub endpoint_capacity: u32,

    /// Nodes whose tunnels the peer map accepts; the routes to a node that does not fit go to the
    /// kernel. A new size recreates the map.
    #[arg(long, env = "FASTPATH_PEER_CAPACITY", value_name = "ENTRIES", default_value_t = TUNNEL_PEERS_MAX,
          value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub peer_capacity: u32,

    /// How the programs attach: tcx links (Linux 6.6+), legacy tc filters under a clsact qdisc,
    /// or auto (tcx where the kernel has it, else legacy tc).
    #[arg(long, env = "FASTPATH_TC_ATTACH", value_enum, default_value_t = TcAttach::Auto)]
    pub tc_attach: TcAttach,

    #[command(flatten)]
    pub bpffs: BpffsArg,

    /// Serve /metrics (Prometheus) on this address (off when not given).
    #[arg(long, env = "FASTPATH_METRICS_ADDR", value_name = "ADDR:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// Serve /healthz and /readyz (the kubelet's probes) on this address; keep it on loopback
    /// (off when not given).
    #[arg(long, env = "FASTPATH_HEALTH_ADDR", value_name = "ADDR:PORT")]
    pub health_addr: Option<std::net::SocketAddr>,

    /// Every this many seconds, take the kernel's state whole and repair any drift of the maps
    /// (0: never; at most a day).
    #[arg(long, env = "FASTPATH_RESYNC_INTERVAL", value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS))]
    pub resync_interval: u64,

    /// On exit, detach and unpin everything (development). Without it the programs keep
    /// forwarding after the daemon exits, and the next daemon adopts them.
    #[arg(long, env = "FASTPATH_CLEANUP_ON_EXIT")]
    pub cleanup_on_exit: bool,

    /// Log level: error, warn, info, debug or trace (RUST_LOG, when set, takes precedence).
    #[arg(long, env = "FASTPATH_LOG_LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub log_level: log::LevelFilter,

    /// Log format: text (one line per record) or json (one object per line: ts, level, target,
    /// msg).
    #[arg(long, env = "FASTPATH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The longest interval a flag takes, in seconds: a day.
pub const MAX_SECONDS: u64 = 86_400;

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub list: ListArgs,

    /// Refresh every second, in place, with rates per second (Ctrl-C to stop).
    #[arg(long, conflicts_with_all = ["json", "output"])]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub list: ListArgs,

    /// One line: ready, not ready or not running; exit code 0 only when ready.
    #[arg(long, conflicts_with_all = ["json", "output"])]
    pub brief: bool,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct BpffsOnly {
    #[command(flatten)]
    pub bpffs: BpffsArg,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Source address (a pod's, or a node's with --from-underlay), IPv4 or IPv6.
    pub src: std::net::IpAddr,
    /// Destination address, of SRC's family.
    pub dst: std::net::IpAddr,

    /// Explain how SRC resolves DST instead of a packet: an ARP request for IPv4, a neighbour
    /// solicitation for IPv6.
    #[arg(long)]
    pub arp: bool,

    /// The packet arrives in a tunnel from node ADDR on the underlay (SRC and DST are the inner
    /// addresses).
    #[arg(long, value_name = "NODE")]
    pub from_underlay: Option<std::net::Ipv4Addr>,

    /// How --from-underlay's packet comes: ipip, vxlan (to this node's vxlan.calico), or none
    /// (unencapsulated, as a block route without a tunnel sends it).
    #[arg(long, value_enum, default_value_t = Encap::Ipip, requires = "from_underlay")]
    pub encap: Encap,
    /// The pod interface the packet arrives on (default: the interface of SRC's pod, if SRC is
    /// a pod of this node): ask what a pod sending from another address gets.
    #[arg(long, value_name = "IFACE", value_parser = parse_iface_name, conflicts_with = "from_underlay")]
    pub iface: Option<String>,

    /// The packet's TTL.
    #[arg(long, default_value_t = 64)]
    pub ttl: u8,

    /// The packet's IP length in bytes.
    #[arg(long, default_value_t = 84)]
    pub size: u16,

    /// The packet may be fragmented (no DF bit).
    #[arg(long)]
    pub no_df: bool,

    #[command(flatten)]
    pub bpffs: BpffsArg,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Show only packets from or to this IPv4 or IPv6 address or prefix (for example
    /// 10.244.40.36, 10.244.166.128/26, fd5f:a1b2:c3d4::af4:2824 or fd5f:a1b2:c3d4::af4:a680/122).
    #[arg(long, value_name = "ADDR[/LEN]", value_parser = parse_prefix)]
    pub filter: Option<(std::net::IpAddr, u8)>,

    /// Show only packets with this verdict: pass (to the kernel), redirect (sent on by the
    /// programs) or drop.
    #[arg(long, value_enum)]
    pub verdict: Option<VerdictArg>,

    /// Show only packets counted under this reason (a name `fastpath stats` lists).
    #[arg(long, value_name = "NAME", value_parser = parse_reason)]
    pub reason: Option<fastpath_common::Reason>,

    /// Stop after this many packets.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Stop after this many seconds (at most a day).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    pub duration: Option<u64>,

    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub bpffs: BpffsArg,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub bpffs: BpffsArg,

    /// Print JSON instead of a table (the same as -o json).
    #[arg(long, conflicts_with = "output")]
    pub json: bool,

    /// Output format: table, json or yaml.
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,
}

impl ListArgs {
    /// `-o`, or `--json`.
    pub fn format(&self) -> Format {
        match (self.json, self.output) {
            (true, _) => Format::Json,
            (false, Some(format)) => format,
            (false, None) => Format::Table,
        }
    }
}

/// `monitor --verdict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VerdictArg {
    Pass,
    Redirect,
    Drop,
}

impl From<VerdictArg> for fastpath_common::Verdict {
    fn from(v: VerdictArg) -> Self {
        match v {
            VerdictArg::Pass => Self::Pass,
            VerdictArg::Redirect => Self::Redirect,
            VerdictArg::Drop => Self::Drop,
        }
    }
}

/// A reason's name, as `stats` lists it (retired reasons are never counted, so never named).
pub fn parse_reason(s: &str) -> Result<fastpath_common::Reason, String> {
    fastpath_common::Reason::ALL
        .into_iter()
        .find(|r| !r.is_retired() && r.as_str() == s)
        .ok_or_else(|| format!("'{s}' is no reason `fastpath stats` lists (for example encapsulated, passed_no_route, dropped_spoofed_source)"))
}

impl RunArgs {
    /// `--ipip` and `--vxlan` together.
    pub fn modes(&self) -> Modes {
        Modes { ipip: self.ipip, vxlan: self.vxlan }
    }

    /// The sizes of the maps the flags size.
    pub fn capacities(&self) -> Capacities {
        Capacities {
            routes: self.route_capacity,
            endpoints: self.endpoint_capacity,
            peers: self.peer_capacity,
            flows: self.flow_table_size,
        }
    }
}

/// `explain --encap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Encap {
    Ipip,
    Vxlan,
    None,
}

/// What clap cannot check alone: `--ipip` and `--vxlan` both claiming the routes via the
/// underlay. A usage error, worded as clap's.
pub fn check(cli: &Cli) -> Result<(), clap::Error> {
    use clap::CommandFactory as _;
    match &cli.command {
        Command::Run(args) => match args.modes().conflict() {
            Some(why) => Err(Cli::command().error(clap::error::ErrorKind::ArgumentConflict, why)),
            None => Ok(()),
        },
        Command::Explain(args) => match explain_conflict(args) {
            Some(why) => Err(Cli::command().error(clap::error::ErrorKind::ArgumentConflict, why)),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// What `explain` cannot be asked: addresses of two families; IPv6 from the underlay, which the
/// programs do not carry yet.
fn explain_conflict(args: &ExplainArgs) -> Option<&'static str> {
    match (args.src, args.dst) {
        (std::net::IpAddr::V4(_), std::net::IpAddr::V4(_)) => None,
        (std::net::IpAddr::V6(_), std::net::IpAddr::V6(_)) if args.from_underlay.is_some() => {
            Some("--from-underlay asks about IPv4 only: IPv6 between nodes is the kernel's")
        }
        (std::net::IpAddr::V6(_), std::net::IpAddr::V6(_)) => None,
        _ => Some("SRC and DST must be addresses of one family"),
    }
}

/// `--tc-attach`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TcAttach {
    Auto,
    Tcx,
    Legacy,
}

/// The pin folder, shared by every subcommand.
#[derive(Debug, Args)]
pub struct BpffsArg {
    /// Folder on a bpffs where the maps are pinned; bpffs is mounted on its parent when missing.
    #[arg(long = "bpffs", env = "FASTPATH_BPFFS", value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pub dir: PathBuf,
}

/// Linux interface names are 1 to 15 bytes (IFNAMSIZ - 1) without '/', ':' or whitespace.
pub fn parse_iface_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 15 {
        return Err(format!("'{s}' is longer than 15 bytes, the kernel's limit"));
    }
    if s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(format!("'{s}' contains '/', ':' or whitespace"));
    }
    Ok(s.to_string())
}

/// An IPv4 or IPv6 address, alone or with a prefix length: `A.B.C.D[/LEN]` (LEN up to 32, 32
/// if left out) or `X:X::X[/LEN]` (up to 128, 128 if left out).
pub fn parse_prefix(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (addr, len) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
    let addr: std::net::IpAddr =
        addr.parse().map_err(|_| format!("'{addr}' is not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match len.map(str::parse::<u8>) {
        None => Ok((addr, max)),
        Some(Ok(len)) if len <= max => Ok((addr, len)),
        Some(_) => Err(format!("'{}' is not a prefix length (0 to {max})", len.unwrap_or_default())),
    }
}

pub fn parse_log_level(s: &str) -> Result<log::LevelFilter, String> {
    match s.to_ascii_lowercase().as_str() {
        "off" => Ok(log::LevelFilter::Off),
        "error" => Ok(log::LevelFilter::Error),
        "warn" => Ok(log::LevelFilter::Warn),
        "info" => Ok(log::LevelFilter::Info),
        "debug" => Ok(log::LevelFilter::Debug),
        "trace" => Ok(log::LevelFilter::Trace),
        _ => Err(format!("'{s}' is not one of off, error, warn, info, debug, trace")),
    }
}

/// The one line a usage error prints: clap's first line, without its usage block.
pub fn usage_error_line(rendered: &str) -> String {
    let first = rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("error: invalid usage");
    format!("{first} (see 'fastpath --help')")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults_match_calico() {
        let cli = Cli::try_parse_from(["fastpath", "run"]).unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.iface_prefix, "cali");
        assert_eq!(args.bpffs.dir, PathBuf::from("/sys/fs/bpf/fastpath"));
        assert_eq!(args.log_level, log::LevelFilter::Info);
        assert!(args.ifaces.is_empty());
        assert_eq!(args.underlay, None);
        assert_eq!(args.ipip, EncapMode::Follow);
        assert_eq!(args.vxlan, EncapMode::Follow);
        assert_eq!(args.trust, Trust::Kernel);
        assert_eq!(args.flow_table_size, FLOWS_DEFAULT_MAX);
        assert_eq!(args.capacities(), Capacities::default());
    }

    #[test]
    fn map_capacities_parse_within_their_bounds() {
        let cli =
            Cli::try_parse_from(["fastpath", "run", "--route-capacity", "64", "--peer-capacity", "100"])
                .unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.capacities(), Capacities { routes: 64, peers: 100, ..Capacities::default() });
        for (flag, value) in [
            ("--route-capacity", "63"),
            ("--route-capacity", "16777217"),
            ("--endpoint-capacity", "0"),
            ("--peer-capacity", "many"),
        ] {
            let err = Cli::try_parse_from(["fastpath", "run", flag, value]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{flag} {value}");
        }
    }

    #[test]
    fn ipip_modes_parse() {
        let cli =
            Cli::try_parse_from(["fastpath", "run", "--ipip", "cross-subnet", "--underlay", "eth1"]).unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.ipip, EncapMode::CrossSubnet);
        assert_eq!(args.underlay.as_deref(), Some("eth1"));
        assert!(Cli::try_parse_from(["fastpath", "run", "--ipip", "sometimes"]).is_err());
    }

    #[test]
    fn vxlan_modes_parse_and_two_claims_on_the_underlay_are_a_usage_error() {
        let cli = Cli::try_parse_from(["fastpath", "run", "--vxlan", "always", "--ipip", "never"]).unwrap();
        assert!(check(&cli).is_ok());
        let Command::Run(args) = &cli.command else { panic!("not run") };
        assert_eq!(args.modes(), Modes { ipip: EncapMode::Never, vxlan: EncapMode::Always });
        for (ipip, vxlan) in [("always", "always"), ("cross-subnet", "always"), ("always", "cross-subnet")] {
            let cli = Cli::try_parse_from(["fastpath", "run", "--ipip", ipip, "--vxlan", vxlan]).unwrap();
            let err = check(&cli).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let line = usage_error_line(&err.render().to_string());
            assert!(
                line.starts_with(&format!("error: --ipip {ipip} and --vxlan {vxlan} both claim")),
                "{line}"
            );
            assert!(!line.contains('\n'));
        }
    }

    #[test]
    fn explain_takes_the_tunnel_of_an_arriving_packet() {
        let cli = Cli::try_parse_from([
            "fastpath",
            "explain",
            "--from-underlay",
            "10.101.14.51",
            "--encap",
            "vxlan",
            "10.244.166.150",
            "10.244.40.36",
        ])
        .unwrap();
        let Command::Explain(args) = cli.command else { panic!("not explain") };
        assert_eq!(args.encap, Encap::Vxlan);
        assert!(
            Cli::try_parse_from(["fastpath", "explain", "--encap", "vxlan", "1.1.1.1", "2.2.2.2"]).is_err()
        );
    }

    #[test]
    fn explain_takes_one_family_at_a_time() {
        let parsed = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["fastpath", "explain"][..], args].concat()).unwrap();
            check(&cli).map(|()| cli)
        };
        assert!(parsed(&["fd5f:a1b2:c3d4::af4:2824", "fd5f:a1b2:c3d4::af4:2825"]).is_ok());
        assert!(parsed(&["--arp", "fd5f:a1b2:c3d4::af4:2824", "fe80::ecee:eeff:feee:eeee"]).is_ok());
        let mixed = parsed(&["10.244.40.36", "fd5f:a1b2:c3d4::af4:2825"]).unwrap_err();
        assert!(mixed.to_string().contains("one family"), "{mixed}");
        let underlay = parsed(&["--from-underlay", "10.101.14.51", "fd5f::1", "fd5f::2"]).unwrap_err();
        assert!(underlay.to_string().contains("IPv4 only"), "{underlay}");
    }

    #[test]
    fn interface_names_are_checked() {
        assert_eq!(parse_iface_name("cali0f293e89ca7"), Ok("cali0f293e89ca7".into()));
        assert!(parse_iface_name("").is_err());
        assert!(parse_iface_name("cali0f293e89ca7x").is_err());
        assert!(parse_iface_name("a/b").is_err());
        assert!(parse_iface_name("a b").is_err());
    }

    #[test]
    fn prefixes_parse() {
        assert_eq!(parse_prefix("10.244.40.36"), Ok(("10.244.40.36".parse().unwrap(), 32)));
        assert_eq!(parse_prefix("10.244.166.128/26"), Ok(("10.244.166.128".parse().unwrap(), 26)));
        assert!(parse_prefix("10.244.166.128/33").is_err());
        assert!(parse_prefix("pod").is_err());
        assert_eq!(
            parse_prefix("fd5f:a1b2:c3d4::af4:2824"),
            Ok(("fd5f:a1b2:c3d4::af4:2824".parse().unwrap(), 128))
        );
        assert_eq!(
            parse_prefix("fd5f:a1b2:c3d4::af4:a680/122"),
            Ok(("fd5f:a1b2:c3d4::af4:a680".parse().unwrap(), 122))
        );
        assert_eq!(parse_prefix("::/0"), Ok(("::".parse().unwrap(), 0)));
        let too_long = parse_prefix("fd5f::1/129").unwrap_err();
        assert!(too_long.contains("0 to 128"), "{too_long}");
        assert!(parse_prefix("fd5f::1/x").is_err());
        assert!(parse_prefix("fd5f::g").is_err());
    }

    #[test]
    fn log_levels_parse_case_insensitively() {
        assert_eq!(parse_log_level("DEBUG"), Ok(log::LevelFilter::Debug));
        assert_eq!(parse_log_level("off"), Ok(log::LevelFilter::Off));
        assert!(parse_log_level("loud").is_err());
    }

    #[test]
    fn a_bad_flag_is_a_usage_error() {
        let err = Cli::try_parse_from(["fastpath", "run", "--no-such-flag"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let line = usage_error_line(&err.render().to_string());
        assert!(line.starts_with("error: unexpected argument '--no-such-flag'"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn numeric_flags_are_bounded_by_clap() {
        for args in [
            &["fastpath", "run", "--resync-interval", "18446744073709551615"][..],
            &["fastpath", "run", "--resync-interval", "86401"],
            &["fastpath", "run", "--resync-interval=-1"],
            &["fastpath", "run", "--flow-table-size", "0"],
            &["fastpath", "monitor", "--duration", "18446744073709551615"],
            &["fastpath", "monitor", "--count", "0"],
            &["fastpath", "explain", "--ttl", "256", "1.1.1.1", "2.2.2.2"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            let line = usage_error_line(&err.render().to_string());
            assert!(line.starts_with("error: invalid value"), "{args:?}: {line}");
        }
        let cli = Cli::try_parse_from(["fastpath", "run", "--resync-interval", "86400"]).unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.resync_interval, 86_400);
    }

    #[test]
    fn listings_take_json_or_an_output_format() {
        let format = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Routes(list) = cli.command else { panic!("not routes") };
            list.format()
        };
        assert_eq!(format(&["fastpath", "routes"]), Format::Table);
        assert_eq!(format(&["fastpath", "routes", "--json"]), Format::Json);
        assert_eq!(format(&["fastpath", "routes", "-o", "yaml"]), Format::Yaml);
        assert_eq!(format(&["fastpath", "routes", "--output", "json"]), Format::Json);
        assert!(Cli::try_parse_from(["fastpath", "routes", "--json", "-o", "yaml"]).is_err());
        assert!(Cli::try_parse_from(["fastpath", "routes", "-o", "xml"]).is_err());
        assert!(Cli::try_parse_from(["fastpath", "status", "--brief", "--json"]).is_err());
    }

    #[test]
    fn monitor_filters_by_verdict_and_reason() {
        let cli = Cli::try_parse_from([
            "fastpath",
            "monitor",
            "--verdict",
            "drop",
            "--reason",
            "dropped_no_endpoint",
        ])
        .unwrap();
        let Command::Monitor(args) = cli.command else { panic!("not monitor") };
        assert_eq!(args.verdict, Some(VerdictArg::Drop));
        assert_eq!(args.reason, Some(fastpath_common::Reason::DropNoEndpoint));
        assert!(parse_reason("flow_approved").is_err(), "a retired reason");
        assert!(parse_reason("no_such_reason").is_err());
        assert!(Cli::try_parse_from(["fastpath", "monitor", "--verdict", "reject"]).is_err());
    }

    #[test]
    fn log_formats_parse() {
        let cli = Cli::try_parse_from(["fastpath", "run", "--log-format", "json"]).unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["fastpath", "run", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn a_bad_value_is_a_usage_error_naming_the_flag() {
        let err = Cli::try_parse_from(["fastpath", "run", "--log-level", "loud"]).unwrap_err();
        let line = usage_error_line(&err.render().to_string());
        assert!(line.contains("--log-level"), "{line}");
    }
}
