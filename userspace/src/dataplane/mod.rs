//! The eBPF side as userspace holds it: the embedded object, the pin folder, the attachments
//! and the maps. Both the daemon and the inspection commands use it.

pub mod bpffs;
pub mod capacities;
pub mod counters;
pub mod fill;
pub mod flow_table;
pub mod legacy_tc;
pub mod loader;
pub mod pins;
pub mod reconcile;
pub mod tables;
