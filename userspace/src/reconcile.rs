//! What to write and what to delete so a map holds what it should (pure).

use std::collections::BTreeMap;

/// The changes that turn `current` into `desired`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff<K, V> {
    pub upsert: Vec<(K, V)>,
    pub remove: Vec<K>,
}

impl<K, V> Diff<K, V> {
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.remove.is_empty()
    }
}

/// Only what differs: entries already right are left alone.
pub fn diff<K: Ord + Clone, V: PartialEq + Clone>(
    desired: &BTreeMap<K, V>,
    current: &BTreeMap<K, V>,
) -> Diff<K, V> {
    let upsert = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove = current.keys().filter(|k| !desired.contains_key(*k)).cloned().collect();
    Diff { upsert, remove }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_are_listed() {
        let current = BTreeMap::from([(1, 'a'), (2, 'b'), (3, 'c')]);
        let desired = BTreeMap::from([(1, 'a'), (2, 'x'), (4, 'd')]);
        let d = diff(&desired, &current);
        assert_eq!(d.upsert, vec![(2, 'x'), (4, 'd')]);
        assert_eq!(d.remove, vec![3]);
    }

    #[test]
    fn equal_maps_need_nothing() {
        let m = BTreeMap::from([(1, 'a')]);
        assert!(diff(&m, &m).is_empty());
    }
}
