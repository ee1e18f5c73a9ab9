//! `cargo xtask profile`: where the time goes on one of the benchmark's paths. It builds the path
//! as `cargo xtask bench` does, runs one workload between two pods, samples every CPU with
//! `perf record -a -g -e cpu-clock` meanwhile (this VM has no hardware counters; the software
//! clock samples kernel code, softirqs and the JIT-compiled programs alike), and prints the
//! hottest symbols, the programs' own run time per packet (`kernel.bpf_stats_enabled`) and how
//! many times each program ran per transaction.

use std::{
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

pub use crate::bench::Workload;
use crate::{
    bench::{self, BpfStats, Options, Pair, Path},
    build,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Placement {
    Same,
    /// Across nodes in Calico's IPIP mode (plain for the kernel paths, which cannot do IPIP here).
    Cross,
    /// Across nodes in Calico's VXLAN mode.
    CrossVxlan,
    /// Through a ClusterIP service to a backend on the client's node (calico-node and
    /// fp-default, whose ruleset has kube-proxy's rules).
    ServiceSame,
    /// Through a ClusterIP service to a backend on the other node (IPIP mode's cluster).
    ServiceCross,
    /// On one node, over IPv6 (the dual-stack VXLAN-mode cluster).
    SameV6,
    /// Across nodes over IPv6 in IPv6 VXLAN (the dual-stack VXLAN-mode cluster).
    CrossVxlanV6,
}

impl Placement {
    /// The benchmark's placement of the same name.
    fn bench(self) -> bench::Placement {
        match self {
            Placement::Same => bench::Placement::SameNode,
            Placement::Cross => bench::Placement::CrossNode,
            Placement::CrossVxlan => bench::Placement::CrossVxlan,
            Placement::ServiceSame => bench::Placement::ServiceSameNode,
            Placement::ServiceCross => bench::Placement::ServiceCrossNode,
            Placement::SameV6 => bench::Placement::SameNodeV6,
            Placement::CrossVxlanV6 => bench::Placement::CrossVxlanV6,
        }
    }
}

const NO_SERVICES: &str = "only calico-node and fp-default have services (kube-proxy's rules)";

pub struct Request {
    pub path: Path,
    pub placement: Placement,
    pub workload: Workload,
    pub seconds: u32,
    pub services: usize,
    /// Symbols to show.
    pub top: usize,
    /// Keep perf's data here (for `perf report -i PATH`), instead of removing it.
    pub data: Option<std::path::PathBuf>,
}

pub fn run(request: &Request) -> Result<()> {
    if !crate::shell::is_root() {
        bail!("profiling builds network namespaces and samples every CPU: run it as root");
    }
    let bin = build::daemon(true)?;
    std::env::set_var("FASTPATH_BIN", &bin);
    let options = Options { rounds: 1, seconds: request.seconds, services: request.services };
    let placement = request.placement.bench();
    let setup = bench::setup(request.path, &options, placement.mode(), placement.family())?;
    let pair = match request.placement {
        Placement::ServiceSame | Placement::ServiceCross => setup.pair(placement).context(NO_SERVICES)?,
        _ => setup.pair(placement).context("the limit path has no second node")?,
    };
    let _stats = BpfStats::enable()?;
    let runs_before = bench::program_runs(&setup.daemons);
    let data = request.data.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("fastpath-profile-{}.data", std::process::id()))
    });
    println!(
        "profile: {} {:?} node, {:?} for {} s, perf sampling every CPU",
        request.path.name(),
        request.placement,
        request.workload,
        request.seconds
    );
    let transactions =
        with_perf(&data, request.seconds, || workload(pair, request.workload, request.seconds))?;
    println!("{}", transactions.1);
    print!("{}", report(&data, request.top)?);
    match &request.data {
        Some(kept) => {
            println!("perf data kept in {} (perf report -i {} -g caller)", kept.display(), kept.display())
        }
        None => {
            let _ = std::fs::remove_file(&data);
        }
    }
    let runs_after = bench::program_runs(&setup.daemons);
    for (program, (time_ns, runs)) in runs_after {
        let (time_before, runs_before) =
            runs_before.iter().find(|(p, _)| *p == program).map_or((0, 0), |(_, c)| *c);
        let (time_ns, runs) = (time_ns - time_before, runs - runs_before);
        if runs == 0 {
            continue;
        }
        let per_transaction =
            transactions.0.map(|t| format!(", {:.2} runs per transaction", runs as f64 / t as f64));
        println!(
            "{program}: {:.0} ns per run over {runs} runs{}",
            time_ns as f64 / runs as f64,
            per_transaction.unwrap_or_default()
        );
    }
    Ok(())
}

/// Run `work` while `perf record` samples every CPU for most of `seconds`.
fn with_perf<T>(data: &std::path::Path, seconds: u32, work: impl FnOnce() -> Result<T> + Send) -> Result<T>
where
    T: Send,
{
    thread::scope(|scope| {
        let worker = scope.spawn(work);
        // Let the workload settle, and stop before it winds down.
        thread::sleep(Duration::from_millis(500));
        let sample = seconds.saturating_sub(1).max(1).to_string();
        let perf = Command::new("perf")
            .args(["record", "-a", "-g", "-e", "cpu-clock", "-o"])
            .arg(data)
            .args(["--", "sleep", &sample])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("cannot run perf (Debian: linux-perf)")?;
        let result = worker.join().map_err(|_| anyhow::anyhow!("the workload panicked"))?;
        if !perf.success() {
            bail!("perf record failed: {perf}");
        }
        result
    })
}

/// (transactions, one line about them) of the workload.
fn workload(pair: &Pair, workload: Workload, seconds: u32) -> Result<(Option<u64>, String)> {
    let duration = Duration::from_secs(u64::from(seconds));
    Ok(match workload {
        Workload::Rr => {
            let rr = pair.request_response(duration)?;
            let line = format!(
                "{:.1} k transactions/s, p50 {:.1} µs, p99 {:.1} µs",
                rr.per_second() / 1e3,
                rr.percentile_us(0.5),
                rr.percentile_us(0.99)
            );
            (Some(rr.transactions), line)
        }
        Workload::Crr => {
            let crr = pair.connect_request_response(duration)?;
            (Some(crr.transactions), format!("{:.2} k connections/s", crr.per_second() / 1e3))
        }
        Workload::Stream | Workload::Streams4 => {
            let streams = if workload == Workload::Stream { 1 } else { 4 };
            let (gbits, cpu) = bench::iperf_tcp(pair, streams, seconds)?;
            (None, format!("{gbits:.2} Gbit/s, {cpu:.2} CPU s per GB"))
        }
        Workload::Udp => {
            let rate = bench::iperf_udp_small(pair, seconds)?;
            (None, format!("{:.1} k packets/s received", rate / 1e3))
        }
    })
}

/// The hottest `top` symbols, self time, every CPU.
fn report(data: &std::path::Path, top: usize) -> Result<String> {
    let out = Command::new("perf")
        .args(["report", "--stdio", "--no-children", "--sort", "symbol", "-g", "none", "-i"])
        .arg(data)
        .output()
        .context("cannot run perf report")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit()))
        .take(top)
        // perf pads the symbol column and ends each line with its (empty) source columns.
        .map(|l| l.split_whitespace().filter(|w| *w != "-").collect::<Vec<_>>().join(" "))
        .collect();
    lines.insert(0, format!("hottest {top} symbols (self time, all CPUs; perf report -i <data> for more):"));
    Ok(lines.join("\n") + "\n")
}
