//! Pods and routes coming and going fast: nothing lost, nothing left, no drift. The CI sizes are
//! small; `FASTPATH_CHURN_PODS`, `FASTPATH_CHURN_SECONDS`, `FASTPATH_CHURN_CYCLES` and
//! `FASTPATH_STORM_CHANGES` scale them (the full sizes: 200 pods over 60 s, 1 000 cycles,
//! 10 000 changes).

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use fastpath_tests::{
    cluster::{Cluster, ClusterSpec},
    cmd, require_root,
    traffic::{self, ping, OpenConnection},
    wait, Daemon,
};

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Open file descriptors and resident memory (kB) of a process.
fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok());
    (fds, rss.unwrap_or(0))
}

fn no_drift(daemon: &Daemon) -> bool {
    daemon.cli(&["verify"]).is_ok()
}

#[test]
fn pods_churning_beside_a_steady_conversation_lose_nothing_and_leave_nothing() {
    require_root();
    let pods = env_or("FASTPATH_CHURN_PODS", 20);
    let seconds = env_or("FASTPATH_CHURN_SECONDS", 6);
    let mut cluster = Cluster::build("churn", &ClusterSpec::seed_fastpath_only()).unwrap();
    let daemons: Vec<Daemon> =
        cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, &[]).unwrap()).collect();
    let (from, to) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    assert!(ping(from, to.ip, 1, &[]).unwrap().received);
    let count = (seconds * 100).to_string();
    let pinger = Command::new("ip")
        .args(["netns", "exec", &from.ns.name, "ping", "-n", "-q", "-i", "0.01", "-W", "1", "-c", &count])
        .arg(to.ip.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // And a TCP conversation: 16 KB echoed back and forth for as long as the churn lasts.
    let server = traffic::serve_echo(to, 8080, 1).unwrap();
    let mut conversation = OpenConnection::new(from, SocketAddr::from((to.ip, 8080))).unwrap();
    let churning = Arc::new(AtomicBool::new(true));
    let talking = Arc::clone(&churning);
    let talker = std::thread::spawn(move || -> anyhow::Result<(u64, Duration)> {
        let (mut exchanges, mut longest, mut last) = (0u64, Duration::ZERO, Instant::now());
        while talking.load(Ordering::Relaxed) {
            conversation.exchange(16 << 10)?;
            longest = longest.max(last.elapsed());
            last = Instant::now();
            exchanges += 1;
        }
        Ok((exchanges, longest))
    });
    let (fds_before, rss_before) = fds_and_rss(daemons[0].pid());

    let started = Instant::now();
    let pace = Duration::from_secs(u64::from(seconds)) / pods.max(1);
    for i in 0..pods {
        let node = (i % 2) as usize;
        let base = cluster.nodes[node].block.0.octets();
        // Offsets 40..60 of each /26: clear of the pods that stay (.36 and .128 + 22).
        let ip = Ipv4Addr::new(base[0], base[1], base[2], base[3] + 40 + ((i / 2) % 20) as u8);
        cluster.add_pod(node, ip).unwrap();
        std::thread::sleep(pace / 2);
        drop(cluster.nodes[node].pods.pop());
        std::thread::sleep(pace / 2);
    }
    let churn_took = started.elapsed();
    churning.store(false, Ordering::Relaxed);
    let (exchanges, longest_gap) =
        talker.join().unwrap().expect("the TCP conversation broke during the churn");
    server.join().unwrap().unwrap();
    assert!(longest_gap < Duration::from_secs(1), "the TCP conversation stalled for {longest_gap:?}");

    let pings = String::from_utf8_lossy(&pinger.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        pings.contains(&format!("{count} packets transmitted, {count} received")),
        "pings lost during the churn:\n{pings}"
    );
    for daemon in &daemons {
        let settled = wait::until(Duration::from_secs(5), || no_drift(daemon).then_some(()));
        assert!(
            settled.is_some(),
            "drift after the churn on {}:\n{:?}",
            daemon.node_ns,
            daemon.cli(&["verify"])
        );
        let status = daemon.cli(&["status", "--json"]).unwrap();
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["attached"].as_array().unwrap().len(), 2, "links left for deleted pods: {status}");
        assert_eq!(status["maps"]["FP_ROUTES"]["entries"], 3, "entries left for deleted pods: {status}");
    }
    let (fds_after, rss_after) = fds_and_rss(daemons[0].pid());
    eprintln!(
        "churn: {pods} pods created and deleted in {churn_took:.1?} beside {count} pings, none lost; \
         {exchanges} TCP exchanges of 16 KB, longest gap {longest_gap:.1?}; \
         daemon fds {fds_before} → {fds_after}, RSS {rss_before} → {rss_after} kB"
    );
    assert_eq!(fds_after, fds_before, "file descriptors leaked over the churn");
}

#[test]
fn churn_cycles_return_memory_and_descriptors_to_where_they_were() {
    require_root();
    let cycles = env_or("FASTPATH_CHURN_CYCLES", 100);
    let mut cluster = Cluster::build("cycle", &ClusterSpec::seed_fastpath_only()).unwrap();
    let daemon = Daemon::start(&cluster.nodes[0].ns.name, &[]).unwrap();
    let ip = Ipv4Addr::new(10, 244, 40, 50);
    // One cycle first, so what is measured is the steady state, not first-use allocations.
    let cycle = |cluster: &mut Cluster| {
        cluster.add_pod(0, ip).unwrap();
        cluster.remove_pod(ip).unwrap();
    };
    cycle(&mut cluster);
    let settle = || wait::until(Duration::from_secs(5), || no_drift(&daemon).then_some(())).is_some();
    assert!(settle());
    let (fds_before, rss_before) = fds_and_rss(daemon.pid());
    let started = Instant::now();
    for _ in 0..cycles {
        cycle(&mut cluster);
    }
    let took = started.elapsed();
    assert!(settle(), "drift after {cycles} cycles: {:?}", daemon.cli(&["verify"]));
    let (fds_after, rss_after) = fds_and_rss(daemon.pid());
    eprintln!(
        "{cycles} pod create/delete cycles in {took:.1?}: daemon fds {fds_before} → {fds_after}, RSS {rss_before} → {rss_after} kB"
    );
    assert_eq!(fds_after, fds_before, "file descriptors leaked over {cycles} cycles");
    let limit = rss_before + rss_before / 20;
    assert!(rss_after <= limit, "resident memory grew {rss_before} → {rss_after} kB (more than 5%)");
}

#[test]
fn a_storm_of_route_changes_ends_without_drift() {
    require_root();
    let changes = env_or("FASTPATH_STORM_CHANGES", 2000);
    let cluster = Cluster::build("storm", &ClusterSpec::seed_fastpath_only()).unwrap();
    let node = &cluster.nodes[0];
    let daemon = Daemon::start(&node.ns.name, &[]).unwrap();
    // Adds, then deletes of every other one: `changes` in all.
    let adds = changes * 2 / 3;
    let mut batch = String::new();
    for i in 0..adds {
        let dst = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 240, 0, 0)) + i);
        batch.push_str(&format!("route add {dst}/32 via 10.101.14.51 dev tunl0 onlink\n"));
    }
    for i in (0..adds).step_by(2).take((changes - adds) as usize) {
        let dst = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 240, 0, 0)) + i);
        batch.push_str(&format!("route del {dst}/32 via 10.101.14.51 dev tunl0 onlink\n"));
    }
    let path = std::env::temp_dir().join(format!("{}-storm.batch", cluster.tag));
    std::fs::write(&path, batch).unwrap();
    let started = Instant::now();
    cmd::ip(&node.ns.name, &["-batch", path.to_str().unwrap()]).unwrap();
    let sent = started.elapsed();
    let _ = std::fs::remove_file(&path);
    let caught_up = wait::until(Duration::from_secs(10), || no_drift(&daemon).then_some(()));
    let lag = started.elapsed().saturating_sub(sent);
    assert!(caught_up.is_some(), "still drifting 10 s after the storm: {:?}", daemon.cli(&["verify"]));
    eprintln!("storm: {changes} route changes sent in {sent:.2?}; no drift {lag:.2?} after the last one (verify's own run included)");
}
