//! Where a packet goes, from the maps: the exact-match endpoint table first (a hash lookup),
//! the route trie (a longest-prefix match) only when that does not settle it. The endpoint
//! table holds exactly the trie's local endpoints, so the decisions are the trie's.

use fastpath_common::{
    ipv4::is_special_destination,
    route::{self, Forward},
    Reason,
};

use crate::maps;

/// The source check for a packet that came in on `ingress`: an endpoint of that interface
/// passes on the exact-match lookup alone, so a pod's own packets pay nothing more; anything
/// else is judged on its route.
#[inline(always)]
pub fn check_source(src: [u8; 4], ingress: u32) -> Result<(), Reason> {
    if maps::endpoint(src).is_some_and(|e| e.ifindex == ingress) {
        return Ok(());
    }
    route::check_source(maps::route(src), ingress)
}

/// The source check for a packet decapsulated from node `outer_src`'s tunnel.
#[inline(always)]
pub fn check_inner_source(inner_src: [u8; 4], outer_src: [u8; 4]) -> Result<(), Reason> {
    // The node's own address needs no lookup (it has no route of its own in the trie).
    if inner_src == outer_src {
        return Ok(());
    }
    route::check_inner_source(inner_src, outer_src, maps::route(inner_src))
}

/// Where a packet from a pod to `dst` goes.
#[inline(always)]
pub fn forward_to(dst: [u8; 4], node_ip: [u8; 4]) -> Result<Forward, Reason> {
    match local(dst, node_ip) {
        Some(local) => Ok(local),
        None => route::forward_to(dst, node_ip, maps::route(dst)),
    }
}

/// Where a decapsulated packet to `dst` goes: only to a pod on this node.
#[inline(always)]
pub fn deliver_after_decap(dst: [u8; 4], node_ip: [u8; 4]) -> Result<Forward, Reason> {
    match local(dst, node_ip) {
        Some(local) => Ok(local),
        None => route::deliver_after_decap(dst, node_ip, maps::route(dst)),
    }
}

#[inline(always)]
fn local(dst: [u8; 4], node_ip: [u8; 4]) -> Option<Forward> {
    if is_special_destination(dst, node_ip) {
        return None;
    }
    maps::endpoint(dst).map(|e| Forward::Local { ifindex: e.ifindex, mac: e.mac })
}
