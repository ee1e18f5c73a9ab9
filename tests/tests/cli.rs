//! The binary's contract with its user: bad input is one readable line and exit code 2.

use std::process::{Command, Output};

use fastpath_tests::{daemon::fastpath_bin, names, require_root, Netns};

fn fastpath(args: &[&str]) -> Output {
    Command::new(fastpath_bin()).args(args).output().expect("run fastpath")
}

fn one_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).into_owned();
    assert_eq!(text.trim_end().lines().count(), 1, "expected one line, got: {text:?}");
    text
}

#[test]
fn a_bad_flag_is_one_line_and_exit_code_2() {
    let out = fastpath(&["run", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let line = one_line(&out.stderr);
    assert!(line.contains("--no-such-flag"), "{line}");
}

#[test]
fn a_bad_flag_value_is_one_line_and_exit_code_2() {
    let out = fastpath(&["run", "--iface-prefix", "a-prefix-far-too-long"]);
    assert_eq!(out.status.code(), Some(2));
    let line = one_line(&out.stderr);
    assert!(line.contains("--iface-prefix"), "{line}");
}

#[test]
fn a_missing_interface_is_one_line_and_exit_code_2() {
    require_root();
    let ns = Netns::new(names::unique("noif")).unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(fastpath_bin())
        .args(["run", "--iface", "nope0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let line = one_line(&out.stderr);
    assert!(line.contains("interface 'nope0' does not exist"), "{line}");
}

#[test]
fn stats_without_a_daemon_says_so() {
    require_root();
    let ns = Netns::new(names::unique("nostats")).unwrap();
    // A fresh mount namespace: no daemon has pinned anything there.
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(fastpath_bin())
        .args(["stats", "--bpffs", "/sys/fs/bpf/fastpath"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = one_line(&out.stderr);
    assert!(line.contains("cannot open pinned map /sys/fs/bpf/fastpath/FP_COUNTERS"), "{line}");
}

#[test]
fn a_missing_underlay_is_one_line_and_exit_code_2() {
    require_root();
    let ns = Netns::new(names::unique("nound")).unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(fastpath_bin())
        .args(["run", "--underlay", "eth7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let line = one_line(&out.stderr);
    assert!(line.contains("interface 'eth7' does not exist"), "{line}");
}

#[test]
fn no_default_route_and_no_underlay_flag_is_one_readable_line() {
    require_root();
    let ns = Netns::new(names::unique("nodef")).unwrap();
    let out =
        Command::new("ip").args(["netns", "exec", &ns.name]).arg(fastpath_bin()).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = one_line(&out.stderr);
    assert!(line.contains("pass --underlay IFACE"), "{line}");
}

#[test]
fn flags_come_from_fastpath_environment_variables_too() {
    require_root();
    let ns = Netns::new(names::unique("env")).unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(fastpath_bin())
        .arg("run")
        .env("FASTPATH_UNDERLAY", "eth8")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(one_line(&out.stderr).contains("interface 'eth8' does not exist"));
}
