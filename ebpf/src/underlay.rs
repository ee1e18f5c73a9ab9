//! What arrives on the underlay: IPIP, or VXLAN to this node's `vxlan.calico` port, from a known
//! node to this node, from an inner source that belongs to that node, is taken apart and
//! delivered into the pod (under `--trust kernel`, only by its flow's conntrack entry); a tunnel
//! to us from anyone else is dropped. Under `--trust kernel`, plain traffic to a pod here (or to
//! this node, of a flow conntrack translated to it) is delivered too by its flow's entry. The
//! rest is the kernel's.

use aya_ebpf::programs::TcContext;
use fastpath_common::{ipv4::Ipv4Fields, maps::NodeConfig, Reason};
use network_types::eth::EthHdr;

use crate::{
    deliver,
    flow::{self, Seen},
    ip, ipip, maps, nat,
    outcome::Outcome,
    path_mtu, tunnel, vxlan,
};

#[inline(always)]
pub fn handle(ctx: &TcContext) -> Outcome {
    let node = maps::node()?;
    let Some(outer) = ip::plain_frame(ctx) else {
        return Err(Reason::PassUnderlayOther);
    };
    if let Some(learned) = path_mtu::learn(ctx, node, &outer) {
        return Err(learned);
    }
    if outer.dst == node.node_ip {
        if ipip::carries_ipip(&outer) {
            return tunnel::deliver::<ipip::Arriving>(ctx, node, &outer);
        }
        if vxlan::is_vxlan_for(ctx, node, &outer) {
            return tunnel::deliver::<vxlan::Arriving>(ctx, node, &outer);
        }
    }
    plain(ctx, node, &outer)
}

/// Unencapsulated traffic from the underlay: under `--trust kernel`, a packet of a flow whose
/// conntrack entry the kernel here holds, to a pod here or to this node's own address (the
/// replies of a flow conntrack translated to it), sent by the node or gateway its source is
/// routed through, is delivered into the pod, translated as the entry says. Before the kernel has
/// judged the flow it delivers it itself. Under `--trust routes` it is the kernel's: nothing tells
/// a node's plain packet from anyone's.
#[inline(always)]
fn plain(ctx: &TcContext, node: &NodeConfig, outer: &Ipv4Fields) -> Outcome {
    // Everything the host itself receives passes here: under --trust routes, not even a lookup.
    if !node.trusts_kernel() {
        return Err(Reason::PassUnderlayOther);
    }
    let to_node = outer.dst == node.node_ip;
    if !to_node && maps::endpoint(outer.dst).is_none() {
        return Err(Reason::PassUnderlayOther);
    }
    // A pod of this node never sends from the underlay: the kernel judges such a packet.
    if maps::endpoint(outer.src).is_some() {
        return Err(Reason::PassUnderlayOther);
    }
    let ip = ip::forwardable(ctx, EthHdr::LEN)?;
    let t = flow::admit(ctx, node, EthHdr::LEN, &ip, Seen::Plain).map_err(|reason| {
        // To this node without a flow: the host's own traffic.
        if to_node && reason == Reason::PassFlowPending {
            Reason::PassUnderlayOther
        } else {
            reason
        }
    })?;
    // Only into a pod here.
    let pod = maps::endpoint(t.to_dst).ok_or(Reason::PassDecapNotLocal)?;
    nat::apply(ctx, &t)?;
    deliver::to_pod(ctx, pod.ifindex, pod.mac, Reason::RoutedFromUnderlay)
}
