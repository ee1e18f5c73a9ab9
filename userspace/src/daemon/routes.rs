//! Kernel routes → fastpath's route table (pure).
//!
//! | kernel route | entry |
//! |---|---|
//! | `10.244.40.36 dev caliX scope link` | local endpoint (caliX's ifindex, the pod's MAC), or "kernel" until the MAC is known |
//! | `10.244.166.128/26 via 10.101.14.51 dev tunl0 onlink` | remote block, IPIP (plain with `--ipip never`) |
//! | `10.244.166.128/26 via 10.244.166.128 dev vxlan.calico onlink` | remote block, VXLAN to the node the neighbour and FDB entries name (plain with `--vxlan never`); "kernel" until both are known |
//! | `10.244.166.128/26 via 10.101.14.51 dev eth0` | remote block: IPIP with `--ipip always`, VXLAN with `--vxlan always`, or either with `cross-subnet` and the next hop outside the underlay subnet; else plain |
//! | `blackhole 10.244.40.0/26` | blackhole: an address in it with no pod is dropped |
//! | `local 10.244.40.0 dev vxlan.calico table local` (this node's tunnel address) | "kernel": the kernel delivers it to this host |
//! | anything else (default route, routes via the underlay's gateway, host and service routes, other tables) | none: the kernel routes it |
//!
//! Which table decides is the rules' business ([`crate::daemon::rules`]): a destination an ip rule
//! sends to another table is a "kernel" entry, and a pod whose interface has classic tc
//! configuration ([`Interface::classic_tc`]) a "kernel" entry too.

use std::collections::HashMap;

use fastpath_common::route::RouteValue;

use crate::{
    daemon::{
        ipip,
        rules::{Decision, Policy, Routes},
        vxlan::{self, Vteps, VxlanDevice},
    },
    model::{
        route::{KernelRoute, Prefix, RouteKindOf, Underlay, LOCAL_TABLE, MAIN_TABLE},
        rule::Rule,
    },
    modes::{Modes, UnderlayChoice},
};

/// An interface, as the mapping needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// For a pod's host-side veth: the pod's own MAC, once known.
    pub peer_mac: Option<[u8; 6]>,
    /// For a veth: (namespace id, ifindex there) of its other end.
    pub peer: Option<(i32, u32)>,
    /// For a pod's interface: its classic tc configuration, in words, when it has any (a qdisc
    /// other than the default, or a filter): only the kernel's path honours it.
    pub classic_tc: Option<String>,
    /// Whether the link is up. IPv4 drops the routes through a link that goes down; IPv6 keeps
    /// them, marked linkdown, and forwards nothing through it.
    pub up: bool,
}

/// Everything a route's meaning depends on besides the route itself.
pub struct Mapping<'a> {
    pub interfaces: &'a HashMap<u32, Interface>,
    pub underlay: &'a Underlay,
    pub modes: Modes,
    pub pod_prefix: &'a str,
    /// This node's `vxlan.calico`, if the programs can stand in for it.
    pub vxlan: Option<&'a VxlanDevice>,
    /// Its neighbour and FDB entries.
    pub vteps: &'a Vteps,
    /// Which table the rules send a pod's packet to.
    pub policy: &'a Policy,
}

/// The entry for one kernel route, or `None` when the kernel should keep routing it.
pub fn map_route(route: &KernelRoute, m: &Mapping) -> Option<RouteValue> {
    if route.table != MAIN_TABLE || route.prefix_len == 0 {
        return None;
    }
    match route.kind {
        RouteKindOf::Blackhole => Some(RouteValue::blackhole()),
        RouteKindOf::Unicast => map_unicast(route, m),
        RouteKindOf::Local | RouteKindOf::Throw | RouteKindOf::Other => None,
    }
}

fn map_unicast(route: &KernelRoute, m: &Mapping) -> Option<RouteValue> {
    let oif = route.oif?;
    let interface = m.interfaces.get(&oif)?;
    match route.gateway {
        None if route.prefix_len == 32 && interface.name.starts_with(m.pod_prefix) => {
            Some(match (&interface.classic_tc, interface.peer_mac) {
                (Some(_), _) => RouteValue::local_with_tc(oif),
                (None, Some(mac)) => RouteValue::local(oif, mac),
                (None, None) => RouteValue::local_pending(oif),
            })
        }
        Some(gateway) if interface.name == ipip::TUNNEL_DEVICE => Some(ipip::entry(gateway, m.modes.ipip)),
        // Felix routes a borrowed tunnel address with no gateway: the address is the neighbour.
        gateway if interface.name == vxlan::VXLAN_DEVICE => {
            let gateway = gateway.or((route.prefix_len == 32).then_some(route.dst))?;
            Some(vxlan::entry_via_device(gateway, m.modes.vxlan, m.vxlan, m.vteps))
        }
        Some(gateway) if oif == m.underlay.ifindex && Some(gateway) != m.underlay.gateway => {
            Some(match m.modes.via_underlay(m.underlay, gateway) {
                UnderlayChoice::Plain => RouteValue::remote(gateway.octets(), false),
                UnderlayChoice::Ipip => RouteValue::remote(gateway.octets(), true),
                UnderlayChoice::Vxlan => vxlan::entry_via_underlay(gateway, m.vxlan, m.vteps),
            })
        }
        _ => None,
    }
}

/// Whether `route` is this node's own address on a tunnel device (Calico's tunnel address, taken
/// from the node's block): the kernel delivers it to this host, whatever the block's blackhole
/// says, so the programs must hand it to the kernel.
fn is_tunnel_address(route: &KernelRoute, m: &Mapping) -> bool {
    route.table == LOCAL_TABLE
        && route.kind == RouteKindOf::Local
        && route.prefix_len == 32
        && route
            .oif
            .and_then(|oif| m.interfaces.get(&oif))
            .is_some_and(|i| i.name == ipip::TUNNEL_DEVICE || i.name == vxlan::VXLAN_DEVICE)
}

/// The entry for a prefix: this node's tunnel address is the kernel's (the local table comes
/// first); a destination the rules send to another table is the kernel's; else the main table's
/// preferred route (lowest metric, then TOS 0), mapped; `None` when the kernel keeps it.
pub fn entry_for(prefix: Prefix, kernel: &impl Routes, m: &Mapping) -> Option<RouteValue> {
    let routes = kernel.routes_of(&prefix);
    if routes.iter().any(|r| is_tunnel_address(r, m)) {
        return Some(RouteValue::kernel());
    }
    match m.policy.decide(prefix, kernel) {
        Decision::Main(route) => map_route(route, m),
        // A local pod keeps its interface in the entry, for the source check.
        Decision::Diverted(_) => Some(RouteValue::policy(pod_interface(routes, m).unwrap_or(0))),
        Decision::Unrouted => None,
    }
}

/// `rules` as a pod's packet meets them: arriving on a pod interface (named `pod_prefix`…), or
/// from the underlay or a tunnel device.
pub fn pod_policy(
    rules: &[Rule],
    interfaces: &HashMap<u32, Interface>,
    underlay: &Underlay,
    pod_prefix: &str,
) -> Policy {
    let underlay = interfaces.get(&underlay.ifindex).map(|i| i.name.as_str());
    Policy::new(rules, &|name| {
        name.starts_with(pod_prefix)
            || Some(name) == underlay
            || name == ipip::TUNNEL_DEVICE
            || name == vxlan::VXLAN_DEVICE
    })
}

/// The pod interface of a local pod's /32 among `routes`, if that is what they are.
fn pod_interface(routes: &[KernelRoute], m: &Mapping) -> Option<u32> {
    let route = crate::daemon::rules::preferred(routes, MAIN_TABLE)?;
    let oif = route.oif?;
    let pod = route.gateway.is_none()
        && route.prefix_len == 32
        && m.interfaces.get(&oif).is_some_and(|i| i.name.starts_with(m.pod_prefix));
    pod.then_some(oif)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::modes::{EncapMode, Modes};

    const CALI: u32 = 507;
    const ETH0: u32 = 2;
    const TUNL0: u32 = 3;
    const VXLAN: u32 = 9;
    const POD_MAC: [u8; 6] = [0x86, 0x79, 0x13, 0x2b, 0x26, 0x1d];

    fn interfaces(pod_mac: Option<[u8; 6]>) -> HashMap<u32, Interface> {
        HashMap::from([
            (
                CALI,
                Interface {
                    name: "cali0f293e89ca7".into(),
                    peer_mac: pod_mac,
                    peer: Some((17, 4)),
                    classic_tc: None,
                    up: true,
                },
            ),
            (ETH0, Interface { name: "eth0".into(), ..Interface::default() }),
            (TUNL0, Interface { name: "tunl0".into(), ..Interface::default() }),
            (VXLAN, Interface { name: "vxlan.calico".into(), ..Interface::default() }),
        ])
    }

    const UNDERLAY: Underlay = Underlay {
        ifindex: ETH0,
        addr: Ipv4Addr::new(10, 101, 14, 50),
        prefix_len: 28,
        gateway: Some(Ipv4Addr::new(10, 101, 14, 62)),
    };

    fn route(dst: [u8; 4], len: u8, oif: Option<u32>, gateway: Option<[u8; 4]>) -> KernelRoute {
        KernelRoute::main_unicast(dst.into(), len, oif, gateway.map(Ipv4Addr::from))
    }

    fn mapping<'a>(interfaces: &'a HashMap<u32, Interface>, ipip: EncapMode) -> Mapping<'a> {
        Mapping {
            interfaces,
            underlay: &UNDERLAY,
            modes: Modes { ipip, vxlan: EncapMode::Follow },
            pod_prefix: "cali",
            vxlan: None,
            vteps: &NO_VTEPS,
            policy: &DEFAULT_POLICY,
        }
    }

    static NO_VTEPS: std::sync::LazyLock<Vteps> = std::sync::LazyLock::new(Vteps::default);
    static DEFAULT_POLICY: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(Policy::default);

    /// Routes by prefix, as the kernel's picture holds them.
    struct Kernel(HashMap<Prefix, Vec<KernelRoute>>);

    impl Routes for Kernel {
        fn routes_of(&self, prefix: &Prefix) -> &[KernelRoute] {
            self.0.get(prefix).map_or(&[], Vec::as_slice)
        }
    }

    fn kernel(routes: &[KernelRoute]) -> Kernel {
        let mut map: HashMap<Prefix, Vec<KernelRoute>> = HashMap::new();
        for r in routes {
            map.entry((r.prefix_len, r.dst)).or_default().push(r.clone());
        }
        Kernel(map)
    }

    /// The entry of the (one) prefix of `routes`.
    fn entry_of(routes: &[KernelRoute], m: &Mapping) -> Option<RouteValue> {
        let prefix = routes.first().map_or((32, Ipv4Addr::UNSPECIFIED), |r| (r.prefix_len, r.dst));
        entry_for(prefix, &kernel(routes), m)
    }

    fn map(route: &KernelRoute, ipip: EncapMode, pod_mac: Option<[u8; 6]>) -> Option<RouteValue> {
        let interfaces = interfaces(pod_mac);
        map_route(route, &mapping(&interfaces, ipip))
    }

    #[test]
    fn a_pod_route_is_a_local_endpoint_once_its_mac_is_known() {
        let r = route([10, 244, 40, 36], 32, Some(CALI), None);
        assert_eq!(map(&r, EncapMode::Follow, Some(POD_MAC)), Some(RouteValue::local(CALI, POD_MAC)));
        assert_eq!(map(&r, EncapMode::Follow, None), Some(RouteValue::local_pending(CALI)));
    }

    #[test]
    fn a_tunl0_block_route_is_ipip_unless_never() {
        let r = route([10, 244, 166, 128], 26, Some(TUNL0), Some([10, 101, 14, 51]));
        assert_eq!(map(&r, EncapMode::Follow, None), Some(RouteValue::remote([10, 101, 14, 51], true)));
        assert_eq!(map(&r, EncapMode::Never, None), Some(RouteValue::remote([10, 101, 14, 51], false)));
    }

    #[test]
    fn an_underlay_block_route_follows_the_ipip_mode() {
        let same_subnet = route([10, 244, 166, 128], 26, Some(ETH0), Some([10, 101, 14, 51]));
        let other_subnet = route([10, 244, 7, 0], 26, Some(ETH0), Some([10, 101, 15, 9]));
        assert_eq!(
            map(&same_subnet, EncapMode::Follow, None),
            Some(RouteValue::remote([10, 101, 14, 51], false))
        );
        assert_eq!(
            map(&same_subnet, EncapMode::Always, None),
            Some(RouteValue::remote([10, 101, 14, 51], true))
        );
        assert_eq!(
            map(&same_subnet, EncapMode::CrossSubnet, None),
            Some(RouteValue::remote([10, 101, 14, 51], false))
        );
        assert_eq!(
            map(&other_subnet, EncapMode::CrossSubnet, None),
            Some(RouteValue::remote([10, 101, 15, 9], true))
        );
        assert_eq!(
            map(&same_subnet, EncapMode::Never, None),
            Some(RouteValue::remote([10, 101, 14, 51], false))
        );
    }

    #[test]
    fn the_local_block_blackhole_is_a_blackhole() {
        let r = KernelRoute { kind: RouteKindOf::Blackhole, ..route([10, 244, 40, 0], 26, None, None) };
        assert_eq!(map(&r, EncapMode::Follow, None), Some(RouteValue::blackhole()));
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
            assert_eq!(map(&r, EncapMode::Always, Some(POD_MAC)), None, "{r:?}");
        }
    }

    #[test]
    fn the_preferred_route_of_a_prefix_wins() {
        let interfaces = interfaces(Some(POD_MAC));
        let m = mapping(&interfaces, EncapMode::Follow);
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
            entry_of(&[worse.clone(), better, other_table], &m),
            Some(RouteValue::remote([10, 101, 14, 51], true))
        );
        assert_eq!(entry_of(&[worse], &m), Some(RouteValue::remote([10, 101, 14, 99], true)));
        assert_eq!(entry_of(&[], &m), None);
    }

    /// This node's device, and the tables Felix writes for node 10.101.14.51 (tunnel address
    /// 10.244.166.128) and node 10.101.15.9 (tunnel address 10.244.7.0), across a router.
    fn vxlan_node() -> (VxlanDevice, Vteps) {
        use crate::model::neighbour::{Neighbour, NeighbourTable};
        let link = crate::daemon::vxlan::felix_link(UNDERLAY.addr);
        assert_eq!(link.index, VXLAN);
        let device =
            VxlanDevice::from_link(&link, &UNDERLAY, &crate::daemon::vxlan::Sysctls::default()).unwrap();
        let mut vteps = Vteps::default();
        for (tunnel, mac, node) in [
            ([10, 244, 166, 128], [0x66, 0, 10, 101, 14, 51], [10, 101, 14, 51]),
            ([10, 244, 7, 0], [0x66, 0, 10, 101, 15, 9], [10, 101, 15, 9]),
        ] {
            let neighbour = Neighbour {
                ifindex: VXLAN,
                table: NeighbourTable::Ipv4,
                addr: Some(tunnel.into()),
                mac: Some(mac),
                resolved: true,
                overridden: false,
            };
            vteps.apply(&neighbour, true);
            vteps.apply(
                &Neighbour { table: NeighbourTable::Bridge, addr: Some(node.into()), ..neighbour },
                true,
            );
        }
        (device, vteps)
    }

    fn map_vxlan(route: &KernelRoute, modes: Modes, device: bool) -> Option<RouteValue> {
        let interfaces = interfaces(None);
        let (d, vteps) = vxlan_node();
        let m = Mapping {
            modes,
            vxlan: device.then_some(&d),
            vteps: &vteps,
            ..mapping(&interfaces, EncapMode::Follow)
        };
        entry_of(std::slice::from_ref(route), &m)
    }

    #[test]
    fn a_vxlan_calico_block_route_is_vxlan_to_the_node_its_neighbour_and_fdb_name() {
        let follow = Modes::default();
        let r = route([10, 244, 166, 128], 26, Some(VXLAN), Some([10, 244, 166, 128]));
        let vtep = [0x66, 0, 10, 101, 14, 51];
        assert_eq!(map_vxlan(&r, follow, true), Some(RouteValue::vxlan([10, 101, 14, 51], vtep)));
        let never = Modes { vxlan: EncapMode::Never, ..follow };
        assert_eq!(map_vxlan(&r, never, true), Some(RouteValue::remote([10, 101, 14, 51], false)));
        assert_eq!(
            map_vxlan(&r, follow, false),
            Some(RouteValue::kernel()),
            "a device the programs cannot mimic"
        );
        let unknown = route([10, 244, 9, 0], 26, Some(VXLAN), Some([10, 244, 9, 0]));
        assert_eq!(map_vxlan(&unknown, follow, true), Some(RouteValue::kernel()), "no neighbour entry yet");
        // Felix's route to a borrowed tunnel address has no gateway.
        let borrowed = route([10, 244, 7, 0], 32, Some(VXLAN), None);
        assert_eq!(
            map_vxlan(&borrowed, follow, true),
            Some(RouteValue::vxlan([10, 101, 15, 9], [0x66, 0, 10, 101, 15, 9]))
        );
    }

    #[test]
    fn vxlan_always_and_cross_subnet_encapsulate_routes_via_the_underlay() {
        let same = route([10, 244, 166, 128], 26, Some(ETH0), Some([10, 101, 14, 51]));
        let across = route([10, 244, 7, 0], 26, Some(ETH0), Some([10, 101, 15, 9]));
        let always = Modes { vxlan: EncapMode::Always, ..Modes::default() };
        assert_eq!(
            map_vxlan(&same, always, true),
            Some(RouteValue::vxlan([10, 101, 14, 51], [0x66, 0, 10, 101, 14, 51]))
        );
        let cross = Modes { vxlan: EncapMode::CrossSubnet, ..Modes::default() };
        assert_eq!(map_vxlan(&same, cross, true), Some(RouteValue::remote([10, 101, 14, 51], false)));
        assert_eq!(
            map_vxlan(&across, cross, true),
            Some(RouteValue::vxlan([10, 101, 15, 9], [0x66, 0, 10, 101, 15, 9]))
        );
        let nobody = route([10, 244, 8, 0], 26, Some(ETH0), Some([10, 101, 14, 53]));
        assert_eq!(
            map_vxlan(&nobody, always, true),
            Some(RouteValue::kernel()),
            "no FDB entry for that node"
        );
        assert_eq!(
            map_vxlan(&same, Modes::default(), true),
            Some(RouteValue::remote([10, 101, 14, 51], false))
        );
    }

    #[test]
    fn this_nodes_tunnel_address_is_the_kernels_whatever_the_blackhole_says() {
        let local = KernelRoute {
            kind: RouteKindOf::Local,
            table: LOCAL_TABLE,
            ..route([10, 244, 40, 0], 32, Some(VXLAN), None)
        };
        assert_eq!(map_vxlan(&local, Modes::default(), true), Some(RouteValue::kernel()));
        let on_tunl0 = KernelRoute { oif: Some(TUNL0), ..local.clone() };
        assert_eq!(map_vxlan(&on_tunl0, Modes::default(), true), Some(RouteValue::kernel()));
        let node_address = KernelRoute { oif: Some(ETH0), ..local };
        assert_eq!(map_vxlan(&node_address, Modes::default(), true), None, "only tunnel devices' addresses");
    }

    #[test]
    fn a_pod_with_classic_tc_is_the_kernels_both_ways() {
        let mut interfaces = interfaces(Some(POD_MAC));
        interfaces.get_mut(&CALI).unwrap().classic_tc = Some("qdisc tbf 8001: root".into());
        let r = route([10, 244, 40, 36], 32, Some(CALI), None);
        assert_eq!(
            map_route(&r, &mapping(&interfaces, EncapMode::Follow)),
            Some(RouteValue::local_with_tc(CALI))
        );
    }

    #[test]
    fn a_destination_a_rule_sends_elsewhere_is_the_kernels() {
        use crate::model::rule::default_rules;
        let interfaces = interfaces(Some(POD_MAC));
        let mut rules = default_rules();
        rules.push(Rule { invert: true, fwmark: Some((0x10_0000, 0x10_0000)), ..Rule::lookup(99, 1) });
        let policy = Policy::new(&rules, &|_| true);
        let m = Mapping { policy: &policy, ..mapping(&interfaces, EncapMode::Follow) };
        let block = route([10, 244, 166, 128], 26, Some(TUNL0), Some([10, 101, 14, 51]));
        let wireguard = KernelRoute { table: 1, gateway: None, oif: Some(99), ..block.clone() };
        let pod = route([10, 244, 40, 36], 32, Some(CALI), None);
        let throw_pod = KernelRoute { table: 1, kind: RouteKindOf::Throw, ..pod.clone() };
        let k = kernel(&[block.clone(), wireguard, pod.clone(), throw_pod]);
        assert_eq!(entry_for((26, block.dst), &k, &m), Some(RouteValue::policy(0)));
        assert_eq!(
            entry_for((32, pod.dst), &k, &m),
            Some(RouteValue::local(CALI, POD_MAC)),
            "thrown back to main"
        );
        let diverted_pod = kernel(&[pod.clone(), KernelRoute { table: 1, oif: Some(99), ..pod.clone() }]);
        assert_eq!(
            entry_for((32, pod.dst), &diverted_pod, &m),
            Some(RouteValue::policy(CALI)),
            "its interface kept"
        );
    }

    #[test]
    fn underlay_subnet_membership() {
        assert!(UNDERLAY.contains(Ipv4Addr::new(10, 101, 14, 61)));
        assert!(!UNDERLAY.contains(Ipv4Addr::new(10, 101, 14, 64)));
        let everything = Underlay { prefix_len: 0, ..UNDERLAY };
        assert!(everything.contains(Ipv4Addr::new(8, 8, 8, 8)));
    }
}
