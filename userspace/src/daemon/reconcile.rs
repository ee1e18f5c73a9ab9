//! What to write and what to delete so the maps hold what they should, one prefix at a time
//! (pure). The mirror remembers what the maps hold; a peer is kept exactly as long as some route
//! needs it, written before the first route that needs it and removed after the last; a local
//! pod's endpoint entry follows its /32, leaving before the route changes and arriving after.

use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
};

use fastpath_common::{
    maps::Endpoint,
    route::{endpoint_of, RouteKind, RouteValue},
};

use crate::daemon::routes::Prefix;

/// One map write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    PutPeer(Ipv4Addr),
    DelEndpoint(Ipv4Addr),
    PutRoute(Prefix, RouteValue),
    DelRoute(Prefix),
    PutEndpoint(Ipv4Addr, Endpoint),
    DelPeer(Ipv4Addr),
}

/// What the route and peer maps hold.
#[derive(Clone, Debug, Default)]
pub struct Mirror {
    routes: HashMap<Prefix, RouteValue>,
    peers: HashSet<Ipv4Addr>,
    endpoints: HashMap<Ipv4Addr, Endpoint>,
    /// Routes per peer, over the routes the map holds.
    peer_refs: HashMap<Ipv4Addr, u32>,
}

fn peer_of(value: &RouteValue) -> Option<Ipv4Addr> {
    (value.kind == RouteKind::RemoteBlock as u32).then(|| Ipv4Addr::from(value.next_hop))
}

impl Mirror {
    /// The mirror of maps that already hold `routes`, `peers` and `endpoints` (left by an
    /// earlier daemon).
    pub fn new(
        routes: impl IntoIterator<Item = (Prefix, RouteValue)>,
        peers: impl IntoIterator<Item = Ipv4Addr>,
        endpoints: impl IntoIterator<Item = (Ipv4Addr, Endpoint)>,
    ) -> Self {
        let mut mirror = Self {
            peers: peers.into_iter().collect(),
            endpoints: endpoints.into_iter().collect(),
            ..Self::default()
        };
        for (prefix, value) in routes {
            mirror.record_route(prefix, Some(value));
        }
        mirror
    }

    pub fn routes(&self) -> impl Iterator<Item = (&Prefix, &RouteValue)> {
        self.routes.iter()
    }

    /// The entry the programs' longest-prefix match finds for `addr`, among those written.
    pub fn longest_match(&self, addr: Ipv4Addr) -> Option<&RouteValue> {
        (0..=32u8).rev().find_map(|len| {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            self.routes.get(&(len, Ipv4Addr::from(u32::from(addr) & mask)))
        })
    }

    pub fn len(&self) -> (usize, usize) {
        (self.routes.len(), self.peers.len())
    }

    /// The writes that make `prefix` map to `value` (`None`: no entry), peers and endpoints
    /// included.
    pub fn ops(&self, prefix: Prefix, value: Option<RouteValue>) -> Vec<Op> {
        let old = self.routes.get(&prefix).copied();
        let pod = (prefix.0 == 32).then_some(prefix.1);
        let new_endpoint = pod.zip(value.as_ref().and_then(endpoint_of));
        let held_endpoint = pod.and_then(|p| self.endpoints.get(&p).copied());
        let route_changes = old != value;
        let endpoint_changes = new_endpoint.map(|(_, e)| e) != held_endpoint;
        if !route_changes && !endpoint_changes {
            return Vec::new();
        }
        let mut ops = Vec::with_capacity(4);
        let new_peer = value.as_ref().and_then(peer_of);
        let old_peer = old.as_ref().and_then(peer_of);
        if let Some(peer) = new_peer.filter(|p| route_changes && !self.peers.contains(p)) {
            ops.push(Op::PutPeer(peer));
        }
        if let Some(pod) = pod.filter(|_| new_endpoint.is_none() && held_endpoint.is_some()) {
            ops.push(Op::DelEndpoint(pod));
        }
        if route_changes {
            ops.push(match value {
                Some(value) => Op::PutRoute(prefix, value),
                None => Op::DelRoute(prefix),
            });
        }
        if let Some((pod, endpoint)) = new_endpoint.filter(|_| endpoint_changes) {
            ops.push(Op::PutEndpoint(pod, endpoint));
        }
        if let Some(peer) =
            old_peer.filter(|p| route_changes && Some(*p) != new_peer && self.peer_refs.get(p) == Some(&1))
        {
            ops.push(Op::DelPeer(peer));
        }
        ops
    }

    /// Peers in the map that no route needs (left by an earlier daemon).
    pub fn stale_peers(&self) -> Vec<Op> {
        let mut stale: Vec<Ipv4Addr> =
            self.peers.iter().filter(|p| !self.peer_refs.contains_key(p)).copied().collect();
        stale.sort();
        stale.into_iter().map(Op::DelPeer).collect()
    }

    /// Endpoint entries with no local route behind them (left by an earlier daemon).
    pub fn stale_endpoints(&self) -> Vec<Op> {
        let mut stale: Vec<Ipv4Addr> = self
            .endpoints
            .keys()
            .filter(|p| self.routes.get(&(32, **p)).is_none_or(|v| endpoint_of(v).is_none()))
            .copied()
            .collect();
        stale.sort();
        stale.into_iter().map(Op::DelEndpoint).collect()
    }

    /// Remember that `op` reached the map.
    pub fn record(&mut self, op: &Op) {
        match *op {
            Op::PutPeer(peer) => {
                self.peers.insert(peer);
            }
            Op::DelPeer(peer) => {
                self.peers.remove(&peer);
            }
            Op::PutEndpoint(pod, endpoint) => {
                self.endpoints.insert(pod, endpoint);
            }
            Op::DelEndpoint(pod) => {
                self.endpoints.remove(&pod);
            }
            Op::PutRoute(prefix, value) => self.record_route(prefix, Some(value)),
            Op::DelRoute(prefix) => self.record_route(prefix, None),
        }
    }

    fn record_route(&mut self, prefix: Prefix, value: Option<RouteValue>) {
        let old = match value {
            Some(value) => self.routes.insert(prefix, value),
            None => self.routes.remove(&prefix),
        };
        if let Some(peer) = old.as_ref().and_then(peer_of) {
            if let Some(refs) = self.peer_refs.get_mut(&peer) {
                *refs -= 1;
                if *refs == 0 {
                    self.peer_refs.remove(&peer);
                }
            }
        }
        if let Some(peer) = value.as_ref().and_then(peer_of) {
            *self.peer_refs.entry(peer).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Prefix = (26, Ipv4Addr::new(10, 244, 166, 128));
    const B: Prefix = (26, Ipv4Addr::new(10, 244, 167, 0));
    const POD: Prefix = (32, Ipv4Addr::new(10, 244, 40, 36));
    const NODE2: Ipv4Addr = Ipv4Addr::new(10, 101, 14, 51);
    const NODE3: Ipv4Addr = Ipv4Addr::new(10, 101, 14, 52);

    fn remote(node: Ipv4Addr) -> RouteValue {
        RouteValue::remote(node.octets(), true)
    }

    fn apply(mirror: &mut Mirror, prefix: Prefix, value: Option<RouteValue>) -> Vec<Op> {
        let ops = mirror.ops(prefix, value);
        for op in &ops {
            mirror.record(op);
        }
        ops
    }

    #[test]
    fn a_peer_comes_before_its_first_route_and_goes_after_its_last() {
        let mut m = Mirror::default();
        assert_eq!(
            apply(&mut m, A, Some(remote(NODE2))),
            vec![Op::PutPeer(NODE2), Op::PutRoute(A, remote(NODE2))]
        );
        assert_eq!(apply(&mut m, B, Some(remote(NODE2))), vec![Op::PutRoute(B, remote(NODE2))]);
        assert_eq!(apply(&mut m, A, None), vec![Op::DelRoute(A)]);
        assert_eq!(apply(&mut m, B, None), vec![Op::DelRoute(B), Op::DelPeer(NODE2)]);
        assert_eq!(m.len(), (0, 0));
    }

    #[test]
    fn a_block_moving_to_another_node_swaps_the_peers_around_the_route() {
        let mut m = Mirror::default();
        apply(&mut m, A, Some(remote(NODE2)));
        assert_eq!(
            apply(&mut m, A, Some(remote(NODE3))),
            vec![Op::PutPeer(NODE3), Op::PutRoute(A, remote(NODE3)), Op::DelPeer(NODE2)]
        );
    }

    #[test]
    fn an_unchanged_entry_needs_nothing() {
        let mut m = Mirror::default();
        let local = RouteValue::local(7, [1; 6]);
        apply(&mut m, POD, Some(local));
        assert!(m.ops(POD, Some(local)).is_empty());
        assert!(m.ops((32, Ipv4Addr::new(1, 1, 1, 1)), None).is_empty());
    }

    #[test]
    fn a_local_pods_endpoint_follows_its_route() {
        let mut m = Mirror::default();
        let pod = POD.1;
        let local = RouteValue::local(7, [1; 6]);
        let endpoint = Endpoint { ifindex: 7, mac: [1; 6], _pad: [0; 2] };
        assert_eq!(
            apply(&mut m, POD, Some(RouteValue::local_pending(7))),
            vec![Op::PutRoute(POD, RouteValue::local_pending(7))]
        );
        assert_eq!(
            apply(&mut m, POD, Some(local)),
            vec![Op::PutRoute(POD, local), Op::PutEndpoint(pod, endpoint)]
        );
        assert_eq!(apply(&mut m, POD, None), vec![Op::DelEndpoint(pod), Op::DelRoute(POD)]);
        let stale = Mirror::new([], [], [(pod, endpoint)]);
        assert_eq!(stale.stale_endpoints(), vec![Op::DelEndpoint(pod)]);
    }

    #[test]
    fn an_endpoint_that_drifted_alone_is_rewritten_alone() {
        let local = RouteValue::local(7, [1; 6]);
        let wrong = Endpoint { ifindex: 9, mac: [2; 6], _pad: [0; 2] };
        let m = Mirror::new([(POD, local)], [], [(POD.1, wrong)]);
        let right = Endpoint { ifindex: 7, mac: [1; 6], _pad: [0; 2] };
        assert_eq!(m.ops(POD, Some(local)), vec![Op::PutEndpoint(POD.1, right)]);
    }

    #[test]
    fn maps_left_by_an_earlier_daemon_are_read_back() {
        let m = Mirror::new([(A, remote(NODE2))], [NODE2, NODE3], []);
        assert_eq!(m.stale_peers(), vec![Op::DelPeer(NODE3)]);
        assert!(m.ops(A, Some(remote(NODE2))).is_empty());
        assert_eq!(m.ops(A, None), vec![Op::DelRoute(A), Op::DelPeer(NODE2)]);
    }
}
