//! How long a new connection waits for the fast path under `--trust kernel`, and what following
//! conntrack costs at the benchmark's connection rates.
//!
//! - **Time to approval**: from the moment a pod's `connect()` returns (its ACK, the packet that
//!   makes conntrack's entry ESTABLISHED, leaves at once) to the moment its direction is in the
//!   flow table, read straight from the pinned map; connections across nodes one after another,
//!   each on a quiet node (5 ms apart) and back to back (the daemon then reads conntrack's
//!   events once a millisecond, `daemon/conntrack.rs`).
//! - **Connections per second**: a pod opening, using (one byte each way) and closing
//!   connections to a pod on the other node for 10 s, the kernel alone and then with the daemons,
//!   and the daemon's CPU time per 1000 connections (`/proc/PID/stat`).
//!
//! `cargo run --release -p fastpath-tests --example approval_time` (as root, after `cargo xtask
//! build`; `FASTPATH_BIN` is the daemon, the workspace's debug build by default).

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use aya::maps::{HashMap, MapData};
use fastpath::dataplane::bpffs;
use fastpath_common::{
    flow::{FlowKey, FlowValue},
    maps::FLOWS,
};
use fastpath_tests::{cmd, traffic, Bpffs, Cluster, ClusterSpec, Daemon};

const A: Ipv4Addr = Ipv4Addr::new(10, 244, 40, 36);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 244, 166, 150);
const CONNECTIONS: usize = 300;
const PORT: u16 = 7000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// The daemon's user and system CPU time so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// For each of `CONNECTIONS` connections from the client namespace to REMOTE, `gap` apart: the
/// time from its `connect()` returning to its direction in `flows`.
fn approvals(
    client_ns: &str,
    server_ns: &str,
    flows: &HashMap<MapData, FlowKey, FlowValue>,
    gap: Duration,
) -> Vec<Duration> {
    let listener = traffic::in_netns(server_ns, move || Ok(TcpListener::bind((REMOTE, PORT))?)).unwrap();
    let server = std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..CONNECTIONS {
            match listener.accept() {
                Ok((stream, _)) => held.push(stream),
                Err(_) => break,
            }
        }
    });
    let mut times = Vec::with_capacity(CONNECTIONS);
    let mut open = Vec::with_capacity(CONNECTIONS);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                traffic::enter_netns(client_ns).unwrap();
                for _ in 0..CONNECTIONS {
                    std::thread::sleep(gap);
                    let to = SocketAddr::from((REMOTE, PORT));
                    let stream = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
                    let connected = Instant::now();
                    let sport = stream.local_addr().unwrap().port();
                    let key = FlowKey::new(A.octets(), REMOTE.octets(), 6, (sport, PORT));
                    while flows.get(&key, 0).is_err() && connected.elapsed() < Duration::from_secs(2) {
                        std::hint::spin_loop();
                    }
                    times.push(connected.elapsed());
                    open.push(stream);
                }
            })
            .join()
            .unwrap();
    });
    drop(open);
    let _ = server.join();
    times
}

fn main() {
    fastpath_tests::require_root();
    let spec = ClusterSpec { proxy_arp: true, ..ClusterSpec::seed() };
    let cluster = Cluster::build("appr", &spec).unwrap();
    for node in &cluster.nodes {
        cmd::in_ns_ok(
            &node.ns.name,
            "iptables",
            &["-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        )
        .unwrap();
    }
    let (a, remote) = (cluster.pod(A).unwrap(), cluster.pod(REMOTE).unwrap());

    let kernel_alone =
        traffic::tcp_connect_request_response(&a.ns.name, &remote.ns.name, REMOTE, Duration::from_secs(10))
            .unwrap();

    let bpffs = Bpffs::new("appr").unwrap();
    let pin_dir = bpffs.pin_dir();
    let daemons: Vec<Daemon> = cluster
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if i == 0 {
                Daemon::start_pinned(&n.ns.name, &pin_dir, &["--trust", "kernel"]).unwrap()
            } else {
                Daemon::start(&n.ns.name, &["--trust", "kernel"]).unwrap()
            }
        })
        .collect();
    let flows: HashMap<MapData, FlowKey, FlowValue> = bpffs::open_pinned_as(&pin_dir, FLOWS).unwrap();

    // Time to approval, connection by connection: apart, then back to back.
    for (label, gap) in [("5 ms apart", Duration::from_millis(5)), ("back to back", Duration::ZERO)] {
        let times = approvals(&a.ns.name, &remote.ns.name, &flows, gap);
        let mut sorted = times.clone();
        sorted.sort_unstable();
        println!(
            "time to approval over {CONNECTIONS} connections {label}: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.9),
            percentile(&sorted, 0.99),
            sorted[sorted.len() - 1]
        );
    }

    // Connections per second with the daemons following conntrack.
    let cpu_before: Vec<f64> = daemons.iter().map(|d| cpu_seconds(d.pid())).collect();
    let with_fastpath =
        traffic::tcp_connect_request_response(&a.ns.name, &remote.ns.name, REMOTE, Duration::from_secs(10))
            .unwrap();
    let cpu: Vec<f64> =
        daemons.iter().zip(&cpu_before).map(|(d, before)| cpu_seconds(d.pid()) - before).collect();
    let per_thousand = |seconds: f64| seconds / with_fastpath.transactions as f64 * 1000.0;
    println!(
        "connections per second: kernel alone {:.0}, with fastpath --trust kernel {:.0} ({:.2}×); daemon CPU per 1000 connections: client's node {:.1} ms, server's node {:.1} ms",
        kernel_alone.per_second(),
        with_fastpath.per_second(),
        with_fastpath.per_second() / kernel_alone.per_second(),
        per_thousand(cpu[0]) * 1000.0,
        per_thousand(cpu[1]) * 1000.0
    );
    drop(daemons);
    drop(bpffs);
}
