//! What IPIP (`ipip.rs`) and VXLAN (`vxlan.rs`) share: whether a packet fits the tunnel (and the
//! ICMP a router sends when it does not), the way out over the underlay, which nodes may send us
//! tunnels, and the delivery of what arrives, so each tunnel's module holds only its own headers.

use aya_ebpf::programs::TcContext;
use fastpath_common::{
    ipv4::{Ipv4Fields, HEADER_LEN, PROTO_TCP, PROTO_UDP},
    maps::NodeConfig,
    route::Forward,
    tunnel::Tunnel,
    Reason,
};
use network_types::eth::EthHdr;

use crate::{
    deliver,
    fib::{self, NextHop},
    flow::{self, Seen},
    icmp, ip, lookup, maps, nat,
    outcome::Outcome,
    parse, path_mtu, skb,
};

/// The largest inner packet `tunnel` may carry toward node `next_hop`: the tunnel's MTU, or
/// less where a router taught the path is narrower.
#[inline(always)]
pub fn mtu(node: &NodeConfig, tunnel: Tunnel, next_hop: [u8; 4]) -> u32 {
    path_mtu::limit(node.tunnel_mtu(&tunnel), next_hop, tunnel.overhead())
}

/// [`too_big`] for the way `to` leaves: nothing to check into a pod here.
#[inline(always)]
pub fn too_big_for(ctx: &TcContext, node: &NodeConfig, inner: &Ipv4Fields, to: &Forward) -> Option<Outcome> {
    match to {
        Forward::Local { .. } => None,
        Forward::Encapsulate { next_hop, tunnel, .. } => {
            too_big(ctx, node, inner, mtu(node, *tunnel, *next_hop))
        }
        Forward::Underlay { .. } => too_big(ctx, node, inner, node.underlay_mtu),
    }
}

/// `None` when the packet (each segment, for a GSO packet) fits `mtu` (a tunnel's, or the
/// underlay's for a plain route); otherwise what a router does instead: DF gets ICMP
/// "fragmentation needed" with that MTU, the rest the kernel may fragment.
#[inline(always)]
pub fn too_big(ctx: &TcContext, node: &NodeConfig, inner: &Ipv4Fields, mtu: u32) -> Option<Outcome> {
    if largest_segment(ctx, inner) <= mtu {
        return None;
    }
    Some(if inner.dont_fragment() {
        icmp::frag_needed(ctx, node, mtu as u16)
    } else {
        Err(Reason::PassTooBig)
    })
}

/// The IP length of the largest packet that will leave: the bytes after the Ethernet header
/// (which the way out carries whole, even past the IP packet's own length), or for a GSO
/// super-packet one segment (gso_size plus its IP and TCP/UDP headers).
#[inline(always)]
fn largest_segment(ctx: &TcContext, inner: &Ipv4Fields) -> u32 {
    let gso_size = skb::gso_size(ctx);
    if gso_size == 0 {
        return skb::len(ctx).saturating_sub(EthHdr::LEN as u32);
    }
    gso_size + HEADER_LEN as u32 + transport_header_len(ctx, inner.protocol)
}

#[inline(always)]
fn transport_header_len(ctx: &TcContext, protocol: u8) -> u32 {
    let l4 = EthHdr::LEN + HEADER_LEN;
    match protocol {
        PROTO_TCP => match parse::header_mut::<[u8; 13]>(ctx, l4) {
            // SAFETY: bounds-checked by `header_mut`; byte 12 holds the data offset.
            Some(tcp) => u32::from(unsafe { (*tcp)[12] } >> 4) * 4,
            None => 20,
        },
        PROTO_UDP => 8,
        _ => 0,
    }
}

/// Send the encapsulated packet out of the underlay toward `hop`, with the next hop's MAC when
/// the kernel knows it (else `bpf_redirect_neigh` resolves it on the way out).
#[inline(always)]
pub fn send(ctx: &TcContext, hop: &NextHop, reason: Reason) -> Outcome {
    if let NextHop::Resolved { smac, dmac, .. } = hop {
        let eth: *mut EthHdr = parse::header_mut(ctx, 0).ok_or(Reason::DropRewriteFailed)?;
        // SAFETY: bounds-checked by `header_mut`.
        unsafe {
            (*eth).src_addr = *smac;
            (*eth).dst_addr = *dmac;
        }
    }
    Ok((fib::redirect(hop), reason))
}

/// A tunnel arriving at this node, as the shared delivery needs it.
pub trait Arrival {
    /// How the flow table names this way of arriving.
    const ARRIVAL: fastpath_common::flow::Arrival;
    /// Where the inner IPv4 header starts.
    const INNER_L3: usize;
    /// The reason a delivered packet is counted under.
    const DELIVERED: Reason;
    /// Whether the headers between the outer and the inner IPv4 one are the fast path's to take
    /// apart (`Err`: the kernel's).
    fn check(ctx: &TcContext, node: &NodeConfig, outer: &Ipv4Fields) -> Result<(), Reason>;
    /// Remove everything between the outer Ethernet header and the inner IPv4 one.
    fn strip(ctx: &TcContext) -> Result<(), Reason>;
}

/// A tunnel from another node to this one: from a stranger it is dropped; for a pod here, from
/// a known node and an inner source of that node, it is taken apart and delivered (under
/// `--trust kernel` only by its flow's conntrack entry, arriving in this tunnel from this node,
/// translated as the entry says); anything else goes to the kernel still encapsulated, where its
/// own tunnel device takes it apart and its policy judges it, as without fastpath. The same
/// rules for IPIP and VXLAN, here once.
#[inline(always)]
pub fn deliver<T: Arrival>(ctx: &TcContext, node: &NodeConfig, outer: &Ipv4Fields) -> Outcome {
    if !maps::is_tunnel_peer(outer.src) {
        return Err(Reason::DropUnknownPeer);
    }
    T::check(ctx, node, outer)?;
    let inner = ip::forwardable(ctx, T::INNER_L3)?;
    // Another source goes to the kernel still encapsulated: a node must not pose as a pod of a
    // third node, nor of this one.
    lookup::check_inner_source(inner.src, outer.src)?;
    let t = flow::admit(ctx, node, T::INNER_L3, &inner, Seen::Tunnel(T::ARRIVAL, outer.src)).map_err(
        |reason| crate::pod::when_pending(reason, lookup::deliver_after_decap(inner.dst, node.node_ip).err()),
    )?;
    let Forward::Local { ifindex, mac } = lookup::deliver_after_decap(t.to_dst, node.node_ip)? else {
        return Err(Reason::PassDecapNotLocal);
    };
    T::strip(ctx)?;
    nat::apply(ctx, &t)?;
    deliver::to_pod(ctx, ifindex, mac, T::DELIVERED)
}
