//! Kernel IPv6 routes → the programs' IPv6 endpoint table, `FP_ENDPOINTS6` (pure).
//!
//! | kernel | entry |
//! |---|---|
//! | `fd5f:a1b2:c3d4::a0a:2824 dev caliX` (main table, /128, no gateway: what Calico's CNI plugin writes for a pod's IPv6 address) on a pod interface that is up, whose pod's MAC is known and which has no classic tc configuration | the pod: caliX's ifindex and the pod's MAC |
//! | anything else | none: the kernel routes it |
//!
//! An address is a pod's only while the kernel would deliver it by that route: the IPv6 rules are
//! the kernel's defaults (a WireGuard rule, or any other, may send a pod's packets to another
//! table, so while there is one every IPv6 packet is the kernel's), no `local` route of this host
//! claims it, and the route is the preferred one of main's (lowest metric).

use std::{collections::BTreeMap, net::Ipv6Addr};

use fastpath_common::maps::Endpoint;

use crate::{
    daemon::{kernel::KernelState, routes::Interface},
    model::{
        route::{KernelRoute6, RouteKindOf, LOCAL_TABLE, MAIN_TABLE},
        rule::{default_rules, Rule},
    },
};

/// The IPv6 endpoints the kernel's state calls for, by address.
pub fn wanted(kernel: &KernelState, pod_prefix: &str) -> BTreeMap<Ipv6Addr, Endpoint> {
    if !rules_are_defaults(&kernel.rules6) {
        return BTreeMap::new();
    }
    kernel
        .routes6()
        .filter(|((len, _), _)| *len == 128)
        .filter_map(|((_, addr), routes)| Some((*addr, endpoint(routes, &kernel.interfaces, pod_prefix)?)))
        .collect()
}

/// Whether the IPv6 rules are those of a fresh namespace (IPv6 has no `default` table rule by
/// default; one is accepted), so that every packet is routed by the local table, then main.
pub fn rules_are_defaults(rules: &[Rule]) -> bool {
    let defaults = default_rules();
    rules.iter().all(|r| defaults.contains(r))
}

/// The pod the routes of one /128 deliver to, if the programs can stand in for the kernel.
fn endpoint(
    routes: &[KernelRoute6],
    interfaces: &std::collections::HashMap<u32, Interface>,
    pod_prefix: &str,
) -> Option<Endpoint> {
    if routes.iter().any(|r| r.table == LOCAL_TABLE && r.kind == RouteKindOf::Local) {
        return None;
    }
    let route = routes.iter().filter(|r| r.table == MAIN_TABLE).min_by_key(|r| r.priority)?;
    if route.kind != RouteKindOf::Unicast || route.gateway.is_some() {
        return None;
    }
    let ifindex = route.oif?;
    let interface = interfaces.get(&ifindex)?;
    let usable = interface.name.starts_with(pod_prefix) && interface.up && interface.classic_tc.is_none();
    let mac = interface.peer_mac.filter(|_| usable)?;
    Some(Endpoint { ifindex, mac, _pad: [0; 2] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{link::LinkState, route::KernelRoute};

    const POD: Ipv6Addr = Ipv6Addr::new(0xfd5f, 0xa1b2, 0xc3d4, 0, 0, 0, 0x0af4, 0x2824);
    const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];

    fn cali(index: u32, up: bool) -> LinkState {
        crate::daemon::kernel::tests::cali(index, up, Some((0, 2)))
    }

    fn state(links: &[LinkState], routes: Vec<KernelRoute6>, rules6: Vec<Rule>) -> KernelState {
        let mut kernel = KernelState::new(links, Vec::new(), &[], default_rules()).with_ipv6(routes, rules6);
        for link in links {
            kernel.set_peer_mac(link.index, Some(MAC));
        }
        kernel
    }

    fn ipv6_defaults() -> Vec<Rule> {
        vec![Rule::lookup(0, LOCAL_TABLE), Rule::lookup(32766, MAIN_TABLE)]
    }

    #[test]
    fn a_pods_scope_link_route_is_its_endpoint() {
        let kernel = state(
            &[cali(7, true)],
            vec![KernelRoute::main_unicast(POD, 128, Some(7), None)],
            ipv6_defaults(),
        );
        assert_eq!(
            wanted(&kernel, "cali"),
            BTreeMap::from([(POD, Endpoint { ifindex: 7, mac: MAC, _pad: [0; 2] })])
        );
    }

    #[test]
    fn what_the_kernel_would_not_deliver_there_is_not_an_endpoint() {
        let route = KernelRoute::main_unicast(POD, 128, Some(7), None);
        // A rule besides the defaults (Felix's WireGuard rule, say) may send it elsewhere.
        let mut wireguard = Rule::lookup(99, 1);
        wireguard.invert = true;
        wireguard.fwmark = Some((0x100000, 0x100000));
        let mut rules = ipv6_defaults();
        rules.insert(1, wireguard);
        assert!(wanted(&state(&[cali(7, true)], vec![route.clone()], rules), "cali").is_empty());
        // A veth that is down forwards nothing (IPv6 keeps its routes, marked linkdown).
        assert!(wanted(&state(&[cali(7, false)], vec![route.clone()], ipv6_defaults()), "cali").is_empty());
        // Not a pod interface, or a route with a gateway, or a shorter prefix.
        let other = LinkState { name: "eth1".into(), ..cali(7, true) };
        assert!(wanted(&state(&[other], vec![route.clone()], ipv6_defaults()), "cali").is_empty());
        let via = KernelRoute::main_unicast(POD, 128, Some(7), Some(Ipv6Addr::LOCALHOST));
        assert!(wanted(&state(&[cali(7, true)], vec![via], ipv6_defaults()), "cali").is_empty());
        let block = KernelRoute::main_unicast(POD, 122, Some(7), None);
        assert!(wanted(&state(&[cali(7, true)], vec![block], ipv6_defaults()), "cali").is_empty());
        // An address of this host.
        let local = KernelRoute6 { table: LOCAL_TABLE, kind: RouteKindOf::Local, ..route.clone() };
        assert!(
            wanted(&state(&[cali(7, true)], vec![route.clone(), local], ipv6_defaults()), "cali").is_empty()
        );
        // A pod interface with classic tc: only the kernel honours it.
        let mut kernel = state(&[cali(7, true)], vec![route.clone()], ipv6_defaults());
        kernel.set_classic_tc(7, Some("qdisc tbf".into()));
        assert!(wanted(&kernel, "cali").is_empty());
        // The pod's MAC is not known yet.
        let mut kernel = state(&[cali(7, true)], vec![route], ipv6_defaults());
        kernel.set_peer_mac(7, None);
        assert!(wanted(&kernel, "cali").is_empty());
    }

    #[test]
    fn the_preferred_route_decides() {
        let pod = KernelRoute::main_unicast(POD, 128, Some(7), None);
        let better =
            KernelRoute6 { priority: 0, gateway: Some(Ipv6Addr::LOCALHOST), oif: Some(8), ..pod.clone() };
        let pod = KernelRoute6 { priority: 10, ..pod };
        assert!(wanted(&state(&[cali(7, true), cali(8, true)], vec![pod, better], ipv6_defaults()), "cali")
            .is_empty());
    }
}
