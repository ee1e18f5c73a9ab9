//! VXLAN as this node's `vxlan.calico` would send and receive it: push outer IPv4, UDP, VXLAN
//! and inner Ethernet headers toward another node, or take them apart from one. The bytes are
//! built by `fastpath_common::vxlan`, which mirrors the kernel's `vxlan_xmit_one`.
//!
//! `bpf_skb_adjust_room` with the L3, L4 (UDP) and L2 (Ethernet) encapsulation flags records
//! the inner headers and marks a GSO packet `SKB_GSO_UDP_TUNNEL`, so it is segmented as the
//! kernel's own VXLAN would be. `BPF_F_ADJ_ROOM_FIXED_GSO` keeps the segment size the pod chose:
//! each segment was checked against the tunnel MTU before, as the kernel's route MTU would.

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, BPF_ADJ_ROOM_ENCAP_L2_MASK, BPF_ADJ_ROOM_ENCAP_L2_SHIFT,
        BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_DECAP_L3_IPV6, BPF_F_ADJ_ROOM_ENCAP_L2_ETH,
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6, BPF_F_ADJ_ROOM_ENCAP_L4_UDP,
        BPF_F_ADJ_ROOM_FIXED_GSO,
    },
    helpers::{bpf_csum_diff, bpf_get_prandom_u32},
    programs::TcContext,
};
use fastpath_common::{
    flow::FlowKey,
    ipv4::{Ipv4Fields, OuterIpv4, PROTO_UDP},
    maps::{Node6Config, NodeConfig},
    pipeline::{frame, Frame, VXLAN_INNER_L3},
    tunnel::VXLAN_OVERHEAD,
    vxlan::{self, Encap, Encap6, FLOW6_LEN, INNER_ETH_LEN, OVERHEAD, OVERHEAD6},
    Reason,
};
use network_types::eth::EthHdr;

use crate::{
    deliver,
    fib::{NextHop, NextHop6},
    ip,
    outcome::Outcome,
    parse, skb,
    walk::Packet,
};

const ENCAP_FLAGS: u32 = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
    | BPF_F_ADJ_ROOM_ENCAP_L2_ETH
    | BPF_F_ADJ_ROOM_FIXED_GSO;
/// `BPF_F_ADJ_ROOM_ENCAP_L2(len)`: the inner Ethernet header's length.
const ENCAP_L2_LEN: u64 =
    ((INNER_ETH_LEN as u64) & BPF_ADJ_ROOM_ENCAP_L2_MASK as u64) << BPF_ADJ_ROOM_ENCAP_L2_SHIFT;

/// Encapsulate toward the node `next_hop`, whose `vxlan.calico` has MAC `peer_mac`, and send it
/// out of the underlay toward `hop`.
#[inline(always)]
pub fn encapsulate(
    ctx: &TcContext,
    node: &NodeConfig,
    inner: &Ipv4Fields,
    next_hop: [u8; 4],
    peer_mac: [u8; 6],
    hop: &NextHop,
) -> Outcome {
    let encap = encap_of(ctx, node, inner, next_hop, peer_mac)?;
    // An outer packet over 65535 bytes cannot be: leave it to the kernel before touching it.
    if inner.total_len.checked_add(OVERHEAD as u16).is_none() {
        return Err(Reason::PassEncapFailed);
    }
    ctx.adjust_room(VXLAN_OVERHEAD as i32, BPF_ADJ_ROOM_MAC, u64::from(ENCAP_FLAGS) | ENCAP_L2_LEN)
        .map_err(|_| Reason::PassEncapFailed)?;
    let room: *mut [u8; OVERHEAD] = parse::header_mut(ctx, EthHdr::LEN).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: bounds-checked by `header_mut`; written in place.
    if !vxlan::write_headers(unsafe { &mut *room }, &encap, inner.total_len) {
        return Err(Reason::DropRewriteFailed);
    }
    ip::decrement_ttl_at(ctx, VXLAN_INNER_L3)?;
    deliver::send(ctx, hop, Reason::EncapsulatedVxlan)
}

/// This packet's outer header fields and UDP source port, read before the packet moves.
#[inline(always)]
fn encap_of(
    ctx: &TcContext,
    node: &NodeConfig,
    inner: &Ipv4Fields,
    next_hop: [u8; 4],
    peer_mac: [u8; 6],
) -> Result<Encap, Reason> {
    let config = node.vxlan;
    let tos: *const [u8; 2] = parse::header_mut(ctx, EthHdr::LEN).ok_or(Reason::PassIpv4Malformed)?;
    // SAFETY: bounds-checked by `header_mut`; byte 1 of the IPv4 header is its TOS.
    let inner_tos = unsafe { (*tos)[1] };
    // SAFETY: a plain helper call.
    let id = unsafe { bpf_get_prandom_u32() };
    let outer = OuterIpv4 {
        src: node.node_ip,
        dst: next_hop,
        protocol: PROTO_UDP,
        tos: vxlan::outer_tos(config.tos, inner_tos),
        // The inner TTL once this node has forwarded it (forwardable: it is above 1).
        ttl: vxlan::outer_ttl(config.ttl, inner.ttl - 1),
        df: vxlan::outer_df(config.df, inner.dont_fragment()),
        // Without DF the outer packet may be fragmented on the way: its id must vary, as
        // `__ip_select_ident` makes it.
        id: id as u16,
    };
    let source_port = vxlan::source_port(flow_hash(ctx, inner), config.port_min, config.port_max);
    Ok(Encap { outer, source_port, config, peer_mac })
}

/// The hash the UDP source port is folded from: the skb's own, as the kernel's vxlan takes it
/// (`udp_flow_src_port`), when the sender's socket gave it one; else a hash of the inner flow
/// ([`fastpath_common::flow::FlowKey::hash`]) rather than the kernel's flow dissector
/// (`bpf_get_hash_recalc`), which cost 160 ns a packet here (`tests/examples/program_cost.rs`).
#[inline(always)]
fn flow_hash(ctx: &TcContext, inner: &Ipv4Fields) -> u32 {
    let hash = skb::hash(ctx);
    if hash != 0 {
        return hash;
    }
    frame::flow_key(&Packet(ctx), EthHdr::LEN, inner)
        .unwrap_or(FlowKey::new(inner.src, inner.dst, inner.protocol, (0, 0)))
        .hash()
}

/// Whether `outer`, leaving the underlay, is this node's own VXLAN (the kernel's `vxlan.calico`
/// or the programs') carrying IPv4 at [`VXLAN_INNER_L3`].
#[inline(always)]
pub fn is_sent_by(ctx: &TcContext, node: &NodeConfig, outer: &Ipv4Fields) -> bool {
    if outer.src != node.node_ip || !node.has_vxlan() || outer.protocol != PROTO_UDP {
        return false;
    }
    let Some(r) = frame::vxlan_received(&Packet(ctx)) else { return false };
    vxlan::destination_port(&r.udp) == node.vxlan.port
        && r.vxlan[0] == vxlan::FLAG_VNI
        && u32::from_be_bytes([0, r.vxlan[4], r.vxlan[5], r.vxlan[6]]) == node.vxlan.vni
        && r.inner_eth[12..14] == [0x08, 0x00]
}

/// Remove the outer IPv4, UDP, VXLAN and inner Ethernet headers of VXLAN arriving at this node:
/// the outer Ethernet header (IPv4, like the inner) now leads the inner IPv4 packet. The segment
/// size of a GSO packet stays what its sender chose.
#[inline(always)]
pub fn strip(ctx: &TcContext) -> Result<(), Reason> {
    let flags = BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO;
    ctx.adjust_room(-(VXLAN_OVERHEAD as i32), BPF_ADJ_ROOM_MAC, u64::from(flags))
        .map_err(|_| Reason::PassEncapFailed)
}

/// IPv6 VXLAN: outer IPv6 instead of IPv4. `bpf_skb_adjust_room` can mark a GSO packet only
/// `SKB_GSO_UDP_TUNNEL`, never `_CSUM`: the kernel copies the UDP checksum written here into every
/// segment it cuts, so only a GSO packet whose segments are all alike comes here (the walk hands
/// the rest to `vxlan-v6.calico`), with the checksum they all carry.
const ENCAP6_FLAGS: u32 = BPF_F_ADJ_ROOM_ENCAP_L3_IPV6
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
    | BPF_F_ADJ_ROOM_ENCAP_L2_ETH
    | BPF_F_ADJ_ROOM_FIXED_GSO;
/// Where the inner IPv6 header lies once encapsulated.
const INNER6: usize = EthHdr::LEN + OVERHEAD6;
/// Where the UDP checksum lies in the 70 bytes.
const UDP6_CHECK: usize = fastpath_common::ipv6::HEADER_LEN + 6;

/// Encapsulate in IPv6 VXLAN toward node `next_hop`, whose `vxlan-v6.calico` has MAC
/// `peer_mac`, and send it out of the underlay toward `hop`; each packet it becomes on the wire
/// carries `wire_payload_len` bytes of inner payload (`Plan6::Encapsulate`).
#[inline(always)]
pub fn encapsulate6(
    ctx: &TcContext,
    node6: &Node6Config,
    next_hop: &[u8; 16],
    peer_mac: [u8; 6],
    hop: &NextHop6,
    wire_payload_len: u16,
) -> Outcome {
    // The inner header's first 8 bytes as they will leave (hop limit − 1; the walk checked it is
    // above 1): all the outer headers depend on, the UDP checksum included.
    let mut first8 = Packet(ctx).read::<8, _>(EthHdr::LEN, |h| *h).ok_or(Reason::PassIpv6Malformed)?;
    first8[7] -= 1;
    let config = &node6.vxlan;
    let traffic_class = (first8[0] << 4) | (first8[1] >> 4);
    let encap = Encap6 {
        src: &node6.node_ip,
        dst: next_hop,
        traffic_class: vxlan::outer_tos(config.tos, traffic_class),
        hop_limit: vxlan::outer_ttl(config.ttl, first8[7]),
        source_port: vxlan::source_port(flow_hash6(ctx), config.port_min, config.port_max),
        config,
        peer_mac,
    };
    // A UDP length over 65535 cannot be: leave it to the kernel before touching it.
    if usize::from(u16::from_be_bytes([first8[4], first8[5]])) + OVERHEAD6 > 0xffff {
        return Err(Reason::PassEncapFailed);
    }
    ctx.adjust_room(OVERHEAD6 as i32, BPF_ADJ_ROOM_MAC, u64::from(ENCAP6_FLAGS) | ENCAP_L2_LEN)
        .map_err(|_| Reason::PassEncapFailed)?;
    let room: *mut [u8; OVERHEAD6] = parse::header_mut(ctx, EthHdr::LEN).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: bounds-checked by `header_mut`; written in place.
    if !vxlan::write_headers6(unsafe { &mut *room }, &encap, &first8) {
        return Err(Reason::DropRewriteFailed);
    }
    // The UDP checksum: the 60 bytes from the outer addresses to the inner Ethernet type summed by
    // the kernel where they lie (one helper call, where a loop over them would cost a hundred
    // instructions more), the rest from the inner header's first 8 bytes.
    const SUMMED_LEN: usize = vxlan::SUMMED6.end - vxlan::SUMMED6.start;
    let summed: *mut [u8; SUMMED_LEN] =
        parse::header_mut(ctx, EthHdr::LEN + vxlan::SUMMED6.start).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: the pointer is to `SUMMED_LEN` bytes of the packet, bounds-checked by `header_mut`.
    let sum = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, summed.cast(), SUMMED_LEN as u32, 0) };
    if sum < 0 {
        return Err(Reason::DropRewriteFailed);
    }
    // The kernel sums the machine's own 16-bit words: folded, its bytes are the big-endian sum's
    // (RFC 1071 §2(B)), which `udp_checksum6` takes.
    let sum = sum as u32;
    let sum = (sum & 0xffff) + (sum >> 16);
    let folded = ((sum & 0xffff) + (sum >> 16)) as u16;
    let check =
        vxlan::udp_checksum6(u32::from(u16::from_be_bytes(folded.to_ne_bytes())), &first8, wire_payload_len);
    let field: *mut [u8; 2] =
        parse::header_mut(ctx, EthHdr::LEN + UDP6_CHECK).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: bounds-checked by `header_mut`.
    unsafe { *field = check.to_be_bytes() };
    let hop_limit: *mut u8 = parse::header_mut(ctx, INNER6 + 7).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: bounds-checked by `header_mut`.
    unsafe { *hop_limit = first8[7] };
    deliver::send6(ctx, hop, Reason::EncapsulatedVxlan)
}

/// The hash the UDP source port is folded from: the skb's own when it has one, else
/// [`vxlan::flow_hash6`] of the inner flow.
#[inline(always)]
fn flow_hash6(ctx: &TcContext) -> u32 {
    let hash = skb::hash(ctx);
    if hash != 0 {
        return hash;
    }
    Packet(ctx).read::<FLOW6_LEN, _>(EthHdr::LEN, vxlan::flow_hash6).unwrap_or(1)
}

/// Remove the outer IPv6, UDP, VXLAN and inner Ethernet headers of IPv6 VXLAN arriving at this
/// node: the outer Ethernet header (IPv6, like the inner) now leads the inner IPv6 packet.
#[inline(always)]
pub fn strip6(ctx: &TcContext) -> Result<(), Reason> {
    let flags = BPF_F_ADJ_ROOM_DECAP_L3_IPV6 | BPF_F_ADJ_ROOM_FIXED_GSO;
    ctx.adjust_room(-(OVERHEAD6 as i32), BPF_ADJ_ROOM_MAC, u64::from(flags))
        .map_err(|_| Reason::PassEncapFailed)
}
