//! Crafted frames for BPF_PROG_TEST_RUN, built byte by byte.

use std::net::Ipv4Addr;

pub use fastpath_common::{ipv4::internet_checksum as checksum, GATEWAY_MAC};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const BROADCAST: [u8; 6] = [0xff; 6];
/// The MAC of the seed's pod 10.244.40.36 (`ip a` in the write-up).
pub const POD_MAC: [u8; 6] = [0x86, 0x79, 0x13, 0x2b, 0x26, 0x1d];

/// An Ethernet header.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ether_type: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(64);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ether_type.to_be_bytes());
    frame
}

/// The fields of an Ethernet/IPv4 ARP packet.
#[derive(Clone, Copy, Debug)]
pub struct Arp {
    pub op: u16,
    pub sha: [u8; 6],
    pub spa: Ipv4Addr,
    pub tha: [u8; 6],
    pub tpa: Ipv4Addr,
}

impl Arp {
    /// "who has `target`? tell `sender`", as a pod's kernel sends it.
    pub fn request(sender: Ipv4Addr, target: Ipv4Addr) -> Self {
        Self { op: 1, sha: POD_MAC, spa: sender, tha: [0; 6], tpa: target }
    }

    /// The 28-byte ARP body.
    pub fn body(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(28);
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&ETH_P_IP.to_be_bytes());
        body.extend_from_slice(&[6, 4]);
        body.extend_from_slice(&self.op.to_be_bytes());
        body.extend_from_slice(&self.sha);
        body.extend_from_slice(&self.spa.octets());
        body.extend_from_slice(&self.tha);
        body.extend_from_slice(&self.tpa.octets());
        body
    }

    /// The whole frame, from `eth_src` to `eth_dst`.
    pub fn frame(&self, eth_dst: [u8; 6], eth_src: [u8; 6]) -> Vec<u8> {
        let mut frame = ethernet(eth_dst, eth_src, ETH_P_ARP);
        frame.extend_from_slice(&self.body());
        frame
    }
}

/// An IPv4 packet with a correct header checksum around `payload`.
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, ttl, protocol, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(payload);
    ip
}

/// An ICMP echo request (id 0, seq 0, no data) in IPv4.
pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
    ipv4_packet(src, dst, ttl, 1, &[8, 0, 0xf7, 0xff, 0, 0, 0, 0])
}

/// A VXLAN encapsulation as a `vxlan.calico` sends it (UDP checksum 0, flag I).
#[derive(Clone, Copy, Debug)]
pub struct Vxlan {
    pub sport: u16,
    pub port: u16,
    pub vni: u32,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
}

impl Vxlan {
    /// The outer IPv4 packet (TTL 64, no DF) from `src` to `dst` around the inner IPv4 packet
    /// `inner`.
    pub fn packet(&self, src: Ipv4Addr, dst: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
        let mut udp = Vec::with_capacity(30 + inner.len());
        udp.extend_from_slice(&self.sport.to_be_bytes());
        udp.extend_from_slice(&self.port.to_be_bytes());
        udp.extend_from_slice(&((30 + inner.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&[0x08, 0, 0, 0]);
        udp.extend_from_slice(&(self.vni << 8).to_be_bytes());
        udp.extend_from_slice(&ethernet(self.dst_mac, self.src_mac, ETH_P_IP));
        udp.extend_from_slice(inner);
        let mut ip = ipv4_packet(src, dst, 64, 17, &udp);
        // No DF, as the kernel's vxlan device sends by default.
        ip[6] = 0;
        ip[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        ip
    }
}

/// TCP flags.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// A TCP segment (20-byte header, no payload, a correct checksum) in IPv4.
pub fn tcp_segment(src: Ipv4Addr, dst: Ipv4Addr, ports: (u16, u16), flags: u8) -> Vec<u8> {
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&ports.0.to_be_bytes());
    tcp[2..4].copy_from_slice(&ports.1.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    summed(src, dst, 6, &mut tcp, 16);
    ipv4_packet(src, dst, 64, 6, &tcp)
}

/// A UDP datagram with `payload` and a correct checksum in IPv4.
pub fn udp_datagram(src: Ipv4Addr, dst: Ipv4Addr, ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&ports.0.to_be_bytes());
    udp.extend_from_slice(&ports.1.to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    summed(src, dst, 17, &mut udp, 6);
    ipv4_packet(src, dst, 64, 17, &udp)
}

/// An ICMP echo (`kind` 8 request, 0 reply) with identifier `id`, sequence 1 and a correct
/// checksum in IPv4.
pub fn icmp_echo_id(src: Ipv4Addr, dst: Ipv4Addr, kind: u8, id: u16) -> Vec<u8> {
    let mut icmp = [kind, 0, 0, 0, 0, 0, 0, 1];
    icmp[4..6].copy_from_slice(&id.to_be_bytes());
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    ipv4_packet(src, dst, 64, 1, &icmp)
}

/// The transport checksum over the IPv4 pseudo-header and `l4` (whose own checksum field is
/// zero), written at `at`; UDP's 0 is sent as 0xffff.
fn summed(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4: &mut [u8], at: usize) {
    let sum = checksum(&with_pseudo_header(src, dst, protocol, l4));
    let sum = if sum == 0 && protocol == 17 { 0xffff } else { sum };
    l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

fn with_pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(12 + l4.len());
    bytes.extend_from_slice(&src.octets());
    bytes.extend_from_slice(&dst.octets());
    bytes.extend_from_slice(&[0, protocol]);
    bytes.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    bytes.extend_from_slice(l4);
    bytes
}

/// Whether the IPv4 packet `ip` (option-less) has a correct header checksum and a correct TCP,
/// UDP (or none: 0) or ICMP checksum: what a receiver's stack verifies.
pub fn checksums_hold(ip: &[u8]) -> bool {
    if checksum(&ip[..20]) != 0 {
        return false;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let l4 = &ip[20..total];
    match ip[9] {
        1 => checksum(l4) == 0,
        17 if l4[6..8] == [0, 0] => true,
        protocol @ (6 | 17) => checksum(&with_pseudo_header(src, dst, protocol, l4)) == 0,
        _ => true,
    }
}

/// An SCTP packet with one INIT chunk (verification tag 0, as an association's first packet
/// has) and a correct CRC32c, in IPv4: what conntrack takes as a new SCTP connection.
pub fn sctp_init(src: Ipv4Addr, dst: Ipv4Addr, ports: (u16, u16)) -> Vec<u8> {
    let mut sctp = Vec::with_capacity(32);
    sctp.extend_from_slice(&ports.0.to_be_bytes());
    sctp.extend_from_slice(&ports.1.to_be_bytes());
    sctp.extend_from_slice(&[0; 8]);
    // INIT: type 1, flags 0, length 20, initiate tag, a_rwnd, outbound and inbound streams,
    // initial TSN.
    sctp.extend_from_slice(&[1, 0, 0, 20]);
    sctp.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    sctp.extend_from_slice(&65536u32.to_be_bytes());
    sctp.extend_from_slice(&[0, 1, 0, 1]);
    sctp.extend_from_slice(&1u32.to_be_bytes());
    let crc = crc32c(&sctp);
    // RFC 9260 appendix A: the CRC32c goes in little-endian byte order.
    sctp[8..12].copy_from_slice(&crc.to_le_bytes());
    ipv4_packet(src, dst, 64, 132, &sctp)
}

/// CRC32c (Castagnoli), bit by bit: SCTP's checksum.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

/// The IPv4 packet `ip` in an Ethernet frame from a pod to its gateway MAC.
pub fn pod_frame(ip: &[u8]) -> Vec<u8> {
    let mut frame = ethernet(GATEWAY_MAC, POD_MAC, ETH_P_IP);
    frame.extend_from_slice(ip);
    frame
}

/// An ICMP echo request in an Ethernet frame from a pod to its gateway MAC.
pub fn ipv4_frame(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
    pod_frame(&icmp_echo(src, dst, ttl))
}

/// An IPv6 frame from a pod (MAC `POD_MAC`) to the gateway: an ICMPv6 echo request from `src` to
/// `dst` with `hop_limit`, after `next_header` (another number than ICMPv6's puts 8 bytes of an
/// extension header naming ICMPv6 before the message).
pub fn ipv6_frame(src: [u8; 16], dst: [u8; 16], hop_limit: u8, next_header: u8) -> Vec<u8> {
    const ICMPV6: u8 = 58;
    let mut payload = Vec::new();
    if next_header != ICMPV6 {
        payload.extend_from_slice(&[ICMPV6, 0, 1, 4, 0, 0, 0, 0]);
    }
    payload.extend_from_slice(&[128, 0, 0, 0, 0x12, 0x34, 0, 1]);
    payload.extend_from_slice(&[0xab; 56]);
    let mut frame = ethernet([0xee; 6], POD_MAC, ETH_P_IPV6);
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[next_header, hop_limit]);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_request_matches_a_captured_one() {
        // `tcpdump -xx` of the seed pod asking for its gateway.
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x86, 0x79, 0x13, 0x2b, 0x26, 0x1d, 0x08, 0x06, //
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, //
            0x86, 0x79, 0x13, 0x2b, 0x26, 0x1d, 10, 244, 40, 36, //
            0, 0, 0, 0, 0, 0, 169, 254, 1, 1,
        ];
        let request = Arp::request(Ipv4Addr::new(10, 244, 40, 36), Ipv4Addr::new(169, 254, 1, 1));
        assert_eq!(request.frame(BROADCAST, POD_MAC), expected);
    }

    #[test]
    fn a_vxlan_packet_has_its_headers_where_rfc_7348_puts_them() {
        let inner = icmp_echo(Ipv4Addr::new(10, 244, 166, 150), Ipv4Addr::new(10, 244, 40, 36), 63);
        let v = Vxlan { sport: 50000, port: 4789, vni: 4096, dst_mac: [1; 6], src_mac: [2; 6] };
        let p = v.packet(Ipv4Addr::new(10, 101, 14, 51), Ipv4Addr::new(10, 101, 14, 50), &inner);
        assert_eq!(p.len(), 50 + inner.len());
        assert_eq!(checksum(&p[..20]), 0);
        assert_eq!(&p[6..10], &[0, 0, 64, 17]);
        assert_eq!(&p[20..28], &[0xc3, 0x50, 0x12, 0xb5, 0, (30 + inner.len()) as u8, 0, 0]);
        assert_eq!(&p[28..36], &[8, 0, 0, 0, 0, 0x10, 0, 0]);
        assert_eq!(&p[36..50], &[1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 8, 0]);
        assert_eq!(&p[50..], &inner[..]);
    }

    #[test]
    fn crc32c_matches_rfc_3720s_example() {
        // iSCSI's test vector: 32 bytes of zeros.
        assert_eq!(crc32c(&[0; 32]), 0x8a91_36aa);
    }

    #[test]
    fn transport_checksums_verify() {
        let (a, b) = (Ipv4Addr::new(10, 244, 40, 36), Ipv4Addr::new(10, 96, 0, 10));
        assert!(checksums_hold(&tcp_segment(a, b, (40000, 80), TCP_SYN)));
        assert!(checksums_hold(&udp_datagram(a, b, (40000, 53), b"query")));
        assert!(checksums_hold(&icmp_echo_id(a, b, 8, 0x1234)));
        let mut broken = udp_datagram(a, b, (40000, 53), b"query");
        broken[30] ^= 1;
        assert!(!checksums_hold(&broken));
    }

    #[test]
    fn ipv4_header_checksum_verifies() {
        let frame = ipv4_frame(Ipv4Addr::new(10, 244, 40, 36), Ipv4Addr::new(10, 244, 166, 150), 64);
        assert_eq!(checksum(&frame[14..34]), 0);
    }
}
