//! `cargo xtask bench --control-plane`: how fast the daemon fills and follows the route table.
//!
//! 100 000 routes are in the kernel before the daemon starts; then a load generator changes
//! routes at 1 000 a second for 10 s and times each from its netlink request to the pinned map
//! (end to end), while the daemon's own log times each from the netlink event to the map write.

use std::{fs, time::Instant};

use anyhow::{Context as _, Result};
use fastpath_tests::{cluster::RemoteVia, cmd, Cluster, ClusterSpec, Daemon};

use crate::{build, shell};

const PRESENT_ROUTES: u32 = 100_000;

pub fn run(quick: bool) -> Result<()> {
    let (rate, seconds) = if quick { (1000, 2) } else { (1000, 10) };
    let churn = build::example("route_churn")?;
    let spec = ClusterSpec { remote_via: RemoteVia::Underlay, ..ClusterSpec::grid(2, 0) };
    let cluster = Cluster::build("cp", &spec)?;
    let node = &cluster.nodes[0];
    let via = cluster.nodes[1].underlay_ip;

    eprintln!("bench: installing {PRESENT_ROUTES} routes in the kernel");
    let batch = std::env::temp_dir().join(format!("{}-routes.batch", cluster.tag));
    let lines: String = (0..PRESENT_ROUTES)
        .map(|i| {
            let dst = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 200, 0, 0)) + i);
            format!("route add {dst}/32 via {via} dev eth0\n")
        })
        .collect();
    fs::write(&batch, lines)?;
    let installed = cmd::ip(&node.ns.name, &["-batch", batch.to_str().context("temp path")?]);
    let _ = fs::remove_file(&batch);
    installed?;

    eprintln!("bench: starting the daemon over {PRESENT_ROUTES} routes");
    let spawned = Instant::now();
    let daemon = Daemon::start(&node.ns.name, &[])?;
    let startup = spawned.elapsed();
    let ready_in = daemon
        .log()
        .lines()
        .find_map(|l| l.split("(ready in ").nth(1).map(|r| r.trim_end_matches(')').to_string()))
        .unwrap_or_default();
    let entries = daemon.cli(&["status", "--json"])?;
    let entries: serde_json::Value = serde_json::from_str(&entries)?;
    let in_map = entries["maps"]["FP_ROUTES"]["entries"].as_u64().unwrap_or(0);
    let rss_start_kb = rss_kb(daemon.pid())?;

    eprintln!("bench: {rate} route changes a second for {seconds} s");
    let log_before = daemon.log().lines().count();
    let out = shell::output_ok(
        std::process::Command::new("nsenter")
            .args(["-t", &daemon.pid().to_string(), "-m", "-n"])
            .arg(&churn)
            .args(["/sys/fs/bpf/fastpath", &via.to_string(), &rate.to_string(), &seconds.to_string()]),
    )?;
    let churned: serde_json::Value = serde_json::from_str(out.trim()).context("route_churn output")?;
    let mut event_us: Vec<u64> = daemon
        .log()
        .lines()
        .skip(log_before)
        .filter(|l| l.contains("synced "))
        .filter_map(|l| l.split(" removals in ").nth(1)?.split(" µs").next()?.parse().ok())
        .collect();
    event_us.sort_unstable();
    let pct = |v: &[u64], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or(0)
    };
    let rss_after_kb = rss_kb(daemon.pid())?;

    println!("control plane ({PRESENT_ROUTES} routes present at start; target in brackets)");
    println!("  routes in the map at start          {in_map} of {PRESENT_ROUTES}");
    println!("  daemon spawn to serving             {startup:.2?} (start-up sync {ready_in}) [< 1 s]");
    println!(
        "  resident memory at {PRESENT_ROUTES} routes    {:.1} MB, {:.1} MB after the churn [≤ 30 MB]",
        rss_start_kb as f64 / 1024.0,
        rss_after_kb as f64 / 1024.0
    );
    println!(
        "  route changes                       {} in {} s ({} per second)",
        churned["changes"], churned["seconds"], churned["rate"]
    );
    println!(
        "  netlink event → map write           p50 {} µs, p99 {} µs, max {} µs over {} events [p99 ≤ 10 ms]",
        pct(&event_us, 0.5),
        pct(&event_us, 0.99),
        event_us.last().copied().unwrap_or(0),
        event_us.len()
    );
    println!(
        "  `ip route` request → visible in map p50 {} µs, p99 {} µs, max {} µs, {} not seen within 100 ms [p99 ≤ 10 ms]",
        churned["e2e_p50_us"], churned["e2e_p99_us"], churned["e2e_max_us"], churned["missed_100ms"]
    );
    Ok(())
}

fn rss_kb(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}
