//! fastpath's test bed: Calico-shaped clusters built from network namespaces, and guards that
//! remove every namespace, process and pin they made, on success and on failure alike.

pub mod bird;
pub mod bpf;
pub mod bpffs;
pub mod calico_node;
pub mod child;
pub mod cluster;
pub mod cmd;
pub mod container;
pub mod containerd;
pub mod daemon;
pub mod dual_stack;
pub mod names;
pub mod netns;
pub mod packets;
pub mod reach;
pub mod traffic;
pub mod wait;

pub use bpffs::Bpffs;
pub use cluster::{Cluster, ClusterSpec, Node, NodeSpec, Pod};
pub use daemon::{Counters, Daemon};
pub use netns::Netns;

/// The suites need root (namespaces, BPF). Without it they fail loudly: CI must never pass by
/// skipping them.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "these tests need root (network namespaces and BPF); run `sudo cargo xtask test`");
}
