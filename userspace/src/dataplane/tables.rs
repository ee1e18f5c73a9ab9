//! The programs' route, node and peer maps, written from userspace.
//!
//! A mirror of what was written is kept so each sync writes only what changed
//! ([`crate::daemon::reconcile::diff`]).

use std::{net::Ipv4Addr, path::Path};

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, Map, MapData, PerCpuArray},
    Ebpf,
};
use fastpath_common::{
    maps::{
        AgentInfo, Counter, Endpoint, NodeConfig, AGENT, COUNTERS, ENDPOINTS, NODE, ROUTES, TUNNEL_PEERS,
    },
    route::RouteValue,
    tunnel::Tunnel,
};

use crate::{
    daemon::{
        reconcile::{Mirror, Op},
        routes::Prefix,
    },
    Error,
};

pub type RouteTrie<T> = LpmTrie<T, [u8; 4], RouteValue>;

pub struct Tables {
    routes: RouteTrie<MapData>,
    node: Array<MapData, NodeConfig>,
    peers: HashMap<MapData, [u8; 4], u32>,
    endpoints: HashMap<MapData, [u8; 4], Endpoint>,
    agent: Array<MapData, AgentInfo>,
    pub counters: PerCpuArray<MapData, Counter>,
    mirror: Mirror,
}

/// How many entries a sync wrote and removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub upserted: usize,
    pub removed: usize,
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
            agent: take(ebpf, AGENT)?,
            counters: take(ebpf, COUNTERS)?,
            mirror: Mirror::default(),
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
        self.mirror = Mirror::new(route_entries(&self.routes)?, peers, endpoints);
        Ok(())
    }

    /// Whether some entry the route map holds now encapsulates in IPIP.
    pub fn any_ipip(&self) -> bool {
        self.mirror.routes().any(|(_, v)| v.tunnel() == Ok(Some(Tunnel::Ipip)))
    }

    /// The entry the programs find for `addr` in the route map (as written).
    pub fn route_of(&self, addr: Ipv4Addr) -> Option<RouteValue> {
        self.mirror.longest_match(addr).copied()
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

    /// Make each prefix map to its value (`None`: no entry), writing only what differs; then
    /// drop peers no route needs. Stops at the first failed write; what was written stays
    /// recorded, so a later sync finishes the job.
    pub fn apply(
        &mut self,
        changes: impl IntoIterator<Item = (Prefix, Option<RouteValue>)>,
    ) -> Result<Written, Error> {
        let mut written = Written::default();
        for (prefix, value) in changes {
            for op in self.mirror.ops(prefix, value) {
                self.write(&op, &mut written)?;
            }
        }
        for op in self.mirror.stale_peers().into_iter().chain(self.mirror.stale_endpoints()) {
            self.write(&op, &mut written)?;
        }
        Ok(written)
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
