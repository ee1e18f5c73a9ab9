//! Interfaces and their addresses, as netlink reports them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One interface by index and name, as netlink reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
}

/// An interface as netlink reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub up: bool,
    /// For a veth whose other end is in another namespace: (that namespace's id as seen from
    /// here, the other end's ifindex there).
    pub peer: Option<(i32, u32)>,
    /// For a vxlan device: its settings.
    pub vxlan: Option<VxlanLink>,
}

/// A vxlan device's settings as netlink reports them (`IFLA_VXLAN_*`; ports in host order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VxlanLink {
    pub vni: Option<u32>,
    pub port: Option<u16>,
    /// `local`: IPv4 (`IFLA_VXLAN_LOCAL`) or IPv6 (`IFLA_VXLAN_LOCAL6`).
    pub local: Option<IpAddr>,
    /// The interface its packets go out of (`dev`), if it names one.
    pub link: Option<u32>,
    /// `srcport LOW HIGH`; (0, 0) or absent: the namespace's local port range.
    pub port_range: Option<(u16, u16)>,
    /// 0: the route's hop limit (the namespace's default TTL).
    pub ttl: u8,
    pub ttl_inherit: bool,
    /// 1: inherit the inner DS field.
    pub tos: u8,
    /// `IFLA_VXLAN_DF`: 0 unset, 1 set, 2 inherit.
    pub df: u8,
    /// `external`: no VNI of its own, metadata from the stack.
    pub collect_metadata: bool,
    /// GBP, GPE or remote checksum offload.
    pub extensions: bool,
}

/// An address on an interface: IPv4 unless said otherwise ([`Address6`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address<A = Ipv4Addr> {
    pub index: u32,
    pub addr: A,
    pub prefix_len: u8,
}

/// A global IPv6 address on an interface.
pub type Address6 = Address<Ipv6Addr>;
