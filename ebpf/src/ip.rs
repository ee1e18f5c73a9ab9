//! Reading an IPv4 header and deciding whether the fast path may carry it.

use aya_ebpf::programs::TcContext;
use fastpath_common::{
    ipv4::{self, is_well_formed, Ipv4Fields, FRAGMENT_MASK, HEADER_LEN},
    Reason,
};
use network_types::eth::{EthHdr, EtherType};

use crate::{parse, skb};

/// The IPv4 header at `offset`, if a router may forward it without the kernel
/// ([`ipv4::check_forwardable`]).
#[inline(always)]
pub fn forwardable(ctx: &TcContext, offset: usize) -> Result<Ipv4Fields, Reason> {
    let header: *mut [u8; HEADER_LEN] = parse::header_mut(ctx, offset).ok_or(Reason::PassIpv4Malformed)?;
    // SAFETY: `header_mut` checked that the 20 bytes are inside the packet.
    let fields = Ipv4Fields::parse(unsafe { &*header });
    let after_l2 = skb::len(ctx).saturating_sub(offset as u32);
    ipv4::check_forwardable(&fields, after_l2)?;
    Ok(fields)
}

/// The IPv4 header at `offset`, if it is well-formed, unfragmented and without options: a packet
/// whose 5-tuple follows the header. Anything else is the kernel's to judge.
#[inline(always)]
pub fn plain(ctx: &TcContext, offset: usize) -> Option<Ipv4Fields> {
    let header: *const [u8; HEADER_LEN] = parse::header_mut(ctx, offset)?;
    // SAFETY: bounds-checked by `header_mut`.
    let fields = Ipv4Fields::parse(unsafe { &*header });
    let after_l2 = skb::len(ctx).saturating_sub(offset as u32);
    let plain = fields.version_ihl == 0x45 && fields.frag & FRAGMENT_MASK == 0;
    (plain && is_well_formed(&fields, after_l2)).then_some(fields)
}

/// The frame's IPv4 header, if it is an IPv4 frame whose header is [`plain`].
#[inline(always)]
pub fn plain_frame(ctx: &TcContext) -> Option<Ipv4Fields> {
    let eth: *const EthHdr = parse::header_mut(ctx, 0)?;
    // SAFETY: bounds-checked by `header_mut`.
    if unsafe { (*eth).ether_type } != EtherType::Ipv4 as u16 {
        return None;
    }
    plain(ctx, EthHdr::LEN)
}

/// Decrement the TTL of the IPv4 header at `offset` and patch its checksum incrementally, as the
/// kernel's `ip_decrease_ttl` does. Callers have checked TTL > 1.
#[inline(always)]
pub fn decrement_ttl_at(ctx: &TcContext, offset: usize) -> Result<(), Reason> {
    let header: *mut [u8; HEADER_LEN] = parse::header_mut(ctx, offset).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: bounds-checked by `header_mut`.
    let header = unsafe { &mut *header };
    let check = ipv4::checksum_after_ttl_decrement([header[10], header[11]]);
    header[8] -= 1;
    header[10] = check[0];
    header[11] = check[1];
    Ok(())
}
