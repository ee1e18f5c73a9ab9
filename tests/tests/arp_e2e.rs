//! End to end: pods in namespaces resolve their gateway through fastpath, with proxy_arp off.

use std::{process::Output, time::Instant};

use fastpath_tests::{
    bpf::{links_of_program, program_exists},
    cluster::POD_GATEWAY,
    cmd, require_root, Cluster, ClusterSpec, Daemon, Pod,
};

/// `arping` from a pod: at most `count` requests, stop at the first reply, give up after
/// `deadline_s` seconds.
fn arping(pod: &Pod, target: &str, count: u32, deadline_s: u32) -> Output {
    let (count, deadline) = (count.to_string(), deadline_s.to_string());
    cmd::in_ns(
        &pod.ns.name,
        "arping",
        &["-i", "eth0", "-c", &count, "-C", "1", "-W", "0.1", "-w", &deadline, target],
    )
    .expect("run arping")
}

fn replied_from_ee(out: &Output) -> bool {
    out.status.success()
        && String::from_utf8_lossy(&out.stdout).to_lowercase().contains("from ee:ee:ee:ee:ee:ee")
}

#[test]
fn pod_resolves_its_gateway_only_through_fastpath() {
    require_root();
    let cluster = Cluster::build("arp", &ClusterSpec::seed()).unwrap();
    let node = &cluster.nodes[0];
    let pod = &node.pods[0];

    // proxy_arp is off: without fastpath nobody answers.
    assert!(!replied_from_ee(&arping(pod, POD_GATEWAY, 2, 1)), "the kernel answered ARP with proxy_arp off");

    let daemon = Daemon::start(&node.ns.name, &[]).unwrap();
    let before = daemon.counters().unwrap().packets("arp_replied");
    let out = arping(pod, POD_GATEWAY, 10, 5);
    assert!(replied_from_ee(&out), "no reply from ee:ee:ee:ee:ee:ee: {out:?}");
    let after = daemon.counters().unwrap().packets("arp_replied");
    assert!(after > before, "arp_replied did not move ({before} -> {after})");

    // The pod's own kernel resolves the gateway too (a ping makes it ask), and caches our MAC.
    let _ = cmd::in_ns(&pod.ns.name, "ping", &["-c", "1", "-W", "1", POD_GATEWAY]);
    let neigh = cmd::ip(&pod.ns.name, &["neigh", "show", POD_GATEWAY]).unwrap();
    assert!(neigh.contains("lladdr ee:ee:ee:ee:ee:ee"), "pod neighbour table: {neigh}");
}

#[test]
fn pod_created_after_the_daemon_started_is_answered_within_two_seconds() {
    require_root();
    let mut spec = ClusterSpec::seed();
    spec.nodes.truncate(1);
    spec.nodes[0].pods.clear();
    let mut cluster = Cluster::build("late", &spec).unwrap();
    let node_ns = cluster.nodes[0].ns.name.clone();
    let _daemon = Daemon::start(&node_ns, &[]).unwrap();

    let created = Instant::now();
    let pod = cluster.add_pod(0, "10.244.40.37".parse().unwrap()).unwrap();
    let out = arping(pod, POD_GATEWAY, 40, 2);
    let elapsed = created.elapsed();
    assert!(replied_from_ee(&out), "a pod created after start got no reply within 2 s: {out:?}");
    eprintln!("new pod answered {elapsed:?} after its veth was created");
}

#[test]
fn sigterm_with_cleanup_on_exit_detaches_everything_and_deleted_pods_are_forgotten() {
    require_root();
    let mut spec = ClusterSpec::seed();
    spec.nodes.truncate(1);
    spec.nodes[0].pods = vec!["10.244.40.36".parse().unwrap(), "10.244.40.37".parse().unwrap()];
    let mut cluster = Cluster::build("term", &spec).unwrap();
    let mut daemon = Daemon::start(&cluster.nodes[0].ns.name, &["--cleanup-on-exit"]).unwrap();

    let ids = daemon.attached_prog_ids("from_pod");
    assert_eq!(ids.len(), 1, "one pod program expected, log:\n{}", daemon.log());
    let prog_id = ids[0];
    assert_eq!(links_of_program(prog_id), 2, "one tcx link per cali interface");
    let underlay_ids = daemon.attached_prog_ids("from_underlay");
    assert_eq!(underlay_ids.len(), 1, "one underlay program expected, log:\n{}", daemon.log());
    assert_eq!(links_of_program(underlay_ids[0]), 1, "one tcx link on the underlay");

    // A pod deleted while the daemon runs: its link goes, the other stays.
    drop(cluster.nodes[0].pods.pop());
    let gone = fastpath_tests::wait::until(std::time::Duration::from_secs(2), || {
        (links_of_program(prog_id) == 1).then_some(())
    });
    assert!(gone.is_some(), "the deleted pod's link is still there");

    let status = daemon.terminate().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}\n{}", daemon.log());
    for id in [prog_id, underlay_ids[0]] {
        assert_eq!(links_of_program(id), 0, "a tcx link of program {id} outlived the daemon");
        assert!(!program_exists(id), "program {id} outlived the daemon");
    }
}
