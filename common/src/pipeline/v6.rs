//! IPv6 from a pod, the second family of a dual-stack pod (issue 20, first step): a neighbour
//! solicitation is answered as the host end of the veth would answer it, and a packet to another
//! pod on this node is carried into it. Everything else of IPv6 (other nodes, a router's
//! judgement, `--trust kernel`'s flows) is still the kernel's.
//!
//! Every step judges the packet's bytes where they lie, inside [`Frame::read`]: an IPv6 header
//! is 40 bytes, and copies of it would not fit beside the IPv4 walk in `from_pod`'s 512 bytes of
//! stack. The endpoint table is even looked up with the address in the packet as its key.

use super::{
    frame::{Frame, ETH_LEN},
    Note, Plan, Tables, Trace,
};
use crate::{
    ipv6::{self, Ipv6Fields, HEADER_LEN, NEXT_ICMPV6, UNSPECIFIED},
    ndp::{self, SOLICITATION_LEN, TYPE_NEIGHBOUR_SOLICITATION, TYPE_REDIRECT, TYPE_ROUTER_SOLICITATION},
    Reason,
};

/// What the fast path does with an IPv6 frame it carries: [`Plan`]'s IPv6 variants, in a type
/// of their own, so that a program's IPv6 subprogram holds 12 bytes of answer, not a whole
/// `Plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan6 {
    /// [`Plan::AnswerNdp`].
    AnswerNdp,
    /// [`Plan::ToPodV6`].
    ToPod { ifindex: u32, mac: [u8; 6] },
}

impl<H> From<Plan6> for Plan<H> {
    fn from(plan: Plan6) -> Self {
        match plan {
            Plan6::AnswerNdp => Plan::AnswerNdp,
            Plan6::ToPod { ifindex, mac } => Plan::ToPodV6 { ifindex, mac },
        }
    }
}

/// Where the source and the destination address lie.
const SRC: usize = ETH_LEN + 8;
const DST: usize = ETH_LEN + 24;

/// An IPv6 packet from the pod behind `ingress`.
#[inline(always)]
pub fn from_pod<F: Frame, T: Tables, R: Trace>(
    frame: &F,
    ingress: u32,
    tables: &T,
    trace: &mut R,
) -> Result<Plan6, Reason> {
    // Neighbour discovery (RFC 4861's messages, types 133 to 137): a solicitation is answered,
    // the rest is the kernel's.
    let discovery = frame.read::<{ HEADER_LEN + 1 }, _>(ETH_LEN, |h| {
        (h[6] == NEXT_ICMPV6 && (TYPE_ROUTER_SOLICITATION..=TYPE_REDIRECT).contains(&h[HEADER_LEN]))
            .then_some(h[HEADER_LEN])
    });
    match discovery.flatten() {
        Some(TYPE_NEIGHBOUR_SOLICITATION) => return answer_solicitation(frame, trace),
        Some(_) => return Err(Reason::PassNdpNotSolicitation),
        None => {}
    }
    let node = tables.node()?;
    let after_l2 = frame.length().saturating_sub(ETH_LEN as u32);
    frame
        .read::<HEADER_LEN, _>(ETH_LEN, |h| ipv6::check_forwardable(&Ipv6Fields::parse(h), after_l2))
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
    // The daemon judges IPv4 flows only: under --trust kernel the kernel carries all of IPv6.
    if node.trusts_kernel() {
        return Err(Reason::PassIpv6Untrusted);
    }
    // This node's own addresses are the kernel's too, but none of them is a pod's /128: the
    // endpoint table settles it.
    let pod = frame
        .read::<16, _>(DST, |dst| {
            if ipv6::is_special_destination(*dst, UNSPECIFIED) {
                return Err(Reason::PassSpecialDestination);
            }
            let pod = tables.endpoint6(dst).ok_or(Reason::PassNoRoute)?;
            trace.note(Note::Destination6 { dst: *dst, ifindex: pod.ifindex });
            Ok(pod)
        })
        .ok_or(Reason::PassIpv6Malformed)??;
    Ok(Plan6::ToPod { ifindex: pod.ifindex, mac: pod.mac })
}

/// The neighbour solicitation a pod sends for its gateway (`fe80::ecee:eeff:feee:eeee`, the host
/// end's own address) or any other address, answered as the kernel would ([`ndp`]). Only a
/// message whose checksum holds is answered (the kernel's `icmpv6_rcv` drops any other), and only
/// one that carries nothing but the sender's link-layer address, the options the programs read.
#[inline(always)]
fn answer_solicitation<F: Frame, R: Trace>(frame: &F, trace: &mut R) -> Result<Plan6, Reason> {
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
