//! Calico's VXLAN device and its layer-2 tables, and how a route through it becomes an entry
//! (pure).
//!
//! Felix gives every node a `vxlan.calico` (VNI 4096, UDP port 4789, `local` the node's address,
//! no learning, its own MAC, a tunnel address from the node's block) and, for every other node:
//! a block route `via <its tunnel address> dev vxlan.calico onlink`, a permanent neighbour entry
//! `<its tunnel address> lladdr <its vxlan.calico MAC>`, and a permanent FDB entry `<that MAC>
//! dst <its node address> self`. The kernel goes route → gateway → neighbour (the inner
//! destination MAC) → FDB (the outer destination address); so does the daemon, live, and a route
//! stays the kernel's until both entries are known.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use fastpath_common::{
    route::RouteValue,
    vxlan::{VxlanConfig, DF_INHERIT, DF_SET, DF_UNSET, TTL_INHERIT},
};

use crate::{
    model::{
        family::Family,
        link::{LinkState, VxlanLink},
        neighbour::{Neighbour, NeighbourTable},
        route::Underlay,
    },
    modes::EncapMode,
};

/// Calico's VXLAN device.
pub const VXLAN_DEVICE: &str = "vxlan.calico";
/// Calico's IPv6 VXLAN device.
pub const VXLAN6_DEVICE: &str = "vxlan-v6.calico";

/// The namespace's settings the kernel's vxlan device falls back on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sysctls {
    /// `net.ipv4.ip_local_port_range`: UDP source ports when the device sets none.
    pub local_port_range: (u16, u16),
    /// `net.ipv4.ip_default_ttl`: the outer TTL when the device sets none.
    pub default_ttl: u8,
    /// The underlay's `net.ipv6.conf.<dev>.hop_limit`: the outer hop limit when an IPv6 device
    /// sets none.
    pub hop_limit6: u8,
}

impl Default for Sysctls {
    /// The kernel's defaults.
    fn default() -> Self {
        Self { local_port_range: (32768, 60999), default_ttl: 64, hop_limit6: 64 }
    }
}

/// This node's `vxlan.calico`, understood: what the programs need to stand in for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VxlanDevice {
    pub mtu: u32,
    pub config: VxlanConfig,
}

/// Why this node's `vxlan.calico` is one the programs cannot stand in for (its traffic then
/// stays with the kernel, both ways).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    Down,
    NotVxlan,
    NoMac,
    /// Its `local` address is not the node's (the outer source would differ).
    Local(Option<IpAddr>),
    /// It sends through another interface than the underlay.
    OtherLink(u32),
    /// A feature whose packets the programs do not build or take apart.
    Feature(&'static str),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::Down => write!(f, "it is down"),
            Unusable::NotVxlan => write!(f, "it is not a vxlan device"),
            Unusable::NoMac => write!(f, "it has no MAC address"),
            Unusable::Local(Some(addr)) => write!(f, "its local address {addr} is not the node's"),
            Unusable::Local(None) => write!(f, "it has no local address"),
            Unusable::OtherLink(index) => write!(f, "it sends through ifindex {index}, not the underlay"),
            Unusable::Feature(what) => write!(f, "it uses {what}"),
        }
    }
}

impl VxlanDevice {
    /// The device `link`, if the programs can send and receive exactly what it would.
    pub fn from_link(link: &LinkState, underlay: &Underlay, sysctls: &Sysctls) -> Result<Self, Unusable> {
        Self::sending_from(link, IpAddr::V4(underlay.addr), underlay.ifindex, sysctls)
    }

    /// The device `link` whose packets leave from `local` on interface `underlay` (IPv4's
    /// `vxlan.calico`, or IPv6's `vxlan-v6.calico`), if the programs can send and receive
    /// exactly what it would.
    pub fn sending_from(
        link: &LinkState,
        local: IpAddr,
        underlay: u32,
        sysctls: &Sysctls,
    ) -> Result<Self, Unusable> {
        let vxlan = link.vxlan.as_ref().ok_or(Unusable::NotVxlan)?;
        if !link.up {
            return Err(Unusable::Down);
        }
        let mac = link.mac.ok_or(Unusable::NoMac)?;
        if vxlan.local != Some(local) {
            return Err(Unusable::Local(vxlan.local));
        }
        if let Some(index) = vxlan.link.filter(|i| *i != 0 && *i != underlay) {
            return Err(Unusable::OtherLink(index));
        }
        if let Some(feature) = unsupported_feature(vxlan) {
            return Err(Unusable::Feature(feature));
        }
        let (port_min, port_max) = match vxlan.port_range {
            Some((low, high)) if low < high => (low, high),
            _ => sysctls.local_port_range,
        };
        let ttl = match (vxlan.ttl_inherit, vxlan.ttl) {
            (true, _) => TTL_INHERIT,
            (false, 0) => sysctls.default_ttl,
            (false, ttl) => ttl,
        };
        let config = VxlanConfig {
            ifindex: link.index,
            vni: vxlan.vni.ok_or(Unusable::Feature("no VNI (external, metadata-based)"))?,
            mac,
            port: vxlan.port.unwrap_or(DEFAULT_PORT),
            port_min,
            port_max,
            ttl,
            tos: vxlan.tos,
            df: vxlan.df,
            _pad: 0,
        };
        Ok(Self { mtu: link.mtu, config })
    }
}

/// The port a vxlan device uses when given none (the kernel reports it anyway).
const DEFAULT_PORT: u16 = 4789;

fn unsupported_feature(v: &VxlanLink) -> Option<&'static str> {
    if v.collect_metadata {
        Some("external (metadata-based) mode")
    } else if v.extensions {
        Some("a VXLAN extension (GBP, GPE or remote checksum offload)")
    } else if ![DF_UNSET, DF_SET, DF_INHERIT].contains(&v.df) {
        Some("an unknown DF setting")
    } else {
        None
    }
}

/// Another node's VTEP: where VXLAN to it goes, and the inner destination MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vtep<A = Ipv4Addr> {
    pub node: A,
    pub mac: [u8; 6],
}

/// One FDB destination of a MAC (`bridge fdb ... dst NODE [port P] [vni V] [via IFACE]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Remote<A> {
    node: A,
    /// Per-entry port, VNI or interface that differ from the device's: not the device's own
    /// packets, so not the programs' to build.
    overridden: bool,
}

/// The layer-2 tables of `vxlan.calico` (or, over IPv6, `vxlan-v6.calico`), as the kernel holds
/// them: its neighbour table (tunnel address → that node's VTEP MAC) and its FDB (VTEP MAC →
/// node address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vteps<A = Ipv4Addr> {
    neighbours: BTreeMap<A, [u8; 6]>,
    fdb: HashMap<[u8; 6], BTreeSet<Remote<A>>>,
}

/// `vxlan-v6.calico`'s tables.
pub type Vteps6 = Vteps<Ipv6Addr>;

impl<A> Default for Vteps<A> {
    fn default() -> Self {
        Self { neighbours: BTreeMap::new(), fdb: HashMap::new() }
    }
}

impl<A: Family> Vteps<A> {
    /// Record a neighbour or FDB entry of the device appearing (`present`) or going. Returns
    /// whether the tables changed.
    pub fn apply(&mut self, n: &Neighbour, present: bool) -> bool {
        let addr = n.addr.and_then(A::of);
        match n.table {
            NeighbourTable::Bridge => {
                // The all-zero MAC is the default destination of broadcast and unknown
                // unicast: flooding, never a node's VTEP.
                let (Some(mac), Some(node)) = (n.mac.filter(|m| *m != [0; 6]), addr) else { return false };
                let remote = Remote { node, overridden: n.overridden };
                if present {
                    self.fdb.entry(mac).or_default().insert(remote)
                } else {
                    let Some(remotes) = self.fdb.get_mut(&mac) else { return false };
                    let removed = remotes.remove(&remote);
                    if remotes.is_empty() {
                        self.fdb.remove(&mac);
                    }
                    removed
                }
            }
            table if table == A::NEIGHBOURS => {
                let Some(addr) = addr else { return false };
                match n.mac.filter(|_| present && n.resolved) {
                    Some(mac) => self.neighbours.insert(addr, mac) != Some(mac),
                    None => self.neighbours.remove(&addr).is_some(),
                }
            }
            _ => false,
        }
    }

    /// Forget every entry (the device went away).
    pub fn clear(&mut self) {
        self.neighbours.clear();
        self.fdb.clear();
    }

    /// The node behind the tunnel address `gateway`: its neighbour entry's MAC, then that MAC's
    /// FDB destination, when there is exactly one and it is the device's own kind of packet.
    pub fn via_tunnel_address(&self, gateway: A) -> Option<Vtep<A>> {
        let mac = *self.neighbours.get(&gateway)?;
        Some(Vtep { node: self.only_destination(&mac)?, mac })
    }

    /// The VTEP whose FDB entry leads to node `node` (for a route via the underlay that
    /// `--vxlan always` or `cross-subnet` encapsulates): exactly one MAC, or none.
    pub fn of_node(&self, node: A) -> Option<Vtep<A>> {
        let mut macs = self.fdb.keys().filter(|mac| self.only_destination(mac) == Some(node));
        let mac = *macs.next()?;
        macs.next().is_none().then_some(Vtep { node, mac })
    }

    fn only_destination(&self, mac: &[u8; 6]) -> Option<A> {
        let remotes = self.fdb.get(mac)?;
        match remotes.iter().collect::<Vec<_>>()[..] {
            [Remote { node, overridden: false }] => Some(*node),
            _ => None,
        }
    }
}

/// `BLOCK via TUNNEL_ADDRESS dev vxlan.calico onlink`: VXLAN to the node the neighbour and FDB
/// entries lead to (plain to it with `--vxlan never`), or the kernel's until both are known or
/// while the device is one the programs cannot stand in for.
pub fn entry_via_device(
    gateway: Ipv4Addr,
    mode: EncapMode,
    device: Option<&VxlanDevice>,
    vteps: &Vteps,
) -> RouteValue {
    match (vteps.via_tunnel_address(gateway), mode) {
        (Some(vtep), EncapMode::Never) => RouteValue::remote(vtep.node.octets(), false),
        (Some(vtep), _) if device.is_some() => RouteValue::vxlan(vtep.node.octets(), vtep.mac),
        _ => RouteValue::kernel(),
    }
}

/// `BLOCK via NODE dev eth0` that `--vxlan always` or `cross-subnet` encapsulates: VXLAN to the
/// VTEP the FDB places at NODE, or the kernel's until it is known.
pub fn entry_via_underlay(node: Ipv4Addr, device: Option<&VxlanDevice>, vteps: &Vteps) -> RouteValue {
    match vteps.of_node(node).filter(|_| device.is_some()) {
        Some(vtep) => RouteValue::vxlan(node.octets(), vtep.mac),
        None => RouteValue::kernel(),
    }
}

/// `vxlan.calico` as Felix creates it on the node with address `local` (ifindex 9, over the
/// underlay's ifindex 2), for the daemon's unit tests.
#[cfg(test)]
pub(crate) fn felix_link(local: std::net::Ipv4Addr) -> LinkState {
    LinkState {
        index: 9,
        name: VXLAN_DEVICE.into(),
        mac: Some([0x66, 0, 10, 101, 14, 50]),
        mtu: 1450,
        up: true,
        peer: None,
        vxlan: Some(VxlanLink {
            vni: Some(4096),
            port: Some(4789),
            local: Some(local.into()),
            link: Some(2),
            ..VxlanLink::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE2: Ipv4Addr = Ipv4Addr::new(10, 101, 14, 51);
    const TUNNEL2: Ipv4Addr = Ipv4Addr::new(10, 244, 166, 128);
    const MAC2: [u8; 6] = [0x66, 0, 10, 101, 14, 51];
    const UNDERLAY: Underlay = Underlay {
        ifindex: 2,
        addr: Ipv4Addr::new(10, 101, 14, 50),
        prefix_len: 28,
        gateway: Some(Ipv4Addr::new(10, 101, 14, 62)),
    };

    fn neighbour(addr: Ipv4Addr, mac: [u8; 6]) -> Neighbour {
        Neighbour {
            ifindex: 9,
            table: NeighbourTable::Ipv4,
            addr: Some(addr.into()),
            mac: Some(mac),
            resolved: true,
            overridden: false,
        }
    }

    fn fdb(mac: [u8; 6], node: Ipv4Addr) -> Neighbour {
        Neighbour { table: NeighbourTable::Bridge, ..neighbour(node, mac) }
    }

    fn calico_link() -> LinkState {
        felix_link(UNDERLAY.addr)
    }

    fn device() -> VxlanDevice {
        VxlanDevice::from_link(&calico_link(), &UNDERLAY, &Sysctls::default()).unwrap()
    }

    #[test]
    fn felixs_device_is_understood() {
        let d = device();
        assert_eq!(d.mtu, 1450);
        assert_eq!(d.config.vni, 4096);
        assert_eq!(d.config.port, 4789);
        assert_eq!(d.config.ifindex, 9);
        assert_eq!(d.config.mac, [0x66, 0, 10, 101, 14, 50]);
        assert_eq!((d.config.port_min, d.config.port_max), (32768, 60999), "the namespace's port range");
        assert_eq!(d.config.ttl, 64, "the namespace's default TTL");
        assert_eq!((d.config.tos, d.config.df), (0, DF_UNSET));
    }

    #[test]
    fn the_devices_own_settings_win_over_the_namespaces() {
        let mut link = calico_link();
        let v = link.vxlan.as_mut().unwrap();
        v.port_range = Some((4000, 5000));
        v.ttl = 8;
        v.tos = 1;
        v.df = DF_INHERIT;
        let d = VxlanDevice::from_link(&link, &UNDERLAY, &Sysctls::default()).unwrap().config;
        assert_eq!((d.port_min, d.port_max, d.ttl, d.tos, d.df), (4000, 5000, 8, 1, DF_INHERIT));
        link.vxlan.as_mut().unwrap().ttl_inherit = true;
        assert_eq!(
            VxlanDevice::from_link(&link, &UNDERLAY, &Sysctls::default()).unwrap().config.ttl,
            TTL_INHERIT
        );
    }

    #[test]
    fn a_device_the_programs_cannot_mimic_is_refused_with_the_reason() {
        let with = |change: fn(&mut LinkState)| {
            let mut link = calico_link();
            change(&mut link);
            VxlanDevice::from_link(&link, &UNDERLAY, &Sysctls::default()).unwrap_err().to_string()
        };
        assert_eq!(with(|l| l.up = false), "it is down");
        assert_eq!(with(|l| l.vxlan = None), "it is not a vxlan device");
        assert_eq!(
            with(|l| l.vxlan.as_mut().unwrap().local = Some(Ipv4Addr::new(10, 0, 0, 1).into())),
            "its local address 10.0.0.1 is not the node's"
        );
        assert_eq!(
            with(|l| l.vxlan.as_mut().unwrap().link = Some(7)),
            "it sends through ifindex 7, not the underlay"
        );
        assert!(with(|l| l.vxlan.as_mut().unwrap().collect_metadata = true).contains("external"));
        assert!(with(|l| l.vxlan.as_mut().unwrap().extensions = true).contains("GBP"));
    }

    #[test]
    fn a_route_resolves_through_neighbour_then_fdb_and_waits_for_both() {
        let mut vteps = Vteps::default();
        let d = device();
        let entry = |vteps: &Vteps| entry_via_device(TUNNEL2, EncapMode::Follow, Some(&d), vteps);
        assert_eq!(entry(&vteps), RouteValue::kernel(), "nothing known yet");
        assert!(vteps.apply(&neighbour(TUNNEL2, MAC2), true));
        assert_eq!(entry(&vteps), RouteValue::kernel(), "the FDB entry is missing");
        assert!(vteps.apply(&fdb(MAC2, NODE2), true));
        assert_eq!(entry(&vteps), RouteValue::vxlan(NODE2.octets(), MAC2));
        assert!(!vteps.apply(&fdb(MAC2, NODE2), true), "the same entry again changes nothing");
        assert_eq!(
            entry_via_device(TUNNEL2, EncapMode::Never, Some(&d), &vteps),
            RouteValue::remote(NODE2.octets(), false)
        );
        assert_eq!(entry_via_device(TUNNEL2, EncapMode::Follow, None, &vteps), RouteValue::kernel());
        assert!(vteps.apply(&neighbour(TUNNEL2, MAC2), false));
        assert_eq!(entry(&vteps), RouteValue::kernel(), "the neighbour went");
    }

    #[test]
    fn an_fdb_mac_with_several_or_special_destinations_stays_with_the_kernel() {
        let mut vteps = Vteps::default();
        vteps.apply(&neighbour(TUNNEL2, MAC2), true);
        vteps.apply(&fdb(MAC2, NODE2), true);
        vteps.apply(&fdb(MAC2, Ipv4Addr::new(10, 101, 14, 52)), true);
        assert_eq!(vteps.via_tunnel_address(TUNNEL2), None, "the kernel replicates to both");
        vteps.apply(&fdb(MAC2, Ipv4Addr::new(10, 101, 14, 52)), false);
        assert_eq!(vteps.via_tunnel_address(TUNNEL2), Some(Vtep { node: NODE2, mac: MAC2 }));
        vteps.apply(&Neighbour { overridden: true, ..fdb(MAC2, NODE2) }, true);
        assert_eq!(vteps.via_tunnel_address(TUNNEL2), None, "a per-entry port or VNI");
        assert!(!vteps.apply(&fdb([0; 6], NODE2), true), "the flooding entry is not a VTEP");
    }

    #[test]
    fn an_unresolved_neighbour_is_no_neighbour() {
        let mut vteps = Vteps::default();
        vteps.apply(&fdb(MAC2, NODE2), true);
        vteps.apply(&Neighbour { resolved: false, ..neighbour(TUNNEL2, MAC2) }, true);
        assert_eq!(vteps.via_tunnel_address(TUNNEL2), None);
    }

    #[test]
    fn a_route_via_the_underlay_finds_its_vtep_by_node() {
        let mut vteps = Vteps::default();
        let d = device();
        assert_eq!(entry_via_underlay(NODE2, Some(&d), &vteps), RouteValue::kernel());
        vteps.apply(&fdb(MAC2, NODE2), true);
        assert_eq!(entry_via_underlay(NODE2, Some(&d), &vteps), RouteValue::vxlan(NODE2.octets(), MAC2));
        assert_eq!(entry_via_underlay(NODE2, None, &vteps), RouteValue::kernel());
        vteps.apply(&fdb([0x66, 0, 0, 0, 0, 1], NODE2), true);
        assert_eq!(vteps.of_node(NODE2), None, "two VTEPs at one node: ambiguous");
        vteps.clear();
        assert_eq!(vteps, Vteps::default());
    }
}
