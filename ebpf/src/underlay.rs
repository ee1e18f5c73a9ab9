//! What arrives on the underlay: IPIP, or VXLAN to this node's `vxlan.calico` port, from a known
//! node to this node, from an inner source that belongs to that node, is taken apart and
//! delivered into the pod (under `--trust kernel`, only for a flow the kernel here has delivered
//! before); a tunnel to us from anyone else is dropped. Under `--trust kernel`, plain traffic to
//! a pod here is delivered too once the kernel has delivered its flow. The rest is the kernel's.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use fastpath_common::{ipv4::Ipv4Fields, maps::NodeConfig, Reason};
use network_types::eth::EthHdr;

use crate::{deliver, flow, ip, ipip, maps, stats::Outcome, tunnel, vxlan};

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
    plain(ctx, &node, &outer)
}

/// Unencapsulated traffic to a pod here, from another node (a block route without a tunnel):
/// under `--trust kernel`, once the kernel here has delivered a flow, the fast path delivers the
/// rest of it; before that the kernel does, and remembering the flow lets that delivery approve
/// it. Under `--trust routes` it is the kernel's: nothing tells a node's packet from anyone's.
#[inline(always)]
fn plain(ctx: &TcContext, node: &NodeConfig, outer: &Ipv4Fields) -> Outcome {
    // Everything the host itself receives passes here: under --trust routes, not even a lookup.
    if !node.trusts_kernel() {
        return Ok((TC_ACT_OK, Reason::PassUnderlayOther));
    }
    let Some(pod) = maps::endpoint(outer.dst) else {
        return Ok((TC_ACT_OK, Reason::PassUnderlayOther));
    };
    // A pod of this node never sends from the underlay: the kernel judges such a packet.
    if maps::endpoint(outer.src).is_some() {
        return Ok((TC_ACT_OK, Reason::PassUnderlayOther));
    }
    let ip = ip::forwardable(ctx, EthHdr::LEN)?;
    flow::admit(ctx, node, EthHdr::LEN, &ip)?;
    deliver::to_pod(ctx, pod.ifindex, pod.mac, Reason::RoutedFromUnderlay)
}
