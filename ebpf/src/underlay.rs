//! What arrives on the underlay: IPIP from a known node to this node, from an inner source that
//! belongs to that node, is decapsulated and delivered into the pod (under `--trust kernel`,
//! only for a flow the kernel here has delivered before); IPIP to us from anyone else is
//! dropped; the rest is the kernel's.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use fastpath_common::{
    ipv4::{Ipv4Fields, HEADER_LEN, PROTO_IPIP},
    maps::NodeConfig,
    route::Forward,
    Reason,
};
use network_types::eth::EthHdr;

use crate::{deliver, flow, ip, ipip, lookup, maps, stats::Outcome};

#[inline(always)]
pub fn handle(ctx: &TcContext) -> Outcome {
    let node = maps::node()?;
    let Some(outer) = tunnel_header(ctx) else {
        remember_plain(ctx, &node);
        return Ok((TC_ACT_OK, Reason::PassUnderlayOther));
    };
    if outer.dst != node.node_ip {
        return Ok((TC_ACT_OK, Reason::PassUnderlayOther));
    }
    if !maps::is_tunnel_peer(outer.src) {
        return Err(Reason::DropUnknownPeer);
    }
    let inner = ip::forwardable(ctx, EthHdr::LEN + HEADER_LEN)?;
    // Another source goes to the kernel still encapsulated: a node must not pose as a pod of a
    // third node, nor of this one.
    lookup::check_inner_source(inner.src, outer.src)?;
    let Forward::Local { ifindex, mac } = lookup::deliver_after_decap(inner.dst, node.node_ip)? else {
        return Err(Reason::PassDecapNotLocal);
    };
    // A flow not approved here goes to the kernel still encapsulated: its own tunnel
    // decapsulates it and its policy judges it, as without fastpath.
    flow::admit(ctx, &node, EthHdr::LEN + HEADER_LEN, &inner)?;
    ipip::decapsulate(ctx)?;
    deliver::to_pod(ctx, ifindex, mac, Reason::Decapsulated)
}

/// Under `--trust kernel`, unencapsulated traffic to a pod here (a route without IPIP) is the
/// kernel's to deliver; remembering its flow lets that delivery approve it.
#[inline(always)]
fn remember_plain(ctx: &TcContext, node: &NodeConfig) {
    // Everything the host itself receives passes here: under --trust routes, not even a parse.
    if !node.trusts_kernel() {
        return;
    }
    if let Some(ip) = ip::plain_frame(ctx).filter(|ip| maps::endpoint(ip.dst).is_some()) {
        flow::remember(ctx, node, EthHdr::LEN, &ip);
    }
}

/// The outer header, if this is a plain IPv4 frame carrying IPIP (room for an inner header
/// included). Anything else is the kernel's to judge.
#[inline(always)]
fn tunnel_header(ctx: &TcContext) -> Option<Ipv4Fields> {
    let outer = ip::plain_frame(ctx)?;
    let carries_ipip = outer.protocol == PROTO_IPIP && u32::from(outer.total_len) >= 2 * HEADER_LEN as u32;
    carries_ipip.then_some(outer)
}
