//! The ICMP "fragmentation needed" a router sends when a DF packet does not fit the next hop.

use crate::ipv4::{header_checksum, internet_checksum, HEADER_LEN, PROTO_ICMP};

pub const TYPE_DEST_UNREACHABLE: u8 = 3;
pub const CODE_FRAG_NEEDED: u8 = 4;
/// The ICMP header (8) plus what it quotes: the offending IP header (20) and 8 bytes after it.
pub const QUOTE_LEN: usize = HEADER_LEN + 8;
pub const MESSAGE_LEN: usize = 8 + QUOTE_LEN;
/// The whole reply after the Ethernet header: IP header and ICMP message.
pub const REPLY_LEN: usize = HEADER_LEN + MESSAGE_LEN;
/// TTL of the ICMP we send (the kernel's default, net.ipv4.ip_default_ttl).
pub const REPLY_TTL: u8 = 64;

/// The ICMP message quoting `quote` (the start of the packet that did not fit), advertising
/// `mtu` (RFC 1191).
pub const fn frag_needed_message(quote: &[u8; QUOTE_LEN], mtu: u16) -> [u8; MESSAGE_LEN] {
    let mtu = mtu.to_be_bytes();
    let mut m = [0u8; MESSAGE_LEN];
    m[0] = TYPE_DEST_UNREACHABLE;
    m[1] = CODE_FRAG_NEEDED;
    m[6] = mtu[0];
    m[7] = mtu[1];
    let mut i = 0;
    while i < QUOTE_LEN {
        m[8 + i] = quote[i];
        i += 1;
    }
    let check = internet_checksum(&m).to_be_bytes();
    m[2] = check[0];
    m[3] = check[1];
    m
}

/// The IP header carrying the ICMP message from `src` (this node) to `dst` (the sender).
pub const fn reply_header(src: [u8; 4], dst: [u8; 4]) -> [u8; HEADER_LEN] {
    let total = (REPLY_LEN as u16).to_be_bytes();
    let mut h = [
        0x45, 0xc0, total[0], total[1], 0, 0, 0, 0, REPLY_TTL, PROTO_ICMP, 0, 0, src[0], src[1], src[2],
        src[3], dst[0], dst[1], dst[2], dst[3],
    ];
    let check = header_checksum(&h).to_be_bytes();
    h[10] = check[0];
    h[11] = check[1];
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_is_zero(bytes: &[u8]) -> bool {
        internet_checksum(bytes) == 0
    }

    #[test]
    fn frag_needed_quotes_the_packet_and_names_the_mtu() {
        let mut quote = [0u8; QUOTE_LEN];
        for (i, b) in quote.iter_mut().enumerate() {
            *b = i as u8 * 7;
        }
        let m = frag_needed_message(&quote, 1480);
        assert_eq!(&m[..2], &[3, 4]);
        assert_eq!(&m[4..8], &[0, 0, 0x05, 0xc8]);
        assert_eq!(&m[8..], &quote);
        assert!(sum_is_zero(&m));
    }

    #[test]
    fn reply_header_is_valid() {
        let h = reply_header([10, 101, 14, 50], [10, 244, 40, 36]);
        assert_eq!(u16::from_be_bytes([h[2], h[3]]) as usize, REPLY_LEN);
        assert_eq!(h[9], 1);
        assert!(sum_is_zero(&h));
    }
}
