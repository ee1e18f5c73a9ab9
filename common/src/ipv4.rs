//! IPv4 header rules and builders shared by the programs and the host: which packets the fast
//! path may carry, the header checksum, the TTL decrement, and the headers we write.

use crate::Reason;

pub const HEADER_LEN: usize = 20;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
/// "Don't fragment" in the flags/fragment-offset field (host order).
pub const FLAG_DF: u16 = 0x4000;
/// "More fragments" and the fragment offset: any of these bits set makes a fragment.
pub const FRAGMENT_MASK: u16 = 0x3fff;
/// TTL of the outer header we push, as the kernel's ipip tunnel does by default.
pub const OUTER_TTL: u8 = 64;

/// The fields of an IPv4 header the fast path decides on, in host order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Fields {
    pub version_ihl: u8,
    pub total_len: u16,
    pub frag: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

impl Ipv4Fields {
    /// Read the fields from the first 20 bytes of an IPv4 header.
    pub const fn parse(h: &[u8; HEADER_LEN]) -> Self {
        Self {
            version_ihl: h[0],
            total_len: u16::from_be_bytes([h[2], h[3]]),
            frag: u16::from_be_bytes([h[6], h[7]]),
            ttl: h[8],
            protocol: h[9],
            src: [h[12], h[13], h[14], h[15]],
            dst: [h[16], h[17], h[18], h[19]],
        }
    }

    pub const fn dont_fragment(&self) -> bool {
        self.frag & FLAG_DF != 0
    }
}

/// Whether a router may forward this header without the kernel's help. The kernel keeps what
/// needs a router's judgement: TTL expiry (it sends ICMP time exceeded), IP options (it may
/// have to act on them) and fragments (reassembly or per-fragment rules).
pub const fn check_forwardable(ip: &Ipv4Fields, packet_len_after_l2: u32) -> Result<(), Reason> {
    if !is_well_formed(ip, packet_len_after_l2) {
        return Err(Reason::PassIpv4Malformed);
    }
    if ip.version_ihl & 0x0f != 5 {
        return Err(Reason::PassIpOptions);
    }
    if ip.frag & FRAGMENT_MASK != 0 {
        return Err(Reason::PassFragment);
    }
    if ip.ttl <= 1 {
        return Err(Reason::PassTtlExceeded);
    }
    Ok(())
}

/// Whether the header is one the kernel's `ip_rcv` would accept (checksum aside): version 4, a
/// header length of at least 20 bytes, a total length that covers the header and fits the
/// packet.
pub const fn is_well_formed(ip: &Ipv4Fields, packet_len_after_l2: u32) -> bool {
    let ihl_bytes = (ip.version_ihl & 0x0f) as u32 * 4;
    ip.version_ihl >> 4 == 4
        && ihl_bytes >= HEADER_LEN as u32
        && ip.total_len as u32 >= ihl_bytes
        && ip.total_len as u32 <= packet_len_after_l2
}

/// Destinations a fast path must never carry, whatever the routes say: loopback, "this network",
/// multicast and broadcast, link-local (169.254.1.1 is the pods' fake gateway), and the node.
pub const fn is_special_destination(dst: [u8; 4], node_ip: [u8; 4]) -> bool {
    let a = u32::from_be_bytes(dst);
    a == u32::from_be_bytes(node_ip)
        || dst[0] == 0
        || dst[0] == 127
        || dst[0] >= 224
        || (dst[0] == 169 && dst[1] == 254)
}

/// The Internet checksum (RFC 1071) of `bytes`: zero when a packet carrying its checksum verifies.
pub const fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let low = if i + 1 < bytes.len() { bytes[i + 1] } else { 0 };
        sum += u16::from_be_bytes([bytes[i], low]) as u32;
        i += 2;
    }
    fold_complement(sum)
}

/// The header checksum (RFC 791) of a 20-byte header whose checksum field is zero.
pub const fn header_checksum(h: &[u8; HEADER_LEN]) -> u16 {
    internet_checksum(h)
}

/// Fold a 32-bit one's-complement sum into 16 bits and complement it.
const fn fold_complement(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The checksum field after decrementing TTL by one, as the kernel's `ip_decrease_ttl` computes
/// it: add 0x0100 (the TTL is the high byte of its 16-bit word) with end-around carry.
/// `check` is the field as stored (network order bytes).
pub const fn checksum_after_ttl_decrement(check: [u8; 2]) -> [u8; 2] {
    let sum = u16::from_be_bytes(check) as u32 + 0x0100;
    let folded = (sum & 0xffff) + (sum >> 16);
    (folded as u16).to_be_bytes()
}

/// An outer IPv4 header a tunnel pushes in front of an inner packet (IPIP's or VXLAN's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterIpv4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub protocol: u8,
    pub tos: u8,
    pub ttl: u8,
    pub df: bool,
    /// The identification field (only matters when DF is clear).
    pub id: u16,
}

impl OuterIpv4 {
    /// The header, checksum included, for a packet of `total_len` bytes (header included).
    pub const fn header(&self, total_len: u16) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        self.write(&mut h, total_len);
        h
    }

    /// Write the header into `h` (the packet's own bytes, in a program: no copy of it on the
    /// stack), checksum included.
    pub const fn write(&self, h: &mut [u8; HEADER_LEN], total_len: u16) {
        let total = total_len.to_be_bytes();
        let id = self.id.to_be_bytes();
        let frag = if self.df { FLAG_DF.to_be_bytes() } else { [0, 0] };
        h[0] = 0x45;
        h[1] = self.tos;
        h[2] = total[0];
        h[3] = total[1];
        h[4] = id[0];
        h[5] = id[1];
        h[6] = frag[0];
        h[7] = frag[1];
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[10] = 0;
        h[11] = 0;
        let mut i = 0;
        while i < 4 {
            h[12 + i] = self.src[i];
            h[16 + i] = self.dst[i];
            i += 1;
        }
        let check = header_checksum(h).to_be_bytes();
        h[10] = check[0];
        h[11] = check[1];
    }
}

/// The outer header of an IPIP packet from `src` to `dst` around an inner packet of
/// `inner_len` bytes: TOS and DF copied from the inner header, TTL 64, protocol 4.
pub const fn outer_header(src: [u8; 4], dst: [u8; 4], inner_len: u16, tos: u8, df: bool) -> [u8; HEADER_LEN] {
    let outer = OuterIpv4 { src, dst, protocol: PROTO_IPIP, tos, ttl: OUTER_TTL, df, id: 0 };
    outer.header(inner_len.wrapping_add(HEADER_LEN as u16))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real header: 10.244.40.36 → 10.244.166.150, ICMP, TTL 64, DF, 84 bytes.
    const PING: [u8; 20] = [
        0x45, 0x00, 0x00, 0x54, 0x5c, 0x1b, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 10, 244, 40, 36, 10, 244,
        166, 150,
    ];

    fn with_checksum(mut h: [u8; 20]) -> [u8; 20] {
        let c = header_checksum(&h).to_be_bytes();
        h[10] = c[0];
        h[11] = c[1];
        h
    }

    fn verifies(h: &[u8; 20]) -> bool {
        internet_checksum(h) == 0
    }

    #[test]
    fn checksum_of_the_rfc1071_example() {
        // RFC 1071 section 3's example words sum to 0xddf2; the checksum is its complement.
        assert_eq!(internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
        assert_eq!(internet_checksum(&[0x00, 0x01, 0xf2]), !0xf201, "an odd byte is padded with zero");
    }

    #[test]
    fn checksum_verifies() {
        assert!(verifies(&with_checksum(PING)));
    }

    #[test]
    fn ttl_decrement_keeps_the_checksum_valid_for_every_ttl_and_checksum() {
        for ttl in 2..=255u8 {
            for id in [0u16, 1, 0x5c1b, 0xfeff, 0xffff] {
                let mut h = PING;
                h[8] = ttl;
                h[4..6].copy_from_slice(&id.to_be_bytes());
                let mut h = with_checksum(h);
                let check = checksum_after_ttl_decrement([h[10], h[11]]);
                h[8] -= 1;
                h[10] = check[0];
                h[11] = check[1];
                assert!(verifies(&h), "ttl {ttl} id {id:#x}");
            }
        }
    }

    #[test]
    fn outer_header_is_what_the_kernel_ipip_tunnel_would_send() {
        let h = outer_header([10, 101, 14, 50], [10, 101, 14, 51], 84, 0x10, true);
        assert_eq!(&h[..10], &[0x45, 0x10, 0, 104, 0, 0, 0x40, 0, 64, 4]);
        assert_eq!(&h[12..], &[10, 101, 14, 50, 10, 101, 14, 51]);
        assert!(verifies(&h));
        let no_df = outer_header([10, 101, 14, 50], [10, 101, 14, 51], 84, 0, false);
        assert_eq!(&no_df[6..8], &[0, 0]);
        assert!(verifies(&no_df));
    }

    #[test]
    fn forwardable_rules() {
        let ok = Ipv4Fields::parse(&with_checksum(PING));
        assert_eq!(check_forwardable(&ok, 84), Ok(()));
        assert_eq!(check_forwardable(&Ipv4Fields { ttl: 1, ..ok }, 84), Err(Reason::PassTtlExceeded));
        assert_eq!(check_forwardable(&Ipv4Fields { ttl: 0, ..ok }, 84), Err(Reason::PassTtlExceeded));
        assert_eq!(
            check_forwardable(&Ipv4Fields { version_ihl: 0x46, ..ok }, 84),
            Err(Reason::PassIpOptions)
        );
        assert_eq!(check_forwardable(&Ipv4Fields { frag: 0x2000, ..ok }, 84), Err(Reason::PassFragment));
        assert_eq!(check_forwardable(&Ipv4Fields { frag: 0x0001, ..ok }, 84), Err(Reason::PassFragment));
        assert_eq!(
            check_forwardable(&Ipv4Fields { version_ihl: 0x44, ..ok }, 84),
            Err(Reason::PassIpv4Malformed)
        );
        assert_eq!(
            check_forwardable(&Ipv4Fields { version_ihl: 0x65, ..ok }, 84),
            Err(Reason::PassIpv4Malformed)
        );
        assert_eq!(
            check_forwardable(&ok, 60),
            Err(Reason::PassIpv4Malformed),
            "total length beyond the packet"
        );
        assert_eq!(
            check_forwardable(&Ipv4Fields { total_len: 10, ..ok }, 84),
            Err(Reason::PassIpv4Malformed)
        );
        assert!(ok.dont_fragment());
    }

    #[test]
    fn special_destinations() {
        let node = [10, 101, 14, 50];
        for dst in [
            [10, 101, 14, 50],
            [127, 0, 0, 1],
            [0, 0, 0, 0],
            [224, 0, 0, 1],
            [255, 255, 255, 255],
            [169, 254, 1, 1],
        ] {
            assert!(is_special_destination(dst, node), "{dst:?}");
        }
        assert!(!is_special_destination([10, 244, 166, 150], node));
    }
}
