//! A `fastpath run` process in a node's namespace, stopped (SIGTERM, then SIGKILL) when dropped.
//!
//! It is started with `ip netns exec`, as a user on a node would, so it sees a fresh /sys with
//! no bpffs and must mount its own: its pins live and die with its private mount namespace. The
//! CLI reads them from inside that mount namespace (`nsenter -t PID -m -n`).

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::{child, cmd, names, wait};

/// Packets and bytes under one reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

/// Counters by reason name, as `fastpath stats --json` prints them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub HashMap<String, Count>);

impl Counters {
    pub fn packets(&self, reason: &str) -> u64 {
        self.0.get(reason).map_or(0, |c| c.packets)
    }

    pub fn bytes(&self, reason: &str) -> u64 {
        self.0.get(reason).map_or(0, |c| c.bytes)
    }

    /// What was counted between `before` and these counters, reason by reason.
    pub fn since(&self, before: &Counters) -> Counters {
        let counts = self.0.iter().map(|(reason, after)| {
            let was = before.0.get(reason).copied().unwrap_or_default();
            let count = Count {
                packets: after.packets.saturating_sub(was.packets),
                bytes: after.bytes.saturating_sub(was.bytes),
            };
            (reason.clone(), count)
        });
        Counters(counts.collect())
    }

    pub fn parse(json: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(json).context("stats --json is not JSON")?;
        let object = value.as_object().context("stats --json is not an object")?;
        let mut counters = HashMap::new();
        for (reason, count) in object {
            let field = |name: &str| count.get(name).and_then(serde_json::Value::as_u64);
            let (Some(packets), Some(bytes)) = (field("packets"), field("bytes")) else {
                bail!("stats --json: {reason} lacks packets or bytes");
            };
            counters.insert(reason.clone(), Count { packets, bytes });
        }
        Ok(Self(counters))
    }
}

/// The fastpath binary under test: `$FASTPATH_BIN`, else the workspace's debug build.
pub fn fastpath_bin() -> PathBuf {
    let path = std::env::var_os("FASTPATH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/fastpath"));
    assert!(path.exists(), "{} does not exist: build it first (`cargo xtask test` does)", path.display());
    path
}

/// The CLI against one daemon's pins, from any thread.
#[derive(Clone, Debug)]
pub struct Cli {
    node_ns: String,
    pid: u32,
    pin_dir: Option<PathBuf>,
}

impl Cli {
    /// `fastpath ARGS` against the daemon's pins, from inside its mount namespace.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        if let Some(dir) = &self.pin_dir {
            return node_cli(&self.node_ns, dir, args);
        }
        let pid = self.pid.to_string();
        let bin = fastpath_bin();
        let mut full = vec!["-t", &pid, "-m", "-n", bin.to_str().context("binary path is not UTF-8")?];
        full.extend_from_slice(args);
        cmd::run("nsenter", &full)
    }
}

pub struct Daemon {
    child: Child,
    pub node_ns: String,
    log_path: PathBuf,
    /// `--bpffs` when the test chose one that outlives the daemon.
    pin_dir: Option<PathBuf>,
}

impl Daemon {
    /// Start `fastpath run` in `node_ns` with `args` after `run`, and wait until it serves. Its
    /// pins live in the private mount namespace `ip netns exec` gives it, and go with it.
    ///
    /// Unless `args` say `--trust`, the daemon runs with `--trust routes`: most suites prove the
    /// fast path by closing the kernel's FORWARD chain, which `--trust kernel` (the default)
    /// would rightly obey. The `--trust kernel` suite says so explicitly.
    pub fn start(node_ns: &str, args: &[&str]) -> Result<Self> {
        Self::spawn(node_ns, None, args)
    }

    /// As [`Self::start`], with its pins in `pin_dir` (on a bpffs that outlives the daemon,
    /// see [`crate::Bpffs`]), as a node agent runs.
    pub fn start_pinned(node_ns: &str, pin_dir: &Path, args: &[&str]) -> Result<Self> {
        Self::spawn(node_ns, Some(pin_dir), args)
    }

    fn spawn(node_ns: &str, pin_dir: Option<&Path>, args: &[&str]) -> Result<Self> {
        let log_dir = std::env::temp_dir().join("fastpath-tests");
        fs::create_dir_all(&log_dir)?;
        let log_path = log_dir.join(format!("{}.log", names::unique(node_ns)));
        let log = fs::File::create(&log_path)?;
        let child = Command::new("ip")
            .args(["netns", "exec", node_ns])
            .arg(fastpath_bin())
            .arg("run")
            .args(pin_dir.map(|d| vec!["--bpffs".to_string(), d.display().to_string()]).unwrap_or_default())
            .args(if args.contains(&"--trust") { &[][..] } else { &["--trust", "routes"][..] })
            .args(args)
            .env("RUST_LOG", "info,fastpath=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start fastpath")?;
        let mut daemon =
            Self { child, node_ns: node_ns.to_string(), log_path, pin_dir: pin_dir.map(Path::to_path_buf) };
        daemon.wait_serving(Duration::from_secs(20))?;
        Ok(daemon)
    }

    fn wait_serving(&mut self, timeout: Duration) -> Result<()> {
        let serving = wait::until(timeout, || {
            if self.log().contains("running:") {
                return Some(true);
            }
            matches!(self.child.try_wait(), Ok(Some(_))).then_some(false)
        });
        match serving {
            Some((true, _)) => Ok(()),
            Some((false, _)) => bail!("fastpath exited before serving:\n{}", self.log()),
            None => bail!("fastpath did not start serving within {timeout:?}:\n{}", self.log()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Run a `fastpath` subcommand beside the daemon: same network and mount namespace, same
    /// `--bpffs`.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        self.cli_handle().run(args)
    }

    /// What [`Self::cli`] needs, to run the CLI from another thread.
    pub fn cli_handle(&self) -> Cli {
        Cli { node_ns: self.node_ns.clone(), pid: self.pid(), pin_dir: self.pin_dir.clone() }
    }

    /// The prefixes in the daemon's route map (`fastpath routes --json`).
    pub fn route_prefixes(&self) -> Result<Vec<String>> {
        let rows: serde_json::Value = serde_json::from_str(&self.cli(&["routes", "--json"])?)?;
        let rows = rows.as_array().context("routes --json is not an array")?;
        rows.iter()
            .map(|r| r["prefix"].as_str().map(str::to_string).context("a route without a prefix"))
            .collect()
    }

    pub fn counters(&self) -> Result<Counters> {
        Counters::parse(&self.cli(&["stats", "--json"])?)
    }

    /// Ids of `program` the daemon reported attaching ("attached PROGRAM (prog id N)").
    pub fn attached_prog_ids(&self, program: &str) -> Vec<u32> {
        let marker = format!("attached {program} (prog id ");
        let mut ids: Vec<u32> = self
            .log()
            .split(&marker)
            .skip(1)
            .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Send SIGTERM and wait (at most 10 s) for the exit status.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        signal(self.pid(), libc::SIGTERM);
        let status = wait::until(Duration::from_secs(10), || self.child.try_wait().ok().flatten());
        match status {
            Some((status, _)) => Ok(status),
            None => bail!("fastpath did not exit within 10 s of SIGTERM:\n{}", self.log()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.terminate();
        }
        child::stop(&mut self.child, |_| {});
        child::keep_log_if_failing("fastpath", &self.log_path, &self.log());
    }
}

/// Run `fastpath ARGS --bpffs DIR` in node namespace `node_ns`, daemon or not.
pub fn node_cli(node_ns: &str, dir: &Path, args: &[&str]) -> Result<String> {
    let bin = fastpath_bin();
    let dir = dir.display().to_string();
    let mut full = vec![bin.to_str().context("binary path is not UTF-8")?];
    full.extend_from_slice(args);
    full.extend(["--bpffs", &dir]);
    cmd::in_ns_ok(node_ns, full[0], &full[1..])
}

fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
        unsafe { libc::kill(pid, signal) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_json_parses() {
        let c = Counters::parse(
            r#"{"arp_replied":{"packets":3,"bytes":126},"passed_ipv4":{"packets":0,"bytes":0}}"#,
        )
        .unwrap();
        assert_eq!(c.packets("arp_replied"), 3);
        assert_eq!(c.0["arp_replied"].bytes, 126);
        assert_eq!(c.packets("no_such_reason"), 0);
    }

    #[test]
    fn counters_since_an_earlier_reading_are_the_difference() {
        let before = Counters::parse(r#"{"arp_replied":{"packets":3,"bytes":126}}"#).unwrap();
        let after = Counters::parse(
            r#"{"arp_replied":{"packets":5,"bytes":210},"redirected_local":{"packets":7,"bytes":700}}"#,
        )
        .unwrap();
        let moved = after.since(&before);
        assert_eq!(moved.0["arp_replied"], Count { packets: 2, bytes: 84 });
        assert_eq!(moved.0["redirected_local"], Count { packets: 7, bytes: 700 });
    }

    #[test]
    fn stats_json_without_bytes_is_an_error() {
        assert!(Counters::parse(r#"{"arp_replied":{"packets":3}}"#).is_err());
    }
}
