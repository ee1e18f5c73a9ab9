//! The neighbour tables: ARP, and the bridge FDB of a vxlan device.

use std::net::IpAddr;

/// Which neighbour table an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighbourTable {
    /// ARP: IPv4 address → MAC.
    Ipv4,
    /// NDP: IPv6 address → MAC.
    Ipv6,
    /// The bridge FDB (`bridge fdb`): MAC → a vxlan device's destination address.
    Bridge,
}

/// A neighbour or FDB entry, as netlink reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: u32,
    pub table: NeighbourTable,
    /// `NDA_DST`: the neighbour's address, or an FDB entry's destination.
    pub addr: Option<IpAddr>,
    /// `NDA_LLADDR`.
    pub mac: Option<[u8; 6]>,
    /// The entry holds a usable MAC (not incomplete or failed).
    pub resolved: bool,
    /// An FDB entry with its own port, VNI or interface (`NDA_PORT`, `NDA_VNI`, `NDA_IFINDEX`,
    /// `NDA_SRC_VNI`), which the kernel reports only where they differ from the device's.
    pub overridden: bool,
}
