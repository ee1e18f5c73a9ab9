//! The steps the walks share: the source checks, the destination, the flow gate, the MTU, the
//! path MTU a router teaches.

use core::borrow::Borrow;

use super::{
    frame::{self, Frame},
    Decision, Limit, Note, Plan, Tables, Trace,
};
use crate::{
    flow::{self, Arrival, Arrived, Translation},
    ipv4::{is_special_destination, Ipv4Fields},
    maps::{NodeConfig, PathMtu},
    route::{self, Forward, RouteValue},
    Reason,
};

/// Where a packet arrived, as the program that saw it can tell.
pub enum Seen {
    /// From a pod, on the interface with this ifindex.
    Pod(u32),
    /// In this tunnel from this node.
    Tunnel(Arrival, [u8; 4]),
    /// Unencapsulated from the underlay: the sender is known by its MAC alone.
    Plain,
}

/// The source check for a packet that came in on `ingress`: an endpoint of that interface
/// passes on the exact-match lookup alone, so a pod's own packets pay nothing more; anything
/// else is judged on its route ([`route::check_source`]).
#[inline(always)]
pub fn check_source<T: Tables, R: Trace>(
    tables: &T,
    trace: &mut R,
    src: [u8; 4],
    ingress: u32,
) -> Result<(), Reason> {
    if tables.endpoint(src).is_some_and(|e| e.ifindex == ingress) {
        trace.note(Note::Source { src, ingress, own: true, route: None, verdict: Ok(()) });
        return Ok(());
    }
    let route = tables.route(src);
    let route = route.as_ref().map(Borrow::borrow);
    let verdict = route::check_source(route, ingress);
    trace.note(Note::Source { src, ingress, own: false, route: route.copied(), verdict });
    verdict
}

/// The source check for a packet decapsulated from node `outer_src`'s tunnel
/// ([`route::check_inner_source`]).
#[inline(always)]
pub fn check_inner_source<T: Tables, R: Trace>(
    tables: &T,
    trace: &mut R,
    inner_src: [u8; 4],
    outer_src: [u8; 4],
) -> Result<(), Reason> {
    // The node's own address needs no lookup (it has no route of its own in the trie).
    let verdict = if inner_src == outer_src {
        Ok(())
    } else {
        let route = tables.route(inner_src);
        route::check_inner_source(inner_src, outer_src, route.as_ref().map(Borrow::borrow))
    };
    trace.note(Note::InnerSource { src: inner_src, node: outer_src, verdict });
    verdict
}

/// Where a packet from a pod to `dst` goes: the exact-match endpoint table first (a hash
/// lookup), the route trie (a longest-prefix match) only when that does not settle it. The
/// endpoint table holds exactly the trie's local endpoints, so the decisions are the trie's.
#[inline(always)]
pub fn destination<T: Tables, R: Trace>(
    tables: &T,
    trace: &mut R,
    node: &NodeConfig,
    dst: [u8; 4],
) -> Result<Forward, Reason> {
    let to = routed(tables, node, dst, route::forward_to)?;
    trace.note(Note::Destination { dst, to });
    Ok(to)
}

/// Where a decapsulated packet to `dst` goes: only to a pod on this node.
#[inline(always)]
pub fn delivery<T: Tables, R: Trace>(
    tables: &T,
    trace: &mut R,
    node: &NodeConfig,
    dst: [u8; 4],
) -> Result<Forward, Reason> {
    let to = routed(tables, node, dst, route::deliver_after_decap)?;
    trace.note(Note::Delivery { dst });
    Ok(to)
}

/// What a route allows a packet to `dst` (the first address) from a node (the second):
/// [`route::forward_to`] or [`route::deliver_after_decap`].
type ByRoute = fn([u8; 4], [u8; 4], Option<&RouteValue>) -> Result<Forward, Reason>;

/// `dst`'s way: an endpoint of this node by the exact-match table, else what `by_route` makes
/// of its route.
#[inline(always)]
fn routed<T: Tables>(
    tables: &T,
    node: &NodeConfig,
    dst: [u8; 4],
    by_route: ByRoute,
) -> Result<Forward, Reason> {
    match local(tables, node, dst) {
        Some(local) => Ok(local),
        None => by_route(dst, node.node_ip, tables.route(dst).as_ref().map(Borrow::borrow)),
    }
}

#[inline(always)]
fn local<T: Tables>(tables: &T, node: &NodeConfig, dst: [u8; 4]) -> Option<Forward> {
    if is_special_destination(dst, node.node_ip) {
        return None;
    }
    tables.endpoint(dst).map(|e| Forward::Local { ifindex: e.ifindex, mac: e.mac })
}

/// The flow gate: whether the direction of the packet at `l3` may take the fast path, and what
/// its flow's entry says to rewrite. Under `--trust routes` there is no entry and nothing to
/// rewrite; under `--trust kernel` any packet without an approved entry, or arriving elsewhere
/// than its flow enters, goes to the kernel ([`flow::admission`]).
///
/// Always a whole `Translation`, never an `Option` of one: LLVM reads an absent one's fields
/// speculatively from whatever its stack slot held, which the verifier refuses when that was a
/// packet pointer.
#[inline(always)]
pub fn gate<F: Frame, T: Tables, R: Trace>(
    frame: &F,
    tables: &T,
    trace: &mut R,
    node: &NodeConfig,
    l3: usize,
    ip: &Ipv4Fields,
    seen: Seen,
) -> Result<Translation, Reason> {
    if !node.trusts_kernel() {
        trace.note(Note::TrustRoutes);
        return Ok(Translation::none(ip.protocol, ip.src, ip.dst));
    }
    trace.note(Note::TrustKernel);
    let Some((key, signal)) = frame::flow_name(frame, l3, ip) else {
        trace.note(Note::Unnamed);
        return Err(Reason::PassFlowUntracked);
    };
    let Some(mut entry) = tables.flow(&key) else {
        trace.note(Note::NoFlow { key });
        return Err(Reason::PassFlowPending);
    };
    let value = entry.borrow();
    let arrived = match seen {
        Seen::Pod(ifindex) => Arrived::from_pod(ifindex),
        Seen::Tunnel(arrival, node) => Arrived::from_underlay(arrival, node),
        Seen::Plain => Arrived::from_underlay(Arrival::Plain, plain_sender(frame, tables, value.peer)),
    };
    let admission = flow::admission(value, &arrived, signal);
    trace.note(Note::Flow { key, value: *value, admission });
    tables.settle(&mut entry, &key, &admission);
    admission.verdict?;
    Ok(entry.borrow().translation(&key))
}

/// `expected` when the frame's Ethernet source is its MAC on the underlay (as the kernel's FIB
/// and neighbour table know it), else nobody: a plain packet takes the fast path only from the
/// node (or gateway) its source is routed through.
#[inline(always)]
fn plain_sender<F: Frame, T: Tables>(frame: &F, tables: &T, expected: [u8; 4]) -> [u8; 4] {
    let Some(source) = frame::source_mac(frame) else { return [0; 4] };
    match tables.sender_mac(expected) {
        Some(mac) if mac == source => expected,
        _ => [0; 4],
    }
}

/// `None` when a packet fits the way `to` leaves: nothing to check into a pod here; a tunnel's MTU
/// (or less, where a router taught the path is narrower); the underlay's for a plain route.
#[inline(always)]
pub fn fits<F: Frame, T: Tables, R: Trace>(
    frame: &F,
    tables: &T,
    trace: &mut R,
    node: &NodeConfig,
    ip: &Ipv4Fields,
    to: &Forward,
) -> Option<Decision<T::Hop>> {
    match *to {
        Forward::Local { .. } => None,
        Forward::Encapsulate { next_hop, tunnel, .. } => {
            // The path MTU toward the node, while a router's word still holds and is lower.
            let (mtu, path) = PathMtu::narrowest(
                tables.path_mtu(next_hop),
                tunnel.overhead(),
                node.tunnel_mtu(&tunnel),
                || tables.now_ns(),
            );
            fits_mtu(frame, trace, ip, mtu, Limit::Tunnel { tunnel, peer: next_hop, path })
        }
        Forward::Underlay { .. } => fits_mtu(frame, trace, ip, node.underlay_mtu, Limit::Underlay),
    }
}

/// `None` when the packet (each segment, for a GSO packet) fits `mtu`; otherwise what a router
/// does instead: DF gets ICMP "fragmentation needed" with that MTU, the rest the kernel may fragment.
#[inline(always)]
pub fn fits_mtu<F: Frame, H, R: Trace>(
    frame: &F,
    trace: &mut R,
    ip: &Ipv4Fields,
    mtu: u32,
    limit: Limit,
) -> Option<Decision<H>> {
    let carried = frame::largest_segment(frame, ip);
    if carried <= mtu {
        return None;
    }
    trace.note(Note::TooBig { carried, mtu, limit });
    Some(if ip.dont_fragment() { Ok(Plan::FragNeeded { mtu: mtu as u16 }) } else { Err(Reason::PassTooBig) })
}

/// A router's "fragmentation needed" about one of this node's tunnel packets teaches the path
/// MTU toward the node it was going to, for 10 minutes, as the kernel's own tunnels do
/// (`ipip_err`, `vxlan_err_lookup` → `ipv4_update_pmtu`). The message goes on to the kernel
/// either way (its own sockets and tunnels may care).
#[inline(always)]
pub fn learn_path_mtu<F: Frame, T: Tables, R: Trace>(
    frame: &F,
    tables: &T,
    trace: &mut R,
    node: &NodeConfig,
    outer: &Ipv4Fields,
) -> Result<(), Reason> {
    if outer.protocol != crate::ipv4::PROTO_ICMP || outer.dst != node.node_ip {
        return Ok(());
    }
    let vxlan_port = node.has_vxlan().then_some(node.vxlan.port);
    let Some((peer, mtu)) = frame::icmp_report(frame, node.node_ip, vxlan_port) else { return Ok(()) };
    let Some(learned) = PathMtu::learned(mtu, tables.now_ns()) else { return Ok(()) };
    // A full table forgets its least recently used node; that only costs one more ICMP.
    tables.learn_path_mtu(peer, learned);
    trace.note(Note::PathMtuReport { peer, mtu: learned.mtu });
    Err(Reason::PathMtuLearned)
}
