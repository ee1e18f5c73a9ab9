//! What the walk noticed on its way, for whoever wants to tell it: nothing in the programs
//! ([`Silent`], which the compiler removes with the notes), sentences in `fastpath explain`.
//! A note carries only what the walk already knows; it never costs the programs a lookup.

use crate::{
    flow::{Admission, FlowKey, FlowValue},
    flow6::{FlowKey6, FlowValue6},
    route::{Forward, RouteValue},
    tunnel::Tunnel,
    Reason,
};

/// One thing the walk noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    /// An ARP request from a pod, answered: `asker` asks for `target`.
    ArpAnswered { asker: [u8; 4], target: [u8; 4] },
    /// A pod's IPv6 neighbour solicitation, answered: `asker` asks for `target`.
    NdpAnswered { asker: [u8; 16], target: [u8; 16] },
    /// The source check of an IPv6 packet from a pod that arrived on `ingress`.
    Source6 { src: [u8; 16], ingress: u32, verdict: Result<(), Reason> },
    /// An IPv6 packet to `dst`, a pod on this node behind `ifindex`.
    Destination6 { dst: [u8; 16], ifindex: u32 },
    /// An IPv6 packet to `dst`, no pod here: what the IPv6 route trie says.
    Route6 { dst: [u8; 16], to: Result<crate::route6::Forward6, Reason> },
    /// IPv6 VXLAN to this node from `node`: whether it is a node this one accepts tunnels from.
    TunnelFrom6 { node: [u8; 16], known: bool },
    /// The source check of a packet decapsulated from IPv6 VXLAN.
    InnerSource6 { src: [u8; 16], node: [u8; 16], verdict: Result<(), Reason> },
    /// A packet decapsulated from IPv6 VXLAN is for `dst`: whether that is a pod here.
    Delivery6 { dst: [u8; 16], pod: bool },
    /// The source check of a packet from a pod: it arrived on `ingress`; `own` when the
    /// endpoint table holds `src` on that interface (then the route was not looked up).
    Source { src: [u8; 4], ingress: u32, own: bool, route: Option<RouteValue>, verdict: Result<(), Reason> },
    /// Where a pod's packet to `dst` goes, by the routes.
    Destination { dst: [u8; 4], to: Forward },
    /// A decapsulated (or plain, delivered) packet's destination is a pod here.
    Delivery { dst: [u8; 4] },
    /// `--trust routes`: no flow gate.
    TrustRoutes,
    /// `--trust kernel`: the flow gate judges.
    TrustKernel,
    /// No flow can be named for the packet.
    Unnamed,
    /// The flow table holds no entry for the direction.
    NoFlow { key: FlowKey },
    /// The flow table's entry for the direction, and what the gate made of it.
    Flow { key: FlowKey, value: FlowValue, admission: Admission },
    /// The flow is not approved yet: what the routes would have the fast path do once it is.
    Pending { then: Pending },
    /// The IPv6 flow table holds no entry for the direction.
    NoFlow6 { key: FlowKey6 },
    /// The IPv6 flow table's entry for the direction, and what the gate made of it.
    Flow6 { key: FlowKey6, value: FlowValue6, admission: Admission },
    /// Conntrack translates it to an address no route holds: out through the underlay as the
    /// FIB says (natOutgoing's outside world).
    ByFib { dst: [u8; 4] },
    /// A VXLAN route on a node without a `vxlan.calico` the programs stand in for.
    NoVxlanDevice,
    /// The packet is larger than the way out carries.
    TooBig { carried: u32, mtu: u32, limit: Limit },
    /// From the underlay: not a plain, option-less IPv4 frame.
    NotPlainIpv4,
    /// A router's "fragmentation needed" about one of this node's tunnel packets.
    PathMtuReport { peer: [u8; 4], mtu: u32 },
    /// A router's ICMPv6 "packet too big" about one of this node's IPv6 VXLAN packets to `peer`.
    PathMtuReport6 { peer: [u8; 16], mtu: u32 },
    /// From the underlay to `dst`, which is not this node.
    NotToThisNode { dst: [u8; 4] },
    /// To this node, but neither IPIP nor VXLAN to its `vxlan.calico` port.
    NotATunnel,
    /// A tunnel from `node`, which is not one this node accepts tunnels from.
    UnknownPeer { node: [u8; 4] },
    /// A tunnel from a known node to this one.
    TunnelFrom { tunnel: Tunnel, node: [u8; 4] },
    /// VXLAN to this node's port: whether its headers are what `vxlan.calico` takes apart.
    VxlanHeaders { accepted: bool },
    /// The source check of a decapsulated packet.
    InnerSource { src: [u8; 4], node: [u8; 4], verdict: Result<(), Reason> },
    /// `--trust routes`: plain traffic from the underlay is the kernel's.
    PlainUnderRoutes,
    /// Plain from the underlay to `dst`, which is no pod here.
    NotOurPod { dst: [u8; 4] },
    /// Plain from the underlay from `src`, a pod of this node.
    FromOurPod { src: [u8; 4] },
    /// Plain to this node, of no flow the fast path carries: the host's own.
    HostsOwn { dst: [u8; 4] },
}

/// What the fast path would do with a pending flow's packet once conntrack approves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// Carry it by this route.
    Forward(Forward),
    /// Take it apart (IPIP, VXLAN or IPv6 VXLAN) and deliver it to a pod here.
    Decapsulate { ifindex: u32, mac: [u8; 6] },
    /// Deliver it, as it is, to `dst`.
    Deliver { dst: [u8; 4] },
    /// Carry the IPv6 packet by this route (the hop not yet asked for).
    Carry6(crate::route6::Forward6),
}

/// The limit a packet too big exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The tunnel's MTU toward `peer`; `path` when a router said the path carries less.
    Tunnel { tunnel: Tunnel, peer: [u8; 4], path: Option<u32> },
    /// The underlay's MTU.
    Underlay,
    /// `vxlan-v6.calico`'s MTU toward `peer`; `path` when a router said the path carries less.
    Vxlan6 { peer: [u8; 16], path: Option<u32> },
}

pub trait Trace {
    fn note(&mut self, note: Note);
}

/// No trace: the programs'.
pub struct Silent;

impl Trace for Silent {
    #[inline(always)]
    fn note(&mut self, _: Note) {}
}
