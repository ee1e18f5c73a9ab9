//! The flow tables of `--trust kernel` (`FP_FLOWS`, and `FP_FLOWS6` for IPv6), written by the
//! daemon from conntrack's judgement and read by the programs. Each conntrack entry is known by
//! an `E` of the daemon's (its original tuple); a table remembers which keys it wrote for each,
//! so that an entry's going removes exactly its directions, and what it wrote, so that judging an
//! entry again writes only what changed (keeping the programs' counts of an entry that did not).

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData},
    Pod,
};
use fastpath_common::{
    flow::{FlowKey, FlowValue},
    flow6::{FlowKey6, FlowValue6},
    maps::{FLOWS, FLOWS6},
};

use crate::{dataplane::tables::Written, Error};

/// A flow table's value: what the daemon decides, beside the programs' counts.
pub trait FlowEntry: Pod + PartialEq {
    /// The value without the programs' counts: what the daemon decided.
    fn decision(&self) -> Self;
    /// `bpf_ktime_get_ns()` of the last packet the fast path carried (0: none).
    fn last_seen_ns(&self) -> u64;
}

impl FlowEntry for FlowValue {
    fn decision(&self) -> Self {
        Self { last_seen_ns: 0, fast_packets: 0, kernel_packets: 0, ..*self }
    }

    fn last_seen_ns(&self) -> u64 {
        self.last_seen_ns
    }
}

impl FlowEntry for FlowValue6 {
    fn decision(&self) -> Self {
        Self { last_seen_ns: 0, fast_packets: 0, kernel_packets: 0, ..*self }
    }

    fn last_seen_ns(&self) -> u64 {
        self.last_seen_ns
    }
}

/// One family's table.
pub struct FlowTable<E, K, V> {
    name: &'static str,
    map: BpfHashMap<MapData, K, V>,
    /// Per conntrack entry, the directions written, as written.
    written: HashMap<E, Vec<(K, V)>>,
}

impl<E: Copy + Eq + Hash, K: Pod + Eq + Hash, V: FlowEntry> FlowTable<E, K, V> {
    /// The table `name` of the loaded object.
    fn take(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<Self, Error> {
        let map = ebpf.take_map(name).ok_or(Error::MissingMap { name })?;
        let map = BpfHashMap::try_from(map).map_err(|source| Error::ReadMap { name, source })?;
        Ok(Self { name, map, written: HashMap::new() })
    }

    /// Make the table hold exactly `directions` for the conntrack entry `entry`.
    fn set(&mut self, entry: &E, directions: Vec<(K, V)>) -> Result<Written, Error> {
        let mut written = Written::default();
        let old = self.written.remove(entry).unwrap_or_default();
        for (key, _) in old.iter().filter(|(k, _)| !directions.iter().any(|(d, _)| d == k)) {
            self.remove(key)?;
            written.removed += 1;
        }
        for (key, value) in &directions {
            if old.iter().any(|(k, v)| k == key && v.decision() == value.decision()) {
                continue;
            }
            self.map.insert(key, value, 0).map_err(|source| Error::WriteMap { name: self.name, source })?;
            written.upserted += 1;
        }
        if !directions.is_empty() {
            self.written.insert(*entry, directions);
        }
        Ok(written)
    }

    /// When the fast path last carried a packet of `entry` (either direction), as the programs
    /// wrote it (`bpf_ktime_get_ns()`; 0: never).
    fn last_seen_ns(&self, entry: &E) -> u64 {
        let Some(directions) = self.written.get(entry) else { return 0 };
        directions
            .iter()
            .filter_map(|(key, _)| self.map.get(key, 0).ok())
            .map(|v| v.last_seen_ns())
            .max()
            .unwrap_or(0)
    }

    /// Remove every key the map holds that no entry wrote (left by an earlier daemon, or by one
    /// of another version); returns how many.
    fn remove_unwritten(&mut self) -> Result<usize, Error> {
        let ours: HashSet<K> = self.written.values().flat_map(|d| d.iter().map(|(k, _)| *k)).collect();
        // Keys removed while walking are skipped, not an error.
        let stale: Vec<K> = self.map.keys().filter_map(Result::ok).filter(|k| !ours.contains(k)).collect();
        for key in &stale {
            self.remove(key)?;
        }
        Ok(stale.len())
    }

    fn remove(&mut self, key: &K) -> Result<(), Error> {
        match self.map.remove(key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(Error::WriteMap { name: self.name, source }),
        }
    }
}

/// Both families' tables, each entry's directions in the table of its family.
pub struct FlowTables<E> {
    v4: FlowTable<E, FlowKey, FlowValue>,
    v6: FlowTable<E, FlowKey6, FlowValue6>,
}

impl<E: Copy + Eq + Hash> FlowTables<E> {
    /// The flow tables of the loaded object.
    pub fn take(ebpf: &mut aya::Ebpf) -> Result<Self, Error> {
        Ok(Self { v4: FlowTable::take(ebpf, FLOWS)?, v6: FlowTable::take(ebpf, FLOWS6)? })
    }

    /// Make the tables hold exactly `v4` and `v6` for the conntrack entry `entry` (one of them
    /// empty: an entry is of one family).
    pub fn set(
        &mut self,
        entry: &E,
        v4: Vec<(FlowKey, FlowValue)>,
        v6: Vec<(FlowKey6, FlowValue6)>,
    ) -> Result<Written, Error> {
        Ok(self.v4.set(entry, v4)? + self.v6.set(entry, v6)?)
    }

    /// The conntrack entries the tables hold directions of.
    pub fn entries(&self) -> impl Iterator<Item = &E> {
        self.v4.written.keys().chain(self.v6.written.keys())
    }

    /// When the fast path last carried a packet of `entry`.
    pub fn last_seen_ns(&self, entry: &E) -> u64 {
        self.v4.last_seen_ns(entry).max(self.v6.last_seen_ns(entry))
    }

    /// Remove every key the maps hold that no entry wrote; returns how many.
    pub fn remove_unwritten(&mut self) -> Result<usize, Error> {
        Ok(self.v4.remove_unwritten()? + self.v6.remove_unwritten()?)
    }
}
