//! The path MTU toward other nodes, as routers on the way teach it: a "fragmentation needed"
//! arriving on the underlay that quotes one of this node's tunnel packets lowers the MTU of the
//! tunnel toward that node for 10 minutes, as the kernel's own tunnels do (`ipip_err`,
//! `vxlan_err_lookup` → `ipv4_update_pmtu`). The pod then gets "fragmentation needed" with the
//! lower tunnel MTU from its next packet too big for it, and its TCP settles on the smaller size.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TcContext};
use fastpath_common::{
    icmp::{path_mtu_report, ARRIVING_LEN},
    ipv4::{Ipv4Fields, HEADER_LEN, PROTO_ICMP},
    maps::{NodeConfig, PathMtu},
    Reason,
};
use network_types::eth::EthHdr;

use crate::{maps::FP_PATH_MTU, parse};

/// If the packet is a router's "fragmentation needed" about one of this node's tunnel packets,
/// note the path MTU toward the node it was going to. The message goes on to the kernel either
/// way (its own sockets and tunnels may care).
#[inline(always)]
pub fn learn(ctx: &TcContext, node: &NodeConfig, outer: &Ipv4Fields) -> Option<Reason> {
    if outer.protocol != PROTO_ICMP || outer.dst != node.node_ip {
        return None;
    }
    let message: *const [u8; ARRIVING_LEN] = parse::header_mut(ctx, EthHdr::LEN + HEADER_LEN)?;
    let vxlan_port = node.has_vxlan().then_some(node.vxlan.port);
    // SAFETY: bounds-checked by `header_mut`.
    let (peer, mtu) = path_mtu_report(unsafe { &*message }, node.node_ip, vxlan_port)?;
    let learned = PathMtu::learned(mtu, now_ns())?;
    // A full table forgets its least recently used node; that only costs one more ICMP.
    let _ = FP_PATH_MTU.insert(peer, learned, 0);
    Some(Reason::PathMtuLearned)
}

/// The largest inner packet a tunnel adding `overhead` bytes may carry toward `peer`: `mtu` (the
/// tunnel's own), or less where a router said the path is narrower and that still holds.
#[inline(always)]
pub fn limit(mtu: u32, peer: [u8; 4], overhead: u32) -> u32 {
    // SAFETY: a live map value, copied out at once.
    let Some(entry) = FP_PATH_MTU.get_ptr(peer).map(|e| unsafe { *e }) else {
        return mtu;
    };
    match entry.inner_mtu(overhead, now_ns()) {
        Some(path) if path < mtu => path,
        _ => mtu,
    }
}

#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: a plain helper call.
    unsafe { bpf_ktime_get_ns() }
}
