//! What the kernel sends out of a pod's interface or the underlay, seen by the egress programs
//! under `--trust kernel`: only packets toward where the fast path would send them are judged.
//! They never change or stop a packet.

use aya_ebpf::programs::TcContext;
use fastpath_common::{
    ipv4::{HEADER_LEN, PROTO_IPIP},
    Reason,
};
use network_types::eth::EthHdr;

use crate::{flow, ip, lookup, maps, parse, stats::Outcome};

/// Out of a `cali*` interface, into its pod: judged when the pod behind this interface is the
/// destination, as the fast path would deliver it.
#[inline(always)]
pub fn to_pod(ctx: &TcContext) -> Outcome {
    let node = maps::node()?;
    let ip = ip::plain_frame(ctx).filter(|_| node.trusts_kernel()).ok_or(Reason::FlowEgressOther)?;
    if !maps::endpoint(ip.dst).is_some_and(|e| e.ifindex == parse::device_ifindex(ctx)) {
        return Err(Reason::FlowEgressOther);
    }
    flow::judge(ctx, EthHdr::LEN, &ip)
}

/// Out of the underlay, toward another node: judged when the destination (the inner one of this
/// node's IPIP) is a pod on another node.
#[inline(always)]
pub fn to_underlay(ctx: &TcContext) -> Outcome {
    let node = maps::node()?;
    let outer = ip::plain_frame(ctx).filter(|_| node.trusts_kernel()).ok_or(Reason::FlowEgressOther)?;
    let (l3, ip) = if outer.protocol == PROTO_IPIP && outer.src == node.node_ip {
        let inner = EthHdr::LEN + HEADER_LEN;
        (inner, ip::plain(ctx, inner).ok_or(Reason::FlowEgressOther)?)
    } else {
        (EthHdr::LEN, outer)
    };
    if !lookup::is_on_other_node(ip.dst, node.node_ip) {
        return Err(Reason::FlowEgressOther);
    }
    flow::judge(ctx, l3, &ip)
}
