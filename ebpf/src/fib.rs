//! The underlay next hop's MACs, from the kernel's own FIB and neighbour table, asked once per
//! next hop and change: a FIB lookup costs more than all the rest of forwarding a packet
//! (`tests/examples/program_cost.rs`), so its answer is kept in `FP_NEXT_HOPS` until the daemon
//! says the underlay's neighbours or routes changed.
//!
//! `bpf_fib_lookup` is asked as if this node sent the packet (BPF_FIB_LOOKUP_OUTPUT), so it
//! needs no forwarding sysctl, and with `tot_len` 0 so that GSO packets are not refused as too
//! big (the MTU is checked by us, per segment).

use core::mem::size_of;

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup, bpf_redir_neigh, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        BPF_FIB_LOOKUP_OUTPUT,
    },
    helpers::{bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use fastpath_common::{
    maps::{NextHopEntry, Node6Config, NodeConfig},
    Reason,
};

use crate::maps::{Scratch, FP_NEXT_HOPS, FP_NEXT_HOPS6, FP_SCRATCH, SCRATCH_FIB};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// How to reach a next hop on the underlay.
pub enum NextHop {
    /// The kernel knows its MAC: write these and redirect.
    Resolved { ifindex: u32, smac: [u8; 6], dmac: [u8; 6] },
    /// The kernel has no neighbour entry yet: let `bpf_redirect_neigh` resolve it.
    Unresolved { ifindex: u32, addr: [u8; 4] },
}

/// How to reach `addr` over the underlay: from the next-hop cache while the daemon's generation
/// says nothing changed since the FIB was asked, else from the FIB (remembered when resolved).
#[inline(always)]
pub fn lookup(ctx: &TcContext, node: &NodeConfig, addr: [u8; 4]) -> Result<NextHop, Reason> {
    if let Some(hop) = cached(node, addr) {
        return Ok(hop);
    }
    let hop = ask_fib(ctx, node, addr)?;
    if let NextHop::Resolved { ifindex, smac, dmac } = hop {
        let entry = NextHopEntry { generation: node.next_hop_generation, ifindex, smac, dmac };
        // A full cache forgets its least recently used next hop; failing to remember only costs
        // the next packet a FIB lookup.
        let _ = FP_NEXT_HOPS.insert(addr, entry, 0);
    }
    Ok(hop)
}

#[inline(always)]
fn cached(node: &NodeConfig, addr: [u8; 4]) -> Option<NextHop> {
    // SAFETY: a live map value, copied out at once.
    let entry = unsafe { *FP_NEXT_HOPS.get_ptr(addr)? };
    (entry.generation == node.next_hop_generation).then_some(NextHop::Resolved {
        ifindex: entry.ifindex,
        smac: entry.smac,
        dmac: entry.dmac,
    })
}

/// A function of its own (a BPF subprogram), its parameters in `FP_SCRATCH`: they would
/// otherwise sit in the stack frame of every path that may ask.
#[inline(never)]
fn ask_fib(ctx: &TcContext, node: &NodeConfig, addr: [u8; 4]) -> Result<NextHop, Reason> {
    const _: () = assert!(size_of::<bpf_fib_lookup>() <= size_of::<Scratch>());
    let params = FP_SCRATCH.get_ptr_mut(SCRATCH_FIB).ok_or(Reason::PassFibFailed)?.cast::<bpf_fib_lookup>();
    // SAFETY: this CPU's slot, room for the struct at its alignment; no other program runs on this
    // CPU until this one returns. `bpf_fib_lookup` is plain old data: all-zero is a valid start.
    let params = unsafe {
        params.write_bytes(0, 1);
        &mut *params
    };
    params.family = AF_INET;
    params.ifindex = node.underlay_ifindex;
    params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(node.node_ip);
    params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(addr);
    // SAFETY: the params are of the size we pass.
    let rc = unsafe {
        aya_ebpf::helpers::bpf_fib_lookup(
            ctx.skb.skb.cast(),
            params,
            size_of::<bpf_fib_lookup>() as i32,
            BPF_FIB_LOOKUP_OUTPUT,
        )
    };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => {
            Ok(NextHop::Resolved { ifindex: params.ifindex, smac: params.smac, dmac: params.dmac })
        }
        // SAFETY: on NO_NEIGH the kernel filled the next hop's address in `ipv4_dst`.
        BPF_FIB_LKUP_RET_NO_NEIGH => Ok(NextHop::Unresolved {
            ifindex: params.ifindex,
            addr: unsafe { params.__bindgen_anon_4.ipv4_dst }.to_ne_bytes(),
        }),
        _ => Err(Reason::PassFibFailed),
    }
}

/// The interface the FIB sends toward `hop` out of.
#[inline(always)]
pub fn ifindex(hop: &NextHop) -> u32 {
    match hop {
        NextHop::Resolved { ifindex, .. } | NextHop::Unresolved { ifindex, .. } => *ifindex,
    }
}

/// Send the packet out toward `next_hop`. For a resolved hop the caller has written the MACs.
#[inline(always)]
pub fn redirect(next_hop: &NextHop) -> i32 {
    match next_hop {
        // SAFETY: a plain helper call; with flags 0 it returns TC_ACT_REDIRECT.
        NextHop::Resolved { ifindex, .. } => unsafe { bpf_redirect(*ifindex, 0) as i32 },
        NextHop::Unresolved { ifindex, addr } => {
            // SAFETY: as above; the neighbour params are ours and of the size we pass. The kernel
            // resolves (and learns) the neighbour, as its own output path would.
            let mut nh: bpf_redir_neigh = unsafe { core::mem::zeroed() };
            nh.nh_family = u32::from(AF_INET);
            nh.__bindgen_anon_1.ipv4_nh = u32::from_ne_bytes(*addr);
            unsafe { bpf_redirect_neigh(*ifindex, &mut nh, size_of::<bpf_redir_neigh>() as i32, 0) as i32 }
        }
    }
}

/// How to reach an IPv6 next hop on the underlay.
pub enum NextHop6 {
    /// The kernel knows its MAC: write these and redirect.
    Resolved { ifindex: u32, smac: [u8; 6], dmac: [u8; 6] },
    /// The kernel has no neighbour entry for `addr` yet: let `bpf_redirect_neigh` resolve it.
    Unresolved { ifindex: u32, addr: [u8; 16] },
}

/// [`lookup`] for an IPv6 address: the cache `FP_NEXT_HOPS6` under the same generation, else the
/// FIB, asked from this node's IPv6 address.
#[inline(always)]
pub fn lookup6(
    ctx: &TcContext,
    node: &NodeConfig,
    node6: &Node6Config,
    addr: &[u8; 16],
) -> Result<NextHop6, Reason> {
    // SAFETY: a live map value, copied out at once.
    if let Some(entry) = FP_NEXT_HOPS6.get_ptr(addr).map(|e| unsafe { *e }) {
        if entry.generation == node.next_hop_generation {
            return Ok(NextHop6::Resolved { ifindex: entry.ifindex, smac: entry.smac, dmac: entry.dmac });
        }
    }
    let hop = ask_fib6(ctx, node, node6, addr)?;
    if let NextHop6::Resolved { ifindex, smac, dmac } = hop {
        let entry = NextHopEntry { generation: node.next_hop_generation, ifindex, smac, dmac };
        // As for IPv4: failing to remember only costs the next packet a FIB lookup.
        let _ = FP_NEXT_HOPS6.insert(addr, entry, 0);
    }
    Ok(hop)
}

/// [`ask_fib`] for IPv6, a subprogram of its own too, its parameters in the same scratch slot.
#[inline(never)]
fn ask_fib6(
    ctx: &TcContext,
    node: &NodeConfig,
    node6: &Node6Config,
    addr: &[u8; 16],
) -> Result<NextHop6, Reason> {
    let params = FP_SCRATCH.get_ptr_mut(SCRATCH_FIB).ok_or(Reason::PassFibFailed)?.cast::<bpf_fib_lookup>();
    // SAFETY: as in `ask_fib`.
    let params = unsafe {
        params.write_bytes(0, 1);
        &mut *params
    };
    params.family = AF_INET6;
    params.ifindex = node.underlay_ifindex;
    // SAFETY: the address fields are 16 bytes of a union of plain integers; any bytes are valid.
    unsafe {
        params.__bindgen_anon_3.ipv6_src = core::mem::transmute::<[u8; 16], [u32; 4]>(node6.node_ip);
        params.__bindgen_anon_4.ipv6_dst = core::mem::transmute::<[u8; 16], [u32; 4]>(*addr);
    }
    // SAFETY: the params are of the size we pass.
    let rc = unsafe {
        aya_ebpf::helpers::bpf_fib_lookup(
            ctx.skb.skb.cast(),
            params,
            size_of::<bpf_fib_lookup>() as i32,
            BPF_FIB_LOOKUP_OUTPUT,
        )
    };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => {
            Ok(NextHop6::Resolved { ifindex: params.ifindex, smac: params.smac, dmac: params.dmac })
        }
        // SAFETY: on NO_NEIGH the kernel filled the next hop's address in `ipv6_dst`.
        BPF_FIB_LKUP_RET_NO_NEIGH => Ok(NextHop6::Unresolved {
            ifindex: params.ifindex,
            addr: unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(params.__bindgen_anon_4.ipv6_dst) },
        }),
        _ => Err(Reason::PassFibFailed),
    }
}

/// Send the packet out toward `next_hop`. For a resolved hop the caller has written the MACs.
#[inline(always)]
pub fn redirect6(next_hop: &NextHop6) -> i32 {
    match next_hop {
        // SAFETY: a plain helper call; with flags 0 it returns TC_ACT_REDIRECT.
        NextHop6::Resolved { ifindex, .. } => unsafe { bpf_redirect(*ifindex, 0) as i32 },
        NextHop6::Unresolved { ifindex, addr } => {
            // SAFETY: as in `redirect`.
            let mut nh: bpf_redir_neigh = unsafe { core::mem::zeroed() };
            nh.nh_family = u32::from(AF_INET6);
            // SAFETY: 16 bytes of a union of plain integers.
            nh.__bindgen_anon_1.ipv6_nh = unsafe { core::mem::transmute::<[u8; 16], [u32; 4]>(*addr) };
            unsafe { bpf_redirect_neigh(*ifindex, &mut nh, size_of::<bpf_redir_neigh>() as i32, 0) as i32 }
        }
    }
}
