//! Kernel routes → fastpath's route table (pure).
//!
//! | kernel route | entry |
//! |---|---|
//! | `10.244.40.36 dev caliX scope link` | local endpoint (caliX's ifindex, the pod's MAC), or "kernel" until the MAC is known |
//! | `10.244.166.128/26 via 10.101.14.51 dev tunl0 onlink` | remote block, IPIP (plain with `--ipip never`) |
//! | `10.244.166.128/26 via 10.101.14.51 dev eth0` | remote block: IPIP with `--ipip always`, or `cross-subnet` and the next hop outside the underlay subnet; else plain |
//! | `blackhole 10.244.40.0/26` | blackhole: an address in it with no pod is dropped |
//! | anything else (default route, routes via the underlay's gateway, host and service routes, other tables) | none: the kernel routes it |

use std::{collections::HashMap, net::Ipv4Addr};

use fastpath_common::route::RouteValue;

/// The main routing table's id.
pub const MAIN_TABLE: u32 = 254;
/// Calico's IPIP device; this kernel need not have it for its routes to mean "IPIP".
pub const TUNNEL_DEVICE: &str = "tunl0";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKindOf {
    Unicast,
    Blackhole,
    Other,
}

/// An IPv4 route from the kernel, reduced to what the mapping needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KernelRoute {
    pub dst: Ipv4Addr,
    pub prefix_len: u8,
    pub kind: RouteKindOf,
    pub table: u32,
    pub priority: u32,
    pub tos: u8,
    pub oif: Option<u32>,
    pub gateway: Option<Ipv4Addr>,
}

/// What identifies a route in the kernel: a second route with the same id replaces the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId {
    pub dst: Ipv4Addr,
    pub prefix_len: u8,
    pub table: u32,
    pub tos: u8,
    pub priority: u32,
}

impl KernelRoute {
    pub fn id(&self) -> RouteId {
        RouteId {
            dst: self.dst,
            prefix_len: self.prefix_len,
            table: self.table,
            tos: self.tos,
            priority: self.priority,
        }
    }
}

/// A prefix of the route table: (length, address).
pub type Prefix = (u8, Ipv4Addr);

/// When to encapsulate toward another node (`--ipip`); the numbers are what the agent map stores.
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IpipMode {
    /// As the routes say: via tunl0 is IPIP, via the underlay is plain.
    #[default]
    Follow,
    /// Every remote block.
    Always,
    /// Remote blocks whose node is outside the underlay subnet (Calico's CrossSubnet).
    CrossSubnet,
    /// None: remote blocks are routed plain, even via tunl0.
    Never,
}

impl IpipMode {
    /// The mode stored as `code` in the agent map (`mode as u32`).
    pub fn from_code(code: u32) -> Option<Self> {
        [Self::Follow, Self::Always, Self::CrossSubnet, Self::Never].into_iter().find(|m| *m as u32 == code)
    }

    /// The `--ipip` value that selects this mode.
    pub fn name(self) -> &'static str {
        match self {
            Self::Follow => "follow",
            Self::Always => "always",
            Self::CrossSubnet => "cross-subnet",
            Self::Never => "never",
        }
    }
}

/// An interface, as the mapping needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// For a pod's host-side veth: the pod's own MAC, once known.
    pub peer_mac: Option<[u8; 6]>,
    /// For a veth: (namespace id, ifindex there) of its other end.
    pub peer: Option<(i32, u32)>,
}

/// The node's underlay interface and address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Underlay {
    pub ifindex: u32,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    /// The default route's gateway: routes through it lead out of the cluster, not to a node.
    pub gateway: Option<Ipv4Addr>,
}

impl Underlay {
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0);
        u32::from(addr) & mask == u32::from(self.addr) & mask
    }
}

/// Everything a route's meaning depends on besides the route itself.
pub struct Mapping<'a> {
    pub interfaces: &'a HashMap<u32, Interface>,
    pub underlay: &'a Underlay,
    pub ipip: IpipMode,
    pub pod_prefix: &'a str,
}

/// The entry for one kernel route, or `None` when the kernel should keep routing it.
pub fn map_route(route: &KernelRoute, m: &Mapping) -> Option<RouteValue> {
    if route.table != MAIN_TABLE || route.prefix_len == 0 {
        return None;
    }
    match route.kind {
        RouteKindOf::Blackhole => Some(RouteValue::blackhole()),
        RouteKindOf::Unicast => map_unicast(route, m),
        RouteKindOf::Other => None,
    }
}

fn map_unicast(route: &KernelRoute, m: &Mapping) -> Option<RouteValue> {
    let oif = route.oif?;
    let interface = m.interfaces.get(&oif)?;
    match route.gateway {
        None if route.prefix_len == 32 && interface.name.starts_with(m.pod_prefix) => {
            Some(match interface.peer_mac {
                Some(mac) => RouteValue::local(oif, mac),
                None => RouteValue::local_pending(oif),
            })
        }
        Some(gateway) if interface.name == TUNNEL_DEVICE => {
            Some(RouteValue::remote(gateway.octets(), m.ipip != IpipMode::Never))
        }
        Some(gateway) if oif == m.underlay.ifindex && Some(gateway) != m.underlay.gateway => {
            let encap = match m.ipip {
                IpipMode::Always => true,
                IpipMode::CrossSubnet => !m.underlay.contains(gateway),
                IpipMode::Follow | IpipMode::Never => false,
            };
            Some(RouteValue::remote(gateway.octets(), encap))
        }
        _ => None,
    }
}

/// The entry for a prefix: the kernel's preferred route among `routes` (main table, lowest
/// metric, then TOS 0), mapped; `None` when the kernel keeps it.
pub fn entry_for(routes: &[KernelRoute], m: &Mapping) -> Option<RouteValue> {
    let preferred = routes.iter().filter(|r| r.table == MAIN_TABLE).min_by_key(|r| (r.priority, r.tos))?;
    map_route(preferred, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALI: u32 = 507;
    const ETH0: u32 = 2;
    const TUNL0: u32 = 3;
    const POD_MAC: [u8; 6] = [0x86, 0x79, 0x13, 0x2b, 0x26, 0x1d];

    fn interfaces(pod_mac: Option<[u8; 6]>) -> HashMap<u32, Interface> {
        HashMap::from([
            (CALI, Interface { name: "cali0f293e89ca7".into(), peer_mac: pod_mac, peer: Some((17, 4)) }),
            (ETH0, Interface { name: "eth0".into(), ..Interface::default() }),
            (TUNL0, Interface { name: "tunl0".into(), ..Interface::default() }),
        ])
    }

    const UNDERLAY: Underlay = Underlay {
        ifindex: ETH0,
        addr: Ipv4Addr::new(10, 101, 14, 50),
        prefix_len: 28,
        gateway: Some(Ipv4Addr::new(10, 101, 14, 62)),
    };

    fn route(dst: [u8; 4], len: u8, oif: Option<u32>, gateway: Option<[u8; 4]>) -> KernelRoute {
        KernelRoute {
            dst: dst.into(),
            prefix_len: len,
            kind: RouteKindOf::Unicast,
            table: MAIN_TABLE,
            priority: 0,
            tos: 0,
            oif,
            gateway: gateway.map(Ipv4Addr::from),
        }
    }

    fn map(route: &KernelRoute, ipip: IpipMode, pod_mac: Option<[u8; 6]>) -> Option<RouteValue> {
        let interfaces = interfaces(pod_mac);
        map_route(route, &Mapping { interfaces: &interfaces, underlay: &UNDERLAY, ipip, pod_prefix: "cali" })
    }

    #[test]
    fn a_pod_route_is_a_local_endpoint_once_its_mac_is_known() {
        let r = route([10, 244, 40, 36], 32, Some(CALI), None);
        assert_eq!(map(&r, IpipMode::Follow, Some(POD_MAC)), Some(RouteValue::local(CALI, POD_MAC)));
        assert_eq!(map(&r, IpipMode::Follow, None), Some(RouteValue::local_pending(CALI)));
    }

    #[test]
    fn a_tunl0_block_route_is_ipip_unless_never() {
        let r = route([10, 244, 166, 128], 26, Some(TUNL0), Some([10, 101, 14, 51]));
        assert_eq!(map(&r, IpipMode::Follow, None), Some(RouteValue::remote([10, 101, 14, 51], true)));
        assert_eq!(map(&r, IpipMode::Never, None), Some(RouteValue::remote([10, 101, 14, 51], false)));
    }

    #[test]
    fn an_underlay_block_route_follows_the_ipip_mode() {
        let same_subnet = route([10, 244, 166, 128], 26, Some(ETH0), Some([10, 101, 14, 51]));
        let other_subnet = route([10, 244, 7, 0], 26, Some(ETH0), Some([10, 101, 15, 9]));
        assert_eq!(
            map(&same_subnet, IpipMode::Follow, None),
            Some(RouteValue::remote([10, 101, 14, 51], false))
        );
        assert_eq!(
            map(&same_subnet, IpipMode::Always, None),
            Some(RouteValue::remote([10, 101, 14, 51], true))
        );
        assert_eq!(
            map(&same_subnet, IpipMode::CrossSubnet, None),
            Some(RouteValue::remote([10, 101, 14, 51], false))
        );
        assert_eq!(
            map(&other_subnet, IpipMode::CrossSubnet, None),
            Some(RouteValue::remote([10, 101, 15, 9], true))
        );
        assert_eq!(
            map(&same_subnet, IpipMode::Never, None),
            Some(RouteValue::remote([10, 101, 14, 51], false))
        );
    }

    #[test]
    fn the_local_block_blackhole_is_a_blackhole() {
        let r = KernelRoute { kind: RouteKindOf::Blackhole, ..route([10, 244, 40, 0], 26, None, None) };
        assert_eq!(map(&r, IpipMode::Follow, None), Some(RouteValue::blackhole()));
    }

    #[test]
    fn everything_else_stays_with_the_kernel() {
        for r in [
            route([0, 0, 0, 0], 0, Some(ETH0), Some([10, 101, 14, 62])),
            route([10, 96, 0, 0], 12, Some(ETH0), Some([10, 101, 14, 62])),
            route([10, 101, 14, 48], 28, Some(ETH0), None),
            route([10, 244, 40, 36], 32, Some(CALI), Some([10, 0, 0, 1])),
            route([10, 244, 40, 0], 24, Some(CALI), None),
            route([172, 17, 0, 0], 16, Some(99), None),
            KernelRoute { table: 255, ..route([10, 244, 40, 36], 32, Some(CALI), None) },
            KernelRoute { kind: RouteKindOf::Other, ..route([10, 101, 14, 50], 32, Some(ETH0), None) },
        ] {
            assert_eq!(map(&r, IpipMode::Always, Some(POD_MAC)), None, "{r:?}");
        }
    }

    #[test]
    fn the_preferred_route_of_a_prefix_wins() {
        let interfaces = interfaces(Some(POD_MAC));
        let m = Mapping {
            interfaces: &interfaces,
            underlay: &UNDERLAY,
            ipip: IpipMode::Follow,
            pod_prefix: "cali",
        };
        let worse = KernelRoute {
            priority: 100,
            ..route([10, 244, 166, 128], 26, Some(TUNL0), Some([10, 101, 14, 99]))
        };
        let better = route([10, 244, 166, 128], 26, Some(TUNL0), Some([10, 101, 14, 51]));
        let other_table = KernelRoute {
            table: 100,
            ..route([10, 244, 166, 128], 26, Some(TUNL0), Some([10, 101, 14, 98]))
        };
        assert_eq!(
            entry_for(&[worse.clone(), better, other_table], &m),
            Some(RouteValue::remote([10, 101, 14, 51], true))
        );
        assert_eq!(entry_for(&[worse], &m), Some(RouteValue::remote([10, 101, 14, 99], true)));
        assert_eq!(entry_for(&[], &m), None);
    }

    #[test]
    fn ipip_modes_round_trip_through_their_codes() {
        for mode in [IpipMode::Follow, IpipMode::Always, IpipMode::CrossSubnet, IpipMode::Never] {
            assert_eq!(IpipMode::from_code(mode as u32), Some(mode));
        }
        assert_eq!(IpipMode::from_code(4), None);
        assert_eq!(IpipMode::CrossSubnet.name(), "cross-subnet");
    }

    #[test]
    fn underlay_subnet_membership() {
        assert!(UNDERLAY.contains(Ipv4Addr::new(10, 101, 14, 61)));
        assert!(!UNDERLAY.contains(Ipv4Addr::new(10, 101, 14, 64)));
        let everything = Underlay { prefix_len: 0, ..UNDERLAY };
        assert!(everything.contains(Ipv4Addr::new(8, 8, 8, 8)));
    }
}
