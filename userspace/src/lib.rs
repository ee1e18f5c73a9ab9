//! fastpath: an eBPF fast path for Calico-style pod networking.
//!
//! I/O sits at the edges (`netlink`, `loader`, `bpffs`, `daemon`); the decisions in the middle
//! (`attach`, `cli` parsers, `stats` formatting) are pure and unit-tested.

pub mod attach;
pub mod bpffs;
pub mod cli;
pub mod daemon;
pub mod error;
pub mod loader;
pub mod netlink;
pub mod stats;

pub use error::Error;
