//! How full each pinned map is: its entries and its capacity, for `fastpath status` and the
//! metrics page.

use std::path::Path;

use aya::{
    maps::{HashMap, IterableMap as _, LpmTrie, MapData},
    Pod,
};
use fastpath_common::{
    flow::{FlowKey, FlowValue},
    flow6::{FlowKey6, FlowValue6},
    maps::{
        Endpoint, NextHopEntry, PathMtu, ENDPOINTS, ENDPOINTS6, FLOWS, FLOWS6, NEXT_HOPS, NEXT_HOPS6,
        PATH_MTU, PATH_MTU6, ROUTES, ROUTES6, TUNNEL_PEERS, TUNNEL_PEERS6,
    },
    route6::RouteValue6,
};

use crate::{
    dataplane::{bpffs, tables},
    Error,
};

/// One map's fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapFill {
    pub name: &'static str,
    pub entries: usize,
    pub capacity: u32,
}

impl MapFill {
    /// Whether no further entry fits.
    pub fn is_full(&self) -> bool {
        self.entries >= self.capacity as usize
    }
}

/// The maps the daemon or the programs add entries to: the route, endpoint and peer maps of both
/// families, both flow tables, the next-hop caches and the path MTU tables.
pub const FILLED_MAPS: [&str; 12] = [
    ROUTES,
    ROUTES6,
    ENDPOINTS,
    ENDPOINTS6,
    TUNNEL_PEERS,
    TUNNEL_PEERS6,
    FLOWS,
    FLOWS6,
    NEXT_HOPS,
    NEXT_HOPS6,
    PATH_MTU,
    PATH_MTU6,
];

/// The fill of each of [`FILLED_MAPS`], as pinned in `dir`.
pub fn read(dir: &Path) -> Result<Vec<MapFill>, Error> {
    FILLED_MAPS.iter().map(|name| fill_of(dir, name)).collect()
}

/// The fill of map `name` (one of [`FILLED_MAPS`]) pinned in `dir`: its keys counted one by one
/// (`BPF_MAP_GET_NEXT_KEY`; a route map of 262 144 entries takes a fraction of a second), its
/// capacity from the kernel's map info.
pub fn fill_of(dir: &Path, name: &'static str) -> Result<MapFill, Error> {
    match name {
        ROUTES => {
            let routes = tables::pinned_routes(dir)?;
            Ok(MapFill {
                name: ROUTES,
                entries: routes.keys().filter(Result::is_ok).count(),
                capacity: capacity(routes.map(), ROUTES)?,
            })
        }
        ROUTES6 => {
            let routes: LpmTrie<MapData, [u8; 16], RouteValue6> = bpffs::open_pinned_as(dir, ROUTES6)?;
            Ok(MapFill {
                name: ROUTES6,
                entries: routes.keys().filter(Result::is_ok).count(),
                capacity: capacity(routes.map(), ROUTES6)?,
            })
        }
        ENDPOINTS => hash_fill::<[u8; 4], Endpoint>(dir, ENDPOINTS),
        ENDPOINTS6 => hash_fill::<[u8; 16], Endpoint>(dir, ENDPOINTS6),
        TUNNEL_PEERS => hash_fill::<[u8; 4], u32>(dir, TUNNEL_PEERS),
        TUNNEL_PEERS6 => hash_fill::<[u8; 16], u32>(dir, TUNNEL_PEERS6),
        FLOWS => hash_fill::<FlowKey, FlowValue>(dir, FLOWS),
        FLOWS6 => hash_fill::<FlowKey6, FlowValue6>(dir, FLOWS6),
        NEXT_HOPS => hash_fill::<[u8; 4], NextHopEntry>(dir, NEXT_HOPS),
        NEXT_HOPS6 => hash_fill::<[u8; 16], NextHopEntry>(dir, NEXT_HOPS6),
        PATH_MTU => hash_fill::<[u8; 4], PathMtu>(dir, PATH_MTU),
        PATH_MTU6 => hash_fill::<[u8; 16], PathMtu>(dir, PATH_MTU6),
        other => Err(Error::ReadMap {
            name: other,
            source: aya::maps::MapError::InvalidName { name: other.to_string() },
        }),
    }
}

fn hash_fill<K: Pod, V: Pod>(dir: &Path, name: &'static str) -> Result<MapFill, Error> {
    let map: HashMap<MapData, K, V> = bpffs::open_pinned_as(dir, name)?;
    Ok(MapFill {
        name,
        entries: map.keys().filter(Result::is_ok).count(),
        capacity: capacity(map.map(), name)?,
    })
}

fn capacity(map: &MapData, name: &'static str) -> Result<u32, Error> {
    map.info().map(|i| i.max_entries()).map_err(|source| Error::ReadMap { name, source })
}

/// `NAME ENTRIES/CAPACITY` for each map, `FULL` after a full one.
pub fn words(fills: &[MapFill]) -> String {
    let words: Vec<String> = fills
        .iter()
        .map(|f| format!("{} {}/{}{}", f.name, f.entries, f.capacity, if f.is_full() { " FULL" } else { "" }))
        .collect();
    words.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_says_so() {
        let fills = [
            MapFill { name: ROUTES, entries: 64, capacity: 64 },
            MapFill { name: TUNNEL_PEERS, entries: 1, capacity: 16_384 },
        ];
        assert_eq!(words(&fills), "FP_ROUTES 64/64 FULL, FP_PEERS 1/16384");
    }
}
