//! Running the system's tools (ip, arping, bpftool, ...) with errors that say what failed.

use std::{
    io::Write as _,
    process::{Command, Output, Stdio},
};

use anyhow::{bail, Context as _, Result};

/// Run `program args...`; fail unless it exits 0; return its stdout.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    stdout_if_ok(output(program, args)?, || format!("`{program} {}`", args.join(" ")))
}

/// `out`'s stdout, or an error naming `what` failed, with its exit status and stderr.
pub fn stdout_if_ok(out: Output, what: impl FnOnce() -> String) -> Result<String> {
    if !out.status.success() {
        bail!("{} failed ({}): {}", what(), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `program args...` and return whatever it did, success or not.
pub fn output(program: &str, args: &[&str]) -> Result<Output> {
    Command::new(program).args(args).output().with_context(|| {
        format!("cannot start `{program}` (is it installed? `cargo xtask setup` installs it)")
    })
}

/// `ip -n NS args...`
pub fn ip(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Run a command inside namespace `ns` (`ip netns exec`).
pub fn in_ns(ns: &str, program: &str, args: &[&str]) -> Result<Output> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    output("ip", &full)
}

/// Set a sysctl inside namespace `ns`.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    in_ns_ok(ns, "sysctl", &["-qw", &format!("{key}={value}")]).map(drop)
}

/// Run a command inside namespace `ns`; fail unless it exits 0; return its stdout.
pub fn in_ns_ok(ns: &str, program: &str, args: &[&str]) -> Result<String> {
    stdout_if_ok(in_ns(ns, program, args)?, || format!("`{program} {}` in {ns}", args.join(" ")))
}

/// Run a command inside namespace `ns` with `input` on its stdin (`iptables-restore`, ...); fail
/// unless it exits 0; return its stdout.
pub fn in_ns_with_input(ns: &str, program: &str, args: &[&str], input: &[u8]) -> Result<String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{program}` (`cargo xtask setup` installs it)"))?;
    // A failed write (the program exited early) shows in its status and stderr below.
    let written = child.stdin.take().context("stdin")?.write_all(input);
    let out = child.wait_with_output()?;
    let out = stdout_if_ok(out, || format!("`{program} {}` in {ns}", args.join(" ")))?;
    written.with_context(|| format!("writing to `{program}` in {ns}"))?;
    Ok(out)
}
