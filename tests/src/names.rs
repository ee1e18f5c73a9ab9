//! Names unique to one test run, so suites can run in parallel on one machine.

use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A short prefix unique to this process and call: `fp<pid>x<n>`.
pub fn unique(tag: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("fp{}x{n}-{tag}", std::process::id())
}

/// The host-side interface name of a pod, as Calico names it: `cali` and 11 hex digits of a
/// hash of the workload (here, the pod's namespace name).
pub fn cali_name(workload: &str) -> String {
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    let hash = workload
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("cali{:011x}", hash & 0xfff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique("a"), unique("a"));
    }

    #[test]
    fn cali_names_fit_ifnamsiz_and_are_stable() {
        let name = cali_name("pod-10.244.40.36");
        assert_eq!(name.len(), 15);
        assert!(name.starts_with("cali"));
        assert_eq!(name, cali_name("pod-10.244.40.36"));
        assert_ne!(name, cali_name("pod-10.244.40.37"));
    }
}
