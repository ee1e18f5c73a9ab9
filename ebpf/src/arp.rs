//! The ARP responder: validate, rewrite the request into a reply in place, send it back.
//!
//! It stands in for the kernel's proxy_arp on the `cali*` end of a pod's veth: every IPv4 ARP
//! request a pod sends (for its gateway 169.254.1.1 or anything else) is answered with
//! `ee:ee:ee:ee:ee:ee`, so every packet the pod sends comes to us.

use aya_ebpf::programs::TcContext;
use aya_log_ebpf::debug;
use fastpath_common::{
    arp::{classify_request, ArpFields, OP_REPLY},
    Reason, GATEWAY_MAC,
};
use network_types::{arp::ArpHdr, eth::EthHdr};

use crate::{outcome::Outcome, parse, skb};

#[inline(always)]
pub fn respond(ctx: &TcContext, eth: *mut EthHdr) -> Outcome {
    let Some(arp) = parse::header_mut::<ArpHdr>(ctx, EthHdr::LEN) else {
        debug!(ctx, "arp: truncated frame of {} bytes", skb::len(ctx));
        return Err(Reason::PassArpMalformed);
    };
    // SAFETY: `header_mut` checked that the whole ARP header is inside the packet.
    classify_request(&fields(unsafe { &*arp }))?;
    // SAFETY: both headers were bounds-checked above and do not overlap.
    unsafe { rewrite_into_reply(&mut *eth, &mut *arp) };
    // Send the reply back out of the interface it came in on: into the pod that asked.
    Ok((skb::back_out(ctx), Reason::ArpReplied))
}

#[inline(always)]
fn fields(arp: &ArpHdr) -> ArpFields {
    ArpFields {
        htype: u16::from_be_bytes(arp.htype),
        ptype: u16::from_be_bytes(arp.ptype),
        hlen: arp.hlen,
        plen: arp.plen,
        op: u16::from_be_bytes(arp.oper),
        spa: arp.spa,
        tpa: arp.tpa,
    }
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
