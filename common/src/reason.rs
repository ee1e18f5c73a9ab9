//! Why a program returned what it returned: one code per outcome, indexing the counters.
//!
//! Codes are append-only and never renumbered (as Cilium's drop reasons), because the counters map
//! is indexed by them and outlives any one version of the daemon.

/// Every outcome of every program. The counters map has one slot per variant.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// An ARP request from a pod was answered with `ee:ee:ee:ee:ee:ee`.
    ArpReplied = 0,
    /// ARP request whose sender asks for its own address (gratuitous ARP): the kernel's business.
    PassArpGratuitous = 1,
    /// ARP request with sender 0.0.0.0 (duplicate address detection probe).
    PassArpProbe = 2,
    /// ARP that is not a request (a reply, RARP, ...).
    PassArpNotRequest = 3,
    /// ARP that is not Ethernet/IPv4 or is shorter than its header says.
    PassArpMalformed = 4,
    /// A frame too short to hold an Ethernet header.
    PassTruncatedEthernet = 5,
    /// Retired in 0.2 (IPv4 is now forwarded or passed with a precise reason); never counted.
    PassIpv4 = 6,
    /// Neither ARP nor IPv4 (IPv6, LLDP, ...).
    PassOtherEthertype = 7,
    /// Delivered straight into a pod on this node (`bpf_redirect_peer`).
    RedirectedLocal = 8,
    /// Encapsulated in IPIP and sent to the owning node over the underlay.
    Encapsulated = 9,
    /// Sent to the owning node over the underlay without encapsulation.
    RoutedUnderlay = 10,
    /// IPIP from a known node, decapsulated and delivered into a pod on this node.
    Decapsulated = 11,
    /// TTL ≤ 1: the kernel sends ICMP time exceeded, as a router must.
    PassTtlExceeded = 12,
    /// IPv4 with options: the kernel's business.
    PassIpOptions = 13,
    /// An IPv4 fragment: the kernel's business.
    PassFragment = 14,
    /// Not a well-formed IPv4 header (version, IHL, total length).
    PassIpv4Malformed = 15,
    /// No fastpath route for the destination: the kernel routes it.
    PassNoRoute = 16,
    /// The route says "kernel" (for instance a pod whose MAC is not known yet).
    PassKernelRoute = 17,
    /// Node address, loopback, zero, link-local, multicast or broadcast: never fast-pathed.
    PassSpecialDestination = 18,
    /// Underlay traffic that is not a tunnel (IPIP, or VXLAN to this node's `vxlan.calico` port)
    /// to this node.
    PassUnderlayOther = 19,
    /// IPIP or VXLAN to this node whose inner destination is not a pod here.
    PassDecapNotLocal = 20,
    /// Too big for the tunnel but fragmentable (no DF): the kernel fragments it.
    PassTooBig = 21,
    /// The daemon has not configured this node yet.
    PassNotReady = 22,
    /// The kernel's FIB has no usable route to the next hop.
    PassFibFailed = 23,
    /// DF packet too big for the tunnel: answered with ICMP fragmentation needed.
    IcmpFragNeeded = 24,
    /// A pod sent with another pod's source address.
    DropSpoofedSource = 25,
    /// An address in this node's pod block with no pod behind it.
    DropNoEndpoint = 26,
    /// IPIP or VXLAN to this node from an address that is not a known node.
    DropUnknownPeer = 27,
    /// A helper failed after the packet was already changed.
    DropRewriteFailed = 28,
    /// The kernel refused to make room for the tunnel header; the packet is unchanged.
    PassEncapFailed = 29,
    /// `--trust kernel`: the kernel's conntrack holds no confirmed entry for this flow direction
    /// that the kernel has forwarded (yet).
    PassFlowPending = 30,
    /// Retired (the egress judge is gone: conntrack judges NAT too); never counted.
    PassFlowKernelOwned = 31,
    /// Retired (conntrack's timeouts judge idle flows); never counted.
    PassFlowExpired = 32,
    /// `--trust kernel`: TCP FIN or RST seen; the kernel carries the rest of the connection.
    PassFlowClosing = 33,
    /// `--trust kernel`: a packet no flow can be named for (an ICMP error, a protocol without
    /// ports, a cut header).
    PassFlowUntracked = 34,
    /// Retired (the egress programs are gone); never counted.
    FlowApproved = 35,
    /// Retired (the egress programs are gone); never counted.
    FlowMarkedKernelOwned = 36,
    /// Retired (the egress programs are gone); never counted.
    FlowEgressKnown = 37,
    /// Retired (the egress programs are gone); never counted.
    FlowEgressOther = 38,
    /// From a pod: the source is an address of this node's block that no pod has (Calico's
    /// rpfilter drops it; the kernel decides).
    PassSourceUnallocated = 39,
    /// From a pod: the source is no pod's at all (a service, host or outside address).
    PassSourceNotPod = 40,
    /// IPIP or VXLAN from a known node whose inner source is neither that node nor in a block
    /// routed via it: to the kernel still encapsulated.
    PassInnerSourceForeign = 41,
    /// Encapsulated in VXLAN (as the node's `vxlan.calico` would) and sent to the owning node.
    EncapsulatedVxlan = 42,
    /// VXLAN from a known node, decapsulated and delivered into a pod on this node.
    DecapsulatedVxlan = 43,
    /// VXLAN to this node from a known node that the fast path does not take apart (another VNI,
    /// other flags, an inner frame not for this node's `vxlan.calico` or not IPv4): the kernel's
    /// own VXLAN device judges it.
    PassVxlanOther = 44,
    /// Unencapsulated IPv4 from another node (a block route without a tunnel), of a flow the
    /// kernel here delivered before (`--trust kernel`), delivered straight into the pod.
    RoutedFromUnderlay = 45,
    /// The endpoint has classic tc configuration (a qdisc, filter or action): the kernel carries
    /// its traffic both ways, so its qdiscs and filters see every packet.
    PassEndpointTc = 46,
    /// An ip rule sends this destination to another routing table (WireGuard, egress gateway):
    /// the kernel routes it.
    PassPolicyRoute = 47,
    /// The destination lies in a prefix the route map had no room for: the kernel routes it.
    PassMapOverflow = 48,
    /// ICMP "fragmentation needed" from the underlay about one of this node's tunnel packets:
    /// the path MTU toward that node was noted, and the kernel gets the message too.
    PathMtuLearned = 49,
    /// `--trust kernel`: a packet of an approved flow direction arriving elsewhere than its flow
    /// enters (another interface, another node, another tunnel, plain from a sender its source
    /// is not routed through): the kernel judges it.
    PassFlowElsewhere = 50,
}

impl Reason {
    /// Number of reasons in use. The counters map is sized by [`COUNTER_SLOTS`], not this,
    /// so that appending a reason never changes the map's layout.
    pub const COUNT: usize = 51;

    /// Every reason, in code order.
    pub const ALL: [Reason; Self::COUNT] = [
        Reason::ArpReplied,
        Reason::PassArpGratuitous,
        Reason::PassArpProbe,
        Reason::PassArpNotRequest,
        Reason::PassArpMalformed,
        Reason::PassTruncatedEthernet,
        Reason::PassIpv4,
        Reason::PassOtherEthertype,
        Reason::RedirectedLocal,
        Reason::Encapsulated,
        Reason::RoutedUnderlay,
        Reason::Decapsulated,
        Reason::PassTtlExceeded,
        Reason::PassIpOptions,
        Reason::PassFragment,
        Reason::PassIpv4Malformed,
        Reason::PassNoRoute,
        Reason::PassKernelRoute,
        Reason::PassSpecialDestination,
        Reason::PassUnderlayOther,
        Reason::PassDecapNotLocal,
        Reason::PassTooBig,
        Reason::PassNotReady,
        Reason::PassFibFailed,
        Reason::IcmpFragNeeded,
        Reason::DropSpoofedSource,
        Reason::DropNoEndpoint,
        Reason::DropUnknownPeer,
        Reason::DropRewriteFailed,
        Reason::PassEncapFailed,
        Reason::PassFlowPending,
        Reason::PassFlowKernelOwned,
        Reason::PassFlowExpired,
        Reason::PassFlowClosing,
        Reason::PassFlowUntracked,
        Reason::FlowApproved,
        Reason::FlowMarkedKernelOwned,
        Reason::FlowEgressKnown,
        Reason::FlowEgressOther,
        Reason::PassSourceUnallocated,
        Reason::PassSourceNotPod,
        Reason::PassInnerSourceForeign,
        Reason::EncapsulatedVxlan,
        Reason::DecapsulatedVxlan,
        Reason::PassVxlanOther,
        Reason::RoutedFromUnderlay,
        Reason::PassEndpointTc,
        Reason::PassPolicyRoute,
        Reason::PassMapOverflow,
        Reason::PathMtuLearned,
        Reason::PassFlowElsewhere,
    ];

    /// The stable name used in `fastpath stats` and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::ArpReplied => "arp_replied",
            Reason::PassArpGratuitous => "passed_arp_gratuitous",
            Reason::PassArpProbe => "passed_arp_probe",
            Reason::PassArpNotRequest => "passed_arp_not_request",
            Reason::PassArpMalformed => "passed_arp_malformed",
            Reason::PassTruncatedEthernet => "passed_truncated_ethernet",
            Reason::PassIpv4 => "passed_ipv4",
            Reason::PassOtherEthertype => "passed_other_ethertype",
            Reason::RedirectedLocal => "redirected_local",
            Reason::Encapsulated => "encapsulated",
            Reason::RoutedUnderlay => "routed_underlay",
            Reason::Decapsulated => "decapsulated",
            Reason::PassTtlExceeded => "passed_ttl_expiring",
            Reason::PassIpOptions => "passed_ip_options",
            Reason::PassFragment => "passed_fragment",
            Reason::PassIpv4Malformed => "passed_ipv4_malformed",
            Reason::PassNoRoute => "passed_no_route",
            Reason::PassKernelRoute => "passed_kernel_route",
            Reason::PassSpecialDestination => "passed_special_destination",
            Reason::PassUnderlayOther => "passed_underlay_other",
            Reason::PassDecapNotLocal => "passed_decap_not_local",
            Reason::PassTooBig => "passed_too_big",
            Reason::PassNotReady => "passed_not_ready",
            Reason::PassFibFailed => "passed_fib_failed",
            Reason::IcmpFragNeeded => "icmp_frag_needed_sent",
            Reason::DropSpoofedSource => "dropped_spoofed_source",
            Reason::DropNoEndpoint => "dropped_no_endpoint",
            Reason::DropUnknownPeer => "dropped_unknown_tunnel_peer",
            Reason::DropRewriteFailed => "dropped_rewrite_failed",
            Reason::PassEncapFailed => "passed_encap_failed",
            Reason::PassFlowPending => "passed_flow_pending",
            Reason::PassFlowKernelOwned => "passed_flow_kernel_owned",
            Reason::PassFlowExpired => "passed_flow_expired",
            Reason::PassFlowClosing => "passed_flow_closing",
            Reason::PassFlowUntracked => "passed_flow_untracked",
            Reason::FlowApproved => "flow_approved",
            Reason::FlowMarkedKernelOwned => "flow_marked_kernel_owned",
            Reason::FlowEgressKnown => "flow_egress_known",
            Reason::FlowEgressOther => "flow_egress_other",
            Reason::PassSourceUnallocated => "passed_source_unallocated",
            Reason::PassSourceNotPod => "passed_source_not_pod",
            Reason::PassInnerSourceForeign => "passed_inner_source_foreign",
            Reason::EncapsulatedVxlan => "encapsulated_vxlan",
            Reason::DecapsulatedVxlan => "decapsulated_vxlan",
            Reason::PassVxlanOther => "passed_vxlan_other",
            Reason::RoutedFromUnderlay => "routed_from_underlay",
            Reason::PassEndpointTc => "passed_endpoint_tc",
            Reason::PassPolicyRoute => "passed_policy_route",
            Reason::PassMapOverflow => "passed_map_overflow",
            Reason::PathMtuLearned => "path_mtu_learned",
            Reason::PassFlowElsewhere => "passed_flow_elsewhere",
        }
    }

    /// Whether a packet counted under this reason was dropped.
    pub const fn is_drop(self) -> bool {
        matches!(
            self,
            Reason::DropSpoofedSource
                | Reason::DropNoEndpoint
                | Reason::DropUnknownPeer
                | Reason::DropRewriteFailed
        )
    }

    /// Which way a packet counted under this reason goes: dropped, handed to the kernel
    /// unchanged, or sent on by the program itself (redirected, encapsulated, answered).
    pub const fn verdict(self) -> Verdict {
        if self.is_drop() {
            return Verdict::Drop;
        }
        match self {
            Reason::ArpReplied
            | Reason::RedirectedLocal
            | Reason::Encapsulated
            | Reason::RoutedUnderlay
            | Reason::Decapsulated
            | Reason::IcmpFragNeeded
            | Reason::EncapsulatedVxlan
            | Reason::DecapsulatedVxlan
            | Reason::RoutedFromUnderlay
            | Reason::FlowApproved => Verdict::Redirect,
            _ => Verdict::Pass,
        }
    }

    /// A code no program counts any more (kept so codes are never reused): listings leave it out.
    pub const fn is_retired(self) -> bool {
        matches!(
            self,
            Reason::PassIpv4
                | Reason::PassFlowKernelOwned
                | Reason::PassFlowExpired
                | Reason::FlowApproved
                | Reason::FlowMarkedKernelOwned
                | Reason::FlowEgressKnown
                | Reason::FlowEgressOther
        )
    }

    /// The counters slot of this reason.
    pub const fn index(self) -> u32 {
        self as u32
    }
}

/// What a program's tc action does with a packet, as `monitor` and the metrics name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// To the kernel unchanged (`TC_ACT_UNSPEC`, or `TC_ACT_OK`).
    Pass,
    /// Sent on by the program (`TC_ACT_REDIRECT`).
    Redirect,
    /// Dropped (`TC_ACT_SHOT`).
    Drop,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Pass, Verdict::Redirect, Verdict::Drop];

    /// The stable name used in metrics labels, `monitor` and its filters.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Redirect => "redirect",
            Verdict::Drop => "drop",
        }
    }

    /// A tc action as the programs return it (include/uapi/linux/pkt_cls.h): `TC_ACT_UNSPEC`
    /// (-1) and `TC_ACT_OK` (0) pass, `TC_ACT_SHOT` (2) drops, `TC_ACT_REDIRECT` (7) redirects.
    pub const fn from_tc_action(action: i32) -> Option<Self> {
        match action {
            -1 | 0 => Some(Verdict::Pass),
            2 => Some(Verdict::Drop),
            7 => Some(Verdict::Redirect),
            _ => None,
        }
    }
}

impl TryFrom<u32> for Reason {
    type Error = u32;

    fn try_from(code: u32) -> Result<Self, Self::Error> {
        match Reason::ALL.get(code as usize) {
            Some(reason) => Ok(*reason),
            None => Err(code),
        }
    }
}

/// Slots in the counters map: room for reasons added later without resizing a pinned map.
pub const COUNTER_SLOTS: u32 = 64;

const _: () = assert!(Reason::COUNT as u32 <= COUNTER_SLOTS);
const _: () = {
    // ALL must list every reason at the index of its code.
    let mut i = 0;
    while i < Reason::COUNT {
        assert!(Reason::ALL[i] as usize == i);
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_names_are_unique() {
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(Reason::try_from(i as u32), Ok(*reason));
            for other in &Reason::ALL[i + 1..] {
                assert_ne!(reason.as_str(), other.as_str());
            }
        }
        assert_eq!(Reason::try_from(Reason::COUNT as u32), Err(Reason::COUNT as u32));
    }

    #[test]
    fn verdicts_agree_with_the_names() {
        for reason in Reason::ALL.into_iter().filter(|r| !r.is_retired()) {
            let name = reason.as_str();
            let expected = if name.starts_with("dropped_") {
                Verdict::Drop
            } else if name.starts_with("passed_") || name == "path_mtu_learned" {
                Verdict::Pass
            } else {
                Verdict::Redirect
            };
            assert_eq!(reason.verdict(), expected, "{name}");
        }
        assert_eq!(Verdict::from_tc_action(-1), Some(Verdict::Pass));
        assert_eq!(Verdict::from_tc_action(7), Some(Verdict::Redirect));
        assert_eq!(Verdict::from_tc_action(3), None);
    }

    #[test]
    fn drop_reasons_are_named_dropped() {
        for reason in Reason::ALL {
            assert_eq!(reason.is_drop(), reason.as_str().starts_with("dropped_"), "{reason:?}");
        }
    }
}
