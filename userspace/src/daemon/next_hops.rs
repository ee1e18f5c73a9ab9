//! Which kernel events may change how the underlay reaches the other nodes (pure). The programs
//! keep what `bpf_fib_lookup` said about each next hop (`FP_NEXT_HOPS`) under a generation of
//! this node's settings; an event that may change a FIB answer bumps it, and every next hop is
//! asked of the FIB again on its next packet.

use std::collections::HashMap;

use crate::{
    daemon::{netlink::Event, routes::Interface},
    model::neighbour::NeighbourTable,
};

/// Whether `event` may change a FIB answer for a next hop on the underlay `underlay_ifindex`: a
/// neighbour of the underlay changed, a route did (a pod's own `/32`, the churn of every pod
/// start and stop, cannot reach another node), or the underlay itself did. Anything we cannot
/// tell about counts as a change: a needless bump costs one FIB lookup per next hop.
pub fn may_change(
    event: &Event,
    underlay_ifindex: u32,
    interfaces: &HashMap<u32, Interface>,
    pod_prefix: &str,
) -> bool {
    match event {
        // Either family's neighbours: FP_NEXT_HOPS6 shares the generation.
        Event::NeighbourPresent(n) | Event::NeighbourGone(n) => {
            n.table != NeighbourTable::Bridge && n.ifindex == underlay_ifindex
        }
        Event::RouteAdded(route) | Event::RouteRemoved(route) => {
            !(route.prefix_len == 32 && via_pod(route.oif, interfaces, pod_prefix))
        }
        Event::Route6Added(route) | Event::Route6Removed(route) => {
            !(route.prefix_len == 128 && via_pod(route.oif, interfaces, pod_prefix))
        }
        Event::LinkPresent(link) | Event::LinkGone(link) => link.index == underlay_ifindex,
        // The programs ask the FIB from the underlay's IPv6 address.
        Event::Address6Changed(ifindex) => *ifindex == underlay_ifindex,
        // The FIB follows the rules too, for the underlay's next hops as for anything else.
        Event::RuleAdded(_)
        | Event::RuleRemoved(_)
        | Event::Rule6Added(_)
        | Event::Rule6Removed(_)
        | Event::Overrun => true,
        Event::TrafficControl(_) => false,
    }
}

/// A route through a pod's interface: a pod's own address, which no next hop is.
fn via_pod(oif: Option<u32>, interfaces: &HashMap<u32, Interface>, pod_prefix: &str) -> bool {
    oif.and_then(|oif| interfaces.get(&oif)).is_some_and(|i| i.name.starts_with(pod_prefix))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::model::{
        link::LinkState,
        neighbour::Neighbour,
        route::{KernelRoute, KernelRoute6},
    };

    const ETH0: u32 = 2;
    const CALI: u32 = 7;

    fn interfaces() -> HashMap<u32, Interface> {
        HashMap::from([
            (ETH0, Interface { name: "eth0".into(), ..Interface::default() }),
            (CALI, Interface { name: "cali0f293e89ca7".into(), ..Interface::default() }),
        ])
    }

    fn neighbour(ifindex: u32, table: NeighbourTable) -> Neighbour {
        Neighbour {
            ifindex,
            table,
            addr: Some(Ipv4Addr::new(10, 101, 14, 51).into()),
            mac: Some([2; 6]),
            resolved: true,
            overridden: false,
        }
    }

    fn route(dst: [u8; 4], prefix_len: u8, oif: u32) -> KernelRoute {
        KernelRoute::main_unicast(dst.into(), prefix_len, Some(oif), None)
    }

    fn changes(event: Event) -> bool {
        may_change(&event, ETH0, &interfaces(), "cali")
    }

    #[test]
    fn an_underlay_neighbour_changes_next_hops_and_others_do_not() {
        assert!(changes(Event::NeighbourPresent(neighbour(ETH0, NeighbourTable::Ipv4))));
        assert!(changes(Event::NeighbourGone(neighbour(ETH0, NeighbourTable::Ipv4))));
        assert!(!changes(Event::NeighbourPresent(neighbour(CALI, NeighbourTable::Ipv4))));
        assert!(!changes(Event::NeighbourPresent(neighbour(ETH0, NeighbourTable::Bridge))));
        // FP_NEXT_HOPS6 shares the generation: the underlay's IPv6 neighbours count too.
        assert!(changes(Event::NeighbourGone(neighbour(ETH0, NeighbourTable::Ipv6))));
        assert!(!changes(Event::NeighbourGone(neighbour(CALI, NeighbourTable::Ipv6))));
    }

    #[test]
    fn a_pods_route_does_not_change_next_hops_and_other_routes_do() {
        assert!(!changes(Event::RouteAdded(route([10, 244, 40, 36], 32, CALI))));
        assert!(!changes(Event::RouteRemoved(route([10, 244, 40, 36], 32, CALI))));
        assert!(changes(Event::RouteAdded(route([10, 101, 14, 0], 24, ETH0))));
        assert!(changes(Event::RouteAdded(route([10, 101, 14, 51], 32, ETH0))));
        assert!(changes(Event::RouteRemoved(route([10, 244, 166, 128], 26, ETH0))));
        let route6 =
            |dst: Ipv6Addr, prefix_len, oif| KernelRoute6::main_unicast(dst, prefix_len, Some(oif), None);
        let pod6 = Ipv6Addr::new(0xfd5f, 0xa1b2, 0xc3d4, 0, 0, 0, 0x0af4, 0x2824);
        assert!(!changes(Event::Route6Added(route6(pod6, 128, CALI))));
        assert!(changes(Event::Route6Removed(route6(pod6, 122, ETH0))));
        assert!(changes(Event::Rule6Added(crate::model::rule::default_rules()[0].clone())));
    }

    #[test]
    fn the_underlay_link_changes_next_hops() {
        let eth0 = LinkState { index: ETH0, name: "eth0".into(), ..LinkState::default() };
        let cali = LinkState { index: CALI, name: "cali0f293e89ca7".into(), ..LinkState::default() };
        assert!(changes(Event::LinkPresent(eth0.clone())));
        assert!(changes(Event::LinkGone(eth0)));
        assert!(!changes(Event::LinkPresent(cali)));
        assert!(changes(Event::Address6Changed(ETH0)));
        assert!(!changes(Event::Address6Changed(CALI)));
        assert!(changes(Event::Overrun));
    }
}
