//! Conntrack's NAT, applied by the fast path: an approved flow direction leaves with the tuple
//! its conntrack entry says (a service's backend for DNAT, the node's address for SNAT or
//! MASQUERADE, and back again for the replies). Addresses and ports are rewritten and the
//! checksums updated incrementally, as `nf_nat_ipv4_manip_pkt` and `nf_flow_table_ip.c` do:
//! the IPv4 header checksum for an address, the transport checksum for an address (it covers
//! the pseudo-header) and for a port. `bpf_l4_csum_replace` keeps a packet whose checksum the
//! stack still has to finish (CHECKSUM_PARTIAL) or has already verified (CHECKSUM_COMPLETE)
//! consistent, as the kernel's own helpers do.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use fastpath_common::{
    flow::{Translation, NAT_DST, NAT_SRC, PROTO_DCCP, PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_UDPLITE},
    ipv4::HEADER_LEN,
    Reason,
};
use network_types::eth::EthHdr;

use crate::parse;

/// Where a transport's checksum lies, whether it covers the pseudo-header, and whether 0 means
/// "none" (UDP over IPv4).
struct Checksum {
    offset: usize,
    pseudo: bool,
    zero_is_none: bool,
}

/// `None` for a transport whose checksum cannot be patched incrementally (SCTP's CRC32c): the
/// daemon never approves a NATed flow of it, and a packet of one goes to the kernel.
#[inline(always)]
const fn checksum_of(protocol: u8) -> Option<Checksum> {
    match protocol {
        PROTO_TCP => Some(Checksum { offset: 16, pseudo: true, zero_is_none: false }),
        PROTO_UDP => Some(Checksum { offset: 6, pseudo: true, zero_is_none: true }),
        PROTO_UDPLITE | PROTO_DCCP => Some(Checksum { offset: 6, pseudo: true, zero_is_none: false }),
        // ICMP's covers no pseudo-header: only the echo identifier changes it.
        PROTO_ICMP => Some(Checksum { offset: 2, pseudo: false, zero_is_none: false }),
        _ => None,
    }
}

/// Rewrite the option-less IPv4 packet after the Ethernet header as `t` says.
#[inline(always)]
pub fn apply(ctx: &TcContext, t: &Translation) -> Result<(), Reason> {
    if t.nat == 0 {
        return Ok(());
    }
    let Some(csum) = checksum_of(t.protocol) else { return Err(Reason::PassFlowPending) };
    if rewrite(ctx, t, &csum) {
        Ok(())
    } else {
        Err(Reason::DropRewriteFailed)
    }
}

/// A function of its own (a BPF subprogram), so its checksum work does not sit in the stack
/// frame of every program path. A plain `bool` back: the BTF of a `Result` carrying data is
/// what the kernel refuses (see `icmp::write_reply`).
#[inline(always)]
fn rewrite(ctx: &TcContext, t: &Translation, csum: &Checksum) -> bool {
    translate(ctx, t, csum).is_ok()
}

#[inline(always)]
fn translate(ctx: &TcContext, t: &Translation, csum: &Checksum) -> Result<(), Reason> {
    let l3 = EthHdr::LEN;
    let l4 = l3 + HEADER_LEN;
    // The addresses the packet carries now.
    let addresses: *const [u8; 8] = parse::header_mut(ctx, l3 + 12).ok_or(Reason::DropRewriteFailed)?;
    // SAFETY: bounds-checked by `header_mut`; copied out at once.
    let a = unsafe { *addresses };
    let (src, dst) = ([a[0], a[1], a[2], a[3]], [a[4], a[5], a[6], a[7]]);
    // An ICMP echo's identifier is its "source port"; it has no destination port.
    let (sport_at, dport_at) = if t.protocol == PROTO_ICMP { (l4 + 4, None) } else { (l4, Some(l4 + 2)) };
    if t.nat & NAT_SRC != 0 {
        address(ctx, l3, l3 + 12, csum, src, t.to_src)?;
        port(ctx, sport_at, l4, csum, t.sport, t.to_sport)?;
    }
    if t.nat & NAT_DST != 0 {
        address(ctx, l3, l3 + 16, csum, dst, t.to_dst)?;
        if let Some(at) = dport_at {
            port(ctx, at, l4, csum, t.dport, t.to_dport)?;
        }
    }
    Ok(())
}

#[inline(always)]
fn address(
    ctx: &TcContext,
    l3: usize,
    at: usize,
    csum: &Checksum,
    from: [u8; 4],
    to: [u8; 4],
) -> Result<(), Reason> {
    if from == to {
        return Ok(());
    }
    let l4 = l3 + HEADER_LEN;
    let (old, new) = (u64::from(u32::from_ne_bytes(from)), u64::from(u32::from_ne_bytes(to)));
    if csum.pseudo {
        ctx.l4_csum_replace(l4 + csum.offset, old, new, l4_flags(csum, 4) | u64::from(BPF_F_PSEUDO_HDR))
            .map_err(|_| Reason::DropRewriteFailed)?;
    }
    // The IPv4 header checksum is its bytes 10 and 11.
    ctx.l3_csum_replace(l3 + 10, old, new, 4).map_err(|_| Reason::DropRewriteFailed)?;
    ctx.store(at, &to, 0).map_err(|_| Reason::DropRewriteFailed)
}

#[inline(always)]
fn port(ctx: &TcContext, at: usize, l4: usize, csum: &Checksum, from: u16, to: u16) -> Result<(), Reason> {
    if from == to {
        return Ok(());
    }
    let (old, new) =
        (u64::from(u16::from_ne_bytes(from.to_be_bytes())), u64::from(u16::from_ne_bytes(to.to_be_bytes())));
    ctx.l4_csum_replace(l4 + csum.offset, old, new, l4_flags(csum, 2))
        .map_err(|_| Reason::DropRewriteFailed)?;
    ctx.store(at, &to.to_be_bytes(), 0).map_err(|_| Reason::DropRewriteFailed)
}

/// The size of the field replaced, and for UDP that a checksum of 0 means none (and a result of
/// 0 is written as 0xffff), as `BPF_F_MARK_MANGLED_0` does.
#[inline(always)]
fn l4_flags(csum: &Checksum, size: u64) -> u64 {
    size | if csum.zero_is_none { u64::from(BPF_F_MARK_MANGLED_0) } else { 0 }
}
