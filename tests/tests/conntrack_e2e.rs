//! End to end under `--trust kernel`: the kernel's conntrack is the judge. Every node's FORWARD
//! chain accepts `ctstate RELATED,ESTABLISHED` first, as Calico's and kube-proxy's chains do,
//! and every test first shows what the kernel alone does on the same namespaces (proxy_arp on,
//! so the kernel can carry the pods' packets without fastpath).
//!
//! - What a hostile pod tried (the cases 1–4): SCTP to a port the policy drops beside
//!   one it allows, ICMP echo requests with the identifier of an allowed ping the other way, an
//!   old flow toward a pod's reused address, plain packets riding a VXLAN flow's approval. The
//!   forbidden packets never arrive, and each is counted under its reason.
//! - Service traffic on the fast path: a ClusterIP service (kube-proxy's DNAT) with its backend
//!   on the other node and on the same node, and natOutgoing (MASQUERADE) toward an outside host:
//!   50 MB with its contents checked, at least 90 % of each direction's packets on the client's
//!   node by the fast path (the fast path's own count of the flow against conntrack's count of
//!   what the kernel saw of it), the replies from the address the client asked; `conntrack -D`
//!   sends the next packets to the kernel.
//! - Conntrack's timeouts, lowered for the test: a flow idle past them is judged afresh and
//!   works; one the fast path carries past them keeps its entry.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use fastpath_tests::{
    cmd, packets, require_root,
    traffic::{self, Catch},
    wait, Cluster, ClusterSpec, Counters, Daemon, Pod,
};

const A: Ipv4Addr = Ipv4Addr::new(10, 244, 40, 36);
const B: Ipv4Addr = Ipv4Addr::new(10, 244, 40, 37);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 244, 166, 150);
const SERVICE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const BACKEND_PORT: u16 = 8080;
/// A host beyond the underlay's gateway (10.101.14.62, the switch namespace).
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const TRANSFER: usize = 50 << 20;

/// The seed cluster, proxy_arp on (the kernel alone can carry it), pods A and B on the first
/// node, REMOTE on the second, and Calico's first FORWARD rule on both nodes.
fn cluster(tag: &str, spec: ClusterSpec) -> Cluster {
    require_root();
    let mut spec = ClusterSpec { proxy_arp: true, ..spec };
    spec.nodes[0].pods = vec![A, B];
    let cluster = Cluster::build(tag, &spec).unwrap();
    for node in &cluster.nodes {
        iptables(
            &node.ns.name,
            &["-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        );
        // conntrack counts the packets it sees of each entry: what the kernel carried of a flow.
        cmd::sysctl(&node.ns.name, "net.netfilter.nf_conntrack_acct", "1").unwrap();
    }
    cluster
}

fn iptables(ns: &str, args: &[&str]) {
    cmd::in_ns_ok(ns, "iptables", args).unwrap();
}

fn daemons(cluster: &Cluster) -> Vec<Daemon> {
    cluster.nodes.iter().map(|n| Daemon::start(&n.ns.name, &["--trust", "kernel"]).unwrap()).collect()
}

fn pod(cluster: &Cluster, ip: Ipv4Addr) -> &Pod {
    cluster.pod(ip).unwrap_or_else(|| panic!("no pod {ip}"))
}

fn moved(before: &Counters, after: &Counters, reason: &str) -> u64 {
    after.packets(reason) - before.packets(reason)
}

/// Bytes counted under `reason` between two readings (an aggregate counts once, whole).
fn bytes_moved(before: &Counters, after: &Counters, reason: &str) -> u64 {
    let bytes = |c: &Counters| c.0.get(reason).map_or(0, |c| c.bytes);
    bytes(after) - bytes(before)
}

fn flows(daemon: &Daemon) -> Vec<serde_json::Value> {
    let json = daemon.cli(&["flows", "--json"]).unwrap();
    serde_json::from_str::<serde_json::Value>(&json).unwrap().as_array().unwrap().clone()
}

/// The flow direction `src`:`sport` → `dst`:`dport` of `protocol`, if the table holds it.
fn direction(daemon: &Daemon, protocol: &str, src: SocketAddr, dst: SocketAddr) -> Option<serde_json::Value> {
    flows(daemon).into_iter().find(|f| {
        f["protocol"] == protocol
            && f["src"] == src.ip().to_string()
            && f["sport"] == src.port()
            && f["dst"] == dst.ip().to_string()
            && f["dport"] == dst.port()
    })
}

/// Wait (at most 5 s) until the table holds the direction; panics with the table if it never does.
fn wait_direction(daemon: &Daemon, protocol: &str, src: SocketAddr, dst: SocketAddr) -> serde_json::Value {
    match wait::until(Duration::from_secs(5), || direction(daemon, protocol, src, dst)) {
        Some((flow, _)) => flow,
        None => panic!("{protocol} {src} → {dst} never approved: {}", daemon.cli(&["flows"]).unwrap()),
    }
}

fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// Every conntrack entry of node `ns` (`conntrack -L -o extended`, one line each).
fn conntrack_list(ns: &str) -> Vec<String> {
    let out = cmd::in_ns(ns, "conntrack", &["-L", "-o", "id"]).unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// The `packets=` figures of a conntrack line: (original, reply).
fn conntrack_packets(line: &str) -> (u64, u64) {
    let counts: Vec<u64> =
        line.split_whitespace().filter_map(|w| w.strip_prefix("packets=")?.parse().ok()).collect();
    (counts.first().copied().unwrap_or(0), counts.get(1).copied().unwrap_or(0))
}

// --- The cases 1–4 -------------------------------------------------------------------

/// SCTP INITs from A to REMOTE, from each source port `count` times.
fn sctp_to(cluster: &Cluster, sports: &[u16], dport: u16, count: usize) {
    for sport in sports {
        for _ in 0..count {
            let init = packets::sctp_init(A, REMOTE, (*sport, dport));
            traffic::send_raw_ipv4(&pod(cluster, A).ns.name, init).unwrap();
        }
    }
}

/// SCTP packets REMOTE received, by destination port.
fn sctp_arrived(caught: &[Vec<u8>], dport: u16) -> usize {
    caught.iter().filter(|p| p[12..16] == A.octets() && u16::from_be_bytes([p[22], p[23]]) == dport).count()
}

/// Case 1: SCTP is keyed by its ports. The policy allows SCTP to port 1000 and drops the rest;
/// an allowed association to port 1000 opens nothing to port 2000.
#[test]
fn sctp_is_judged_per_port_pair() {
    let cluster = cluster("ctsctp", ClusterSpec::seed());
    let node = &cluster.nodes[0].ns.name;
    iptables(node, &["-A", "FORWARD", "-p", "sctp", "--dport", "1000", "-j", "ACCEPT"]);
    iptables(node, &["-A", "FORWARD", "-p", "sctp", "-j", "DROP"]);
    let remote_ns = pod(&cluster, REMOTE).ns.name.clone();
    let run = |sport: u16| {
        let catch = Catch::raw(&remote_ns, 132, Duration::from_secs(3)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        sctp_to(&cluster, &[sport], 1000, 1);
        std::thread::sleep(Duration::from_millis(500));
        sctp_to(&cluster, &[sport], 1000, 20);
        sctp_to(&cluster, &[sport + 1, sport + 2], 2000, 20);
        catch.caught().unwrap()
    };

    // The kernel alone: port 1000 through, port 2000 dropped.
    let caught = run(40000);
    assert_eq!((sctp_arrived(&caught, 1000), sctp_arrived(&caught, 2000)), (21, 0), "the kernel alone");

    let daemons = daemons(&cluster);
    let before = daemons[0].counters().unwrap();
    let catch = Catch::raw(&remote_ns, 132, Duration::from_secs(4)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    sctp_to(&cluster, &[41000], 1000, 1);
    wait_direction(&daemons[0], "sctp", addr(A, 41000), addr(REMOTE, 1000));
    sctp_to(&cluster, &[41000], 1000, 20);
    sctp_to(&cluster, &[41001, 41002], 2000, 20);
    let caught = catch.caught().unwrap();
    let after = daemons[0].counters().unwrap();
    assert_eq!((sctp_arrived(&caught, 1000), sctp_arrived(&caught, 2000)), (21, 0), "with fastpath");
    assert!(moved(&before, &after, "routed_underlay") >= 20, "the allowed association by the fast path");
    assert!(moved(&before, &after, "passed_flow_pending") >= 40, "port 2000 to the kernel, counted");
    let carried = direction(&daemons[0], "sctp", addr(A, 41000), addr(REMOTE, 1000)).unwrap();
    assert!(carried["fast_packets"].as_u64().unwrap() >= 20, "{carried}");

    // A protocol without ports is never the fast path's.
    let before = daemons[0].counters().unwrap();
    for _ in 0..5 {
        let gre = packets::ipv4_packet(A, REMOTE, 64, 47, &[0; 8]);
        traffic::send_raw_ipv4(&pod(&cluster, A).ns.name, gre).unwrap();
    }
    let after = daemons[0].counters().unwrap();
    // REMOTE's kernel answers each with "protocol unreachable", untracked too.
    assert!(moved(&before, &after, "passed_flow_untracked") >= 5);
    assert_eq!(moved(&before, &after, "routed_underlay"), 0);
}

/// ICMP echo packets of identifier `id` and type `kind` (8 request, 0 reply) from `from` to `to`.
fn echo(cluster: &Cluster, from: Ipv4Addr, to: Ipv4Addr, kind: u8, id: u16, count: usize) {
    for _ in 0..count {
        let packet = packets::icmp_echo_id(from, to, kind, id);
        traffic::send_raw_ipv4(&pod(cluster, from).ns.name, packet).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// ICMP packets of `kind` and `id` from `from` among those caught.
fn echoes(caught: &[Vec<u8>], from: Ipv4Addr, kind: u8, id: u16) -> usize {
    caught
        .iter()
        .filter(|p| p[12..16] == from.octets() && p[20] == kind && p[24..26] == id.to_be_bytes())
        .count()
}

/// Case 2: ICMP is keyed by identifier and type. REMOTE pings A (allowed, A answers); A's own
/// echo requests to REMOTE, forbidden, with the same identifier, never arrive.
#[test]
fn an_echo_request_never_rides_the_approval_of_a_ping_the_other_way() {
    let cluster = cluster("cticmp", ClusterSpec::seed());
    let node = &cluster.nodes[0].ns.name;
    iptables(
        node,
        &["-A", "FORWARD", "-s", &A.to_string(), "-p", "icmp", "--icmp-type", "echo-request", "-j", "DROP"],
    );
    let remote_ns = pod(&cluster, REMOTE).ns.name.clone();
    let run = |id: u16, daemon: Option<&Daemon>| {
        let catch = Catch::raw(&remote_ns, 1, Duration::from_secs(3)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        echo(&cluster, REMOTE, A, 8, id, 1);
        if let Some(daemon) = daemon {
            wait_direction(daemon, "icmp", addr(A, id), addr(REMOTE, 0));
        }
        echo(&cluster, REMOTE, A, 8, id, 20);
        echo(&cluster, A, REMOTE, 8, id, 20);
        let caught = catch.caught().unwrap();
        (echoes(&caught, A, 0, id), echoes(&caught, A, 8, id))
    };
    // The kernel alone: A answers all 21; its own requests are dropped.
    assert_eq!(run(0x4242, None), (21, 0), "the kernel alone");

    let daemons = daemons(&cluster);
    let before = daemons[0].counters().unwrap();
    assert_eq!(run(0x4343, Some(&daemons[0])), (21, 0), "with fastpath");
    let after = daemons[0].counters().unwrap();
    assert!(moved(&before, &after, "passed_flow_pending") >= 20, "A's requests to the kernel, counted");
    let replies = direction(&daemons[0], "icmp", addr(A, 0x4343), addr(REMOTE, 0)).unwrap();
    assert!(replies["fast_packets"].as_u64().unwrap() >= 15, "A's answers by the fast path: {replies}");
    // An unsolicited echo reply is no flow's either.
    assert!(direction(&daemons[0], "icmp", addr(A, 0x4343), addr(REMOTE, 8)).is_none());
}

/// Case 3: a pod's address reused. REMOTE streams UDP to B; B is deleted (Felix deletes its
/// conntrack entries), and a new pod with B's address gets an interface whose FORWARD rule drops
/// everything. The old flow's packets never reach the new pod.
#[test]
fn an_old_flow_never_reaches_a_new_pod_with_the_same_address() {
    let mut cluster = cluster("ctreuse", ClusterSpec::seed());
    let (from, to) = (addr(REMOTE, 6000), addr(B, 5000));
    let run = |cluster: &mut Cluster, daemon: Option<&Daemon>| -> (usize, usize) {
        let remote_ns = pod(cluster, REMOTE).ns.name.clone();
        let catch = Catch::udp(&pod(cluster, B).ns.name, to, Duration::from_secs(2)).unwrap();
        traffic::send_udp(&remote_ns, from, to, b"old", 1).unwrap();
        if let Some(daemon) = daemon {
            wait_direction(daemon, "udp", from, to);
        }
        traffic::send_udp(&remote_ns, from, to, b"old", 40).unwrap();
        let before = catch.caught().unwrap().len();
        // The CNI plugin deletes the pod, Felix its conntrack entries; a new pod gets the address.
        cluster.remove_pod(B).unwrap();
        let node = cluster.nodes[0].ns.name.clone();
        if let Some(daemon) = daemon {
            let gone = wait::until(Duration::from_secs(1), || {
                direction(daemon, "udp", from, to).is_none().then_some(())
            });
            assert!(
                gone.is_some(),
                "the endpoint went, its flow stayed: {}",
                daemon.cli(&["flows"]).unwrap()
            );
        }
        let _ = cmd::in_ns(&node, "conntrack", &["-D", "-d", &B.to_string()]);
        let _ = cmd::in_ns(&node, "conntrack", &["-D", "-s", &B.to_string()]);
        let iface = cluster.add_pod(0, B).unwrap().host_iface.clone();
        iptables(&node, &["-A", "FORWARD", "-o", &iface, "-j", "DROP"]);
        let catch = Catch::udp(&pod(cluster, B).ns.name, to, Duration::from_secs(2)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        traffic::send_udp(&remote_ns, from, to, b"old", 40).unwrap();
        let arrived = catch.caught().unwrap().len();
        // The next round's first pod B is allowed again.
        iptables(&node, &["-D", "FORWARD", "-o", &iface, "-j", "DROP"]);
        (before, arrived)
    };
    assert_eq!(run(&mut cluster, None), (41, 0), "the kernel alone");

    let daemons = daemons(&cluster);
    let before = daemons[0].counters().unwrap();
    let (delivered, reused) = run(&mut cluster, Some(&daemons[0]));
    let after = daemons[0].counters().unwrap();
    assert_eq!((delivered, reused), (41, 0), "with fastpath");
    assert!(moved(&before, &after, "routed_from_underlay") >= 40, "the old flow by the fast path, before");
    assert!(moved(&before, &after, "passed_flow_pending") >= 40, "after: to the kernel, counted");
}

/// Case 4: plain packets from the underlay with a remote pod's source, on the tuple of a flow
/// approved as arriving in VXLAN, from a host that is not a node: the kernel's strict rp_filter
/// drops them, and so they never ride the approval.
#[test]
fn plain_packets_never_ride_an_approval_made_through_vxlan() {
    let cluster = cluster("ctplain", ClusterSpec::seed().with_vxlan());
    let node = cluster.nodes[0].ns.name.clone();
    for conf in ["all", "eth0"] {
        cmd::sysctl(&node, &format!("net.ipv4.conf.{conf}.rp_filter"), "1").unwrap();
    }
    // A stranger on the underlay, routing the first node's pod block to it.
    let switch = cluster.switch.name.clone();
    cmd::ip(&switch, &["addr", "add", "10.101.14.60/28", "dev", "br0"]).unwrap();
    cmd::ip(&switch, &["route", "add", "10.244.40.0/26", "via", "10.101.14.50"]).unwrap();
    let (from, to) = (addr(REMOTE, 6000), addr(A, 5000));
    let spoofed = || {
        for _ in 0..20 {
            let datagram = packets::udp_datagram(REMOTE, A, (from.port(), to.port()), b"spoofed");
            traffic::send_raw_ipv4(&switch, datagram).unwrap();
        }
    };
    let run = |daemon: Option<&Daemon>| -> Vec<Vec<u8>> {
        let catch = Catch::udp(&pod(&cluster, A).ns.name, to, Duration::from_secs(2)).unwrap();
        let remote_ns = pod(&cluster, REMOTE).ns.name.clone();
        traffic::send_udp(&remote_ns, from, to, b"real", 1).unwrap();
        if let Some(daemon) = daemon {
            wait_direction(daemon, "udp", from, to);
        }
        traffic::send_udp(&remote_ns, from, to, b"real", 10).unwrap();
        spoofed();
        catch.caught().unwrap()
    };
    let count = |caught: &[Vec<u8>], what: &[u8]| caught.iter().filter(|d| d.as_slice() == what).count();
    let caught = run(None);
    assert_eq!((count(&caught, b"real"), count(&caught, b"spoofed")), (11, 0), "the kernel alone");

    let daemons = daemons(&cluster);
    let before = daemons[0].counters().unwrap();
    let caught = run(Some(&daemons[0]));
    let after = daemons[0].counters().unwrap();
    assert_eq!((count(&caught, b"real"), count(&caught, b"spoofed")), (11, 0), "with fastpath");
    assert!(moved(&before, &after, "decapsulated_vxlan") >= 10, "the real flow by the fast path");
    assert_eq!(moved(&before, &after, "passed_flow_elsewhere"), 20, "the spoofed ones, counted");
}

// --- Service traffic --------------------------------------------------------------------------

/// Calico's natOutgoing on the first node, and a host beyond the underlay's gateway: the switch
/// namespace is the gateway 10.101.14.62 and holds OUTSIDE.
fn add_outside(cluster: &Cluster) {
    let switch = &cluster.switch.name;
    cmd::ip(switch, &["addr", "add", "10.101.14.62/28", "dev", "br0"]).unwrap();
    cmd::ip(switch, &["addr", "add", &format!("{OUTSIDE}/32"), "dev", "lo"]).unwrap();
    cmd::ip(switch, &["link", "set", "lo", "up"]).unwrap();
    iptables(
        &cluster.nodes[0].ns.name,
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "10.244.0.0/16",
            "!",
            "-d",
            "10.244.0.0/16",
            "-j",
            "MASQUERADE",
        ],
    );
}

/// A TCP flow direction: source, source port, destination, destination port.
type Direction = (String, u64, String, u64);

/// The fast path's count of each direction of A's TCP flows, polled from the flow table while
/// they live (an entry goes with its connection): the most seen per direction.
struct FastCount {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<HashMap<Direction, u64>>>,
    handle: std::thread::JoinHandle<()>,
}

impl FastCount {
    fn start(daemon: &Daemon) -> Self {
        let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(HashMap::new())));
        let cli = daemon.cli_handle();
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Ok(json) = cli.run(&["flows", "--json"]) {
                    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap_or_default();
                    let mut seen = seen2.lock().unwrap();
                    for f in rows.iter().filter(|f| f["protocol"] == "tcp") {
                        let key = (
                            f["src"].as_str().unwrap_or("").to_string(),
                            f["sport"].as_u64().unwrap_or(0),
                            f["dst"].as_str().unwrap_or("").to_string(),
                            f["dport"].as_u64().unwrap_or(0),
                        );
                        let fast = f["fast_packets"].as_u64().unwrap_or(0);
                        let most = seen.entry(key).or_insert(0);
                        *most = (*most).max(fast);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self { stop, seen, handle }
    }

    /// The most the fast path carried of the direction from `src` to `dst`:`dport` (any source
    /// port: each transfer is one connection).
    fn finish(self) -> HashMap<Direction, u64> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

/// 50 MB from A to `connect` (a server on `listen` in `server_ns`), contents checked; then the
/// share of each direction of the connection the first node's fast path carried: its count of
/// the direction against conntrack's count of what the kernel saw of it.
fn transfer_and_shares(
    cluster: &Cluster,
    daemon: &Daemon,
    server_ns: &str,
    listen: SocketAddr,
    connect: SocketAddr,
) -> (f64, f64) {
    let node = &cluster.nodes[0].ns.name;
    let _ = cmd::in_ns(node, "conntrack", &["-F"]);
    let count = FastCount::start(daemon);
    traffic::transfer_via(pod(cluster, A), server_ns, listen, Some(connect), TRANSFER).unwrap();
    let fast = count.finish();
    // The connection's entry, closed but still in conntrack's table (TIME_WAIT).
    let dport = format!("dport={}", connect.port());
    let line = conntrack_list(node)
        .into_iter()
        .find(|l| l.contains("tcp") && l.contains(&format!("src={A}")) && l.contains(&dport))
        .unwrap_or_else(|| panic!("no conntrack entry of the transfer: {:?}", conntrack_list(node)));
    let (kernel_out, kernel_back) = conntrack_packets(&line);
    // The original tuple, then the reply's: the reply arrives as the latter.
    let field = |name: &str| -> Vec<String> {
        line.split_whitespace().filter_map(|w| w.strip_prefix(name)).map(str::to_string).collect()
    };
    let (srcs, dsts, sports, dports) = (field("src="), field("dst="), field("sport="), field("dport="));
    let number = |v: &str| v.parse::<u64>().unwrap();
    let out = fast
        .get(&(srcs[0].clone(), number(&sports[0]), dsts[0].clone(), number(&dports[0])))
        .copied()
        .unwrap_or(0);
    let back = fast
        .get(&(srcs[1].clone(), number(&sports[1]), dsts[1].clone(), number(&dports[1])))
        .copied()
        .unwrap_or(0);
    let share = |fast: u64, kernel: u64| fast as f64 / (fast + kernel).max(1) as f64;
    eprintln!(
        "50 MB via {connect}: out {out} fast / {kernel_out} kernel ({:.1} %), back {back} fast / {kernel_back} kernel ({:.1} %); conntrack: {line}",
        share(out, kernel_out) * 100.0,
        share(back, kernel_back) * 100.0
    );
    (share(out, kernel_out), share(back, kernel_back))
}

/// An open connection from A to `connect`, carried by the fast path; `conntrack -D` of its entry
/// hands the next packets to the kernel (which picks the connection up again, translated as
/// before, and it carries on: then by the fast path again).
fn conntrack_delete_hands_it_to_the_kernel(cluster: &Cluster, daemon: &Daemon, connect: SocketAddr) {
    let node = &cluster.nodes[0].ns.name;
    let mut open = traffic::OpenConnection::new(pod(cluster, A), connect).unwrap();
    for _ in 0..5 {
        open.exchange(16 << 10).unwrap();
    }
    let sport = open.local_port();
    let key = (addr(A, sport), connect);
    wait_direction(daemon, "tcp", key.0, key.1);
    let carried =
        |d: &Daemon| direction(d, "tcp", key.0, key.1).map_or(0, |f| f["fast_packets"].as_u64().unwrap());
    open.exchange(16 << 10).unwrap();
    assert!(carried(daemon) > 0, "the fast path carries the open connection");
    cmd::in_ns_ok(node, "conntrack", &["-D", "-p", "tcp", "--sport", &sport.to_string()]).unwrap();
    let gone = wait::until(Duration::from_secs(1), || {
        direction(daemon, "tcp", key.0, key.1).is_none().then_some(())
    });
    assert!(
        gone.is_some(),
        "the entry went, the fast path still carries it: {}",
        daemon.cli(&["flows"]).unwrap()
    );
    let before = daemon.counters().unwrap();
    open.exchange(16 << 10).unwrap();
    let after = daemon.counters().unwrap();
    // Without an entry: to the kernel, as a flow not yet approved, or for what its address is
    // without one (a service or the outside world: no route; the node's own address: the host's).
    let kernel: u64 = ["passed_flow_pending", "passed_no_route", "passed_underlay_other"]
        .iter()
        .map(|r| moved(&before, &after, r))
        .sum();
    assert!(kernel > 0, "the next packets went to the kernel");
    // The kernel took the connection up again: approved anew, carried again.
    wait_direction(daemon, "tcp", key.0, key.1);
    for _ in 0..5 {
        open.exchange(16 << 10).unwrap();
    }
    assert!(carried(daemon) > 0, "carried again after the kernel judged it anew");
}

fn service_traffic(tag: &str, backend: Ipv4Addr) {
    let cluster = cluster(tag, ClusterSpec::seed());
    cluster.expose_service(0, SERVICE, SocketAddr::from((backend, BACKEND_PORT))).unwrap();
    let (listen, connect) = (addr(backend, BACKEND_PORT), addr(SERVICE, 80));
    let server_ns = pod(&cluster, backend).ns.name.clone();
    // The kernel alone: the transfer through the service arrives whole (from the service
    // address: the client's socket takes nothing else).
    traffic::transfer_via(pod(&cluster, A), &server_ns, listen, Some(connect), TRANSFER).unwrap();

    let daemons = daemons(&cluster);
    let before = daemons[0].counters().unwrap();
    let (out, back) = transfer_and_shares(&cluster, &daemons[0], &server_ns, listen, connect);
    let after = daemons[0].counters().unwrap();
    assert!(out >= 0.9 && back >= 0.9, "the client's node fast-paths {out:.3} out, {back:.3} back");
    // The programs rewrote it: the translated packets are theirs to count.
    let carried = if backend == REMOTE { "routed_underlay" } else { "redirected_local" };
    let bytes = bytes_moved(&before, &after, carried);
    assert!(bytes >= TRANSFER as u64 * 9 / 10, "{bytes} bytes {carried}");
    let server = traffic::serve_echo(pod(&cluster, backend), BACKEND_PORT, 1).unwrap();
    conntrack_delete_hands_it_to_the_kernel(&cluster, &daemons[0], connect);
    drop(server);
}

#[test]
fn a_service_with_its_backend_on_another_node_is_fast_pathed_on_the_clients_node() {
    service_traffic("ctsvcr", REMOTE);
}

#[test]
fn a_service_with_its_backend_on_the_same_node_is_fast_pathed() {
    service_traffic("ctsvcl", B);
}

#[test]
fn masquerade_to_the_outside_is_fast_pathed_both_ways() {
    let cluster = cluster("ctmasq", ClusterSpec::seed());
    add_outside(&cluster);
    let switch = cluster.switch.name.clone();
    let (listen, connect) = (addr(OUTSIDE, 9000), addr(OUTSIDE, 9000));
    // The kernel alone: the transfer arrives whole, masqueraded.
    traffic::transfer_via(pod(&cluster, A), &switch, listen, Some(connect), TRANSFER).unwrap();

    let daemons = daemons(&cluster);
    let before = daemons[0].counters().unwrap();
    let (out, back) = transfer_and_shares(&cluster, &daemons[0], &switch, listen, connect);
    let after = daemons[0].counters().unwrap();
    assert!(out >= 0.9 && back >= 0.9, "the pod's node fast-paths {out:.3} out, {back:.3} back");
    let bytes = bytes_moved(&before, &after, "routed_underlay");
    assert!(bytes >= TRANSFER as u64 * 9 / 10, "{bytes} bytes out through the gateway by the fast path");
    assert!(
        moved(&before, &after, "routed_from_underlay") > 100,
        "the replies into the pod by the fast path"
    );
    let echo = traffic::serve_echo_at(&switch, addr(OUTSIDE, 9001), 1).unwrap();
    conntrack_delete_hands_it_to_the_kernel(&cluster, &daemons[0], addr(OUTSIDE, 9001));
    drop(echo);
}

// --- Conntrack's timeouts -----------------------------------------------------------------------

/// TCP's established timeout on both nodes, lowered to `seconds`.
fn lower_tcp_timeout(cluster: &Cluster, seconds: u32) {
    for node in &cluster.nodes {
        cmd::sysctl(
            &node.ns.name,
            "net.netfilter.nf_conntrack_tcp_timeout_established",
            &seconds.to_string(),
        )
        .unwrap();
    }
}

/// conntrack's id of the entry of A's connection from `sport` on the first node.
fn entry_id(cluster: &Cluster, sport: u16) -> Option<String> {
    let needle = format!("sport={sport} ");
    conntrack_list(&cluster.nodes[0].ns.name)
        .into_iter()
        .find(|l| l.contains(&needle))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("id=").map(str::to_string)))
}

const TIMEOUT: u32 = 4;

#[test]
fn a_flow_idle_past_conntracks_timeout_is_judged_afresh_and_works() {
    let cluster = cluster("ctidle", ClusterSpec::seed());
    lower_tcp_timeout(&cluster, TIMEOUT);
    let to = addr(REMOTE, BACKEND_PORT);
    let idle = |daemon: Option<&Daemon>| {
        let server = traffic::serve_echo(pod(&cluster, REMOTE), BACKEND_PORT, 1).unwrap();
        let mut open = traffic::OpenConnection::new(pod(&cluster, A), to).unwrap();
        open.exchange(4096).unwrap();
        let sport = open.local_port();
        if let Some(daemon) = daemon {
            wait_direction(daemon, "tcp", addr(A, sport), to);
        }
        let id = entry_id(&cluster, sport);
        assert!(id.is_some());
        std::thread::sleep(Duration::from_secs(u64::from(TIMEOUT) + 3));
        assert_eq!(entry_id(&cluster, sport), None, "conntrack timed the idle connection out");
        if let Some(daemon) = daemon {
            assert!(direction(daemon, "tcp", addr(A, sport), to).is_none(), "and the fast path let it go");
        }
        // The next exchange goes through the kernel, which picks the connection up again.
        open.exchange(4096).unwrap();
        if let Some(daemon) = daemon {
            wait_direction(daemon, "tcp", addr(A, sport), to);
        }
        open.exchange(4096).unwrap();
        drop(open);
        server.join().unwrap().unwrap();
    };
    idle(None);
    let daemons = daemons(&cluster);
    idle(Some(&daemons[0]));
}

#[test]
fn a_flow_the_fast_path_carries_past_conntracks_timeout_keeps_its_entry() {
    let cluster = cluster("ctkeep", ClusterSpec::seed());
    lower_tcp_timeout(&cluster, TIMEOUT);
    let to = addr(REMOTE, BACKEND_PORT);
    let daemons = daemons(&cluster);
    let server = traffic::serve_echo(pod(&cluster, REMOTE), BACKEND_PORT, 1).unwrap();
    let mut open = traffic::OpenConnection::new(pod(&cluster, A), to).unwrap();
    open.exchange(4096).unwrap();
    let sport = open.local_port();
    wait_direction(&daemons[0], "tcp", addr(A, sport), to);
    let id = entry_id(&cluster, sport).expect("the connection's entry");
    let before = daemons[0].counters().unwrap();
    // Three timeouts of traffic the kernel never sees.
    let until = Instant::now() + Duration::from_secs(3 * u64::from(TIMEOUT));
    let mut exchanges = 0;
    while Instant::now() < until {
        open.exchange(1024).unwrap();
        exchanges += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = daemons[0].counters().unwrap();
    assert_eq!(entry_id(&cluster, sport), Some(id), "the same entry, never timed out");
    let carried = direction(&daemons[0], "tcp", addr(A, sport), to).unwrap();
    assert!(carried["fast_packets"].as_u64().unwrap() >= exchanges, "{carried}");
    assert_eq!(moved(&before, &after, "passed_flow_pending"), 0, "the kernel saw none of it");
    drop(open);
    server.join().unwrap().unwrap();
}

// --- Closing connections -----------------------------------------------------------------------

/// Packets the first rule of node `ns`'s FORWARD chain (a counting rule) matched.
fn first_rule_packets(ns: &str) -> u64 {
    let out = cmd::in_ns(ns, "iptables", &["-L", "FORWARD", "1", "-v", "-x", "-n"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace().next().and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("{text}"))
}

/// Short connections (one byte each way, then close) from A to `connect` (a server listening on
/// `listen` in REMOTE) for `seconds`, the kernel alone and then with fastpath: not one segment
/// conntrack finds INVALID, and no connection waits for a retransmission.
fn short_connections(tag: &str, service: bool) {
    let cluster = cluster(tag, ClusterSpec::seed());
    for node in &cluster.nodes {
        // Counts, judges nothing: every segment conntrack finds out of window or state.
        iptables(&node.ns.name, &["-I", "FORWARD", "1", "-m", "conntrack", "--ctstate", "INVALID"]);
    }
    let listen = addr(REMOTE, BACKEND_PORT);
    let connect = if service {
        cluster.expose_service(0, SERVICE, SocketAddr::from((REMOTE, BACKEND_PORT))).unwrap();
        addr(SERVICE, 80)
    } else {
        listen
    };
    let (client, server) = (&pod(&cluster, A).ns.name, &pod(&cluster, REMOTE).ns.name);
    let invalid = || -> u64 { cluster.nodes.iter().map(|n| first_rule_packets(&n.ns.name)).sum() };
    let crr = |seconds| {
        traffic::tcp_connect_request_response_via(
            client,
            server,
            listen,
            Some(connect),
            Duration::from_secs(seconds),
        )
        .unwrap()
    };
    let kernel = crr(2);
    assert_eq!(invalid(), 0, "the kernel alone: {} connections, none INVALID", kernel.transactions);

    let daemons = daemons(&cluster);
    let before = daemons[0].counters().unwrap();
    let run = crr(5);
    let after = daemons[0].counters().unwrap();
    let carried = moved(&before, &after, "routed_underlay");
    eprintln!(
        "{connect}: {} connections ({:.0}/s; kernel alone {:.0}/s), p50 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs; {carried} packets carried by the fast path, {} INVALID",
        run.transactions,
        run.per_second(),
        kernel.per_second(),
        run.percentile_us(0.5),
        run.percentile_us(0.999),
        run.percentile_us(1.0),
        invalid()
    );
    assert!(carried > 0, "the fast path carried some of the connections");
    // A connection's close reached conntrack whole: the fast path never carried a segment of a
    // direction after its FIN, nor of either direction after an RST or a SYN on its tuple.
    assert_eq!(invalid(), 0, "segments conntrack found INVALID");
    // A lost segment costs at least TCP's minimum retransmission timeout, 200 ms.
    assert!(run.percentile_us(1.0) < 200_000.0, "a connection waited for a retransmission");
}

#[test]
fn short_connections_close_without_an_invalid_segment() {
    short_connections("ctcrr", false);
}

#[test]
fn short_connections_through_a_service_close_without_an_invalid_segment() {
    short_connections("ctcrrsvc", true);
}
