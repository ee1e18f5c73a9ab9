//! fastpath: an eBPF fast path for Calico-style pod networking.
//!
//! Grouped by role: `daemon` follows the kernel and fills the maps (`fastpath run`), `dataplane`
//! loads, pins and attaches the programs and writes their maps, `commands` read them back for
//! the operator. I/O sits at the edges (`daemon::netlink`, `dataplane::loader`,
//! `dataplane::bpffs`); the decisions in the middle (`daemon::routes`, `daemon::reconcile`,
//! `daemon::attach`, `cli` parsers, `commands::show`) are pure and unit-tested.

pub mod cli;
pub mod clock;
pub mod commands;
pub mod daemon;
pub mod dataplane;
pub mod error;
pub mod model;
pub mod modes;
pub mod output;
pub mod text;

pub use error::Error;
