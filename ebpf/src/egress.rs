//! What the kernel sends out of a pod's interface or the underlay, seen by the egress programs
//! under `--trust kernel`: only packets toward where the fast path would send them are judged.
//! They never change or stop a packet.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use fastpath_common::{
    ipv4::{Ipv4Fields, HEADER_LEN},
    maps::NodeConfig,
    Reason, FAST_PATH_MARK,
};
use network_types::eth::EthHdr;

use crate::{flow, ip, ipip, lookup, maps, parse, stats::Outcome, vxlan};

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
/// node's IPIP or VXLAN, the kernel's own tunnel devices' included) is a pod on another node.
#[inline(always)]
pub fn to_underlay(ctx: &TcContext) -> Outcome {
    if sent_by_fast_path(ctx) {
        return Ok((TC_ACT_OK, Reason::FlowEgressKnown));
    }
    let node = maps::node()?;
    let outer = ip::plain_frame(ctx).filter(|_| node.trusts_kernel()).ok_or(Reason::FlowEgressOther)?;
    if outer.src == node.node_ip && ipip::carries_ipip(&outer) {
        return judge_at(ctx, &node, EthHdr::LEN + HEADER_LEN);
    }
    if vxlan::is_sent_by(ctx, &node, &outer) {
        return judge_at(ctx, &node, vxlan::INNER_L3);
    }
    judge_toward_other_node(ctx, &node, EthHdr::LEN, &outer)
}

/// Whether an ingress program sent this packet (its flow approved): the mark it set comes off,
/// and there is nothing to judge.
#[inline(always)]
fn sent_by_fast_path(ctx: &TcContext) -> bool {
    // SAFETY: reading `mark` from the context is allowed for TC programs.
    let mark = unsafe { (*ctx.skb.skb).mark };
    if mark & FAST_PATH_MARK == 0 {
        return false;
    }
    ctx.set_mark(mark & !FAST_PATH_MARK);
    true
}

/// The inner packet at `l3` of this node's tunnel.
#[inline(always)]
fn judge_at(ctx: &TcContext, node: &NodeConfig, l3: usize) -> Outcome {
    let inner = ip::plain(ctx, l3).ok_or(Reason::FlowEgressOther)?;
    judge_toward_other_node(ctx, node, l3, &inner)
}

#[inline(always)]
fn judge_toward_other_node(ctx: &TcContext, node: &NodeConfig, l3: usize, ip: &Ipv4Fields) -> Outcome {
    if !lookup::is_on_other_node(ip.dst, node.node_ip) {
        return Err(Reason::FlowEgressOther);
    }
    flow::judge(ctx, l3, ip)
}
