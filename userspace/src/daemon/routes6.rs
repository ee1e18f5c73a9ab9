//! Kernel IPv6 routes → the programs' IPv6 route table, `FP_ROUTES6` (pure).
//!
//! | kernel (main table, the preferred route of its prefix) | entry |
//! |---|---|
//! | `fd5f:a1b2:c3d4::af4:a680/122 via fd00:101::a65:e33 dev eth0` (a global gateway on the underlay that is not its default route's) | remote block, plain to that node |
//! | `blackhole fd5f:a1b2:c3d4::af4:2800/122` (this node's block) | blackhole: an address in it with no pod is dropped |
//! | `fd5f:a1b2:c3d4::af4:a680/122 via fd5f:a1b2:c3d4::af4:a680 dev vxlan-v6.calico onlink` | remote block in IPv6 VXLAN, to the node the device's neighbour and FDB entries name; "kernel" until both are known, or while the programs cannot stand in for the device |
//! | an address of this host (`local … table local`) inside one of the above | "kernel": the kernel delivers it to this host |
//! | anything else (the default route, the underlay's subnet, a pod's /128, which is `FP_ENDPOINTS6`'s) | none: the kernel routes it |
//!
//! `FP_PEERS6` holds the nodes the IPv6 VXLAN entries send to: their IPv6 VXLAN is taken apart.
//!
//! Nothing at all while the node has no IPv6 address on the underlay (the programs could not ask
//! the FIB from it) or the IPv6 rules are not the kernel's defaults (a rule may send a pod's
//! packets to another table: every IPv6 packet is then the kernel's, as for `FP_ENDPOINTS6`).

use std::{collections::BTreeMap, net::Ipv6Addr};

use fastpath_common::{
    route::{RouteKind, ROUTE_F_VXLAN},
    route6::RouteValue6,
};

use crate::{
    daemon::{endpoints6::rules_are_defaults, kernel::KernelState, node::Node, vxlan::VXLAN6_DEVICE},
    model::route::{contains6 as contains, KernelRoute6, Prefix6, RouteKindOf, LOCAL_TABLE, MAIN_TABLE},
};

/// The IPv6 route entries the kernel's state calls for, by prefix.
pub fn wanted(kernel: &KernelState, node: &Node) -> BTreeMap<Prefix6, RouteValue6> {
    if node.ipv6.is_none() || !rules_are_defaults(&kernel.rules6) {
        return BTreeMap::new();
    }
    let default_gateway = kernel
        .routes6()
        .filter(|((len, _), _)| *len == 0)
        .filter_map(|(_, routes)| preferred(routes))
        .find(|r| r.oif == Some(node.underlay.ifindex))
        .and_then(|r| r.gateway);
    let mut wanted: BTreeMap<Prefix6, RouteValue6> = kernel
        .routes6()
        .filter_map(|(prefix, routes)| {
            let route = preferred(routes)?;
            Some((*prefix, entry(route, kernel, node, default_gateway)?))
        })
        .collect();
    // This host's own addresses are delivered here, whatever block they lie in.
    let own: Vec<Ipv6Addr> = kernel
        .routes6()
        .flat_map(|(_, routes)| routes)
        .filter(|r| r.table == LOCAL_TABLE && r.kind == RouteKindOf::Local && r.prefix_len == 128)
        .map(|r| r.dst)
        .filter(|addr| wanted.keys().any(|prefix| contains(*prefix, *addr)))
        .collect();
    for addr in own {
        wanted.insert((128, addr), RouteValue6::kernel(0));
    }
    wanted
}

/// The route main's lookup picks among a prefix's routes: the lowest metric.
fn preferred(routes: &[KernelRoute6]) -> Option<&KernelRoute6> {
    routes.iter().filter(|r| r.table == MAIN_TABLE).min_by_key(|r| r.priority)
}

fn entry(
    route: &KernelRoute6,
    kernel: &KernelState,
    node: &Node,
    default_gateway: Option<Ipv6Addr>,
) -> Option<RouteValue6> {
    match route.kind {
        RouteKindOf::Blackhole => return Some(RouteValue6::blackhole()),
        RouteKindOf::Unicast => {}
        _ => return None,
    }
    let interface = kernel.interfaces.get(&route.oif?)?;
    if interface.name == VXLAN6_DEVICE {
        return Some(via_vxlan6(route, kernel, node));
    }
    let gateway = route.gateway?;
    let plain = route.oif == Some(node.underlay.ifindex)
        && interface.up
        && route.prefix_len > 0
        && !gateway.is_unicast_link_local()
        && Some(gateway) != default_gateway;
    plain.then(|| RouteValue6::plain(gateway.octets()))
}

/// `BLOCK via TUNNEL_ADDRESS dev vxlan-v6.calico onlink`: IPv6 VXLAN to the node the neighbour
/// and FDB entries lead to, or the kernel's until both are known or while the device is one the
/// programs cannot stand in for.
fn via_vxlan6(route: &KernelRoute6, kernel: &KernelState, node: &Node) -> RouteValue6 {
    // A route to a tunnel address itself may have no gateway: the address is the neighbour.
    let gateway = route.gateway.or((route.prefix_len == 128).then_some(route.dst));
    match (gateway.and_then(|g| kernel.vteps6.via_tunnel_address(g)), node.usable_vxlan6()) {
        (Some(vtep), Some(_)) => RouteValue6::vxlan(vtep.node.octets(), vtep.mac),
        _ => RouteValue6::kernel(0),
    }
}

/// The nodes whose IPv6 VXLAN this node takes apart (`FP_PEERS6`): those its IPv6 VXLAN
/// entries send to.
pub fn peers(routes: &BTreeMap<Prefix6, RouteValue6>) -> BTreeMap<Ipv6Addr, u32> {
    routes
        .values()
        .filter(|r| r.kind == RouteKind::RemoteBlock as u32 && r.flags & ROUTE_F_VXLAN != 0)
        .map(|r| (Ipv6Addr::from(r.next_hop), 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::{
        daemon::{
            routes::Interface,
            vxlan::{Sysctls, Unusable, VxlanDevice},
        },
        model::{
            link::{Address, Address6, LinkState, VxlanLink},
            neighbour::{Neighbour, NeighbourTable},
            route::KernelRoute,
            rule::Rule,
        },
    };

    const ETH0: u32 = 2;
    const CALI: u32 = 7;
    const VXLAN6: u32 = 9;
    const NODE: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x101, 0, 0, 0, 0, 0x0a65, 0x0e32);
    const PEER: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x101, 0, 0, 0, 0, 0x0a65, 0x0e33);
    const ROUTER: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x101, 0, 0, 0, 0, 0x0a65, 0x0e3e);
    const OWN_BLOCK: Ipv6Addr = Ipv6Addr::new(0xfd5f, 0xa1b2, 0xc3d4, 0, 0, 0, 0x0af4, 0x2800);
    const PEER_BLOCK: Ipv6Addr = Ipv6Addr::new(0xfd5f, 0xa1b2, 0xc3d4, 0, 0, 0, 0x0af4, 0xa680);
    const POD: Ipv6Addr = Ipv6Addr::new(0xfd5f, 0xa1b2, 0xc3d4, 0, 0, 0, 0x0af4, 0x2824);

    fn node(ipv6: Option<Ipv6Addr>) -> Node {
        let eth0 =
            LinkState { index: ETH0, name: "eth0".into(), mtu: 1500, up: true, ..LinkState::default() };
        let address = Address { index: ETH0, addr: std::net::Ipv4Addr::new(10, 101, 14, 50), prefix_len: 28 };
        let node =
            crate::daemon::node::choose(Some("eth0"), &[eth0], &[address], &[], Sysctls::default()).unwrap();
        let addresses: Vec<Address6> =
            ipv6.into_iter().map(|addr| Address6 { index: ETH0, addr, prefix_len: 124 }).collect();
        node.with_ipv6(&addresses, &[])
    }

    fn route(dst: Ipv6Addr, len: u8, oif: u32, gateway: Option<Ipv6Addr>) -> KernelRoute6 {
        KernelRoute::main_unicast(dst, len, Some(oif), gateway)
    }

    fn kernel(routes: Vec<KernelRoute6>) -> KernelState {
        let mut state = KernelState::default().with_ipv6(routes, Vec::new());
        let interface = |name: &str| Interface { name: name.into(), up: true, ..Interface::default() };
        state.interfaces = HashMap::from([
            (ETH0, interface("eth0")),
            (CALI, interface("cali0f293e89ca7")),
            (VXLAN6, interface(VXLAN6_DEVICE)),
        ]);
        state
    }

    fn calico_node() -> Vec<KernelRoute6> {
        vec![
            route(Ipv6Addr::UNSPECIFIED, 0, ETH0, Some(ROUTER)),
            route(Ipv6Addr::new(0xfd00, 0x101, 0, 0, 0, 0, 0x0a65, 0x0e30), 124, ETH0, None),
            route(PEER_BLOCK, 122, ETH0, Some(PEER)),
            KernelRoute { kind: RouteKindOf::Blackhole, oif: None, ..route(OWN_BLOCK, 122, ETH0, None) },
            route(POD, 128, CALI, None),
            KernelRoute { kind: RouteKindOf::Local, table: LOCAL_TABLE, ..route(NODE, 128, ETH0, None) },
        ]
    }

    #[test]
    fn blocks_via_the_underlay_are_plain_and_this_nodes_is_a_blackhole() {
        let wanted = wanted(&kernel(calico_node()), &node(Some(NODE)));
        assert_eq!(
            wanted,
            BTreeMap::from([
                ((122, PEER_BLOCK), RouteValue6::plain(PEER.octets())),
                ((122, OWN_BLOCK), RouteValue6::blackhole()),
            ]),
            "not the default route, the underlay's subnet or a pod's /128"
        );
    }

    #[test]
    fn without_an_ipv6_address_or_with_a_rule_nothing_is_written() {
        assert!(wanted(&kernel(calico_node()), &node(None)).is_empty());
        let mut state = kernel(calico_node());
        state.rules6 = vec![Rule::lookup(99, 1)];
        assert!(wanted(&state, &node(Some(NODE))).is_empty());
    }

    #[test]
    fn a_vxlan6_block_is_the_kernels_and_so_is_a_local_address_inside_a_block() {
        let tunnel_ip = Ipv6Addr::new(0xfd5f, 0xa1b2, 0xc3d4, 0, 0, 0, 0x0af4, 0x2800);
        let mut routes = calico_node();
        routes[2] = KernelRoute { ..route(PEER_BLOCK, 122, VXLAN6, Some(PEER_BLOCK)) };
        routes.push(KernelRoute {
            kind: RouteKindOf::Local,
            table: LOCAL_TABLE,
            ..route(tunnel_ip, 128, VXLAN6, None)
        });
        let wanted = wanted(&kernel(routes), &node(Some(NODE)));
        assert_eq!(wanted.get(&(122, PEER_BLOCK)), Some(&RouteValue6::kernel(0)));
        assert_eq!(wanted.get(&(128, tunnel_ip)), Some(&RouteValue6::kernel(0)));
        assert_eq!(wanted.get(&(128, NODE)), None, "outside every entry: no route reaches it anyway");
    }

    /// Felix's `vxlan-v6.calico` on the node with IPv6 address `local`.
    fn vxlan6_link(local: Ipv6Addr) -> LinkState {
        LinkState {
            index: VXLAN6,
            name: VXLAN6_DEVICE.into(),
            mac: Some([0x66, 6, 10, 101, 14, 50]),
            mtu: 1430,
            up: true,
            vxlan: Some(VxlanLink {
                vni: Some(4096),
                port: Some(4789),
                local: Some(local.into()),
                link: Some(ETH0),
                ..VxlanLink::default()
            }),
            ..LinkState::default()
        }
    }

    #[test]
    fn a_vxlan6_block_follows_its_neighbour_and_fdb_entries_and_its_node_is_a_peer() {
        let peer_mac = [0x66, 6, 10, 101, 14, 51];
        let mut routes = calico_node();
        routes[2] = route(PEER_BLOCK, 122, VXLAN6, Some(PEER_BLOCK));
        let mut state = kernel(routes);
        let node = node(Some(NODE));
        let node = Node {
            vxlan6: Some(Ok(VxlanDevice::sending_from(
                &vxlan6_link(NODE),
                NODE.into(),
                ETH0,
                &Sysctls::default(),
            )
            .unwrap())),
            ..node
        };
        assert_eq!(
            wanted(&state, &node).get(&(122, PEER_BLOCK)),
            Some(&RouteValue6::kernel(0)),
            "nothing known yet"
        );
        let neighbour = Neighbour {
            ifindex: VXLAN6,
            table: NeighbourTable::Ipv6,
            addr: Some(PEER_BLOCK.into()),
            mac: Some(peer_mac),
            resolved: true,
            overridden: false,
        };
        state.vteps6.apply(&neighbour, true);
        assert_eq!(
            wanted(&state, &node).get(&(122, PEER_BLOCK)),
            Some(&RouteValue6::kernel(0)),
            "no FDB entry yet"
        );
        state
            .vteps6
            .apply(&Neighbour { table: NeighbourTable::Bridge, addr: Some(PEER.into()), ..neighbour }, true);
        let routes = wanted(&state, &node);
        assert_eq!(routes.get(&(122, PEER_BLOCK)), Some(&RouteValue6::vxlan(PEER.octets(), peer_mac)));
        assert_eq!(peers(&routes), BTreeMap::from([(PEER, 1)]));
        // A device the programs cannot stand in for: the kernel's, and no peer.
        let unusable = Node { vxlan6: Some(Err(Unusable::Down)), ..node };
        let routes = wanted(&state, &unusable);
        assert_eq!(routes.get(&(122, PEER_BLOCK)), Some(&RouteValue6::kernel(0)));
        assert!(peers(&routes).is_empty());
    }

    #[test]
    fn link_local_gateways_and_down_underlays_are_left_to_the_kernel() {
        let mut routes = calico_node();
        routes[2] = route(PEER_BLOCK, 122, ETH0, Some("fe80::1".parse().unwrap()));
        assert_eq!(wanted(&kernel(routes), &node(Some(NODE))).get(&(122, PEER_BLOCK)), None);
        let mut state = kernel(calico_node());
        state.interfaces.get_mut(&ETH0).unwrap().up = false;
        assert_eq!(wanted(&state, &node(Some(NODE))).get(&(122, PEER_BLOCK)), None);
    }

    #[test]
    fn prefixes_contain_their_addresses() {
        assert!(contains((122, OWN_BLOCK), POD));
        assert!(!contains((122, PEER_BLOCK), POD));
        assert!(contains((0, Ipv6Addr::UNSPECIFIED), POD));
        assert!(contains((128, POD), POD));
        assert!(!contains((128, POD), OWN_BLOCK));
    }
}
