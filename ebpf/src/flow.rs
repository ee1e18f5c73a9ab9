//! `--trust kernel` in the programs: the flow gate. The daemon writes an entry per flow direction
//! the kernel's conntrack holds a confirmed entry for and has forwarded; a packet takes the fast
//! path only by such an entry, arriving where its flow enters, and then does what the entry says
//! (its NAT). The decisions themselves are `fastpath_common::flow`'s.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TcContext};
use fastpath_common::{
    flow::{self, Arrival, Arrived, FlowKey, Signal, Translation, PORTS_LEN, PROTO_TCP},
    ipv4::{Ipv4Fields, HEADER_LEN},
    maps::NodeConfig,
    Reason,
};
use network_types::eth::EthHdr;

use crate::{
    fib::{self, NextHop},
    maps::FP_FLOWS,
    parse,
};

/// The flow direction of the option-less IPv4 packet at `l3`, if it has one
/// ([`flow::ports_of`]).
#[inline(always)]
pub fn key(ctx: &TcContext, l3: usize, ip: &Ipv4Fields) -> Option<FlowKey> {
    let head: *const [u8; PORTS_LEN] = parse::header_mut(ctx, l3 + HEADER_LEN)?;
    // SAFETY: bounds-checked by `header_mut`.
    let ports = flow::ports_of(ip.protocol, unsafe { &*head })?;
    Some(FlowKey::new(ip.src, ip.dst, ip.protocol, ports))
}

/// The flow direction of the option-less IPv4 packet at `l3`, and what its TCP flags say.
#[inline(always)]
pub fn name(ctx: &TcContext, l3: usize, ip: &Ipv4Fields) -> Result<(FlowKey, Signal), Reason> {
    let key = key(ctx, l3, ip).ok_or(Reason::PassFlowUntracked)?;
    if ip.protocol != PROTO_TCP {
        return Ok((key, Signal::default()));
    }
    // The flags are the 14th byte of the TCP header.
    let tcp: *const [u8; 14] = parse::header_mut(ctx, l3 + HEADER_LEN).ok_or(Reason::PassFlowUntracked)?;
    // SAFETY: bounds-checked by `header_mut`.
    Ok((key, Signal::of_tcp_flags(unsafe { (*tcp)[13] })))
}

#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: a plain helper call.
    unsafe { bpf_ktime_get_ns() }
}

/// Where a packet arrived, as the program that saw it can tell.
pub enum Seen {
    /// From a pod, on the interface with this ifindex.
    Pod(u32),
    /// In this tunnel from this node.
    Tunnel(Arrival, [u8; 4]),
    /// Unencapsulated from the underlay: the sender is known by its MAC alone.
    Plain,
}

/// The direction of the packet at `l3` may take the fast path: what its flow's entry says to
/// rewrite. Under `--trust routes` there is no entry and nothing to rewrite; under `--trust
/// kernel` any packet without an approved entry, or arriving elsewhere than its flow enters, goes
/// to the kernel.
///
/// Always a whole `Translation`, never an `Option` of one: LLVM reads an absent one's fields
/// speculatively from whatever its stack slot held, which the verifier refuses when that was a
/// packet pointer.
#[inline(always)]
pub fn admit(
    ctx: &TcContext,
    node: &NodeConfig,
    l3: usize,
    ip: &Ipv4Fields,
    seen: Seen,
) -> Result<Translation, Reason> {
    if !node.trusts_kernel() {
        return Ok(Translation::none(ip.protocol, ip.src, ip.dst));
    }
    let (key, signal) = name(ctx, l3, ip)?;
    let entry = FP_FLOWS.get_ptr_mut(key).ok_or(Reason::PassFlowPending)?;
    // SAFETY: a live map value. Another CPU writing the same entry at once can only cost a count
    // or a timestamp; the state written is always one of the decisions.
    let entry = unsafe { &mut *entry };
    let arrived = match seen {
        Seen::Pod(ifindex) => Arrived::from_pod(ifindex),
        Seen::Tunnel(arrival, node) => Arrived::from_underlay(arrival, node),
        Seen::Plain => Arrived::from_underlay(Arrival::Plain, plain_sender(ctx, node, entry.peer)),
    };
    let admission = flow::admission(entry, &arrived, signal);
    entry.state = admission.state as u8;
    if admission.close_reply {
        close(&entry.reply_key(&key));
    }
    match admission.verdict {
        Ok(()) => {
            entry.last_seen_ns = now_ns();
            entry.fast_packets += 1;
            Ok(entry.translation(&key))
        }
        Err(reason) => {
            entry.kernel_packets += 1;
            Err(reason)
        }
    }
}

/// Hand the direction `key` to the kernel from its next packet on, if the table holds it.
///
/// A subprogram of its own: inlined, its map lookup's frame would sit on `from_pod`'s stack,
/// already near the verifier's 512 bytes.
#[inline(never)]
fn close(key: &FlowKey) {
    if let Some(entry) = FP_FLOWS.get_ptr_mut(*key) {
        // SAFETY: a live map value; a state byte, written whole.
        unsafe { (*entry).state = flow::FlowState::Closing as u8 };
    }
}

/// `expected` when the frame's Ethernet source is its MAC on the underlay (as the kernel's FIB
/// and neighbour table know it), else nobody: a plain packet takes the fast path only from the
/// node (or gateway) its source is routed through.
#[inline(always)]
fn plain_sender(ctx: &TcContext, node: &NodeConfig, expected: [u8; 4]) -> [u8; 4] {
    let Some(eth) = parse::header_mut::<EthHdr>(ctx, 0) else { return [0; 4] };
    // SAFETY: bounds-checked by `header_mut`.
    let source = unsafe { (*eth).src_addr };
    match fib::lookup(ctx, node, expected) {
        Ok(NextHop::Resolved { dmac, .. }) if dmac == source => expected,
        _ => [0; 4],
    }
}
