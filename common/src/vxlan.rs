//! VXLAN as Calico's `vxlan.calico` speaks it (RFC 7348 over IPv4): the settings of this node's
//! device the programs need, the 50 bytes they push in front of a pod's packet, and the checks on
//! VXLAN arriving from another node. Everything here mirrors what the kernel's own vxlan driver
//! does with the same device (`vxlan_xmit_one`, `vxlan_rcv`), so that a node with fastpath and a
//! node with only the kernel see the same bytes on the wire.

use crate::{
    ipv4::{self, OuterIpv4, PROTO_UDP},
    ipv6, Reason,
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

// IPv6 VXLAN, as `vxlan-v6.calico` sends it: outer IPv6 instead of IPv4, and a real UDP
// checksum (RFC 8200 §8.1: UDP over IPv6 has one; the kernel's device without `udp6zerocsumrx`
// drops a zero one, `udp6_csum_init`).

/// Bytes pushed in front of an inner IPv6 packet: outer IPv6, UDP, VXLAN, inner Ethernet (the
/// 70 bytes Calico takes off the MTU for IPv6 VXLAN).
pub const OVERHEAD6: usize = ipv6::HEADER_LEN + UDP_HEADER_LEN + HEADER_LEN + INNER_ETH_LEN;
const ETH_P_IPV6: [u8; 2] = ipv6::ETHERTYPE.to_be_bytes();

/// One IPv6 packet's encapsulation: the outer addresses and fields, and the two VTEPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encap6<'a> {
    /// This node's IPv6 address on the underlay.
    pub src: &'a [u8; 16],
    /// The other node's.
    pub dst: &'a [u8; 16],
    /// The outer traffic class ([`outer_tos`] of the inner one).
    pub traffic_class: u8,
    /// The outer hop limit ([`outer_ttl`]).
    pub hop_limit: u8,
    pub source_port: u16,
    pub config: &'a VxlanConfig,
    /// The other node's `vxlan-v6.calico` MAC.
    pub peer_mac: [u8; 6],
}

/// What the inner IPv6 packet adds to the outer UDP checksum, from its first 8 bytes as they
/// leave (hop limit already decremented), for a packet whose upper layer (`next_header`, right
/// after the fixed header) carries a correct checksum over the pseudo-header and all of its bytes
/// (TCP, UDP, ICMPv6), as it will once it leaves: the kernel completes a CHECKSUM_PARTIAL one on
/// the way out, at the offsets `bpf_skb_adjust_room` keeps.
///
/// Such an upper layer's bytes sum to the complement of its pseudo-header (RFC 8200 §8.1):
/// addresses, payload length and next header. Those addresses and that length are the fixed
/// header's own, so they cancel out of the header's sum, and what is left is the first two words,
/// the next header/hop limit word, and the complement of the pseudo-header's next-header word.
/// The payload is never read (the kernel's vxlan gets the same sum from `lco_csum`).
pub const fn inner_contribution(first8: &[u8; 8]) -> u32 {
    let w0 = u16::from_be_bytes([first8[0], first8[1]]) as u32;
    let w1 = u16::from_be_bytes([first8[2], first8[3]]) as u32;
    let next = u16::from_be_bytes([first8[6], first8[7]]) as u32;
    w0 + w1 + next + (0xffff - first8[6] as u32)
}

/// Write the 70 bytes in front of an inner IPv6 packet whose first 8 bytes, as it leaves, are
/// `inner_first8` into `h` (the packet's own bytes, in a program): outer IPv6 (version 6, the
/// traffic class, flow label 0 as the kernel's device sends without `flowlabel`, next header
/// UDP), UDP (its checksum still 0: [`udp_checksum6`] makes it), VXLAN (flag I, the VNI), inner
/// Ethernet from this node's VTEP MAC to the other's, IPv6. `false`, writing nothing, when the
/// UDP length would exceed 65535.
pub const fn write_headers6(h: &mut [u8; OVERHEAD6], e: &Encap6, inner_first8: &[u8; 8]) -> bool {
    let payload_len = u16::from_be_bytes([inner_first8[4], inner_first8[5]]) as u32;
    // UDP, VXLAN, inner Ethernet and the inner packet (its fixed header and payload).
    let udp_len = (UDP_HEADER_LEN + HEADER_LEN + INNER_ETH_LEN + ipv6::HEADER_LEN) as u32 + payload_len;
    if udp_len > 0xffff {
        return false;
    }
    let udp_len_bytes = (udp_len as u16).to_be_bytes();
    h[0] = (ipv6::VERSION << 4) | (e.traffic_class >> 4);
    h[1] = e.traffic_class << 4;
    h[2] = 0;
    h[3] = 0;
    h[4] = udp_len_bytes[0];
    h[5] = udp_len_bytes[1];
    h[6] = ipv6::NEXT_UDP;
    h[7] = e.hop_limit;
    let mut i = 0;
    while i < 16 {
        h[8 + i] = e.src[i];
        h[24 + i] = e.dst[i];
        i += 1;
    }
    let udp = ipv6::HEADER_LEN;
    let sport = e.source_port.to_be_bytes();
    let dport = e.config.port.to_be_bytes();
    h[udp] = sport[0];
    h[udp + 1] = sport[1];
    h[udp + 2] = dport[0];
    h[udp + 3] = dport[1];
    h[udp + 4] = udp_len_bytes[0];
    h[udp + 5] = udp_len_bytes[1];
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
    h[eth + 12] = ETH_P_IPV6[0];
    h[eth + 13] = ETH_P_IPV6[1];
    true
}

/// Where the bytes [`udp_checksum6`] takes summed begin and end in [`write_headers6`]'s 70:
/// the outer addresses, the UDP header, VXLAN and the inner Ethernet header but its last word
/// (60 bytes: a multiple of 4, as `bpf_csum_diff` wants).
pub const SUMMED6: core::ops::Range<usize> = 8..68;

/// The UDP checksum field of IPv6 VXLAN whose headers [`write_headers6`] wrote, given `summed`,
/// the one's-complement sum of the big-endian 16-bit words of `h[SUMMED6]` (a program has the
/// kernel sum them where they lie): the rest of the pseudo-header (length, next header), the
/// inner Ethernet type, and the inner packet ([`inner_contribution`]), for each packet that
/// reaches the wire carrying `wire_payload_len` bytes of inner payload.
///
/// That is the packet's own payload length, or for a GSO packet whose segments are all alike
/// (`gso_size` bytes of TCP data or of a UDP datagram each), a segment's: the inner upper layer drops out of the sum
/// and only the lengths differ between the aggregate and its segments, so every segment the
/// kernel cuts carries this one checksum, which `bpf_skb_adjust_room`'s tunnel GSO
/// (`SKB_GSO_UDP_TUNNEL`, never `_CSUM`) copies into each of them. The UDP length `h` holds (the
/// aggregate's, which each segment's replaces) is taken out of `summed` and the wire's put in.
pub const fn udp_checksum6(summed: u32, inner_first8: &[u8; 8], wire_payload_len: u16) -> u16 {
    const AROUND: u32 = (UDP_HEADER_LEN + HEADER_LEN + INNER_ETH_LEN + ipv6::HEADER_LEN) as u32;
    let written = AROUND + u16::from_be_bytes([inner_first8[4], inner_first8[5]]) as u32;
    let wire = AROUND + wire_payload_len as u32;
    let summed = (summed & 0xffff) + (summed >> 16);
    // The header's length replaced (one's complement: adding 0xffff − x takes x away), then the
    // pseudo-header's.
    let sum = summed
        + (0xffff - written)
        + wire
        + wire
        + ipv6::NEXT_UDP as u32
        + u16::from_be_bytes(ETH_P_IPV6) as u32
        + inner_contribution(inner_first8);
    ipv6::udp_checksum_field(crate::icmp::fold(sum))
}

/// [`write_headers6`], then the checksum summed here for packets on the wire carrying
/// `wire_payload_len` bytes of inner payload ([`udp_checksum6`]): the host's whole computation
/// (the programs sum with `bpf_csum_diff`).
pub const fn write_headers6_summed(
    h: &mut [u8; OVERHEAD6],
    e: &Encap6,
    inner_first8: &[u8; 8],
    wire_payload_len: u16,
) -> bool {
    if !write_headers6(h, e, inner_first8) {
        return false;
    }
    let mut summed = 0u32;
    let mut at = SUMMED6.start;
    while at < SUMMED6.end {
        summed += u16::from_be_bytes([h[at], h[at + 1]]) as u32;
        at += 2;
    }
    let check = udp_checksum6(summed, inner_first8, wire_payload_len).to_be_bytes();
    h[ipv6::HEADER_LEN + 6] = check[0];
    h[ipv6::HEADER_LEN + 7] = check[1];
    true
}

/// Bytes [`flow_hash6`] reads: the inner fixed header and the 4 bytes after it.
pub const FLOW6_LEN: usize = ipv6::HEADER_LEN + 4;

/// A hash of an IPv6 packet's flow (the interface identifiers of its addresses, next header, and
/// for TCP and UDP the ports that follow the fixed header), for the UDP source port when the skb
/// carries no hash of its own: every packet of a flow the same, flows spread (never 0, which
/// [`source_port`] reads as none). The addresses' first halves are left out: a cluster's pods
/// share their /64 (Calico's pool), so they would cost the programs 16 reads and spread nothing.
pub const fn flow_hash6(p: &[u8; FLOW6_LEN]) -> u32 {
    let next_header = p[6];
    let mut h = (next_header as u32).wrapping_mul(0x9e37_79b9);
    let mut i = 0;
    while i < 4 {
        // Bytes 8..16 of the source (16..24 of the header), then of the destination (32..40).
        let at = if i < 2 { 16 + 4 * i } else { 32 + 4 * (i - 2) };
        let word = u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]);
        h = (h ^ word).rotate_left(5).wrapping_mul(0x85eb_ca6b);
        i += 1;
    }
    if next_header == ipv6::NEXT_TCP || next_header == ipv6::NEXT_UDP {
        h ^= u32::from_be_bytes([p[40], p[41], p[42], p[43]]);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    if h == 0 {
        1
    } else {
        h
    }
}

/// Whether IPv6 VXLAN that arrived from a known node, with an outer payload of `payload_len`
/// bytes, is one the fast path may take apart for this node's `vxlan-v6.calico`: UDP length
/// consistent, a UDP checksum (the kernel's device drops one without, as RFC 8200 asks; a
/// checksum it has is not verified, as over IPv4: the inner packet's own checksums are, by the
/// pod), flags exactly "I", this device's VNI, an inner Ethernet frame to this device's MAC
/// carrying IPv6. Anything else is the kernel's ([`Reason::PassVxlanOther`]).
pub const fn check_received6(payload_len: u16, r: &Received, config: &VxlanConfig) -> Result<(), Reason> {
    let udp_len = u16::from_be_bytes([r.udp[4], r.udp[5]]);
    let has_checksum = r.udp[6] != 0 || r.udp[7] != 0;
    let vni = u32::from_be_bytes([0, r.vxlan[4], r.vxlan[5], r.vxlan[6]]);
    let v = &r.vxlan;
    let flags_ok = v[0] == FLAG_VNI && v[1] == 0 && v[2] == 0 && v[3] == 0 && v[7] == 0;
    let e = &r.inner_eth;
    let m = &config.mac;
    let to_me = e[0] == m[0] && e[1] == m[1] && e[2] == m[2] && e[3] == m[3] && e[4] == m[4] && e[5] == m[5];
    let carries_ipv6 = e[12] == ETH_P_IPV6[0] && e[13] == ETH_P_IPV6[1];
    if payload_len != udp_len || !has_checksum || !flags_ok || vni != config.vni || !to_me || !carries_ipv6 {
        return Err(Reason::PassVxlanOther);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;

    use std::vec::Vec;

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

    const NODE6: [u8; 16] = [0xfd, 0, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x65, 0x0e, 0x32];
    const PEER6: [u8; 16] = [0xfd, 0, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x65, 0x0e, 0x33];

    /// An inner IPv6 packet from `src` to `dst` of `next_header` whose upper layer is `upper`
    /// with its checksum (at `check_at`) made, hop limit 63.
    fn inner6(next_header: u8, upper: &[u8], check_at: usize) -> Vec<u8> {
        let src = [0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0, 0, 0, 0, 0, 0, 0x0a, 0xf4, 0x28, 0x24];
        let dst = [0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0, 0, 0, 0, 0, 0, 0x0a, 0xf4, 0xa6, 0x96];
        let header = ipv6::Ipv6Fields {
            version: 6,
            traffic_class: 0x2a,
            flow_label: 0x12345,
            payload_len: upper.len() as u16,
            next_header,
            hop_limit: 63,
            src,
            dst,
        };
        let mut upper = upper.to_vec();
        upper[check_at..check_at + 2].copy_from_slice(&[0, 0]);
        let sum = ipv6::upper_layer_checksum(&src, &dst, next_header, &upper);
        let sum = if next_header == ipv6::NEXT_UDP { ipv6::udp_checksum_field(sum) } else { sum };
        upper[check_at..check_at + 2].copy_from_slice(&sum.to_be_bytes());
        let mut packet = header.header().to_vec();
        packet.extend_from_slice(&upper);
        packet
    }

    fn encap6<'a>(config: &'a VxlanConfig) -> Encap6<'a> {
        Encap6 {
            src: &NODE6,
            dst: &PEER6,
            traffic_class: 0,
            hop_limit: 64,
            source_port: 40000,
            config,
            peer_mac: PEER,
        }
    }

    /// The outer packet: the 70 bytes, then `inner`.
    fn encapsulated6(inner: &[u8]) -> Vec<u8> {
        let config = config();
        let mut h = [0u8; OVERHEAD6];
        let payload_len = (inner.len() - ipv6::HEADER_LEN) as u16;
        assert!(write_headers6_summed(&mut h, &encap6(&config), inner[..8].try_into().unwrap(), payload_len));
        let mut packet = h.to_vec();
        packet.extend_from_slice(inner);
        packet
    }

    fn udp_checksum_holds(outer: &[u8]) -> bool {
        let ip = ipv6::Ipv6Fields::parse(outer[..40].try_into().unwrap());
        outer[46..48] != [0, 0]
            && ipv6::upper_layer_checksum(&ip.src, &ip.dst, ipv6::NEXT_UDP, &outer[40..]) == 0
    }

    #[test]
    fn ipv6_headers_are_what_vxlan_v6_calico_sends() {
        let mut echo = [0u8; 64];
        echo[0] = 128;
        echo[4..8].copy_from_slice(&[0x12, 0x34, 0, 1]);
        let inner = inner6(ipv6::NEXT_ICMPV6, &echo, 2);
        let p = encapsulated6(&inner);
        // Outer IPv6: traffic class 0, flow label 0, 8 + 8 + 14 + 104 bytes of UDP, hop limit 64.
        assert_eq!(&p[..8], &[0x60, 0, 0, 0, 0, 134, 17, 64]);
        assert_eq!(&p[8..24], &NODE6);
        assert_eq!(&p[24..40], &PEER6);
        assert_eq!(&p[40..46], &[0x9c, 0x40, 0x12, 0xb5, 0, 134]);
        assert_eq!(&p[48..56], &[0x08, 0, 0, 0, 0, 0x10, 0, 0]);
        assert_eq!(&p[56..62], &PEER);
        assert_eq!(&p[62..68], &ME);
        assert_eq!(&p[68..70], &[0x86, 0xdd]);
        assert!(udp_checksum_holds(&p), "a real UDP checksum");
        let config = config();
        let tc = Encap6 { traffic_class: 0xb9, ..encap6(&config) };
        let mut h = [0u8; OVERHEAD6];
        assert!(write_headers6(&mut h, &tc, inner[..8].try_into().unwrap()));
        assert_eq!(&h[..2], &[0x6b, 0x90], "the traffic class across the version and flow label");
        let mut huge = [0u8; 8];
        huge[4..6].copy_from_slice(&(65535u16 - 69).to_be_bytes());
        assert!(!write_headers6(&mut h, &encap6(&config), &huge), "a UDP length over 64 KiB");
        huge[4..6].copy_from_slice(&(65535u16 - 70).to_be_bytes());
        assert!(write_headers6(&mut h, &encap6(&config), &huge));
    }

    #[test]
    fn the_udp_checksum_holds_for_tcp_udp_and_icmpv6_without_reading_their_payload() {
        let mut tcp = [0u8; 40];
        tcp[..4].copy_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        tcp[12] = 5 << 4;
        tcp[13] = 0x10;
        tcp[20..].copy_from_slice(&[0x5a; 20]);
        let mut udp = [0u8; 21];
        udp[..6].copy_from_slice(&[0x9c, 0x40, 0, 53, 0, 21]);
        udp[8..].copy_from_slice(b"odd body, 13!");
        for (next_header, upper, check_at) in
            [(ipv6::NEXT_TCP, &tcp[..], 16), (ipv6::NEXT_UDP, &udp[..], 6), (ipv6::NEXT_ICMPV6, &tcp[..], 2)]
        {
            let inner = inner6(next_header, upper, check_at);
            assert!(udp_checksum_holds(&encapsulated6(&inner)), "next header {next_header}");
            // The headers depend on the inner packet's first 8 bytes alone.
            let mut other_payload = inner.clone();
            *other_payload.last_mut().unwrap() ^= 0xff;
            assert_eq!(encapsulated6(&other_payload)[..70], encapsulated6(&inner)[..70]);
        }
    }

    #[test]
    fn a_checksum_the_kernel_completes_later_makes_the_same_outer_checksum() {
        // CHECKSUM_PARTIAL, as a pod's TCP hands it over: the field holds the pseudo-header's
        // folded sum, the kernel writes the real checksum on the way out.
        let mut tcp = [0u8; 40];
        tcp[..4].copy_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        tcp[12] = 5 << 4;
        tcp[20..].copy_from_slice(&[0x33; 20]);
        let complete = inner6(ipv6::NEXT_TCP, &tcp, 16);
        let ip = ipv6::Ipv6Fields::parse(complete[..40].try_into().unwrap());
        let mut partial = complete.clone();
        let pseudo = !crate::icmp::fold(ipv6::pseudo_header_sum(&ip.src, &ip.dst, 40, ipv6::NEXT_TCP));
        partial[40 + 16..40 + 18].copy_from_slice(&pseudo.to_be_bytes());
        let mut sent = encapsulated6(&partial);
        sent[70..].copy_from_slice(&complete);
        assert!(udp_checksum_holds(&sent));
    }

    /// The segments the kernel cuts a TCP GSO packet (`inner`: IPv6, a 20-byte TCP header,
    /// `mss`-byte pieces of data) encapsulated as `outer` into: each the 70 bytes with the
    /// outer lengths made the segment's (`ipv6_gso_segment`, `__skb_udp_tunnel_segment`, the
    /// UDP checksum left as it is), the inner header's payload length the segment's, the TCP
    /// sequence number advanced, PSH only on the last, and a real TCP checksum.
    fn segments6(outer: &[u8], mss: usize) -> Vec<Vec<u8>> {
        let inner = &outer[OVERHEAD6..];
        let ip = ipv6::Ipv6Fields::parse(inner[..40].try_into().unwrap());
        let (tcp, data) = (&inner[40..60], &inner[60..]);
        let seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
        let pieces: Vec<&[u8]> = data.chunks(mss).collect();
        let last = pieces.len() - 1;
        pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                let mut upper = tcp.to_vec();
                upper[4..8].copy_from_slice(&(seq + (i * mss) as u32).to_be_bytes());
                upper[13] = if i == last { 0x18 } else { 0x10 };
                upper[16..18].copy_from_slice(&[0, 0]);
                upper.extend_from_slice(piece);
                let check = ipv6::upper_layer_checksum(&ip.src, &ip.dst, ipv6::NEXT_TCP, &upper);
                upper[16..18].copy_from_slice(&check.to_be_bytes());
                let header = ipv6::Ipv6Fields { payload_len: upper.len() as u16, ..ip };
                let mut segment = outer[..OVERHEAD6].to_vec();
                let udp_len = (OVERHEAD6 - 40 + 40 + upper.len()) as u16;
                segment[4..6].copy_from_slice(&udp_len.to_be_bytes());
                segment[44..46].copy_from_slice(&udp_len.to_be_bytes());
                segment.extend_from_slice(&header.header());
                segment.extend_from_slice(&upper);
                segment
            })
            .collect()
    }

    #[test]
    fn every_segment_of_a_gso_packet_cut_in_equal_pieces_carries_the_one_checksum() {
        const MSS: usize = 1370;
        let mut tcp = std::vec![0u8; 20 + 3 * MSS];
        tcp[..4].copy_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        tcp[4..8].copy_from_slice(&0xfffff000u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x18;
        for (i, b) in tcp[20..].iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        let inner = inner6(ipv6::NEXT_TCP, &tcp, 16);
        let config = config();
        let wire_packet = |inner: &[u8], wire: usize| {
            let mut h = [0u8; OVERHEAD6];
            assert!(write_headers6_summed(
                &mut h,
                &encap6(&config),
                inner[..8].try_into().unwrap(),
                wire as u16
            ));
            let mut outer = h.to_vec();
            outer.extend_from_slice(inner);
            outer
        };
        let outer = wire_packet(&inner, 20 + MSS);
        // The aggregate's own lengths in its headers, as a receiver that never cuts it reads them.
        assert_eq!(usize::from(u16::from_be_bytes([outer[44], outer[45]])), outer.len() - 40);
        let segments = segments6(&outer, MSS);
        assert_eq!(segments.len(), 3);
        for segment in &segments {
            assert!(udp_checksum_holds(segment), "{:x?}", &segment[..8]);
        }
        // Taken for a whole packet, the checksum holds for none of them.
        let whole = wire_packet(&inner, 20 + 3 * MSS);
        assert!(udp_checksum_holds(&whole));
        assert!(segments6(&whole, MSS).iter().all(|s| !udp_checksum_holds(s)));
        // A shorter last piece: that segment's checksum would not hold, which is why such a GSO
        // packet is the device's to encapsulate.
        let short = inner6(ipv6::NEXT_TCP, &tcp[..tcp.len() - 100], 16);
        let segments = segments6(&wire_packet(&short, 20 + MSS), MSS);
        let holds: Vec<bool> = segments.iter().map(|s| udp_checksum_holds(s)).collect();
        assert_eq!(holds, [true, true, false]);
    }

    fn received6() -> (u16, Received) {
        let inner = inner6(ipv6::NEXT_ICMPV6, &[128, 0, 0, 0, 0, 0, 0, 1], 2);
        let p = encapsulated6(&inner);
        let mut r = Received { udp: [0; 8], vxlan: [0; 8], inner_eth: [0; 14] };
        r.udp.copy_from_slice(&p[40..48]);
        r.vxlan.copy_from_slice(&p[48..56]);
        r.inner_eth.copy_from_slice(&p[56..70]);
        r.inner_eth[..6].copy_from_slice(&ME);
        (u16::from_be_bytes([p[4], p[5]]), r)
    }

    #[test]
    fn the_flow_hash_follows_the_flow() {
        let mut p = [0u8; FLOW6_LEN];
        p[6] = ipv6::NEXT_TCP;
        p[8..24].copy_from_slice(&NODE6);
        p[24..40].copy_from_slice(&PEER6);
        p[40..44].copy_from_slice(&[0x9c, 0x40, 0, 80]);
        let h = flow_hash6(&p);
        assert_ne!(h, 0);
        let mut other_port = p;
        other_port[41] = 0x41;
        assert_ne!(flow_hash6(&other_port), h, "another connection");
        let mut other_payload_len = p;
        other_payload_len[5] = 99;
        assert_eq!(flow_hash6(&other_payload_len), h, "the same flow");
        let mut icmp = p;
        icmp[6] = ipv6::NEXT_ICMPV6;
        let mut other_checksum = icmp;
        other_checksum[42] = 0x77;
        assert_eq!(flow_hash6(&icmp), flow_hash6(&other_checksum), "ICMPv6's bytes there are no ports");
    }

    #[test]
    fn ipv6_vxlan_for_this_device_is_taken_apart_and_anything_else_is_the_kernels() {
        let (len, good) = received6();
        assert_eq!(check_received6(len, &good, &config()), Ok(()));
        let with = |change: fn(&mut Received)| {
            let mut r = good;
            change(&mut r);
            r
        };
        let cases = [
            ("no UDP checksum", len, with(|r| r.udp[6..8].copy_from_slice(&[0, 0]))),
            ("another VNI", len, with(|r| r.vxlan[6] = 1)),
            ("other flags", len, with(|r| r.vxlan[0] = 0x0c)),
            ("a UDP length that disagrees", len + 1, good),
            ("to another VTEP", len, with(|r| r.inner_eth[0] ^= 1)),
            ("IPv4 inside", len, with(|r| r.inner_eth[12..14].copy_from_slice(&[0x08, 0x00]))),
        ];
        for (what, len, r) in cases {
            assert_eq!(check_received6(len, &r, &config()), Err(Reason::PassVxlanOther), "{what}");
        }
    }
}
