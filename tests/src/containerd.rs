//! containerd, the runtime most Kubernetes nodes run, as a test's own daemon: its root, state,
//! socket, runc state and IO fifos all in one temporary folder, the CRI plugin off. `ctr` imports
//! images into the `k8s.io` namespace (the kubelet's) and runs containers from the same
//! [`RunSpec`] podman runs. The daemon is stopped and its folder removed when dropped; each
//! container is killed and deleted when its guard is.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    child, cmd,
    container::{RunSpec, Seccomp},
    names, wait,
};

/// The namespace the kubelet's images and containers live in.
pub const NAMESPACE: &str = "k8s.io";

/// The capabilities `ctr run` gives a container before `--cap-add` and `--cap-drop`
/// (containerd's default Unix spec). `ctr` refuses `--cap-drop ALL`: these are what dropping all
/// drops.
const CTR_DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Where containerd's shims put their sockets whatever the configuration says.
const SHIM_SOCKETS: &str = "/run/containerd/s";

pub struct Containerd {
    child: Child,
    dir: PathBuf,
    /// Whether /run/containerd was there before: if not, it goes when empty.
    run_dir_existed: bool,
}

impl Containerd {
    /// Start containerd and wait (at most 10 s) until it answers.
    pub fn start() -> Result<Self> {
        let dir = std::env::temp_dir().join("fastpath-tests").join(names::unique("containerd"));
        fs::create_dir_all(&dir)?;
        let config = dir.join("config.toml");
        fs::write(&config, config_toml(&dir))?;
        let log = fs::File::create(dir.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start containerd (`cargo xtask setup` installs it)")?;
        let run_dir_existed = Path::new(SHIM_SOCKETS).parent().is_some_and(Path::exists);
        let mut containerd = Self { child, dir, run_dir_existed };
        let up = wait::until(Duration::from_secs(10), || {
            if containerd.ctr_output(&["version"]).is_ok_and(|o| o.status.success()) {
                return Some(true);
            }
            matches!(containerd.child.try_wait(), Ok(Some(_))).then_some(false)
        });
        if up.is_none_or(|(up, _)| !up) {
            bail!("containerd did not start serving:\n{}", containerd.log());
        }
        Ok(containerd)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// Its folder, removed with it: a place for files that go with it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ctr --namespace k8s.io ARGS` against this daemon, whatever its exit code.
    pub fn ctr_output(&self, args: &[&str]) -> Result<Output> {
        Command::new("ctr")
            .arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .args(["--namespace", NAMESPACE])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("cannot start ctr (`cargo xtask setup` installs containerd)")
    }

    /// `ctr --namespace k8s.io ARGS`; fail unless it exits 0; return its stdout.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        cmd::stdout_if_ok(self.ctr_output(args)?, || format!("`ctr {}`", args.join(" ")))
    }

    /// The arguments after `ctr run` for `spec`, whose image's entrypoint is `entrypoint`.
    fn run_args(&self, spec: &RunSpec, entrypoint: &[String], log: &Path) -> Result<Vec<String>> {
        let mut args = vec![
            format!("--log-uri=file://{}", log.display()),
            format!("--runc-root={}", self.dir.join("runc").display()),
            format!("--fifo-dir={}", self.dir.join("fifo").display()),
        ];
        args.extend(run_flags(spec)?);
        args.push(spec.image.clone());
        args.push(spec.name.clone());
        args.extend(process_args(spec, entrypoint));
        Ok(args)
    }
}

/// The daemon's configuration: everything of its own under `dir`, no CRI plugin (no kubelet
/// talks to it).
pub fn config_toml(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\n[grpc]\n  address = \"{d}/containerd.sock\"\n"
    )
}

/// `ctr run` flags for the container settings of `spec`. A setting `ctr` cannot give is an error.
pub fn run_flags(spec: &RunSpec) -> Result<Vec<String>> {
    let mut args = Vec::new();
    if let Some(ns) = &spec.netns {
        args.push(format!("--with-ns=network:/run/netns/{ns}"));
    }
    if spec.privileged {
        args.push("--privileged".to_string());
    }
    let with_prefix =
        |cap: &str| if cap.starts_with("CAP_") { cap.to_string() } else { format!("CAP_{cap}") };
    for cap in &spec.cap_drop {
        if cap == "ALL" {
            args.extend(CTR_DEFAULT_CAPS.iter().map(|c| format!("--cap-drop={c}")));
        } else {
            args.push(format!("--cap-drop={}", with_prefix(cap)));
        }
    }
    for cap in &spec.cap_add {
        args.push(format!("--cap-add={}", with_prefix(cap)));
    }
    if spec.read_only_root {
        args.push("--read-only".to_string());
    }
    if !spec.no_new_privileges {
        // containerd's default spec sets no_new_privs, and ctr has no flag to clear it.
        bail!("ctr cannot run a container that may gain privileges");
    }
    match &spec.seccomp {
        Seccomp::Unconfined => {}
        Seccomp::RuntimeDefault => args.push("--seccomp".to_string()),
        Seccomp::Profile(path) => {
            args.extend(["--seccomp".to_string(), format!("--seccomp-profile={}", path.display())]);
        }
    }
    for m in &spec.mounts {
        let ro = if m.read_only { ":ro" } else { "" };
        args.push(format!(
            "--mount=type=bind,src={},dst={},options=rbind:{}{ro}",
            m.source.display(),
            m.target,
            m.propagation
        ));
    }
    if let Some(bytes) = spec.memory_limit {
        args.push(format!("--memory-limit={bytes}"));
    }
    for (name, value) in &spec.env {
        args.push(format!("--env={name}={value}"));
    }
    Ok(args)
}

/// The container's process: `ctr run`'s trailing arguments replace the image's entrypoint and
/// command both, so they are the entrypoint (Kubernetes' `command`, else the image's) and then
/// the arguments, as Kubernetes combines them.
pub fn process_args(spec: &RunSpec, image_entrypoint: &[String]) -> Vec<String> {
    let mut argv = spec.entrypoint.clone().unwrap_or_else(|| image_entrypoint.to_vec());
    argv.extend(spec.args.iter().cloned());
    argv
}

impl Drop for Containerd {
    fn drop(&mut self) {
        child::stop(&mut self.child, |c| {
            if let Ok(pid) = libc::pid_t::try_from(c.id()) {
                // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let _ = wait::until(Duration::from_secs(10), || c.try_wait().ok().flatten());
        });
        child::keep_log_if_failing("containerd", &self.dir, &self.log());
        if !self.run_dir_existed {
            // Only empty folders go: another containerd's sockets would stay.
            let shim_sockets = Path::new(SHIM_SOCKETS);
            let _ = fs::remove_dir(shim_sockets);
            let _ = shim_sockets.parent().map(fs::remove_dir);
        }
    }
}

/// A container started with `ctr run --detach`; its task killed and the container deleted when
/// dropped, its log printed first if the test is failing.
pub struct CtrContainer<'a> {
    containerd: &'a Containerd,
    pub id: String,
    log: PathBuf,
    deleted: bool,
}

impl<'a> CtrContainer<'a> {
    pub fn start(containerd: &'a Containerd, spec: &RunSpec, image_entrypoint: &[String]) -> Result<Self> {
        let log = containerd.dir.join(format!("{}.log", spec.name));
        let mut args = vec!["run".to_string(), "--detach".to_string()];
        args.extend(containerd.run_args(spec, image_entrypoint, &log)?);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let container = Self { containerd, id: spec.name.clone(), log, deleted: false };
        containerd.ctr(&refs)?;
        Ok(container)
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its task's pid and status (`RUNNING`, `STOPPED`), from `ctr task ls`.
    fn task(&self) -> Result<(u32, String)> {
        let list = self.containerd.ctr(&["task", "ls"])?;
        let line = list
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&self.id))
            .with_context(|| format!("no task {}:\n{list}", self.id))?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        Ok((fields.get(1).context("no pid")?.parse()?, fields.get(2).context("no status")?.to_string()))
    }

    pub fn pid(&self) -> Result<u32> {
        Ok(self.task()?.0)
    }

    pub fn running(&self) -> bool {
        self.task().is_ok_and(|(_, status)| status == "RUNNING")
    }

    /// `ctr task exec` ARGS in the container; fail unless it exits 0; return its stdout.
    pub fn exec_ok(&self, args: &[&str]) -> Result<String> {
        let exec_id = names::unique("exec");
        let fifo_dir = format!("--fifo-dir={}", self.containerd.dir.join("fifo").display());
        let mut full = vec!["task", "exec", &fifo_dir, "--exec-id", &exec_id, &self.id];
        full.extend_from_slice(args);
        self.containerd.ctr(&full)
    }

    /// SIGTERM, wait (at most `timeout` seconds) for the task to stop, delete task and container;
    /// returns the exit code.
    pub fn stop(mut self, timeout: u64) -> Result<i32> {
        self.containerd.ctr(&["task", "kill", "--signal", "SIGTERM", &self.id])?;
        let stopped =
            wait::until(Duration::from_secs(timeout), || self.task().ok().filter(|(_, s)| s == "STOPPED"));
        if stopped.is_none() {
            bail!("{} did not stop within {timeout} s of SIGTERM:\n{}", self.id, self.logs());
        }
        // `ctr task delete` exits with the task's exit code.
        let deleted = self.containerd.ctr_output(&["task", "delete", &self.id])?;
        let code = deleted.status.code().context("ctr task delete was killed")?;
        self.containerd.ctr(&["container", "delete", &self.id])?;
        self.deleted = true;
        Ok(code)
    }
}

impl Drop for CtrContainer<'_> {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        if std::thread::panicking() {
            eprintln!("container {} logged:\n{}", self.id, self.logs());
        }
        let _ = self.containerd.ctr_output(&["task", "kill", "--signal", "SIGKILL", &self.id]);
        let _ = wait::until(Duration::from_secs(5), || match self.task() {
            Ok((_, status)) if status != "STOPPED" => None,
            _ => Some(()),
        });
        let _ = self.containerd.ctr_output(&["task", "delete", "--force", &self.id]);
        if let Err(e) = self.containerd.ctr(&["container", "delete", &self.id]) {
            eprintln!("cleanup: {e:#}");
        }
    }
}

/// Run a container to its end (`ctr run --rm`, attached); its output whatever the exit code.
pub fn run_to_end(containerd: &Containerd, spec: &RunSpec, image_entrypoint: &[String]) -> Result<Output> {
    let mut args = vec!["run".to_string(), "--rm".to_string()];
    args.extend(run_flags(spec)?);
    args.extend([
        format!("--runc-root={}", containerd.dir.join("runc").display()),
        format!("--fifo-dir={}", containerd.dir.join("fifo").display()),
    ]);
    args.push(spec.image.clone());
    args.push(spec.name.clone());
    args.extend(process_args(spec, image_entrypoint));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    containerd.ctr_output(&refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RunSpec {
        crate::container::sample_spec()
    }

    #[test]
    fn the_spec_becomes_ctr_flags() {
        let flags = run_flags(&spec()).unwrap().join(" ");
        assert!(flags.starts_with("--with-ns=network:/run/netns/node1 --cap-drop=CAP_CHOWN "), "{flags}");
        assert_eq!(flags.matches("--cap-drop=").count(), CTR_DEFAULT_CAPS.len(), "{flags}");
        assert!(
            flags.ends_with(
                "--cap-add=CAP_BPF --cap-add=CAP_NET_ADMIN --read-only --seccomp \
                 --mount=type=bind,src=/run/t/bpffs,dst=/sys/fs/bpf,options=rbind:rslave \
                 --memory-limit=268435456 --env=FASTPATH_TRUST=routes"
            ),
            "{flags}"
        );
        let may_escalate = RunSpec { no_new_privileges: false, ..spec() };
        assert!(run_flags(&may_escalate).is_err());
    }

    #[test]
    fn args_follow_the_image_entrypoint_unless_a_command_replaces_it() {
        let entrypoint = ["/usr/local/bin/fastpath".to_string()];
        assert_eq!(process_args(&spec(), &entrypoint), ["/usr/local/bin/fastpath", "run"]);
        let with_command = RunSpec { entrypoint: Some(vec!["/bin/other".into()]), ..spec() };
        assert_eq!(process_args(&with_command, &entrypoint), ["/bin/other", "run"]);
    }

    #[test]
    fn the_daemon_keeps_everything_in_its_folder() {
        let conf = config_toml(Path::new("/tmp/x"));
        for line in
            ["root = \"/tmp/x/root\"", "state = \"/tmp/x/state\"", "address = \"/tmp/x/containerd.sock\""]
        {
            assert!(conf.contains(line), "{conf}");
        }
    }
}
