//! Command-line interface. Doc comments are the help text; every flag can also come from a
//! `FASTPATH_*` environment variable (for a DaemonSet).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use fastpath_common::maps::DEFAULT_PIN_DIR;

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
    /// Print the per-reason packet and byte counters of a running daemon.
    Stats(StatsArgs),
    /// Print the route table the programs follow.
    Routes(RoutesArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Attach to every interface whose name starts with this prefix (Calico: cali).
    #[arg(long, env = "FASTPATH_IFACE_PREFIX", default_value = "cali", value_parser = parse_iface_name)]
    pub iface_prefix: String,

    /// Also attach to this interface, whatever its name; it must exist at start (repeatable).
    #[arg(long = "iface", value_name = "IFACE", value_parser = parse_iface_name)]
    pub ifaces: Vec<String>,

    /// The interface toward the other nodes (default: the default route's interface).
    #[arg(long, env = "FASTPATH_UNDERLAY", value_name = "IFACE", value_parser = parse_iface_name)]
    pub underlay: Option<String>,

    /// When to encapsulate toward another node in IPIP: follow (as the routes say: via tunl0
    /// means IPIP), always, cross-subnet (only to nodes outside the underlay subnet), never.
    #[arg(long, env = "FASTPATH_IPIP", value_enum, default_value_t = Ipip::Follow)]
    pub ipip: Ipip,

    #[command(flatten)]
    pub bpffs: BpffsArg,

    /// Log level: error, warn, info, debug or trace (RUST_LOG, when set, takes precedence).
    #[arg(long, env = "FASTPATH_LOG_LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub log_level: log::LevelFilter,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub bpffs: BpffsArg,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RoutesArgs {
    #[command(flatten)]
    pub bpffs: BpffsArg,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--ipip`, as clap parses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Ipip {
    Follow,
    Always,
    CrossSubnet,
    Never,
}

impl From<Ipip> for crate::routes::IpipMode {
    fn from(ipip: Ipip) -> Self {
        match ipip {
            Ipip::Follow => Self::Follow,
            Ipip::Always => Self::Always,
            Ipip::CrossSubnet => Self::CrossSubnet,
            Ipip::Never => Self::Never,
        }
    }
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
        assert_eq!(args.ipip, Ipip::Follow);
    }

    #[test]
    fn ipip_modes_parse() {
        let cli =
            Cli::try_parse_from(["fastpath", "run", "--ipip", "cross-subnet", "--underlay", "eth1"]).unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.ipip, Ipip::CrossSubnet);
        assert_eq!(args.underlay.as_deref(), Some("eth1"));
        assert!(Cli::try_parse_from(["fastpath", "run", "--ipip", "sometimes"]).is_err());
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
    fn a_bad_value_is_a_usage_error_naming_the_flag() {
        let err = Cli::try_parse_from(["fastpath", "run", "--log-level", "loud"]).unwrap_err();
        let line = usage_error_line(&err.render().to_string());
        assert!(line.contains("--log-level"), "{line}");
    }
}
