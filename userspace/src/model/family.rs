//! The two address families, for what is written once over both.

use std::{
    fmt::Debug,
    hash::Hash,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::model::neighbour::NeighbourTable;

/// IPv4 or IPv6, as an address type.
pub trait Family: Copy + Ord + Hash + Debug {
    /// The unspecified address (`0.0.0.0`, `::`).
    const UNSPECIFIED: Self;
    /// The neighbour table of this family's addresses.
    const NEIGHBOURS: NeighbourTable;
    /// `addr`, if it is of this family.
    fn of(addr: IpAddr) -> Option<Self>;
}

impl Family for Ipv4Addr {
    const UNSPECIFIED: Self = Ipv4Addr::UNSPECIFIED;
    const NEIGHBOURS: NeighbourTable = NeighbourTable::Ipv4;

    fn of(addr: IpAddr) -> Option<Self> {
        match addr {
            IpAddr::V4(addr) => Some(addr),
            IpAddr::V6(_) => None,
        }
    }
}

impl Family for Ipv6Addr {
    const UNSPECIFIED: Self = Ipv6Addr::UNSPECIFIED;
    const NEIGHBOURS: NeighbourTable = NeighbourTable::Ipv6;

    fn of(addr: IpAddr) -> Option<Self> {
        match addr {
            IpAddr::V6(addr) => Some(addr),
            IpAddr::V4(_) => None,
        }
    }
}
