//! `cargo xtask demo`: the seed write-ups' cluster, with fastpath answering the pods' ARP.

use std::{
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use fastpath_tests::{cluster::POD_GATEWAY, cmd, Cluster, ClusterSpec, Daemon};

use crate::build;

pub fn run(keep: bool) -> Result<()> {
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

    step("building the seed's cluster: nodes 10.101.14.50 and 10.101.14.51, pods 10.244.40.36 and 10.244.166.150")?;
    let cluster = Cluster::build("demo", &ClusterSpec::seed())?;
    for node in &cluster.nodes {
        for pod in &node.pods {
            println!(
                "pod {:<16} netns {:<24} host side {} on node {} (netns {})",
                pod.ip, pod.ns.name, pod.host_iface, node.underlay_ip, node.ns.name
            );
        }
    }
    let pod = &cluster.nodes[0].pods[0];
    show("pod routes (Calico's)", &pod.ns.name, "ip", &["route"])?;
    let proxy_arp = format!("net.ipv4.conf.{}.proxy_arp", pod.host_iface);
    show(
        "proxy_arp on the pod's cali interface (0: the kernel will not answer)",
        &cluster.nodes[0].ns.name,
        "sysctl",
        &[&proxy_arp],
    )?;

    step("without fastpath: nobody answers the pod's ARP for 169.254.1.1")?;
    show("arping from the pod", &pod.ns.name, "arping", &["-i", "eth0", "-c", "2", "-w", "2", POD_GATEWAY])?;

    step("starting `fastpath run` in each node")?;
    let daemons: Vec<Daemon> =
        cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, &[])).collect::<Result<_>>()?;
    for daemon in &daemons {
        let attached: Vec<String> =
            daemon.log().lines().filter(|l| l.contains("attached")).map(str::to_string).collect();
        println!("{}: {}", daemon.node_ns, attached.join("; "));
    }

    step("with fastpath: the pod resolves its gateway")?;
    show("arping from the pod", &pod.ns.name, "arping", &["-i", "eth0", "-c", "3", "-w", "3", POD_GATEWAY])?;
    let _ = cmd::in_ns(&pod.ns.name, "ping", &["-c", "1", "-W", "1", POD_GATEWAY]);
    show("the pod's neighbour table", &pod.ns.name, "ip", &["neigh"])?;

    step("the counters on node 10.101.14.50 (`fastpath stats`)")?;
    print!("{}", daemons[0].cli(&["stats"])?);

    if keep {
        println!("\nThe cluster stays up until Ctrl-C. Try, for example:");
        println!("  ip netns exec {} arping -i eth0 -c 3 169.254.1.1", pod.ns.name);
        println!("  nsenter -t {} -m -n {} stats", daemons[0].pid(), bin.display());
        while !interrupted.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    println!("\n=== tearing down: daemons stopped, namespaces deleted");
    Ok(())
}

/// Run a command in a namespace and print what it printed, whether it succeeded or not.
fn show(title: &str, ns: &str, program: &str, args: &[&str]) -> Result<()> {
    println!("--- {title}: ip netns exec {ns} {program} {}", args.join(" "));
    let out = Command::new("ip").args(["netns", "exec", ns, program]).args(args).output()?;
    print!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok(())
}
