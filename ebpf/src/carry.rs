//! Carrying out what the shared walk decided (`fastpath_common::pipeline::Plan`): the packet
//! is rewritten only here, after every check has passed, so a refusal always leaves it intact
//! to the kernel.

use aya_ebpf::programs::TcContext;
use fastpath_common::{maps::NodeConfig, pipeline::Plan, tunnel::Tunnel, Reason};

use crate::{arp, deliver, fib::NextHop, icmp, ipip, nat, outcome::Outcome, vxlan};

#[inline(always)]
pub fn out(ctx: &TcContext, node: Result<&'static NodeConfig, Reason>, plan: Plan<NextHop>) -> Outcome {
    match plan {
        Plan::AnswerArp => arp::reply(ctx),
        Plan::FragNeeded { mtu } => icmp::frag_needed(ctx, node?, mtu),
        Plan::ToPod { ifindex, mac, decap, nat, reason } => {
            match decap {
                Some(Tunnel::Ipip) => ipip::strip(ctx)?,
                Some(Tunnel::Vxlan) => vxlan::strip(ctx)?,
                None => {}
            }
            nat::apply(ctx, &nat)?;
            deliver::to_pod(ctx, ifindex, mac, reason)
        }
        Plan::Encapsulate { tunnel, next_hop, mac, hop, inner, nat } => {
            let node = node?;
            nat::apply(ctx, &nat)?;
            match tunnel {
                Tunnel::Ipip => ipip::encapsulate(ctx, node, &inner, next_hop, &hop),
                Tunnel::Vxlan => vxlan::encapsulate(ctx, node, &inner, next_hop, mac, &hop),
            }
        }
        Plan::ToUnderlay { hop, nat, .. } => {
            nat::apply(ctx, &nat)?;
            deliver::to_hop(ctx, &hop)
        }
    }
}
