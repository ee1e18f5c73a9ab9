//! Which interface is the underlay, this node's `vxlan.calico`, and this node's settings for the
//! programs (pure).

use std::net::Ipv6Addr;

use fastpath_common::{
    maps::{Node6Config, NodeConfig, NODE6_F_READY, NODE6_F_VXLAN, NODE_F_READY, NODE_F_VXLAN},
    tunnel::Tunnel,
    vxlan::OVERHEAD6,
};

use crate::{
    daemon::{
        ipip::TUNNEL_DEVICE,
        vxlan::{Sysctls, Unusable, VxlanDevice, VXLAN6_DEVICE, VXLAN_DEVICE},
    },
    model::{
        link::{Address, Address6, LinkState},
        route::{KernelRoute, Underlay, MAIN_TABLE},
    },
    modes::Trust,
    Error,
};

/// The underlay and what the programs need to know about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    pub underlay: Underlay,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// `vxlan.calico`: `None` when the node has none, `Err` when the programs cannot stand in
    /// for it.
    pub vxlan: Device,
    /// What the kernel's vxlan device falls back on.
    pub sysctls: Sysctls,
    /// The MTU of `tunl0`, when the node has one (Felix sets it from its configuration).
    pub tunl0_mtu: Option<u32>,
    /// This node's IPv6 address on the underlay (a global one it can send from), if it has one:
    /// without it IPv6 for other nodes is the kernel's.
    pub ipv6: Option<Ipv6Addr>,
    /// `vxlan-v6.calico`, as `vxlan` (its `local` must be `ipv6`).
    pub vxlan6: Device,
}

impl Node {
    /// The programs' settings: this node, `--trust`'s, and the generation of the programs'
    /// next-hop cache.
    pub fn config(&self, trust: Trust, next_hop_generation: u32) -> NodeConfig {
        let vxlan = self.usable_vxlan();
        NodeConfig {
            underlay_ifindex: self.underlay.ifindex,
            node_ip: self.underlay.addr.octets(),
            node_mac: self.mac,
            _pad: [0; 2],
            underlay_mtu: self.mtu,
            flags: NODE_F_READY | trust.node_flag() | if vxlan.is_some() { NODE_F_VXLAN } else { 0 },
            next_hop_generation,
            vxlan: vxlan.map(|d| d.config).unwrap_or_default(),
            ipip_mtu: self.tunnel_mtu(Tunnel::Ipip),
            vxlan_mtu: self.tunnel_mtu(Tunnel::Vxlan),
        }
    }

    /// The programs' IPv6 settings: ready once the node has an IPv6 address on the underlay,
    /// with `vxlan-v6.calico` when the programs can stand in for it.
    pub fn config6(&self) -> Node6Config {
        let Some(addr) = self.ipv6 else { return Node6Config::default() };
        let vxlan = self.usable_vxlan6();
        Node6Config {
            flags: NODE6_F_READY | if vxlan.is_some() { NODE6_F_VXLAN } else { 0 },
            vxlan_mtu: self.vxlan6_mtu(),
            node_ip: addr.octets(),
            vxlan: vxlan.map(|d| d.config).unwrap_or_default(),
        }
    }

    /// The largest inner packet IPv6 VXLAN carries from this node: the underlay's MTU less 70,
    /// or `vxlan-v6.calico`'s own when that is lower.
    pub fn vxlan6_mtu(&self) -> u32 {
        lower_mtu(self.usable_vxlan6().map(|d| d.mtu), self.mtu.saturating_sub(OVERHEAD6 as u32))
    }

    /// The same node with its IPv6 address (the first of `addresses` on the underlay) and its
    /// `vxlan-v6.calico`, among `links`.
    pub fn with_ipv6(self, addresses: &[Address6], links: &[LinkState]) -> Self {
        let ipv6 = addresses.iter().find(|a| a.index == self.underlay.ifindex).map(|a| a.addr);
        let node = Self { ipv6, ..self };
        let vxlan6 = links.iter().find(|l| l.name == VXLAN6_DEVICE).map(|l| node.vxlan6_of(l));
        Self { vxlan6, ..node }
    }

    /// `link`, Felix's `vxlan-v6.calico`, understood: it sends from this node's IPv6 address,
    /// with the IPv6 hop limit when it sets no TTL.
    fn vxlan6_of(&self, link: &LinkState) -> Result<VxlanDevice, Unusable> {
        let local = self.ipv6.ok_or(Unusable::Local(None))?;
        let sysctls = Sysctls { default_ttl: self.sysctls.hop_limit6, ..self.sysctls };
        VxlanDevice::sending_from(link, local.into(), self.underlay.ifindex, &sysctls)
    }

    /// `vxlan-v6.calico`, if the programs can stand in for it.
    pub fn usable_vxlan6(&self) -> Option<&VxlanDevice> {
        usable(&self.vxlan6)
    }

    /// The largest inner packet `tunnel` carries from this node ([`lower_mtu`]): the underlay's
    /// MTU less the tunnel's headers, or the tunnel device's own.
    pub fn tunnel_mtu(&self, tunnel: Tunnel) -> u32 {
        let device = match tunnel {
            Tunnel::Ipip => self.tunl0_mtu,
            Tunnel::Vxlan => self.usable_vxlan().map(|d| d.mtu),
        };
        lower_mtu(device, tunnel.mtu(self.mtu))
    }

    /// `vxlan.calico`, if the programs can stand in for it.
    pub fn usable_vxlan(&self) -> Option<&VxlanDevice> {
        usable(&self.vxlan)
    }

    /// What a log line says about the node's IPv6 side.
    pub fn ipv6_words(&self) -> String {
        match self.ipv6 {
            Some(addr) => format!("IPv6 {addr}, {}", device_words(VXLAN6_DEVICE, &self.vxlan6)),
            None => "no IPv6 address on the underlay (IPv6 between nodes left to the kernel)".into(),
        }
    }

    /// What a log line says about `vxlan.calico`.
    pub fn vxlan_words(&self) -> String {
        device_words(VXLAN_DEVICE, &self.vxlan)
    }
}

/// A VXLAN device of the node's: `None` when it has none, `Err` when the programs cannot stand
/// in for it.
pub type Device = Option<Result<VxlanDevice, Unusable>>;

/// The device, if the programs can stand in for it.
fn usable(device: &Device) -> Option<&VxlanDevice> {
    device.as_ref().and_then(|d| d.as_ref().ok())
}

/// The largest inner packet a tunnel carries: what the underlay leaves it, or its device's own
/// MTU when that is lower, as the kernel's forwarding checks a packet against the device its
/// route goes through.
fn lower_mtu(device: Option<u32>, underlay: u32) -> u32 {
    device.filter(|mtu| *mtu < underlay).unwrap_or(underlay)
}

/// What a log line says about the VXLAN device `name`.
fn device_words(name: &str, device: &Device) -> String {
    match device {
        None => format!("no {name}"),
        Some(Ok(d)) => format!("{name} VNI {} port {}", d.config.vni, d.config.port),
        Some(Err(why)) => format!("{name} left to the kernel: {why}"),
    }
}

/// The underlay: the interface named by `--underlay`, else the default route's; its first IPv4
/// address is the node's.
pub fn choose(
    flag: Option<&str>,
    links: &[LinkState],
    addresses: &[Address],
    routes: &[KernelRoute],
    sysctls: Sysctls,
) -> Result<Node, Error> {
    let default_route = routes
        .iter()
        .filter(|r| r.table == MAIN_TABLE && r.prefix_len == 0 && r.oif.is_some())
        .min_by_key(|r| r.priority);
    let link = match flag {
        Some(name) => links
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| Error::NoSuchInterface { name: name.into() })?,
        None => {
            let oif = default_route.and_then(|r| r.oif).ok_or(Error::NoDefaultRoute)?;
            links.iter().find(|l| l.index == oif).ok_or(Error::NoDefaultRoute)?
        }
    };
    let address = addresses
        .iter()
        .find(|a| a.index == link.index)
        .ok_or_else(|| Error::NoUnderlayAddress { iface: link.name.clone() })?;
    let gateway = default_route.filter(|r| r.oif == Some(link.index)).and_then(|r| r.gateway);
    let underlay =
        Underlay { ifindex: link.index, addr: address.addr, prefix_len: address.prefix_len, gateway };
    let vxlan =
        links.iter().find(|l| l.name == VXLAN_DEVICE).map(|l| VxlanDevice::from_link(l, &underlay, &sysctls));
    let tunl0_mtu = links.iter().find(|l| l.name == TUNNEL_DEVICE).map(|l| l.mtu);
    Ok(Node {
        underlay,
        mac: link.mac.unwrap_or_default(),
        mtu: link.mtu,
        vxlan,
        sysctls,
        tunl0_mtu,
        ipv6: None,
        vxlan6: None,
    })
}

/// The same node with what a link event changed, if it did: the underlay's MTU or MAC, or
/// `vxlan.calico`'s or `vxlan-v6.calico`'s settings.
pub fn updated(node: &Node, link: &LinkState) -> Option<Node> {
    let next = if link.index == node.underlay.ifindex {
        Node { mac: link.mac.unwrap_or(node.mac), mtu: link.mtu, ..*node }
    } else if link.name == VXLAN_DEVICE {
        Node { vxlan: Some(VxlanDevice::from_link(link, &node.underlay, &node.sysctls)), ..*node }
    } else if is_device(&node.vxlan, link.index) {
        // Renamed: no longer Calico's device.
        Node { vxlan: None, ..*node }
    } else if link.name == VXLAN6_DEVICE {
        Node { vxlan6: Some(node.vxlan6_of(link)), ..*node }
    } else if is_device(&node.vxlan6, link.index) {
        Node { vxlan6: None, ..*node }
    } else if link.name == TUNNEL_DEVICE {
        Node { tunl0_mtu: Some(link.mtu), ..*node }
    } else {
        return None;
    };
    (next != *node).then_some(next)
}

/// The same node without `vxlan.calico`, `vxlan-v6.calico` or `tunl0`, if the link that went
/// was one of them.
pub fn without(node: &Node, link: &LinkState) -> Option<Node> {
    if link.name == VXLAN_DEVICE || is_device(&node.vxlan, link.index) {
        Some(Node { vxlan: None, ..*node })
    } else if link.name == VXLAN6_DEVICE || is_device(&node.vxlan6, link.index) {
        Some(Node { vxlan6: None, ..*node })
    } else if link.name == TUNNEL_DEVICE {
        Some(Node { tunl0_mtu: None, ..*node })
    } else {
        None
    }
}

fn is_device(device: &Device, ifindex: u32) -> bool {
    matches!(device, Some(Ok(d)) if d.config.ifindex == ifindex)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn eth0() -> LinkState {
        LinkState {
            index: 2,
            name: "eth0".into(),
            mac: Some([2; 6]),
            mtu: 1500,
            up: true,
            peer: None,
            vxlan: None,
        }
    }

    fn addresses() -> Vec<Address> {
        vec![Address { index: 2, addr: Ipv4Addr::new(10, 101, 14, 50), prefix_len: 28 }]
    }

    fn default_route() -> KernelRoute {
        KernelRoute::main_unicast(Ipv4Addr::UNSPECIFIED, 0, Some(2), Some(Ipv4Addr::new(10, 101, 14, 62)))
    }

    #[test]
    fn the_default_route_names_the_underlay() {
        let node = choose(None, &[eth0()], &addresses(), &[default_route()], Sysctls::default()).unwrap();
        assert_eq!(node.underlay.ifindex, 2);
        assert_eq!(node.underlay.addr, Ipv4Addr::new(10, 101, 14, 50));
        assert_eq!(node.underlay.gateway, Some(Ipv4Addr::new(10, 101, 14, 62)));
        let config = node.config(Trust::Routes, 0);
        assert_eq!(config.node_ip, [10, 101, 14, 50]);
        assert_eq!(config.underlay_mtu, 1500);
        assert!(config.ready());
        assert_eq!(config.tunnel_mtu(&fastpath_common::tunnel::Tunnel::Ipip), 1480);
        assert!(!config.has_vxlan());
    }

    #[test]
    fn the_node_is_ready_for_ipv6_once_the_underlay_has_an_ipv6_address() {
        let node = choose(None, &[eth0()], &addresses(), &[default_route()], Sysctls::default()).unwrap();
        assert_eq!(node.config6(), Node6Config::default(), "no IPv6 address: not ready");
        let addr = Ipv6Addr::new(0xfd00, 0x101, 0, 0, 0, 0, 0x0a65, 0x0e32);
        let elsewhere = Address6 { index: 9, addr: Ipv6Addr::LOCALHOST, prefix_len: 128 };
        let on_eth0 = Address6 { index: 2, addr, prefix_len: 124 };
        assert_eq!(node.with_ipv6(&[elsewhere], &[]).ipv6, None);
        let config = node.with_ipv6(&[elsewhere, on_eth0], &[eth0()]).config6();
        assert!(config.ready());
        assert!(!config.has_vxlan(), "no vxlan-v6.calico");
        assert_eq!(config.node_ip, addr.octets());
        assert_eq!(config.vxlan_mtu, 1430, "1500 less IPv6 VXLAN's 70");

        // Felix's vxlan-v6.calico, sending from the node's IPv6 address with no TTL of its own.
        let mut vxlan6 = crate::daemon::vxlan::felix_link(Ipv4Addr::new(10, 101, 14, 50));
        vxlan6.name = VXLAN6_DEVICE.into();
        vxlan6.mtu = 1400;
        vxlan6.vxlan.as_mut().unwrap().local = Some(addr.into());
        let node = Node { sysctls: Sysctls { hop_limit6: 60, ..Sysctls::default() }, ..node };
        let with_device = node.with_ipv6(&[on_eth0], &[eth0(), vxlan6.clone()]);
        let config = with_device.config6();
        assert!(config.has_vxlan());
        assert_eq!((config.vxlan.vni, config.vxlan.port, config.vxlan.ttl), (4096, 4789, 60));
        assert_eq!(config.vxlan_mtu, 1400, "the device's own MTU is lower");
        // Its local address is not the node's: the kernel's, both ways.
        let elsewhere = Address6 { addr: Ipv6Addr::LOCALHOST, ..on_eth0 };
        let config = node.with_ipv6(&[elsewhere], &[eth0(), vxlan6.clone()]).config6();
        assert!(config.ready() && !config.has_vxlan());
        // It goes, and comes back down.
        assert!(!without(&with_device, &vxlan6).unwrap().config6().has_vxlan());
        let down = LinkState { up: false, ..vxlan6 };
        assert!(!updated(&with_device, &down).unwrap().config6().has_vxlan());
    }

    #[test]
    fn a_named_underlay_must_exist_and_have_an_address() {
        assert!(matches!(
            choose(Some("eth9"), &[eth0()], &addresses(), &[], Sysctls::default()),
            Err(Error::NoSuchInterface { .. })
        ));
        assert!(matches!(
            choose(Some("eth0"), &[eth0()], &[], &[], Sysctls::default()),
            Err(Error::NoUnderlayAddress { .. })
        ));
        assert!(choose(Some("eth0"), &[eth0()], &addresses(), &[], Sysctls::default()).is_ok());
    }

    #[test]
    fn without_a_default_route_the_underlay_must_be_named() {
        assert!(matches!(
            choose(None, &[eth0()], &addresses(), &[], Sysctls::default()),
            Err(Error::NoDefaultRoute)
        ));
    }

    #[test]
    fn an_mtu_change_on_the_underlay_updates_the_node() {
        let node = choose(None, &[eth0()], &addresses(), &[default_route()], Sysctls::default()).unwrap();
        assert_eq!(updated(&node, &eth0()), None);
        let bigger = LinkState { mtu: 9000, ..eth0() };
        assert_eq!(updated(&node, &bigger).map(|n| n.mtu), Some(9000));
        let other = LinkState { index: 3, ..bigger };
        assert_eq!(updated(&node, &other), None);
    }

    #[test]
    fn a_tunnel_device_with_a_lower_mtu_lowers_the_tunnel_mtu() {
        let node = choose(None, &[eth0()], &addresses(), &[default_route()], Sysctls::default()).unwrap();
        assert_eq!(node.tunnel_mtu(Tunnel::Ipip), 1480);
        let tunl0 = LinkState { index: 5, name: "tunl0".into(), mtu: 1400, up: true, ..LinkState::default() };
        let lowered = updated(&node, &tunl0).unwrap();
        assert_eq!(lowered.config(Trust::Routes, 0).tunnel_mtu(&Tunnel::Ipip), 1400);
        let higher = LinkState { mtu: 9000, ..tunl0.clone() };
        assert_eq!(
            updated(&lowered, &higher).unwrap().tunnel_mtu(Tunnel::Ipip),
            1480,
            "the underlay's still rules"
        );
        assert_eq!(without(&lowered, &tunl0).unwrap().tunnel_mtu(Tunnel::Ipip), 1480);
        let with_both =
            choose(None, &[eth0(), tunl0], &addresses(), &[default_route()], Sysctls::default()).unwrap();
        assert_eq!(with_both.tunnel_mtu(Tunnel::Ipip), 1400);
        assert_eq!(with_both.tunnel_mtu(Tunnel::Vxlan), 1450, "no vxlan.calico: the underlay's");
    }
}
