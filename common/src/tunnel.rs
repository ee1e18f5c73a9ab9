//! What the two encapsulations share: which one a route asks for, and what it costs in bytes.
//!
//! IPIP and VXLAN each have a module of their own ([`crate::ipv4::outer_header`] for IPIP,
//! [`crate::vxlan`]); the decisions that do not depend on which tunnel carries a packet (the
//! tunnel MTU, the outer IPv4 header, which nodes may send us tunnels) are made once, for both.

use crate::{ipv4::HEADER_LEN, vxlan};

/// How a packet travels to another node's pods. (No data in the variants: a value the programs
/// copy around must be fully defined, or the verifier refuses reading the undefined part.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tunnel {
    /// IPIP, as Calico's `tunl0`: an outer IPv4 header, protocol 4.
    Ipip,
    /// VXLAN, as Calico's `vxlan.calico`: outer IPv4, UDP, VXLAN, then an inner Ethernet header
    /// to the other node's `vxlan.calico` MAC.
    Vxlan,
}

/// Bytes IPIP adds: the outer IPv4 header.
pub const IPIP_OVERHEAD: u32 = HEADER_LEN as u32;
/// Bytes VXLAN adds: outer IPv4, UDP, VXLAN and inner Ethernet headers.
pub const VXLAN_OVERHEAD: u32 = vxlan::OVERHEAD as u32;

impl Tunnel {
    /// The bytes the tunnel adds in front of the inner IPv4 packet.
    pub const fn overhead(&self) -> u32 {
        match self {
            Tunnel::Ipip => IPIP_OVERHEAD,
            Tunnel::Vxlan => VXLAN_OVERHEAD,
        }
    }

    /// The largest inner packet the tunnel carries over an underlay of `underlay_mtu` bytes.
    pub const fn mtu(&self, underlay_mtu: u32) -> u32 {
        underlay_mtu.saturating_sub(self.overhead())
    }

    /// The name `fastpath routes`, `peers` and `explain` use.
    pub const fn name(&self) -> &'static str {
        match self {
            Tunnel::Ipip => "ipip",
            Tunnel::Vxlan => "vxlan",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tunnel_costs_what_calico_sets_the_mtu_for() {
        assert_eq!(Tunnel::Ipip.mtu(1500), 1480);
        assert_eq!(Tunnel::Vxlan.mtu(1500), 1450);
        assert_eq!(Tunnel::Vxlan.mtu(40), 0);
    }
}
