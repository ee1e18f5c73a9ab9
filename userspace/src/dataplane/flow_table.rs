//! The flow table of `--trust kernel` (`FP_FLOWS`), written by the daemon from conntrack's
//! judgement and read by the programs. Each conntrack entry is known by its original
//! direction's key; the table remembers which keys it wrote for each, so that an entry's going
//! removes exactly its directions, and what it wrote, so that judging an entry again writes only
//! what changed (keeping the programs' counts of an entry that did not).

use std::collections::HashMap;

use aya::maps::{HashMap as BpfHashMap, MapData};
use fastpath_common::{
    flow::{FlowKey, FlowValue},
    maps::FLOWS,
};

use crate::{dataplane::tables::Written, Error};

pub struct FlowTable {
    map: BpfHashMap<MapData, FlowKey, FlowValue>,
    /// Per conntrack entry (its original key), the directions written, as written.
    written: HashMap<FlowKey, Vec<(FlowKey, FlowValue)>>,
}

/// Whether two values say the same thing (the programs' counts aside).
fn same_decision(a: &FlowValue, b: &FlowValue) -> bool {
    FlowValue { last_seen_ns: 0, fast_packets: 0, kernel_packets: 0, ..*a }
        == FlowValue { last_seen_ns: 0, fast_packets: 0, kernel_packets: 0, ..*b }
}

impl FlowTable {
    /// The flow table of the loaded object.
    pub fn take(ebpf: &mut aya::Ebpf) -> Result<Self, Error> {
        let map = ebpf.take_map(FLOWS).ok_or(Error::MissingMap { name: FLOWS })?;
        let map = BpfHashMap::try_from(map).map_err(|source| Error::ReadMap { name: FLOWS, source })?;
        Ok(Self { map, written: HashMap::new() })
    }

    /// Make the table hold exactly `directions` for the conntrack entry `entry`.
    pub fn set(&mut self, entry: FlowKey, directions: Vec<(FlowKey, FlowValue)>) -> Result<Written, Error> {
        let mut written = Written::default();
        let old = self.written.remove(&entry).unwrap_or_default();
        for (key, _) in old.iter().filter(|(k, _)| !directions.iter().any(|(d, _)| d == k)) {
            self.remove(key)?;
            written.removed += 1;
        }
        for (key, value) in &directions {
            if old.iter().any(|(k, v)| k == key && same_decision(v, value)) {
                continue;
            }
            self.map.insert(key, value, 0).map_err(|source| Error::WriteMap { name: FLOWS, source })?;
            written.upserted += 1;
        }
        if !directions.is_empty() {
            self.written.insert(entry, directions);
        }
        Ok(written)
    }

    /// The conntrack entries the table holds directions of.
    pub fn entries(&self) -> impl Iterator<Item = &FlowKey> {
        self.written.keys()
    }

    /// Directions written, over every entry.
    pub fn directions(&self) -> usize {
        self.written.values().map(Vec::len).sum()
    }

    /// When the fast path last carried a packet of `entry` (either direction), as the programs
    /// wrote it (`bpf_ktime_get_ns()`; 0: never).
    pub fn last_seen_ns(&self, entry: &FlowKey) -> u64 {
        let Some(directions) = self.written.get(entry) else { return 0 };
        directions
            .iter()
            .filter_map(|(key, _)| self.map.get(key, 0).ok())
            .map(|v| v.last_seen_ns)
            .max()
            .unwrap_or(0)
    }

    /// Remove every key the map holds that no entry wrote (left by an earlier daemon, or by one
    /// of another version); returns how many.
    pub fn remove_unwritten(&mut self) -> Result<usize, Error> {
        let ours: std::collections::HashSet<FlowKey> =
            self.written.values().flat_map(|d| d.iter().map(|(k, _)| *k)).collect();
        // Keys removed while walking are skipped, not an error.
        let stale: Vec<FlowKey> =
            self.map.keys().filter_map(Result::ok).filter(|k| !ours.contains(k)).collect();
        for key in &stale {
            self.remove(key)?;
        }
        Ok(stale.len())
    }

    fn remove(&mut self, key: &FlowKey) -> Result<(), Error> {
        match self.map.remove(key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(Error::WriteMap { name: FLOWS, source }),
        }
    }
}
