//! The programs' decisions, written once. `from_pod` and `from_underlay` walk a frame through
//! the same steps whether the eBPF programs run them on a packet or `fastpath explain` runs them
//! on a frame it built: over a [`Frame`] (the skb, or bytes), [`Tables`] (the maps, or their
//! pins) and a [`Trace`] (nothing, or sentences). The walk decides; it changes no packet. What
//! it decides, a [`Plan`], the programs carry out (`ebpf/src/carry.rs`) and `explain` puts in
//! words. The IPv6 walk hands each plan, where it makes it, to a [`Carry6`]: the programs carry it
//! out there, `explain` keeps it ([`Keep`]).
//!
//! Everything here is `#[inline(always)]`: in the programs the walk must compile to the code a
//! hand-written one would, within the verifier's 512 bytes of stack.

pub mod frame;
mod steps;
mod tables;
mod trace;
mod v6;

pub use frame::{Bytes, Frame, ETH_LEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, IPIP_INNER_L3, VXLAN_INNER_L3};
use steps::Seen;
pub use tables::Tables;
pub use trace::{Limit, Note, Pending, Silent, Trace};

use crate::{
    flow::{Arrival, Translation},
    ipv4::{Ipv4Fields, HEADER_LEN, PROTO_IPIP, PROTO_UDP},
    maps::NodeConfig,
    route::Forward,
    tunnel::Tunnel,
    vxlan, Reason,
};

/// What the fast path does with a frame it carries. Anything it does not carry ends the walk
/// with a reason instead: a drop reason drops it, any other hands it to the kernel unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan<H> {
    /// Turn the ARP request into the reply a proxy would send, and send it back to the pod.
    AnswerArp,
    /// What the IPv6 walk plans ([`Plan6`]).
    Ipv6(Plan6<H>),
    /// Answer with ICMP "fragmentation needed" carrying `mtu`, back to the pod.
    FragNeeded { mtu: u16 },
    /// Into the pod behind host-side `ifindex` (after taking `decap` apart, for a tunnel),
    /// translated as `nat` says.
    ToPod { ifindex: u32, mac: [u8; 6], decap: Option<Tunnel>, nat: Translation, reason: Reason },
    /// In `tunnel` to node `next_hop` (for VXLAN, to its `vxlan.calico` at `mac`), out toward
    /// `hop`; `inner` is the packet's header as it leaves (translated as `nat` says).
    Encapsulate {
        tunnel: Tunnel,
        next_hop: [u8; 4],
        mac: [u8; 6],
        hop: H,
        inner: Ipv4Fields,
        nat: Translation,
    },
    /// Out of the underlay as it is, toward `hop`: node `next_hop`'s block route, or (with no
    /// `next_hop`) the FIB's way to an outside address conntrack translated it to.
    ToUnderlay { next_hop: Option<[u8; 4]>, hop: H, nat: Translation },
}

impl<H> Plan<H> {
    /// The counter a carried frame is counted under.
    pub const fn reason(&self) -> Reason {
        match self {
            Plan::AnswerArp => Reason::ArpReplied,
            Plan::Ipv6(plan) => plan.reason(),
            Plan::FragNeeded { .. } => Reason::IcmpFragNeeded,
            Plan::ToPod { reason, .. } => *reason,
            Plan::Encapsulate { tunnel: Tunnel::Ipip, .. } => Reason::Encapsulated,
            Plan::Encapsulate { tunnel: Tunnel::Vxlan, .. } => Reason::EncapsulatedVxlan,
            Plan::ToUnderlay { .. } => Reason::RoutedUnderlay,
        }
    }
}

/// `Ok`: what the fast path does; `Err`: why it does not.
pub type Decision<H> = Result<Plan<H>, Reason>;

/// `from_pod`, on tcx ingress of the `cali*` interface `ingress`: ARP and neighbour
/// solicitations are answered, IPv4 and IPv6 forwarded, the rest passed. Both families' plans in
/// one type want one hop type: `explain`'s (which has `()` for both) and the tests'. The programs
/// split the families themselves ([`from_pod_ipv4`], [`from_pod_ipv6`]), each with its own.
#[inline(always)]
pub fn from_pod<F: Frame, H, T: Tables<Hop = H, Hop6 = H>, R: Trace>(
    frame: &F,
    ingress: u32,
    tables: &T,
    trace: &mut R,
) -> Decision<H> {
    if is_ipv6(frame) {
        from_pod_ipv6(frame, ingress, tables, trace, &Keep).map(Plan::Ipv6)
    } else {
        from_pod_ipv4(frame, ingress, tables, trace)
    }
}

/// Whether the frame is IPv6: [`from_pod_ipv6`]'s, else [`from_pod_ipv4`]'s. The programs make
/// this split themselves and walk IPv6 in a BPF subprogram of its own: inline beside the IPv4
/// walk, its code leads LLVM to share registers across the two in ways the verifier refuses.
#[inline(always)]
pub fn is_ipv6<F: Frame>(frame: &F) -> bool {
    frame::ether_type(frame) == Some(ETH_P_IPV6)
}

pub use v6::{from_pod as from_pod_ipv6, from_underlay as from_underlay_ipv6, Carry6, Keep, Plan6};

/// `from_pod` for every frame but IPv6: ARP is answered, IPv4 forwarded, the rest passed.
#[inline(always)]
pub fn from_pod_ipv4<F: Frame, T: Tables, R: Trace>(
    frame: &F,
    ingress: u32,
    tables: &T,
    trace: &mut R,
) -> Decision<T::Hop> {
    match frame::ether_type(frame) {
        None => Err(Reason::PassTruncatedEthernet),
        Some(ETH_P_ARP) => answer_arp(frame, trace),
        Some(ETH_P_IP) => forward(frame, ingress, tables, trace),
        Some(_) => Err(Reason::PassOtherEthertype),
    }
}

/// The ARP responder, standing in for proxy_arp on the host end of a pod's veth: every IPv4
/// request a pod sends (for its gateway 169.254.1.1 or anything else) is answered with
/// `ee:ee:ee:ee:ee:ee`, so every packet the pod sends comes to us.
#[inline(always)]
fn answer_arp<F: Frame, H, R: Trace>(frame: &F, trace: &mut R) -> Decision<H> {
    let arp = frame::arp(frame).ok_or(Reason::PassArpMalformed)?;
    crate::arp::classify_request(&arp)?;
    trace.note(Note::ArpAnswered { asker: arp.spa, target: arp.tpa });
    Ok(Plan::AnswerArp)
}

/// An IPv4 packet from a pod: into another pod here, or toward the node that owns the
/// destination; under `--trust kernel` only by its flow's conntrack entry, translated as that
/// entry says.
#[inline(always)]
fn forward<F: Frame, T: Tables, R: Trace>(
    frame: &F,
    ingress: u32,
    tables: &T,
    trace: &mut R,
) -> Decision<T::Hop> {
    let node = tables.node()?;
    let ip = frame::forwardable(frame, ETH_LEN)?;
    steps::check_source(tables, trace, ip.src, ingress)?;
    let t = match steps::gate(frame, tables, trace, node, ETH_LEN, &ip, Seen::Pod(ingress)) {
        Ok(t) => t,
        // Without an entry, the destination's own reason first: it would not take the fast path
        // anyway.
        Err(Reason::PassFlowPending) => {
            let to = steps::destination(tables, trace, node, ip.dst)?;
            trace.note(Note::Pending { then: Pending::Forward(to) });
            return Err(Reason::PassFlowPending);
        }
        Err(reason) => return Err(reason),
    };
    let inner = Ipv4Fields { src: t.to_src, dst: t.to_dst, ..ip };
    // By the destination it leaves with (its own, unless conntrack translates it).
    match steps::destination(tables, trace, node, t.to_dst) {
        Ok(Forward::Encapsulate { tunnel: Tunnel::Vxlan, .. }) if !node.has_vxlan() => {
            // The daemon writes VXLAN routes only for a node whose device it understands; never
            // guess.
            trace.note(Note::NoVxlanDevice);
            Err(Reason::PassKernelRoute)
        }
        Ok(to) => {
            // Checked before anything is rewritten, so "fragmentation needed" quotes what the
            // pod sent.
            if let Some(end) = steps::fits(frame, tables, trace, node, &ip, &to) {
                return end;
            }
            carry(tables, to, inner, t)
        }
        // Translated to an address the routes do not hold (natOutgoing's outside world): where
        // the kernel's FIB forwards it, out of the underlay only.
        Err(Reason::PassNoRoute) if t.nat != 0 => {
            let hop = tables.hop(t.to_dst)?;
            if tables.hop_ifindex(&hop) != node.underlay_ifindex {
                return Err(Reason::PassFibFailed);
            }
            trace.note(Note::ByFib { dst: t.to_dst });
            if let Some(end) = steps::fits_mtu(frame, trace, &ip, node.underlay_mtu, Limit::Underlay) {
                return end;
            }
            Ok(Plan::ToUnderlay { next_hop: None, hop, nat: t })
        }
        Err(reason) => Err(reason),
    }
}

/// How a packet its route allows leaves.
#[inline(always)]
fn carry<T: Tables>(tables: &T, to: Forward, inner: Ipv4Fields, nat: Translation) -> Decision<T::Hop> {
    match to {
        Forward::Local { ifindex, mac } => {
            Ok(Plan::ToPod { ifindex, mac, decap: None, nat, reason: Reason::RedirectedLocal })
        }
        // The FIB is asked before anything is rewritten, so a failure leaves the packet intact
        // to the kernel.
        Forward::Encapsulate { next_hop, tunnel, mac } => {
            let hop = tables.hop(next_hop)?;
            Ok(Plan::Encapsulate { tunnel, next_hop, mac, hop, inner, nat })
        }
        Forward::Underlay { next_hop } => {
            let hop = tables.hop(next_hop)?;
            Ok(Plan::ToUnderlay { next_hop: Some(next_hop), hop, nat })
        }
    }
}

/// `from_underlay`, on tcx ingress of the underlay interface: IPIP, or VXLAN to this node's
/// `vxlan.calico` port, from a known node to this node, from an inner source that belongs to
/// that node, is taken apart and delivered into the pod (under `--trust kernel`, only by its
/// flow's conntrack entry); a tunnel to us from anyone else is dropped. Under `--trust kernel`,
/// plain traffic to a pod here (or to this node, of a flow conntrack translated to it) is
/// delivered too by its flow's entry. IPv6 VXLAN is [`from_underlay_ipv6`]'s. The rest is the
/// kernel's.
#[inline(always)]
pub fn from_underlay<F: Frame, H, T: Tables<Hop = H, Hop6 = H>, R: Trace>(
    frame: &F,
    tables: &T,
    trace: &mut R,
) -> Decision<H> {
    if is_ipv6(frame) {
        return from_underlay_ipv6(frame, tables, trace, &Keep).map(Plan::Ipv6);
    }
    from_underlay_ipv4(frame, tables, trace)
}

/// `from_underlay` for every frame but IPv6 ([`from_underlay_ipv6`]'s): the programs make this
/// split themselves, walking IPv4 first and IPv6 only when this found no IPv4 frame (an IPv6
/// frame ends here with [`Reason::PassUnderlayOther`], or [`Reason::PassNotReady`] as IPv6's
/// walk would), so the IPv4 decisions keep their cost.
#[inline(always)]
pub fn from_underlay_ipv4<F: Frame, T: Tables, R: Trace>(
    frame: &F,
    tables: &T,
    trace: &mut R,
) -> Decision<T::Hop> {
    let node = tables.node()?;
    let Some(outer) = frame::plain_ipv4(frame) else {
        trace.note(Note::NotPlainIpv4);
        return Err(Reason::PassUnderlayOther);
    };
    steps::learn_path_mtu(frame, tables, trace, node, &outer)?;
    if outer.dst != node.node_ip {
        trace.note(Note::NotToThisNode { dst: outer.dst });
    } else if carries_ipip(&outer) {
        return decapsulate(frame, tables, trace, node, &outer, Tunnel::Ipip);
    } else if carries_vxlan_for(frame, node, &outer) {
        return decapsulate(frame, tables, trace, node, &outer, Tunnel::Vxlan);
    } else {
        trace.note(Note::NotATunnel);
    }
    plain(frame, tables, trace, node, &outer)
}

/// Protocol 4, with room for an inner header.
#[inline(always)]
fn carries_ipip(outer: &Ipv4Fields) -> bool {
    outer.protocol == PROTO_IPIP && u32::from(outer.total_len) >= 2 * HEADER_LEN as u32
}

/// UDP to this node's `vxlan.calico` port, with room for the whole VXLAN packet: VXLAN for this
/// node, to take apart or to hand to the kernel.
#[inline(always)]
pub fn carries_vxlan_for<F: Frame>(frame: &F, node: &NodeConfig, outer: &Ipv4Fields) -> bool {
    outer.protocol == PROTO_UDP
        && node.has_vxlan()
        && u32::from(outer.total_len) >= (vxlan::OVERHEAD + HEADER_LEN) as u32
        && frame::udp_destination(frame) == Some(node.vxlan.port)
}

/// A tunnel from another node to this one: from a stranger it is dropped; for a pod here, from
/// a known node and an inner source of that node, it is taken apart and delivered (under
/// `--trust kernel` only by its flow's conntrack entry, arriving in this tunnel from this node,
/// translated as the entry says); anything else goes to the kernel still encapsulated, where its
/// own tunnel device takes it apart and its policy judges it, as without fastpath. The same
/// rules for IPIP and VXLAN.
#[inline(always)]
fn decapsulate<F: Frame, T: Tables, R: Trace>(
    frame: &F,
    tables: &T,
    trace: &mut R,
    node: &NodeConfig,
    outer: &Ipv4Fields,
    tunnel: Tunnel,
) -> Decision<T::Hop> {
    if !tables.is_peer(outer.src) {
        trace.note(Note::UnknownPeer { node: outer.src });
        return Err(Reason::DropUnknownPeer);
    }
    trace.note(Note::TunnelFrom { tunnel, node: outer.src });
    let (l3, arrival, reason) = match tunnel {
        Tunnel::Ipip => (IPIP_INNER_L3, Arrival::Ipip, Reason::Decapsulated),
        Tunnel::Vxlan => {
            // This device's VNI and flags, an inner IPv4 frame to this device's MAC; anything
            // else is the kernel's.
            let checked = frame::vxlan_received(frame)
                .ok_or(Reason::PassVxlanOther)
                .and_then(|r| vxlan::check_received(outer.total_len, &r, &node.vxlan));
            trace.note(Note::VxlanHeaders { accepted: checked.is_ok() });
            checked?;
            (VXLAN_INNER_L3, Arrival::Vxlan, Reason::DecapsulatedVxlan)
        }
    };
    let inner = frame::forwardable(frame, l3)?;
    // Another source goes to the kernel still encapsulated: a node must not pose as a pod of a
    // third node, nor of this one.
    steps::check_inner_source(tables, trace, inner.src, outer.src)?;
    let t = match steps::gate(frame, tables, trace, node, l3, &inner, Seen::Tunnel(arrival, outer.src)) {
        Ok(t) => t,
        Err(Reason::PassFlowPending) => {
            let Forward::Local { ifindex, mac } = steps::delivery(tables, trace, node, inner.dst)? else {
                return Err(Reason::PassDecapNotLocal);
            };
            trace.note(Note::Pending { then: Pending::Decapsulate { ifindex, mac } });
            return Err(Reason::PassFlowPending);
        }
        Err(reason) => return Err(reason),
    };
    let Forward::Local { ifindex, mac } = steps::delivery(tables, trace, node, t.to_dst)? else {
        return Err(Reason::PassDecapNotLocal);
    };
    Ok(Plan::ToPod { ifindex, mac, decap: Some(tunnel), nat: t, reason })
}

/// Unencapsulated traffic from the underlay: under `--trust kernel`, a packet of a flow whose
/// conntrack entry the kernel here holds, to a pod here or to this node's own address (the
/// replies of a flow conntrack translated to it), sent by the node or gateway its source is
/// routed through, is delivered into the pod, translated as the entry says. Before the kernel has
/// judged the flow it delivers it itself. Under `--trust routes` it is the kernel's: nothing tells
/// a node's plain packet from anyone's.
#[inline(always)]
fn plain<F: Frame, T: Tables, R: Trace>(
    frame: &F,
    tables: &T,
    trace: &mut R,
    node: &NodeConfig,
    outer: &Ipv4Fields,
) -> Decision<T::Hop> {
    // Everything the host itself receives passes here: under --trust routes, not even a lookup.
    if !node.trusts_kernel() {
        trace.note(Note::PlainUnderRoutes);
        return Err(Reason::PassUnderlayOther);
    }
    let to_node = outer.dst == node.node_ip;
    if !to_node && tables.endpoint(outer.dst).is_none() {
        trace.note(Note::NotOurPod { dst: outer.dst });
        return Err(Reason::PassUnderlayOther);
    }
    // A pod of this node never sends from the underlay: the kernel judges such a packet.
    if tables.endpoint(outer.src).is_some() {
        trace.note(Note::FromOurPod { src: outer.src });
        return Err(Reason::PassUnderlayOther);
    }
    let ip = frame::forwardable(frame, ETH_LEN)?;
    let t = match steps::gate(frame, tables, trace, node, ETH_LEN, &ip, Seen::Plain) {
        Ok(t) => t,
        // To this node without a flow: the host's own traffic.
        Err(Reason::PassFlowPending) if to_node => {
            trace.note(Note::HostsOwn { dst: outer.dst });
            return Err(Reason::PassUnderlayOther);
        }
        Err(Reason::PassFlowPending) => {
            trace.note(Note::Pending { then: Pending::Deliver { dst: outer.dst } });
            return Err(Reason::PassFlowPending);
        }
        Err(reason) => return Err(reason),
    };
    // Only into a pod here.
    let Some(pod) = tables.endpoint(t.to_dst) else {
        trace.note(Note::NotOurPod { dst: t.to_dst });
        return Err(Reason::PassDecapNotLocal);
    };
    trace.note(Note::Delivery { dst: t.to_dst });
    Ok(Plan::ToPod {
        ifindex: pod.ifindex,
        mac: pod.mac,
        decap: None,
        nat: t,
        reason: Reason::RoutedFromUnderlay,
    })
}
