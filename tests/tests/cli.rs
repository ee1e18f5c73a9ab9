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

/// Run `fastpath ARGS` (with `env`) in a fresh, empty network namespace, as `ip netns exec` does.
fn fastpath_in_empty_namespace(tag: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    require_root();
    let ns = Netns::new(names::unique(tag)).unwrap();
    Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(fastpath_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
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
fn two_tunnels_claiming_the_underlay_is_one_line_and_exit_code_2() {
    for args in [
        &["run", "--ipip", "always", "--vxlan", "always"][..],
        &["run", "--vxlan", "cross-subnet", "--ipip", "always"],
    ] {
        let out = fastpath(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let line = one_line(&out.stderr);
        assert!(line.contains("both claim the routes via the underlay"), "{line}");
    }
    // The same through the DaemonSet's variables.
    let out = Command::new(fastpath_bin())
        .arg("run")
        .env("FASTPATH_IPIP", "cross-subnet")
        .env("FASTPATH_VXLAN", "always")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line(&out.stderr).contains("--ipip cross-subnet and --vxlan always"));
}

#[test]
fn a_missing_interface_is_one_line_and_exit_code_2() {
    let out = fastpath_in_empty_namespace("noif", &["run", "--iface", "nope0"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let line = one_line(&out.stderr);
    assert!(line.contains("interface 'nope0' does not exist"), "{line}");
}

#[test]
fn stats_without_a_daemon_says_so() {
    // A fresh mount namespace: no daemon has pinned anything there.
    let out = fastpath_in_empty_namespace("nostats", &["stats", "--bpffs", "/sys/fs/bpf/fastpath"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = one_line(&out.stderr);
    assert!(line.contains("cannot open pinned map /sys/fs/bpf/fastpath/FP_COUNTERS"), "{line}");
}

#[test]
fn a_missing_underlay_is_one_line_and_exit_code_2() {
    let out = fastpath_in_empty_namespace("nound", &["run", "--underlay", "eth7"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let line = one_line(&out.stderr);
    assert!(line.contains("interface 'eth7' does not exist"), "{line}");
}

#[test]
fn no_default_route_and_no_underlay_flag_is_one_readable_line() {
    let out = fastpath_in_empty_namespace("nodef", &["run"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = one_line(&out.stderr);
    assert!(line.contains("pass --underlay IFACE"), "{line}");
}

#[test]
fn flags_come_from_fastpath_environment_variables_too() {
    let out = fastpath_in_empty_namespace("env", &["run"], &[("FASTPATH_UNDERLAY", "eth8")]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(one_line(&out.stderr).contains("interface 'eth8' does not exist"));
}
