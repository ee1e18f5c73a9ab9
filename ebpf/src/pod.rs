//! What to do with a frame a pod sent, by its ethertype.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use fastpath_common::Reason;
use network_types::eth::{EthHdr, EtherType};

use crate::{arp, parse, stats::Outcome};

#[inline(always)]
pub fn handle(ctx: &TcContext) -> Outcome {
    let eth: *mut EthHdr = parse::header_mut(ctx, 0).ok_or(Reason::PassTruncatedEthernet)?;
    // SAFETY: `header_mut` checked that the whole Ethernet header is inside the packet.
    let ether_type = unsafe { (*eth).ether_type };
    if ether_type == EtherType::Arp as u16 {
        arp::respond(ctx, eth)
    } else if ether_type == EtherType::Ipv4 as u16 {
        Ok((TC_ACT_OK, Reason::PassIpv4))
    } else {
        Ok((TC_ACT_OK, Reason::PassOtherEthertype))
    }
}
