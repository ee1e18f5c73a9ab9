//! What to do with a frame a pod sent: ARP is answered, IPv4 forwarded, the rest passed.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use fastpath_common::{route, tunnel::Tunnel, Reason};
use network_types::eth::{EthHdr, EtherType};

use crate::{arp, deliver, flow, ip, ipip, lookup, maps, parse, stats::Outcome, vxlan};

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
        Ok((TC_ACT_OK, Reason::PassOtherEthertype))
    }
}

/// Route an IPv4 packet from a pod: into another pod here, or toward the node that owns the
/// destination.
#[inline(always)]
fn forward(ctx: &TcContext) -> Outcome {
    let node = maps::node()?;
    let header = ip::forwardable(ctx, EthHdr::LEN)?;
    lookup::check_source(header.src, parse::device_ifindex(ctx))?;
    let to = lookup::forward_to(header.dst, node.node_ip).inspect_err(|reason| {
        if *reason == Reason::PassKernelRoute {
            flow::remember(ctx, &node, EthHdr::LEN, &header);
        }
    })?;
    flow::admit(ctx, &node, EthHdr::LEN, &header)?;
    match to {
        route::Forward::Local { ifindex, mac } => deliver::to_pod(ctx, ifindex, mac, Reason::RedirectedLocal),
        route::Forward::Encapsulate { next_hop, tunnel: Tunnel::Ipip, .. } => {
            ipip::encapsulate(ctx, &node, &header, next_hop)
        }
        route::Forward::Encapsulate { next_hop, tunnel: Tunnel::Vxlan, mac } => {
            vxlan::encapsulate(ctx, &node, &header, next_hop, mac)
        }
        route::Forward::Underlay { next_hop } => deliver::to_node(ctx, &node, &header, next_hop),
    }
}
