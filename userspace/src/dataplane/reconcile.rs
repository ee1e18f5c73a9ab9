//! What to write and what to delete so the maps hold what they should, one prefix at a time
//! (pure). The mirror remembers what the maps hold; a peer is kept exactly as long as some route
//! needs it, written before the first route that needs it (again, if it went missing) and
//! removed after the last; a local pod's endpoint entry follows its /32, leaving before the route
//! changes and arriving after.
//!
//! A full map never drops: a prefix the route map refuses is remembered as unwritten, and every
//! entry that covers it (the node's blackhole block, another node's block) says "kernel" while
//! anything inside it is unwritten, so the packets that would have fallen into it go to the
//! kernel. Entries are written longest prefix first ([`write_order`]), so a covering entry is
//! written knowing what inside it did not fit; once room comes, the unwritten prefix is written
//! first and its cover turns back after.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::Ipv4Addr,
};

use fastpath_common::{
    maps::Endpoint,
    route::{endpoint_of, RouteKind, RouteValue},
};

use crate::model::route::Prefix;

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
    /// Prefixes the route map refused (no room), by (address, length) so those inside a prefix
    /// are one range; the value each should have. The kernel routes them meanwhile.
    unwritten: BTreeMap<(Ipv4Addr, u8), RouteValue>,
    /// What each entry written as "kernel" because of an unwritten prefix inside it stands for.
    covering: HashMap<Prefix, RouteValue>,
    /// Local pods the endpoint map refused (their /32 carries them).
    unwritten_endpoints: BTreeSet<Ipv4Addr>,
}

/// The node whose tunnel an entry needs accepted: a remote block's, also while it is written as
/// "kernel" for an unwritten prefix inside it (the kernel may send there).
fn peer_of(value: &RouteValue) -> Option<Ipv4Addr> {
    let remote = value.kind == RouteKind::RemoteBlock as u32;
    let overflowed_remote = value.is_overflow() && value.next_hop != [0; 4];
    (remote || overflowed_remote).then(|| Ipv4Addr::from(value.next_hop))
}

/// The writes that make a table holding `held` hold `wanted` (for a table that follows no route,
/// like `FP_ENDPOINTS6`): removals first, as they make room, then what is new or changed, each
/// in key order. `None` removes.
pub fn table_ops<K: Ord + Copy, V: PartialEq + Copy>(
    held: &BTreeMap<K, V>,
    wanted: &BTreeMap<K, V>,
) -> Vec<(K, Option<V>)> {
    let removals = held.keys().filter(|k| !wanted.contains_key(k)).map(|k| (*k, None));
    let puts = wanted.iter().filter(|(k, v)| held.get(k) != Some(v)).map(|(k, v)| (*k, Some(*v)));
    removals.chain(puts).collect()
}

/// The order a batch of changes is written in: removals first (they make room), then the longest
/// prefixes, so an entry is written after every entry inside it and knows which did not fit.
pub fn write_order(changes: &mut [(Prefix, Option<RouteValue>)]) {
    changes.sort_by_key(|((len, addr), value)| (value.is_some(), Reverse(*len), *addr));
}

/// The prefixes strictly shorter than `prefix` that contain it, longest first.
fn covers((len, addr): Prefix) -> impl Iterator<Item = Prefix> {
    (0..len).rev().map(move |l| (l, Ipv4Addr::from(u32::from(addr) & mask(l))))
}

fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
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

    /// The mirror of what the maps hold now (read back), keeping what this one knew about
    /// entries the maps refused and the entries covering them.
    pub fn reread(
        &mut self,
        routes: impl IntoIterator<Item = (Prefix, RouteValue)>,
        peers: impl IntoIterator<Item = Ipv4Addr>,
        endpoints: impl IntoIterator<Item = (Ipv4Addr, Endpoint)>,
    ) {
        let mut fresh = Self::new(routes, peers, endpoints);
        fresh.unwritten = std::mem::take(&mut self.unwritten);
        fresh.covering = std::mem::take(&mut self.covering);
        fresh.unwritten_endpoints = std::mem::take(&mut self.unwritten_endpoints);
        *self = fresh;
    }

    pub fn routes(&self) -> impl Iterator<Item = (&Prefix, &RouteValue)> {
        self.routes.iter()
    }

    /// The entry the programs' longest-prefix match finds for `addr`, among those written.
    pub fn longest_match(&self, addr: Ipv4Addr) -> Option<&RouteValue> {
        (0..=32u8).rev().find_map(|len| self.routes.get(&(len, Ipv4Addr::from(u32::from(addr) & mask(len)))))
    }

    pub fn len(&self) -> (usize, usize) {
        (self.routes.len(), self.peers.len())
    }

    /// Whether the route map holds an entry for `prefix`.
    pub fn holds(&self, prefix: &Prefix) -> bool {
        self.routes.contains_key(prefix)
    }

    /// Prefixes the route map refused, with their values, longest first.
    pub fn unwritten(&self) -> Vec<(Prefix, RouteValue)> {
        let mut unwritten: Vec<_> =
            self.unwritten.iter().map(|((addr, len), v)| ((*len, *addr), *v)).collect();
        write_order_of_puts(&mut unwritten);
        unwritten
    }

    /// How many route and endpoint entries the maps refused.
    pub fn unwritten_counts(&self) -> (usize, usize) {
        (self.unwritten.len(), self.unwritten_endpoints.len())
    }

    /// The longest prefix the route map refused (the lowest address among equals).
    pub fn longest_unwritten(&self) -> Option<Prefix> {
        self.unwritten
            .keys()
            .map(|(addr, len)| (*len, *addr))
            .min_by_key(|(len, addr)| (Reverse(*len), *addr))
    }

    /// Whether some unwritten prefix lies strictly inside `prefix`.
    fn unwritten_inside(&self, (len, addr): Prefix) -> bool {
        let first = u32::from(addr) & mask(len);
        let last = first | !mask(len);
        self.unwritten
            .range((Ipv4Addr::from(first), 0)..=(Ipv4Addr::from(last), 32))
            .any(|((_, inner), _)| *inner > len)
    }

    /// The writes that make `prefix` map to `value` (`None`: no entry), peers and endpoints
    /// included; a missing peer is written again. While a prefix inside it is unwritten, the
    /// entry says "kernel" instead ([`RouteValue::overflow`]) and `value` waits for room.
    pub fn ops(&mut self, prefix: Prefix, value: Option<RouteValue>) -> Vec<Op> {
        let value = match value {
            Some(wanted) if self.unwritten_inside(prefix) => {
                self.covering.insert(prefix, wanted);
                Some(RouteValue::overflow(&wanted))
            }
            _ => {
                self.covering.remove(&prefix);
                value
            }
        };
        let old = self.routes.get(&prefix).copied();
        let pod = (prefix.0 == 32).then_some(prefix.1);
        let new_endpoint = pod.zip(value.as_ref().and_then(endpoint_of));
        let held_endpoint = pod.and_then(|p| self.endpoints.get(&p).copied());
        let route_changes = old != value;
        let endpoint_changes = new_endpoint.map(|(_, e)| e) != held_endpoint;
        let new_peer = value.as_ref().and_then(peer_of);
        let peer_missing = new_peer.filter(|p| !self.peers.contains(p));
        if !route_changes && !endpoint_changes && peer_missing.is_none() {
            return Vec::new();
        }
        let mut ops = Vec::with_capacity(4);
        let old_peer = old.as_ref().and_then(peer_of);
        if let Some(peer) = peer_missing {
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

    /// The map refused to take `prefix` (its route or its peer): the kernel routes it, and
    /// every entry covering it must say so meanwhile. Returns the writes that do.
    pub fn refused(&mut self, prefix: Prefix, value: RouteValue) -> Vec<Op> {
        self.unwritten.insert((prefix.1, prefix.0), value);
        self.recover(prefix)
    }

    /// `prefix` reached the map or is not wanted any more: if it was unwritten, the entries
    /// covering it return to what they stand for (once nothing else inside them is unwritten).
    /// Returns the writes that do, to be made after `prefix`'s own.
    pub fn settled(&mut self, prefix: Prefix) -> Vec<Op> {
        if self.unwritten.remove(&(prefix.1, prefix.0)).is_none() {
            return Vec::new();
        }
        self.recover(prefix)
    }

    /// The writes that bring every entry covering `prefix` in line with what is unwritten.
    fn recover(&mut self, prefix: Prefix) -> Vec<Op> {
        let mut ops = Vec::new();
        for cover in covers(prefix) {
            let wanted = self.covering.get(&cover).or_else(|| self.routes.get(&cover)).copied();
            if let Some(wanted) = wanted {
                ops.extend(self.ops(cover, Some(wanted)));
            }
        }
        ops
    }

    /// The endpoint map refused `pod`'s entry (its /32 in the route map carries it).
    pub fn refused_endpoint(&mut self, pod: Ipv4Addr) {
        self.unwritten_endpoints.insert(pod);
    }

    /// Peers in the map that no route needs (left by an earlier daemon).
    pub fn stale_peers(&self) -> Vec<Op> {
        // A peer an unwritten route needs stays: the kernel may send to its node meanwhile.
        let waiting: HashSet<Ipv4Addr> = self.unwritten.values().filter_map(peer_of).collect();
        let mut stale: Vec<Ipv4Addr> = self
            .peers
            .iter()
            .filter(|p| !self.peer_refs.contains_key(p) && !waiting.contains(p))
            .copied()
            .collect();
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
                self.unwritten_endpoints.remove(&pod);
            }
            Op::DelEndpoint(pod) => {
                self.endpoints.remove(&pod);
                self.unwritten_endpoints.remove(&pod);
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

/// [`write_order`] for entries that are all to be written.
fn write_order_of_puts(entries: &mut [(Prefix, RouteValue)]) {
    entries.sort_by_key(|((len, addr), _)| (Reverse(*len), *addr));
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
    fn a_table_is_brought_to_what_is_wanted_removals_first() {
        let held = BTreeMap::from([(1, 'a'), (2, 'b'), (3, 'c')]);
        let wanted = BTreeMap::from([(0, 'z'), (2, 'b'), (3, 'd')]);
        assert_eq!(table_ops(&held, &wanted), vec![(1, None), (0, Some('z')), (3, Some('d'))]);
        assert!(table_ops(&wanted, &wanted).is_empty());
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
        let mut m = Mirror::new([(POD, local)], [], [(POD.1, wrong)]);
        let right = Endpoint { ifindex: 7, mac: [1; 6], _pad: [0; 2] };
        assert_eq!(m.ops(POD, Some(local)), vec![Op::PutEndpoint(POD.1, right)]);
    }

    #[test]
    fn maps_left_by_an_earlier_daemon_are_read_back() {
        let mut m = Mirror::new([(A, remote(NODE2))], [NODE2, NODE3], []);
        assert_eq!(m.stale_peers(), vec![Op::DelPeer(NODE3)]);
        assert!(m.ops(A, Some(remote(NODE2))).is_empty());
        assert_eq!(m.ops(A, None), vec![Op::DelRoute(A), Op::DelPeer(NODE2)]);
    }

    const BLOCK: Prefix = (26, Ipv4Addr::new(10, 244, 40, 0));
    const NEW_POD: Prefix = (32, Ipv4Addr::new(10, 244, 40, 40));

    /// Write `changes` as the tables do, in write order, with a route map that refuses every new
    /// prefix in `full`: what reached the map, in order.
    fn write_batch(
        m: &mut Mirror,
        mut changes: Vec<(Prefix, Option<RouteValue>)>,
        full: &[Prefix],
    ) -> Vec<Op> {
        write_order(&mut changes);
        let mut done = Vec::new();
        for (prefix, value) in changes {
            let mut refused = false;
            for op in m.ops(prefix, value) {
                if matches!(op, Op::PutRoute(p, _) if full.contains(&p) && !m.holds(&p)) {
                    refused = true;
                    break;
                }
                m.record(&op);
                done.push(op);
            }
            let after = if refused { m.refused(prefix, value.unwrap()) } else { m.settled(prefix) };
            for op in after {
                m.record(&op);
                done.push(op);
            }
        }
        done
    }

    #[test]
    fn removals_come_first_then_the_longest_prefixes() {
        let mut changes =
            vec![(BLOCK, Some(RouteValue::blackhole())), (A, None), (POD, Some(RouteValue::kernel()))];
        write_order(&mut changes);
        assert_eq!(changes.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![A, POD, BLOCK]);
    }

    #[test]
    fn a_block_is_written_as_the_kernels_when_a_pod_inside_it_did_not_fit() {
        let mut m = Mirror::default();
        let done = write_batch(
            &mut m,
            vec![(BLOCK, Some(RouteValue::blackhole())), (NEW_POD, Some(RouteValue::local(7, [1; 6])))],
            &[NEW_POD],
        );
        // Never a blackhole over the missing /32, not even for a moment.
        assert_eq!(done, vec![Op::PutRoute(BLOCK, RouteValue::overflow(&RouteValue::blackhole()))]);
        assert_eq!(m.unwritten_counts(), (1, 0));
        assert_eq!(
            m.longest_match(NEW_POD.1).map(|v| v.kernel_reason()),
            Some(fastpath_common::Reason::PassMapOverflow)
        );
    }

    #[test]
    fn a_pod_that_does_not_fit_later_turns_its_blackhole_to_the_kernel_and_back_once_written() {
        let mut m = Mirror::default();
        write_batch(&mut m, vec![(BLOCK, Some(RouteValue::blackhole()))], &[]);
        let local = RouteValue::local(7, [1; 6]);
        let done = write_batch(&mut m, vec![(NEW_POD, Some(local))], &[NEW_POD]);
        assert_eq!(done, vec![Op::PutRoute(BLOCK, RouteValue::overflow(&RouteValue::blackhole()))]);
        // Again while it still does not fit: nothing to write.
        assert!(write_batch(
            &mut m,
            vec![(NEW_POD, Some(local)), (BLOCK, Some(RouteValue::blackhole()))],
            &[NEW_POD]
        )
        .is_empty());
        // Room came: the /32 (and its endpoint) first, the blackhole after.
        let endpoint = Endpoint { ifindex: 7, mac: [1; 6], _pad: [0; 2] };
        assert_eq!(
            write_batch(&mut m, vec![(NEW_POD, Some(local))], &[]),
            vec![
                Op::PutRoute(NEW_POD, local),
                Op::PutEndpoint(NEW_POD.1, endpoint),
                Op::PutRoute(BLOCK, RouteValue::blackhole())
            ]
        );
        assert_eq!(m.unwritten_counts(), (0, 0));
    }

    #[test]
    fn an_unwritten_pod_that_goes_away_gives_its_block_back() {
        let mut m = Mirror::default();
        write_batch(&mut m, vec![(BLOCK, Some(RouteValue::blackhole()))], &[]);
        write_batch(&mut m, vec![(NEW_POD, Some(RouteValue::local(7, [1; 6])))], &[NEW_POD]);
        assert_eq!(
            write_batch(&mut m, vec![(NEW_POD, None)], &[NEW_POD]),
            vec![Op::PutRoute(BLOCK, RouteValue::blackhole())]
        );
    }

    #[test]
    fn a_remote_block_over_a_missing_prefix_keeps_its_peer() {
        let mut m = Mirror::default();
        write_batch(&mut m, vec![(A, Some(remote(NODE2)))], &[]);
        let borrowed = (32, Ipv4Addr::new(10, 244, 166, 130));
        let done = write_batch(&mut m, vec![(borrowed, Some(remote(NODE3)))], &[borrowed]);
        // NODE3's peer entry came before its refused route; NODE2's stays for the covered block.
        assert_eq!(done, vec![Op::PutPeer(NODE3), Op::PutRoute(A, RouteValue::overflow(&remote(NODE2)))]);
        assert!(m.stale_peers().is_empty());
    }

    #[test]
    fn a_peer_deleted_behind_the_daemons_back_is_written_again() {
        // Read back: the route is there, its peer is not.
        let mut m = Mirror::new([(A, remote(NODE2))], [], []);
        assert_eq!(m.ops(A, Some(remote(NODE2))), vec![Op::PutPeer(NODE2)]);
    }

    #[test]
    fn reading_the_maps_back_keeps_what_did_not_fit() {
        let mut m = Mirror::default();
        write_batch(&mut m, vec![(BLOCK, Some(RouteValue::blackhole()))], &[]);
        write_batch(&mut m, vec![(NEW_POD, Some(RouteValue::kernel()))], &[NEW_POD]);
        let held: Vec<_> = m.routes().map(|(p, v)| (*p, *v)).collect();
        m.reread(held, [], []);
        assert_eq!(m.unwritten(), vec![(NEW_POD, RouteValue::kernel())]);
        // The resync's desired blackhole stays "kernel" while the pod is unwritten.
        assert!(m.ops(BLOCK, Some(RouteValue::blackhole())).is_empty());
    }
}
