//! Routes of both families and the underlay they lead over.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The main routing table's id.
pub const MAIN_TABLE: u32 = 254;
/// The local table's id: addresses of this host, consulted before any other.
pub const LOCAL_TABLE: u32 = 255;
/// The kernel's `default` table (consulted last by the default rules).
pub const DEFAULT_TABLE: u32 = 253;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKindOf {
    Unicast,
    Blackhole,
    /// An address of this host (`local`, in the local table).
    Local,
    /// `throw`: the lookup in this table ends without a route, and the rules go on.
    Throw,
    Other,
}

/// A route from the kernel, reduced to what the mapping needs: IPv4 unless said otherwise
/// ([`KernelRoute6`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KernelRoute<A = Ipv4Addr> {
    pub dst: A,
    pub prefix_len: u8,
    pub kind: RouteKindOf,
    pub table: u32,
    pub priority: u32,
    pub tos: u8,
    pub oif: Option<u32>,
    pub gateway: Option<A>,
}

/// An IPv6 route from the kernel.
pub type KernelRoute6 = KernelRoute<Ipv6Addr>;

/// What identifies a route in the kernel: a second route with the same id replaces the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId<A = Ipv4Addr> {
    pub dst: A,
    pub prefix_len: u8,
    pub table: u32,
    pub tos: u8,
    pub priority: u32,
}

impl<A: Copy> KernelRoute<A> {
    /// A unicast route of the main table, metric 0, TOS 0: what Calico's routes are.
    pub fn main_unicast(dst: A, prefix_len: u8, oif: Option<u32>, gateway: Option<A>) -> Self {
        Self {
            dst,
            prefix_len,
            kind: RouteKindOf::Unicast,
            table: MAIN_TABLE,
            priority: 0,
            tos: 0,
            oif,
            gateway,
        }
    }

    pub fn id(&self) -> RouteId<A> {
        RouteId {
            dst: self.dst,
            prefix_len: self.prefix_len,
            table: self.table,
            tos: self.tos,
            priority: self.priority,
        }
    }
}

/// A prefix of the route table: (length, address).
pub type Prefix = (u8, Ipv4Addr);

/// An IPv6 prefix: (length, address).
pub type Prefix6 = (u8, Ipv6Addr);

/// Whether IPv6 `prefix` holds `addr`.
pub fn contains6((len, net): Prefix6, addr: Ipv6Addr) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(addr) & mask == u128::from(net) & mask
}

/// The node's underlay interface and address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Underlay {
    pub ifindex: u32,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    /// The default route's gateway: routes through it lead out of the cluster, not to a node.
    pub gateway: Option<Ipv4Addr>,
}

impl Underlay {
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0);
        u32::from(addr) & mask == u32::from(self.addr) & mask
    }
}
