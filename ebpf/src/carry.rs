//! Carrying out what the shared walk decided (`fastpath_common::pipeline::Plan`): the packet
//! is rewritten only here, after every check has passed, so a refusal always leaves it intact
//! to the kernel.

use aya_ebpf::programs::TcContext;
use fastpath_common::{
    maps::NodeConfig,
    pipeline::{Carry6, Plan, Plan6},
    tunnel::Tunnel,
    Reason,
};

use crate::{
    arp, deliver,
    fib::{NextHop, NextHop6},
    icmp, icmp6, ipip, maps, nat, ndp,
    outcome::Outcome,
    vxlan,
};

#[inline(always)]
pub fn out(ctx: &TcContext, node: Result<&'static NodeConfig, Reason>, plan: Plan<NextHop>) -> Outcome {
    match plan {
        Plan::AnswerArp => arp::reply(ctx),
        // IPv6 is walked and carried in a subprogram of its own (`handle.rs`, `out_ipv6`): the walks
        // `out` carries never plan it.
        Plan::Ipv6(_) => Err(Reason::PassOtherEthertype),
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

/// The IPv6 walks' plans (`pipeline::from_pod_ipv6`, `from_underlay_ipv6`), carried out where
/// each is made, in the walks' own subprograms.
pub struct Out6<'a>(pub &'a TcContext);

impl Carry6<NextHop6> for Out6<'_> {
    type Out = (i32, Reason);

    #[inline(always)]
    fn carry(&self, plan: Plan6<NextHop6>) -> Outcome {
        out_ipv6(self.0, plan)
    }
}

#[inline(always)]
fn out_ipv6(ctx: &TcContext, plan: Plan6<NextHop6>) -> Outcome {
    match plan {
        Plan6::AnswerNdp => ndp::answer(ctx),
        Plan6::ToPod { ifindex, mac, decap: false } => {
            deliver::to_pod_v6(ctx, ifindex, mac, Reason::RedirectedLocal)
        }
        Plan6::ToPod { ifindex, mac, decap: true } => {
            vxlan::strip6(ctx)?;
            deliver::to_pod_v6(ctx, ifindex, mac, Reason::DecapsulatedVxlan)
        }
        Plan6::ToUnderlay { hop, .. } => deliver::to_hop6(ctx, &hop),
        Plan6::Encapsulate { next_hop, mac, hop, wire_payload_len } => {
            // The walk found it ready; the map's own value, not a copy.
            let node6 = maps::node6().ok_or(Reason::PassNotReady)?;
            vxlan::encapsulate6(ctx, node6, &next_hop, mac, &hop, wire_payload_len)
        }
        Plan6::TooBig { mtu } => icmp6::packet_too_big(ctx, mtu),
        Plan6::ByVxlanDevice { ifindex, device_mac, mac } => {
            deliver::to_device_v6(ctx, ifindex, device_mac, mac)
        }
    }
}
