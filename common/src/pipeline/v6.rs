//! IPv6, the second family of a dual-stack pod (issue 20): from a pod, a neighbour solicitation
//! is answered as the host end of the veth would answer it, a packet to another pod on this node
//! is carried into it, and one to another node's block (`FP_ROUTES6`) leaves over the underlay,
//! plain or in IPv6 VXLAN as `vxlan-v6.calico` would send it; from the underlay, IPv6 VXLAN from
//! a known node is taken apart and delivered into the pod; a router's "packet too big" about
//! this node's IPv6 VXLAN lowers the path MTU toward its node. The rules are IPv4's: the same
//! source checks, the same blackhole, the same peer and inner-source checks, the same path-MTU
//! learning. Under `--trust kernel` the gate is IPv4's too ([`gate`]): a flow direction takes the
//! fast path only by its conntrack entry, arriving where that entry says; one conntrack
//! translates is the kernel's.
//!
//! Every step judges the packet's bytes where they lie, inside [`Frame::read`]: an IPv6 header
//! is 40 bytes, and copies of it would crowd the programs' 512 bytes of stack. The tables are
//! even looked up with the address in the packet as their key.

use core::borrow::Borrow;

use super::{
    frame::{self, Frame, ETH_LEN},
    Limit, Note, Pending, Tables, Trace,
};
use crate::{
    flow::{Arrival, PROTO_TCP},
    flow6,
    ipv6::{
        self, same_address, Ipv6Fields, ARRIVING_TOO_BIG_LEN, HEADER_LEN, NEXT_ICMPV6, NEXT_UDP, UNSPECIFIED,
    },
    maps::{Endpoint, Node6Config, PathMtu, PATH_MTU6_MIN},
    ndp::{self, SOLICITATION_LEN, TYPE_NEIGHBOUR_SOLICITATION, TYPE_REDIRECT, TYPE_ROUTER_SOLICITATION},
    route6::{self, Forward6},
    vxlan::{self, Received, INNER_ETH_LEN, OVERHEAD6, UDP_HEADER_LEN},
    Reason,
};

/// What the fast path does with an IPv6 frame it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan6<H> {
    /// Turn the pod's neighbour solicitation into the advertisement the host end would send
    /// (`ndp::answer_in_place`), and send it back to the pod.
    AnswerNdp,
    /// Into the pod behind host-side `ifindex`, with Ethernet destination `mac`, after taking
    /// IPv6 VXLAN apart when `decap`.
    ToPod { ifindex: u32, mac: [u8; 6], decap: bool },
    /// Out of the underlay as it is, toward `hop`: node `next_hop`'s block route.
    ToUnderlay { next_hop: [u8; 16], hop: H },
    /// In IPv6 VXLAN to node `next_hop`, whose `vxlan-v6.calico` has MAC `mac`, out toward `hop`;
    /// each packet it puts on the wire carries `wire_payload_len` bytes of inner payload (a GSO
    /// packet's segments), which the UDP checksum is made for.
    Encapsulate { next_hop: [u8; 16], mac: [u8; 6], hop: H, wire_payload_len: u16 },
    /// Answer with ICMPv6 "packet too big" carrying `mtu`, back to the pod.
    TooBig { mtu: u32 },
    /// Hand to this node's `vxlan-v6.calico` (`ifindex`, MAC `device_mac`), inner Ethernet to
    /// the VTEP MAC `mac` of the node it goes to, for the device to encapsulate and checksum (see
    /// [`Reason::Vxlan6ByDevice`]).
    ByVxlanDevice { ifindex: u32, device_mac: [u8; 6], mac: [u8; 6] },
}

impl<H> Plan6<H> {
    /// The counter a carried frame is counted under.
    pub const fn reason(&self) -> Reason {
        match self {
            Plan6::AnswerNdp => Reason::NdpReplied,
            Plan6::ToPod { decap: false, .. } => Reason::RedirectedLocal,
            Plan6::ToPod { decap: true, .. } => Reason::DecapsulatedVxlan,
            Plan6::ToUnderlay { .. } => Reason::RoutedUnderlay,
            Plan6::Encapsulate { .. } => Reason::EncapsulatedVxlan,
            Plan6::TooBig { .. } => Reason::Icmp6PacketTooBig,
            Plan6::ByVxlanDevice { .. } => Reason::Vxlan6ByDevice,
        }
    }
}

/// What becomes of an IPv6 plan where the walk makes it: the programs carry it out on the spot
/// (`ebpf/src/carry.rs`), `explain` and the tests keep it ([`Keep`]). Handed back from the end
/// of the walk instead, the plans of every path would meet in one value, which LLVM assembles
/// from registers some paths never set (a field of another plan): the verifier refuses that.
pub trait Carry6<H> {
    type Out;
    fn carry(&self, plan: Plan6<H>) -> Result<Self::Out, Reason>;
}

/// The plan itself, for whoever tells or checks it.
pub struct Keep;

impl<H> Carry6<H> for Keep {
    type Out = Plan6<H>;

    #[inline(always)]
    fn carry(&self, plan: Plan6<H>) -> Result<Plan6<H>, Reason> {
        Ok(plan)
    }
}

/// Where the source and the destination address lie.
const SRC: usize = ETH_LEN + 8;
const DST: usize = ETH_LEN + 24;
/// Where an outer IPv6 packet's UDP header starts, and the inner IPv6 header of IPv6 VXLAN.
const UDP: usize = ETH_LEN + HEADER_LEN;
const INNER: usize = ETH_LEN + OVERHEAD6;

/// An IPv6 packet from the pod behind `ingress`.
#[inline(always)]
pub fn from_pod<F: Frame, T: Tables, R: Trace, C: Carry6<T::Hop6>>(
    frame: &F,
    ingress: u32,
    tables: &T,
    trace: &mut R,
    carry: &C,
) -> Result<C::Out, Reason> {
    // Neighbour discovery (RFC 4861's messages, types 133 to 137): a solicitation is answered,
    // the rest is the kernel's.
    let discovery = frame.read::<{ HEADER_LEN + 1 }, _>(ETH_LEN, |h| {
        (h[6] == NEXT_ICMPV6 && (TYPE_ROUTER_SOLICITATION..=TYPE_REDIRECT).contains(&h[HEADER_LEN]))
            .then_some(h[HEADER_LEN])
    });
    match discovery.flatten() {
        Some(TYPE_NEIGHBOUR_SOLICITATION) => return carry.carry(answer_solicitation(frame, trace)?),
        Some(_) => return Err(Reason::PassNdpNotSolicitation),
        None => {}
    }
    let node = tables.node()?;
    let after_l2 = frame.length().saturating_sub(ETH_LEN as u32);
    let (payload_len, next_header) = frame
        .read::<HEADER_LEN, _>(ETH_LEN, |h| {
            let ip = Ipv6Fields::parse(h);
            ipv6::check_forwardable(&ip, after_l2).map(|()| (ip.payload_len, ip.next_header))
        })
        .ok_or(Reason::PassIpv6Malformed)??;
    // A pod sends only from a /128 of its own interface. Another local pod's address is spoofed;
    // any other source is the kernel's to judge (its rpfilter and FORWARD rules), as for IPv4.
    frame
        .read::<16, _>(SRC, |src| {
            let verdict = match tables.endpoint6(src) {
                Some(e) if e.ifindex == ingress => Ok(()),
                Some(_) => Err(Reason::DropSpoofedSource),
                None => Err(Reason::PassSourceNotPod),
            };
            trace.note(Note::Source6 { src: *src, ingress, verdict });
            verdict
        })
        .ok_or(Reason::PassIpv6Malformed)??;
    let to = destination(frame, tables, trace)?;
    if node.trusts_kernel() {
        // Without an entry, the destination's own reason first (above): it would not take the
        // fast path anyway.
        match gate(frame, tables, trace, Entered::from_pod(ingress)) {
            Ok(()) => {}
            Err(Reason::PassFlowPending) => {
                trace.note(Note::Pending { then: Pending::Carry6(to) });
                return Err(Reason::PassFlowPending);
            }
            Err(reason) => return Err(reason),
        }
    }
    match to {
        Forward6::Local { ifindex, mac } => carry.carry(Plan6::ToPod { ifindex, mac, decap: false }),
        Forward6::Underlay { next_hop } => {
            // The FIB is asked from this node's IPv6 address, which the daemon writes.
            tables.node6().ok_or(Reason::PassNotReady)?;
            if let Some(mtu) = too_big(frame, trace, next_header, node.underlay_mtu, Limit::Underlay) {
                return carry.carry(Plan6::TooBig { mtu });
            }
            let hop = tables.hop6(&next_hop)?;
            carry.carry(Plan6::ToUnderlay { next_hop, hop })
        }
        Forward6::Vxlan { next_hop, mac } => {
            let node6 = tables.node6().ok_or(Reason::PassNotReady)?;
            if !node6.has_vxlan() {
                // The daemon writes IPv6 VXLAN routes only for a node whose device it
                // understands; never guess.
                trace.note(Note::NoVxlanDevice);
                return Err(Reason::PassKernelRoute);
            }
            // The path MTU toward the node, while a router's word still holds and is lower.
            let (mtu, path) =
                PathMtu::narrowest(tables.path_mtu6(&next_hop), OVERHEAD6 as u32, node6.vxlan_mtu, || {
                    tables.now_ns()
                });
            if let Some(mtu) = too_big(frame, trace, next_header, mtu, Limit::Vxlan6 { peer: next_hop, path })
            {
                if mtu < PATH_MTU6_MIN {
                    // A path that leaves less than IPv6's 1280 inside the tunnel cannot be told
                    // to the pod (RFC 8201: no MTU below 1280), and the kernel's own tunnels tell
                    // nobody then either (`iptunnel_pmtud_check_icmpv6`): what does not fit goes
                    // the kernel's way, through its `vxlan-v6.calico`.
                    return Err(Reason::PassTooBig);
                }
                return carry.carry(Plan6::TooBig { mtu });
            }
            let Some(wire_payload_len) = wire_payload_len(frame, payload_len, next_header) else {
                let device = &node6.vxlan;
                return carry.carry(Plan6::ByVxlanDevice {
                    ifindex: device.ifindex,
                    device_mac: device.mac,
                    mac,
                });
            };
            let hop = tables.hop6(&next_hop)?;
            carry.carry(Plan6::Encapsulate { next_hop, mac, hop, wire_payload_len })
        }
    }
}

/// Where a pod's IPv6 packet goes: a pod here, or what the route trie says. This node's own
/// addresses are the kernel's too, but none of them is a pod's /128 or in a block the trie holds.
#[inline(always)]
fn destination<F: Frame, T: Tables, R: Trace>(
    frame: &F,
    tables: &T,
    trace: &mut R,
) -> Result<Forward6, Reason> {
    frame
        .read::<16, _>(DST, |dst| {
            if ipv6::is_special_destination(*dst, UNSPECIFIED) {
                return Err(Reason::PassSpecialDestination);
            }
            if let Some(pod) = tables.endpoint6(dst) {
                trace.note(Note::Destination6 { dst: *dst, ifindex: pod.ifindex });
                return Ok(Forward6::Local { ifindex: pod.ifindex, mac: pod.mac });
            }
            let route = tables.route6(dst);
            let to = route6::forward6(route.as_ref().map(Borrow::borrow));
            trace.note(Note::Route6 { dst: *dst, to });
            to
        })
        .ok_or(Reason::PassIpv6Malformed)?
}

/// The pod here a decapsulated IPv6 packet is for.
#[inline(always)]
fn delivery<F: Frame, T: Tables, R: Trace>(frame: &F, tables: &T, trace: &mut R) -> Result<Endpoint, Reason> {
    frame
        .read::<16, _>(INNER + 24, |dst| {
            if ipv6::is_special_destination(*dst, UNSPECIFIED) {
                return Err(Reason::PassSpecialDestination);
            }
            let pod = tables.endpoint6(dst).ok_or(Reason::PassDecapNotLocal);
            trace.note(Note::Delivery6 { dst: *dst, pod: pod.is_ok() });
            pod
        })
        .ok_or(Reason::PassIpv6Malformed)?
}

/// Where an IPv6 packet entered, for the gate: from the pod behind `ifindex`, its header after
/// the Ethernet header; or in IPv6 VXLAN, its header inside, from the node that is the outer
/// header's source (read where it lies, not copied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entered {
    arrival: Arrival,
    ifindex: u32,
}

impl Entered {
    const fn from_pod(ifindex: u32) -> Self {
        Self { arrival: Arrival::Pod, ifindex }
    }

    const VXLAN: Self = Self { arrival: Arrival::Vxlan, ifindex: 0 };

    /// Where its IPv6 header starts.
    const fn l3(&self) -> usize {
        match self.arrival {
            Arrival::Pod => ETH_LEN,
            _ => INNER,
        }
    }
}

/// `--trust kernel`'s gate for the IPv6 packet that `entered`, as IPv4's (`steps::gate`): `Ok`
/// only for an approved direction of a flow conntrack does not translate, arriving where its
/// entry says, that is not closing. Records what it decided in the entry.
#[inline(always)]
fn gate<F: Frame, T: Tables, R: Trace>(
    frame: &F,
    tables: &T,
    trace: &mut R,
    entered: Entered,
) -> Result<(), Reason> {
    trace.note(Note::TrustKernel);
    let Some((key, signal)) = frame::flow_name6(frame, entered.l3()) else {
        trace.note(Note::Unnamed);
        return Err(Reason::PassFlowUntracked);
    };
    let Some(mut entry) = tables.flow6(&key) else {
        trace.note(Note::NoFlow6 { key });
        return Err(Reason::PassFlowPending);
    };
    let value = entry.borrow();
    let admission = match entered.arrival {
        Arrival::Pod => flow6::admission6(value, Arrival::Pod, entered.ifindex, &UNSPECIFIED, signal),
        // From the node that sent the tunnel: the outer source.
        arrival => frame
            .read::<16, _>(SRC, |node| flow6::admission6(value, arrival, entered.ifindex, node, signal))
            .ok_or(Reason::PassIpv6Malformed)?,
    };
    trace.note(Note::Flow6 { key, value: *value, admission });
    tables.settle6(&mut entry, &key, &admission);
    admission.verdict
}

/// The inner payload length of each packet this one puts on the wire, when the outer UDP
/// checksum of IPv6 VXLAN can be made from its first 8 bytes ([`vxlan::udp_checksum6`]): its own
/// for one whole packet of an upper layer whose checksum covers all of it and the pseudo-header
/// (TCP, ICMPv6, UDP with a checksum); a segment's for a TCP or UDP GSO packet whose data the
/// kernel cuts into equal segments (they all carry one checksum). `None` for anything else: a GSO packet
/// with a shorter last segment (its checksum would differ), another upper layer, a datagram
/// without a checksum, a frame with bytes after its packet that the checksum would have to cover.
#[inline(always)]
fn wire_payload_len<F: Frame>(frame: &F, payload_len: u16, next_header: u8) -> Option<u16> {
    if frame.length() != (ETH_LEN + HEADER_LEN) as u32 + u32::from(payload_len) {
        return None;
    }
    let gso_size = frame.gso_size();
    if gso_size == 0 {
        let covered = match next_header {
            PROTO_TCP | NEXT_ICMPV6 => true,
            NEXT_UDP => frame.read::<UDP_HEADER_LEN, _>(UDP, |u| u[6] != 0 || u[7] != 0) == Some(true),
            _ => false,
        };
        return if covered { Some(payload_len) } else { None };
    }
    // Each segment's own header: TCP's (its data offset), or UDP's for a datagram aggregate
    // (`UDP_SEGMENT`), each datagram checksummed by the kernel as it cuts them.
    let header = match next_header {
        PROTO_TCP => frame.read::<13, _>(UDP, |tcp| u32::from(tcp[12] >> 4) * 4)?,
        NEXT_UDP => UDP_HEADER_LEN as u32,
        _ => return None,
    };
    let data = u32::from(payload_len).checked_sub(header)?;
    if header < UDP_HEADER_LEN as u32 || data == 0 || data % gso_size != 0 {
        return None;
    }
    // Below the payload length, so it fits 16 bits.
    Some((header + gso_size) as u16)
}

/// `Some(mtu)` when the packet (a segment, for a GSO packet) does not fit `mtu`. A router never
/// fragments IPv6 (RFC 8200 §5): it answers with ICMPv6 "packet too big" carrying the MTU, as
/// the kernel's `ip6_forward` does, whatever the packet.
#[inline(always)]
fn too_big<F: Frame, R: Trace>(
    frame: &F,
    trace: &mut R,
    next_header: u8,
    mtu: u32,
    limit: Limit,
) -> Option<u32> {
    let gso_size = frame.gso_size();
    let carried = if gso_size == 0 {
        frame.length().saturating_sub(ETH_LEN as u32)
    } else {
        // One segment: its payload, the fixed header and the transport header (TCP's data offset
        // is byte 12 of its header).
        let transport = match next_header {
            PROTO_TCP => frame.read::<13, _>(UDP, |tcp| u32::from(tcp[12] >> 4) * 4).unwrap_or(20),
            NEXT_UDP => UDP_HEADER_LEN as u32,
            _ => 0,
        };
        gso_size + HEADER_LEN as u32 + transport
    };
    if carried <= mtu {
        return None;
    }
    trace.note(Note::TooBig { carried, mtu, limit });
    Some(mtu)
}

/// IPv6 from the underlay: IPv6 VXLAN to this node's `vxlan-v6.calico` port from a known node,
/// from an inner source that belongs to that node, to a pod here, is taken apart and delivered
/// into the pod; IPv6 VXLAN to us from anyone else is dropped, as IPv4's is. A router's ICMPv6
/// "packet too big" about one of our IPv6 VXLAN packets teaches the path MTU toward its node
/// ([`learn_path_mtu`]) and goes on to the kernel. Everything else (plain IPv6, VXLAN the
/// programs do not take apart, `--trust kernel`) is the kernel's.
#[inline(always)]
pub fn from_underlay<F: Frame, T: Tables, R: Trace, C: Carry6<T::Hop6>>(
    frame: &F,
    tables: &T,
    trace: &mut R,
    carry: &C,
) -> Result<C::Out, Reason> {
    let node = tables.node()?;
    let Some(node6) = tables.node6().filter(|n| n.has_vxlan()) else {
        trace.note(Note::NotATunnel);
        return Err(Reason::PassUnderlayOther);
    };
    learn_path_mtu(frame, tables, trace, node6)?;
    let after_l2 = frame.length().saturating_sub(ETH_LEN as u32);
    // UDP to this node's address and port, with room for a whole VXLAN packet.
    let for_us = frame.read::<{ HEADER_LEN + UDP_HEADER_LEN }, _>(ETH_LEN, |h| {
        let payload_len = u16::from_be_bytes([h[4], h[5]]);
        let dst: &[u8; 16] = h[24..40].try_into().unwrap_or(&UNSPECIFIED);
        let to_us = h[0] >> 4 == ipv6::VERSION
            && h[6] == NEXT_UDP
            && same_address(dst, &node6.node_ip)
            && u16::from_be_bytes([h[42], h[43]]) == node6.vxlan.port
            && u32::from(payload_len) + HEADER_LEN as u32 <= after_l2
            && usize::from(payload_len) >= UDP_HEADER_LEN + vxlan::HEADER_LEN + INNER_ETH_LEN + HEADER_LEN;
        to_us.then_some(payload_len)
    });
    let Some(payload_len) = for_us.flatten() else {
        trace.note(Note::NotATunnel);
        return Err(Reason::PassUnderlayOther);
    };
    frame
        .read::<16, _>(SRC, |src| {
            let known = tables.is_peer6(src);
            trace.note(Note::TunnelFrom6 { node: *src, known });
            if known {
                Ok(())
            } else {
                Err(Reason::DropUnknownPeer)
            }
        })
        .ok_or(Reason::PassIpv6Malformed)??;
    // This device's VNI and flags, an inner IPv6 frame to this device's MAC; anything else is the
    // kernel's.
    let checked = frame
        .read::<{ UDP_HEADER_LEN + vxlan::HEADER_LEN + INNER_ETH_LEN }, _>(UDP, |p| {
            let r = Received {
                udp: *p.first_chunk().unwrap_or(&[0; UDP_HEADER_LEN]),
                vxlan: *p[UDP_HEADER_LEN..].first_chunk().unwrap_or(&[0; vxlan::HEADER_LEN]),
                inner_eth: *p[UDP_HEADER_LEN + vxlan::HEADER_LEN..]
                    .first_chunk()
                    .unwrap_or(&[0; INNER_ETH_LEN]),
            };
            vxlan::check_received6(payload_len, &r, &node6.vxlan)
        })
        .unwrap_or(Err(Reason::PassVxlanOther));
    trace.note(Note::VxlanHeaders { accepted: checked.is_ok() });
    checked?;
    let inner_len = frame.length().saturating_sub(INNER as u32);
    frame
        .read::<HEADER_LEN, _>(INNER, |h| ipv6::check_forwardable(&Ipv6Fields::parse(h), inner_len))
        .ok_or(Reason::PassIpv6Malformed)??;
    // A node must not pose as a pod of a third node, nor of this one: another source goes to the
    // kernel still encapsulated. Both addresses are read where they lie, in one read.
    const INNER_SRC: usize = INNER + 8 - SRC;
    frame
        .read::<{ INNER_SRC + 16 }, _>(SRC, |p| {
            let outer_src: &[u8; 16] = p.first_chunk().unwrap_or(&UNSPECIFIED);
            let inner_src: &[u8; 16] = p[INNER_SRC..].first_chunk().unwrap_or(&UNSPECIFIED);
            // The route first: a pod of the node (the common case) then costs one comparison of
            // 16 bytes, not two; the node's own address (its host network) the other.
            let route = tables.route6(inner_src);
            let verdict = route6::routed_via(outer_src, route.as_ref().map(Borrow::borrow))
                .or_else(|foreign| if same_address(inner_src, outer_src) { Ok(()) } else { Err(foreign) });
            trace.note(Note::InnerSource6 { src: *inner_src, node: *outer_src, verdict });
            verdict
        })
        .ok_or(Reason::PassIpv6Malformed)??;
    // Only into a pod here.
    let pod = delivery(frame, tables, trace)?;
    if node.trusts_kernel() {
        match gate(frame, tables, trace, Entered::VXLAN) {
            Ok(()) => {}
            Err(Reason::PassFlowPending) => {
                trace.note(Note::Pending {
                    then: Pending::Decapsulate { ifindex: pod.ifindex, mac: pod.mac },
                });
                return Err(Reason::PassFlowPending);
            }
            Err(reason) => return Err(reason),
        }
    }
    carry.carry(Plan6::ToPod { ifindex: pod.ifindex, mac: pod.mac, decap: true })
}

/// A router's ICMPv6 "packet too big" about one of this node's IPv6 VXLAN packets teaches the
/// path MTU toward the node it was going to, for 10 minutes, as the kernel's own
/// `vxlan-v6.calico` learns it (`vxlan_err_lookup` → `ip6_update_pmtu`): IPv4's
/// `steps::learn_path_mtu` for the other family. Only ICMPv6 straight after the fixed header, to
/// this node's address, as long as it says; a claim below 1280 teaches nothing
/// ([`PathMtu::learned6`]). The message goes on to the kernel either way (its own PMTU cache,
/// sockets and device may care).
#[inline(always)]
fn learn_path_mtu<F: Frame, T: Tables, R: Trace>(
    frame: &F,
    tables: &T,
    trace: &mut R,
    node6: &Node6Config,
) -> Result<(), Reason> {
    const LEN: usize = HEADER_LEN + ARRIVING_TOO_BIG_LEN;
    let after_l2 = frame.length().saturating_sub(ETH_LEN as u32);
    let report = frame.read::<LEN, _>(ETH_LEN, |p| {
        let dst: &[u8; 16] = p[24..].first_chunk()?;
        let to_us = p[0] >> 4 == ipv6::VERSION
            && p[6] == NEXT_ICMPV6
            && same_address(dst, &node6.node_ip)
            && u32::from(u16::from_be_bytes([p[4], p[5]])) + HEADER_LEN as u32 <= after_l2;
        if !to_us {
            return None;
        }
        ipv6::path_mtu_report6(p[HEADER_LEN..].first_chunk()?, &node6.node_ip, node6.vxlan.port)
    });
    let Some((peer, mtu)) = report.flatten() else { return Ok(()) };
    let Some(learned) = PathMtu::learned6(mtu, tables.now_ns()) else { return Ok(()) };
    tables.learn_path_mtu6(&peer, learned);
    trace.note(Note::PathMtuReport6 { peer, mtu: learned.mtu });
    Err(Reason::PathMtuLearned)
}

/// The neighbour solicitation a pod sends for its gateway (`fe80::ecee:eeff:feee:eeee`, the host
/// end's own address) or any other address, answered as the kernel would ([`ndp`]). Only a
/// message whose checksum holds is answered (the kernel's `icmpv6_rcv` drops any other), and only
/// one that carries nothing but the sender's link-layer address, the options the programs read.
#[inline(always)]
fn answer_solicitation<F: Frame, H, R: Trace>(frame: &F, trace: &mut R) -> Result<Plan6<H>, Reason> {
    const WITH_OPTION: usize = HEADER_LEN + SOLICITATION_LEN + 8;
    let judged = frame.read::<{ HEADER_LEN + SOLICITATION_LEN }, _>(ETH_LEN, |p| {
        let (header, message) = p.split_at(HEADER_LEN);
        let ip = Ipv6Fields::parse(header.try_into().unwrap_or(&[0; HEADER_LEN]));
        let message: &[u8; SOLICITATION_LEN] = message.try_into().unwrap_or(&[0; SOLICITATION_LEN]);
        let target = ndp::classify_solicitation(&ip, message)?;
        trace.note(Note::NdpAnswered { asker: ip.src, target });
        Ok(ip.payload_len)
    });
    let payload_len = judged.ok_or(Reason::PassNdpMalformed)??;
    // Without options, or with the source link-layer address option alone (8 bytes); summed where
    // it lies, with the pseudo-header (RFC 8200 §8.1).
    let verified = match payload_len as usize {
        SOLICITATION_LEN => frame.read::<{ HEADER_LEN + SOLICITATION_LEN }, _>(ETH_LEN, ndp::verifies),
        _ if payload_len as usize == SOLICITATION_LEN + 8 => {
            frame.read::<WITH_OPTION, _>(ETH_LEN, ndp::verifies)
        }
        _ => None,
    };
    if verified != Some(true) {
        return Err(Reason::PassNdpMalformed);
    }
    Ok(Plan6::AnswerNdp)
}
