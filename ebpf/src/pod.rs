//! What to do with a frame a pod sent: ARP is answered, IPv4 forwarded, the rest passed.

use aya_ebpf::programs::TcContext;
use fastpath_common::{
    flow::Translation,
    ipv4::Ipv4Fields,
    maps::NodeConfig,
    route::{self, Forward},
    tunnel::Tunnel,
    Reason,
};
use network_types::eth::{EthHdr, EtherType};

use crate::{
    arp, deliver,
    fib::{self, NextHop},
    flow::{self, Seen},
    ip, ipip, lookup, maps, nat,
    outcome::Outcome,
    parse, skb, tunnel, vxlan,
};

#[inline(always)]
pub fn handle(ctx: &TcContext) -> Outcome {
    let eth: *mut EthHdr = parse::header_mut(ctx, 0).ok_or(Reason::PassTruncatedEthernet)?;
    // SAFETY: `header_mut` checked that the whole Ethernet header is inside the packet.
    let ether_type = unsafe { (*eth).ether_type };
    if ether_type == EtherType::Arp as u16 {
        arp::respond(ctx, eth)
    } else if ether_type == EtherType::Ipv4 as u16 {
        forward(ctx)
    } else {
        Err(Reason::PassOtherEthertype)
    }
}

/// Route an IPv4 packet from a pod: into another pod here, or toward the node that owns the
/// destination; under `--trust kernel` only by its flow's conntrack entry, translated as that
/// entry says.
#[inline(always)]
fn forward(ctx: &TcContext) -> Outcome {
    let node = maps::node()?;
    let header = ip::forwardable(ctx, EthHdr::LEN)?;
    let ingress = skb::ifindex(ctx);
    lookup::check_source(header.src, ingress)?;
    let t = flow::admit(ctx, node, EthHdr::LEN, &header, Seen::Pod(ingress))
        // Without an entry, say why the destination would not take the fast path anyway.
        .map_err(|reason| when_pending(reason, lookup::forward_to(header.dst, node.node_ip).err()))?;
    let way = way_for(ctx, node, &t)?;
    // Checked before the rewrite, so "fragmentation needed" quotes what the pod sent.
    if let Some(outcome) = too_big_for(ctx, node, &header, &way) {
        return outcome;
    }
    nat::apply(ctx, &t)?;
    carry(ctx, node, &Ipv4Fields { src: t.to_src, dst: t.to_dst, ..header }, way)
}

/// A reason the flow gate gave, unless it only means "no entry yet" and the destination has a
/// reason of its own.
#[inline(always)]
pub fn when_pending(reason: Reason, destination: Option<Reason>) -> Reason {
    match destination {
        Some(destination) if reason == Reason::PassFlowPending => destination,
        _ => reason,
    }
}

/// How a packet leaves.
enum Way {
    /// Along the route its destination has.
    Route(Forward),
    /// Translated to an address the routes do not hold (natOutgoing's outside world): where the
    /// kernel forwarded it, as its FIB says, out of the underlay only.
    Hop(NextHop),
}

/// The way out of a packet: by the destination it leaves with (its own, unless conntrack
/// translates it).
#[inline(always)]
fn way_for(ctx: &TcContext, node: &NodeConfig, t: &Translation) -> Result<Way, Reason> {
    match lookup::forward_to(t.to_dst, node.node_ip) {
        Ok(to) => Ok(Way::Route(to)),
        Err(Reason::PassNoRoute) if t.nat != 0 => {
            let hop = fib::lookup(ctx, node, t.to_dst)?;
            if fib::ifindex(&hop) != node.underlay_ifindex {
                return Err(Reason::PassFibFailed);
            }
            Ok(Way::Hop(hop))
        }
        Err(reason) => Err(reason),
    }
}

#[inline(always)]
fn too_big_for(ctx: &TcContext, node: &NodeConfig, header: &Ipv4Fields, way: &Way) -> Option<Outcome> {
    match way {
        Way::Route(to) => tunnel::too_big_for(ctx, node, header, to),
        Way::Hop(_) => tunnel::too_big(ctx, node, header, node.underlay_mtu),
    }
}

/// Carry a packet the way it leaves.
#[inline(always)]
fn carry(ctx: &TcContext, node: &NodeConfig, header: &Ipv4Fields, way: Way) -> Outcome {
    let to = match way {
        Way::Route(to) => to,
        Way::Hop(hop) => return deliver::to_hop(ctx, &hop),
    };
    match to {
        route::Forward::Local { ifindex, mac } => deliver::to_pod(ctx, ifindex, mac, Reason::RedirectedLocal),
        route::Forward::Encapsulate { next_hop, tunnel: Tunnel::Ipip, .. } => {
            ipip::encapsulate(ctx, node, header, next_hop)
        }
        route::Forward::Encapsulate { next_hop, tunnel: Tunnel::Vxlan, mac } => {
            vxlan::encapsulate(ctx, node, header, next_hop, mac)
        }
        route::Forward::Underlay { next_hop } => deliver::to_node(ctx, node, header, next_hop),
    }
}
