//! What arrives on the underlay: IPIP from a known node to this node is decapsulated and
//! delivered into the pod; IPIP to us from anyone else is dropped; the rest is the kernel's.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use fastpath_common::{
    ipv4::{is_well_formed, Ipv4Fields, FRAGMENT_MASK, HEADER_LEN, PROTO_IPIP},
    route::Forward,
    Reason,
};
use network_types::eth::{EthHdr, EtherType};

use crate::{deliver, ip, ipip, lookup, maps, parse, stats::Outcome};

#[inline(always)]
pub fn handle(ctx: &TcContext) -> Outcome {
    let node = maps::node()?;
    let Some(outer) = tunnel_header(ctx) else {
        return Ok((TC_ACT_OK, Reason::PassUnderlayOther));
    };
    if outer.dst != node.node_ip {
        return Ok((TC_ACT_OK, Reason::PassUnderlayOther));
    }
    if !maps::is_tunnel_peer(outer.src) {
        return Err(Reason::DropUnknownPeer);
    }
    let inner = ip::forwardable(ctx, EthHdr::LEN + HEADER_LEN)?;
    let Forward::Local { ifindex, mac } = lookup::deliver_after_decap(inner.dst, node.node_ip)? else {
        return Err(Reason::PassDecapNotLocal);
    };
    ipip::decapsulate(ctx)?;
    deliver::to_pod(ctx, ifindex, mac, Reason::Decapsulated)
}

/// The outer header, if this is a well-formed, unfragmented, option-less IPv4 packet carrying
/// IPIP (room for an inner header included). Anything else is the kernel's to judge.
#[inline(always)]
fn tunnel_header(ctx: &TcContext) -> Option<Ipv4Fields> {
    let eth: *const EthHdr = parse::header_mut(ctx, 0)?;
    // SAFETY: bounds-checked by `header_mut`.
    if unsafe { (*eth).ether_type } != EtherType::Ipv4 as u16 {
        return None;
    }
    let header: *const [u8; HEADER_LEN] = parse::header_mut(ctx, EthHdr::LEN)?;
    // SAFETY: bounds-checked by `header_mut`.
    let outer = Ipv4Fields::parse(unsafe { &*header });
    let after_l2 = ctx.len().saturating_sub(EthHdr::LEN as u32);
    let plain = outer.version_ihl == 0x45 && outer.frag & FRAGMENT_MASK == 0;
    let carries_ipip = outer.protocol == PROTO_IPIP && u32::from(outer.total_len) >= 2 * HEADER_LEN as u32;
    (plain && carries_ipip && is_well_formed(&outer, after_l2)).then_some(outer)
}
