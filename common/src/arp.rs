//! The ARP responder's decision, as a pure function both sides share.
//!
//! The eBPF program calls [`classify_request`] on the fields it parsed, and the host tests the
//! same function directly, so "which ARP do we answer" is written exactly once.

use crate::Reason;

/// ARP hardware type for Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// ARP protocol type for IPv4 (the IPv4 ethertype).
pub const PTYPE_IPV4: u16 = 0x0800;
/// ARP operation: request.
pub const OP_REQUEST: u16 = 1;
/// ARP operation: reply.
pub const OP_REPLY: u16 = 2;
/// Length of an Ethernet/IPv4 ARP body (after the Ethernet header).
pub const ARP_IPV4_LEN: usize = 28;

/// The fixed part of an ARP header, in host byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpFields {
    pub htype: u16,
    pub ptype: u16,
    pub hlen: u8,
    pub plen: u8,
    pub op: u16,
    /// Sender protocol address (network order bytes).
    pub spa: [u8; 4],
    /// Target protocol address (network order bytes).
    pub tpa: [u8; 4],
}

impl ArpFields {
    /// The fields of an Ethernet/IPv4 ARP packet's 28 bytes (RFC 826 order).
    pub const fn parse(a: &[u8; ARP_IPV4_LEN]) -> Self {
        Self {
            htype: u16::from_be_bytes([a[0], a[1]]),
            ptype: u16::from_be_bytes([a[2], a[3]]),
            hlen: a[4],
            plen: a[5],
            op: u16::from_be_bytes([a[6], a[7]]),
            spa: [a[14], a[15], a[16], a[17]],
            tpa: [a[24], a[25], a[26], a[27]],
        }
    }
}

/// Decide whether an ARP frame from a pod gets our reply.
///
/// `Ok(())` means answer it; `Err(reason)` means hand it to the kernel unchanged, for that reason.
/// We answer every IPv4-over-Ethernet request except those a proxy must leave alone: a gratuitous
/// announcement (the sender asks for itself) and a duplicate-address probe (sender 0.0.0.0,
/// RFC 5227), which must stay unanswered or the pod would think its address is taken.
pub const fn classify_request(arp: &ArpFields) -> Result<(), Reason> {
    if arp.htype != HTYPE_ETHERNET || arp.ptype != PTYPE_IPV4 || arp.hlen != 6 || arp.plen != 4 {
        return Err(Reason::PassArpMalformed);
    }
    if arp.op != OP_REQUEST {
        return Err(Reason::PassArpNotRequest);
    }
    if u32::from_be_bytes(arp.spa) == 0 {
        return Err(Reason::PassArpProbe);
    }
    if u32::from_be_bytes(arp.spa) == u32::from_be_bytes(arp.tpa) {
        return Err(Reason::PassArpGratuitous);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: ArpFields = ArpFields {
        htype: HTYPE_ETHERNET,
        ptype: PTYPE_IPV4,
        hlen: 6,
        plen: 4,
        op: OP_REQUEST,
        spa: [10, 244, 40, 36],
        tpa: [169, 254, 1, 1],
    };

    #[test]
    fn gateway_request_is_answered() {
        assert_eq!(classify_request(&REQUEST), Ok(()));
    }

    #[test]
    fn request_for_a_remote_pod_is_answered_as_a_proxy_would() {
        let arp = ArpFields { tpa: [10, 244, 166, 150], ..REQUEST };
        assert_eq!(classify_request(&arp), Ok(()));
    }

    #[test]
    fn gratuitous_arp_goes_to_the_kernel() {
        let arp = ArpFields { tpa: REQUEST.spa, ..REQUEST };
        assert_eq!(classify_request(&arp), Err(Reason::PassArpGratuitous));
    }

    #[test]
    fn dad_probe_goes_to_the_kernel() {
        let arp = ArpFields { spa: [0; 4], ..REQUEST };
        assert_eq!(classify_request(&arp), Err(Reason::PassArpProbe));
    }

    #[test]
    fn reply_goes_to_the_kernel() {
        let arp = ArpFields { op: OP_REPLY, ..REQUEST };
        assert_eq!(classify_request(&arp), Err(Reason::PassArpNotRequest));
    }

    #[test]
    fn non_ipv4_or_non_ethernet_arp_is_malformed() {
        for arp in [
            ArpFields { htype: 6, ..REQUEST },
            ArpFields { ptype: 0x86dd, ..REQUEST },
            ArpFields { hlen: 8, ..REQUEST },
            ArpFields { plen: 16, ..REQUEST },
        ] {
            assert_eq!(classify_request(&arp), Err(Reason::PassArpMalformed), "{arp:?}");
        }
    }
}
