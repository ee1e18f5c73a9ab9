//! fastpath: an eBPF fast path for Calico-style pod networking.
//!
//! Grouped by role: `daemon` follows the kernel and fills the maps (`fastpath run`), `dataplane`
//! loads, pins and attaches the programs and reads and writes their maps, `commands` read them
//! back for the operator. I/O sits at the edges (`daemon::netlink`, `dataplane::loader`,
//! `dataplane::bpffs`); the decisions in the middle (`daemon::routes`, `dataplane::reconcile`,
//! `daemon::attach`, `cli` parsers, `commands::show`) are pure and unit-tested.
//!
//! # Layers
//!
//! A module imports from its own layer and the layers below it, never from one above; and no
//! import cycle joins more than two files. What two layers need moves down to where both reach
//! it. `tests/layers.rs` checks both rules against this list, lowest first (below them all, the
//! `fastpath-common` crate):
//!
//! 1. `clock`, `error`, `text`, `output`, `model`, `modes`: the vocabulary, with no I/O of its own
//!    beyond the clock: errors, text and output formats, the kernel's picture (links, neighbours,
//!    routes, rules), and the operator's modes (`--ipip`, `--vxlan`, `--trust`).
//! 2. `dataplane`: the eBPF object, its pins, attachments and maps.
//! 3. `cli`: the command line's declarations and parsers, which the daemon and the commands take.
//! 4. `daemon`: following the kernel and filling the maps (`fastpath run`).
//! 5. `commands`: reading the pinned maps back for the operator.
//! 6. `main`: the binary (`src/main.rs`), which parses the command line and runs it.

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
