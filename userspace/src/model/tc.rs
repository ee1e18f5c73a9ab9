//! Classic tc objects: qdiscs and filters.

/// A qdisc or filter as netlink reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcObject {
    /// The qdisc's or the filter's kind: `tbf`, `u32`, `bpf`…
    pub kind: String,
    /// `tcm_handle`.
    pub handle: u32,
    /// `tcm_parent`.
    pub parent: u32,
    /// A filter's priority (the high half of `tcm_info`).
    pub priority: u16,
}
