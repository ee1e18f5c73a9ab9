//! The inspection commands. All of them read the pinned maps, so they work from a second
//! process (or container) while the daemon runs.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    time::Duration,
};

use aya::{
    maps::{Array, HashMap, MapData, RingBuf},
    programs::links::{FdLink, PinnedLink},
};
use fastpath_common::{
    maps::{
        AgentInfo, Endpoint, MonitorControl, MonitorEvent, Node6Config, NodeConfig, PathMtu, AGENT,
        AGENT_F_LEGACY_TC, AGENT_F_READY, ENDPOINTS6, EVENTS, MONITOR, NODE, NODE6, PATH_MTU, PATH_MTU6,
        TUNNEL_PEERS, TUNNEL_PEERS6,
    },
    route::RouteKind,
    tunnel::Tunnel,
    vxlan::VxlanConfig,
    Reason,
};

use crate::{
    clock::{monotonic_ns, unix_ms},
    commands::show,
    dataplane::{
        bpffs,
        fill::{self, FILLED_MAPS},
        loader, pins, tables,
    },
    modes::{EncapMode, Trust},
    output::{self, Format},
    text::{mac_string, unpadded},
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

/// `fastpath status -o json|yaml`: the daemon, its node, its maps and its attachments.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// Always true: without a running daemon `status` fails (exit code 1).
    pub running: bool,
    /// The maps are synced and every matching interface is attached.
    pub ready: bool,
    /// The daemon's version.
    pub version: String,
    pub pid: u32,
    pub uptime_seconds: u64,
    /// `--ipip`: follow, always, cross-subnet or never.
    pub ipip_mode: String,
    /// `--vxlan`: follow, always, cross-subnet or never.
    pub vxlan_mode: String,
    /// `--trust`: kernel or routes.
    pub trust: Trust,
    /// How the programs attach: tcx or legacy-tc.
    pub hook: String,
    /// The underlay interface's name.
    pub underlay: String,
    pub underlay_ifindex: u32,
    pub node_ip: Ipv4Addr,
    pub node_mac: String,
    pub underlay_mtu: u32,
    /// The largest inner packet IPIP carries (the underlay MTU less its header).
    pub ipip_mtu: u32,
    /// The largest inner packet VXLAN carries (the underlay MTU less its 50 bytes).
    pub vxlan_mtu: u32,
    /// The `vxlan.calico` device the programs stand in for; `null` when VXLAN is the kernel's.
    pub vxlan: Option<VxlanStatus>,
    /// The node's IPv6 side; `null` until it has an IPv6 address on the underlay (IPv6 between
    /// nodes is the kernel's until then).
    pub ipv6: Option<Ipv6Status>,
    /// Map name → its fill.
    pub maps: std::collections::BTreeMap<String, MapFill>,
    /// Pods and prefixes the kernel carries for a reason of its configuration.
    pub kernel_path: Vec<KernelPath>,
    /// Path MTUs routers taught the programs that still hold.
    pub path_mtu: Vec<PathMtuRow>,
    /// The pinned links of the programs (empty under legacy tc).
    pub attached: Vec<AttachedRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ipv6Status {
    /// This node's IPv6 address on the underlay.
    pub node_ip: Ipv6Addr,
    /// The `vxlan-v6.calico` device the programs stand in for; `null` when IPv6 VXLAN is the
    /// kernel's.
    pub vxlan: Option<VxlanStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VxlanStatus {
    pub iface: String,
    pub ifindex: u32,
    pub vni: u32,
    pub port: u16,
    pub mac: String,
    /// The UDP source ports, lowest and highest.
    pub source_ports: [u16; 2],
    /// The largest inner packet VXLAN carries.
    pub mtu: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MapFill {
    pub entries: u64,
    pub max: u64,
    /// No further entry fits: what does not is the kernel's to route.
    pub full: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelPath {
    pub what: String,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PathMtuRow {
    /// The node's address on the underlay, either family.
    pub node: IpAddr,
    pub mtu: u32,
    pub expires_in_seconds: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttachedRow {
    pub program: String,
    pub ifindex: u32,
    pub iface: Option<String>,
    pub prog_id: u32,
    pub link_id: u32,
    /// `tcx ingress` or `tcx egress`.
    pub attach: String,
}

/// The status of the daemon running on `dir`.
pub fn read_status(dir: &Path, ifname: impl Fn(u32) -> Option<String>) -> Result<Status, Error> {
    let agent = running_agent(dir)?;
    let node: NodeConfig = bpffs::read_pinned_slot(dir, NODE)?;
    let entries = tables::route_entries(&tables::pinned_routes(dir)?)?;
    let mode = |code| EncapMode::from_code(code).map_or("unknown", EncapMode::name).to_string();
    let maps = fill::read(dir)?
        .into_iter()
        .map(|f| {
            let value = MapFill { entries: f.entries as u64, max: u64::from(f.capacity), full: f.is_full() };
            (f.name.to_string(), value)
        })
        .collect();
    let device = |v: VxlanConfig, mtu: u32| VxlanStatus {
        iface: ifname(v.ifindex).unwrap_or_else(|| format!("ifindex {}", v.ifindex)),
        ifindex: v.ifindex,
        vni: v.vni,
        port: v.port,
        mac: mac_string(v.mac),
        source_ports: [v.port_min, v.port_max],
        mtu,
    };
    let vxlan = node.has_vxlan().then(|| device(node.vxlan, node.tunnel_mtu(&Tunnel::Vxlan)));
    let node6: Node6Config = bpffs::read_pinned_slot(dir, NODE6).unwrap_or_default();
    let ipv6 = node6.ready().then(|| Ipv6Status {
        node_ip: Ipv6Addr::from(node6.node_ip),
        vxlan: node6.has_vxlan().then(|| device(node6.vxlan, node6.vxlan_mtu)),
    });
    Ok(Status {
        running: true,
        ready: agent.flags & AGENT_F_READY != 0,
        version: unpadded(&agent.version),
        pid: agent.pid,
        uptime_seconds: unix_ms().saturating_sub(agent.started_unix_ms) / 1000,
        ipip_mode: mode(agent.ipip_mode),
        vxlan_mode: mode(agent.vxlan_mode),
        trust: Trust::from_agent_flags(agent.flags),
        hook: if agent.flags & AGENT_F_LEGACY_TC != 0 { "legacy-tc" } else { "tcx" }.to_string(),
        underlay: ifname(node.underlay_ifindex)
            .unwrap_or_else(|| format!("ifindex {}", node.underlay_ifindex)),
        underlay_ifindex: node.underlay_ifindex,
        node_ip: Ipv4Addr::from(node.node_ip),
        node_mac: mac_string(node.node_mac),
        underlay_mtu: node.underlay_mtu,
        ipip_mtu: node.tunnel_mtu(&Tunnel::Ipip),
        vxlan_mtu: node.tunnel_mtu(&Tunnel::Vxlan),
        vxlan,
        ipv6,
        maps,
        kernel_path: kernel_path(&entries, &ifname)
            .into_iter()
            .map(|(what, why)| KernelPath { what, why })
            .collect(),
        path_mtu: path_mtus(dir)
            .into_iter()
            .map(|(node, mtu, left)| PathMtuRow { node, mtu, expires_in_seconds: left })
            .collect(),
        attached: attached(dir, &ifname)
            .into_iter()
            .map(|l| AttachedRow {
                attach: loader::attach_point(&l.program).to_string(),
                program: l.program,
                ifindex: l.ifindex,
                iface: l.iface,
                prog_id: l.prog_id,
                link_id: l.link_id,
            })
            .collect(),
    })
}

/// `fastpath status`.
pub fn status(dir: &Path, format: Format, ifname: impl Fn(u32) -> Option<String>) -> Result<String, Error> {
    output::render(&read_status(dir, ifname)?, format, status_text)
}

/// `fastpath status --brief`: one line, and whether the daemon is ready.
pub fn status_brief(dir: &Path) -> (String, bool) {
    match running_agent(dir) {
        Ok(agent) if agent.flags & AGENT_F_READY != 0 => {
            (format!("ready (fastpath {}, pid {})", unpadded(&agent.version), agent.pid), true)
        }
        Ok(agent) => (
            format!(
                "not ready: syncing or an interface is not attached (fastpath {}, pid {})",
                unpadded(&agent.version),
                agent.pid
            ),
            false,
        ),
        Err(e) => (format!("not running: {}", e.chain()), false),
    }
}

fn status_text(st: &Status) -> String {
    let mut out = format!(
        "fastpath {} (pid {}), up {}, {}\n",
        st.version,
        st.pid,
        duration_words(st.uptime_seconds * 1000),
        if st.ready { "ready" } else { "NOT READY: syncing or an interface is not attached" }
    );
    let trust_words = match st.trust {
        Trust::Kernel => "trust kernel (a flow direction takes the fast path while the kernel's conntrack holds it, translated as it says)".to_string(),
        Trust::Routes => "trust routes (every packet the routes allow)".to_string(),
    };
    let _ = writeln!(out, "mode:      IPIP {}, VXLAN {}, {trust_words}", st.ipip_mode, st.vxlan_mode);
    let _ = writeln!(
        out,
        "underlay:  {} (ifindex {}), node {}, MAC {}, MTU {} (IPIP {}, VXLAN {})",
        st.underlay, st.underlay_ifindex, st.node_ip, st.node_mac, st.underlay_mtu, st.ipip_mtu, st.vxlan_mtu,
    );
    match &st.vxlan {
        Some(v) => {
            let _ = writeln!(
                out,
                "vxlan:     {} (ifindex {}), VNI {}, port {}, MAC {}, source ports {}-{}",
                v.iface, v.ifindex, v.vni, v.port, v.mac, v.source_ports[0], v.source_ports[1]
            );
        }
        None => {
            let _ = writeln!(out, "vxlan:     none the programs stand in for (VXLAN is the kernel's)");
        }
    }
    let ipv6 = match &st.ipv6 {
        None => "no IPv6 address on the underlay (IPv6 between nodes is the kernel's)".to_string(),
        Some(Ipv6Status { node_ip, vxlan: None }) => {
            format!(
                "node {node_ip}, no vxlan-v6.calico the programs stand in for (IPv6 VXLAN is the kernel's)"
            )
        }
        Some(Ipv6Status { node_ip, vxlan: Some(v) }) => format!(
            "node {node_ip}, {} (ifindex {}), VNI {}, port {}, MAC {}, MTU {}",
            v.iface, v.ifindex, v.vni, v.port, v.mac, v.mtu
        ),
    };
    let _ = writeln!(out, "ipv6:      {ipv6}");
    let fill: Vec<String> = FILLED_MAPS
        .iter()
        .filter_map(|name| {
            let m = st.maps.get(*name)?;
            Some(format!("{name} {}/{}{}", m.entries, m.max, if m.full { " FULL" } else { "" }))
        })
        .collect();
    let _ = writeln!(out, "maps:      {}", fill.join(", "));
    if !st.kernel_path.is_empty() {
        let words: Vec<String> = st.kernel_path.iter().map(|k| format!("{} ({})", k.what, k.why)).collect();
        let _ = writeln!(out, "kernel:    {}", words.join("; "));
    }
    if !st.path_mtu.is_empty() {
        let words: Vec<String> = st
            .path_mtu
            .iter()
            .map(|p| format!("to {} {} ({}s left)", p.node, p.mtu, p.expires_in_seconds))
            .collect();
        let _ = writeln!(out, "path MTU:  {}", words.join("; "));
    }
    if st.hook == "legacy-tc" {
        let _ = writeln!(
            out,
            "attached:  as legacy tc filters (clsact, priority {}), which are not pinned links: `tc filter show dev IFACE ingress` lists them",
            crate::dataplane::legacy_tc::PRIORITY
        );
        return out;
    }
    let _ = writeln!(out, "attached:  {} links", st.attached.len());
    let _ = writeln!(
        out,
        "  {:<16} {:>7}  {:<14} {:>7} {:>7}  ATTACH",
        "INTERFACE", "IFINDEX", "PROGRAM", "PROG ID", "LINK ID"
    );
    for l in &st.attached {
        let _ = writeln!(
            out,
            "  {:<16} {:>7}  {:<14} {:>7} {:>7}  {}",
            l.iface.as_deref().unwrap_or("(gone)"),
            l.ifindex,
            l.program,
            l.prog_id,
            l.link_id,
            l.attach
        );
    }
    out
}

/// `fastpath version -o json|yaml`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Version {
    /// This binary's version.
    pub client: String,
    /// The git revision this binary was built from.
    pub revision: String,
    /// The running daemon's, from its pinned agent slot: `null` when none runs on the folder.
    pub daemon: Option<DaemonVersion>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DaemonVersion {
    pub version: String,
    pub pid: u32,
    /// The layout of the maps it pinned.
    pub layout: u32,
}

/// `fastpath version`.
pub fn version(dir: &Path, format: Format) -> Result<String, Error> {
    let daemon = running_agent(dir).ok().map(|a| DaemonVersion {
        version: unpadded(&a.version),
        pid: a.pid,
        layout: a.layout_version,
    });
    let v = Version {
        client: env!("CARGO_PKG_VERSION").to_string(),
        revision: crate::daemon::metrics::REVISION.to_string(),
        daemon,
    };
    output::render(&v, format, |v| {
        let daemon = match &v.daemon {
            Some(d) => format!("fastpath {} (pid {}, map layout {})", d.version, d.pid, d.layout),
            None => format!("not running on {}", dir.display()),
        };
        format!("client:  fastpath {} (revision {})\ndaemon:  {daemon}\n", v.client, v.revision)
    })
}

/// The entries the kernel carries for a reason of its configuration (classic tc, ip rules), in
/// words: (which pod or prefix, why).
fn kernel_path(
    entries: &[(crate::model::route::Prefix, fastpath_common::route::RouteValue)],
    ifname: &impl Fn(u32) -> Option<String>,
) -> Vec<(String, String)> {
    entries
        .iter()
        .filter(|(_, v)| {
            matches!(
                v.kernel_reason(),
                Reason::PassEndpointTc | Reason::PassPolicyRoute | Reason::PassMapOverflow
            )
        })
        .filter(|(_, v)| v.kind == RouteKind::Kernel as u32)
        .map(|((len, addr), v)| {
            let what = match (len, v.ifindex) {
                (32, 0) => addr.to_string(),
                (32, i) => format!("{addr} on {}", ifname(i).unwrap_or_else(|| format!("ifindex {i}"))),
                _ => format!("{addr}/{len}"),
            };
            (what, show::kernel_why(v).unwrap_or("the kernel's route").to_string())
        })
        .collect()
}

/// The path MTUs routers taught the programs that still hold, toward nodes' IPv4 addresses
/// (`FP_PATH_MTU`) and then their IPv6 ones (`FP_PATH_MTU6`, absent from an older pin folder):
/// (node, MTU, seconds left).
fn path_mtus(dir: &Path) -> Vec<(IpAddr, u32, u64)> {
    let now = monotonic_ns();
    let mut held = path_mtus_in::<[u8; 4]>(dir, PATH_MTU, now);
    held.extend(path_mtus_in::<[u8; 16]>(dir, PATH_MTU6, now));
    held.sort();
    held
}

/// [`path_mtus`] of one family's map `name` (none when it is not pinned), node addresses `A`.
fn path_mtus_in<A: aya::Pod + Into<IpAddr>>(
    dir: &Path,
    name: &'static str,
    now: u64,
) -> Vec<(IpAddr, u32, u64)> {
    let Ok(map) = bpffs::open_pinned_as::<HashMap<MapData, A, PathMtu>>(dir, name) else { return Vec::new() };
    map.iter()
        .filter_map(Result::ok)
        .filter(|(_, p)| p.expires_ns > now)
        .map(|(node, p)| (node.into(), p.mtu, (p.expires_ns - now) / 1_000_000_000))
        .collect()
}

/// `fastpath endpoints`: the local pods, from the route table, then their IPv6 addresses, from
/// `FP_ENDPOINTS6` (an address the daemon leaves to the kernel has no entry there).
pub fn endpoints(
    dir: &Path,
    format: Format,
    ifname: impl Fn(u32) -> Option<String>,
) -> Result<String, Error> {
    let mut rows: Vec<show::RouteRow> = tables::route_entries(&tables::pinned_routes(dir)?)?
        .iter()
        .filter(|(_, v)| {
            v.kind == RouteKind::LocalEndpoint as u32
                || (v.kind == RouteKind::Kernel as u32 && v.ifindex != 0)
        })
        .map(|(prefix, value)| show::row(*prefix, value, &ifname))
        .collect();
    let ipv6: HashMap<MapData, [u8; 16], Endpoint> = bpffs::open_pinned_as(dir, ENDPOINTS6)?;
    let mut ipv6: Vec<(Ipv6Addr, Endpoint)> =
        ipv6.iter().filter_map(Result::ok).map(|(addr, e)| (Ipv6Addr::from(addr), e)).collect();
    ipv6.sort_by_key(|(addr, _)| *addr);
    rows.extend(ipv6.iter().map(|(addr, e)| show::endpoint6_row(*addr, e, &ifname)));
    output::render(&rows, format, |rows| {
        let mut out = format!("{:<26} {:<22} {:<18} {}\n", "POD", "INTERFACE", "MAC", "STATE");
        for r in rows {
            let iface = format!("{} ({})", r.iface.as_deref().unwrap_or("?"), r.ifindex.unwrap_or(0));
            let (mac, state) = match (&r.mac, &r.why) {
                (Some(mac), _) => (mac.clone(), "fast path".to_string()),
                (None, why) => {
                    ("-".into(), format!("kernel ({})", why.as_deref().unwrap_or("MAC not known yet")))
                }
            };
            let pod = r.prefix.trim_end_matches("/32").trim_end_matches("/128");
            let _ = writeln!(out, "{pod:<26} {iface:<22} {mac:<18} {state}");
        }
        out
    })
}

/// A node whose tunnels the programs accept, as `peers -o json|yaml` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerRow {
    pub node: IpAddr,
    pub blocks: Vec<PeerBlock>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerBlock {
    /// `ADDR/LEN`.
    pub block: String,
    /// `ipip`, `vxlan` or `none`.
    pub encap: String,
    /// For VXLAN: the node's VTEP MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac: Option<String>,
}

/// `fastpath peers`: the nodes whose tunnels are accepted (IPv4's, then IPv6's), with the blocks
/// routed to each and how (for VXLAN, to which VTEP MAC).
pub fn peers(dir: &Path, format: Format) -> Result<String, Error> {
    let map: HashMap<MapData, [u8; 4], u32> = bpffs::open_pinned_as(dir, TUNNEL_PEERS)?;
    let mut nodes: Vec<Ipv4Addr> = map.keys().filter_map(Result::ok).map(Ipv4Addr::from).collect();
    nodes.sort();
    let map6: HashMap<MapData, [u8; 16], u32> = bpffs::open_pinned_as(dir, TUNNEL_PEERS6)?;
    let mut nodes6: Vec<Ipv6Addr> = map6.keys().filter_map(Result::ok).map(Ipv6Addr::from).collect();
    nodes6.sort();
    let routes = tables::route_entries(&tables::pinned_routes(dir)?)?;
    let routes6 = tables::pinned_route6_entries(dir)?;
    let rows6 = nodes6.into_iter().map(|node| PeerRow {
        node: node.into(),
        blocks: routes6
            .iter()
            .filter(|(_, v)| v.kind == RouteKind::RemoteBlock as u32 && Ipv6Addr::from(v.next_hop) == node)
            .map(|(prefix, v)| {
                let row = show::row6(*prefix, v);
                PeerBlock { block: row.prefix, encap: row.encap.unwrap_or_default(), vtep_mac: row.mac }
            })
            .collect(),
    });
    let rows: Vec<PeerRow> = nodes
        .into_iter()
        .map(|node| PeerRow {
            node: node.into(),
            blocks: routes
                .iter()
                .filter(|(_, v)| {
                    v.kind == RouteKind::RemoteBlock as u32 && Ipv4Addr::from(v.next_hop) == node
                })
                .map(|((len, addr), v)| PeerBlock {
                    block: format!("{addr}/{len}"),
                    encap: v.encap_name().to_string(),
                    vtep_mac: show::vtep_mac(v),
                })
                .collect(),
        })
        .chain(rows6)
        .collect();
    output::render(&rows, format, |rows| {
        let width = rows.iter().map(|r| r.node.to_string().len()).max().unwrap_or(0).max(16);
        let mut out = format!("{:<width$} {}\n", "NODE", "BLOCKS (ENCAP)");
        for r in rows {
            let blocks: Vec<String> = r
                .blocks
                .iter()
                .map(|b| match &b.vtep_mac {
                    Some(mac) => format!("{} ({}, VTEP {mac})", b.block, b.encap),
                    None => format!("{} ({})", b.block, b.encap),
                })
                .collect();
            let _ = writeln!(out, "{:<width$} {}", r.node.to_string(), blocks.join(", "));
        }
        out
    })
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

/// The monitor's control and event maps.
pub struct Monitor {
    control: Array<MapData, MonitorControl>,
    events: RingBuf<MapData>,
    filter: MonitorControl,
}

impl Monitor {
    /// `filter`: only packets from or to this prefix (IPv4 or IPv6), or every packet.
    pub fn open(dir: &Path, filter: Option<(IpAddr, u8)>) -> Result<Self, Error> {
        let filter = match filter {
            // The programs compare IPv6's form; an IPv4 prefix is its IPv4-mapped one.
            Some((IpAddr::V4(a), len)) => MonitorControl::filter(a.to_ipv6_mapped().octets(), 96 + len),
            Some((IpAddr::V6(a), len)) => MonitorControl::filter(a.octets(), len),
            None => MonitorControl::default(),
        };
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
    use super::*;

    #[test]
    fn uptimes_in_words() {
        assert_eq!(duration_words(59_000), "59s");
        assert_eq!(duration_words(83_000), "1m23s");
        assert_eq!(duration_words(7_300_000), "2h1m");
    }
}
