//! `cargo xtask demo`: the seed write-ups' cluster, carried by fastpath alone (`--trust routes`),
//! then beside a kube-proxy-style service NAT with the kernel's path open (`--trust kernel`),
//! then dual-stack: every pod with an IPv6 address beside its IPv4 one.
//! `--vxlan`: the same in Calico's VXLAN mode, the second act on a cluster fastpath is being rolled
//! out to (the second node runs only the kernel's own VXLAN device).

use std::{
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use fastpath_tests::{
    cluster::{POD_GATEWAY, VXLAN_DEVICE},
    dual_stack::POD_GATEWAY6,
    traffic, Cluster, ClusterSpec, Daemon,
};

use crate::build;

pub fn run(keep: bool, vxlan: bool) -> Result<()> {
    if !crate::shell::is_root() {
        bail!("the demo builds network namespaces: run it as root");
    }
    let bin = build::daemon(false)?;
    // The test bed finds the binary through this variable.
    std::env::set_var("FASTPATH_BIN", &bin);
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("cannot handle Ctrl-C")?;
    let step = |title: &str| -> Result<()> {
        if interrupted.load(Ordering::SeqCst) {
            bail!("interrupted: tearing the cluster down");
        }
        println!("\n=== {title}");
        Ok(())
    };

    let (mode, spec) = if vxlan {
        ("VXLAN", ClusterSpec::seed_vxlan_fastpath_only())
    } else {
        ("IPIP", ClusterSpec::seed_fastpath_only())
    };
    step(&format!("building the seed's cluster in {mode} mode: nodes 10.101.14.50 and 10.101.14.51, pods 10.244.40.36 and 10.244.166.150"))?;
    let cluster = Cluster::build("demo", &spec)?;
    for node in &cluster.nodes {
        for pod in &node.pods {
            println!(
                "pod {:<16} netns {:<24} host side {} on node {} (netns {})",
                pod.ip, pod.ns.name, pod.host_iface, node.underlay_ip, node.ns.name
            );
        }
    }
    let (node1, node2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (pod, remote) = (&node1.pods[0], &node2.pods[0]);
    show("pod routes (Calico's)", &pod.ns.name, "ip", &["route"])?;
    if vxlan {
        show(
            "node 10.101.14.50 routes (Felix's, via the other node's tunnel address on vxlan.calico)",
            &node1.ns.name,
            "ip",
            &["route"],
        )?;
        show(
            "its vxlan.calico (as Felix makes it)",
            &node1.ns.name,
            "ip",
            &["-d", "link", "show", VXLAN_DEVICE],
        )?;
        show(
            "its neighbour entry for the other node's tunnel address",
            &node1.ns.name,
            "ip",
            &["neigh", "show", "dev", VXLAN_DEVICE],
        )?;
        show(
            "its FDB entry for the other node's VTEP",
            &node1.ns.name,
            "bridge",
            &["fdb", "show", "dev", VXLAN_DEVICE],
        )?;
        println!("proxy_arp is 0 on every cali interface, and every node has `iptables -P FORWARD DROP`.");
        println!(
            "The kernel's own vxlan.calico is real here, but the kernel may not forward a pod's packet."
        );
    } else {
        show("node 10.101.14.50 routes (Calico's, with IPIP via tunl0)", &node1.ns.name, "ip", &["route"])?;
        println!("proxy_arp is 0 on every cali interface, and every node has `iptables -P FORWARD DROP`.");
        println!("This kernel has no ipip module: its tunl0 here is a veth to nowhere. The kernel cannot carry pod traffic.");
    }

    step("without fastpath: nothing gets through")?;
    show("arping from the pod", &pod.ns.name, "arping", &["-i", "eth0", "-c", "2", "-w", "2", POD_GATEWAY])?;
    show("ping across nodes", &pod.ns.name, "ping", &["-c", "2", "-W", "1", &remote.ip.to_string()])?;

    step(
        "starting `fastpath run --trust routes` in each node (the kernel path is closed: nothing to trust)",
    )?;
    let daemons: Vec<Daemon> = cluster
        .nodes
        .iter()
        .map(|n| Daemon::start(&n.ns.name, &["--trust", "routes"]))
        .collect::<Result<_>>()?;
    for daemon in &daemons {
        let attached: Vec<String> =
            daemon.log().lines().filter(|l| l.contains("attached")).map(str::to_string).collect();
        println!("{}:\n  {}", daemon.node_ns, attached.join("\n  "));
    }

    step("with fastpath: the pod resolves its gateway")?;
    show("arping from the pod", &pod.ns.name, "arping", &["-i", "eth0", "-c", "3", "-w", "3", POD_GATEWAY])?;

    step("with fastpath: 10.244.40.36 pings 10.244.166.150 on the other node (TTL 62, as the kernel path)")?;
    show("ping across nodes", &pod.ns.name, "ping", &["-c", "3", "-i", "0.2", &remote.ip.to_string()])?;
    show("the pod's neighbour table", &pod.ns.name, "ip", &["neigh"])?;

    step("with fastpath: 100 MB over TCP across nodes, checked end to end")?;
    let started = Instant::now();
    traffic::transfer(pod, remote, 100 << 20)?;
    let elapsed = started.elapsed();
    println!("100 MB from 10.244.40.36 to 10.244.166.150 in {elapsed:.2?}, contents verified");

    step("node 10.101.14.50 as an operator sees it (`fastpath status`, `routes`, `endpoints`, `peers`)")?;
    for args in [&["status"][..], &["routes"], &["endpoints"], &["peers"]] {
        println!("$ fastpath {}", args.join(" "));
        print!("{}", daemons[0].cli(args)?);
    }
    step("why a packet goes where it goes (`fastpath explain`)")?;
    for args in [
        &["explain", "10.244.40.36", "10.244.166.150"][..],
        &["explain", "--size", "1500", "10.244.40.36", "10.244.166.150"],
        &["explain", "10.244.40.36", "10.96.0.10"],
        &["explain", "--arp", "10.244.40.36", "169.254.1.1"],
    ] {
        println!("$ fastpath {}", args.join(" "));
        print!("{}", daemons[0].cli(args)?);
    }
    for (daemon, node) in daemons.iter().zip(&cluster.nodes) {
        step(&format!("the counters on node {} (`fastpath stats`)", node.underlay_ip))?;
        print!("{}", nonzero(&daemon.cli(&["stats"])?));
    }

    if keep {
        println!("\nThe cluster stays up until Ctrl-C. Try, for example:");
        println!("  ip netns exec {} arping -i eth0 -c 3 169.254.1.1", pod.ns.name);
        println!("  nsenter -t {} -m -n {} stats", daemons[0].pid(), bin.display());
        while !interrupted.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
    } else {
        drop(daemons);
        drop(cluster);
        if vxlan {
            vxlan_rollout(&step)?;
        } else {
            trust_kernel(&step)?;
            dual_stack(&step)?;
        }
    }
    println!("\n=== tearing down: daemons stopped, namespaces deleted");
    Ok(())
}

/// The second act: the kernel's path open (direct routing, FORWARD accepting), a service
/// 10.96.0.10:80 DNATed to a pod on the other node, fastpath with its default `--trust kernel`.
fn trust_kernel(step: &dyn Fn(&str) -> Result<()>) -> Result<()> {
    step("the same pods, the kernel's path open, a service 10.96.0.10:80 → 10.244.166.150:8080 (iptables DNAT, as kube-proxy)")?;
    let cluster = Cluster::build("demo-tk", &ClusterSpec::seed())?;
    let (pod, remote) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    let dnat =
        ["-t", "nat", "-A", "PREROUTING", "-d", "10.96.0.10", "-p", "tcp", "--dport", "80", "-j", "DNAT"];
    let rule = [&dnat[..], &["--to-destination", "10.244.166.150:8080"]].concat();
    show("kube-proxy's rule on node 10.101.14.50", &cluster.nodes[0].ns.name, "iptables", &rule)?;
    let daemons: Vec<Daemon> = cluster
        .nodes
        .iter()
        .map(|n| Daemon::start(&n.ns.name, &["--trust", "kernel"]))
        .collect::<Result<_>>()?;
    step("three connections to the service, 1 MB each way, and 10 MB straight to the pod")?;
    let server = traffic::serve_echo(remote, 8080, 3)?;
    for _ in 0..3 {
        traffic::echo_round_trip(pod, ([10, 96, 0, 10], 80).into(), 1 << 20)?;
    }
    server.join().map_err(|_| anyhow::anyhow!("echo server panicked"))??;
    traffic::transfer(pod, remote, 10 << 20)?;
    println!("all done, contents verified");
    step("node 10.101.14.50 (`fastpath status`, `flows`, `explain`)")?;
    for args in [&["status"][..], &["flows"], &["explain", "10.244.40.36", "10.244.166.150"]] {
        println!("$ fastpath {}", args.join(" "));
        print!("{}", daemons[0].cli(args)?);
    }
    step("the counters on node 10.101.14.50 (`fastpath stats`)")?;
    print!("{}", nonzero(&daemons[0].cli(&["stats"])?));
    Ok(())
}

/// The second act in VXLAN mode: fastpath on the first node only (`--trust kernel`, the kernel's
/// path open), the second node the kernel's alone, a service DNATed on the first node to the pod
/// on the second: every NATed reply arrives in VXLAN from a node without fastpath.
fn vxlan_rollout(step: &dyn Fn(&str) -> Result<()>) -> Result<()> {
    step("a cluster fastpath is being rolled out to: node 10.101.14.51 runs only the kernel's vxlan.calico; a service 10.96.0.10:80 → 10.244.166.150:8080 (iptables DNAT, as kube-proxy) on node 10.101.14.50")?;
    let spec = ClusterSpec { kernel_forwarding: true, ..ClusterSpec::seed_vxlan_mixed() };
    let cluster = Cluster::build("demo-vx", &spec)?;
    let (pod, remote) = (&cluster.nodes[0].pods[0], &cluster.nodes[1].pods[0]);
    let dnat =
        ["-t", "nat", "-A", "PREROUTING", "-d", "10.96.0.10", "-p", "tcp", "--dport", "80", "-j", "DNAT"];
    let rule = [&dnat[..], &["--to-destination", "10.244.166.150:8080"]].concat();
    show("kube-proxy's rule on node 10.101.14.50", &cluster.nodes[0].ns.name, "iptables", &rule)?;
    let daemon = Daemon::start(&cluster.nodes[0].ns.name, &["--trust", "kernel"])?;
    step("three connections to the service, 1 MB each way; 10 MB to the pod on the kernel-only node and 10 MB back")?;
    let server = traffic::serve_echo(remote, 8080, 3)?;
    for _ in 0..3 {
        traffic::echo_round_trip(pod, ([10, 96, 0, 10], 80).into(), 1 << 20)?;
    }
    server.join().map_err(|_| anyhow::anyhow!("echo server panicked"))??;
    traffic::transfer(pod, remote, 10 << 20)?;
    traffic::transfer(remote, pod, 10 << 20)?;
    println!("all done, contents verified");
    step("node 10.101.14.50 (`fastpath status`, `routes`, `peers`, `explain`)")?;
    for args in [
        &["status"][..],
        &["routes"],
        &["peers"],
        &["explain", "10.244.40.36", "10.244.166.150"],
        &["explain", "--from-underlay", "10.101.14.51", "--encap", "vxlan", "10.244.166.150", "10.244.40.36"],
    ] {
        println!("$ fastpath {}", args.join(" "));
        print!("{}", daemon.cli(args)?);
    }
    step("the counters on node 10.101.14.50, and what its kernel's own vxlan.calico carried (first packets of each flow, the service's NATed replies)")?;
    print!("{}", nonzero(&daemon.cli(&["stats"])?));
    show(
        "the kernel's vxlan.calico",
        &cluster.nodes[0].ns.name,
        "ip",
        &["-s", "link", "show", VXLAN_DEVICE],
    )?;
    Ok(())
}

/// The third act: dual-stack pods (Calico's IPv6 layout: a /128 per pod, its default route via
/// `fe80::ecee:eeff:feee:eeee`), the kernel's FORWARD closed for both families, fastpath
/// `--trust routes`, VXLAN mode (`vxlan.calico` and `vxlan-v6.calico`). IPv6 between two pods of
/// one node and between nodes, in IPv6 VXLAN, takes the fast path.
fn dual_stack(step: &dyn Fn(&str) -> Result<()>) -> Result<()> {
    step("dual stack in VXLAN: pods 10.244.40.36 and 10.244.40.37 on node 10.101.14.50, 10.244.166.150 on node 10.101.14.51, each with an IPv6 address too; FORWARD closed for both families")?;
    let mut spec = ClusterSpec::seed_vxlan_fastpath_only().dual_stack();
    spec.nodes[0].pods.push(std::net::Ipv4Addr::new(10, 244, 40, 37));
    let cluster = Cluster::build("demo-ds", &spec)?;
    let (node1, node2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (pod, neighbour, remote) = (&node1.pods[0], &node1.pods[1], &node2.pods[0]);
    let ip6 = |p: &fastpath_tests::Pod| p.ip6.map(|a| a.to_string()).unwrap_or_default();
    show("the pod's addresses", &pod.ns.name, "ip", &["-brief", "addr", "show", "dev", "eth0"])?;
    show("the pod's IPv6 routes (Calico's)", &pod.ns.name, "ip", &["-6", "route"])?;
    show("node 10.101.14.50's IPv6 routes", &node1.ns.name, "ip", &["-6", "route"])?;
    show(
        "without fastpath: IPv6 to the pod beside it",
        &pod.ns.name,
        "ping",
        &["-6", "-c", "2", "-W", "1", &ip6(neighbour)],
    )?;
    let daemons: Vec<Daemon> = cluster
        .nodes
        .iter()
        .map(|n| Daemon::start(&n.ns.name, &["--trust", "routes"]))
        .collect::<Result<_>>()?;
    step("with fastpath: the pod resolves its IPv6 gateway by the program's answer, and pings the pod beside it (hop limit 63)")?;
    show("forget the gateway", &pod.ns.name, "ip", &["-6", "neigh", "flush", "dev", "eth0"])?;
    show(
        "ping over IPv6 on one node",
        &pod.ns.name,
        "ping",
        &["-6", "-c", "3", "-i", "0.2", &ip6(neighbour)],
    )?;
    show("the pod's IPv6 neighbour table", &pod.ns.name, "ip", &["-6", "neigh", "show", POD_GATEWAY6])?;
    show("and IPv4 beside it", &pod.ns.name, "ping", &["-c", "2", "-i", "0.2", &remote.ip.to_string()])?;
    step("with fastpath: 10 MB over TCP on IPv6 each way, checked end to end")?;
    println!("20 MB in {:.2?}, contents verified", ipv6_each_way(pod, neighbour)?);
    step("with fastpath: IPv6 across nodes in IPv6 VXLAN, encapsulated and taken apart by the programs (hop limit 62), 10 MB each way")?;
    show("ping over IPv6 across nodes", &pod.ns.name, "ping", &["-6", "-c", "3", "-i", "0.2", &ip6(remote)])?;
    println!("20 MB across nodes in {:.2?}, contents verified", ipv6_each_way(pod, remote)?);
    step("node 10.101.14.50 (`fastpath endpoints`, `explain`, `stats`)")?;
    for args in [
        &["endpoints"][..],
        &["explain", &ip6(pod), &ip6(neighbour)],
        &["explain", "--arp", &ip6(pod), POD_GATEWAY6],
        &["explain", &ip6(pod), &ip6(remote)],
    ] {
        println!("$ fastpath {}", args.join(" "));
        print!("{}", daemons[0].cli(args)?);
    }
    print!("{}", nonzero(&daemons[0].cli(&["stats"])?));
    Ok(())
}

/// 10 MB over TCP on IPv6 from `a` to `b`, then back, each checked: how long both took.
fn ipv6_each_way(a: &fastpath_tests::Pod, b: &fastpath_tests::Pod) -> Result<std::time::Duration> {
    let started = Instant::now();
    traffic::transfer6(a, b, 10 << 20)?;
    traffic::transfer6(b, a, 10 << 20)?;
    Ok(started.elapsed())
}

/// The header and the rows of `fastpath stats` whose counters moved.
fn nonzero(table: &str) -> String {
    table
        .lines()
        .enumerate()
        .filter(|(i, line)| *i == 0 || line.split_whitespace().nth(1) != Some("0"))
        .map(|(_, line)| format!("{line}\n"))
        .collect()
}

/// Run a command in a namespace and print what it printed, whether it succeeded or not.
fn show(title: &str, ns: &str, program: &str, args: &[&str]) -> Result<()> {
    println!("--- {title}: ip netns exec {ns} {program} {}", args.join(" "));
    let out = Command::new("ip").args(["netns", "exec", ns, program]).args(args).output()?;
    print!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok(())
}
