//! Map names, value layouts and the pin layout shared by the programs, the daemon and the CLI.

/// Per-CPU counters, indexed by [`crate::Reason`]: one [`Counter`] per reason per CPU.
pub const COUNTERS: &str = "FP_COUNTERS";

/// The default folder the daemon pins its maps in.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/fastpath";

/// Maps the daemon pins in its folder, by file name (the map name, as bpftool shows it).
pub const PINNED_MAPS: [&str; 1] = [COUNTERS];

/// Packets and bytes seen under one reason on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<Counter>() == 16);

impl Counter {
    /// The sum of two counters (used to fold per-CPU values together).
    pub const fn add(self, other: Counter) -> Counter {
        Counter {
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: `Counter` is `#[repr(C)]`, `Copy`, and has no padding (two u64s).
    unsafe impl aya::Pod for super::Counter {}
}
