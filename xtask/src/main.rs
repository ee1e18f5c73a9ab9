//! `cargo xtask setup | build | image | run | test | lint | bench | profile | demo`: everything a
//! fresh machine needs, by name.

mod bench;
mod build;
mod control_plane;
mod demo;
mod image;
mod profile;
mod setup;
mod shell;

use std::process::ExitCode;

use clap::{error::ErrorKind, Parser, Subcommand};

/// fastpath's build tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what building and testing need (nightly rust-src, bpf-linker, the musl target,
    /// Debian packages); quick when nothing is missing. Every other task runs it, or the part of
    /// it that it needs, first.
    Setup,
    /// Build the daemon (with its eBPF programs embedded) into target/{debug,release}/fastpath;
    /// installs only the toolchain parts, no Debian packages.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build the container image localhost/fastpath:VERSION (and :latest): the daemon linked
    /// statically (musl) alone in a `FROM scratch` image, from `Containerfile`; nothing is
    /// pulled. Installs podman and the musl target when they are missing.
    Image,
    /// Build, then run `fastpath run` on this machine with FLAGS (after `--`).
    Run {
        #[arg(long)]
        release: bool,
        #[arg(last = true, value_name = "FLAGS")]
        flags: Vec<String>,
    },
    /// Build the daemon and the image, then run every test: unit, BPF_PROG_TEST_RUN, end to end
    /// and the image as the DaemonSet runs it (needs root).
    Test,
    /// Check formatting (nightly rustfmt) and run clippy with -D warnings: the workspace on
    /// stable, then the eBPF crate alone on nightly for its target.
    Lint,
    /// Measure fastpath beside the kernel paths (bare, and a Calico node's with its rules) and
    /// the veth limit: throughput, packet rate, request/response, connections per second, CPU
    /// (medians of alternating rounds).
    Bench {
        /// One short round: a smoke test, not a measurement.
        #[arg(long)]
        quick: bool,
        /// Rounds of every path (each measure's figure is the median over them).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20),
              conflicts_with_all = ["quick", "control_plane"])]
        rounds: u32,
        /// Only these paths (comma-separated; default every one), for a row the others would not
        /// change, such as a larger ruleset's.
        #[arg(long, value_enum, value_delimiter = ',', conflicts_with = "control_plane")]
        paths: Vec<bench::Path>,
        /// Only these placements of the pods (comma-separated; default every one): the service
        /// rows alone, say, are `service-same-node,service-cross-node` (measured on calico-node
        /// and fp-default only), the IPv6 rows `same-node-v6,cross-vxlan-v6` (in a dual-stack
        /// cluster, across nodes in IPv6 VXLAN).
        #[arg(long, value_enum, value_delimiter = ',', conflicts_with = "control_plane")]
        placements: Vec<bench::Placement>,
        /// Services (kube-proxy rules) in the calico-node ruleset.
        #[arg(
            long,
            default_value_t = 1000,
            value_parser = clap::value_parser!(u32).range(0..=fastpath_tests::calico_node::MAX_SERVICES as i64),
            conflicts_with = "control_plane"
        )]
        services: u32,
        /// Measure the control plane instead: start-up over 100 000 routes, route churn
        /// latency, memory.
        #[arg(long)]
        control_plane: bool,
        /// Also write the results as JSON here.
        #[arg(long, value_name = "PATH")]
        json: Option<std::path::PathBuf>,
    },
    /// Where the time goes on one of the benchmark's paths: run one workload between two pods
    /// while `perf record -a -g -e cpu-clock` samples every CPU; print the hottest symbols and
    /// each program's run time and runs per transaction.
    Profile {
        /// The benchmark path to build.
        #[arg(long, value_enum, default_value = "fp-default")]
        path: bench::Path,
        /// Pods on one node, or on two.
        #[arg(long, value_enum, default_value = "cross")]
        placement: profile::Placement,
        #[arg(long, value_enum, default_value = "rr")]
        workload: profile::Workload,
        /// How long the workload runs.
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(2..=600))]
        seconds: u32,
        /// Services in the calico-node ruleset (calico-node and fp-default).
        #[arg(long, default_value_t = 1000,
              value_parser = clap::value_parser!(u32).range(0..=fastpath_tests::calico_node::MAX_SERVICES as i64))]
        services: u32,
        /// How many of the hottest symbols to print.
        #[arg(long, default_value_t = 30)]
        top: usize,
        /// Keep perf's data in this file, for `perf report -i FILE`.
        #[arg(long, value_name = "FILE")]
        data: Option<std::path::PathBuf>,
    },
    /// Build the seed's two-node cluster in namespaces, run fastpath on each node and show it work.
    Demo {
        /// Keep the cluster up until Ctrl-C, to explore it by hand.
        #[arg(long)]
        keep: bool,
        /// Calico's VXLAN mode instead of IPIP; the second act on a cluster half rolled out
        /// (one node with only the kernel's vxlan.calico).
        #[arg(long)]
        vxlan: bool,
    },
}

/// The one line a usage error prints: clap's first line, without its possible values and usage
/// block, as the daemon's own command line does.
fn usage_error_line(rendered: &str) -> String {
    let first = rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("error: invalid usage");
    format!("{first} (see 'cargo xtask --help')")
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", usage_error_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Build { release } => setup::toolchain().and_then(|()| build::daemon(release).map(drop)),
        Task::Image => setup::image().and_then(|()| image::build().map(drop)),
        Task::Run { release, flags } => setup::run().and_then(|()| build::run(release, &flags)),
        Task::Test => setup::run().and_then(|()| build::test()),
        Task::Lint => setup::run().and_then(|()| build::lint()),
        Task::Bench { quick, control_plane: false, rounds, paths, placements, services, json } => {
            setup::run().and_then(|()| {
                let request = bench::Request {
                    quick,
                    rounds: rounds as usize,
                    paths,
                    placements,
                    services: services as usize,
                };
                bench::run(&request, json.as_deref())
            })
        }
        Task::Bench { quick, control_plane: true, .. } => setup::run().and_then(|()| {
            let bin = build::daemon(true)?;
            std::env::set_var("FASTPATH_BIN", bin);
            control_plane::run(quick)
        }),
        Task::Profile { path, placement, workload, seconds, services, top, data } => {
            setup::run().and_then(|()| {
                profile::run(&profile::Request {
                    path,
                    placement,
                    workload,
                    seconds,
                    services: services as usize,
                    top,
                    data,
                })
            })
        }
        Task::Demo { keep, vxlan } => setup::run().and_then(|()| demo::run(keep, vxlan)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
    fn a_bad_flag_is_one_line() {
        for args in [
            &["cargo xtask", "bench", "--placements", "same-node-v7"][..],
            &["cargo xtask", "bench", "--paths", "fp-routes,nowhere"],
            &["cargo xtask", "profile", "--placement", "cross-v6"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            let line = usage_error_line(&err.render().to_string());
            assert!(!line.contains('\n'), "{line}");
            assert!(line.starts_with("error: invalid value"), "{line}");
            assert!(line.ends_with("(see 'cargo xtask --help')"), "{line}");
        }
        let ok = Cli::try_parse_from([
            "cargo xtask",
            "bench",
            "--quick",
            "--placements",
            "same-node-v6,cross-vxlan-v6",
        ]);
        assert!(ok.is_ok(), "{ok:?}");
    }
}
