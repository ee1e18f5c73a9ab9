//! The NDP responder's decision and the bytes of its answer, as pure functions both sides share:
//! IPv6's counterpart of [`crate::arp`].
//!
//! Calico gives a pod `default via fe80::ecee:eeff:feee:eeee dev eth0`: the link-local address the
//! kernel derives from the host end's MAC `ee:ee:ee:ee:ee:ee` (its CNI plugin reads it off the
//! host veth, `cni-plugin/pkg/dataplane/linux/dataplane_linux.go`, and sets `proxy_ndp=1` there,
//! without proxy entries). So the kernel answers a pod's Neighbour Solicitation for the gateway
//! as one for its own address. The program answers it in its place (and, as a proxy would, one for
//! any other unicast target), from the frame it was given:
//!
//! 1. [`classify_solicitation`] on the IPv6 header and the fixed part of the ICMPv6 message;
//! 2. [`verifies`] on its checksum, where it lies;
//! 3. [`answer_in_place`] over the same bytes (86 bytes of frame in, 86 out when the
//!    solicitation carried its source link-layer option, as the kernel's always do; 8 bytes more
//!    otherwise), with the Ethernet header turned back to the pod;
//! 4. redirect to the interface it came in on.
//!
//! The fixtures in the tests are frames the kernel itself sent, captured with `tcpdump -xx`.
//!
//! Reasons: not a solicitation `PassNdpNotSolicitation`, invalid `PassNdpMalformed`, a duplicate
//! address detection probe `PassNdpDadProbe`, a pod asking for its own address
//! `PassNdpOwnAddress`.

use crate::{
    ipv6::{self, is_multicast, same_address, Ipv6Fields, HEADER_LEN, NEXT_ICMPV6, UNSPECIFIED},
    Reason, GATEWAY_MAC,
};

pub const TYPE_ROUTER_SOLICITATION: u8 = 133;
pub const TYPE_ROUTER_ADVERTISEMENT: u8 = 134;
pub const TYPE_NEIGHBOUR_SOLICITATION: u8 = 135;
pub const TYPE_NEIGHBOUR_ADVERTISEMENT: u8 = 136;
pub const TYPE_REDIRECT: u8 = 137;

/// The hop limit every NDP message is sent with and must arrive with (RFC 4861 §7.1): 255 proves
/// it was not forwarded by a router, so it came from the link.
pub const HOP_LIMIT: u8 = 255;

/// The fixed part of a solicitation: type, code, checksum, reserved, target (RFC 4861 §4.3).
pub const SOLICITATION_LEN: usize = 24;
/// Option types (RFC 4861 §4.6.1).
pub const OPTION_SOURCE_LINK_LAYER: u8 = 1;
pub const OPTION_TARGET_LINK_LAYER: u8 = 2;
/// The advertisement we send: its fixed part (24) and one target link-layer address option (8).
pub const ADVERTISEMENT_MESSAGE_LEN: usize = 32;
/// The advertisement after the Ethernet header: IPv6 header and ICMPv6 message.
pub const ADVERTISEMENT_LEN: usize = HEADER_LEN + ADVERTISEMENT_MESSAGE_LEN;
pub const ETHERNET_HEADER_LEN: usize = 14;

/// Flags of a Neighbour Advertisement (RFC 4861 §4.4), the first byte of the word after the
/// checksum: the sender is a router, the answer was solicited, it overrides a cached address.
pub const FLAG_ROUTER: u8 = 0x80;
pub const FLAG_SOLICITED: u8 = 0x40;
pub const FLAG_OVERRIDE: u8 = 0x20;

/// The flags the kernel answers with, which ours copy. For its own address (the gateway),
/// forwarding on: Router, Solicited, Override (`ndisc_recv_ns` → `ndisc_send_na`). Router must
/// stay set for the gateway: a pod that saw it cleared would drop it from its default router list
/// (RFC 4861 §7.2.5). For any other target it answers as a proxy: Solicited only (Override clear,
/// RFC 4861 §7.2.8, so a real owner's answer wins; Router only for proxy entries made `router`).
pub const fn advertisement_flags(target: &[u8; 16]) -> u8 {
    if same_address(target, &ipv6::GATEWAY_LINK_LOCAL) {
        FLAG_ROUTER | FLAG_SOLICITED | FLAG_OVERRIDE
    } else {
        FLAG_SOLICITED
    }
}

/// Decide whether a pod's ICMPv6 message gets our Neighbour Advertisement, and for which target.
///
/// `ip` is the packet's IPv6 header; `icmp` the first [`SOLICITATION_LEN`] bytes after it.
/// `Ok(target)` means answer; `Err(reason)` means hand it to the kernel unchanged. We answer a
/// valid solicitation (RFC 4861 §7.1.1: ICMPv6 right after the fixed header, hop limit 255, code 0,
/// long enough, a target that is not multicast) for any target but two: a duplicate address
/// detection probe (source `::`, RFC 4862 §5.4.2), which must stay unanswered or the pod would
/// think its address taken, and a pod asking for its own address. Router solicitations,
/// advertisements, redirects and everything else are the kernel's.
///
/// The ICMPv6 checksum is not checked here (it covers the whole message, options too): the caller
/// checks it ([`verifies`] on the host, `bpf_csum_diff` over the payload in a program) before
/// answering, since the kernel's `icmpv6_rcv` would drop a message whose checksum fails.
#[inline(always)]
pub const fn classify_solicitation(
    ip: &Ipv6Fields,
    icmp: &[u8; SOLICITATION_LEN],
) -> Result<[u8; 16], Reason> {
    if ip.next_header != NEXT_ICMPV6 || icmp[0] != TYPE_NEIGHBOUR_SOLICITATION {
        return Err(Reason::PassNdpNotSolicitation);
    }
    if ip.version != ipv6::VERSION
        || ip.hop_limit != HOP_LIMIT
        || icmp[1] != 0
        || (ip.payload_len as usize) < SOLICITATION_LEN
    {
        return Err(Reason::PassNdpMalformed);
    }
    let target = target_of(icmp);
    if is_multicast(&target) {
        return Err(Reason::PassNdpMalformed);
    }
    if same_address(&ip.src, &UNSPECIFIED) {
        return Err(Reason::PassNdpDadProbe);
    }
    if same_address(&ip.src, &target) {
        return Err(Reason::PassNdpOwnAddress);
    }
    Ok(target)
}

const fn target_of(icmp: &[u8; SOLICITATION_LEN]) -> [u8; 16] {
    let mut t = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = icmp[8 + i];
        i += 1;
    }
    t
}

/// Whether the ICMPv6 message after the IPv6 header in `p` (all of `p` after the header's 40
/// bytes, options included) carries a valid checksum: the pseudo-header's addresses, length and
/// next header (RFC 8200 §8.1), and the message's words, summed where they lie.
#[inline(always)]
pub fn verifies<const N: usize>(p: &[u8; N]) -> bool {
    let (header, message) = p.split_at(HEADER_LEN);
    let addresses = ipv6::sum_words(&header[8..HEADER_LEN]);
    let sum = addresses + message.len() as u32 + u32::from(NEXT_ICMPV6) + ipv6::sum_words(message);
    crate::icmp::fold(sum) == 0
}

/// Turn a solicitation [`classify_solicitation`] accepted into its answer where it lies: `p` is
/// the packet from its IPv6 header on, holding the solicitation's 64 bytes (header and message;
/// the 8 bytes after them are overwritten by the target link-layer option). The answer is
/// the kernel's, byte for byte: from the gateway's link-local address to the solicitation's
/// source, for the target it asked about, which stays where it is. Nothing but a few scalars is
/// kept aside, so a program's stack holds no copy of either message.
pub const fn answer_in_place(p: &mut [u8; ADVERTISEMENT_LEN]) {
    // The destination becomes the asker (bytes 8..24 move to 24..40), the source the gateway.
    let mut i = 0;
    while i < 16 {
        p[24 + i] = p[8 + i];
        p[8 + i] = ipv6::GATEWAY_LINK_LOCAL[i];
        i += 1;
    }
    let len = (ADVERTISEMENT_MESSAGE_LEN as u16).to_be_bytes();
    p[0] = ipv6::VERSION << 4;
    p[1] = 0;
    p[2] = 0;
    p[3] = 0;
    p[4] = len[0];
    p[5] = len[1];
    p[6] = NEXT_ICMPV6;
    p[7] = HOP_LIMIT;
    let m = HEADER_LEN;
    let mut target = [0u8; 16];
    i = 0;
    while i < 16 {
        target[i] = p[m + 8 + i];
        i += 1;
    }
    p[m] = TYPE_NEIGHBOUR_ADVERTISEMENT;
    p[m + 1] = 0;
    p[m + 2] = 0;
    p[m + 3] = 0;
    p[m + 4] = advertisement_flags(&target);
    p[m + 5] = 0;
    p[m + 6] = 0;
    p[m + 7] = 0;
    p[m + 24] = OPTION_TARGET_LINK_LAYER;
    p[m + 25] = 1;
    i = 0;
    while i < 6 {
        p[m + 26 + i] = GATEWAY_MAC[i];
        i += 1;
    }
    // The pseudo-header's addresses, length and next header, then the message, as written.
    let mut sum: u32 = ADVERTISEMENT_MESSAGE_LEN as u32 + NEXT_ICMPV6 as u32;
    i = 8;
    while i < ADVERTISEMENT_LEN {
        sum = (sum & 0xffff) + (sum >> 16) + u16::from_be_bytes([p[i], p[i + 1]]) as u32;
        i += 2;
    }
    let check = crate::icmp::fold(sum).to_be_bytes();
    p[m + 2] = check[0];
    p[m + 3] = check[1];
}

/// Frames the kernel itself sent and answered: the fixtures of the NDP tests here and of the
/// programs' (`tests/tests/ipv6_program.rs`). Captured with `tcpdump -i cali0test -xx icmp6`
/// (Linux 6.18) on the host end of a veth set up as Calico's CNI plugin sets up a pod: host end
/// MAC ee:ee:ee:ee:ee:ee, forwarding=1, accept_dad=0, proxy_ndp=1, accept_ra=0; pod end MAC
/// 0a:58:0a:f4:28:24 (link-local fe80::858:aff:fef4:2824), address fd5f:a1b2:c3d4::af4:2824/128,
/// `default via fe80::ecee:eeff:feee:eeee dev eth0`.
#[cfg(any(test, feature = "user"))]
pub mod captured {
    /// The pod's solicitation for its gateway (`ping -6 fe80::ecee:eeff:feee:eeee%eth0`), to the
    /// solicited-node group ff02::1:ffee:eeee, with its source link-layer option.
    pub const GATEWAY_NS: [u8; 86] = [
        0x33, 0x33, 0xff, 0xee, 0xee, 0xee, 0x0a, 0x58, 0x0a, 0xf4, 0x28, 0x24, 0x86, 0xdd, 0x60, 0x00, 0x00,
        0x00, 0x00, 0x20, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x58, 0x0a, 0xff,
        0xfe, 0xf4, 0x28, 0x24, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff,
        0xee, 0xee, 0xee, 0x87, 0x00, 0x4b, 0x13, 0x00, 0x00, 0x00, 0x00, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0xec, 0xee, 0xee, 0xff, 0xfe, 0xee, 0xee, 0xee, 0x01, 0x01, 0x0a, 0x58, 0x0a, 0xf4, 0x28,
        0x24,
    ];

    /// The kernel's answer for its own address: Router, Solicited, Override.
    pub const GATEWAY_NA: [u8; 86] = [
        0x0a, 0x58, 0x0a, 0xf4, 0x28, 0x24, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0x86, 0xdd, 0x60, 0x00, 0x00,
        0x00, 0x00, 0x20, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xec, 0xee, 0xee, 0xff,
        0xfe, 0xee, 0xee, 0xee, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x58, 0x0a, 0xff, 0xfe,
        0xf4, 0x28, 0x24, 0x88, 0x00, 0xff, 0x49, 0xe0, 0x00, 0x00, 0x00, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0xec, 0xee, 0xee, 0xff, 0xfe, 0xee, 0xee, 0xee, 0x02, 0x01, 0xee, 0xee, 0xee, 0xee, 0xee,
        0xee,
    ];

    /// The pod's solicitation for another pod's address it was told is on-link
    /// (`ip -6 route add fd5f:a1b2:c3d4::af4:a696 dev eth0`), from its global address.
    pub const PROXY_NS: [u8; 86] = [
        0x33, 0x33, 0xff, 0xf4, 0xa6, 0x96, 0x0a, 0x58, 0x0a, 0xf4, 0x28, 0x24, 0x86, 0xdd, 0x60, 0x00, 0x00,
        0x00, 0x00, 0x20, 0x3a, 0xff, 0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x0a, 0xf4, 0x28, 0x24, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff,
        0xf4, 0xa6, 0x96, 0x87, 0x00, 0xea, 0x32, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xf4, 0xa6, 0x96, 0x01, 0x01, 0x0a, 0x58, 0x0a, 0xf4, 0x28,
        0x24,
    ];

    /// The kernel's answer as a proxy (`ip -6 neigh add proxy fd5f:a1b2:c3d4::af4:a696 dev
    /// cali0test`): from the host end's link-local address, Solicited only.
    pub const PROXY_NA: [u8; 86] = [
        0x0a, 0x58, 0x0a, 0xf4, 0x28, 0x24, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0x86, 0xdd, 0x60, 0x00, 0x00,
        0x00, 0x00, 0x20, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xec, 0xee, 0xee, 0xff,
        0xfe, 0xee, 0xee, 0xee, 0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a,
        0xf4, 0x28, 0x24, 0x88, 0x00, 0xf6, 0x17, 0x40, 0x00, 0x00, 0x00, 0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xf4, 0xa6, 0x96, 0x02, 0x01, 0xee, 0xee, 0xee, 0xee, 0xee,
        0xee,
    ];

    /// The pod's router solicitation to ff02::2 (sent on its own when eth0 came up).
    pub const ROUTER_SOLICITATION: [u8; 70] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x02, 0x0a, 0x58, 0x0a, 0xf4, 0x28, 0x24, 0x86, 0xdd, 0x60, 0x00, 0x00,
        0x00, 0x00, 0x10, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x58, 0x0a, 0xff,
        0xfe, 0xf4, 0x28, 0x24, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x02, 0x85, 0x00, 0x04, 0x4e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x0a, 0x58, 0x0a, 0xf4,
        0x28, 0x24,
    ];
}

#[cfg(test)]
mod tests {
    use super::{captured::*, *};

    /// The IPv6 header and the first 24 bytes of ICMPv6 of a frame (zero-padded when shorter).
    fn split(frame: &[u8]) -> (Ipv6Fields, [u8; SOLICITATION_LEN]) {
        let ip = Ipv6Fields::parse(frame[14..54].try_into().unwrap());
        let mut icmp = [0u8; SOLICITATION_LEN];
        let rest = &frame[54..];
        let n = rest.len().min(SOLICITATION_LEN);
        icmp[..n].copy_from_slice(&rest[..n]);
        (ip, icmp)
    }

    #[test]
    fn the_gateway_solicitation_is_answered_exactly_as_the_kernel_answers_it() {
        let (ip, icmp) = split(&GATEWAY_NS);
        assert!(verifies::<72>(GATEWAY_NS[14..].try_into().unwrap()));
        let target = classify_solicitation(&ip, &icmp).unwrap();
        assert_eq!(target, ipv6::GATEWAY_LINK_LOCAL);
        assert_eq!(advertisement_flags(&target), FLAG_ROUTER | FLAG_SOLICITED | FLAG_OVERRIDE);
    }

    #[test]
    fn another_target_is_answered_as_the_kernels_proxy_answers_it() {
        let (ip, icmp) = split(&PROXY_NS);
        assert!(verifies::<72>(PROXY_NS[14..].try_into().unwrap()));
        let target = classify_solicitation(&ip, &icmp).unwrap();
        assert_eq!(&target[..], &PROXY_NS[62..78]);
        assert_eq!(advertisement_flags(&target), FLAG_SOLICITED);
    }

    #[test]
    fn dad_probe_goes_to_the_kernel() {
        let (mut ip, icmp) = split(&PROXY_NS);
        ip.src = UNSPECIFIED;
        assert_eq!(classify_solicitation(&ip, &icmp), Err(Reason::PassNdpDadProbe));
    }

    #[test]
    fn a_pod_asking_for_its_own_address_goes_to_the_kernel() {
        let (mut ip, icmp) = split(&PROXY_NS);
        ip.src.copy_from_slice(&icmp[8..24]);
        assert_eq!(classify_solicitation(&ip, &icmp), Err(Reason::PassNdpOwnAddress));
    }

    #[test]
    fn router_solicitation_and_other_messages_go_to_the_kernel() {
        let (ip, icmp) = split(&ROUTER_SOLICITATION);
        assert_eq!(classify_solicitation(&ip, &icmp), Err(Reason::PassNdpNotSolicitation));
        let (ip, icmp) = split(&GATEWAY_NA);
        assert_eq!(classify_solicitation(&ip, &icmp), Err(Reason::PassNdpNotSolicitation));
        let (ip, mut icmp) = split(&GATEWAY_NS);
        for kind in [TYPE_ROUTER_ADVERTISEMENT, TYPE_REDIRECT, 128, 129, 1] {
            icmp[0] = kind;
            assert_eq!(classify_solicitation(&ip, &icmp), Err(Reason::PassNdpNotSolicitation), "type {kind}");
        }
        let (ip, icmp) = split(&GATEWAY_NS);
        let not_icmp = Ipv6Fields { next_header: ipv6::NEXT_HOP_BY_HOP, ..ip };
        assert_eq!(classify_solicitation(&not_icmp, &icmp), Err(Reason::PassNdpNotSolicitation));
    }

    #[test]
    fn invalid_solicitations_go_to_the_kernel() {
        let (ip, icmp) = split(&GATEWAY_NS);
        // Forwarded by a router: not from the link.
        let forwarded = Ipv6Fields { hop_limit: 254, ..ip };
        assert_eq!(classify_solicitation(&forwarded, &icmp), Err(Reason::PassNdpMalformed));
        let short = Ipv6Fields { payload_len: 23, ..ip };
        assert_eq!(classify_solicitation(&short, &icmp), Err(Reason::PassNdpMalformed));
        let mut coded = icmp;
        coded[1] = 1;
        assert_eq!(classify_solicitation(&ip, &coded), Err(Reason::PassNdpMalformed));
        let mut multicast_target = icmp;
        multicast_target[8] = 0xff;
        assert_eq!(classify_solicitation(&ip, &multicast_target), Err(Reason::PassNdpMalformed));
        let mut corrupt = GATEWAY_NS;
        corrupt[60] ^= 1;
        assert!(!verifies::<72>(corrupt[14..].try_into().unwrap()));
    }

    #[test]
    fn the_answer_written_in_place_is_the_kernels() {
        for (solicitation, answer) in [(GATEWAY_NS, GATEWAY_NA), (PROXY_NS, PROXY_NA)] {
            let (ip, icmp) = split(&solicitation);
            let target = classify_solicitation(&ip, &icmp).unwrap();
            let mut frame = solicitation;
            let p: &mut [u8; ADVERTISEMENT_LEN] = (&mut frame[ETHERNET_HEADER_LEN..]).try_into().unwrap();
            answer_in_place(p);
            // Its own checksum holds, and its flags are those the kernel gives this target.
            assert!(verifies(p));
            assert_eq!(p[HEADER_LEN + 4], advertisement_flags(&target));
            assert_eq!(frame[ETHERNET_HEADER_LEN..], answer[ETHERNET_HEADER_LEN..]);
        }
    }
}
