//! The ICMP "fragmentation needed" a router sends when a DF packet does not fit the next hop.

use crate::ipv4::{header_checksum, internet_checksum, HEADER_LEN, PROTO_ICMP, PROTO_IPIP, PROTO_UDP};

pub const TYPE_DEST_UNREACHABLE: u8 = 3;
pub const CODE_FRAG_NEEDED: u8 = 4;
/// The ICMP header (8) plus what it quotes: the offending IP header (20) and 8 bytes after it.
pub const QUOTE_LEN: usize = HEADER_LEN + 8;
pub const MESSAGE_LEN: usize = 8 + QUOTE_LEN;
/// The whole reply after the Ethernet header: IP header and ICMP message.
pub const REPLY_LEN: usize = HEADER_LEN + MESSAGE_LEN;
/// TTL of the ICMP we send (the kernel's default, net.ipv4.ip_default_ttl).
pub const REPLY_TTL: u8 = 64;

/// The ICMP header of a "fragmentation needed" advertising `mtu` (RFC 1191), its checksum 0
/// until summed over the message.
pub const fn frag_needed_header(mtu: u16) -> [u8; 8] {
    let mtu = mtu.to_be_bytes();
    [TYPE_DEST_UNREACHABLE, CODE_FRAG_NEEDED, 0, 0, 0, 0, mtu[0], mtu[1]]
}

/// The ICMP message quoting `quote` (the start of the packet that did not fit), advertising
/// `mtu`, checksum included.
pub const fn frag_needed_message(quote: &[u8; QUOTE_LEN], mtu: u16) -> [u8; MESSAGE_LEN] {
    let header = frag_needed_header(mtu);
    let mut m = [0u8; MESSAGE_LEN];
    let mut i = 0;
    while i < 8 {
        m[i] = header[i];
        i += 1;
    }
    while i < MESSAGE_LEN {
        m[i] = quote[i - 8];
        i += 1;
    }
    let check = internet_checksum(&m).to_be_bytes();
    m[2] = check[0];
    m[3] = check[1];
    m
}

/// The IP header carrying the ICMP message from `src` (this node) to `dst` (the sender), its
/// checksum 0 until summed.
pub const fn reply_header_unsummed(src: [u8; 4], dst: [u8; 4]) -> [u8; HEADER_LEN] {
    let total = (REPLY_LEN as u16).to_be_bytes();
    [
        0x45, 0xc0, total[0], total[1], 0, 0, 0, 0, REPLY_TTL, PROTO_ICMP, 0, 0, src[0], src[1], src[2],
        src[3], dst[0], dst[1], dst[2], dst[3],
    ]
}

/// The same, checksum included.
pub const fn reply_header(src: [u8; 4], dst: [u8; 4]) -> [u8; HEADER_LEN] {
    let mut h = reply_header_unsummed(src, dst);
    let check = header_checksum(&h).to_be_bytes();
    h[10] = check[0];
    h[11] = check[1];
    h
}

/// The checksum field for a one's-complement sum of a packet's 16-bit words as the machine read
/// them (what `bpf_csum_diff` returns): folded to 16 bits and complemented, to be stored in the
/// machine's own byte order (the sum was taken in it).
pub const fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Bytes of an arriving ICMP error the path-MTU check reads: the ICMP header, the quoted IPv4
/// header and the 8 bytes after it (the UDP ports of a VXLAN packet).
pub const ARRIVING_LEN: usize = 8 + HEADER_LEN + 8;

/// What an ICMP message arriving at this node says about the path toward another node, as the
/// kernel's own tunnels read it (`ipip_err`, `vxlan_err_lookup`): a "fragmentation needed" that
/// quotes one of this node's tunnel packets — from `node_ip`, IPIP, or UDP to `vxlan_port` —
/// names the node it was going to and the next-hop MTU of the link that refused it.
pub const fn path_mtu_report(
    message: &[u8; ARRIVING_LEN],
    node_ip: [u8; 4],
    vxlan_port: Option<u16>,
) -> Option<([u8; 4], u16)> {
    if message[0] != TYPE_DEST_UNREACHABLE || message[1] != CODE_FRAG_NEEDED {
        return None;
    }
    let quoted = 8;
    // Only a header without options puts the ports where we read them.
    if message[quoted] != 0x45 {
        return None;
    }
    let src = [message[quoted + 12], message[quoted + 13], message[quoted + 14], message[quoted + 15]];
    if src[0] != node_ip[0] || src[1] != node_ip[1] || src[2] != node_ip[2] || src[3] != node_ip[3] {
        return None;
    }
    let ours = match message[quoted + 9] {
        PROTO_IPIP => true,
        PROTO_UDP => match vxlan_port {
            Some(port) => {
                let l4 = quoted + HEADER_LEN;
                u16::from_be_bytes([message[l4 + 2], message[l4 + 3]]) == port
            }
            None => false,
        },
        _ => false,
    };
    if !ours {
        return None;
    }
    let dst = [message[quoted + 16], message[quoted + 17], message[quoted + 18], message[quoted + 19]];
    Some((dst, u16::from_be_bytes([message[6], message[7]])))
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

    /// A router's "fragmentation needed, mtu 1400" about node 10.101.14.50's packet to .51.
    fn report(protocol: u8, dport: u16) -> [u8; ARRIVING_LEN] {
        let mut m = [0u8; ARRIVING_LEN];
        m[0] = 3;
        m[1] = 4;
        m[6..8].copy_from_slice(&1400u16.to_be_bytes());
        m[8] = 0x45;
        m[8 + 9] = protocol;
        m[8 + 12..8 + 16].copy_from_slice(&[10, 101, 14, 50]);
        m[8 + 16..8 + 20].copy_from_slice(&[10, 101, 14, 51]);
        m[28 + 2..28 + 4].copy_from_slice(&dport.to_be_bytes());
        m
    }

    #[test]
    fn a_router_names_the_path_mtu_of_our_tunnels() {
        let node = [10, 101, 14, 50];
        assert_eq!(path_mtu_report(&report(4, 0), node, None), Some(([10, 101, 14, 51], 1400)));
        assert_eq!(path_mtu_report(&report(17, 4789), node, Some(4789)), Some(([10, 101, 14, 51], 1400)));
        assert_eq!(path_mtu_report(&report(17, 4789), node, None), None, "no VXLAN device of ours");
        assert_eq!(path_mtu_report(&report(17, 53), node, Some(4789)), None, "another UDP packet");
        assert_eq!(path_mtu_report(&report(6, 0), node, Some(4789)), None, "TCP: the kernel's own");
        assert_eq!(path_mtu_report(&report(4, 0), [10, 101, 14, 52], None), None, "not from us");
        let mut unreachable = report(4, 0);
        unreachable[1] = 1;
        assert_eq!(path_mtu_report(&unreachable, node, None), None, "host unreachable");
        let mut options = report(4, 0);
        options[8] = 0x46;
        assert_eq!(path_mtu_report(&options, node, None), None);
    }

    #[test]
    fn a_machine_order_sum_folds_to_the_checksum_stored_in_that_order() {
        let h = reply_header_unsummed([10, 101, 14, 50], [10, 244, 40, 36]);
        // Summed as a little-endian machine reads the words, as bpf_csum_diff does on x86 and bpfel.
        let sum: u32 = h.chunks(2).map(|w| u32::from(u16::from_le_bytes([w[0], w[1]]))).sum();
        let stored = fold(sum).to_le_bytes();
        assert_eq!(u16::from_be_bytes(stored), header_checksum(&h));
    }

    #[test]
    fn reply_header_is_valid() {
        let h = reply_header([10, 101, 14, 50], [10, 244, 40, 36]);
        assert_eq!(u16::from_be_bytes([h[2], h[3]]) as usize, REPLY_LEN);
        assert_eq!(h[9], 1);
        assert!(sum_is_zero(&h));
    }
}
