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
        BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4,
        BPF_F_ADJ_ROOM_ENCAP_L4_UDP, BPF_F_ADJ_ROOM_FIXED_GSO,
    },
    helpers::bpf_get_prandom_u32,
    programs::TcContext,
};
use fastpath_common::{
    flow::FlowKey,
    ipv4::{Ipv4Fields, OuterIpv4, HEADER_LEN, PROTO_UDP},
    maps::NodeConfig,
    tunnel::{Tunnel, VXLAN_OVERHEAD},
    vxlan::{self, Encap, Received, INNER_ETH_LEN, OVERHEAD, UDP_HEADER_LEN},
    Reason,
};
use network_types::eth::EthHdr;

use crate::{fib, flow, ip, outcome::Outcome, parse, skb, tunnel};

/// Where the UDP header starts.
const UDP: usize = EthHdr::LEN + HEADER_LEN;
/// Where the VXLAN header starts.
const VXLAN: usize = UDP + UDP_HEADER_LEN;
/// Where the inner Ethernet header starts.
const INNER_ETH: usize = VXLAN + vxlan::HEADER_LEN;
/// Where the inner IPv4 header starts.
pub const INNER_L3: usize = EthHdr::LEN + OVERHEAD;

const ENCAP_FLAGS: u32 = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
    | BPF_F_ADJ_ROOM_ENCAP_L2_ETH
    | BPF_F_ADJ_ROOM_FIXED_GSO;
/// `BPF_F_ADJ_ROOM_ENCAP_L2(len)`: the inner Ethernet header's length.
const ENCAP_L2_LEN: u64 =
    ((INNER_ETH_LEN as u64) & BPF_ADJ_ROOM_ENCAP_L2_MASK as u64) << BPF_ADJ_ROOM_ENCAP_L2_SHIFT;

/// Encapsulate toward the node `next_hop`, whose `vxlan.calico` has MAC `peer_mac`, and send it
/// out of the underlay.
#[inline(always)]
pub fn encapsulate(
    ctx: &TcContext,
    node: &NodeConfig,
    inner: &Ipv4Fields,
    next_hop: [u8; 4],
    peer_mac: [u8; 6],
) -> Outcome {
    // The daemon writes VXLAN routes only for a node whose device it understands; never guess.
    if !node.has_vxlan() {
        return Err(Reason::PassKernelRoute);
    }
    if let Some(outcome) = tunnel::too_big(ctx, node, inner, tunnel::mtu(node, Tunnel::Vxlan, next_hop)) {
        return outcome;
    }
    // Ask the FIB before touching the packet, so a failure still leaves it to the kernel intact.
    let hop = fib::lookup(ctx, node, next_hop)?;
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
    ip::decrement_ttl_at(ctx, INNER_L3)?;
    tunnel::send(ctx, &hop, Reason::EncapsulatedVxlan)
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
    flow::key(ctx, EthHdr::LEN, inner)
        .unwrap_or(FlowKey::new(inner.src, inner.dst, inner.protocol, (0, 0)))
        .hash()
}

/// Whether `outer`, to this node, is UDP to its `vxlan.calico`'s port (with room for the whole
/// VXLAN packet): VXLAN for this node, to take apart or to hand to the kernel.
#[inline(always)]
pub fn is_vxlan_for(ctx: &TcContext, node: &NodeConfig, outer: &Ipv4Fields) -> bool {
    outer.protocol == PROTO_UDP
        && node.has_vxlan()
        && u32::from(outer.total_len) >= (OVERHEAD + HEADER_LEN) as u32
        && destination_port(ctx) == Some(node.vxlan.port)
}

#[inline(always)]
fn destination_port(ctx: &TcContext) -> Option<u16> {
    let udp: *const [u8; UDP_HEADER_LEN] = parse::header_mut(ctx, UDP)?;
    // SAFETY: bounds-checked by `header_mut`.
    Some(vxlan::destination_port(unsafe { &*udp }))
}

/// Whether `outer`, leaving the underlay, is this node's own VXLAN (the kernel's `vxlan.calico`
/// or the programs') carrying IPv4 at [`INNER_L3`].
#[inline(always)]
pub fn is_sent_by(ctx: &TcContext, node: &NodeConfig, outer: &Ipv4Fields) -> bool {
    if outer.src != node.node_ip || !node.has_vxlan() || outer.protocol != PROTO_UDP {
        return false;
    }
    let Some(r) = received(ctx) else { return false };
    vxlan::destination_port(&r.udp) == node.vxlan.port
        && r.vxlan[0] == vxlan::FLAG_VNI
        && u32::from_be_bytes([0, r.vxlan[4], r.vxlan[5], r.vxlan[6]]) == node.vxlan.vni
        && r.inner_eth[12..14] == [0x08, 0x00]
}

/// The UDP, VXLAN and inner Ethernet headers, if the packet holds them.
#[inline(always)]
fn received(ctx: &TcContext) -> Option<Received> {
    let udp: *const [u8; UDP_HEADER_LEN] = parse::header_mut(ctx, UDP)?;
    let header: *const [u8; vxlan::HEADER_LEN] = parse::header_mut(ctx, VXLAN)?;
    let inner_eth: *const [u8; INNER_ETH_LEN] = parse::header_mut(ctx, INNER_ETH)?;
    // SAFETY: all three bounds-checked by `header_mut`; copied out at once.
    Some(unsafe { Received { udp: *udp, vxlan: *header, inner_eth: *inner_eth } })
}

/// VXLAN arriving at this node ([`tunnel::deliver`]).
pub struct Arriving;

impl tunnel::Arrival for Arriving {
    const ARRIVAL: fastpath_common::flow::Arrival = fastpath_common::flow::Arrival::Vxlan;
    const INNER_L3: usize = INNER_L3;
    const DELIVERED: Reason = Reason::DecapsulatedVxlan;

    /// This device's VNI and flags, an inner IPv4 frame to this device's MAC
    /// (`fastpath_common::vxlan::check_received`); anything else is the kernel's.
    #[inline(always)]
    fn check(ctx: &TcContext, node: &NodeConfig, outer: &Ipv4Fields) -> Result<(), Reason> {
        let r = received(ctx).ok_or(Reason::PassVxlanOther)?;
        vxlan::check_received(outer.total_len, &r, &node.vxlan)
    }

    /// Remove the outer IPv4, UDP, VXLAN and inner Ethernet headers: the outer Ethernet header
    /// (IPv4, like the inner) now leads the inner IPv4 packet. The segment size of a GSO packet
    /// stays what its sender chose.
    #[inline(always)]
    fn strip(ctx: &TcContext) -> Result<(), Reason> {
        let flags = BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO;
        ctx.adjust_room(-(VXLAN_OVERHEAD as i32), BPF_ADJ_ROOM_MAC, u64::from(flags))
            .map_err(|_| Reason::PassEncapFailed)
    }
}
