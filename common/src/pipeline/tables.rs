//! What the decisions look up: the programs' maps (and the kernel's FIB), or the pinned maps
//! `fastpath explain` reads. The lookups only; what to do with their answers is the walk's.

use core::borrow::Borrow;

use crate::{
    flow::{Admission, FlowKey, FlowValue},
    flow6::{FlowKey6, FlowValue6},
    maps::{Endpoint, Node6Config, NodeConfig, PathMtu},
    route::RouteValue,
    route6::RouteValue6,
    Reason,
};

pub trait Tables {
    /// A route as the trie hands it out (a reference to the map's value, or a copy).
    type Route: Borrow<RouteValue>;
    /// A flow direction's entry as the table hands it out (the programs' is the live value).
    type Flow: Borrow<FlowValue>;
    /// How to reach an address on the underlay, as the kernel's FIB says.
    type Hop;
    /// An IPv6 route as the trie hands it out.
    type Route6: Borrow<RouteValue6>;
    /// How to reach an IPv6 address on the underlay, as the kernel's FIB says.
    type Hop6;
    /// An IPv6 flow direction's entry as the table hands it out.
    type Flow6: Borrow<FlowValue6>;

    /// This node's settings, once the daemon has written them (else [`Reason::PassNotReady`]).
    fn node(&self) -> Result<&NodeConfig, Reason>;
    /// The route trie's longest match for `addr`.
    fn route(&self, addr: [u8; 4]) -> Option<Self::Route>;
    /// The pod on this node with address `addr`.
    fn endpoint(&self, addr: [u8; 4]) -> Option<Endpoint>;
    /// The pod on this node with IPv6 address `addr`.
    fn endpoint6(&self, addr: &[u8; 16]) -> Option<Endpoint>;
    /// Whether `addr` is a node this one accepts tunnels from.
    fn is_peer(&self, addr: [u8; 4]) -> bool;
    /// What a router said about the path toward node `peer`.
    fn path_mtu(&self, peer: [u8; 4]) -> Option<PathMtu>;
    /// `bpf_ktime_get_ns()` now.
    fn now_ns(&self) -> u64;
    /// Remember what a router said about the path toward node `peer` (the programs write it;
    /// `explain` only tells).
    fn learn_path_mtu(&self, peer: [u8; 4], learned: PathMtu);
    /// What a router said about the path toward node `peer`'s IPv6 address.
    fn path_mtu6(&self, peer: &[u8; 16]) -> Option<PathMtu>;
    /// [`Tables::learn_path_mtu`] for a node's IPv6 address.
    fn learn_path_mtu6(&self, peer: &[u8; 16], learned: PathMtu);
    /// The flow table's entry for a direction (`--trust kernel`).
    fn flow(&self, key: &FlowKey) -> Option<Self::Flow>;
    /// Record what the gate decided for a packet of `flow`'s direction `key`: its state, its
    /// counts, the other direction closed too (the programs; `explain` records nothing).
    fn settle(&self, flow: &mut Self::Flow, key: &FlowKey, admission: &Admission);
    /// How to reach `addr` over the underlay ([`Reason::PassFibFailed`] when the FIB cannot).
    fn hop(&self, addr: [u8; 4]) -> Result<Self::Hop, Reason>;
    /// The interface a hop leaves by.
    fn hop_ifindex(&self, hop: &Self::Hop) -> u32;
    /// This node's IPv6 side, once the daemon has written it.
    fn node6(&self) -> Option<&Node6Config>;
    /// The IPv6 route trie's longest match for `addr`.
    fn route6(&self, addr: &[u8; 16]) -> Option<Self::Route6>;
    /// Whether `addr` is a node this one accepts IPv6 VXLAN from.
    fn is_peer6(&self, addr: &[u8; 16]) -> bool;
    /// How to reach `addr` over the underlay ([`Reason::PassFibFailed`] when the FIB cannot).
    fn hop6(&self, addr: &[u8; 16]) -> Result<Self::Hop6, Reason>;
    /// The IPv6 flow table's entry for a direction (`--trust kernel`).
    fn flow6(&self, key: &FlowKey6) -> Option<Self::Flow6>;
    /// [`Tables::settle`] for an IPv6 direction.
    fn settle6(&self, flow: &mut Self::Flow6, key: &FlowKey6, admission: &Admission);

    /// The MAC of `addr` on the underlay, as the kernel knows it: who a plain packet routed
    /// through `addr` comes from.
    fn sender_mac(&self, addr: [u8; 4]) -> Option<[u8; 6]>;
}
