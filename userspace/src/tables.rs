//! The programs' route, node and peer maps, written from userspace.
//!
//! A mirror of what was written is kept so each sync writes only what changed
//! ([`crate::reconcile::diff`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::Path,
};

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, Map, MapData, PerCpuArray},
    Ebpf,
};
use fastpath_common::{
    maps::{AgentInfo, Counter, NodeConfig, AGENT, COUNTERS, NODE, ROUTES, TUNNEL_PEERS},
    route::RouteValue,
};

use crate::{reconcile, routes::Prefix, Error};

pub type RouteTrie<T> = LpmTrie<T, [u8; 4], RouteValue>;

pub struct Tables {
    routes: RouteTrie<MapData>,
    node: Array<MapData, NodeConfig>,
    peers: HashMap<MapData, [u8; 4], u32>,
    agent: Array<MapData, AgentInfo>,
    pub counters: PerCpuArray<MapData, Counter>,
    written_routes: BTreeMap<Prefix, RouteValue>,
    written_peers: BTreeMap<Ipv4Addr, ()>,
}

/// How many entries one sync wrote and removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub upserted: usize,
    pub removed: usize,
}

impl Tables {
    /// Take the maps out of the loaded object. Maps an earlier daemon left pinned keep their
    /// entries; what they hold is read back, so the first sync changes only what differs.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, Error> {
        let routes: RouteTrie<MapData> = take(ebpf, ROUTES)?;
        let peers: HashMap<MapData, [u8; 4], u32> = take(ebpf, TUNNEL_PEERS)?;
        let written_routes = route_entries(&routes)?.into_iter().collect();
        let written_peers = peers
            .keys()
            .map(|k| k.map(|k| (Ipv4Addr::from(k), ())))
            .collect::<Result<_, _>>()
            .map_err(|source| Error::ReadMap { name: TUNNEL_PEERS, source })?;
        Ok(Self {
            routes,
            node: take(ebpf, NODE)?,
            peers,
            agent: take(ebpf, AGENT)?,
            counters: take(ebpf, COUNTERS)?,
            written_routes,
            written_peers,
        })
    }

    /// Entries in the route and peer maps.
    pub fn fill(&self) -> (usize, usize) {
        (self.written_routes.len(), self.written_peers.len())
    }

    pub fn set_agent(&mut self, agent: &AgentInfo) -> Result<(), Error> {
        self.agent.set(0, agent, 0).map_err(|source| Error::WriteMap { name: AGENT, source })
    }

    pub fn set_node(&mut self, config: &NodeConfig) -> Result<(), Error> {
        self.node.set(0, config, 0).map_err(|source| Error::WriteMap { name: NODE, source })
    }

    /// Make the maps hold `routes` and `peers`. New peers go in before the routes that need
    /// them, and leave after the routes that used them.
    pub fn sync(
        &mut self,
        routes: &BTreeMap<Prefix, RouteValue>,
        peers: &BTreeSet<Ipv4Addr>,
    ) -> Result<Written, Error> {
        let peers: BTreeMap<Ipv4Addr, ()> = peers.iter().map(|p| (*p, ())).collect();
        let peer_diff = reconcile::diff(&peers, &self.written_peers);
        let route_diff = reconcile::diff(routes, &self.written_routes);
        for (peer, ()) in &peer_diff.upsert {
            self.peers
                .insert(peer.octets(), 1, 0)
                .map_err(|source| Error::WriteMap { name: TUNNEL_PEERS, source })?;
            self.written_peers.insert(*peer, ());
        }
        for ((len, addr), value) in &route_diff.upsert {
            self.routes
                .insert(&Key::new(u32::from(*len), addr.octets()), value, 0)
                .map_err(|source| Error::WriteMap { name: ROUTES, source })?;
            self.written_routes.insert((*len, *addr), *value);
        }
        for (len, addr) in &route_diff.remove {
            remove_ok_if_gone(self.routes.remove(&Key::new(u32::from(*len), addr.octets())), ROUTES)?;
            self.written_routes.remove(&(*len, *addr));
        }
        for peer in &peer_diff.remove {
            remove_ok_if_gone(self.peers.remove(&peer.octets()), TUNNEL_PEERS)?;
            self.written_peers.remove(peer);
        }
        Ok(Written {
            upserted: route_diff.upsert.len() + peer_diff.upsert.len(),
            removed: route_diff.remove.len() + peer_diff.remove.len(),
        })
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

fn remove_ok_if_gone(result: Result<(), aya::maps::MapError>, name: &'static str) -> Result<(), Error> {
    match result {
        Err(aya::maps::MapError::KeyNotFound) | Ok(()) => Ok(()),
        Err(source) => Err(Error::WriteMap { name, source }),
    }
}

/// Open the route trie a running daemon pinned in `dir`.
pub fn pinned_routes(dir: &Path) -> Result<RouteTrie<MapData>, Error> {
    crate::bpffs::open_pinned(dir, ROUTES)?
        .try_into()
        .map_err(|source| Error::ReadMap { name: ROUTES, source })
}

/// Every entry of a route trie, in prefix order.
pub fn route_entries<T: std::borrow::Borrow<MapData>>(
    trie: &RouteTrie<T>,
) -> Result<Vec<(Prefix, RouteValue)>, Error> {
    let mut entries = trie
        .iter()
        .map(|entry| {
            let (key, value) = entry.map_err(|source| Error::ReadMap { name: ROUTES, source })?;
            Ok(((key.prefix_len() as u8, Ipv4Addr::from(key.data())), value))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    entries.sort_by_key(|((len, addr), _)| (*addr, *len));
    Ok(entries)
}
