//! The inspection commands. All of them read the pinned maps, so they work from a second
//! process (or container) while the daemon runs.

use std::{fmt::Write as _, net::Ipv4Addr, path::Path, time::Duration};

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, MapData, RingBuf},
    programs::links::{FdLink, PinnedLink},
};
use fastpath_common::{
    arp::{self, ArpFields},
    ipv4::{self, Ipv4Fields, FLAG_DF},
    maps::{
        AgentInfo, MonitorControl, MonitorEvent, NodeConfig, AGENT, AGENT_F_LEGACY_TC, AGENT_F_READY,
        AGENT_F_TRUST_KERNEL, EVENTS, FLOWS, MONITOR, NODE, PROGRAM_FROM_POD, ROUTES_MAX, TUNNEL_PEERS,
        TUNNEL_PEERS_MAX,
    },
    route::{self, Forward, RouteKind, RouteValue},
    tunnel::Tunnel,
    Reason,
};

use crate::{
    clock::unix_ms,
    commands::{
        flows::{self, Flow},
        show::{self, mac_string},
    },
    daemon::encap::EncapMode,
    dataplane::{bpffs, loader, pins, tables},
    Error,
};

/// A heartbeat older than this means no daemon is running.
const HEARTBEAT_STALE: Duration = Duration::from_secs(3);

/// The agent, if a daemon is running (its heartbeat is fresh).
pub fn running_agent(dir: &Path) -> Result<AgentInfo, Error> {
    let agent: AgentInfo =
        bpffs::read_pinned_slot(dir, AGENT).map_err(|_| Error::NotRunning { dir: dir.to_path_buf() })?;
    let age = unix_ms().saturating_sub(agent.heartbeat_unix_ms);
    if agent.heartbeat_unix_ms == 0 || age > HEARTBEAT_STALE.as_millis() as u64 {
        return Err(Error::NotRunning { dir: dir.to_path_buf() });
    }
    Ok(agent)
}

/// One attached program, from its pinned link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub program: String,
    pub ifindex: u32,
    pub iface: Option<String>,
    pub prog_id: u32,
    pub link_id: u32,
}

pub fn attached(dir: &Path, ifname: impl Fn(u32) -> Option<String>) -> Vec<Attached> {
    pins::pinned_links(dir)
        .into_iter()
        .filter_map(|(program, ifindex, path)| {
            let info = FdLink::from(PinnedLink::from_pin(&path).ok()?).info().ok()?;
            Some(Attached {
                program,
                ifindex,
                iface: ifname(ifindex),
                prog_id: info.program_id(),
                link_id: info.id(),
            })
        })
        .collect()
}

fn duration_words(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// `fastpath status`.
pub fn status(dir: &Path, json: bool, ifname: impl Fn(u32) -> Option<String>) -> Result<String, Error> {
    let agent = running_agent(dir)?;
    let node: NodeConfig = bpffs::read_pinned_slot(dir, NODE)?;
    let routes = tables::route_entries(&tables::pinned_routes(dir)?)?.len();
    let peers: HashMap<MapData, [u8; 4], u32> = bpffs::open_pinned_as(dir, TUNNEL_PEERS)?;
    let peers = peers.keys().count();
    let links = attached(dir, &ifname);
    let trust = if agent.flags & AGENT_F_TRUST_KERNEL != 0 { "kernel" } else { "routes" };
    let legacy_tc = agent.flags & AGENT_F_LEGACY_TC != 0;
    let flows_max =
        MapData::from_pin(dir.join(FLOWS)).ok().and_then(|m| m.info().ok()).map_or(0, |i| i.max_entries());
    let flow_count = flows::read_pinned(dir).map_or(0, |f| f.len());
    let uptime = unix_ms().saturating_sub(agent.started_unix_ms);
    let ready = agent.flags & AGENT_F_READY != 0;
    let underlay =
        ifname(node.underlay_ifindex).unwrap_or_else(|| format!("ifindex {}", node.underlay_ifindex));
    let mode = |code| EncapMode::from_code(code).map_or("unknown", EncapMode::name);
    let ipip_mtu = node.tunnel_mtu(&Tunnel::Ipip);
    let vxlan_mtu = node.tunnel_mtu(&Tunnel::Vxlan);
    let vxlan_name = ifname(node.vxlan.ifindex).unwrap_or_else(|| format!("ifindex {}", node.vxlan.ifindex));
    if json {
        let links: Vec<String> = links
            .iter()
            .map(|l| {
                format!(
                    r#"{{"program":"{}","ifindex":{},"iface":{},"prog_id":{},"link_id":{},"attach":"{}"}}"#,
                    l.program,
                    l.ifindex,
                    l.iface.as_deref().map_or("null".into(), show::json_string),
                    l.prog_id,
                    l.link_id,
                    loader::attach_point(&l.program)
                )
            })
            .collect();
        let vxlan = if node.has_vxlan() {
            let v = node.vxlan;
            format!(
                r#"{{"iface":{},"ifindex":{},"vni":{},"port":{},"mac":"{}","source_ports":[{},{}],"mtu":{vxlan_mtu}}}"#,
                show::json_string(&vxlan_name),
                v.ifindex,
                v.vni,
                v.port,
                mac_string(v.mac),
                v.port_min,
                v.port_max
            )
        } else {
            "null".to_string()
        };
        return Ok(format!(
            r#"{{"running":true,"ready":{ready},"version":{},"pid":{},"uptime_seconds":{},"ipip":"{}","vxlan_mode":"{}","trust":"{trust}","hook":"{}","flow_idle_seconds":{},"underlay":{},"underlay_ifindex":{},"node_ip":"{}","node_mac":"{}","underlay_mtu":{},"tunnel_mtu":{ipip_mtu},"vxlan":{vxlan},"maps":{{"FP_ROUTES":{{"entries":{routes},"max":{ROUTES_MAX}}},"FP_PEERS":{{"entries":{peers},"max":{TUNNEL_PEERS_MAX}}},"FP_FLOWS":{{"entries":{flow_count},"max":{flows_max}}}}},"attached":[{}]}}"#,
            show::json_string(&show::unpadded(&agent.version)),
            agent.pid,
            uptime / 1000,
            mode(agent.ipip_mode),
            mode(agent.vxlan_mode),
            if legacy_tc { "legacy-tc" } else { "tcx" },
            node.flow_idle_secs,
            show::json_string(&underlay),
            node.underlay_ifindex,
            Ipv4Addr::from(node.node_ip),
            mac_string(node.node_mac),
            node.underlay_mtu,
            links.join(",")
        ));
    }
    let mut out = format!(
        "fastpath {} (pid {}), up {}, {}\n",
        show::unpadded(&agent.version),
        agent.pid,
        duration_words(uptime),
        if ready { "ready" } else { "NOT READY: syncing or an interface is not attached" }
    );
    let trust_words = match trust {
        "kernel" => format!(
            "trust kernel (a flow takes the fast path once the kernel forwarded it; idle {}s)",
            node.flow_idle_secs
        ),
        _ => "trust routes (every packet the routes allow)".to_string(),
    };
    let _ = writeln!(
        out,
        "mode:      IPIP {}, VXLAN {}, {trust_words}",
        mode(agent.ipip_mode),
        mode(agent.vxlan_mode)
    );
    let _ = writeln!(
        out,
        "underlay:  {underlay} (ifindex {}), node {}, MAC {}, MTU {} (IPIP {ipip_mtu}, VXLAN {vxlan_mtu})",
        node.underlay_ifindex,
        Ipv4Addr::from(node.node_ip),
        mac_string(node.node_mac),
        node.underlay_mtu,
    );
    if node.has_vxlan() {
        let v = node.vxlan;
        let _ = writeln!(
            out,
            "vxlan:     {vxlan_name} (ifindex {}), VNI {}, port {}, MAC {}, source ports {}-{}",
            v.ifindex,
            v.vni,
            v.port,
            mac_string(v.mac),
            v.port_min,
            v.port_max
        );
    } else {
        let _ = writeln!(out, "vxlan:     none the programs stand in for (VXLAN is the kernel's)");
    }
    let _ = writeln!(
        out,
        "maps:      FP_ROUTES {routes}/{ROUTES_MAX}, FP_PEERS {peers}/{TUNNEL_PEERS_MAX}, FP_FLOWS {flow_count}/{flows_max}"
    );
    if legacy_tc {
        let _ = writeln!(
            out,
            "attached:  as legacy tc filters (clsact, priority {}), which are not pinned links: `tc filter show dev IFACE ingress` lists them",
            crate::dataplane::legacy_tc::PRIORITY
        );
        return Ok(out);
    }
    let _ = writeln!(out, "attached:  {} links", links.len());
    let _ = writeln!(
        out,
        "  {:<16} {:>7}  {:<14} {:>7} {:>7}  ATTACH",
        "INTERFACE", "IFINDEX", "PROGRAM", "PROG ID", "LINK ID"
    );
    for l in &links {
        let _ = writeln!(
            out,
            "  {:<16} {:>7}  {:<14} {:>7} {:>7}  {}",
            l.iface.as_deref().unwrap_or("(gone)"),
            l.ifindex,
            l.program,
            l.prog_id,
            l.link_id,
            loader::attach_point(&l.program)
        );
    }
    Ok(out)
}

/// `fastpath endpoints`: the local pods, from the route table.
pub fn endpoints(dir: &Path, json: bool, ifname: impl Fn(u32) -> Option<String>) -> Result<String, Error> {
    let rows: Vec<show::RouteRow> = tables::route_entries(&tables::pinned_routes(dir)?)?
        .iter()
        .filter(|(_, v)| {
            v.kind == RouteKind::LocalEndpoint as u32
                || (v.kind == RouteKind::Kernel as u32 && v.ifindex != 0)
        })
        .map(|(prefix, value)| show::row(*prefix, value, &ifname))
        .collect();
    if json {
        return Ok(show::json(&rows));
    }
    let mut out = format!("{:<18} {:<22} {:<18} {}\n", "POD", "INTERFACE", "MAC", "STATE");
    for r in rows {
        let iface = format!("{} ({})", r.iface.as_deref().unwrap_or("?"), r.ifindex.unwrap_or(0));
        let (mac, state) = match r.mac {
            Some(mac) => (mac, "fast path"),
            None => ("-".into(), "kernel (MAC not known yet)"),
        };
        let _ = writeln!(out, "{:<18} {:<22} {:<18} {state}", r.prefix.trim_end_matches("/32"), iface, mac);
    }
    Ok(out)
}

/// `fastpath peers`: the nodes whose tunnels are accepted, with the blocks routed to each and
/// how (for VXLAN, to which VTEP MAC).
pub fn peers(dir: &Path, json: bool) -> Result<String, Error> {
    let map: HashMap<MapData, [u8; 4], u32> = bpffs::open_pinned_as(dir, TUNNEL_PEERS)?;
    let mut nodes: Vec<Ipv4Addr> = map.keys().filter_map(Result::ok).map(Ipv4Addr::from).collect();
    nodes.sort();
    let routes = tables::route_entries(&tables::pinned_routes(dir)?)?;
    let blocks_of = |node: Ipv4Addr| -> Vec<(String, &'static str, Option<String>)> {
        routes
            .iter()
            .filter(|(_, v)| v.kind == RouteKind::RemoteBlock as u32 && Ipv4Addr::from(v.next_hop) == node)
            .map(|((len, addr), v)| (format!("{addr}/{len}"), v.encap_name(), show::vtep_mac(v)))
            .collect()
    };
    if json {
        let items: Vec<String> = nodes
            .iter()
            .map(|n| {
                let blocks: Vec<String> = blocks_of(*n)
                    .iter()
                    .map(|(b, encap, mac)| {
                        let mac = mac.as_deref().map_or("null".into(), show::json_string);
                        format!(r#"{{"block":"{b}","encap":"{encap}","vtep_mac":{mac}}}"#)
                    })
                    .collect();
                format!(r#"{{"node":"{n}","blocks":[{}]}}"#, blocks.join(","))
            })
            .collect();
        return Ok(format!("[{}]", items.join(",")));
    }
    let mut out = format!("{:<16} {}\n", "NODE", "BLOCKS (ENCAP)");
    for n in nodes {
        let blocks: Vec<String> = blocks_of(n)
            .iter()
            .map(|(b, encap, mac)| match mac {
                Some(mac) => format!("{b} ({encap}, VTEP {mac})"),
                None => format!("{b} ({encap})"),
            })
            .collect();
        let _ = writeln!(out, "{:<16} {}", n.to_string(), blocks.join(", "));
    }
    Ok(out)
}

/// What `explain` reads: the node and a route lookup, as the programs see them.
pub struct Tables<'a> {
    pub node: NodeConfig,
    pub route: &'a dyn Fn(Ipv4Addr) -> Option<RouteValue>,
    pub is_peer: &'a dyn Fn(Ipv4Addr) -> bool,
    pub ifname: &'a dyn Fn(u32) -> Option<String>,
    /// The flow table (`--trust kernel`).
    pub flows: &'a [Flow],
}

/// The packet `explain` is asked about.
#[derive(Clone, Copy, Debug)]
pub struct Question {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub arp: bool,
    pub from_underlay: Option<Ipv4Addr>,
    /// The tunnel of `from_underlay` is VXLAN (else IPIP).
    pub vxlan: bool,
    pub ttl: u8,
    pub size: u16,
    pub df: bool,
}

/// The programs' decision for `q`, in words: the verdict on the first line, then why. Uses the
/// same decision functions the programs run (`fastpath_common`).
pub fn explain(q: &Question, t: &Tables) -> String {
    let mut why = Vec::new();
    let verdict = decide(q, t, &mut why);
    let mut out = format!("{verdict}\n");
    for line in why {
        let _ = writeln!(out, "  because {line}");
    }
    out
}

fn decide(q: &Question, t: &Tables, why: &mut Vec<String>) -> String {
    if q.arp {
        let fields = ArpFields {
            htype: arp::HTYPE_ETHERNET,
            ptype: arp::PTYPE_IPV4,
            hlen: 6,
            plen: 4,
            op: arp::OP_REQUEST,
            spa: q.src.octets(),
            tpa: q.dst.octets(),
        };
        return match arp::classify_request(&fields) {
            Ok(()) => {
                why.push(format!("an ARP request from a pod for any address but its own is answered, as proxy_arp would ({} asks for {})", q.src, q.dst));
                format!("ARP reply: {} is at ee:ee:ee:ee:ee:ee, sent back out of the pod's interface", q.dst)
            }
            Err(reason) => kernel(reason, why),
        };
    }
    if !t.node.ready() {
        return kernel(Reason::PassNotReady, why);
    }
    let node_ip = t.node.node_ip;
    let fields = Ipv4Fields {
        version_ihl: 0x45,
        total_len: q.size,
        frag: if q.df { FLAG_DF } else { 0 },
        ttl: q.ttl,
        protocol: 6,
        src: q.src.octets(),
        dst: q.dst.octets(),
    };
    if let Some(outer_src) = q.from_underlay {
        return arriving(q, t, outer_src, &fields, why);
    }
    if let Err(reason) = ipv4::check_forwardable(&fields, u32::from(q.size)) {
        return verdict_of(reason, why);
    }
    let src_route = (t.route)(q.src);
    let ingress = src_route
        .filter(|r| r.kind == RouteKind::LocalEndpoint as u32 || r.ifindex != 0)
        .map_or(0, |r| r.ifindex);
    if ingress != 0 {
        why.push(format!(
            "it arrives on {} (ifindex {ingress}), the interface of pod {}",
            name(t, ingress),
            q.src
        ));
    }
    if let Err(reason) = route::check_source(src_route.as_ref(), ingress) {
        why.push(format!("{} belongs to another pod, not to the sender's interface", q.src));
        return verdict_of(reason, why);
    }
    let fast = match route::forward_to(fields.dst, node_ip, (t.route)(q.dst).as_ref()) {
        Ok(Forward::Local { ifindex, mac }) => {
            why.push(format!("{} is a pod on this node (a /32 via {})", q.dst, name(t, ifindex)));
            format!("redirect to pod on {} (ifindex {ifindex}, MAC {})", name(t, ifindex), mac_string(mac))
        }
        Ok(Forward::Encapsulate { next_hop, tunnel, mac }) => {
            let next_hop = Ipv4Addr::from(next_hop);
            let name_of_tunnel = tunnel.name().to_uppercase();
            why.push(format!("{} is in a block routed via node {next_hop}, with {name_of_tunnel}", q.dst));
            let tunnel_mtu = t.node.tunnel_mtu(&tunnel);
            if u32::from(q.size) > tunnel_mtu {
                why.push(format!("{} bytes do not fit the {name_of_tunnel} tunnel MTU {tunnel_mtu}", q.size));
                if !q.df {
                    return verdict_of(Reason::PassTooBig, why);
                }
                return gate(
                    q,
                    t,
                    format!("ICMP fragmentation needed (mtu = {tunnel_mtu}) sent back to {}", q.src),
                    why,
                );
            }
            let (outer_src, via) = (Ipv4Addr::from(node_ip), name(t, t.node.underlay_ifindex));
            match tunnel {
                Tunnel::Ipip => {
                    format!("IPIP to {next_hop} via {via} (outer {outer_src} → {next_hop}, protocol 4)")
                }
                Tunnel::Vxlan if t.node.has_vxlan() => {
                    let v = t.node.vxlan;
                    why.push(format!(
                        "as {} would send it: UDP port {}, VNI {}, inner Ethernet {} → {}",
                        name(t, v.ifindex),
                        v.port,
                        v.vni,
                        mac_string(v.mac),
                        mac_string(mac)
                    ));
                    format!(
                        "VXLAN to {next_hop} via {via} (outer {outer_src} → {next_hop}, UDP {}, VNI {}, inner MAC {})",
                        v.port,
                        v.vni,
                        mac_string(mac)
                    )
                }
                Tunnel::Vxlan => {
                    why.push("this node has no vxlan.calico the programs can stand in for".into());
                    return verdict_of(Reason::PassKernelRoute, why);
                }
            }
        }
        Ok(Forward::Underlay { next_hop }) => {
            let next_hop = Ipv4Addr::from(next_hop);
            why.push(format!("{} is in a block routed via node {next_hop}, without encapsulation", q.dst));
            format!("route to {next_hop} via {} without encapsulation", name(t, t.node.underlay_ifindex))
        }
        Err(reason) => return verdict_of(reason, why),
    };
    gate(q, t, fast, why)
}

/// A packet arriving in a tunnel from `outer_src` (IPIP, or VXLAN to this node's
/// `vxlan.calico`), in the order the underlay program decides.
fn arriving(
    q: &Question,
    t: &Tables,
    outer_src: Ipv4Addr,
    fields: &Ipv4Fields,
    why: &mut Vec<String>,
) -> String {
    let node_ip = t.node.node_ip;
    let tunnel = if q.vxlan { "VXLAN" } else { "IPIP" };
    if q.vxlan && !t.node.has_vxlan() {
        why.push(
            "this node has no vxlan.calico the programs stand in for: VXLAN to it is the kernel's".into(),
        );
        return verdict_of(Reason::PassUnderlayOther, why);
    }
    if !(t.is_peer)(outer_src) {
        why.push(format!("{outer_src} is not a node in the route table (no remote block routes via it)"));
        return verdict_of(Reason::DropUnknownPeer, why);
    }
    why.push(format!("{tunnel} from {outer_src}, a known node, to this node {}", Ipv4Addr::from(node_ip)));
    if q.vxlan {
        let v = t.node.vxlan;
        why.push(format!(
            "taken apart as {} would: UDP port {}, VNI {}, inner Ethernet to {} (other VNIs, flags or inner frames are the kernel's)",
            name(t, v.ifindex),
            v.port,
            v.vni,
            mac_string(v.mac)
        ));
    }
    if let Err(reason) = ipv4::check_forwardable(fields, u32::from(q.size)) {
        return verdict_of(reason, why);
    }
    match route::deliver_after_decap(fields.dst, node_ip, (t.route)(q.dst).as_ref()) {
        Ok(Forward::Local { ifindex, mac }) => {
            why.push(format!("{} is a pod on this node", q.dst));
            let fast = format!(
                "decapsulate, then redirect to pod on {} (ifindex {ifindex}, MAC {})",
                name(t, ifindex),
                mac_string(mac)
            );
            gate(q, t, fast, why)
        }
        Ok(_) => verdict_of(Reason::PassDecapNotLocal, why),
        Err(reason) => verdict_of(reason, why),
    }
}

/// The route's verdict `fast`, as `--trust` qualifies it: under `--trust kernel` it holds only
/// for flows the kernel has already forwarded unchanged.
fn gate(q: &Question, t: &Tables, fast: String, why: &mut Vec<String>) -> String {
    if !t.node.trusts_kernel() {
        why.push("--trust routes: every packet the routes allow takes the fast path".into());
        return fast;
    }
    why.push("--trust kernel: a flow takes the fast path only once the kernel has forwarded one of its packets unchanged; flows NAT changed or the kernel made stay with the kernel".into());
    let between: Vec<Flow> = t
        .flows
        .iter()
        .filter(|f| f.key.src == q.src.octets() && f.key.dst == q.dst.octets())
        .copied()
        .collect();
    for f in &between {
        why.push(format!("{} is {}", flows::describe(&f.key), f.state_name()));
    }
    let [approved, ..] = flows::census(&between);
    if approved > 0 {
        return format!("{fast}, for the {approved} approved flows; any other goes to the kernel first");
    }
    if between.is_empty() {
        why.push(format!("the flow table holds no flow from {} to {} yet", q.src, q.dst));
    }
    format!(
        "kernel first ({}), until the kernel forwards the flow unchanged; then: {fast}",
        Reason::PassFlowPending.as_str()
    )
}

fn name(t: &Tables, ifindex: u32) -> String {
    (t.ifname)(ifindex).unwrap_or_else(|| format!("ifindex {ifindex}"))
}

fn verdict_of(reason: Reason, why: &mut Vec<String>) -> String {
    if reason.is_drop() {
        why.push(describe(reason).into());
        format!("drop: {} (counted as {})", short(reason), reason.as_str())
    } else {
        kernel(reason, why)
    }
}

fn kernel(reason: Reason, why: &mut Vec<String>) -> String {
    why.push(describe(reason).into());
    format!("kernel: {} (counted as {})", short(reason), reason.as_str())
}

fn short(reason: Reason) -> &'static str {
    match reason {
        Reason::DropSpoofedSource => "spoofed source",
        Reason::DropNoEndpoint => "no pod at this address of the node's block",
        Reason::DropUnknownPeer => "a tunnel from an unknown node",
        Reason::PassVxlanOther => "VXLAN the kernel's device judges",
        Reason::PassUnderlayOther => "not a tunnel the programs take apart",
        Reason::PassNoRoute => "no fastpath route",
        Reason::PassKernelRoute => "the route is the kernel's",
        Reason::PassSpecialDestination => "a destination never fast-pathed",
        Reason::PassTtlExceeded => "TTL expiring",
        Reason::PassTooBig => "too big for the tunnel",
        Reason::PassNotReady => "the node is not configured yet",
        Reason::PassDecapNotLocal => "not for a pod on this node",
        Reason::PassArpGratuitous => "gratuitous ARP",
        Reason::PassArpProbe => "duplicate-address probe",
        _ => "not the fast path's to carry",
    }
}

/// Why a reason applies, in a sentence.
pub fn describe(reason: Reason) -> &'static str {
    match reason {
        Reason::PassNoRoute => "the route table has no fastpath entry for the destination (host, service or outside addresses)",
        Reason::PassKernelRoute => "the route says the kernel routes it (a local pod whose MAC is not known yet, a VXLAN block whose neighbour or FDB entry is not, this node's tunnel address)",
        Reason::PassSpecialDestination => {
            "this node, loopback, 0.0.0.0/8, link-local (169.254.1.1) and multicast/broadcast never take the fast path"
        }
        Reason::PassTtlExceeded => "TTL ≤ 1: the kernel sends ICMP time exceeded, as a router must",
        Reason::PassIpOptions | Reason::PassFragment => "IP options and fragments need the kernel's judgement",
        Reason::PassTooBig => "it is too big for the tunnel but may be fragmented, which the kernel does",
        Reason::PassNotReady => "the daemon has not written this node's settings",
        Reason::PassDecapNotLocal => "after decapsulation the destination is not a pod on this node",
        Reason::DropSpoofedSource => "the source check (Calico's RPF) drops a pod sending with another pod's address",
        Reason::DropNoEndpoint => "the address is in this node's pod block (a blackhole route) but no pod has it",
        Reason::DropUnknownPeer => "only nodes that own a block in the route table may send IPIP or VXLAN to this node",
        Reason::PassUnderlayOther => "the kernel takes what is not a tunnel the programs stand in for",
        Reason::PassVxlanOther => "VXLAN the programs do not take apart goes to the kernel's own vxlan device",
        Reason::PassArpGratuitous => "a pod announcing its own address is the kernel's business",
        Reason::PassArpProbe => "a duplicate-address probe (sender 0.0.0.0) must stay unanswered",
        _ => "the programs hand it to the kernel unchanged",
    }
}

/// `fastpath explain` against the pinned maps.
pub fn explain_pinned(
    dir: &Path,
    q: &Question,
    ifname: &dyn Fn(u32) -> Option<String>,
) -> Result<String, Error> {
    let node: NodeConfig = bpffs::read_pinned_slot(dir, NODE)?;
    let trie = tables::pinned_routes(dir)?;
    let peers: HashMap<MapData, [u8; 4], u32> = bpffs::open_pinned_as(dir, TUNNEL_PEERS)?;
    // The kernel's LPM lookup: the most specific prefix containing the address.
    let route = |addr: Ipv4Addr| trie.get(&Key::new(32, addr.octets()), 0).ok();
    let is_peer = |addr: Ipv4Addr| peers.get(&addr.octets(), 0).is_ok();
    // A pin folder of an older version has no flow table: then there is nothing to list.
    let flows = flows::read_pinned(dir).unwrap_or_default();
    Ok(explain(q, &Tables { node, route: &route, is_peer: &is_peer, ifname, flows: &flows }))
}

/// `fastpath cleanup`.
pub fn cleanup(dir: &Path) -> Result<String, Error> {
    let removed = pins::remove_all(dir, &fastpath_common::maps::PINNED_MAPS)?;
    let filters = crate::dataplane::legacy_tc::detach_everywhere();
    let mut out = format!(
        "removed {removed} pins from {} (links detached, programs unloaded, maps freed)\n",
        dir.display()
    );
    if filters > 0 {
        let _ = writeln!(out, "removed {filters} legacy tc filters from this network namespace's interfaces");
    }
    Ok(out)
}

/// One monitor line for an event.
pub fn monitor_line(e: &MonitorEvent, wall_ns: u128, ifname: &dyn Fn(u32) -> Option<String>) -> String {
    let secs = (wall_ns / 1_000_000_000) as u64;
    let micros = ((wall_ns % 1_000_000_000) / 1000) as u64;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let proto = match e.protocol {
        1 => "ICMP".to_string(),
        6 => "TCP".to_string(),
        17 => "UDP".to_string(),
        p => format!("proto {p}"),
    };
    let endpoint = |addr: [u8; 4], port: u16| {
        if port == 0 {
            Ipv4Addr::from(addr).to_string()
        } else {
            format!("{}:{port}", Ipv4Addr::from(addr))
        }
    };
    let verdict = match e.verdict {
        0 => "PASS",
        2 => "DROP",
        7 => "REDIRECT",
        _ => "OTHER",
    };
    let reason = Reason::try_from(e.reason).map_or("unknown", Reason::as_str);
    format!(
        "{h:02}:{m:02}:{s:02}.{micros:06} {:<16} {:<13} {proto:<5} {} > {} {verdict:<8} {reason} ({} B)",
        ifname(e.ifindex).unwrap_or_else(|| format!("ifindex {}", e.ifindex)),
        if e.program == PROGRAM_FROM_POD { "from_pod" } else { "from_underlay" },
        endpoint(e.src, e.sport),
        endpoint(e.dst, e.dport),
        e.len
    )
}

/// The monitor's control and event maps.
pub struct Monitor {
    control: Array<MapData, MonitorControl>,
    events: RingBuf<MapData>,
    filter: MonitorControl,
}

impl Monitor {
    pub fn open(dir: &Path, filter: Option<(Ipv4Addr, u8)>) -> Result<Self, Error> {
        let (addr, len) = filter.unwrap_or((Ipv4Addr::UNSPECIFIED, 0));
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        let filter = MonitorControl { until_ns: 0, addr: addr.octets(), mask: mask.to_be_bytes() };
        Ok(Self {
            control: bpffs::open_pinned_as(dir, MONITOR)?,
            events: bpffs::open_pinned_as(dir, EVENTS)?,
            filter,
        })
    }

    /// Keep the programs reporting for `lease` more (they stop by themselves after it).
    pub fn renew(&mut self, now_ns: u64, lease: Duration) -> Result<(), Error> {
        let control = MonitorControl { until_ns: now_ns + lease.as_nanos() as u64, ..self.filter };
        self.control.set(0, control, 0).map_err(|source| Error::WriteMap { name: MONITOR, source })
    }

    pub fn stop(&mut self) {
        let _ = self.control.set(0, MonitorControl::default(), 0);
    }

    /// Every event waiting in the ring buffer.
    pub fn drain(&mut self) -> Vec<MonitorEvent> {
        let mut events = Vec::new();
        while let Some(item) = self.events.next() {
            if item.len() >= std::mem::size_of::<MonitorEvent>() {
                // SAFETY: the programs write whole MonitorEvents; read_unaligned copies one out.
                events.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<MonitorEvent>()) });
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use fastpath_common::flow::{FlowKey, FlowState, FlowValue};

    use super::*;

    const NODE_IP: [u8; 4] = [10, 101, 14, 50];
    const POD_MAC: [u8; 6] = [0x86, 0x79, 0x13, 0x2b, 0x26, 0x1d];

    fn node() -> NodeConfig {
        NodeConfig {
            underlay_ifindex: 2,
            node_ip: NODE_IP,
            node_mac: [2; 6],
            _pad: [0; 2],
            underlay_mtu: 1500,
            flags: fastpath_common::maps::NODE_F_READY | fastpath_common::maps::NODE_F_VXLAN,
            flow_idle_secs: 60,
            _reserved: 0,
            vxlan: fastpath_common::vxlan::VxlanConfig {
                ifindex: 9,
                vni: 4096,
                mac: [0x66, 0, 10, 101, 14, 50],
                port: 4789,
                port_min: 32768,
                port_max: 60999,
                ttl: 64,
                ..Default::default()
            },
        }
    }

    fn route(addr: Ipv4Addr) -> Option<RouteValue> {
        match addr.octets() {
            [10, 244, 40, 36] => Some(RouteValue::local(5, POD_MAC)),
            [10, 244, 40, 37] => Some(RouteValue::local(6, [1; 6])),
            [10, 244, 40, _] => Some(RouteValue::blackhole()),
            [10, 244, 166, 128..=191] => Some(RouteValue::remote([10, 101, 14, 51], true)),
            [10, 244, 7, 0..=63] => Some(RouteValue::vxlan([10, 101, 14, 52], [0x66, 0, 10, 101, 14, 52])),
            _ => None,
        }
    }

    fn ask(src: &str, dst: &str) -> Question {
        Question {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            arp: false,
            from_underlay: None,
            vxlan: false,
            ttl: 64,
            size: 84,
            df: true,
        }
    }

    fn explained(q: Question) -> String {
        let is_peer = |a: Ipv4Addr| a == Ipv4Addr::new(10, 101, 14, 51);
        let ifname = |i: u32| {
            Some(match i {
                2 => "eth0".to_string(),
                5 => "cali0f293e89ca7".to_string(),
                9 => "vxlan.calico".to_string(),
                i => format!("cali{i}"),
            })
        };
        explain(&q, &Tables { node: node(), route: &route, is_peer: &is_peer, ifname: &ifname, flows: &[] })
    }

    #[test]
    fn under_trust_kernel_only_approved_flows_are_fast() {
        let is_peer = |_: Ipv4Addr| true;
        let ifname = |i: u32| Some(format!("if{i}"));
        let trusting =
            NodeConfig { flags: node().flags | fastpath_common::maps::NODE_F_TRUST_KERNEL, ..node() };
        let q = ask("10.244.40.36", "10.244.166.150");
        let key = FlowKey::new(q.src.octets(), q.dst.octets(), 6, (40000, 80));
        let with = |state| {
            let flows = [Flow { key, value: FlowValue::new(state, 0) }];
            explain(
                &q,
                &Tables { node: trusting, route: &route, is_peer: &is_peer, ifname: &ifname, flows: &flows },
            )
        };
        let none = explain(
            &q,
            &Tables { node: trusting, route: &route, is_peer: &is_peer, ifname: &ifname, flows: &[] },
        );
        assert!(none.starts_with("kernel first (passed_flow_pending), until the kernel forwards"), "{none}");
        assert!(none.contains("holds no flow from 10.244.40.36 to 10.244.166.150"), "{none}");
        let approved = with(FlowState::Approved);
        assert!(approved.starts_with("IPIP to 10.101.14.51 via if2"), "{approved}");
        assert!(approved.contains("for the 1 approved flows"), "{approved}");
        assert!(approved.contains("tcp 10.244.40.36:40000 → 10.244.166.150:80 is approved"), "{approved}");
        let owned = with(FlowState::KernelOwned);
        assert!(owned.starts_with("kernel first"), "{owned}");
        assert!(owned.contains("is kernel-owned"), "{owned}");
        assert!(explained(q).contains("--trust routes"));
    }

    #[test]
    fn every_kind_of_decision_in_words() {
        let first = |q| explained(q).lines().next().unwrap().to_string();
        assert_eq!(
            first(ask("10.244.40.37", "10.244.40.36")),
            "redirect to pod on cali0f293e89ca7 (ifindex 5, MAC 86:79:13:2b:26:1d)"
        );
        assert_eq!(
            first(ask("10.244.40.36", "10.244.166.150")),
            "IPIP to 10.101.14.51 via eth0 (outer 10.101.14.50 → 10.101.14.51, protocol 4)"
        );
        assert!(first(ask("10.244.40.36", "8.8.8.8")).starts_with("kernel: no fastpath route"));
        assert!(first(ask("10.244.40.36", "10.244.40.99")).starts_with("drop: no pod"));
        assert!(first(ask("10.244.166.150", "10.244.40.36")).starts_with("drop: spoofed source"));
        assert!(first(Question { arp: true, ..ask("10.244.40.36", "169.254.1.1") })
            .starts_with("ARP reply: 169.254.1.1 is at ee:ee:ee:ee:ee:ee"));
        assert!(first(Question { ttl: 1, ..ask("10.244.40.36", "10.244.166.150") })
            .starts_with("kernel: TTL expiring"));
        assert_eq!(
            first(Question { size: 1500, ..ask("10.244.40.36", "10.244.166.150") }),
            "ICMP fragmentation needed (mtu = 1480) sent back to 10.244.40.36"
        );
        let decap = Question {
            from_underlay: Some("10.101.14.51".parse().unwrap()),
            ..ask("10.244.166.150", "10.244.40.36")
        };
        assert!(first(decap).starts_with("decapsulate, then redirect to pod on cali0f293e89ca7"));
        let rogue = Question {
            from_underlay: Some("10.101.14.60".parse().unwrap()),
            ..ask("10.244.166.150", "10.244.40.36")
        };
        assert!(first(rogue).starts_with("drop: a tunnel from an unknown node"));
    }

    #[test]
    fn vxlan_decisions_in_words() {
        let explained_with = |q: Question, node: NodeConfig| {
            let is_peer = |a: Ipv4Addr| a == Ipv4Addr::new(10, 101, 14, 52);
            let ifname = |i: u32| Some(if i == 9 { "vxlan.calico".to_string() } else { format!("if{i}") });
            explain(&q, &Tables { node, route: &route, is_peer: &is_peer, ifname: &ifname, flows: &[] })
        };
        let out = explained(ask("10.244.40.36", "10.244.7.9"));
        assert!(
            out.starts_with("VXLAN to 10.101.14.52 via eth0 (outer 10.101.14.50 → 10.101.14.52, UDP 4789, VNI 4096, inner MAC 66:00:0a:65:0e:34)"),
            "{out}"
        );
        assert!(out.contains("is in a block routed via node 10.101.14.52, with VXLAN"), "{out}");
        assert!(out.contains("as vxlan.calico would send it"), "{out}");
        let big = explained(Question { size: 1451, ..ask("10.244.40.36", "10.244.7.9") });
        assert!(big.starts_with("ICMP fragmentation needed (mtu = 1450)"), "{big}");
        let arriving = Question {
            from_underlay: Some("10.101.14.52".parse().unwrap()),
            vxlan: true,
            ..ask("10.244.7.9", "10.244.40.36")
        };
        let out = explained_with(arriving, node());
        assert!(out.starts_with("decapsulate, then redirect to pod on if5"), "{out}");
        assert!(out.contains("VXLAN from 10.101.14.52, a known node"), "{out}");
        let stranger = Question { from_underlay: Some("10.101.14.60".parse().unwrap()), ..arriving };
        assert!(explained_with(stranger, node()).starts_with("drop: a tunnel from an unknown node"));
        let without = NodeConfig { flags: fastpath_common::maps::NODE_F_READY, ..node() };
        assert!(explained_with(arriving, without).starts_with("kernel: not a tunnel the programs take apart"));
        assert!(explained_with(ask("10.244.40.36", "10.244.7.9"), without)
            .starts_with("kernel: the route is the kernel's"));
    }

    #[test]
    fn the_reasons_follow_the_verdict() {
        let text = explained(ask("10.244.40.36", "8.8.8.8"));
        assert!(text.lines().skip(1).all(|l| l.starts_with("  because ")), "{text}");
        assert!(text.lines().any(|l| l.contains("no fastpath entry")), "{text}");
    }

    #[test]
    fn monitor_lines_read_like_a_capture() {
        let e = MonitorEvent {
            time_ns: 0,
            ifindex: 5,
            program: PROGRAM_FROM_POD,
            src: [10, 244, 40, 36],
            dst: [10, 244, 166, 150],
            sport: 40000,
            dport: 5201,
            protocol: 6,
            _pad: [0; 3],
            verdict: 7,
            reason: Reason::Encapsulated.index(),
            len: 1514,
        };
        let line = monitor_line(&e, 3_723_000_001_000, &|_| Some("cali1".into()));
        assert_eq!(line, "01:02:03.000001 cali1            from_pod      TCP   10.244.40.36:40000 > 10.244.166.150:5201 REDIRECT encapsulated (1514 B)");
    }

    #[test]
    fn uptimes_in_words() {
        assert_eq!(duration_words(59_000), "59s");
        assert_eq!(duration_words(83_000), "1m23s");
        assert_eq!(duration_words(7_300_000), "2h1m");
    }
}
