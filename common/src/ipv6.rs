//! IPv6 header rules and helpers shared by the programs and the host: which packets the fast
//! path may carry, which destinations it must leave alone, the pseudo-header checksum of the
//! upper layers, and the link-local address a MAC makes.
//!
//! IPv6 has no header checksum (RFC 8200 §3): decrementing the hop limit touches one byte and
//! nothing else, so there is no `checksum_after_hop_limit_decrement` beside IPv4's
//! [`crate::ipv4::checksum_after_ttl_decrement`]. The transport checksums do not cover the hop
//! limit either (it is not in the pseudo-header).
//!
//! Reasons: `reason.rs` has no IPv6 variants yet. Until it has, these functions return the
//! nearest existing reason (listed on each function); the variants IPv6 needs are proposed in
//! the issue-20 groundwork report.

pub use crate::icmp::fold;
use crate::Reason;

pub const HEADER_LEN: usize = 40;
/// The version nibble of an IPv6 header.
pub const VERSION: u8 = 6;
/// The ethertype of IPv6 (host order).
pub const ETHERTYPE: u16 = 0x86dd;

// Next-header values (IANA "Assigned Internet Protocol Numbers").
pub const NEXT_HOP_BY_HOP: u8 = 0;
pub const NEXT_TCP: u8 = 6;
pub const NEXT_DCCP: u8 = 33;
pub const NEXT_UDP: u8 = 17;
pub const NEXT_ROUTING: u8 = 43;
pub const NEXT_FRAGMENT: u8 = 44;
pub const NEXT_ESP: u8 = 50;
pub const NEXT_AH: u8 = 51;
pub const NEXT_ICMPV6: u8 = 58;
pub const NEXT_NONE: u8 = 59;
pub const NEXT_DESTINATION_OPTIONS: u8 = 60;
pub const NEXT_SCTP: u8 = 132;
pub const NEXT_MOBILITY: u8 = 135;
pub const NEXT_UDPLITE: u8 = 136;
pub const NEXT_HIP: u8 = 139;
pub const NEXT_SHIM6: u8 = 140;
/// RFC 3692 experimentation and testing values, which RFC 8200 §4 treats as extension headers.
pub const NEXT_EXPERIMENT_1: u8 = 253;
pub const NEXT_EXPERIMENT_2: u8 = 254;

/// The hop limit the kernel gives what it originates (net.ipv6.conf.*.hop_limit), and that a
/// forwarded packet from a pod still has after one router: 64, then 63.
pub const DEFAULT_HOP_LIMIT: u8 = 64;

/// `::`, the unspecified address (the source of a duplicate address detection probe).
pub const UNSPECIFIED: [u8; 16] = [0; 16];
/// `::1`.
pub const LOOPBACK: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// The fields of an IPv6 fixed header (RFC 8200 §3), in host order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Fields {
    pub version: u8,
    pub traffic_class: u8,
    /// The low 20 bits.
    pub flow_label: u32,
    /// Bytes after the fixed header (extension headers included).
    pub payload_len: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

impl Ipv6Fields {
    /// Read the fields from the 40 bytes of an IPv6 fixed header.
    pub const fn parse(h: &[u8; HEADER_LEN]) -> Self {
        Self {
            version: h[0] >> 4,
            traffic_class: (h[0] << 4) | (h[1] >> 4),
            flow_label: u32::from_be_bytes([0, h[1] & 0x0f, h[2], h[3]]),
            payload_len: u16::from_be_bytes([h[4], h[5]]),
            next_header: h[6],
            hop_limit: h[7],
            src: addr_at(h, 8),
            dst: addr_at(h, 24),
        }
    }

    /// The 40 bytes of this header.
    pub const fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        let flow = self.flow_label.to_be_bytes();
        let len = self.payload_len.to_be_bytes();
        h[0] = (self.version << 4) | (self.traffic_class >> 4);
        h[1] = (self.traffic_class << 4) | (flow[1] & 0x0f);
        h[2] = flow[2];
        h[3] = flow[3];
        h[4] = len[0];
        h[5] = len[1];
        h[6] = self.next_header;
        h[7] = self.hop_limit;
        let mut i = 0;
        while i < 16 {
            h[8 + i] = self.src[i];
            h[24 + i] = self.dst[i];
            i += 1;
        }
        h
    }
}

const fn addr_at(h: &[u8; HEADER_LEN], at: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        a[i] = h[at + i];
        i += 1;
    }
    a
}

const fn same(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let mut i = 0;
    while i < 16 {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether two addresses are equal (a `const` `==`): every byte compared, without a branch or a
/// loop, so that in a program an equal pair (a node's own address, the common case where this is
/// asked) costs a few dozen instructions, not a loop of 16 rounds.
#[inline(always)]
pub const fn same_address(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let mut diff = 0u8;
    let mut i = 0;
    while i < 16 {
        diff |= a[i] ^ b[i];
        i += 1;
    }
    diff == 0
}

/// Whether `next_header` names an extension header (RFC 8200 §4, and the IANA "IPv6 Extension
/// Header Types" registry) rather than an upper layer. A router that only reads the fixed header
/// cannot know what follows these, or whether it must act on them (hop-by-hop options are for
/// every router): the kernel's `ip6_forward` and `ipv6_parse_hopopts` judge them.
pub const fn is_extension_header(next_header: u8) -> bool {
    matches!(
        next_header,
        NEXT_HOP_BY_HOP
            | NEXT_ROUTING
            | NEXT_FRAGMENT
            | NEXT_ESP
            | NEXT_AH
            | NEXT_DESTINATION_OPTIONS
            | NEXT_MOBILITY
            | NEXT_HIP
            | NEXT_SHIM6
            | NEXT_EXPERIMENT_1
            | NEXT_EXPERIMENT_2
    )
}

/// The upper layers the fast path carries: those whose flows it can name or whose errors it
/// understands.
pub const fn is_carried_transport(next_header: u8) -> bool {
    matches!(next_header, NEXT_TCP | NEXT_UDP | NEXT_ICMPV6 | NEXT_SCTP | NEXT_UDPLITE | NEXT_DCCP)
}

/// Whether the header is one the kernel's `ip6_rcv_core` would accept: version 6, a payload
/// length that fits the packet (a payload length of 0 is a jumbogram only with a hop-by-hop
/// header, which [`check_forwardable`] hands to the kernel anyway), and a source that is not
/// multicast (RFC 4291 §2.7: never a source).
pub const fn is_well_formed(ip: &Ipv6Fields, packet_len_after_l2: u32) -> bool {
    ip.version == VERSION
        && ip.payload_len as u32 + HEADER_LEN as u32 <= packet_len_after_l2
        && ip.src[0] != 0xff
}

/// Whether a router may forward this header without the kernel's help, as
/// [`crate::ipv4::check_forwardable`] decides for IPv4. The kernel keeps what needs a router's
/// judgement: a malformed header, extension headers (hop-by-hop options every router must read,
/// routing headers, fragments, IPsec), hop-limit expiry (it sends ICMPv6 time exceeded,
/// `ip6_forward`) and upper layers the fast path cannot name flows for.
///
/// Reasons: `PassIpv6Malformed`; a fragment header `PassFragment`; any other extension header
/// `PassIpv6ExtensionHeader`; hop limit ≤ 1 `PassTtlExceeded`; another upper layer
/// `PassIpv6OtherNextHeader`.
#[inline(always)]
pub const fn check_forwardable(ip: &Ipv6Fields, packet_len_after_l2: u32) -> Result<(), Reason> {
    if !is_well_formed(ip, packet_len_after_l2) {
        return Err(Reason::PassIpv6Malformed);
    }
    if ip.next_header == NEXT_FRAGMENT {
        return Err(Reason::PassFragment);
    }
    if is_extension_header(ip.next_header) {
        return Err(Reason::PassIpv6ExtensionHeader);
    }
    if ip.hop_limit <= 1 {
        return Err(Reason::PassTtlExceeded);
    }
    if !is_carried_transport(ip.next_header) {
        return Err(Reason::PassIpv6OtherNextHeader);
    }
    Ok(())
}

/// Destinations a fast path must never carry, whatever the routes say: the unspecified and the
/// loopback address, link-local `fe80::/10` (`fe80::ecee:eeff:feee:eeee` is the pods' gateway),
/// multicast `ff00::/8` (neighbour discovery among it), IPv4-mapped `::ffff:0:0/96` (never on
/// the wire, RFC 4291 §2.5.5.2), and the node's own address.
#[inline(always)]
pub const fn is_special_destination(dst: [u8; 16], node_ip6: [u8; 16]) -> bool {
    same(&dst, &node_ip6)
        || same(&dst, &UNSPECIFIED)
        || same(&dst, &LOOPBACK)
        || is_link_local(&dst)
        || is_multicast(&dst)
        || is_v4_mapped(&dst)
}

/// `fe80::/10`.
pub const fn is_link_local(a: &[u8; 16]) -> bool {
    a[0] == 0xfe && a[1] & 0xc0 == 0x80
}

/// `ff00::/8`.
#[inline(always)]
pub const fn is_multicast(a: &[u8; 16]) -> bool {
    a[0] == 0xff
}

/// `::ffff:a.b.c.d`: IPv4 address `a` in IPv6's form (RFC 4291 §2.5.5.2), as the monitor
/// carries both families.
#[inline(always)]
pub const fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]]
}

/// `::ffff:0:0/96`.
pub const fn is_v4_mapped(a: &[u8; 16]) -> bool {
    let mut i = 0;
    while i < 10 {
        if a[i] != 0 {
            return false;
        }
        i += 1;
    }
    a[10] == 0xff && a[11] == 0xff
}

/// The one's-complement sum (RFC 1071), not yet folded, of `bytes` taken as big-endian 16-bit
/// words, an odd last byte padded with zero.
#[inline(always)]
pub const fn sum_words(bytes: &[u8]) -> u32 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let low = if i + 1 < bytes.len() { bytes[i + 1] } else { 0 };
        // Fold as we go, so any length short of 4 GiB cannot overflow.
        sum = (sum & 0xffff) + (sum >> 16) + u16::from_be_bytes([bytes[i], low]) as u32;
        i += 2;
    }
    sum
}

/// The partial sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, the
/// upper-layer packet length as 32 bits, three zero bytes and the next header (the upper
/// layer's, after any extension header). Add the upper layer's own words and [`fold`].
#[inline(always)]
pub const fn pseudo_header_sum(src: &[u8; 16], dst: &[u8; 16], upper_len: u32, next_header: u8) -> u32 {
    let len = upper_len.to_be_bytes();
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < 16 {
        sum += u16::from_be_bytes([src[i], src[i + 1]]) as u32;
        sum += u16::from_be_bytes([dst[i], dst[i + 1]]) as u32;
        i += 2;
    }
    sum += u16::from_be_bytes([len[0], len[1]]) as u32;
    sum += u16::from_be_bytes([len[2], len[3]]) as u32;
    sum + next_header as u32
}

/// The checksum of an upper-layer message (`upper`, its checksum field zero) carried from `src`
/// to `dst` under `next_header`: ICMPv6 (RFC 4443 §2.3), UDP and TCP over IPv6 alike.
pub const fn upper_layer_checksum(src: &[u8; 16], dst: &[u8; 16], next_header: u8, upper: &[u8]) -> u16 {
    let sum = pseudo_header_sum(src, dst, upper.len() as u32, next_header);
    fold((sum & 0xffff) + (sum >> 16) + sum_words(upper))
}

/// The UDP checksum field for a computed checksum: UDP over IPv6 may not send 0 (RFC 8200
/// §8.1, it would mean "none", which IPv6 forbids), so a computed 0 is sent as 0xffff.
pub const fn udp_checksum_field(checksum: u16) -> u16 {
    if checksum == 0 {
        0xffff
    } else {
        checksum
    }
}

/// ICMPv6 "packet too big" (RFC 4443 §3.2).
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
/// What a "packet too big" from the programs quotes of the packet it answers: its fixed header
/// and the 8 bytes after it, all a sender needs to find the socket (RFC 4443 asks for as much as
/// fits in 1280 bytes; Linux's `icmpv6_notify` reads these).
pub const TOO_BIG_QUOTE_LEN: usize = HEADER_LEN + 8;
/// The ICMPv6 message of such a reply: type, code, checksum, MTU, the quote.
pub const TOO_BIG_MESSAGE_LEN: usize = 8 + TOO_BIG_QUOTE_LEN;

/// Bytes of an arriving "packet too big" the path-MTU check reads: the ICMPv6 header, the quoted
/// IPv6 fixed header and the 8 bytes after it (the UDP header of an IPv6 VXLAN packet).
pub const ARRIVING_TOO_BIG_LEN: usize = 8 + HEADER_LEN + 8;

/// What an ICMPv6 message arriving at this node says about the path toward another node, as the
/// kernel's own IPv6 VXLAN reads it (`vxlan_err_lookup`, then `ip6_update_pmtu`): a "packet too
/// big" (type 2, code 0) quoting one of this node's IPv6 VXLAN packets — version 6, from
/// `node_ip`, UDP straight after the fixed header, to `vxlan_port` — names the node it was going
/// to and the MTU of the link that refused it. IPv4's [`crate::icmp::path_mtu_report`] for the
/// other family; like it, the checksum is the kernel's to judge (the message goes on to it).
pub const fn path_mtu_report6(
    message: &[u8; ARRIVING_TOO_BIG_LEN],
    node_ip: &[u8; 16],
    vxlan_port: u16,
) -> Option<([u8; 16], u32)> {
    if message[0] != TYPE_PACKET_TOO_BIG || message[1] != 0 {
        return None;
    }
    let quoted = 8;
    if message[quoted] >> 4 != VERSION || message[quoted + 6] != NEXT_UDP {
        return None;
    }
    let (_, addresses) = message.split_at(quoted + 8);
    let (Some(src), Some(dst)) =
        (addresses.first_chunk::<16>(), addresses.split_at(16).1.first_chunk::<16>())
    else {
        return None;
    };
    if !same_address(src, node_ip) {
        return None;
    }
    let udp = quoted + HEADER_LEN;
    if u16::from_be_bytes([message[udp + 2], message[udp + 3]]) != vxlan_port {
        return None;
    }
    Some((*dst, u32::from_be_bytes([message[4], message[5], message[6], message[7]])))
}

/// The first 8 bytes of the IPv6 header of a "packet too big" the node sends (version 6, traffic
/// class and flow label 0, the message's length, ICMPv6, the node's default hop limit 64 as
/// `icmpv6_send` gives it).
pub const fn too_big_header_start() -> [u8; 8] {
    let len = (TOO_BIG_MESSAGE_LEN as u16).to_be_bytes();
    [VERSION << 4, 0, 0, 0, len[0], len[1], NEXT_ICMPV6, DEFAULT_HOP_LIMIT]
}

/// The ICMPv6 header of a "packet too big" carrying `mtu`, its checksum still 0.
pub const fn too_big_message_header(mtu: u32) -> [u8; 8] {
    let m = mtu.to_be_bytes();
    [TYPE_PACKET_TOO_BIG, 0, 0, 0, m[0], m[1], m[2], m[3]]
}

/// An upper layer's checksum field given `summed`, the one's-complement sum of the big-endian
/// words of the addresses and the message (checksum 0), adding the rest of the pseudo-header.
pub const fn checksum_with_pseudo_rest(summed: u32, upper_len: u32, next_header: u8) -> u16 {
    let summed = (summed & 0xffff) + (summed >> 16);
    fold(summed + (upper_len >> 16) + (upper_len & 0xffff) + next_header as u32)
}

/// The link-local address the kernel gives an interface with MAC `mac` (modified EUI-64,
/// RFC 4291 appendix A: the universal/local bit flipped, `ff:fe` in the middle; the kernel's
/// `addrconf_ifid_eui48`). For Calico's `ee:ee:ee:ee:ee:ee` that is
/// `fe80::ecee:eeff:feee:eeee`, the pods' IPv6 gateway.
pub const fn link_local_of(mac: [u8; 6]) -> [u8; 16] {
    [0xfe, 0x80, 0, 0, 0, 0, 0, 0, mac[0] ^ 0x02, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]]
}

/// The pods' IPv6 gateway: the link-local address of the host end of every pod veth.
pub const GATEWAY_LINK_LOCAL: [u8; 16] = link_local_of(crate::GATEWAY_MAC);

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's Neighbour Advertisement for the gateway, as tcpdump -xx printed it on the
    /// host end of a pod veth (see `ndp.rs` for how it was made): Ethernet header, then the IPv6
    /// header and the ICMPv6 message with checksum 0xff49 (tcpdump: "icmp6 sum ok").
    const NA_FRAME: [u8; 86] = [
        0x0a, 0x58, 0x0a, 0xf4, 0x28, 0x24, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0x86, 0xdd, 0x60, 0x00, 0x00,
        0x00, 0x00, 0x20, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xec, 0xee, 0xee, 0xff,
        0xfe, 0xee, 0xee, 0xee, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x58, 0x0a, 0xff, 0xfe,
        0xf4, 0x28, 0x24, 0x88, 0x00, 0xff, 0x49, 0xe0, 0x00, 0x00, 0x00, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0xec, 0xee, 0xee, 0xff, 0xfe, 0xee, 0xee, 0xee, 0x02, 0x01, 0xee, 0xee, 0xee, 0xee, 0xee,
        0xee,
    ];

    /// A UDP datagram over IPv6, fd5f:a1b2:c3d4::af4:2824 port 40000 → fd5f:a1b2:c3d4::af4:a696
    /// port 4789, payload "fastpath", checksum 0xe7c7. Written by hand, then checked by an
    /// independent implementation: saved as a pcap file and read with `tcpdump -vv -r`, which
    /// printed "[udp sum ok]".
    const UDP_PACKET: [u8; 56] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x40, 0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x0a, 0xf4, 0x28, 0x24, 0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x0a, 0xf4, 0xa6, 0x96, 0x9c, 0x40, 0x12, 0xb5, 0x00, 0x10, 0xe7, 0xc7, b'f', b'a', b's',
        b't', b'p', b'a', b't', b'h',
    ];

    fn header_of(packet: &[u8]) -> Ipv6Fields {
        Ipv6Fields::parse(packet[..HEADER_LEN].try_into().unwrap())
    }

    #[test]
    fn parse_reads_every_field_and_header_writes_them_back() {
        let ip = header_of(&NA_FRAME[14..]);
        assert_eq!(ip.version, 6);
        assert_eq!(ip.traffic_class, 0);
        assert_eq!(ip.flow_label, 0);
        assert_eq!(ip.payload_len, 32);
        assert_eq!(ip.next_header, NEXT_ICMPV6);
        assert_eq!(ip.hop_limit, 255);
        assert_eq!(ip.src, GATEWAY_LINK_LOCAL);
        assert_eq!(&ip.header()[..], &NA_FRAME[14..54]);

        let odd = [
            0x6a, 0xbc, 0xde, 0xf1, 0x12, 0x34, 6, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
            17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
        ];
        let ip = Ipv6Fields::parse(&odd);
        assert_eq!((ip.version, ip.traffic_class, ip.flow_label), (6, 0xab, 0xcdef1));
        assert_eq!((ip.payload_len, ip.next_header, ip.hop_limit), (0x1234, 6, 7));
        assert_eq!(ip.src[0], 1);
        assert_eq!(ip.dst[15], 32);
        assert_eq!(ip.header(), odd);
    }

    #[test]
    fn forwardable_rules() {
        let ok = header_of(&UDP_PACKET);
        let len = UDP_PACKET.len() as u32;
        assert_eq!(check_forwardable(&ok, len), Ok(()));
        assert_eq!(check_forwardable(&ok, len + 100), Ok(()), "Ethernet padding after the packet");
        for next_header in [NEXT_TCP, NEXT_ICMPV6, NEXT_SCTP, NEXT_UDPLITE, NEXT_DCCP] {
            assert_eq!(check_forwardable(&Ipv6Fields { next_header, ..ok }, len), Ok(()));
        }
        assert_eq!(check_forwardable(&Ipv6Fields { hop_limit: 1, ..ok }, len), Err(Reason::PassTtlExceeded));
        assert_eq!(check_forwardable(&Ipv6Fields { hop_limit: 0, ..ok }, len), Err(Reason::PassTtlExceeded));
        assert_eq!(check_forwardable(&Ipv6Fields { hop_limit: 2, ..ok }, len), Ok(()));
        assert_eq!(
            check_forwardable(&Ipv6Fields { next_header: NEXT_FRAGMENT, ..ok }, len),
            Err(Reason::PassFragment)
        );
        for next_header in [0, 43, 50, 51, 60, 135, 139, 140, 253, 254] {
            assert_eq!(
                check_forwardable(&Ipv6Fields { next_header, ..ok }, len),
                Err(Reason::PassIpv6ExtensionHeader),
                "next header {next_header}"
            );
        }
        for next_header in [NEXT_NONE, 4, 41, 47, 1, 2] {
            assert_eq!(
                check_forwardable(&Ipv6Fields { next_header, ..ok }, len),
                Err(Reason::PassIpv6OtherNextHeader),
                "next header {next_header}"
            );
        }
        assert_eq!(check_forwardable(&Ipv6Fields { version: 4, ..ok }, len), Err(Reason::PassIpv6Malformed));
        assert_eq!(
            check_forwardable(&ok, len - 1),
            Err(Reason::PassIpv6Malformed),
            "payload beyond the packet"
        );
        let mut multicast_source = ok;
        multicast_source.src[0] = 0xff;
        assert_eq!(check_forwardable(&multicast_source, len), Err(Reason::PassIpv6Malformed));
        assert_eq!(
            check_forwardable(&Ipv6Fields { hop_limit: 1, version: 5, ..ok }, len),
            Err(Reason::PassIpv6Malformed),
            "malformed is judged first"
        );
    }

    #[test]
    fn special_destinations() {
        let node = [0xfd, 0, 0x01, 0x01, 0, 0x14, 0, 0, 0, 0, 0, 0, 0x0a, 0x65, 0x0e, 0x32];
        let special: [[u8; 16]; 9] = [
            node,
            UNSPECIFIED,
            LOOPBACK,
            GATEWAY_LINK_LOCAL,
            [0xfe, 0xbf, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xee, 0xee, 0xee],
            [0xff, 0x0e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 244, 40, 36],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0],
        ];
        for dst in special {
            assert!(is_special_destination(dst, node), "{dst:x?}");
        }
        let ordinary: [[u8; 16]; 4] = [
            header_of(&UDP_PACKET).dst,
            [0xfe, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], // site-local, not fe80::/10
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        ];
        for dst in ordinary {
            assert!(!is_special_destination(dst, node), "{dst:x?}");
        }
    }

    #[test]
    fn icmpv6_checksum_of_the_kernels_neighbour_advertisement() {
        let ip = header_of(&NA_FRAME[14..]);
        let mut icmp = NA_FRAME[54..].to_vec();
        assert_eq!(icmp.len(), ip.payload_len as usize);
        // A message carrying its checksum verifies: the folded sum is zero.
        assert_eq!(upper_layer_checksum(&ip.src, &ip.dst, NEXT_ICMPV6, &icmp), 0);
        icmp[2] = 0;
        icmp[3] = 0;
        assert_eq!(upper_layer_checksum(&ip.src, &ip.dst, NEXT_ICMPV6, &icmp), 0xff49);
    }

    #[test]
    fn udp_checksum_checked_by_tcpdump() {
        let ip = header_of(&UDP_PACKET);
        let mut udp = UDP_PACKET[HEADER_LEN..].to_vec();
        assert_eq!(upper_layer_checksum(&ip.src, &ip.dst, NEXT_UDP, &udp), 0);
        udp[6] = 0;
        udp[7] = 0;
        assert_eq!(udp_checksum_field(upper_layer_checksum(&ip.src, &ip.dst, NEXT_UDP, &udp)), 0xe7c7);
    }

    #[test]
    fn pseudo_header_sum_is_the_sum_of_its_bytes() {
        let ip = header_of(&UDP_PACKET);
        let mut bytes = [0u8; 40];
        bytes[..16].copy_from_slice(&ip.src);
        bytes[16..32].copy_from_slice(&ip.dst);
        bytes[32..36].copy_from_slice(&70000u32.to_be_bytes());
        bytes[39] = NEXT_UDP;
        assert_eq!(fold(pseudo_header_sum(&ip.src, &ip.dst, 70000, NEXT_UDP)), fold(sum_words(&bytes)));
        // All ones everywhere: the largest sum cannot overflow.
        let ones = [0xff; 16];
        let mut all_ones = [0xff; 40];
        all_ones[36..39].fill(0);
        assert_eq!(fold(pseudo_header_sum(&ones, &ones, u32::MAX, 0xff)), fold(sum_words(&all_ones)));
    }

    #[test]
    fn fold_matches_rfc1071() {
        // RFC 1071 §3's example words sum to 0xddf2.
        assert_eq!(fold(sum_words(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])), !0xddf2);
        assert_eq!(fold(sum_words(&[0x00, 0x01, 0xf2])), !0xf201, "an odd byte is padded with zero");
        assert_eq!(udp_checksum_field(0), 0xffff);
        assert_eq!(udp_checksum_field(0x1234), 0x1234);
    }

    #[test]
    fn a_packet_too_big_checksums_as_any_icmpv6_message() {
        let node = [0xfd, 0, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x65, 0x0e, 0x32];
        let pod = header_of(&UDP_PACKET).src;
        let mut message = too_big_message_header(1430).to_vec();
        message.extend_from_slice(&UDP_PACKET[..TOO_BIG_QUOTE_LEN]);
        assert_eq!(&message[..8], &[2, 0, 0, 0, 0, 0, 0x05, 0x96]);
        let mut words = node.to_vec();
        words.extend_from_slice(&pod);
        words.extend_from_slice(&message);
        let check = checksum_with_pseudo_rest(sum_words(&words), TOO_BIG_MESSAGE_LEN as u32, NEXT_ICMPV6);
        assert_eq!(check, upper_layer_checksum(&node, &pod, NEXT_ICMPV6, &message));
        let start = too_big_header_start();
        assert_eq!(start, [0x60, 0, 0, 0, 0, 56, 58, 64]);
    }

    #[test]
    fn an_ipv4_address_maps_as_the_standard_library_maps_it() {
        let mapped = v4_mapped([10, 244, 40, 36]);
        assert!(is_v4_mapped(&mapped));
        let std_mapped = core::net::Ipv4Addr::new(10, 244, 40, 36).to_ipv6_mapped().octets();
        assert_eq!(mapped, std_mapped);
    }

    #[test]
    fn link_local_of_a_mac_is_modified_eui64() {
        // fe80::ecee:eeff:feee:eeee, Calico's gateway.
        assert_eq!(
            GATEWAY_LINK_LOCAL,
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0xec, 0xee, 0xee, 0xff, 0xfe, 0xee, 0xee, 0xee]
        );
        // The kernel gave a veth with MAC 0a:58:0a:f4:28:24 fe80::858:aff:fef4:2824.
        assert_eq!(
            link_local_of([0x0a, 0x58, 0x0a, 0xf4, 0x28, 0x24]),
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x08, 0x58, 0x0a, 0xff, 0xfe, 0xf4, 0x28, 0x24]
        );
        assert!(is_link_local(&GATEWAY_LINK_LOCAL));
    }

    /// A router's "packet too big, mtu 1400" about node fd00:101::50's IPv6 VXLAN packet to
    /// fd00:101::51.
    fn too_big_report(next_header: u8, dport: u16) -> [u8; ARRIVING_TOO_BIG_LEN] {
        let mut m = [0u8; ARRIVING_TOO_BIG_LEN];
        m[0] = TYPE_PACKET_TOO_BIG;
        m[4..8].copy_from_slice(&1400u32.to_be_bytes());
        m[8] = 0x60;
        m[8 + 6] = next_header;
        m[8 + 7] = 64;
        m[8 + 8..8 + 24].copy_from_slice(&REPORT_NODE);
        m[8 + 24..8 + 40].copy_from_slice(&REPORT_PEER);
        m[48 + 2..48 + 4].copy_from_slice(&dport.to_be_bytes());
        m
    }

    const REPORT_NODE: [u8; 16] = [0xfd, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50];
    const REPORT_PEER: [u8; 16] = [0xfd, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x51];

    #[test]
    fn a_router_names_the_path_mtu_of_our_ipv6_vxlan() {
        let node = &REPORT_NODE;
        assert_eq!(path_mtu_report6(&too_big_report(NEXT_UDP, 4789), node, 4789), Some((REPORT_PEER, 1400)));
        assert_eq!(path_mtu_report6(&too_big_report(NEXT_UDP, 53), node, 4789), None, "another UDP packet");
        assert_eq!(
            path_mtu_report6(&too_big_report(NEXT_TCP, 4789), node, 4789),
            None,
            "TCP: the kernel's own"
        );
        assert_eq!(
            path_mtu_report6(&too_big_report(NEXT_FRAGMENT, 4789), node, 4789),
            None,
            "an extension header: the ports are not where we read them"
        );
        assert_eq!(
            path_mtu_report6(&too_big_report(NEXT_UDP, 4789), &REPORT_PEER, 4789),
            None,
            "not from us"
        );
        let mut code = too_big_report(NEXT_UDP, 4789);
        code[1] = 1;
        assert_eq!(path_mtu_report6(&code, node, 4789), None, "code 0 only");
        let mut unreachable = too_big_report(NEXT_UDP, 4789);
        unreachable[0] = 1;
        assert_eq!(path_mtu_report6(&unreachable, node, 4789), None, "destination unreachable");
        let mut v4 = too_big_report(NEXT_UDP, 4789);
        v4[8] = 0x45;
        assert_eq!(path_mtu_report6(&v4, node, 4789), None, "quotes no IPv6 header");
        let mut big = too_big_report(NEXT_UDP, 4789);
        big[4..8].copy_from_slice(&70_000u32.to_be_bytes());
        assert_eq!(path_mtu_report6(&big, node, 4789), Some((REPORT_PEER, 70_000)), "all 32 bits of the MTU");
        let mut small = too_big_report(NEXT_UDP, 4789);
        small[4..8].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(
            path_mtu_report6(&small, node, 4789),
            Some((REPORT_PEER, 1000)),
            "PathMtu::learned6 judges it"
        );
    }
}
