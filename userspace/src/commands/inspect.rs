//! The inspection commands. All of them read the pinned maps, so they work from a second
//! process (or container) while the daemon runs.

use std::{fmt::Write as _, net::Ipv4Addr, path::Path, time::Duration};

use aya::{
    maps::{Array, HashMap, MapData, RingBuf},
    programs::links::{FdLink, PinnedLink},
};
use fastpath_common::{
    maps::{
        AgentInfo, MonitorControl, MonitorEvent, NodeConfig, PathMtu, AGENT, AGENT_F_LEGACY_TC,
        AGENT_F_READY, AGENT_F_TRUST_KERNEL, EVENTS, MONITOR, NODE, PATH_MTU, PROGRAM_FROM_POD, TUNNEL_PEERS,
    },
    route::RouteKind,
    tunnel::Tunnel,
    Reason,
};

use crate::{
    clock::{monotonic_ns, unix_ms},
    commands::show::{self, mac_string},
    daemon::encap::EncapMode,
    dataplane::{bpffs, fill, loader, pins, tables},
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
    let entries = tables::route_entries(&tables::pinned_routes(dir)?)?;
    let kernel_path = kernel_path(&entries, &ifname);
    let path_mtus = path_mtus(dir);
    let fills = fill::read(dir)?;
    let links = attached(dir, &ifname);
    let trust = if agent.flags & AGENT_F_TRUST_KERNEL != 0 { "kernel" } else { "routes" };
    let legacy_tc = agent.flags & AGENT_F_LEGACY_TC != 0;
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
        let kernel_path: Vec<String> = kernel_path
            .iter()
            .map(|(what, why)| {
                format!(r#"{{"what":{},"why":{}}}"#, show::json_string(what), show::json_string(why))
            })
            .collect();
        let path_mtus: Vec<String> = path_mtus
            .iter()
            .map(|(node, mtu, left)| {
                format!(r#"{{"node":"{node}","mtu":{mtu},"expires_in_seconds":{left}}}"#)
            })
            .collect();
        return Ok(format!(
            r#"{{"running":true,"ready":{ready},"version":{},"pid":{},"uptime_seconds":{},"ipip":"{}","vxlan_mode":"{}","trust":"{trust}","hook":"{}","underlay":{},"underlay_ifindex":{},"node_ip":"{}","node_mac":"{}","underlay_mtu":{},"tunnel_mtu":{ipip_mtu},"vxlan":{vxlan},"maps":{{{}}},"kernel_path":[{}],"path_mtu":[{}],"attached":[{}]}}"#,
            show::json_string(&show::unpadded(&agent.version)),
            agent.pid,
            uptime / 1000,
            mode(agent.ipip_mode),
            mode(agent.vxlan_mode),
            if legacy_tc { "legacy-tc" } else { "tcx" },
            show::json_string(&underlay),
            node.underlay_ifindex,
            Ipv4Addr::from(node.node_ip),
            mac_string(node.node_mac),
            node.underlay_mtu,
            fills
                .iter()
                .map(|f| format!(
                    r#""{}":{{"entries":{},"max":{},"full":{}}}"#,
                    f.name,
                    f.entries,
                    f.capacity,
                    f.is_full()
                ))
                .collect::<Vec<_>>()
                .join(","),
            kernel_path.join(","),
            path_mtus.join(","),
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
        "kernel" => "trust kernel (a flow direction takes the fast path while the kernel's conntrack holds it, translated as it says)".to_string(),
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
    let _ = writeln!(out, "maps:      {}", fill::words(&fills));
    if !kernel_path.is_empty() {
        let words: Vec<String> = kernel_path.iter().map(|(what, why)| format!("{what} ({why})")).collect();
        let _ = writeln!(out, "kernel:    {}", words.join("; "));
    }
    if !path_mtus.is_empty() {
        let words: Vec<String> =
            path_mtus.iter().map(|(node, mtu, left)| format!("to {node} {mtu} ({left}s left)")).collect();
        let _ = writeln!(out, "path MTU:  {}", words.join("; "));
    }
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

/// The entries the kernel carries for a reason of its configuration (classic tc, ip rules) or
/// for want of room in the route map, in words: (which pod or prefix, why).
fn kernel_path(
    entries: &[(crate::daemon::routes::Prefix, fastpath_common::route::RouteValue)],
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

/// The path MTUs routers taught the programs that still hold: (node, MTU, seconds left).
fn path_mtus(dir: &Path) -> Vec<(Ipv4Addr, u32, u64)> {
    let Ok(map) = bpffs::open_pinned_as::<HashMap<MapData, [u8; 4], PathMtu>>(dir, PATH_MTU) else {
        return Vec::new();
    };
    let now = monotonic_ns();
    let mut held: Vec<(Ipv4Addr, u32, u64)> = map
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, p)| p.expires_ns > now)
        .map(|(node, p)| (Ipv4Addr::from(node), p.mtu, (p.expires_ns - now) / 1_000_000_000))
        .collect();
    held.sort();
    held
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
        let (mac, state) = match (r.mac, r.why) {
            (Some(mac), _) => (mac, "fast path".to_string()),
            (None, why) => ("-".into(), format!("kernel ({})", why.unwrap_or("MAC not known yet"))),
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
                    .map(|(b, encap, mac)| match mac {
                        Some(mac) => {
                            format!(
                                r#"{{"block":"{b}","encap":"{encap}","vtep_mac":{}}}"#,
                                show::json_string(mac)
                            )
                        }
                        None => format!(r#"{{"block":"{b}","encap":"{encap}"}}"#),
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
    use super::*;

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
