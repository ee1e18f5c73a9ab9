//! The daemon's picture of the kernel: interfaces (with their classic tc configuration), the rules
//! and routes of every table of both families, and the layer-2 tables of `vxlan.calico`, kept
//! current from netlink events (pure: events in, state out).

use std::collections::{hash_map::Entry, HashMap};

use crate::{
    daemon::{
        netlink::Event,
        routes::Interface,
        rules::{self, Routes},
        vxlan::{Vteps, Vteps6, VXLAN6_DEVICE, VXLAN_DEVICE},
    },
    model::{
        link::LinkState,
        neighbour::Neighbour,
        route::{KernelRoute, KernelRoute6, Prefix, Prefix6, LOCAL_TABLE, MAIN_TABLE},
        rule::{Rule, Verb},
    },
};

#[derive(Debug, Default)]
pub struct KernelState {
    pub interfaces: HashMap<u32, Interface>,
    /// Every IPv4 route, by destination prefix (several tables and metrics may share one).
    routes: HashMap<Prefix, Vec<KernelRoute>>,
    /// The neighbour and FDB entries of `vxlan.calico`.
    pub vteps: Vteps,
    /// The neighbour and FDB entries of `vxlan-v6.calico`.
    pub vteps6: Vteps6,
    /// The IPv4 rules, in the kernel's order.
    pub rules: Vec<Rule>,
    /// Every IPv6 route, by destination prefix.
    routes6: HashMap<Prefix6, Vec<KernelRoute6>>,
    /// The IPv6 rules, in the kernel's order.
    pub rules6: Vec<Rule>,
}

/// Which fastpath entries an event may have changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Touched {
    /// Only this prefix's entry (a route event).
    Prefix(Prefix),
    /// These prefixes' entries (a main route event that other tables' prefixes inside it copy).
    Prefixes(Vec<Prefix>),
    /// Possibly any entry (a link event: names, pod MACs and routes via it; a neighbour or FDB
    /// entry of `vxlan.calico`: the routes through it), of either family.
    Everything,
    /// Only IPv6 entries (an IPv6 route or rule event).
    Ipv6,
    /// No entry (a neighbour of another interface).
    Nothing,
}

/// A pod interface whose other end must be asked for its MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerQuery {
    pub ifindex: u32,
    pub netnsid: i32,
    pub peer_index: u32,
}

impl KernelState {
    pub fn new(
        links: &[LinkState],
        routes: Vec<KernelRoute>,
        neighbours: &[Neighbour],
        rules: Vec<Rule>,
    ) -> Self {
        let mut state = Self { rules, ..Self::default() };
        for link in links {
            state.link_present(link);
        }
        for route in routes {
            add(&mut state.routes, route);
        }
        for neighbour in neighbours {
            state.neighbour(neighbour, true);
        }
        state
    }

    pub fn routes_of(&self, prefix: &Prefix) -> &[KernelRoute] {
        self.routes.get(prefix).map_or(&[], Vec::as_slice)
    }

    pub fn prefixes(&self) -> impl Iterator<Item = &Prefix> {
        self.routes.keys()
    }

    pub fn route_count(&self) -> usize {
        self.routes.values().map(Vec::len).sum()
    }

    /// The IPv6 side of the picture: its routes and rules (dumped apart from IPv4's).
    pub fn with_ipv6(mut self, routes: Vec<KernelRoute6>, rules: Vec<Rule>) -> Self {
        self.rules6 = rules;
        for route in routes {
            add(&mut self.routes6, route);
        }
        self
    }

    /// Every IPv6 route, with its prefix.
    pub fn routes6(&self) -> impl Iterator<Item = (&Prefix6, &[KernelRoute6])> {
        self.routes6.iter().map(|(p, r)| (p, r.as_slice()))
    }

    /// Apply one event. Returns which entries it may have changed, and the peer to ask for a MAC
    /// when a pod interface (name starting with `pod_prefix`) appeared or its peer moved.
    pub fn apply(&mut self, event: &Event, pod_prefix: &str) -> (Touched, Option<PeerQuery>) {
        match event {
            Event::LinkPresent(link) => {
                let moved = self.link_present(link);
                let query = (moved && link.name.starts_with(pod_prefix)).then(|| peer_query(link)).flatten();
                (Touched::Everything, query)
            }
            Event::LinkGone(link) => {
                if let Some(interface) = self.interfaces.get(&link.index) {
                    let name = interface.name.clone();
                    self.forget_vteps_of(&name);
                }
                self.interfaces.remove(&link.index);
                self.drop_routes_via(link.index);
                // IPv6 keeps a down device's routes (marked linkdown, see `Interface::up`), but
                // not a deleted one's.
                drop_via(&mut self.routes6, link.index);
                (Touched::Everything, None)
            }
            Event::NeighbourPresent(n) | Event::NeighbourGone(n) => {
                let changed = self.neighbour(n, matches!(event, Event::NeighbourPresent(_)));
                (if changed { Touched::Everything } else { Touched::Nothing }, None)
            }
            Event::RouteAdded(route) => {
                add(&mut self.routes, route.clone());
                (self.touched_by(route), None)
            }
            Event::RouteRemoved(route) => {
                remove(&mut self.routes, route);
                (self.touched_by(route), None)
            }
            Event::Route6Added(route) => {
                add(&mut self.routes6, route.clone());
                (Touched::Ipv6, None)
            }
            Event::Route6Removed(route) => {
                remove(&mut self.routes6, route);
                (Touched::Ipv6, None)
            }
            Event::Rule6Added(rule) => {
                self.rules6.push(rule.clone());
                (Touched::Ipv6, None)
            }
            Event::Rule6Removed(rule) => {
                if let Some(i) = self.rules6.iter().position(|r| r == rule) {
                    self.rules6.remove(i);
                }
                (Touched::Ipv6, None)
            }
            Event::RuleAdded(rule) => {
                self.rules.push(rule.clone());
                (Touched::Everything, None)
            }
            Event::RuleRemoved(rule) => {
                if let Some(i) = self.rules.iter().position(|r| r == rule) {
                    self.rules.remove(i);
                }
                (Touched::Everything, None)
            }
            // The daemon asks the kernel what the interface's tc configuration is now.
            Event::TrafficControl(_) => (Touched::Nothing, None),
            // The daemon takes a new picture when it is the underlay's.
            Event::Address6Changed(_) => (Touched::Nothing, None),
            // Nothing to learn from it here; the daemon takes a new picture.
            Event::Overrun => (Touched::Everything, None),
        }
    }

    /// The tables other than main and local that some rule looks up: their routes may decide
    /// for a pod's packet instead of main's.
    fn rule_tables(&self) -> Vec<u32> {
        let mut tables: Vec<u32> = self
            .rules
            .iter()
            .filter_map(|r| match r.verb {
                Verb::Lookup(table) if table != MAIN_TABLE && table != LOCAL_TABLE => Some(table),
                _ => None,
            })
            .collect();
        tables.sort_unstable();
        tables.dedup();
        tables
    }

    /// Which entries a route event may have changed: its prefix; every entry when its table is
    /// one the rules look up (it may cover any of main's prefixes); for a main route, also the
    /// prefixes of those tables inside it (they copy main's covering route).
    fn touched_by(&self, route: &KernelRoute) -> Touched {
        let prefix = (route.prefix_len, route.dst);
        let tables = self.rule_tables();
        if tables.contains(&route.table) {
            return Touched::Everything;
        }
        if route.table != MAIN_TABLE || tables.is_empty() {
            return Touched::Prefix(prefix);
        }
        let mut inside: Vec<Prefix> = self
            .routes
            .iter()
            .filter(|(p, routes)| {
                **p != prefix
                    && rules::contains(prefix, **p)
                    && routes.iter().any(|r| tables.contains(&r.table))
            })
            .map(|(p, _)| *p)
            .collect();
        if inside.is_empty() {
            return Touched::Prefix(prefix);
        }
        inside.push(prefix);
        Touched::Prefixes(inside)
    }

    /// Record what a pod interface's classic tc configuration is now; whether that changed.
    pub fn set_classic_tc(&mut self, ifindex: u32, config: Option<String>) -> bool {
        match self.interfaces.get_mut(&ifindex) {
            Some(interface) if interface.classic_tc != config => {
                interface.classic_tc = config;
                true
            }
            _ => false,
        }
    }

    /// Pod interfaces whose MAC we should ask for (at start).
    pub fn peer_queries<'a>(
        links: &'a [LinkState],
        pod_prefix: &'a str,
    ) -> impl Iterator<Item = PeerQuery> + 'a {
        links.iter().filter(move |l| l.name.starts_with(pod_prefix)).filter_map(peer_query)
    }

    /// Record a neighbour or FDB entry if it is one of `vxlan.calico`'s; whether that changed
    /// anything.
    fn neighbour(&mut self, n: &Neighbour, present: bool) -> bool {
        match self.interfaces.get(&n.ifindex).map(|i| i.name.as_str()) {
            Some(VXLAN_DEVICE) => self.vteps.apply(n, present),
            Some(VXLAN6_DEVICE) => self.vteps6.apply(n, present),
            _ => false,
        }
    }

    /// The device named `name` is going, or no longer has a VXLAN device's name: its entries
    /// are no longer the ones to follow.
    fn forget_vteps_of(&mut self, name: &str) {
        match name {
            VXLAN_DEVICE => self.vteps.clear(),
            VXLAN6_DEVICE => self.vteps6.clear(),
            _ => {}
        }
    }

    pub fn set_peer_mac(&mut self, ifindex: u32, mac: Option<[u8; 6]>) {
        if let Some(interface) = self.interfaces.get_mut(&ifindex) {
            interface.peer_mac = mac;
        }
    }

    /// Record a link; returns whether it is new, renamed, or its peer changed (a new MAC to learn).
    fn link_present(&mut self, link: &LinkState) -> bool {
        if !link.up {
            // IPv4 drops the routes through a device that goes down without RTM_DELROUTE
            // (fib_disable_ip), so the picture must drop them too.
            self.drop_routes_via(link.index);
        }
        let known = self.interfaces.get(&link.index).map(|i| (i.name.clone(), i.peer));
        let changed = known.as_ref() != Some(&(link.name.clone(), link.peer));
        if let Some((old_name, _)) = known.filter(|(name, _)| *name != link.name) {
            // Renamed away from Calico's name: its entries are no longer the ones to follow.
            self.forget_vteps_of(&old_name);
        }
        let entry = self.interfaces.entry(link.index).or_default();
        if changed {
            // The qdiscs and filters belong to the device, whatever its name.
            let classic_tc = entry.classic_tc.take();
            *entry = Interface {
                name: link.name.clone(),
                peer_mac: None,
                peer: link.peer,
                classic_tc,
                up: link.up,
            };
        }
        entry.up = link.up;
        changed
    }

    fn drop_routes_via(&mut self, ifindex: u32) {
        drop_via(&mut self.routes, ifindex);
    }
}

/// Record `route` under its prefix, replacing the route with the same identity.
fn add<A: Copy + Eq + std::hash::Hash>(
    table: &mut HashMap<(u8, A), Vec<KernelRoute<A>>>,
    route: KernelRoute<A>,
) {
    let routes = match table.entry((route.prefix_len, route.dst)) {
        // Most prefixes have one route: a vector of exactly one, not the four a first push
        // would reserve (100 000 routes make that difference count).
        Entry::Vacant(slot) => {
            slot.insert(vec![route]);
            return;
        }
        Entry::Occupied(slot) => slot.into_mut(),
    };
    let id = route.id();
    match routes.iter_mut().find(|r| r.id() == id) {
        Some(existing) => *existing = route,
        None => routes.push(route),
    }
}

fn remove<A: Copy + Eq + std::hash::Hash>(
    table: &mut HashMap<(u8, A), Vec<KernelRoute<A>>>,
    route: &KernelRoute<A>,
) {
    let prefix = (route.prefix_len, route.dst);
    if let Some(routes) = table.get_mut(&prefix) {
        routes.retain(|r| r.id() != route.id());
        if routes.is_empty() {
            table.remove(&prefix);
        }
    }
}

fn drop_via<A: Eq + std::hash::Hash>(table: &mut HashMap<(u8, A), Vec<KernelRoute<A>>>, ifindex: u32) {
    for routes in table.values_mut() {
        routes.retain(|r| r.oif != Some(ifindex));
    }
    table.retain(|_, routes| !routes.is_empty());
}

impl Routes for KernelState {
    fn routes_of(&self, prefix: &Prefix) -> &[KernelRoute] {
        KernelState::routes_of(self, prefix)
    }
}

fn peer_query(link: &LinkState) -> Option<PeerQuery> {
    let (netnsid, peer_index) = link.peer?;
    Some(PeerQuery { ifindex: link.index, netnsid, peer_index })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// Pod interface `cali{index}` as Calico's CNI plugin makes it (the daemon's unit tests'
    /// pod interface), with `peer` its other end.
    pub(crate) fn cali(index: u32, up: bool, peer: Option<(i32, u32)>) -> LinkState {
        LinkState {
            index,
            name: format!("cali{index}"),
            mac: Some([0xee; 6]),
            mtu: 1480,
            up,
            peer,
            vxlan: None,
        }
    }

    fn pod_route(oif: u32) -> KernelRoute {
        KernelRoute::main_unicast(Ipv4Addr::new(10, 244, 40, oif as u8), 32, Some(oif), None)
    }

    #[test]
    fn a_new_pod_link_asks_for_its_peer_mac_once() {
        let mut state = KernelState::default();
        let link = cali(7, true, Some((3, 2)));
        let (_, query) = state.apply(&Event::LinkPresent(link.clone()), "cali");
        assert_eq!(query, Some(PeerQuery { ifindex: 7, netnsid: 3, peer_index: 2 }));
        state.set_peer_mac(7, Some([1; 6]));
        assert_eq!(state.apply(&Event::LinkPresent(link), "cali").1, None, "unchanged link, no new query");
        assert_eq!(state.interfaces[&7].peer_mac, Some([1; 6]));
    }

    #[test]
    fn a_peer_that_moved_is_asked_again_and_its_old_mac_forgotten() {
        let mut state = KernelState::new(&[cali(7, true, Some((3, 2)))], vec![], &[], vec![]);
        state.set_peer_mac(7, Some([1; 6]));
        let (_, query) = state.apply(&Event::LinkPresent(cali(7, true, Some((4, 2)))), "cali");
        assert_eq!(query, Some(PeerQuery { ifindex: 7, netnsid: 4, peer_index: 2 }));
        assert_eq!(state.interfaces[&7].peer_mac, None);
    }

    #[test]
    fn routes_come_and_go_with_events() {
        let mut state = KernelState::new(&[cali(7, true, None)], vec![], &[], vec![]);
        let prefix = (32, Ipv4Addr::new(10, 244, 40, 7));
        assert_eq!(state.apply(&Event::RouteAdded(pod_route(7)), "cali").0, Touched::Prefix(prefix));
        let replaced = KernelRoute { gateway: Some(Ipv4Addr::new(10, 0, 0, 1)), ..pod_route(7) };
        state.apply(&Event::RouteAdded(replaced.clone()), "cali");
        assert_eq!(state.routes_of(&prefix), &[replaced], "same id: replaced, not added");
        assert_eq!(state.apply(&Event::RouteRemoved(pod_route(7)), "cali").0, Touched::Prefix(prefix));
        assert_eq!(state.route_count(), 0);
    }

    #[test]
    fn a_deleted_or_downed_link_takes_its_routes_along() {
        let mut state = KernelState::new(
            &[cali(7, true, None), cali(8, true, None)],
            vec![pod_route(7), pod_route(8)],
            &[],
            vec![],
        );
        state.apply(&Event::LinkGone(cali(7, true, None)), "cali");
        assert_eq!(state.route_count(), 1);
        assert!(!state.interfaces.contains_key(&7));
        state.apply(&Event::LinkPresent(cali(8, false, None)), "cali");
        assert_eq!(state.route_count(), 0);
    }

    #[test]
    fn only_vxlan_calicos_neighbours_touch_the_entries() {
        use crate::model::neighbour::NeighbourTable;
        let vxlan = LinkState { index: 9, name: "vxlan.calico".into(), up: true, ..LinkState::default() };
        let mut state = KernelState::new(&[vxlan.clone(), cali(7, true, None)], vec![], &[], vec![]);
        let neighbour = |ifindex| Neighbour {
            ifindex,
            table: NeighbourTable::Ipv4,
            addr: Some(Ipv4Addr::new(10, 244, 166, 128).into()),
            mac: Some([0x66; 6]),
            resolved: true,
            overridden: false,
        };
        assert_eq!(state.apply(&Event::NeighbourPresent(neighbour(7)), "cali").0, Touched::Nothing);
        assert_eq!(state.apply(&Event::NeighbourPresent(neighbour(9)), "cali").0, Touched::Everything);
        assert_eq!(
            state.apply(&Event::NeighbourPresent(neighbour(9)), "cali").0,
            Touched::Nothing,
            "no change"
        );
        assert!(state.vteps != Default::default());
        state.apply(&Event::LinkGone(vxlan), "cali");
        assert_eq!(state.vteps, Default::default(), "its tables go with the device");
    }

    #[test]
    fn a_route_in_a_table_the_rules_look_up_touches_everything() {
        let wireguard = Rule { invert: true, fwmark: Some((0x10_0000, 0x10_0000)), ..Rule::lookup(99, 1) };
        let mut state =
            KernelState::new(&[cali(7, true, None)], vec![], &[], crate::model::rule::default_rules());
        let block = KernelRoute::main_unicast(Ipv4Addr::new(10, 244, 166, 128), 26, Some(3), None);
        let in_wg = KernelRoute { table: 1, ..block.clone() };
        assert_eq!(
            state.apply(&Event::RouteAdded(in_wg.clone()), "cali").0,
            Touched::Prefix((26, block.dst))
        );
        assert_eq!(state.apply(&Event::RuleAdded(wireguard.clone()), "cali").0, Touched::Everything);
        assert_eq!(state.apply(&Event::RouteAdded(in_wg.clone()), "cali").0, Touched::Everything);
        let pod_in_wg = KernelRoute {
            table: 1,
            ..KernelRoute::main_unicast(Ipv4Addr::new(10, 244, 166, 150), 32, Some(3), None)
        };
        state.apply(&Event::RouteAdded(pod_in_wg), "cali");
        let touched = state.apply(&Event::RouteAdded(block.clone()), "cali").0;
        let Touched::Prefixes(mut prefixes) = touched else { panic!("{touched:?}") };
        prefixes.sort();
        assert_eq!(prefixes, vec![(26, block.dst), (32, Ipv4Addr::new(10, 244, 166, 150))]);
        state.apply(&Event::RuleRemoved(wireguard), "cali");
        assert_eq!(state.apply(&Event::RouteAdded(in_wg), "cali").0, Touched::Prefix((26, block.dst)));
    }

    #[test]
    fn classic_tc_survives_a_rename_and_is_reported_once() {
        let mut state = KernelState::new(&[cali(7, true, None)], vec![], &[], vec![]);
        assert!(state.set_classic_tc(7, Some("qdisc tbf 8001: root".into())));
        assert!(!state.set_classic_tc(7, Some("qdisc tbf 8001: root".into())));
        let renamed = LinkState { name: "caliX".into(), ..cali(7, true, None) };
        state.apply(&Event::LinkPresent(renamed), "cali");
        assert_eq!(state.interfaces[&7].classic_tc.as_deref(), Some("qdisc tbf 8001: root"));
        assert!(!state.set_classic_tc(8, Some("x".into())), "no such interface");
    }

    #[test]
    fn other_links_are_not_queried() {
        let mut state = KernelState::default();
        let eth =
            LinkState { index: 2, name: "eth0".into(), peer: Some((0, 9)), up: true, ..LinkState::default() };
        assert_eq!(state.apply(&Event::LinkPresent(eth), "cali").1, None);
    }
}
