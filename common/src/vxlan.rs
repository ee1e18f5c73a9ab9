//! VXLAN as Calico's `vxlan.calico` speaks it (RFC 7348 over IPv4): the settings of this node's
//! device the programs need, the 50 bytes they push in front of a pod's packet, and the checks on
//! VXLAN arriving from another node. Everything here mirrors what the kernel's own vxlan driver
//! does with the same device (`vxlan_xmit_one`, `vxlan_rcv`), so that a node with fastpath and a
//! node with only the kernel see the same bytes on the wire.

use crate::{
    ipv4::{self, OuterIpv4, PROTO_UDP},
    Reason,
};

/// The UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// The VXLAN header: flags, 24 reserved bits, the VNI, 8 reserved bits.
pub const HEADER_LEN: usize = 8;
/// The inner Ethernet header.
pub const INNER_ETH_LEN: usize = 14;
/// Bytes pushed in front of the inner IPv4 packet: outer IPv4, UDP, VXLAN, inner Ethernet.
pub const OVERHEAD: usize = ipv4::HEADER_LEN + UDP_HEADER_LEN + HEADER_LEN + INNER_ETH_LEN;
/// The flags byte of every VXLAN header: only "I" (the VNI is valid).
pub const FLAG_VNI: u8 = 0x08;
const ETH_P_IP: [u8; 2] = 0x0800u16.to_be_bytes();

/// `VxlanConfig::df`: the outer header never has DF (the kernel's default, `df unset`).
pub const DF_UNSET: u8 = 0;
/// `VxlanConfig::df`: the outer header always has DF (`df set`).
pub const DF_SET: u8 = 1;
/// `VxlanConfig::df`: the outer header copies the inner one's DF (`df inherit`).
pub const DF_INHERIT: u8 = 2;
/// `VxlanConfig::tos`: copy the inner DS field (`tos inherit`); any other value is the outer TOS.
pub const TOS_INHERIT: u8 = 1;
/// `VxlanConfig::ttl`: copy the inner TTL (`ttl inherit`); any other value is the outer TTL.
pub const TTL_INHERIT: u8 = 0;

/// This node's `vxlan.calico`, as the programs need it (part of [`crate::maps::NodeConfig`]).
/// Ports are in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VxlanConfig {
    /// The device's ifindex (for `fastpath status`; the programs never send through it).
    pub ifindex: u32,
    /// The VXLAN network identifier (24 bits).
    pub vni: u32,
    /// The device's MAC: the inner source of what this node sends, the inner destination of
    /// what it accepts.
    pub mac: [u8; 6],
    /// The UDP destination port (`dstport`, IANA's 4789 for Calico).
    pub port: u16,
    /// The UDP source port range, `[port_min, port_max)`: the device's `srcport`, or the
    /// namespace's `ip_local_port_range` when it has none, as the kernel chooses.
    pub port_min: u16,
    pub port_max: u16,
    /// The outer TTL ([`TTL_INHERIT`]: the inner one's).
    pub ttl: u8,
    /// The outer TOS before ECN is copied in ([`TOS_INHERIT`]: the inner one's).
    pub tos: u8,
    /// `DF_*`.
    pub df: u8,
    pub _pad: u8,
}

const _: () = assert!(core::mem::size_of::<VxlanConfig>() == 24);

/// The UDP source port the kernel's vxlan device would choose for a packet whose skb hash is
/// `hash` (`udp_flow_src_port`): the hash folded and scaled into `[min, max)`, so that RSS and
/// ECMP spread the flows while each flow keeps one port. A zero hash (the kernel then hashes the
/// inner MACs, which are the same for every flow between two nodes) gives `min`.
pub const fn source_port(hash: u32, min: u16, max: u16) -> u16 {
    if min >= max || hash == 0 {
        return min;
    }
    let hash = hash ^ (hash << 16);
    let offset = ((hash as u64 * (max - min) as u64) >> 32) as u16;
    min + offset
}

/// The outer TOS: the device's (or, with [`TOS_INHERIT`], the inner packet's), with the inner
/// ECN bits copied in as RFC 6040 asks (`ip_tunnel_ecn_encap`): CE becomes ECT(0).
pub const fn outer_tos(config_tos: u8, inner_tos: u8) -> u8 {
    let tos = if config_tos == TOS_INHERIT { inner_tos } else { config_tos };
    let inner_ecn = inner_tos & 0x03;
    let ecn = if inner_ecn == 0x03 { 0x02 } else { inner_ecn };
    (tos & !0x03) | ecn
}

/// The outer TTL: the device's, or with [`TTL_INHERIT`] the inner packet's (already decremented
/// by this node's forwarding).
pub const fn outer_ttl(config_ttl: u8, inner_ttl: u8) -> u8 {
    if config_ttl == TTL_INHERIT {
        inner_ttl
    } else {
        config_ttl
    }
}

/// Whether the outer header has DF.
pub const fn outer_df(config_df: u8, inner_df: bool) -> bool {
    match config_df {
        DF_SET => true,
        DF_INHERIT => inner_df,
        _ => false,
    }
}

/// One packet's encapsulation: the outer header's fields and the two VTEPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encap {
    pub outer: OuterIpv4,
    pub source_port: u16,
    pub config: VxlanConfig,
    /// The other node's `vxlan.calico` MAC.
    pub peer_mac: [u8; 6],
}

/// The 50 bytes in front of an inner IPv4 packet of `inner_len` bytes: outer IPv4 (checksum
/// included), UDP (checksum 0: RFC 7348 says it SHOULD be, and every receiver accepts it over
/// IPv4; the kernel's own device sends one unless created `noudpcsum`), VXLAN (flag I, the VNI),
/// inner Ethernet from this node's VTEP MAC to the other's. `None` when the outer packet would
/// exceed 65535 bytes.
pub const fn headers(e: &Encap, inner_len: u16) -> Option<[u8; OVERHEAD]> {
    let mut h = [0u8; OVERHEAD];
    if write_headers(&mut h, e, inner_len) {
        Some(h)
    } else {
        None
    }
}

/// Write [`headers`] into `h` (the packet's own bytes, in a program: no copy of them on the
/// stack); `false`, writing nothing, when the outer packet would exceed 65535 bytes.
pub const fn write_headers(h: &mut [u8; OVERHEAD], e: &Encap, inner_len: u16) -> bool {
    let Some(total) = inner_len.checked_add(OVERHEAD as u16) else { return false };
    let outer: &mut [u8; ipv4::HEADER_LEN] = match h.first_chunk_mut::<{ ipv4::HEADER_LEN }>() {
        Some(outer) => outer,
        None => return false,
    };
    OuterIpv4 { protocol: PROTO_UDP, ..e.outer }.write(outer, total);
    let udp = ipv4::HEADER_LEN;
    let sport = e.source_port.to_be_bytes();
    let dport = e.config.port.to_be_bytes();
    let udp_len = (total - ipv4::HEADER_LEN as u16).to_be_bytes();
    h[udp] = sport[0];
    h[udp + 1] = sport[1];
    h[udp + 2] = dport[0];
    h[udp + 3] = dport[1];
    h[udp + 4] = udp_len[0];
    h[udp + 5] = udp_len[1];
    h[udp + 6] = 0;
    h[udp + 7] = 0;
    let vxlan = udp + UDP_HEADER_LEN;
    let vni = e.config.vni.to_be_bytes();
    h[vxlan] = FLAG_VNI;
    h[vxlan + 1] = 0;
    h[vxlan + 2] = 0;
    h[vxlan + 3] = 0;
    h[vxlan + 4] = vni[1];
    h[vxlan + 5] = vni[2];
    h[vxlan + 6] = vni[3];
    h[vxlan + 7] = 0;
    let eth = vxlan + HEADER_LEN;
    let mut i = 0;
    while i < 6 {
        h[eth + i] = e.peer_mac[i];
        h[eth + 6 + i] = e.config.mac[i];
        i += 1;
    }
    h[eth + 12] = ETH_P_IP[0];
    h[eth + 13] = ETH_P_IP[1];
    true
}

/// The headers between the outer IPv4 header and the inner IPv4 packet of VXLAN that arrived,
/// as read from the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub udp: [u8; UDP_HEADER_LEN],
    pub vxlan: [u8; HEADER_LEN],
    pub inner_eth: [u8; INNER_ETH_LEN],
}

/// The UDP destination port of a UDP header.
pub const fn destination_port(udp: &[u8; UDP_HEADER_LEN]) -> u16 {
    u16::from_be_bytes([udp[2], udp[3]])
}

/// Whether VXLAN that arrived from a known node, in an outer packet of `outer_total_len` bytes,
/// is one the fast path may take apart for this node's `vxlan.calico`: UDP length consistent,
/// flags exactly "I", this device's VNI, an inner Ethernet frame to this device's MAC carrying
/// IPv4. Anything else is the kernel's to judge ([`Reason::PassVxlanOther`]): another device may
/// own that VNI, and ARP or broadcast in the overlay is the kernel's business.
///
/// A UDP checksum is accepted unverified, as the outer IPv4 header checksum of IPIP is: every
/// field the decision reads is checked here exactly, and the inner packet keeps its own
/// checksums, which the pod's stack verifies (stripping the headers resets the skb's
/// "checksum unnecessary" state, `bpf_skb_adjust_room` without `NO_CSUM_RESET`). The kernel's
/// own device on a node without fastpath sends one by default.
pub const fn check_received(outer_total_len: u16, r: &Received, config: &VxlanConfig) -> Result<(), Reason> {
    let udp_len = u16::from_be_bytes([r.udp[4], r.udp[5]]);
    let vni = u32::from_be_bytes([0, r.vxlan[4], r.vxlan[5], r.vxlan[6]]);
    let v = &r.vxlan;
    let flags_ok = v[0] == FLAG_VNI && v[1] == 0 && v[2] == 0 && v[3] == 0 && v[7] == 0;
    let e = &r.inner_eth;
    let m = &config.mac;
    let to_me = e[0] == m[0] && e[1] == m[1] && e[2] == m[2] && e[3] == m[3] && e[4] == m[4] && e[5] == m[5];
    let carries_ipv4 = e[12] == ETH_P_IP[0] && e[13] == ETH_P_IP[1];
    if outer_total_len as u32 != udp_len as u32 + ipv4::HEADER_LEN as u32
        || !flags_ok
        || vni != config.vni
        || !to_me
        || !carries_ipv4
    {
        return Err(Reason::PassVxlanOther);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipv4::{internet_checksum, FLAG_DF};

    const ME: [u8; 6] = [0x66, 0, 10, 101, 14, 50];
    const PEER: [u8; 6] = [0x66, 0, 10, 101, 14, 51];

    fn config() -> VxlanConfig {
        VxlanConfig {
            ifindex: 9,
            vni: 4096,
            mac: ME,
            port: 4789,
            port_min: 32768,
            port_max: 61000,
            ttl: 64,
            tos: 0,
            df: DF_UNSET,
            _pad: 0,
        }
    }

    fn encap() -> Encap {
        let outer = OuterIpv4 {
            src: [10, 101, 14, 50],
            dst: [10, 101, 14, 51],
            protocol: 0,
            tos: 0,
            ttl: 64,
            df: false,
            id: 0x1234,
        };
        Encap { outer, source_port: 40000, config: config(), peer_mac: PEER }
    }

    #[test]
    fn the_headers_are_what_the_kernels_vxlan_device_sends() {
        let h = headers(&encap(), 84).unwrap();
        // Outer IPv4: 134 bytes, id, no DF, TTL 64, UDP, this node → the other.
        assert_eq!(&h[..10], &[0x45, 0, 0, 134, 0x12, 0x34, 0, 0, 64, 17]);
        assert_eq!(&h[12..20], &[10, 101, 14, 50, 10, 101, 14, 51]);
        assert_eq!(internet_checksum(&h[..20]), 0);
        // UDP: source port, 4789, 114 bytes, no checksum.
        assert_eq!(&h[20..28], &[0x9c, 0x40, 0x12, 0xb5, 0, 114, 0, 0]);
        // VXLAN: flag I, VNI 4096.
        assert_eq!(&h[28..36], &[0x08, 0, 0, 0, 0, 0x10, 0, 0]);
        // Inner Ethernet: to the other node's VTEP, from ours, IPv4.
        assert_eq!(&h[36..42], &PEER);
        assert_eq!(&h[42..48], &ME);
        assert_eq!(&h[48..50], &[0x08, 0x00]);
        assert_eq!(headers(&encap(), 65535 - 49), None, "an outer packet over 64 KiB");
        assert!(headers(&encap(), 65535 - 50).is_some());
    }

    #[test]
    fn source_ports_stay_in_the_range_and_follow_the_hash() {
        for hash in [1u32, 7, 0x1234_5678, 0x8000_0000, u32::MAX] {
            let port = source_port(hash, 32768, 61000);
            assert!((32768..61000).contains(&port), "{hash:#x} → {port}");
            assert_eq!(port, source_port(hash, 32768, 61000), "the same flow, the same port");
        }
        assert_ne!(source_port(0x1234_5678, 32768, 61000), source_port(0x8765_4321, 32768, 61000));
        // The kernel's arithmetic: hash ^= hash << 16, then scaled by the range.
        let hash = 0x0001_0001u32;
        let folded = hash ^ (hash << 16);
        assert_eq!(source_port(hash, 1000, 2000), 1000 + ((u64::from(folded) * 1000) >> 32) as u16);
        assert_eq!(source_port(0, 32768, 61000), 32768);
        assert_eq!(source_port(5, 4000, 4000), 4000);
    }

    #[test]
    fn outer_tos_carries_the_inner_ecn_as_rfc_6040_says() {
        assert_eq!(outer_tos(0, 0xb8), 0, "the device's TOS 0, the inner's DSCP not copied");
        assert_eq!(outer_tos(0, 0x01), 0x01, "ECT(1) copied");
        assert_eq!(outer_tos(0, 0x03), 0x02, "CE becomes ECT(0)");
        assert_eq!(outer_tos(TOS_INHERIT, 0xb9), 0xb9, "tos inherit copies the DS field");
        assert_eq!(outer_tos(0x10, 0x02), 0x12);
    }

    #[test]
    fn outer_ttl_and_df_follow_the_device() {
        assert_eq!(outer_ttl(64, 63), 64);
        assert_eq!(outer_ttl(TTL_INHERIT, 63), 63);
        assert!(!outer_df(DF_UNSET, true));
        assert!(outer_df(DF_SET, false));
        assert!(outer_df(DF_INHERIT, true));
        assert!(!outer_df(DF_INHERIT, false));
        let with_df = OuterIpv4 { df: true, ..encap().outer }.header(100);
        assert_eq!(u16::from_be_bytes([with_df[6], with_df[7]]), FLAG_DF);
    }

    fn received() -> (u16, Received) {
        let h = headers(&encap(), 84).unwrap();
        let mut r = Received { udp: [0; 8], vxlan: [0; 8], inner_eth: [0; 14] };
        r.udp.copy_from_slice(&h[20..28]);
        r.vxlan.copy_from_slice(&h[28..36]);
        r.inner_eth.copy_from_slice(&h[36..50]);
        // What the other node sends us: to our VTEP MAC.
        r.inner_eth[..6].copy_from_slice(&ME);
        (134, r)
    }

    #[test]
    fn vxlan_for_this_device_is_taken_apart() {
        let (len, r) = received();
        assert_eq!(check_received(len, &r, &config()), Ok(()));
        assert_eq!(destination_port(&r.udp), 4789);
        let checksummed =
            Received { udp: [r.udp[0], r.udp[1], r.udp[2], r.udp[3], r.udp[4], r.udp[5], 0x12, 0x34], ..r };
        assert_eq!(check_received(len, &checksummed, &config()), Ok(()), "as the kernel's device sends it");
    }

    #[test]
    fn anything_else_vxlan_shaped_is_the_kernels() {
        let (len, good) = received();
        let with = |change: fn(&mut Received)| {
            let mut r = good;
            change(&mut r);
            r
        };
        let cases = [
            ("another VNI", len, with(|r| r.vxlan[6] = 1)),
            ("other flags", len, with(|r| r.vxlan[0] = 0x0c)),
            ("reserved bits", len, with(|r| r.vxlan[7] = 1)),
            ("a UDP length that disagrees", len + 1, good),
            ("broadcast in the overlay", len, with(|r| r.inner_eth[..6].copy_from_slice(&[0xff; 6]))),
            ("ARP in the overlay", len, with(|r| r.inner_eth[12..14].copy_from_slice(&[0x08, 0x06]))),
        ];
        for (what, len, r) in cases {
            assert_eq!(check_received(len, &r, &config()), Err(Reason::PassVxlanOther), "{what}");
        }
    }
}
