//! The programs' route, node and peer maps, written from userspace.
//!
//! A mirror of what was written is kept so each sync writes only what changed
//! ([`crate::dataplane::reconcile`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
};

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, IterableMap as _, LpmTrie, Map, MapData, PerCpuArray},
    Ebpf,
};
use fastpath_common::{
    maps::{
        AgentInfo, Counter, Endpoint, Node6Config, NodeConfig, AGENT, COUNTERS, ENDPOINTS, ENDPOINTS6, NODE,
        NODE6, ROUTES, ROUTES6, TUNNEL_PEERS, TUNNEL_PEERS6,
    },
    route::{RouteValue, ROUTE_F_OVERFLOW},
    route6::RouteValue6,
    tunnel::Tunnel,
};

use crate::{
    dataplane::reconcile::{self, Mirror, Op},
    model::route::{contains6, Prefix, Prefix6},
    Error,
};

pub type RouteTrie<T> = LpmTrie<T, [u8; 4], RouteValue>;

/// What the maps could not take, after a sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overflow {
    /// Prefixes the route map refused.
    pub routes: usize,
    /// Local pods the endpoint map refused.
    pub endpoints: usize,
    /// Local pods' IPv6 addresses the IPv6 endpoint map refused.
    pub endpoints6: usize,
    /// IPv6 prefixes the IPv6 route map refused.
    pub routes6: usize,
    /// Nodes the IPv6 peer map refused.
    pub peers6: usize,
    /// The longest prefix refused.
    pub example: Option<Prefix>,
}

pub struct Tables {
    routes: RouteTrie<MapData>,
    node: Array<MapData, NodeConfig>,
    peers: HashMap<MapData, [u8; 4], u32>,
    endpoints: HashMap<MapData, [u8; 4], Endpoint>,
    endpoints6: HashMap<MapData, [u8; 16], Endpoint>,
    routes6: LpmTrie<MapData, [u8; 16], RouteValue6>,
    peers6: HashMap<MapData, [u8; 16], u32>,
    node6: Array<MapData, Node6Config>,
    agent: Array<MapData, AgentInfo>,
    pub counters: PerCpuArray<MapData, Counter>,
    mirror: Mirror,
    endpoints6_held: Held<Ipv6Addr, Endpoint>,
    routes6_held: Held<Prefix6, RouteValue6>,
    peers6_held: Held<Ipv6Addr, u32>,
}

/// What a map that follows no route (IPv6's) holds, and the keys it refused when full: the
/// kernel carries theirs, and they are tried again at every sync.
struct Held<K, V> {
    held: BTreeMap<K, V>,
    unwritten: BTreeSet<K>,
}

impl<K: Ord + Copy, V: PartialEq + Copy> Held<K, V> {
    fn new(held: BTreeMap<K, V>) -> Self {
        Self { held, unwritten: BTreeSet::new() }
    }

    /// Write (`Some`) or remove (`None`) with `write` what makes the map hold `wanted`.
    fn apply(
        &mut self,
        wanted: &BTreeMap<K, V>,
        mut write: impl FnMut(K, Option<V>) -> Result<(), Error>,
    ) -> Synced {
        let mut synced = Synced::default();
        self.unwritten.retain(|key| wanted.contains_key(key));
        for (key, value) in reconcile::table_ops(&self.held, wanted) {
            match (write(key, value), value) {
                (Ok(()), Some(value)) => {
                    self.held.insert(key, value);
                    self.unwritten.remove(&key);
                    synced.written.upserted += 1;
                }
                (Ok(()), None) => {
                    self.held.remove(&key);
                    synced.written.removed += 1;
                }
                (Err(error), _) => {
                    if error.is_map_full() {
                        self.unwritten.insert(key);
                        synced.refused += 1;
                    }
                    synced.failed.get_or_insert(error);
                }
            }
        }
        synced
    }
}

/// How many entries a sync wrote and removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub upserted: usize,
    pub removed: usize,
}

/// A route sync: what it wrote, and what the maps refused.
#[derive(Debug, Default)]
pub struct Synced {
    pub written: Written,
    /// Prefixes whose route (or peer) the maps refused in this sync: the kernel routes them.
    pub refused: usize,
    /// The route map refused a new prefix for want of room during this sync.
    routes_full: bool,
    /// The first write that failed, if any.
    pub failed: Option<Error>,
}

impl std::ops::Add for Written {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self { upserted: self.upserted + other.upserted, removed: self.removed + other.removed }
    }
}

impl Written {
    pub fn any(&self) -> bool {
        self.upserted + self.removed > 0
    }
}

impl Tables {
    /// Take the maps out of the loaded object. Maps an earlier daemon left pinned keep their
    /// entries; what they hold is read back, so the first sync changes only what differs.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, Error> {
        let mut tables = Self {
            routes: take(ebpf, ROUTES)?,
            node: take(ebpf, NODE)?,
            peers: take(ebpf, TUNNEL_PEERS)?,
            endpoints: take(ebpf, ENDPOINTS)?,
            endpoints6: take(ebpf, ENDPOINTS6)?,
            routes6: take(ebpf, ROUTES6)?,
            peers6: take(ebpf, TUNNEL_PEERS6)?,
            node6: take(ebpf, NODE6)?,
            agent: take(ebpf, AGENT)?,
            counters: take(ebpf, COUNTERS)?,
            mirror: Mirror::default(),
            endpoints6_held: Held::new(BTreeMap::new()),
            routes6_held: Held::new(BTreeMap::new()),
            peers6_held: Held::new(BTreeMap::new()),
        };
        tables.reread()?;
        Ok(tables)
    }

    /// Forget what this daemon wrote and read back what the maps hold, so the next sync repairs
    /// whatever changed behind its back.
    pub fn reread(&mut self) -> Result<(), Error> {
        let peers = self
            .peers
            .keys()
            .map(|k| k.map(Ipv4Addr::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::ReadMap { name: TUNNEL_PEERS, source })?;
        let endpoints = self
            .endpoints
            .iter()
            .map(|e| e.map(|(k, v)| (Ipv4Addr::from(k), v)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::ReadMap { name: ENDPOINTS, source })?;
        self.mirror.reread(route_entries(&self.routes)?, peers, endpoints);
        self.endpoints6_held = Held::new(hash6_entries(&self.endpoints6, ENDPOINTS6)?);
        self.routes6_held = Held::new(trie_entries(&self.routes6, ROUTES6)?.into_iter().collect());
        self.peers6_held = Held::new(hash6_entries(&self.peers6, TUNNEL_PEERS6)?);
        Ok(())
    }

    /// Make `FP_ENDPOINTS6` hold `wanted`, writing only what differs. An address the full map
    /// refuses is the kernel's to carry (the programs find no entry and pass its packets on);
    /// it is tried again at every sync.
    pub fn apply_endpoints6(&mut self, wanted: &BTreeMap<Ipv6Addr, Endpoint>) -> Synced {
        let map = &mut self.endpoints6;
        self.endpoints6_held.apply(wanted, |addr, endpoint| write_hash6(map, ENDPOINTS6, addr, endpoint))
    }

    /// Make `FP_ROUTES6` hold `wanted`, as [`Self::apply_endpoints6`]. A prefix that holds one
    /// the full map refused is written as the kernel's (`ROUTE_F_OVERFLOW`), never as what would
    /// carry the refused prefix's packets by the wider entry's rule.
    pub fn apply_routes6(&mut self, wanted: &BTreeMap<Prefix6, RouteValue6>) -> Synced {
        let unwritten: Vec<Prefix6> = self.routes6_held.unwritten.iter().copied().collect();
        let wanted: BTreeMap<Prefix6, RouteValue6> = wanted
            .iter()
            .map(|(prefix, value)| {
                let covers_refused =
                    unwritten.iter().any(|inner| inner.0 > prefix.0 && contains6(*prefix, inner.1));
                (*prefix, if covers_refused { RouteValue6::kernel(ROUTE_F_OVERFLOW) } else { *value })
            })
            .collect();
        let map = &mut self.routes6;
        self.routes6_held.apply(&wanted, |(len, addr), value| {
            let key = Key::new(u32::from(len), addr.octets());
            match value {
                Some(value) => {
                    map.insert(&key, value, 0).map_err(|source| Error::WriteMap { name: ROUTES6, source })
                }
                None => remove_ok_if_gone(map.remove(&key), ROUTES6),
            }
        })
    }

    /// Make `FP_PEERS6` hold `wanted`, as [`Self::apply_endpoints6`]: a node the full map
    /// refused has its IPv6 VXLAN dropped, as IPv4's, while its blocks' entries still send to it.
    pub fn apply_peers6(&mut self, wanted: &BTreeMap<Ipv6Addr, u32>) -> Synced {
        let map = &mut self.peers6;
        self.peers6_held.apply(wanted, |addr, value| write_hash6(map, TUNNEL_PEERS6, addr, value))
    }

    /// This node's IPv6 settings.
    pub fn set_node6(&mut self, config: &Node6Config) -> Result<(), Error> {
        self.node6.set(0, config, 0).map_err(|source| Error::WriteMap { name: NODE6, source })
    }

    /// How many route and endpoint entries the maps refused and the kernel routes instead, and
    /// the longest such prefix.
    pub fn overflow(&self) -> Overflow {
        let (routes, endpoints) = self.mirror.unwritten_counts();
        let endpoints6 = self.endpoints6_held.unwritten.len();
        let routes6 = self.routes6_held.unwritten.len();
        let peers6 = self.peers6_held.unwritten.len();
        Overflow { routes, endpoints, endpoints6, routes6, peers6, example: self.mirror.longest_unwritten() }
    }

    /// How many entries the route map can hold.
    pub fn route_capacity(&self) -> u32 {
        self.routes.map().info().map_or(0, |i| i.max_entries())
    }

    /// Whether some entry the route map holds now encapsulates in IPIP.
    pub fn any_ipip(&self) -> bool {
        self.mirror.routes().any(|(_, v)| v.tunnel() == Ok(Some(Tunnel::Ipip)))
    }

    /// The entry the programs find for `addr` in the route map (as written).
    pub fn route_of(&self, addr: Ipv4Addr) -> Option<RouteValue> {
        self.mirror.longest_match(addr).copied()
    }

    /// The pod on this node with IPv6 address `addr`, as the endpoint map holds it.
    pub fn endpoint6_of(&self, addr: Ipv6Addr) -> Option<Endpoint> {
        self.endpoints6_held.held.get(&addr).copied()
    }

    /// The entry the programs find for `addr` in the IPv6 route map (as written): its longest
    /// prefix holding `addr`.
    pub fn route6_of(&self, addr: Ipv6Addr) -> Option<RouteValue6> {
        self.routes6_held
            .held
            .iter()
            .filter(|(prefix, _)| contains6(**prefix, addr))
            .max_by_key(|(prefix, _)| prefix.0)
            .map(|(_, value)| *value)
    }

    /// This node's IPv6 address, once its IPv6 side is written.
    pub fn node6_ip(&self) -> Option<Ipv6Addr> {
        self.node6.get(&0, 0).ok().filter(Node6Config::ready).map(|n| Ipv6Addr::from(n.node_ip))
    }

    /// Prefixes the route map holds now.
    pub fn written_prefixes(&self) -> Vec<Prefix> {
        self.mirror.routes().map(|(p, _)| *p).collect()
    }

    pub fn set_agent(&mut self, agent: &AgentInfo) -> Result<(), Error> {
        self.agent.set(0, agent, 0).map_err(|source| Error::WriteMap { name: AGENT, source })
    }

    /// This node's settings as the map holds them (an earlier daemon's, before the first write).
    pub fn node(&self) -> Option<NodeConfig> {
        self.node.get(&0, 0).ok()
    }

    pub fn set_node(&mut self, config: &NodeConfig) -> Result<(), Error> {
        self.node.set(0, config, 0).map_err(|source| Error::WriteMap { name: NODE, source })
    }

    /// Make each prefix map to its value (`None`: no entry), writing only what differs, removals
    /// first and then the longest prefixes ([`reconcile::write_order`]); then drop peers and
    /// endpoints no route needs. A write the map refuses (full) does not stop the rest: the
    /// prefix is remembered as unwritten and the kernel routes it, every entry covering it
    /// saying "kernel" meanwhile; it is tried again at every full sync, and as soon as a removal
    /// makes room.
    pub fn apply(&mut self, changes: impl IntoIterator<Item = (Prefix, Option<RouteValue>)>) -> Synced {
        let mut changes: Vec<_> = changes.into_iter().collect();
        reconcile::write_order(&mut changes);
        let mut synced = Synced::default();
        for (prefix, value) in changes {
            self.put(prefix, value, &mut synced);
        }
        if synced.written.removed > 0 && self.mirror.unwritten_counts().0 > 0 {
            // Room may have come: the unwritten prefixes, longest first, until one is refused.
            let refused_before = synced.refused;
            for (prefix, value) in self.mirror.unwritten() {
                self.put(prefix, Some(value), &mut synced);
                if synced.refused > refused_before {
                    break;
                }
            }
        }
        for op in self.mirror.stale_peers().into_iter().chain(self.mirror.stale_endpoints()) {
            if let Err(e) = self.write(&op, &mut synced.written) {
                synced.failed.get_or_insert(e);
            }
        }
        synced
    }

    /// One prefix's writes (its peer, route and endpoint), then those of the entries covering
    /// it, if it was refused or had been.
    fn put(&mut self, prefix: Prefix, value: Option<RouteValue>, synced: &mut Synced) {
        let mut refused = false;
        for op in self.mirror.ops(prefix, value) {
            let new_route = matches!(op, Op::PutRoute(p, _) if !self.mirror.holds(&p));
            // Once the trie refused a new prefix for want of room, so will it the next ones of
            // this batch (removals came first): they are not tried.
            let result = if new_route && synced.routes_full {
                Err(None)
            } else {
                self.write(&op, &mut synced.written).map_err(Some)
            };
            let Err(error) = result else { continue };
            let full = error.as_ref().is_some_and(Error::is_map_full);
            if let Some(error) = error {
                synced.failed.get_or_insert(error);
            }
            match op {
                Op::PutPeer(_) | Op::PutRoute(..) => {
                    synced.routes_full |= new_route && full;
                    synced.refused += 1;
                    refused = true;
                    break;
                }
                Op::PutEndpoint(pod, _) => self.mirror.refused_endpoint(pod),
                Op::DelEndpoint(_) | Op::DelRoute(_) | Op::DelPeer(_) => {}
            }
        }
        let after = match value {
            Some(value) if refused => self.mirror.refused(prefix, value),
            _ if refused => Vec::new(),
            _ => self.mirror.settled(prefix),
        };
        for op in after {
            // Entries covering the prefix are already in the map: these are updates, which a
            // full map takes.
            if let Err(e) = self.write(&op, &mut synced.written) {
                synced.failed.get_or_insert(e);
            }
        }
    }

    fn write(&mut self, op: &Op, written: &mut Written) -> Result<(), Error> {
        let key = |(len, addr): Prefix| Key::new(u32::from(len), addr.octets());
        match *op {
            Op::PutPeer(peer) => {
                self.peers
                    .insert(peer.octets(), 1, 0)
                    .map_err(|source| Error::WriteMap { name: TUNNEL_PEERS, source })?;
                written.upserted += 1;
            }
            Op::PutRoute(prefix, value) => {
                self.routes
                    .insert(&key(prefix), value, 0)
                    .map_err(|source| Error::WriteMap { name: ROUTES, source })?;
                written.upserted += 1;
            }
            Op::DelRoute(prefix) => {
                remove_ok_if_gone(self.routes.remove(&key(prefix)), ROUTES)?;
                written.removed += 1;
            }
            Op::DelPeer(peer) => {
                remove_ok_if_gone(self.peers.remove(&peer.octets()), TUNNEL_PEERS)?;
                written.removed += 1;
            }
            Op::PutEndpoint(pod, endpoint) => {
                self.endpoints
                    .insert(pod.octets(), endpoint, 0)
                    .map_err(|source| Error::WriteMap { name: ENDPOINTS, source })?;
                written.upserted += 1;
            }
            Op::DelEndpoint(pod) => {
                remove_ok_if_gone(self.endpoints.remove(&pod.octets()), ENDPOINTS)?;
                written.removed += 1;
            }
        }
        self.mirror.record(op);
        Ok(())
    }
}

/// Take map `name` out of the object as the typed map `M`.
fn take<M: TryFrom<Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<M, Error> {
    let map = ebpf.take_map(name).ok_or(Error::MissingMap { name })?;
    M::try_from(map).map_err(|source| Error::ReadMap { name, source })
}

/// What IPv6-keyed hash map `name` holds, by address.
fn hash6_entries<V: aya::Pod>(
    map: &HashMap<MapData, [u8; 16], V>,
    name: &'static str,
) -> Result<BTreeMap<Ipv6Addr, V>, Error> {
    map.iter()
        .map(|e| e.map(|(k, v)| (Ipv6Addr::from(k), v)))
        .collect::<Result<_, _>>()
        .map_err(|source| Error::ReadMap { name, source })
}

/// Write (`Some`) or remove (`None`) `addr`'s entry of IPv6-keyed hash map `name`.
fn write_hash6<V: aya::Pod>(
    map: &mut HashMap<MapData, [u8; 16], V>,
    name: &'static str,
    addr: Ipv6Addr,
    value: Option<V>,
) -> Result<(), Error> {
    match value {
        Some(value) => map.insert(addr.octets(), value, 0).map_err(|source| Error::WriteMap { name, source }),
        None => remove_ok_if_gone(map.remove(&addr.octets()), name),
    }
}

fn remove_ok_if_gone(result: Result<(), aya::maps::MapError>, name: &'static str) -> Result<(), Error> {
    match result {
        Err(aya::maps::MapError::KeyNotFound) | Ok(()) => Ok(()),
        Err(source) => Err(Error::WriteMap { name, source }),
    }
}

/// Open the route trie a running daemon pinned in `dir`.
pub fn pinned_routes(dir: &Path) -> Result<RouteTrie<MapData>, Error> {
    crate::dataplane::bpffs::open_pinned_as(dir, ROUTES)
}

/// Every entry of a route trie, in prefix order.
pub fn route_entries<T: std::borrow::Borrow<MapData>>(
    trie: &RouteTrie<T>,
) -> Result<Vec<(Prefix, RouteValue)>, Error> {
    trie_entries(trie, ROUTES)
}

/// The entries of the `FP_ROUTES6` pinned in `dir`, in address order.
pub fn pinned_route6_entries(dir: &Path) -> Result<Vec<(Prefix6, RouteValue6)>, Error> {
    let trie: LpmTrie<MapData, [u8; 16], RouteValue6> =
        crate::dataplane::bpffs::open_pinned_as(dir, ROUTES6)?;
    trie_entries(&trie, ROUTES6)
}

/// A trie entry: ((prefix length, address), value).
type TrieEntry<A, V> = ((u8, A), V);

/// Every entry of LPM trie `name`, in address order.
fn trie_entries<T, K, V, A>(
    trie: &LpmTrie<T, K, V>,
    name: &'static str,
) -> Result<Vec<TrieEntry<A, V>>, Error>
where
    T: std::borrow::Borrow<MapData>,
    K: aya::Pod,
    V: aya::Pod,
    A: From<K> + Ord + Copy,
{
    let mut entries = trie
        .iter()
        .map(|entry| {
            let (key, value) = entry.map_err(|source| Error::ReadMap { name, source })?;
            Ok(((key.prefix_len() as u8, A::from(key.data())), value))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    entries.sort_by_key(|((len, addr), _)| (*addr, *len));
    Ok(entries)
}
