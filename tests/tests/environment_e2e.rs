//! A bad environment: each a clear error or a clean retry, never a panic, never a half-attached
//! node. (A missing underlay or interface and a second daemon on one folder are in `cli.rs` and
//! `operate_e2e.rs`.)

use std::{process::Command, time::Duration};

use aya::programs::{SchedClassifier, TcAttachType};
use fastpath_tests::{
    cluster::{Cluster, ClusterSpec},
    cmd,
    daemon::fastpath_bin,
    names, require_root, traffic, wait, Daemon, Netns,
};

/// tcx programs attached to the interfaces of namespace `ns`, ingress and egress, as the kernel
/// answers BPF_PROG_QUERY (bpftool 7.1 does not list tcx attachments).
fn tcx_attachments(ns: &str) -> usize {
    let links: serde_json::Value =
        serde_json::from_str(&cmd::ip(ns, &["-j", "link", "show"]).unwrap()).unwrap();
    let names: Vec<String> =
        links.as_array().unwrap().iter().map(|l| l["ifname"].as_str().unwrap().to_string()).collect();
    traffic::in_netns(ns, move || {
        let mut attached = 0;
        for name in &names {
            for direction in [TcAttachType::Ingress, TcAttachType::Egress] {
                attached +=
                    SchedClassifier::query_tcx(name, direction).map_or(0, |(_, programs)| programs.len());
            }
        }
        Ok(attached)
    })
    .unwrap()
}

#[test]
fn a_bpffs_that_cannot_be_mounted_is_one_line_and_attaches_nothing() {
    require_root();
    let ns = Netns::new(names::unique("nobpf")).unwrap();
    cmd::ip(&ns.name, &["link", "add", "cali0nobpffs", "type", "veth", "peer", "name", "pod0"]).unwrap();
    cmd::ip(&ns.name, &["addr", "add", "10.101.14.50/28", "dev", "cali0nobpffs"]).unwrap();
    cmd::ip(&ns.name, &["link", "set", "cali0nobpffs", "up"]).unwrap();
    let pins = std::env::temp_dir().join(names::unique("nobpf"));
    // In a user namespace mounting a bpffs is not permitted, as in an unprivileged container.
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "unshare", "--user", "--map-root-user", "--mount"])
        .arg(fastpath_bin())
        .args(["run", "--underlay", "cali0nobpffs", "--bpffs"])
        .arg(pins.join("fastpath"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&pins);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: cannot mount bpffs at") && last.contains("Operation not permitted"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(tcx_attachments(&ns.name), 0, "a program was attached before the failure");
    // The same setup with a bpffs it can mount serves: the check above can see an attachment.
    let ok = Daemon::start(&ns.name, &["--underlay", "cali0nobpffs"]).unwrap();
    assert_eq!(tcx_attachments(&ns.name), 2, "{}", ok.log());
}

#[test]
fn interfaces_vanishing_mid_attach_leave_the_daemon_serving_and_nothing_half_attached() {
    require_root();
    let cluster = Cluster::build("vanish", &ClusterSpec::seed_fastpath_only()).unwrap();
    let node = &cluster.nodes[0];
    let daemon = Daemon::start(&node.ns.name, &[]).unwrap();
    // 100 pod interfaces, each deleted right after it comes up: the daemon learns of most of
    // them only once they are gone, and its attach fails.
    let mut batch = String::new();
    for i in 0..100 {
        let name = format!("cali{i:011}");
        batch.push_str(&format!(
            "link add {name} type veth peer name vanish{i}\nlink set {name} up\nlink del {name}\n"
        ));
    }
    let path = std::env::temp_dir().join(format!("{}.batch", cluster.tag));
    std::fs::write(&path, batch).unwrap();
    cmd::ip(&node.ns.name, &["-batch", path.to_str().unwrap()]).unwrap();
    let _ = std::fs::remove_file(&path);

    let settled = wait::until(Duration::from_secs(10), || {
        let status: serde_json::Value =
            serde_json::from_str(&daemon.cli(&["status", "--json"]).ok()?).ok()?;
        (status["ready"] == true && status["attached"].as_array()?.len() == 2).then_some(status)
    });
    let log = daemon.log();
    assert!(settled.is_some(), "not ready with only its own links 10 s later: {:?}", daemon.cli(&["status"]));
    assert!(!log.contains("panicked"), "{log}");
    assert!(daemon.cli(&["verify"]).unwrap().contains("no drift"));
    // The pod interface and the underlay, each with the ingress program: nothing else.
    assert_eq!(tcx_attachments(&node.ns.name), 2);
    let failures = log.matches("attaching to cali").count();
    eprintln!("100 interfaces vanished; {failures} attach attempts failed, each logged and counted, none left half-attached");
    let (from, to) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    let _other = Daemon::start(&cluster.nodes[1].ns.name, &[]).unwrap();
    assert!(traffic::ping(from, to.ip, 1, &[]).unwrap().received, "the node stopped forwarding");
}

/// `tc filter show` on `iface` in `ns`, one direction.
fn tc_filters(ns: &str, iface: &str, direction: &str) -> String {
    cmd::in_ns_ok(ns, "tc", &["filter", "show", "dev", iface, direction]).unwrap()
}

#[test]
fn without_tcx_the_programs_attach_as_legacy_tc_filters() {
    require_root();
    // This kernel has tcx, so the fallback a kernel without it takes is asked for by name.
    let cluster = Cluster::build("legacy", &ClusterSpec::seed_fastpath_only()).unwrap();
    let args = ["--tc-attach", "legacy"];
    let mut daemons: Vec<Daemon> =
        cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, &args).unwrap()).collect();
    let (node, pod) = (&cluster.nodes[0], &cluster.nodes[0].pods[0]);
    let remote = &cluster.nodes[1].pods[0];
    assert!(daemons[0].log().contains("to eth0 (ifindex 2, legacy tc)"), "{}", daemons[0].log());
    let result = traffic::ping(pod, remote.ip, 1, &[]).unwrap();
    assert!(result.received && result.ttl == Some(62), "{}", result.output);
    assert_eq!(tcx_attachments(&node.ns.name), 0, "nothing attaches with tcx");
    let filters = tc_filters(&node.ns.name, &pod.host_iface, "ingress");
    assert_eq!(filters.matches("from_pod direct-action").count(), 1, "{filters}");
    assert!(daemons[0].cli(&["status"]).unwrap().contains("as legacy tc filters"));
    assert!(daemons[0].cli(&["verify"]).unwrap().contains("no drift"));

    // A new daemon replaces the program in the filter the old one left: still one filter.
    assert!(daemons[0].terminate().unwrap().success());
    let filters = tc_filters(&node.ns.name, &pod.host_iface, "ingress");
    assert_eq!(
        filters.matches("from_pod direct-action").count(),
        1,
        "the filter outlives its daemon: {filters}"
    );
    daemons[0] = Daemon::start(&node.ns.name, &args).unwrap();
    assert!(daemons[0].log().contains("adopted the link and swapped in from_pod"), "{}", daemons[0].log());
    let filters = tc_filters(&node.ns.name, &pod.host_iface, "ingress");
    assert_eq!(filters.matches("from_pod direct-action").count(), 1, "{filters}");
    assert!(traffic::ping(pod, remote.ip, 1, &[]).unwrap().received);

    // `fastpath cleanup` removes the filters of a daemon that is gone.
    assert!(daemons[0].terminate().unwrap().success());
    let pins = std::env::temp_dir().join(names::unique("legacy-pins"));
    let out = fastpath_tests::daemon::node_cli(&node.ns.name, &pins, &["cleanup"]).unwrap();
    assert!(out.contains("legacy tc filters"), "{out}");
    assert!(!tc_filters(&node.ns.name, &pod.host_iface, "ingress").contains("from_pod"));
    assert!(!tc_filters(&node.ns.name, "eth0", "ingress").contains("from_underlay"));
    assert!(
        !traffic::ping(pod, remote.ip, 1, &["-W", "1"]).unwrap().received,
        "forwarding without any program"
    );
}
