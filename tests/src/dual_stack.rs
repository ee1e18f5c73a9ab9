//! IPv6 beside IPv4 in the test bed's clusters: Calico's dual-stack layout, made by the kernel's
//! own tools, for [`crate::cluster`] to call when its spec has an [`Ipv6Layout`].
//!
//! Addresses. Calico's default IPv6 pool is a random ULA /48 with /122 blocks; ours is
//! `fd5f:a1b2:c3d4::/48`, and an IPv4 address `a.b.c.d` maps to `fd5f:a1b2:c3d4::a.b.c.d`
//! (its 32 bits at the end). So a node's /26 IPv4 block maps onto a /122 IPv6 block (96 + 26):
//! pod 10.244.40.36 in 10.244.40.0/26 also has fd5f:a1b2:c3d4::af4:2824 in
//! fd5f:a1b2:c3d4::af4:2800/122. Node underlay addresses map the same way into `fd00:101::/96`,
//! the /28 underlay subnets onto /124s (96 + 28), each subnet's router `.62` onto its `…:3e`.
//!
//! Pods, as Calico's CNI plugin sets them up (`cni-plugin/pkg/dataplane/linux/dataplane_linux.go`):
//! `accept_dad=0` on both ends before they come up (`disableDAD`), the pod's address as a /128,
//! and `default via fe80::ecee:eeff:feee:eeee dev eth0` — the link-local address the kernel
//! derives from the host end's MAC ee:ee:ee:ee:ee:ee, which the plugin reads off the host veth.
//! The host end gets `disable_ipv6=0`, `proxy_ndp=1`, `forwarding=1`, `accept_ra=0` and a
//! scope-link `/128` route to the pod. Calico adds no proxy-NDP entry: the gateway is the host
//! end's own address, so the kernel answers the pod's solicitation for it as for any address of
//! its own. The test bed adds one more route in the pod, `fe80::ecee:eeff:feee:eeee dev eth0`,
//! because it brings the host end up last (the pod's eth0 has no carrier and so no `fe80::/64`
//! yet when its default route is added); Calico brings both ends up first.
//!
//! Nodes: forwarding on (`net.ipv6.conf.all.forwarding=1`), a blackhole for the own block, and per
//! other node either `BLOCK/122 via NODE6 dev eth0` (plain, as BIRD would) or Felix's IPv6 VXLAN
//! (`felix/dataplane/linux/vxlan_mgr.go`, run with `ipVersion` 6): `vxlan-v6.calico` with the same
//! VNI and port as `vxlan.calico` (4096, 4789), `local` the node's IPv6 address, its own MAC
//! (`MacV6`), a tunnel address from the node's block, MTU underlay − 70
//! (`vxlanV6MTUOverhead` in `felix/dataplane/linux/int_dataplane.go`); per other node a route
//! `BLOCK via ITS_TUNNEL_ADDRESS dev vxlan-v6.calico onlink`, a permanent neighbour entry and a
//! permanent FDB entry to its IPv6 address. No IPIP: Calico has no IPv6 IPIP. The device keeps the
//! kernel's defaults for checksums (`udp6zerocsumtx` and `udp6zerocsumrx` off), as Felix creates
//! it: it sends a real UDP checksum and drops IPv6 VXLAN that has none.
//!
//! `kernel_forwarding: false` closes `ip6tables`' FORWARD as it closes `iptables`'.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use anyhow::{bail, Result};

use crate::{
    cluster::{VXLAN_PORT, VXLAN_VNI},
    cmd, wait,
};

/// Felix's IPv6 VXLAN device.
pub const VXLAN6_DEVICE: &str = "vxlan-v6.calico";
/// IPv6 VXLAN's overhead: outer IPv6 (40), UDP (8), VXLAN (8), inner Ethernet (14).
pub const VXLAN6_OVERHEAD: u32 = 70;
/// The pod MTU Calico sets when IPv6 VXLAN is on (1500 − 70).
pub const VXLAN6_POD_MTU: u32 = 1500 - VXLAN6_OVERHEAD;
/// The pods' IPv6 gateway: the host end's link-local address.
pub const POD_GATEWAY6: &str = "fe80::ecee:eeff:feee:eeee";
/// The test bed's pool prefix: Calico-like ULA /48; IPv4 addresses map into its first /96.
pub const POOL6: Ipv6Addr = Ipv6Addr::new(0xfd5f, 0xa1b2, 0xc3d4, 0, 0, 0, 0, 0);
/// The underlay prefix; node addresses map into its first /96.
pub const UNDERLAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x101, 0, 0, 0, 0, 0, 0);

/// One of a dual-stack cluster's two address families: which of a pod's addresses to use, and
/// which of the kernel's tools speak it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    /// `IPv4` or `IPv6`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        }
    }

    /// Its netfilter tool: `iptables` or `ip6tables` (both iptables-nft here); `-restore` and
    /// `-save` follow the same name.
    pub fn iptables(self) -> &'static str {
        match self {
            Family::Ipv4 => "iptables",
            Family::Ipv6 => "ip6tables",
        }
    }

    /// The prefix length of one address: 32 or 128.
    pub fn host_prefix_len(self) -> u8 {
        match self {
            Family::Ipv4 => 32,
            Family::Ipv6 => 128,
        }
    }
}

/// How a node routes to another node's IPv6 block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteVia6 {
    /// `via NODE6 dev eth0`: plain routing over the underlay (the nodes share a subnet).
    Underlay,
    /// Felix's `vxlan-v6.calico`.
    Vxlan,
    /// VXLAN to nodes in other subnets, plain to nodes in the same one.
    VxlanCrossSubnet,
}

/// Where the IPv6 half of a dual-stack cluster lives, and how it crosses nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Layout {
    /// The /96 IPv4 pod addresses map into.
    pub pool: Ipv6Addr,
    /// The /96 IPv4 underlay addresses map into.
    pub underlay: Ipv6Addr,
    pub remote_via: RemoteVia6,
}

impl Ipv6Layout {
    pub fn new(remote_via: RemoteVia6) -> Self {
        Self { pool: POOL6, underlay: UNDERLAY6, remote_via }
    }

    /// A pod's (or a block's, or a tunnel's) IPv6 address.
    pub fn pod(&self, v4: Ipv4Addr) -> Ipv6Addr {
        embed(self.pool, v4)
    }

    /// A node's IPv6 block: its IPv4 block's addresses, 96 bits longer.
    pub fn block(&self, block: (Ipv4Addr, u8)) -> (Ipv6Addr, u8) {
        (embed(self.pool, block.0), 96 + block.1)
    }

    /// A node's (or a router's) underlay IPv6 address.
    pub fn node(&self, v4: Ipv4Addr) -> Ipv6Addr {
        embed(self.underlay, v4)
    }

    /// The prefix length of the underlay subnets (the IPv4 /28s, 96 bits longer).
    pub fn underlay_prefix_len(&self) -> u8 {
        96 + crate::cluster::UNDERLAY_PREFIX_LEN
    }
}

/// `v4`'s 32 bits at the end of `prefix`'s /96: how the test bed gives every IPv4 address of a
/// dual-stack cluster its IPv6 twin.
pub fn embed(prefix: Ipv6Addr, v4: Ipv4Addr) -> Ipv6Addr {
    let mut octets = prefix.octets();
    octets[12..].copy_from_slice(&v4.octets());
    Ipv6Addr::from(octets)
}

pub fn cidr(net: (Ipv6Addr, u8)) -> String {
    format!("{}/{}", net.0, net.1)
}

/// A node's IPv6 half.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeIpv6 {
    pub underlay_ip: Ipv6Addr,
    pub block: (Ipv6Addr, u8),
    /// Its `vxlan-v6.calico`, when IPv6 crosses nodes in VXLAN.
    pub vtep: Option<Vtep6>,
}

/// A node's `vxlan-v6.calico`: its MAC and its tunnel address (the first of its block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vtep6 {
    pub mac: [u8; 6],
    pub tunnel_ip: Ipv6Addr,
}

impl Vtep6 {
    /// A locally administered MAC made of the node's IPv4 address, apart from `vxlan.calico`'s
    /// (Felix gives the two devices two MACs).
    pub fn of(layout: &Ipv6Layout, underlay_ip: Ipv4Addr, block: (Ipv4Addr, u8)) -> Self {
        let [a, b, c, d] = underlay_ip.octets();
        Self { mac: [0x66, 0x06, a, b, c, d], tunnel_ip: layout.block(block).0 }
    }

    pub fn mac_string(&self) -> String {
        self.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
    }
}

/// The switch's IPv6 side: each subnet's router address on its bridge, forwarding between them,
/// when there is more than one subnet (`routers` pairs each bridge with its IPv4 router).
pub fn add_subnets(switch: &str, layout: &Ipv6Layout, routers: &[(String, Ipv4Addr)]) -> Result<()> {
    cmd::sysctl(switch, "net.ipv6.conf.all.forwarding", "1")?;
    for (bridge, router) in routers {
        let address = format!("{}/{}", layout.node(*router), layout.underlay_prefix_len());
        cmd::ip(switch, &["-6", "addr", "add", &address, "dev", bridge, "nodad"])?;
    }
    Ok(())
}

/// Node `ns`'s IPv6 half: its underlay address (no duplicate address detection, so it is usable
/// at once), forwarding, a default route via its subnet's router, a blackhole for its block (when
/// the test bed writes the routes), FORWARD closed when the kernel may not forward, and
/// `vxlan-v6.calico` in VXLAN modes.
pub fn add_node(
    ns: &str,
    layout: &Ipv6Layout,
    underlay_ip: Ipv4Addr,
    router: Ipv4Addr,
    block: (Ipv4Addr, u8),
    blackhole: bool,
    close_forward: bool,
) -> Result<NodeIpv6> {
    let node = NodeIpv6 {
        underlay_ip: layout.node(underlay_ip),
        block: layout.block(block),
        vtep: (layout.remote_via != RemoteVia6::Underlay).then(|| Vtep6::of(layout, underlay_ip, block)),
    };
    let address = format!("{}/{}", node.underlay_ip, layout.underlay_prefix_len());
    cmd::ip(ns, &["-6", "addr", "add", &address, "dev", "eth0", "nodad"])?;
    let router = layout.node(router).to_string();
    cmd::ip(ns, &["-6", "route", "add", "default", "via", &router, "dev", "eth0"])?;
    if blackhole {
        cmd::ip(ns, &["-6", "route", "add", "blackhole", &cidr(node.block)])?;
    }
    cmd::sysctl(ns, "net.ipv6.conf.all.forwarding", "1")?;
    if close_forward {
        cmd::in_ns_ok(ns, "ip6tables", &["-P", "FORWARD", "DROP"])?;
    }
    if let Some(vtep) = node.vtep {
        add_vxlan6_device(ns, node.underlay_ip, vtep)?;
    }
    Ok(node)
}

/// Wait (at most 5 s) until no address in node namespace `ns` is tentative. A node's `eth0`
/// link-local address runs duplicate address detection for about a second after the link comes
/// up, and until it ends the kernel sends no neighbour solicitation from it: the first packet
/// across nodes would wait for the next retransmission, a second per node on the way.
pub fn wait_addresses_usable(ns: &str) -> Result<()> {
    let settled = || cmd::ip(ns, &["-6", "addr", "show", "tentative"]).ok()?.trim().is_empty().then_some(());
    match wait::until(Duration::from_secs(5), settled) {
        Some(_) => Ok(()),
        None => bail!(
            "{ns}: IPv6 addresses still tentative after 5 s: {}",
            cmd::ip(ns, &["-6", "addr", "show", "tentative"])?
        ),
    }
}

/// Felix's `vxlan-v6.calico` in node namespace `ns`.
fn add_vxlan6_device(ns: &str, local: Ipv6Addr, vtep: Vtep6) -> Result<()> {
    let (vni, port, local) = (VXLAN_VNI.to_string(), VXLAN_PORT.to_string(), local.to_string());
    let args = ["link", "add", VXLAN6_DEVICE, "type", "vxlan", "id", &vni, "dstport", &port];
    cmd::ip(ns, &[&args[..], &["local", &local, "dev", "eth0", "nolearning"]].concat())?;
    let mtu = VXLAN6_POD_MTU.to_string();
    cmd::ip(ns, &["link", "set", VXLAN6_DEVICE, "address", &vtep.mac_string(), "mtu", &mtu])?;
    // The slash form: the device's name has a dot, which the dotted form would split.
    cmd::sysctl(ns, &format!("net/ipv6/conf/{VXLAN6_DEVICE}/accept_dad"), "0")?;
    cmd::ip(ns, &["link", "set", VXLAN6_DEVICE, "up"])?;
    let address = format!("{}/128", vtep.tunnel_ip);
    cmd::ip(ns, &["-6", "addr", "add", &address, "dev", VXLAN6_DEVICE, "nodad"])?;
    Ok(())
}

/// On node `ns` (whose IPv6 half is `own`, in underlay subnet `own_subnet`), the route to `peer`'s
/// block (`peer_subnet` its subnet), and in VXLAN the neighbour and FDB entries Felix writes.
pub fn route_remote_block(
    ns: &str,
    layout: &Ipv6Layout,
    own_subnet: Ipv4Addr,
    peer: &NodeIpv6,
    peer_subnet: Ipv4Addr,
) -> Result<()> {
    let block = cidr(peer.block);
    let vxlan = match layout.remote_via {
        RemoteVia6::Underlay => None,
        RemoteVia6::VxlanCrossSubnet if own_subnet == peer_subnet => None,
        RemoteVia6::Vxlan | RemoteVia6::VxlanCrossSubnet => peer.vtep,
    };
    match vxlan {
        None => {
            let via = peer.underlay_ip.to_string();
            cmd::ip(ns, &["-6", "route", "add", &block, "via", &via, "dev", "eth0"])?;
        }
        Some(vtep) => {
            let (tunnel, mac, node) =
                (vtep.tunnel_ip.to_string(), vtep.mac_string(), peer.underlay_ip.to_string());
            cmd::ip(
                ns,
                &["-6", "neigh", "add", &tunnel, "lladdr", &mac, "dev", VXLAN6_DEVICE, "nud", "permanent"],
            )?;
            cmd::in_ns_ok(
                ns,
                "bridge",
                &["fdb", "add", &mac, "dev", VXLAN6_DEVICE, "dst", &node, "self", "permanent"],
            )?;
            cmd::ip(ns, &["-6", "route", "add", &block, "via", &tunnel, "dev", VXLAN6_DEVICE, "onlink"])?;
        }
    }
    Ok(())
}

/// The pod's side, before its eth0 comes up: no duplicate address detection (as Calico's
/// `disableDAD`), IPv6 on.
pub fn prepare_pod(pod_ns: &str) -> Result<()> {
    cmd::sysctl(pod_ns, "net.ipv6.conf.all.disable_ipv6", "0")?;
    cmd::sysctl(pod_ns, "net.ipv6.conf.eth0.accept_dad", "0")
}

/// The pod's address and routes, once its eth0 is up.
pub fn address_pod(pod_ns: &str, ip6: Ipv6Addr) -> Result<()> {
    cmd::ip(pod_ns, &["-6", "addr", "add", &format!("{ip6}/128"), "dev", "eth0", "nodad"])?;
    cmd::ip(pod_ns, &["-6", "route", "add", POD_GATEWAY6, "dev", "eth0"])?;
    cmd::ip(pod_ns, &["-6", "route", "add", "default", "via", POD_GATEWAY6, "dev", "eth0"])?;
    Ok(())
}

/// The host end's sysctls, before it comes up (accept_dad must be off before the kernel gives it
/// its link-local address, or that address would be tentative for a second).
pub fn prepare_host_end(node_ns: &str, host_iface: &str) -> Result<()> {
    for (key, value) in [
        ("disable_ipv6", "0"),
        ("accept_dad", "0"),
        ("proxy_ndp", "1"),
        ("forwarding", "1"),
        ("accept_ra", "0"),
    ] {
        cmd::sysctl(node_ns, &format!("net.ipv6.conf.{host_iface}.{key}"), value)?;
    }
    Ok(())
}

/// The host end's route to the pod, once it is up.
pub fn route_to_pod(node_ns: &str, host_iface: &str, ip6: Ipv6Addr) -> Result<()> {
    cmd::ip(node_ns, &["-6", "route", "add", &format!("{ip6}/128"), "dev", host_iface, "scope", "link"])
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_from_ipv4() {
        let layout = Ipv6Layout::new(RemoteVia6::Underlay);
        assert_eq!(layout.pod(Ipv4Addr::new(10, 244, 40, 36)).to_string(), "fd5f:a1b2:c3d4::af4:2824");
        assert_eq!(cidr(layout.block((Ipv4Addr::new(10, 244, 40, 0), 26))), "fd5f:a1b2:c3d4::af4:2800/122");
        assert_eq!(layout.node(Ipv4Addr::new(10, 101, 14, 50)).to_string(), "fd00:101::a65:e32");
        assert_eq!(layout.underlay_prefix_len(), 124);
        let vtep = Vtep6::of(&layout, Ipv4Addr::new(10, 101, 14, 50), (Ipv4Addr::new(10, 244, 40, 0), 26));
        assert_eq!(vtep.mac_string(), "66:06:0a:65:0e:32");
        assert_eq!(vtep.tunnel_ip.to_string(), "fd5f:a1b2:c3d4::af4:2800");
    }

    #[test]
    fn a_family_knows_its_addresses_and_its_tool() {
        assert_eq!(Family::of(IpAddr::V4(Ipv4Addr::LOCALHOST)), Family::Ipv4);
        assert_eq!(Family::of(IpAddr::V6(POOL6)), Family::Ipv6);
        assert_eq!(Family::BOTH.map(Family::iptables), ["iptables", "ip6tables"]);
        assert_eq!(Family::BOTH.map(Family::host_prefix_len), [32, 128]);
    }
}
