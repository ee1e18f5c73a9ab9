//! What arrives on the underlay: IPIP, or VXLAN to this node's `vxlan.calico` port, from a known
//! node to this node, from an inner source that belongs to that node, is taken apart and
//! delivered into the pod (under `--trust kernel`, only for a flow the kernel here has delivered
//! before); a tunnel to us from anyone else is dropped; the rest is the kernel's.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use fastpath_common::{ipv4::Ipv4Fields, maps::NodeConfig, Reason};
use network_types::eth::EthHdr;

use crate::{flow, ip, ipip, maps, stats::Outcome, tunnel, vxlan};

#[inline(always)]
pub fn handle(ctx: &TcContext) -> Outcome {
    let node = maps::node()?;
    let Some(outer) = ip::plain_frame(ctx) else {
        return Ok((TC_ACT_OK, Reason::PassUnderlayOther));
    };
    if outer.dst == node.node_ip {
        if ipip::carries_ipip(&outer) {
            return tunnel::deliver::<ipip::Arriving>(ctx, &node, &outer);
        }
        if vxlan::is_vxlan_for(ctx, &node, &outer) {
            return tunnel::deliver::<vxlan::Arriving>(ctx, &node, &outer);
        }
    }
    remember_plain(ctx, &node, &outer);
    Ok((TC_ACT_OK, Reason::PassUnderlayOther))
}

/// Under `--trust kernel`, unencapsulated traffic to a pod here (a route without a tunnel) is
/// the kernel's to deliver; remembering its flow lets that delivery approve it.
#[inline(always)]
fn remember_plain(ctx: &TcContext, node: &NodeConfig, ip: &Ipv4Fields) {
    // Everything the host itself receives passes here: under --trust routes, not even a lookup.
    if node.trusts_kernel() && maps::endpoint(ip.dst).is_some() {
        flow::remember(ctx, node, EthHdr::LEN, ip);
    }
}
