//! The kernel's state, taken whole: links, the node's underlay and `vxlan.calico`, every rule and
//! route of both families, every IPv4 neighbour entry, with the pods' MACs and classic tc configuration asked for. The daemon takes one at start and again at each resync; `fastpath
//! verify` takes one to compare the maps with.

use crate::{
    daemon::{
        kernel::{KernelState, PeerQuery},
        netlink::Netlink,
        node::{self, Node},
        vxlan::Sysctls,
    },
    model::link::LinkState,
    Error,
};

pub struct Picture {
    pub links: Vec<LinkState>,
    pub node: Node,
    pub kernel: KernelState,
}

/// Dump links, addresses and routes through `netlink` and learn the pods' MACs.
pub async fn take(netlink: &Netlink, underlay: Option<&str>, pod_prefix: &str) -> Result<Picture, Error> {
    let links = netlink.links().await?;
    let (addresses, addresses6) = netlink.addresses().await?;
    let routes = netlink.ipv4_routes().await?;
    let neighbours = netlink.neighbours().await?;
    let rules = netlink.ipv4_rules().await?;
    let (routes6, rules6) = (netlink.ipv6_routes().await?, netlink.ipv6_rules().await?);
    let mut node = node::choose(underlay, &links, &addresses, &routes, sysctls())?;
    if let Some(link) = links.iter().find(|l| l.index == node.underlay.ifindex) {
        node.sysctls.hop_limit6 = hop_limit6(&link.name);
    }
    let node = node.with_ipv6(&addresses6, &links);
    let mut kernel = KernelState::new(&links, routes, &neighbours, rules).with_ipv6(routes6, rules6);
    for query in KernelState::peer_queries(&links, pod_prefix) {
        learn_peer_mac(netlink, &mut kernel, query).await;
    }
    for link in links.iter().filter(|l| l.name.starts_with(pod_prefix)) {
        learn_classic_tc(netlink, &mut kernel, link.index).await;
    }
    Ok(Picture { links, node, kernel })
}

/// Ask what classic tc configuration a pod interface has; whether that changed. While it has
/// any, the kernel carries its pod's traffic both ways. When the kernel cannot say, the interface
/// is taken as configured: better the kernel's path than skipping a limit.
pub async fn learn_classic_tc(netlink: &Netlink, kernel: &mut KernelState, ifindex: u32) -> bool {
    let config = match netlink.classic_tc(ifindex).await {
        Ok(config) => config,
        Err(e) => {
            log::warn!(
                "cannot read the tc configuration of ifindex {ifindex}, the kernel carries its pod: {}",
                e.chain()
            );
            Some("tc configuration unknown".into())
        }
    };
    kernel.set_classic_tc(ifindex, config)
}

/// Ask for a pod's MAC (the other end of its veth). Until it is known, its route stays with the
/// kernel.
pub async fn learn_peer_mac(netlink: &Netlink, kernel: &mut KernelState, query: PeerQuery) {
    match netlink.peer_mac(query.netnsid, query.peer_index).await {
        Ok(mac) => kernel.set_peer_mac(query.ifindex, mac),
        Err(e) => log::warn!(
            "pod MAC behind ifindex {} unknown, the kernel routes to it: {}",
            query.ifindex,
            e.chain()
        ),
    }
}

/// The namespace's settings the kernel's vxlan device falls back on, read from `/proc/sys` (per
/// network namespace); the kernel's defaults where they cannot be read.
fn sysctls() -> Sysctls {
    let read = |name: &str| std::fs::read_to_string(format!("/proc/sys/net/{name}")).ok();
    let defaults = Sysctls::default();
    let local_port_range = read("ipv4/ip_local_port_range")
        .and_then(|text| {
            let mut ports = text.split_whitespace().map(str::parse::<u16>);
            Some((ports.next()?.ok()?, ports.next()?.ok()?))
        })
        .unwrap_or(defaults.local_port_range);
    let default_ttl =
        read("ipv4/ip_default_ttl").and_then(|t| t.trim().parse().ok()).unwrap_or(defaults.default_ttl);
    Sysctls { local_port_range, default_ttl, ..defaults }
}

/// The hop limit IPv6 leaving by `underlay` gets when its sender sets none (the kernel's vxlan
/// device takes its route's device's, `ip6_dst_hoplimit`); 64 where it cannot be read.
fn hop_limit6(underlay: &str) -> u8 {
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{underlay}/hop_limit"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(Sysctls::default().hop_limit6)
}
