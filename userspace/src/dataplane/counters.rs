//! The programs' per-reason counters: read from the loaded object's map or the pinned one,
//! summed over CPUs.

use std::{borrow::Borrow, path::Path};

use aya::maps::{MapData, PerCpuArray};
use fastpath_common::{
    maps::{Counter, COUNTERS},
    Reason,
};

use crate::{dataplane::bpffs, Error};

/// One reason's packets and bytes, summed over every CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReasonTotal {
    pub reason: Reason,
    pub total: Counter,
}

/// Sum each reason's per-CPU counters in `map`.
pub fn totals<T: Borrow<MapData>>(map: &PerCpuArray<T, Counter>) -> Result<Vec<ReasonTotal>, Error> {
    Reason::ALL
        .iter()
        .filter(|reason| !reason.is_retired())
        .map(|&reason| {
            let per_cpu =
                map.get(&reason.index(), 0).map_err(|source| Error::ReadMap { name: COUNTERS, source })?;
            Ok(ReasonTotal { reason, total: sum(per_cpu.iter().copied()) })
        })
        .collect()
}

/// Open the counters pinned in `dir` by a running daemon and sum them.
pub fn read_pinned(dir: &Path) -> Result<Vec<ReasonTotal>, Error> {
    let map: PerCpuArray<MapData, Counter> = bpffs::open_pinned_as(dir, COUNTERS)?;
    totals(&map)
}

pub fn sum(values: impl IntoIterator<Item = Counter>) -> Counter {
    values.into_iter().fold(Counter::default(), Counter::add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_values_are_summed() {
        let total = sum([Counter { packets: 1, bytes: 42 }, Counter { packets: 2, bytes: 84 }]);
        assert_eq!(total, Counter { packets: 3, bytes: 126 });
        assert_eq!(sum([]), Counter::default());
    }
}
