//! The NDP responder's hands: a pod's neighbour solicitation, which the shared walk accepted
//! (`fastpath_common::pipeline`), becomes in place the advertisement the host end of the veth
//! would send (`fastpath_common::ndp`), and goes back into the pod.

use aya_ebpf::{helpers::bpf_skb_change_tail, programs::TcContext};
use fastpath_common::{
    ndp::{self, ADVERTISEMENT_LEN},
    Reason, GATEWAY_MAC,
};
use network_types::eth::EthHdr;

use crate::{
    outcome::{self, Outcome, Packed},
    parse, skb,
};

/// The answer's frame: Ethernet, IPv6 and the advertisement with its target link-layer option.
const FRAME_LEN: u32 = (EthHdr::LEN + ADVERTISEMENT_LEN) as u32;

#[inline(always)]
pub fn answer(ctx: &TcContext) -> Outcome {
    outcome::unpack(reply(ctx))
}

/// A function of its own (a BPF subprogram), as `icmp.rs`'s reply is: the rewrite's locals stay
/// out of `from_pod`'s stack frame.
#[inline(never)]
fn reply(ctx: &TcContext) -> Packed {
    outcome::pack(rewrite(ctx).map(|()| (skb::back_out(ctx), Reason::NdpReplied)))
}

#[inline(always)]
fn rewrite(ctx: &TcContext) -> Result<(), Reason> {
    // A solicitation with the sender's link-layer option is as long as the answer; one without is
    // 8 bytes shorter. On failure the packet is unchanged and goes to the kernel, which answers.
    // SAFETY: a plain helper call.
    if skb::len(ctx) != FRAME_LEN && unsafe { bpf_skb_change_tail(ctx.skb.skb, FRAME_LEN, 0) } != 0 {
        return Err(Reason::PassNdpMalformed);
    }
    let eth: *mut EthHdr = parse::header_mut(ctx, 0).ok_or(Reason::PassNdpMalformed)?;
    let out: *mut [u8; ADVERTISEMENT_LEN] =
        parse::header_mut(ctx, EthHdr::LEN).ok_or(Reason::PassNdpMalformed)?;
    // SAFETY: both bounds-checked by `header_mut`, after the packet's last change of size.
    unsafe {
        (*eth).dst_addr = (*eth).src_addr;
        (*eth).src_addr = GATEWAY_MAC;
        ndp::answer_in_place(&mut *out);
    }
    Ok(())
}
