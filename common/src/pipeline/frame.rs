//! The frame a program decides about: bytes at an offset, as the skb's linear data holds them
//! for the programs, or as a byte slice holds them for `fastpath explain` and the tests. Every
//! header the decisions read is read here, once.

use crate::{
    arp::{ArpFields, ARP_IPV4_LEN},
    flow::{self, FlowKey, Signal, PORTS_LEN, PROTO_TCP},
    flow6::{self, FlowKey6},
    icmp,
    ipv4::{self, Ipv4Fields, FRAGMENT_MASK, HEADER_LEN, PROTO_UDP},
    vxlan::{self, Received, INNER_ETH_LEN, UDP_HEADER_LEN},
    Reason,
};

/// The Ethernet header's length: where the IPv4 header of a frame starts.
pub const ETH_LEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = crate::ipv6::ETHERTYPE;
/// Where the UDP header of an outer IPv4 packet starts.
const UDP: usize = ETH_LEN + HEADER_LEN;
/// Where the inner IPv4 header of IPIP starts.
pub const IPIP_INNER_L3: usize = ETH_LEN + HEADER_LEN;
/// Where the inner IPv4 header of VXLAN starts.
pub const VXLAN_INNER_L3: usize = ETH_LEN + vxlan::OVERHEAD;

/// Bytes of a frame.
pub trait Frame {
    /// The frame's length as it arrived (the skb's `len`: linear and paged data).
    fn length(&self) -> u32;

    /// `f` of the `N` bytes at `offset`, if the linear data holds them (for the programs, the
    /// comparison with `data_end` that lets the verifier accept the access).
    fn read<const N: usize, R>(&self, offset: usize, f: impl FnOnce(&[u8; N]) -> R) -> Option<R>;

    /// The payload size of each segment of a GSO super-packet; 0 for a plain packet.
    fn gso_size(&self) -> u32;
}

/// A frame held in memory, for `explain` and the tests: what BPF_PROG_TEST_RUN would be given.
#[derive(Clone, Copy, Debug)]
pub struct Bytes<'a> {
    pub data: &'a [u8],
    pub gso_size: u32,
}

impl<'a> Bytes<'a> {
    pub const fn new(data: &'a [u8]) -> Self {
        Self { data, gso_size: 0 }
    }
}

impl Frame for Bytes<'_> {
    fn length(&self) -> u32 {
        self.data.len() as u32
    }

    fn read<const N: usize, R>(&self, offset: usize, f: impl FnOnce(&[u8; N]) -> R) -> Option<R> {
        let end = offset.checked_add(N)?;
        let bytes: &[u8; N] = self.data.get(offset..end)?.try_into().ok()?;
        Some(f(bytes))
    }

    fn gso_size(&self) -> u32 {
        self.gso_size
    }
}

/// The frame's EtherType.
#[inline(always)]
pub fn ether_type<F: Frame>(frame: &F) -> Option<u16> {
    frame.read::<ETH_LEN, _>(0, |eth| u16::from_be_bytes([eth[12], eth[13]]))
}

/// The frame's Ethernet source.
#[inline(always)]
pub fn source_mac<F: Frame>(frame: &F) -> Option<[u8; 6]> {
    frame.read::<6, _>(6, |mac| *mac)
}

/// The IPv4 ARP packet after the Ethernet header.
#[inline(always)]
pub fn arp<F: Frame>(frame: &F) -> Option<ArpFields> {
    frame.read::<ARP_IPV4_LEN, _>(ETH_LEN, ArpFields::parse)
}

/// The IPv4 header at `offset`, as read.
#[inline(always)]
pub fn ipv4_at<F: Frame>(frame: &F, offset: usize) -> Option<Ipv4Fields> {
    frame.read::<HEADER_LEN, _>(offset, Ipv4Fields::parse)
}

/// The IPv6 fixed header at `offset`, as read.
#[inline(always)]
pub fn ipv6_at<F: Frame>(frame: &F, offset: usize) -> Option<crate::ipv6::Ipv6Fields> {
    frame.read::<{ crate::ipv6::HEADER_LEN }, _>(offset, crate::ipv6::Ipv6Fields::parse)
}

/// The IPv4 header at `offset`, if a router may forward it without the kernel
/// ([`ipv4::check_forwardable`]).
#[inline(always)]
pub fn forwardable<F: Frame>(frame: &F, offset: usize) -> Result<Ipv4Fields, Reason> {
    let fields = ipv4_at(frame, offset).ok_or(Reason::PassIpv4Malformed)?;
    ipv4::check_forwardable(&fields, frame.length().saturating_sub(offset as u32))?;
    Ok(fields)
}

/// The frame's IPv4 header, if it is an IPv4 frame whose header is well-formed, option-less and
/// not a fragment: a packet whose 5-tuple (or tunnel header) follows the header.
#[inline(always)]
pub fn plain_ipv4<F: Frame>(frame: &F) -> Option<Ipv4Fields> {
    if ether_type(frame)? != ETH_P_IP {
        return None;
    }
    let fields = ipv4_at(frame, ETH_LEN)?;
    let after_l2 = frame.length().saturating_sub(ETH_LEN as u32);
    let plain = fields.version_ihl == 0x45 && fields.frag & FRAGMENT_MASK == 0;
    (plain && ipv4::is_well_formed(&fields, after_l2)).then_some(fields)
}

/// The flow direction of the option-less IPv4 packet at `l3`, if it has one
/// ([`flow::ports_of`]).
#[inline(always)]
pub fn flow_key<F: Frame>(frame: &F, l3: usize, ip: &Ipv4Fields) -> Option<FlowKey> {
    let ports = frame.read::<PORTS_LEN, _>(l3 + HEADER_LEN, |l4| flow::ports_of(ip.protocol, l4))??;
    Some(FlowKey::new(ip.src, ip.dst, ip.protocol, ports))
}

/// The flow direction of the option-less IPv4 packet at `l3`, and what its TCP flags say.
#[inline(always)]
pub fn flow_name<F: Frame>(frame: &F, l3: usize, ip: &Ipv4Fields) -> Option<(FlowKey, Signal)> {
    let key = flow_key(frame, l3, ip)?;
    if ip.protocol != PROTO_TCP {
        return Some((key, Signal::default()));
    }
    // The flags are the 14th byte of the TCP header.
    let flags = frame.read::<14, _>(l3 + HEADER_LEN, |tcp| tcp[13])?;
    Some((key, Signal::of_tcp_flags(flags)))
}

/// The flow direction of the IPv6 packet at `l3` (one without extension headers, which the walk
/// hands to the kernel before asking), and what its TCP flags say. The key is built inside one
/// read, from the bytes where they lie.
#[inline(always)]
pub fn flow_name6<F: Frame>(frame: &F, l3: usize) -> Option<(FlowKey6, Signal)> {
    const LEN: usize = crate::ipv6::HEADER_LEN;
    let key = frame.read::<{ LEN + PORTS_LEN }, _>(l3, |p| {
        let l4: &[u8; PORTS_LEN] = p[LEN..].first_chunk()?;
        let ports = flow6::ports_of6(p[6], l4)?;
        Some(FlowKey6::new(*p[8..].first_chunk()?, *p[24..].first_chunk()?, p[6], ports))
    })??;
    if key.protocol != PROTO_TCP {
        return Some((key, Signal::default()));
    }
    let flags = frame.read::<14, _>(l3 + LEN, |tcp| tcp[13])?;
    Some((key, Signal::of_tcp_flags(flags)))
}

/// The UDP, VXLAN and inner Ethernet headers after an outer IPv4 header, if the frame holds them.
#[inline(always)]
pub fn vxlan_received<F: Frame>(frame: &F) -> Option<Received> {
    let udp = frame.read::<UDP_HEADER_LEN, _>(UDP, |h| *h)?;
    let header = frame.read::<{ vxlan::HEADER_LEN }, _>(UDP + UDP_HEADER_LEN, |h| *h)?;
    let inner_eth = frame.read::<INNER_ETH_LEN, _>(UDP + UDP_HEADER_LEN + vxlan::HEADER_LEN, |h| *h)?;
    Some(Received { udp, vxlan: header, inner_eth })
}

/// The UDP destination port after an outer IPv4 header.
#[inline(always)]
pub fn udp_destination<F: Frame>(frame: &F) -> Option<u16> {
    frame.read::<UDP_HEADER_LEN, _>(UDP, vxlan::destination_port)
}

/// The ICMP message after an outer IPv4 header, as far as the path-MTU check reads it.
#[inline(always)]
pub fn icmp_report<F: Frame>(frame: &F, node_ip: [u8; 4], vxlan_port: Option<u16>) -> Option<([u8; 4], u16)> {
    frame.read::<{ icmp::ARRIVING_LEN }, _>(ETH_LEN + HEADER_LEN, |m| {
        icmp::path_mtu_report(m, node_ip, vxlan_port)
    })?
}

/// The IP length of the largest packet that will leave: the bytes after the Ethernet header
/// (which the way out carries whole, even past the IP packet's own length), or for a GSO
/// super-packet one segment (gso_size plus its IP and TCP/UDP headers).
#[inline(always)]
pub fn largest_segment<F: Frame>(frame: &F, ip: &Ipv4Fields) -> u32 {
    let gso_size = frame.gso_size();
    if gso_size == 0 {
        return frame.length().saturating_sub(ETH_LEN as u32);
    }
    gso_size + HEADER_LEN as u32 + transport_header_len(frame, ip.protocol)
}

#[inline(always)]
fn transport_header_len<F: Frame>(frame: &F, protocol: u8) -> u32 {
    match protocol {
        // Byte 12 of the TCP header holds the data offset.
        PROTO_TCP => {
            frame.read::<13, _>(ETH_LEN + HEADER_LEN, |tcp| u32::from(tcp[12] >> 4) * 4).unwrap_or(20)
        }
        PROTO_UDP => 8,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 TCP frame of `ip_len` IP bytes whose TCP header is 32 bytes long.
    fn tcp_frame(ip_len: usize) -> [u8; 1514] {
        let mut f = [0u8; 1514];
        f[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
        f[ETH_LEN] = 0x45;
        f[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        f[ETH_LEN + 8] = 64;
        f[ETH_LEN + 9] = PROTO_TCP;
        f[ETH_LEN + HEADER_LEN + 12] = 8 << 4;
        f
    }

    #[test]
    fn reads_stop_at_the_end_of_the_frame() {
        let f = tcp_frame(100);
        let frame = Bytes::new(&f[..40]);
        assert_eq!(frame.read::<6, _>(34, |b| *b), Some([0; 6]));
        assert_eq!(frame.read::<7, _>(34, |b| *b), None);
        assert_eq!(frame.read::<1, _>(usize::MAX, |b| *b), None);
        assert_eq!(ether_type(&Bytes::new(&f[..13])), None);
    }

    #[test]
    fn a_gso_packet_is_measured_by_its_segments() {
        let f = tcp_frame(1500);
        let ip = ipv4_at(&Bytes::new(&f), ETH_LEN).unwrap();
        assert_eq!(largest_segment(&Bytes::new(&f[..1514]), &ip), 1500);
        // A 64 KB super-packet of 1400-byte segments: each leaves as 20 + 32 + 1400 bytes.
        let gso = Bytes { data: &f, gso_size: 1400 };
        assert_eq!(largest_segment(&gso, &ip), 1452);
    }
}
