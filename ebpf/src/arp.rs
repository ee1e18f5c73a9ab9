//! The ARP responder's hands: rewrite the request into a reply in place, send it back (the
//! request was judged by `fastpath_common::pipeline`).
//!
//! It stands in for the kernel's proxy_arp on the `cali*` end of a pod's veth: every IPv4 ARP
//! request a pod sends (for its gateway 169.254.1.1 or anything else) is answered with
//! `ee:ee:ee:ee:ee:ee`, so every packet the pod sends comes to us.

use aya_ebpf::programs::TcContext;
use fastpath_common::{arp::OP_REPLY, Reason, GATEWAY_MAC};
use network_types::{arp::ArpHdr, eth::EthHdr};

use crate::{outcome::Outcome, parse, skb};

/// Answer the request the walk accepted (`fastpath_common::pipeline`).
#[inline(always)]
pub fn reply(ctx: &TcContext) -> Outcome {
    let eth = parse::header_mut::<EthHdr>(ctx, 0).ok_or(Reason::PassArpMalformed)?;
    let arp = parse::header_mut::<ArpHdr>(ctx, EthHdr::LEN).ok_or(Reason::PassArpMalformed)?;
    // SAFETY: both headers were bounds-checked by `header_mut` and do not overlap.
    unsafe { rewrite_into_reply(&mut *eth, &mut *arp) };
    Ok((skb::back_out(ctx), Reason::ArpReplied))
}

/// Turn the request into the reply a proxy would send: "target is at ee:ee:ee:ee:ee:ee",
/// addressed to the asker.
#[inline(always)]
fn rewrite_into_reply(eth: &mut EthHdr, arp: &mut ArpHdr) {
    eth.dst_addr = eth.src_addr;
    eth.src_addr = GATEWAY_MAC;
    arp.oper = OP_REPLY.to_be_bytes();
    arp.tha = arp.sha;
    arp.sha = GATEWAY_MAC;
    core::mem::swap(&mut arp.spa, &mut arp.tpa);
}
