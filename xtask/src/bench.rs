//! `cargo xtask bench`: fastpath beside the kernel's own path and the physical limit, measured in
//! one run, the three alternating round by round so drift on a shared machine hits all alike.

use std::{
    net::Ipv4Addr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use fastpath_tests::{cluster::RemoteVia, cmd, names, Cluster, ClusterSpec, Daemon, Netns};

use crate::build;

/// The three ways a packet can go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// Two namespaces joined by one veth pair: no routing at all.
    Limit,
    /// Calico's path through the kernel: proxy_arp, /32 and block routes, forwarding; across
    /// nodes without encapsulation (this kernel has no ipip module).
    Kernel,
    /// fastpath on each node, proxy_arp off, IPIP across nodes.
    Fastpath,
}

const PATHS: [Path; 3] = [Path::Limit, Path::Kernel, Path::Fastpath];

/// Two endpoints of one measurement: (namespace, address) of the client and of the server.
struct Pair {
    client: (String, Ipv4Addr),
    server: (String, Ipv4Addr),
}

/// A topology set up for one path; dropping it removes everything.
struct Setup {
    _limit: Vec<Netns>,
    _daemons: Vec<Daemon>,
    _cluster: Option<Cluster>,
    same_node: Pair,
    cross_node: Option<Pair>,
}

#[derive(Clone, Copy, Debug)]
struct Options {
    rounds: usize,
    seconds: u32,
}

pub fn run(quick: bool) -> Result<()> {
    if !crate::shell::is_root() {
        bail!("the benchmark builds network namespaces: run it as root");
    }
    let bin = build::daemon(true)?;
    std::env::set_var("FASTPATH_BIN", &bin);
    let options = if quick { Options { rounds: 1, seconds: 2 } } else { Options { rounds: 3, seconds: 5 } };
    println!(
        "bench: {} rounds of {} s per measurement; the kernel path crosses nodes without encapsulation",
        options.rounds, options.seconds
    );
    let mut results: Vec<(Path, &'static str, &'static str, f64)> = Vec::new();
    for round in 1..=options.rounds {
        for path in PATHS {
            let setup = setup(path)?;
            for (placement, pair) in
                [("same node", Some(&setup.same_node)), ("cross node", setup.cross_node.as_ref())]
            {
                let Some(pair) = pair else { continue };
                for (name, streams) in [("TCP 1 stream Gbit/s", 1), ("TCP 4 streams Gbit/s", 4)] {
                    eprint!(
                        "\rbench: round {round}/{}: {path:?} {placement}: {name}          ",
                        options.rounds
                    );
                    let gbits = iperf_tcp(pair, streams, options.seconds)?;
                    results.push((path, placement, name, gbits));
                }
            }
        }
    }
    eprintln!();
    print!("{}", table(&results));
    Ok(())
}

fn setup(path: Path) -> Result<Setup> {
    match path {
        Path::Limit => {
            let a = Netns::new(names::unique("lim-a"))?;
            let b = Netns::new(names::unique("lim-b"))?;
            cmd::ip(
                &a.name,
                &["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b.name],
            )?;
            for (ns, addr) in [(&a, "10.0.0.1/24"), (&b, "10.0.0.2/24")] {
                cmd::ip(&ns.name, &["addr", "add", addr, "dev", "eth0"])?;
                cmd::ip(&ns.name, &["link", "set", "eth0", "up"])?;
            }
            let same_node = Pair {
                client: (a.name.clone(), Ipv4Addr::new(10, 0, 0, 1)),
                server: (b.name.clone(), Ipv4Addr::new(10, 0, 0, 2)),
            };
            Ok(Setup { _limit: vec![a, b], _daemons: vec![], _cluster: None, same_node, cross_node: None })
        }
        Path::Kernel | Path::Fastpath => {
            let mut spec = if path == Path::Kernel {
                ClusterSpec {
                    remote_via: RemoteVia::Underlay,
                    proxy_arp: true,
                    kernel_forwarding: true,
                    ..ClusterSpec::seed()
                }
            } else {
                ClusterSpec::seed_fastpath_only()
            };
            spec.nodes[0].pods.push(Ipv4Addr::new(10, 244, 40, 37));
            let cluster = Cluster::build("bench", &spec)?;
            let daemons = if path == Path::Fastpath {
                cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, &[])).collect::<Result<_>>()?
            } else {
                vec![]
            };
            let endpoint = |node: usize, pod: usize| {
                let p = &cluster.nodes[node].pods[pod];
                (p.ns.name.clone(), p.ip)
            };
            let same_node = Pair { client: endpoint(0, 0), server: endpoint(0, 1) };
            let cross_node = Some(Pair { client: endpoint(0, 0), server: endpoint(1, 0) });
            Ok(Setup { _limit: vec![], _daemons: daemons, _cluster: Some(cluster), same_node, cross_node })
        }
    }
}

/// TCP throughput with iperf3, in Gbit/s as the receiver counted it.
fn iperf_tcp(pair: &Pair, streams: u32, seconds: u32) -> Result<f64> {
    let server = IperfServer::start(&pair.server.0, pair.server.1)?;
    std::thread::sleep(Duration::from_millis(200));
    let (streams, seconds, addr) = (streams.to_string(), seconds.to_string(), pair.server.1.to_string());
    let out = cmd::in_ns_ok(&pair.client.0, "iperf3", &["-c", &addr, "-t", &seconds, "-P", &streams, "-J"])?;
    drop(server);
    let json: serde_json::Value = serde_json::from_str(&out).context("iperf3 -J output")?;
    let bps =
        json["end"]["sum_received"]["bits_per_second"].as_f64().context("iperf3 reported no throughput")?;
    Ok(bps / 1e9)
}

struct IperfServer(Child);

impl IperfServer {
    fn start(ns: &str, addr: Ipv4Addr) -> Result<Self> {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "iperf3", "-s", "-1", "-B", &addr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start iperf3")?;
        Ok(Self(child))
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// Medians per (measure, placement) and path, with fastpath's ratios to the others.
fn table(results: &[(Path, &str, &str, f64)]) -> String {
    let mut rows: Vec<(&str, &str)> = Vec::new();
    for (_, placement, name, _) in results {
        if !rows.contains(&(*name, *placement)) {
            rows.push((name, placement));
        }
    }
    let med = |path: Path, name: &str, placement: &str| {
        median(
            results.iter().filter(|r| r.0 == path && r.2 == name && r.1 == placement).map(|r| r.3).collect(),
        )
    };
    let limit_of = |name: &str| med(Path::Limit, name, "same node");
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    };
    let mut out = format!(
        "{:<22} {:<11} {:>8} {:>8} {:>9} {:>10} {:>10}\n",
        "measure", "pods", "limit", "kernel", "fastpath", "fp/kernel", "fp/limit"
    );
    for (name, placement) in rows {
        if placement == "same node" || med(Path::Kernel, name, placement).is_some() {
            let (limit, kernel, fast) =
                (limit_of(name), med(Path::Kernel, name, placement), med(Path::Fastpath, name, placement));
            out.push_str(&format!(
                "{:<22} {:<11} {:>8} {:>8} {:>9} {:>10} {:>10}\n",
                name,
                placement,
                cell(limit),
                cell(kernel),
                cell(fast),
                ratio(fast, kernel),
                ratio(fast, limit)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(4.0));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn the_table_has_ratios_against_kernel_and_limit() {
        let results = vec![
            (Path::Limit, "same node", "TCP", 20.0),
            (Path::Kernel, "same node", "TCP", 10.0),
            (Path::Fastpath, "same node", "TCP", 15.0),
            (Path::Kernel, "cross node", "TCP", 8.0),
            (Path::Fastpath, "cross node", "TCP", 12.0),
        ];
        let t = table(&results);
        let same = t.lines().nth(1).unwrap();
        assert!(same.contains("20.00") && same.contains("1.50x") && same.contains("0.75x"), "{t}");
        let cross = t.lines().nth(2).unwrap();
        assert!(cross.contains("cross node") && cross.contains("1.50x"), "{t}");
    }
}
