//! The daemon's picture of the kernel: interfaces and IPv4 routes, kept current from netlink
//! events (pure: events in, state out).

use std::collections::HashMap;

use crate::{
    netlink::{Event, LinkState},
    routes::{Interface, KernelRoute, RouteId},
};

#[derive(Debug, Default)]
pub struct KernelState {
    pub interfaces: HashMap<u32, Interface>,
    pub routes: HashMap<RouteId, KernelRoute>,
}

/// A pod interface whose other end must be asked for its MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerQuery {
    pub ifindex: u32,
    pub netnsid: i32,
    pub peer_index: u32,
}

impl KernelState {
    pub fn new(links: &[LinkState], routes: Vec<KernelRoute>) -> Self {
        let mut state = Self::default();
        for link in links {
            state.link_present(link);
        }
        state.routes = routes.into_iter().map(|r| (r.id(), r)).collect();
        state
    }

    /// Apply one event. Returns the peer to ask for a MAC when a pod interface (name starting
    /// with `pod_prefix`) appeared or its peer moved.
    pub fn apply(&mut self, event: &Event, pod_prefix: &str) -> Option<PeerQuery> {
        match event {
            Event::LinkPresent(link) => {
                let moved = self.link_present(link);
                (moved && link.name.starts_with(pod_prefix)).then(|| peer_query(link)).flatten()
            }
            Event::LinkGone(link) => {
                self.interfaces.remove(&link.index);
                self.drop_routes_via(link.index);
                None
            }
            Event::RouteAdded(route) => {
                self.routes.insert(route.id(), route.clone());
                None
            }
            Event::RouteRemoved(route) => {
                self.routes.remove(&route.id());
                None
            }
        }
    }

    /// Pod interfaces whose MAC we should ask for (at start).
    pub fn peer_queries<'a>(
        links: &'a [LinkState],
        pod_prefix: &'a str,
    ) -> impl Iterator<Item = PeerQuery> + 'a {
        links.iter().filter(move |l| l.name.starts_with(pod_prefix)).filter_map(peer_query)
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
        let entry = self.interfaces.entry(link.index).or_default();
        let changed = entry.name != link.name || entry.peer != link.peer;
        if changed {
            *entry = Interface { name: link.name.clone(), peer_mac: None, peer: link.peer };
        }
        changed
    }

    fn drop_routes_via(&mut self, ifindex: u32) {
        self.routes.retain(|_, r| r.oif != Some(ifindex));
    }
}

fn peer_query(link: &LinkState) -> Option<PeerQuery> {
    let (netnsid, peer_index) = link.peer?;
    Some(PeerQuery { ifindex: link.index, netnsid, peer_index })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::routes::{RouteKindOf, MAIN_TABLE};

    fn cali(index: u32, up: bool, peer: Option<(i32, u32)>) -> LinkState {
        LinkState { index, name: format!("cali{index}"), mac: Some([0xee; 6]), mtu: 1480, up, peer }
    }

    fn pod_route(oif: u32) -> KernelRoute {
        KernelRoute {
            dst: Ipv4Addr::new(10, 244, 40, oif as u8),
            prefix_len: 32,
            kind: RouteKindOf::Unicast,
            table: MAIN_TABLE,
            priority: 0,
            tos: 0,
            oif: Some(oif),
            gateway: None,
        }
    }

    #[test]
    fn a_new_pod_link_asks_for_its_peer_mac_once() {
        let mut state = KernelState::default();
        let link = cali(7, true, Some((3, 2)));
        let query = state.apply(&Event::LinkPresent(link.clone()), "cali");
        assert_eq!(query, Some(PeerQuery { ifindex: 7, netnsid: 3, peer_index: 2 }));
        state.set_peer_mac(7, Some([1; 6]));
        assert_eq!(state.apply(&Event::LinkPresent(link), "cali"), None, "unchanged link, no new query");
        assert_eq!(state.interfaces[&7].peer_mac, Some([1; 6]));
    }

    #[test]
    fn a_peer_that_moved_is_asked_again_and_its_old_mac_forgotten() {
        let mut state = KernelState::new(&[cali(7, true, Some((3, 2)))], vec![]);
        state.set_peer_mac(7, Some([1; 6]));
        let query = state.apply(&Event::LinkPresent(cali(7, true, Some((4, 2)))), "cali");
        assert_eq!(query, Some(PeerQuery { ifindex: 7, netnsid: 4, peer_index: 2 }));
        assert_eq!(state.interfaces[&7].peer_mac, None);
    }

    #[test]
    fn routes_come_and_go_with_events() {
        let mut state = KernelState::new(&[cali(7, true, None)], vec![]);
        state.apply(&Event::RouteAdded(pod_route(7)), "cali");
        assert_eq!(state.routes.len(), 1);
        state.apply(&Event::RouteRemoved(pod_route(7)), "cali");
        assert!(state.routes.is_empty());
    }

    #[test]
    fn a_deleted_or_downed_link_takes_its_routes_along() {
        let mut state =
            KernelState::new(&[cali(7, true, None), cali(8, true, None)], vec![pod_route(7), pod_route(8)]);
        state.apply(&Event::LinkGone(cali(7, true, None)), "cali");
        assert_eq!(state.routes.len(), 1);
        assert!(!state.interfaces.contains_key(&7));
        state.apply(&Event::LinkPresent(cali(8, false, None)), "cali");
        assert!(state.routes.is_empty());
    }

    #[test]
    fn other_links_are_not_queried() {
        let mut state = KernelState::default();
        let eth =
            LinkState { index: 2, name: "eth0".into(), peer: Some((0, 9)), up: true, ..LinkState::default() };
        assert_eq!(state.apply(&Event::LinkPresent(eth), "cali"), None);
    }
}
