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
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, Map, MapData},
    Ebpf,
};
use fastpath_common::{
    maps::{NodeConfig, NODE, ROUTES, TUNNEL_PEERS},
    route::RouteValue,
};

use crate::{reconcile, routes::Prefix, Error};

pub type RouteTrie<T> = LpmTrie<T, [u8; 4], RouteValue>;

pub struct Tables {
    routes: RouteTrie<MapData>,
    node: Array<MapData, NodeConfig>,
    peers: HashMap<MapData, [u8; 4], u32>,
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
    /// Take the maps out of the loaded object (after they were pinned).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, Error> {
        let routes =
            take(ebpf, ROUTES)?.try_into().map_err(|source| Error::ReadMap { name: ROUTES, source })?;
        let node = take(ebpf, NODE)?.try_into().map_err(|source| Error::ReadMap { name: NODE, source })?;
        let peers = take(ebpf, TUNNEL_PEERS)?
            .try_into()
            .map_err(|source| Error::ReadMap { name: TUNNEL_PEERS, source })?;
        Ok(Self { routes, node, peers, written_routes: BTreeMap::new(), written_peers: BTreeMap::new() })
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

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, Error> {
    ebpf.take_map(name).ok_or(Error::MissingMap { name })
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
