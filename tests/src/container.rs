//! Containers under podman, run as a kubelet would run a pod's container: podman flags for the
//! container fields a test takes from a manifest ([`RunSpec`]), a seccomp profile shaped like
//! containerd's default ([`containerd_like_profile`]), and guards that remove every container,
//! image and file they made, on success and on failure.
//!
//! What this machine needs, and every run here does: runc (crun, podman's preference, cannot
//! start containers with cgroups v1), and nofile/nproc limits with equal soft and hard values
//! within the host's hard limits (podman's own defaults exceed them and the start fails on
//! setrlimit), given in a `CONTAINERS_CONF` file of the test's own so nothing under /etc changes.
//! No container uses podman's default bridge network, which would turn on IPv4 forwarding in the
//! host's namespace and add iptables chains there: a container joins a node's namespace, or none.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::Arc,
};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::{cmd, names};

/// The OCI runtime every container here runs under.
pub const RUNTIME: &str = "runc";

/// podman with a `CONTAINERS_CONF` of the test's own; cheap to clone, the file goes with the last
/// clone.
#[derive(Clone, Debug)]
pub struct Podman {
    conf: Arc<ConfFile>,
}

#[derive(Debug)]
struct ConfFile(PathBuf);

impl Drop for ConfFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

impl Podman {
    pub fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join("fastpath-tests");
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.containers.conf", names::unique("podman")));
        let nofile = hard_limit(libc::RLIMIT_NOFILE)?;
        let nproc = hard_limit(libc::RLIMIT_NPROC)?;
        fs::write(&path, containers_conf(nofile, nproc))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self { conf: Arc::new(ConfFile(path)) })
    }

    /// `podman ARGS` under this configuration.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("podman");
        cmd.args(args).env("CONTAINERS_CONF", &self.conf.0).stdin(Stdio::null());
        cmd
    }

    /// Run `podman ARGS`, whatever its exit code.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        self.command(args).output().context("cannot start podman (`cargo xtask setup` installs it)")
    }

    /// Run `podman ARGS`; fail unless it exits 0; return its stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        cmd::stdout_if_ok(self.output(args)?, || format!("`podman {}`", args.join(" ")))
    }

    /// The seccomp profile podman applies when asked for none: its own default, as the
    /// containers packages installed it.
    pub fn default_seccomp_profile(&self) -> Result<PathBuf> {
        let path = self.run(&["info", "--format", "{{.Host.Security.SECCOMPProfilePath}}"])?;
        let path = PathBuf::from(path.trim());
        if !path.is_file() {
            bail!("podman names {} as its default seccomp profile, which is not a file", path.display());
        }
        Ok(path)
    }

    /// Names of every container, running or not, whose name starts with `prefix`.
    pub fn containers_named(&self, prefix: &str) -> Result<Vec<String>> {
        let out = self.run(&["ps", "--all", "--format", "{{.Names}}"])?;
        Ok(out.lines().filter(|n| n.starts_with(prefix)).map(str::to_string).collect())
    }
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    Ok(limit.rlim_max)
}

/// The containers.conf every container here runs under: limits a container can set (soft = hard,
/// within the host's hard limits), and logs `podman logs` can read without journald.
pub fn containers_conf(nofile_hard: u64, nproc_hard: u64) -> String {
    let nproc = nproc_hard.min(32_768);
    format!(
        "[containers]\ndefault_ulimits = [\"nofile={nofile_hard}:{nofile_hard}\", \"nproc={nproc}:{nproc}\"]\nlog_driver = \"k8s-file\"\n"
    )
}

/// The seccomp filter a container runs under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seccomp {
    Unconfined,
    /// The runtime's own default profile.
    RuntimeDefault,
    Profile(PathBuf),
}

/// A bind mount from the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
    /// `rprivate`, `rslave` or `rshared` (Kubernetes' None, HostToContainer, Bidirectional).
    pub propagation: &'static str,
}

/// One `podman run`: the container's settings as a kubelet would give them to its runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    pub name: String,
    pub image: String,
    /// Replaces the image's entrypoint (Kubernetes' `command`).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's CMD (Kubernetes' `args`).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The network namespace to join (a node's, for `hostNetwork`); none at all without one.
    pub netns: Option<String>,
    pub privileged: bool,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub read_only_root: bool,
    pub no_new_privileges: bool,
    pub seccomp: Seccomp,
    pub mounts: Vec<Mount>,
    pub memory_limit: Option<u64>,
    /// Seconds between SIGTERM and SIGKILL on `podman stop` (`terminationGracePeriodSeconds`).
    pub stop_timeout: Option<u64>,
}

impl RunSpec {
    /// The arguments after `podman run`.
    pub fn podman_args(&self) -> Vec<String> {
        let mut args: Vec<String> =
            ["--name", &self.name, "--runtime", RUNTIME, "--pull", "never"].map(str::to_string).to_vec();
        args.push(match &self.netns {
            Some(ns) => format!("--network=ns:/run/netns/{ns}"),
            None => "--network=none".to_string(),
        });
        if self.privileged {
            args.push("--privileged".to_string());
        }
        for cap in &self.cap_drop {
            args.push(format!("--cap-drop={cap}"));
        }
        for cap in &self.cap_add {
            args.push(format!("--cap-add={cap}"));
        }
        if self.read_only_root {
            // Kubernetes mounts no tmpfs on a read-only root; podman would, unless told not to.
            args.extend(["--read-only".to_string(), "--read-only-tmpfs=false".to_string()]);
        }
        if self.no_new_privileges {
            args.push("--security-opt=no-new-privileges".to_string());
        }
        match &self.seccomp {
            Seccomp::Unconfined => args.push("--security-opt=seccomp=unconfined".to_string()),
            Seccomp::RuntimeDefault => {}
            Seccomp::Profile(path) => args.push(format!("--security-opt=seccomp={}", path.display())),
        }
        for m in &self.mounts {
            let ro = if m.read_only { "ro," } else { "" };
            args.push(format!("--volume={}:{}:{ro}{}", m.source.display(), m.target, m.propagation));
        }
        if let Some(bytes) = self.memory_limit {
            args.push(format!("--memory={bytes}"));
        }
        if let Some(seconds) = self.stop_timeout {
            args.push(format!("--stop-timeout={seconds}"));
        }
        for (name, value) in &self.env {
            args.push(format!("--env={name}={value}"));
        }
        if let Some(entrypoint) = &self.entrypoint {
            args.push(format!("--entrypoint={}", json!(entrypoint)));
        }
        args.push(self.image.clone());
        args.extend(self.args.iter().cloned());
        args
    }
}

/// A container started with `podman run --detach`; removed (killed if need be) when dropped,
/// its log printed first if the test is failing.
#[derive(Debug)]
pub struct Container {
    podman: Podman,
    pub name: String,
    removed: bool,
}

impl Container {
    pub fn start(podman: &Podman, spec: &RunSpec) -> Result<Self> {
        let mut args = vec!["run".to_string(), "--detach".to_string()];
        args.extend(spec.podman_args());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        // Guard it before it runs: a failed start may still leave a created container behind.
        let container = Self { podman: podman.clone(), name: spec.name.clone(), removed: false };
        podman.run(&refs)?;
        Ok(container)
    }

    /// `podman exec NAME ARGS`, whatever its exit code.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        let mut full = vec!["exec", &self.name];
        full.extend_from_slice(args);
        self.podman.output(&full)
    }

    /// `podman exec NAME ARGS`; fail unless it exits 0; return its stdout.
    pub fn exec_ok(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["exec", &self.name];
        full.extend_from_slice(args);
        self.podman.run(&full)
    }

    /// Everything the container wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        match self.podman.output(&["logs", &self.name]) {
            Ok(out) => {
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
            }
            Err(e) => format!("(no logs: {e:#})"),
        }
    }

    fn inspect(&self, format: &str) -> Result<String> {
        Ok(self.podman.run(&["inspect", "--format", format, &self.name])?.trim().to_string())
    }

    pub fn running(&self) -> Result<bool> {
        Ok(self.inspect("{{.State.Running}}")? == "true")
    }

    /// The exit code, once it has exited.
    pub fn exit_code(&self) -> Result<Option<i32>> {
        if self.running()? {
            return Ok(None);
        }
        Ok(Some(self.inspect("{{.State.ExitCode}}")?.parse()?))
    }

    /// The id of the image it runs.
    pub fn image_id(&self) -> Result<String> {
        self.inspect("{{.Image}}")
    }

    /// The host's pid of its first process.
    pub fn pid(&self) -> Result<u32> {
        Ok(self.inspect("{{.State.Pid}}")?.parse()?)
    }

    /// `podman stop` (SIGTERM, SIGKILL after `timeout` seconds), then remove it; returns its
    /// exit code.
    pub fn stop(mut self, timeout: u64) -> Result<i32> {
        self.podman.run(&["stop", "--time", &timeout.to_string(), &self.name])?;
        let code = self.exit_code()?.context("still running after podman stop")?;
        self.podman.run(&["rm", &self.name])?;
        self.removed = true;
        Ok(code)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if std::thread::panicking() {
            eprintln!("container {} logged:\n{}", self.name, self.logs());
        }
        if let Err(e) = self.podman.run(&["rm", "--force", "--time", "0", &self.name]) {
            eprintln!("cleanup: {e:#}");
        }
    }
}

/// How the kernel confines process `pid`: its seccomp mode (`Seccomp:` in /proc/PID/status; 0
/// unconfined, 2 filtered) and its effective capabilities (`CapEff:`, a bit per capability).
pub fn confinement(pid: u32) -> Result<(u32, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("Seccomp:")?.parse()?, u64::from_str_radix(field("CapEff:")?, 16)?))
}

/// Linux's capabilities, each at its bit number (include/uapi/linux/capability.h).
const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capability set (as `CapEff:` shows it) holding exactly `names` (`BPF` or `CAP_BPF`).
pub fn capability_mask(names: &[String]) -> Result<u64> {
    names.iter().try_fold(0, |mask, name| {
        let bare = name.strip_prefix("CAP_").unwrap_or(name);
        let bit =
            CAPABILITIES.iter().position(|c| *c == bare).with_context(|| format!("no capability {name}"))?;
        Ok(mask | 1 << bit)
    })
}

/// Run a container to its end (`podman run --rm`, attached); its output whatever the exit code.
pub fn run_to_end(podman: &Podman, spec: &RunSpec) -> Result<Output> {
    let mut args = vec!["run".to_string(), "--rm".to_string()];
    args.extend(spec.podman_args());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    podman.output(&refs)
}

/// An image made from another by adding a label: another image id for the same binary, as a
/// rolling update needs. Removed when dropped.
#[derive(Debug)]
pub struct DerivedImage {
    podman: Podman,
    pub name: String,
    pub id: String,
}

impl DerivedImage {
    pub fn build(podman: &Podman, from: &str, name: &str) -> Result<Self> {
        let context = std::env::temp_dir().join("fastpath-tests").join(names::unique("image"));
        fs::create_dir_all(&context)?;
        fs::write(
            context.join("Containerfile"),
            format!("FROM {from}\nLABEL fastpath.test.image=\"{name}\"\n"),
        )?;
        let built = podman.run(&[
            "build",
            "--pull=never",
            "--layers=false",
            "--quiet",
            "--tag",
            name,
            &context.display().to_string(),
        ]);
        let _ = fs::remove_dir_all(&context);
        let id = built?.trim().to_string();
        Ok(Self { podman: podman.clone(), name: name.to_string(), id })
    }
}

impl Drop for DerivedImage {
    fn drop(&mut self) {
        if let Err(e) = self.podman.run(&["rmi", "--force", &self.name]) {
            eprintln!("cleanup: {e:#}");
        }
    }
}

/// A name of the test's own for an image podman has; the name (not the image) goes when dropped.
#[derive(Debug)]
pub struct Tag {
    podman: Podman,
    pub name: String,
}

impl Tag {
    pub fn new(podman: &Podman, image: &str, name: &str) -> Result<Self> {
        podman.run(&["tag", image, name])?;
        Ok(Self { podman: podman.clone(), name: name.to_string() })
    }
}

impl Drop for Tag {
    fn drop(&mut self) {
        // `podman untag IMAGE` alone would remove every name of the image.
        if let Err(e) = self.podman.run(&["untag", &self.name, &self.name]) {
            eprintln!("cleanup: {e:#}");
        }
    }
}

/// Whether podman has an image by this name or id.
pub fn image_exists(podman: &Podman, image: &str) -> Result<bool> {
    let out = podman.output(&["image", "exists", image])?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => bail!(
            "`podman image exists {image}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The syscalls containerd's default profile grants to the holders of one capability each, where
/// podman's (containers-common before 0.60) grants them only to CAP_SYS_ADMIN.
const GRANTED_BY_CAPABILITY: [(&str, &str); 2] = [("bpf", "CAP_BPF"), ("perf_event_open", "CAP_PERFMON")];

/// A profile that treats `bpf()` and `perf_event_open()` as containerd's default does, derived
/// from `profile`, a containers-common seccomp.json (podman's default): where it lets only
/// CAP_SYS_ADMIN make them, they become allowed to CAP_BPF and CAP_PERFMON holders too, and stay
/// EPERM for a container with neither; every other rule is `profile`'s. A profile that already
/// grants them so is returned as it is.
pub fn containerd_like_profile(profile: &Value) -> Result<Value> {
    let mut derived = profile.clone();
    let rules = derived["syscalls"].as_array_mut().context("a seccomp profile without syscalls")?;
    let mut changed = false;
    for (syscall, cap) in GRANTED_BY_CAPABILITY {
        if rules.iter().any(|r| names_syscall(r, syscall) && is_allow(r) && includes_only(r, cap)) {
            continue;
        }
        // The rule denying it to everyone but CAP_SYS_ADMIN would clash with an allowing one.
        let mut denied = false;
        for rule in rules.iter_mut() {
            if names_syscall(rule, syscall) && !is_allow(rule) && excludes_cap(rule, "CAP_SYS_ADMIN") {
                let names = rule["names"].as_array_mut().context("a rule without names")?;
                names.retain(|n| n != syscall);
                denied = true;
            }
        }
        if !denied {
            bail!("the profile neither grants {syscall}() to {cap} nor denies it to all but CAP_SYS_ADMIN");
        }
        rules.retain(|r| r["names"].as_array().is_some_and(|n| !n.is_empty()));
        rules.push(json!({"names": [syscall], "action": "SCMP_ACT_ALLOW", "includes": {"caps": [cap]}, "excludes": {}}));
        rules.push(json!({
            "names": [syscall],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EPERM,
            "includes": {},
            "excludes": {"caps": ["CAP_SYS_ADMIN", cap]},
        }));
        changed = true;
    }
    if !changed {
        eprintln!("the profile already grants bpf() and perf_event_open() as containerd's does");
    }
    Ok(derived)
}

fn names_syscall(rule: &Value, syscall: &str) -> bool {
    rule["names"].as_array().is_some_and(|names| names.iter().any(|n| n == syscall))
}

fn is_allow(rule: &Value) -> bool {
    rule["action"] == "SCMP_ACT_ALLOW"
}

fn includes_only(rule: &Value, cap: &str) -> bool {
    rule["includes"]["caps"].as_array().is_some_and(|caps| caps.len() == 1 && caps[0] == cap)
}

fn excludes_cap(rule: &Value, cap: &str) -> bool {
    rule["excludes"]["caps"].as_array().is_some_and(|caps| caps.iter().any(|c| c == cap))
}

/// Write `profile` to a file of the test's own, removed when dropped.
#[derive(Debug)]
pub struct ProfileFile {
    pub path: PathBuf,
}

impl ProfileFile {
    pub fn new(profile: &Value) -> Result<Self> {
        let dir = std::env::temp_dir().join("fastpath-tests");
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.seccomp.json", names::unique("seccomp")));
        fs::write(&path, serde_json::to_vec_pretty(profile)?)?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ProfileFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A spec as the container tests read one from the manifest, for the unit tests of what each
/// runtime makes of it.
#[cfg(test)]
pub(crate) fn sample_spec() -> RunSpec {
    RunSpec {
        name: "n".into(),
        image: "localhost/fastpath:0.1.0".into(),
        entrypoint: None,
        args: vec!["run".into()],
        env: vec![("FASTPATH_TRUST".into(), "routes".into())],
        netns: Some("node1".into()),
        privileged: false,
        cap_drop: vec!["ALL".into()],
        cap_add: vec!["BPF".into(), "NET_ADMIN".into()],
        read_only_root: true,
        no_new_privileges: true,
        seccomp: Seccomp::RuntimeDefault,
        mounts: vec![Mount {
            source: "/run/t/bpffs".into(),
            target: "/sys/fs/bpf".into(),
            read_only: false,
            propagation: "rslave",
        }],
        memory_limit: Some(268_435_456),
        stop_timeout: Some(30),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The actions a runtime built on containers-common's seccomp code applies to `syscall` in a
    /// container holding `caps`: a rule counts when the container holds every capability it
    /// includes and none it excludes. Neither rule: the default action.
    fn actions(profile: &Value, syscall: &str, caps: &[&str]) -> Vec<String> {
        let held = |c: &Value| caps.iter().any(|h| c == h);
        let rules = profile["syscalls"].as_array().unwrap();
        let found: Vec<String> = rules
            .iter()
            .filter(|r| names_syscall(r, syscall))
            .filter(|r| r["includes"]["caps"].as_array().is_none_or(|c| c.iter().all(held)))
            .filter(|r| r["excludes"]["caps"].as_array().is_none_or(|c| !c.iter().any(held)))
            .map(|r| {
                format!(
                    "{}{}",
                    r["action"].as_str().unwrap(),
                    r.get("errnoRet").map_or(String::new(), |e| format!("({e})"))
                )
            })
            .collect();
        if found.is_empty() {
            vec![profile["defaultAction"].as_str().unwrap().to_string()]
        } else {
            found
        }
    }

    /// The shape of podman 4.3's default (containers-common 0.50), cut down.
    fn podman_4_3() -> Value {
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "includes": {}, "excludes": {}},
                {"names": ["bpf", "perf_event_open", "setns"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"caps": ["CAP_SYS_ADMIN"]}, "excludes": {}},
                {"names": ["bpf", "perf_event_open", "setns"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "includes": {}, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            ]
        })
    }

    const DAEMONSET_CAPS: &[&str] = &["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"];

    #[test]
    fn podman_4_3_denies_bpf_without_sys_admin() {
        let p = podman_4_3();
        assert_eq!(actions(&p, "bpf", DAEMONSET_CAPS), ["SCMP_ACT_ERRNO(1)"]);
        assert_eq!(actions(&p, "perf_event_open", DAEMONSET_CAPS), ["SCMP_ACT_ERRNO(1)"]);
        assert_eq!(actions(&p, "bpf", &["CAP_SYS_ADMIN"]), ["SCMP_ACT_ALLOW"]);
    }

    #[test]
    fn the_containerd_like_profile_grants_bpf_to_cap_bpf_and_perf_event_open_to_cap_perfmon() {
        let p = containerd_like_profile(&podman_4_3()).unwrap();
        assert_eq!(actions(&p, "bpf", DAEMONSET_CAPS), ["SCMP_ACT_ALLOW"]);
        assert_eq!(actions(&p, "perf_event_open", DAEMONSET_CAPS), ["SCMP_ACT_ALLOW"]);
        assert_eq!(actions(&p, "bpf", &["CAP_PERFMON"]), ["SCMP_ACT_ERRNO(1)"]);
        assert_eq!(actions(&p, "perf_event_open", &["CAP_BPF"]), ["SCMP_ACT_ERRNO(1)"]);
        assert_eq!(actions(&p, "bpf", &[]), ["SCMP_ACT_ERRNO(1)"]);
        assert_eq!(actions(&p, "bpf", &["CAP_SYS_ADMIN"]), ["SCMP_ACT_ALLOW"]);
        // Everything else is podman's.
        assert_eq!(actions(&p, "setns", DAEMONSET_CAPS), ["SCMP_ACT_ERRNO(1)"]);
        assert_eq!(actions(&p, "setns", &["CAP_SYS_ADMIN"]), ["SCMP_ACT_ALLOW"]);
        assert_eq!(actions(&p, "read", &[]), ["SCMP_ACT_ALLOW"]);
        assert_eq!(actions(&p, "reboot", DAEMONSET_CAPS), ["SCMP_ACT_ERRNO"]);
        // Deriving again changes nothing.
        assert_eq!(containerd_like_profile(&p).unwrap(), p);
    }

    #[test]
    fn a_profile_that_never_mentions_bpf_is_refused() {
        let p = json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]});
        assert!(containerd_like_profile(&p).is_err());
    }

    #[test]
    fn the_spec_becomes_podman_flags() {
        let spec = RunSpec { seccomp: Seccomp::Profile("/p.json".into()), ..sample_spec() };
        assert_eq!(
            spec.podman_args().join(" "),
            "--name n --runtime runc --pull never --network=ns:/run/netns/node1 --cap-drop=ALL \
             --cap-add=BPF --cap-add=NET_ADMIN --read-only --read-only-tmpfs=false \
             --security-opt=no-new-privileges --security-opt=seccomp=/p.json \
             --volume=/run/t/bpffs:/sys/fs/bpf:rslave --memory=268435456 --stop-timeout=30 \
             --env=FASTPATH_TRUST=routes localhost/fastpath:0.1.0 run"
        );
        let other = RunSpec {
            netns: None,
            seccomp: Seccomp::Unconfined,
            entrypoint: Some(vec!["/bin/x".into(), "-v".into()]),
            ..spec
        };
        let args = other.podman_args();
        assert!(args.contains(&"--network=none".to_string()), "{args:?}");
        assert!(args.contains(&"--security-opt=seccomp=unconfined".to_string()), "{args:?}");
        assert!(args.contains(&r#"--entrypoint=["/bin/x","-v"]"#.to_string()), "{args:?}");
    }

    #[test]
    fn capability_names_become_bits() {
        let names = ["BPF", "NET_ADMIN", "CAP_PERFMON"].map(String::from);
        // As /proc/PID/status shows a container holding these three: 000000c000001000.
        assert_eq!(capability_mask(&names).unwrap(), 0xc0_0000_1000);
        assert!(capability_mask(&["NET_ADMIM".to_string()]).is_err());
    }

    #[test]
    fn limits_are_equal_soft_and_hard_within_the_hosts() {
        let conf = containers_conf(20_000, 96_365);
        assert!(conf.contains(r#"default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]"#), "{conf}");
        assert!(containers_conf(1024, 4096).contains(r#""nproc=4096:4096""#));
    }
}
