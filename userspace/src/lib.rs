//! fastpath: an eBPF fast path for Calico-style pod networking.
//!
//! I/O sits at the edges (`netlink`, `loader`, `bpffs`, `daemon`); the decisions in the middle
//! (`attach`, `cli` parsers, `stats` formatting) are pure and unit-tested.

pub mod attach;
pub mod bpffs;
pub mod cli;
pub mod clock;
pub mod conntrack;
pub mod daemon;
pub mod error;
pub mod flows;
pub mod inspect;
pub mod kernel;
pub mod legacy_tc;
pub mod loader;
pub mod metrics;
pub mod netlink;
pub mod node;
pub mod picture;
pub mod pins;
pub mod reconcile;
pub mod routes;
pub mod show;
pub mod stats;
pub mod tables;
pub mod verify;

pub use error::Error;
