//! `fastpath verify`: every map against what the kernel says now. The comparisons are pure;
//! `run` gathers both sides.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::Display,
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
};

use aya::maps::{HashMap as BpfHashMap, MapData};
use fastpath_common::{
    maps::{
        AgentInfo, Endpoint, Node6Config, NodeConfig, AGENT, AGENT_F_LEGACY_TC, ENDPOINTS, ENDPOINTS6, NODE,
        NODE6, TUNNEL_PEERS, TUNNEL_PEERS6,
    },
    route::{endpoint_of, RouteKind, RouteValue},
    route6::RouteValue6,
    tunnel::Tunnel,
};

use crate::{
    commands::show::{self, kind_name},
    daemon::{
        endpoints6,
        netlink::Netlink,
        picture,
        routes::{self, Mapping},
        routes6,
    },
    dataplane::{bpffs, loader, pins, tables},
    model::route::{Prefix, Prefix6},
    modes::{EncapMode, Modes, Trust},
    text::{mac_string, unpadded},
    Error,
};

/// A route entry in a few words.
pub fn describe(value: &RouteValue) -> String {
    match RouteKind::try_from(value.kind) {
        Ok(RouteKind::LocalEndpoint) => {
            format!("local on ifindex {} MAC {}", value.ifindex, mac_string(value.mac))
        }
        Ok(RouteKind::RemoteBlock) => {
            let how = match value.tunnel() {
                Ok(Some(Tunnel::Vxlan)) => format!("vxlan to VTEP {}", mac_string(value.mac)),
                Ok(Some(Tunnel::Ipip)) => "ipip".into(),
                Ok(None) => "plain".into(),
                Err(flags) => format!("flags {flags:#x}"),
            };
            format!("remote via {} ({how})", Ipv4Addr::from(value.next_hop))
        }
        _ => kind_name(value.kind).to_string(),
    }
}

/// Every difference between the route entries the kernel implies and those the map holds.
pub fn route_drift(
    desired: &HashMap<Prefix, RouteValue>,
    actual: &BTreeMap<Prefix, RouteValue>,
) -> Vec<String> {
    let show = |(len, addr): &Prefix| format!("{addr}/{len}");
    let mut drift = Vec::new();
    let mut wanted: Vec<_> = desired.iter().collect();
    wanted.sort_by_key(|(p, _)| **p);
    for (prefix, value) in wanted {
        match actual.get(prefix) {
            None => drift.push(format!("FP_ROUTES lacks {} ({})", show(prefix), describe(value))),
            Some(held) if held != value => drift.push(format!(
                "FP_ROUTES has {} as {}, the kernel says {}",
                show(prefix),
                describe(held),
                describe(value)
            )),
            Some(_) => {}
        }
    }
    for (prefix, held) in actual {
        if !desired.contains_key(prefix) {
            drift.push(format!(
                "FP_ROUTES has {} ({}), which the kernel does not route so",
                show(prefix),
                describe(held)
            ));
        }
    }
    drift
}

/// How this node's settings in `FP_NODE` differ from what the kernel says now: its `vxlan.calico`
/// (the programs build and accept VXLAN by it), else its underlay, MTUs and flags (an entry
/// zeroed behind the daemon's back leaves the programs unconfigured). The next-hop generation is
/// the daemon's own.
pub fn node_drift(held: &NodeConfig, desired: &NodeConfig) -> Vec<String> {
    let words = |c: &NodeConfig| {
        if c.has_vxlan() {
            let v = c.vxlan;
            format!(
                "vxlan.calico ifindex {} VNI {} port {} MAC {} source ports {}-{} TTL {} TOS {} DF {}",
                v.ifindex,
                v.vni,
                v.port,
                mac_string(v.mac),
                v.port_min,
                v.port_max,
                v.ttl,
                v.tos,
                v.df
            )
        } else {
            "no VXLAN device".into()
        }
    };
    let (held_words, desired_words) = (words(held), words(desired));
    if held_words != desired_words {
        return vec![format!("FP_NODE has {held_words}, the kernel says {desired_words}")];
    }
    let underlay = |c: &NodeConfig| {
        format!(
            "underlay ifindex {} node {} MAC {} MTU {} (IPIP {}, VXLAN {}) flags {:#x}",
            c.underlay_ifindex,
            Ipv4Addr::from(c.node_ip),
            mac_string(c.node_mac),
            c.underlay_mtu,
            c.ipip_mtu,
            c.vxlan_mtu,
            c.flags
        )
    };
    let (held_words, desired_words) = (underlay(held), underlay(desired));
    if held_words == desired_words {
        return Vec::new();
    }
    vec![format!("FP_NODE has {held_words}, the kernel says {desired_words}")]
}

/// Every difference between two sets of keys of map `map`.
pub fn set_drift<T: Ord + Display>(map: &str, desired: &BTreeSet<T>, actual: &BTreeSet<T>) -> Vec<String> {
    let lacks = desired.difference(actual).map(|k| format!("{map} lacks {k}"));
    let extra = actual.difference(desired).map(|k| format!("{map} has {k}, which the kernel does not imply"));
    lacks.chain(extra).collect()
}

/// Every interface that should carry a program but has no pinned link, and every pinned link
/// that serves no such interface. `wanted` and `pinned` are (program, ifindex).
pub fn attachment_drift(wanted: &BTreeSet<(String, u32)>, pinned: &BTreeSet<(String, u32)>) -> Vec<String> {
    let lacks = wanted.difference(pinned).map(|(p, i)| format!("{p} is not attached to ifindex {i}"));
    let extra = pinned
        .difference(wanted)
        .map(|(p, i)| format!("a link of {p} is pinned for ifindex {i}, which is gone or not served"));
    lacks.chain(extra).collect()
}

/// Compare the maps pinned in `dir` with the kernel, as the daemon that pinned them judges it.
/// Returns the drift, one line each (empty: none).
pub async fn run(dir: &Path) -> Result<Vec<String>, Error> {
    let agent: AgentInfo = bpffs::read_pinned_slot(dir, AGENT)?;
    let node_config: NodeConfig = bpffs::read_pinned_slot(dir, NODE)?;
    let pod_prefix = unpadded(&agent.iface_prefix);
    let netlink = Netlink::new()?;
    let links = netlink.links().await?;
    let underlay = links.iter().find(|l| l.index == node_config.underlay_ifindex).map(|l| l.name.clone());
    let picture = picture::take(&netlink, underlay.as_deref(), &pod_prefix).await?;
    let policy = routes::pod_policy(
        &picture.kernel.rules,
        &picture.kernel.interfaces,
        &picture.node.underlay,
        &pod_prefix,
    );
    let mapping = Mapping {
        interfaces: &picture.kernel.interfaces,
        underlay: &picture.node.underlay,
        // A code this version does not know: judge as the default mode would.
        modes: Modes {
            ipip: EncapMode::from_code(agent.ipip_mode).unwrap_or_default(),
            vxlan: EncapMode::from_code(agent.vxlan_mode).unwrap_or_default(),
        },
        pod_prefix: &pod_prefix,
        vxlan: picture.node.usable_vxlan(),
        vteps: &picture.kernel.vteps,
        policy: &policy,
    };
    let desired: HashMap<Prefix, RouteValue> = picture
        .kernel
        .prefixes()
        .filter_map(|p| Some((*p, routes::entry_for(*p, &picture.kernel, &mapping)?)))
        .collect();
    let actual: BTreeMap<Prefix, RouteValue> =
        tables::route_entries(&tables::pinned_routes(dir)?)?.into_iter().collect();
    let mut drift = route_drift(&desired, &actual);
    drift.extend(node_drift(
        &node_config,
        &picture.node.config(Trust::from_agent_flags(agent.flags), node_config.next_hop_generation),
    ));

    let desired_peers: BTreeSet<Ipv4Addr> = desired
        .values()
        .filter(|v| v.kind == RouteKind::RemoteBlock as u32)
        .map(|v| Ipv4Addr::from(v.next_hop))
        .collect();
    let peers: BpfHashMap<MapData, [u8; 4], u32> = bpffs::open_pinned_as(dir, TUNNEL_PEERS)?;
    let actual_peers: BTreeSet<Ipv4Addr> = peers.keys().filter_map(Result::ok).map(Ipv4Addr::from).collect();
    drift.extend(set_drift("FP_PEERS", &desired_peers, &actual_peers));

    let desired_endpoints: BTreeSet<String> = desired
        .iter()
        .filter(|((len, _), _)| *len == 32)
        .filter_map(|((_, addr), v)| endpoint_of(v).map(|e| endpoint_line(*addr, &e)))
        .collect();
    let endpoints: BpfHashMap<MapData, [u8; 4], Endpoint> = bpffs::open_pinned_as(dir, ENDPOINTS)?;
    let actual_endpoints: BTreeSet<String> = endpoints
        .iter()
        .filter_map(Result::ok)
        .map(|(addr, e)| endpoint_line(Ipv4Addr::from(addr), &e))
        .collect();
    drift.extend(set_drift("FP_ENDPOINTS", &desired_endpoints, &actual_endpoints));

    let desired_endpoints6: BTreeSet<String> = endpoints6::wanted(&picture.kernel, &pod_prefix)
        .iter()
        .map(|(addr, e)| endpoint_line(*addr, e))
        .collect();
    let endpoints6: BpfHashMap<MapData, [u8; 16], Endpoint> = bpffs::open_pinned_as(dir, ENDPOINTS6)?;
    let actual_endpoints6: BTreeSet<String> = endpoints6
        .iter()
        .filter_map(Result::ok)
        .map(|(addr, e)| endpoint_line(Ipv6Addr::from(addr), &e))
        .collect();
    drift.extend(set_drift("FP_ENDPOINTS6", &desired_endpoints6, &actual_endpoints6));
    drift.extend(ipv6_drift(dir, &picture)?);

    let pod_links = picture.links.iter().filter(|l| l.name.starts_with(&pod_prefix)).map(|l| l.index);
    let mut wanted: BTreeSet<(String, u32)> = pod_links
        .flat_map(|index| loader::POD_PROGRAMS.iter().map(move |(p, _)| (p.to_string(), index)))
        .collect();
    wanted.extend(
        loader::UNDERLAY_PROGRAMS.iter().map(|(p, _)| (p.to_string(), picture.node.underlay.ifindex)),
    );
    // Legacy tc filters are not pinned links: there is nothing to compare them with here.
    if agent.flags & AGENT_F_LEGACY_TC == 0 {
        let pinned: BTreeSet<(String, u32)> =
            pins::pinned_links(dir).into_iter().map(|(p, i, _)| (p, i)).collect();
        drift.extend(attachment_drift(&wanted, &pinned));
    }
    Ok(drift)
}

/// `FP_ROUTES6`, `FP_PEERS6` and `FP_NODE6` against what the kernel implies.
fn ipv6_drift(dir: &Path, picture: &picture::Picture) -> Result<Vec<String>, Error> {
    let wanted = routes6::wanted(&picture.kernel, &picture.node);
    let desired: BTreeSet<String> = wanted.iter().map(|(p, v)| route6_line(*p, v)).collect();
    let actual: BTreeSet<String> =
        tables::pinned_route6_entries(dir)?.iter().map(|(p, v)| route6_line(*p, v)).collect();
    let mut drift = set_drift("FP_ROUTES6", &desired, &actual);
    let desired_peers: BTreeSet<Ipv6Addr> = routes6::peers(&wanted).into_keys().collect();
    let peers: BpfHashMap<MapData, [u8; 16], u32> = bpffs::open_pinned_as(dir, TUNNEL_PEERS6)?;
    let actual_peers: BTreeSet<Ipv6Addr> = peers.keys().filter_map(Result::ok).map(Ipv6Addr::from).collect();
    drift.extend(set_drift("FP_PEERS6", &desired_peers, &actual_peers));
    let held: Node6Config = bpffs::read_pinned_slot(dir, NODE6)?;
    let desired_node = picture.node.config6();
    if held != desired_node {
        drift.push(format!("FP_NODE6 holds {held:?}, the kernel implies {desired_node:?}"));
    }
    Ok(drift)
}

/// An `FP_ROUTES6` entry in words, for comparing.
fn route6_line(prefix: Prefix6, value: &RouteValue6) -> String {
    let row = show::row6(prefix, value);
    let via = row.next_hop.map(|h| format!(" via {h}")).unwrap_or_default();
    let how = [row.encap, row.mac, row.why].into_iter().flatten().collect::<Vec<_>>().join(", ");
    format!("{} {}{via} ({how})", row.prefix, row.kind)
}

fn endpoint_line(addr: impl std::fmt::Display, e: &Endpoint) -> String {
    format!("{addr} (ifindex {}, MAC {})", e.ifindex, mac_string(e.mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: Prefix = (26, Ipv4Addr::new(10, 244, 166, 128));
    const POD: Prefix = (32, Ipv4Addr::new(10, 244, 40, 36));

    #[test]
    fn route_drift_names_missing_extra_and_wrong_entries() {
        let desired = HashMap::from([
            (BLOCK, RouteValue::remote([10, 101, 14, 51], true)),
            (POD, RouteValue::local(5, [1; 6])),
        ]);
        assert!(route_drift(&desired, &desired.clone().into_iter().collect()).is_empty());
        let actual = BTreeMap::from([
            (BLOCK, RouteValue::remote([10, 101, 14, 52], true)),
            ((26, Ipv4Addr::new(10, 244, 1, 0)), RouteValue::blackhole()),
        ]);
        let drift = route_drift(&desired, &actual);
        assert_eq!(
            drift,
            vec![
                "FP_ROUTES has 10.244.166.128/26 as remote via 10.101.14.52 (ipip), the kernel says remote via 10.101.14.51 (ipip)".to_string(),
                "FP_ROUTES lacks 10.244.40.36/32 (local on ifindex 5 MAC 01:01:01:01:01:01)".to_string(),
                "FP_ROUTES has 10.244.1.0/26 (blackhole), which the kernel does not route so".to_string(),
            ]
        );
    }

    #[test]
    fn a_vxlan_block_with_a_stale_vtep_is_drift() {
        let desired = HashMap::from([(BLOCK, RouteValue::vxlan([10, 101, 14, 51], [0x66, 0, 0, 0, 0, 1]))]);
        let actual = BTreeMap::from([(BLOCK, RouteValue::vxlan([10, 101, 14, 51], [0x66, 0, 0, 0, 0, 2]))]);
        assert_eq!(
            route_drift(&desired, &actual),
            vec!["FP_ROUTES has 10.244.166.128/26 as remote via 10.101.14.51 (vxlan to VTEP 66:00:00:00:00:02), the kernel says remote via 10.101.14.51 (vxlan to VTEP 66:00:00:00:00:01)".to_string()]
        );
    }

    #[test]
    fn vxlan_settings_that_differ_from_the_device_are_drift() {
        use fastpath_common::maps::NODE_F_VXLAN;
        let none = NodeConfig::default();
        let mut with = NodeConfig { flags: NODE_F_VXLAN, ..NodeConfig::default() };
        with.vxlan.vni = 4096;
        assert!(node_drift(&with, &with).is_empty());
        let drift = node_drift(&none, &with);
        assert_eq!(drift.len(), 1);
        assert!(
            drift[0]
                .starts_with("FP_NODE has no VXLAN device, the kernel says vxlan.calico ifindex 0 VNI 4096"),
            "{drift:?}"
        );
        let configured =
            NodeConfig { underlay_ifindex: 2, underlay_mtu: 1500, next_hop_generation: 7, ..none };
        let drift = node_drift(&NodeConfig::default(), &configured);
        assert_eq!(
            drift,
            ["FP_NODE has underlay ifindex 0 node 0.0.0.0 MAC 00:00:00:00:00:00 MTU 0 (IPIP 0, VXLAN 0) flags 0x0, the kernel says underlay ifindex 2 node 0.0.0.0 MAC 00:00:00:00:00:00 MTU 1500 (IPIP 0, VXLAN 0) flags 0x0"]
        );
        let other_generation = NodeConfig { next_hop_generation: 8, ..configured };
        assert!(node_drift(&other_generation, &configured).is_empty(), "the generation is the daemon's own");
    }

    #[test]
    fn set_and_attachment_drift() {
        let a = BTreeSet::from([1, 2]);
        let b = BTreeSet::from([2, 3]);
        assert_eq!(
            set_drift("FP_PEERS", &a, &b),
            vec!["FP_PEERS lacks 1", "FP_PEERS has 3, which the kernel does not imply"]
        );
        let wanted = BTreeSet::from([("from_pod".to_string(), 5)]);
        let pinned = BTreeSet::from([("from_pod".to_string(), 6)]);
        let drift = attachment_drift(&wanted, &pinned);
        assert_eq!(drift.len(), 2);
        assert!(drift[0].contains("not attached to ifindex 5"));
    }
}
