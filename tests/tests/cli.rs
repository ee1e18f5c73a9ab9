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

#[test]
fn bad_numeric_flags_are_one_line_and_exit_code_2() {
    for (args, env) in [
        (&["run", "--resync-interval", "18446744073709551615"][..], None),
        (&["run", "--resync-interval", "99999999999999999999999"], None),
        (&["run", "--resync-interval=-5"], None),
        (&["run"], Some(("FASTPATH_RESYNC_INTERVAL", "18446744073709551615"))),
        (&["run", "--flow-table-size", "4294967296"], None),
        (&["monitor", "--duration", "18446744073709551615"], None),
        (&["monitor", "--count", "0"], None),
        (&["explain", "--size", "70000", "10.0.0.1", "10.0.0.2"], None),
    ] {
        let out = Command::new(fastpath_bin()).args(args).envs(env).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {out:?}");
        let line = one_line(&out.stderr);
        assert!(line.starts_with("error: invalid value"), "{args:?}: {line}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn completion_scripts_for_three_shells() {
    for (shell, marker) in
        [("bash", "complete -F"), ("zsh", "#compdef fastpath"), ("fish", "complete -c fastpath")]
    {
        let out = fastpath(&["completion", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for word in ["status", "flows", "monitor", "completion", "--bpffs", "--resync-interval"] {
            // fish names a long option without its dashes: `-l bpffs`.
            let word = match (shell, word.strip_prefix("--")) {
                ("fish", Some(long)) => format!("-l {long}"),
                _ => word.to_string(),
            };
            assert!(script.contains(&word), "{shell}: no {word:?}");
        }
    }
    // Bash can at least parse its own.
    let script = fastpath(&["completion", "bash"]).stdout;
    let path = std::env::temp_dir().join(format!("{}.bash", names::unique("compl")));
    std::fs::write(&path, script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(check.status.success(), "{check:?}");
    let out = fastpath(&["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    one_line(&out.stderr);
}

#[test]
fn version_names_the_client_and_its_revision_without_a_daemon() {
    require_root();
    let ns = Netns::new(names::unique("ver")).unwrap();
    let run = |args: &[&str]| {
        Command::new("ip").args(["netns", "exec", &ns.name]).arg(fastpath_bin()).args(args).output().unwrap()
    };
    let out = run(&["version"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(concat!("client:  fastpath ", env!("CARGO_PKG_VERSION"), " (revision ")),
        "{text}"
    );
    let revision = first.rsplit_once("revision ").unwrap().1.trim_end_matches(')');
    assert!(revision.len() == 12 && revision.chars().all(|c| c.is_ascii_hexdigit()), "{text}");
    assert!(text.lines().nth(1).unwrap().starts_with("daemon:  not running"), "{text}");
    let json = run(&["version", "-o", "json"]);
    let v: fastpath::commands::inspect::Version = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (v.client.as_str(), v.revision.as_str(), v.daemon),
        (env!("CARGO_PKG_VERSION"), revision, None)
    );
    // status --brief: one line, and exit code 1 without a (ready) daemon.
    let brief = run(&["status", "--brief"]);
    assert_eq!(brief.status.code(), Some(1), "{brief:?}");
    assert!(one_line(&brief.stdout).starts_with("not running"), "{brief:?}");
}

/// A scratch folder under /run with a file in it (the node's /run, in small), and whatever a
/// test mounted beneath it unmounted and the folder removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let path = std::path::Path::new("/run/fastpath-tests").join(names::unique(tag));
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("keep"), b"a socket of the node's").unwrap();
        Self(path)
    }

    /// Mount points at or under the scratch folder, from this (the host's) mount namespace.
    fn mounts(&self) -> Vec<String> {
        let prefix = self.0.display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect()
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for mount in self.mounts().iter().rev() {
            let _ = Command::new("umount").args(["-l", mount]).status();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A namespace a daemon can start in: an underlay with an address and a default route.
fn node_namespace(tag: &str) -> Netns {
    let ns = Netns::new(names::unique(tag)).unwrap();
    for args in [
        &["link", "set", "lo", "up"][..],
        &["link", "add", "eth0", "type", "veth", "peer", "name", "eth1"],
        &["addr", "add", "10.99.0.1/24", "dev", "eth0"],
        &["link", "set", "eth0", "up"],
        &["link", "set", "eth1", "up"],
        &["route", "add", "default", "via", "10.99.0.254", "dev", "eth0"],
    ] {
        fastpath_tests::cmd::ip(&ns.name, args).unwrap();
    }
    ns
}

/// `fastpath run` in `ns`'s network namespace but the host's mount namespace (as a daemon on a
/// node runs), with `--bpffs DIR`, failing after the pin folder is made: its two listeners ask
/// for the same address.
fn failing_start(ns: &Netns, dir: &std::path::Path) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name))
        .arg(fastpath_bin())
        .args(["run", "--trust", "routes", "--log-level", "info", "--bpffs"])
        .arg(dir)
        .args(["--metrics-addr", "127.0.0.1:9479", "--health-addr", "127.0.0.1:9479"])
        .output()
        .unwrap()
}

#[test]
fn the_bpffs_is_never_mounted_over_a_folder_that_holds_files_and_a_failed_start_leaves_no_mount() {
    require_root();
    let ns = node_namespace("mnt");
    let scratch = Scratch::new("mnt");

    // The pin folder's parent holds a file: the bpffs goes on the pin folder itself, beside it,
    // and is gone again after the start fails.
    let dir = scratch.0.join("fastpath");
    let out = failing_start(&ns, &dir);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains(&format!("mounted bpffs at {}\n", dir.display())), "{log}");
    assert!(!log.contains(&format!("mounted bpffs at {}\n", scratch.0.display())), "{log}");
    assert!(log.contains("unmounted the bpffs this start mounted"), "{log}");
    assert!(log.trim_end().lines().last().unwrap().contains("Address already in use"), "{log}");
    assert_eq!(scratch.mounts(), Vec::<String>::new(), "a mount was left behind");
    assert_eq!(scratch.entries(), ["keep"], "the folder it made stays, or the file went");

    // An empty (here: missing) parent is the mount point, as /sys/fs/bpf is; undone as well,
    // folders and all.
    let dir = scratch.0.join("bpf/fastpath");
    let out = failing_start(&ns, &dir);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains(&format!("mounted bpffs at {}\n", scratch.0.join("bpf").display())), "{log}");
    assert_eq!(scratch.mounts(), Vec::<String>::new(), "a mount was left behind");
    assert_eq!(scratch.entries(), ["keep"]);

    // The pin folder and its parent both hold something: refused, nothing mounted.
    let dir = scratch.0.join("full");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("other"), b"").unwrap();
    let out = failing_start(&ns, &dir);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let last = log.trim_end().lines().last().unwrap();
    assert!(last.starts_with("error: --bpffs") && last.contains("is not a bpffs and holds files"), "{log}");
    assert!(!log.contains("mounted bpffs"), "{log}");
    assert_eq!(scratch.mounts(), Vec::<String>::new());
    assert_eq!(scratch.entries(), ["full", "keep"]);
}

#[test]
fn json_logs_are_one_object_per_line() {
    require_root();
    let ns = node_namespace("jlog");
    let scratch = Scratch::new("jlog");
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name))
        .arg(fastpath_bin())
        .args(["run", "--trust", "routes", "--log-format", "json", "--bpffs"])
        .arg(scratch.0.join("fastpath"))
        .args(["--metrics-addr", "127.0.0.1:9479", "--health-addr", "127.0.0.1:9479"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8(out.stderr).unwrap();
    let (logs, error) = text.trim_end().rsplit_once('\n').unwrap();
    // The error that ends the daemon stays one plain line; every log record before it is JSON.
    assert!(error.starts_with("error: cannot serve"), "{text}");
    let records: Vec<serde_json::Value> =
        logs.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(records.iter().any(|r| r["level"] == "INFO"
        && r["target"] == "fastpath::dataplane::bpffs"
        && r["msg"].as_str().unwrap().starts_with("mounted bpffs at ")));
    assert!(records.iter().all(|r| r["ts"].as_str().is_some_and(|t| t.ends_with('Z'))), "{text}");
    assert_eq!(scratch.mounts(), Vec::<String>::new());
}
