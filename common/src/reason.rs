//! Why a program returned what it returned: one code per outcome, indexing the counters.
//!
//! Codes are append-only and never renumbered (as Cilium's drop reasons), because the counters map
//! is indexed by them and outlives any one version of the daemon.
//!
//! Each reason is declared once, in the `reasons!` table below (as Cilium's
//! `bpf/lib/drop_reasons.h` is one table): its code, its metrics label ([`Reason::as_str`], metrics
//! API: a label never changes), and the words `fastpath explain` prints ([`Reason::short`],
//! [`Reason::describe`]). The enum, [`Reason::ALL`], [`Reason::COUNT`] and those methods are
//! generated from it.

/// Declares [`Reason`] from one table: per variant its doc comment, name, code, metrics label,
/// short phrase and describing sentence.
macro_rules! reasons {
    (
        $(#[$enum_attr:meta])*
        pub enum Reason {
            $(
                $(#[$attr:meta])*
                $name:ident = $code:literal {
                    label: $label:literal,
                    short: $short:literal,
                    describe: $describe:literal $(,)?
                }
            ),* $(,)?
        }
    ) => {
        $(#[$enum_attr])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $(
                $(#[$attr])*
                $name = $code,
            )*
        }

        impl Reason {
            /// Number of reasons in use. The counters map is sized by [`COUNTER_SLOTS`], not this,
            /// so that appending a reason never changes the map's layout.
            pub const COUNT: usize = [$(Reason::$name),*].len();

            /// Every reason, in code order.
            pub const ALL: [Reason; Self::COUNT] = [$(Reason::$name),*];

            /// The stable name used in `fastpath stats` and metrics labels.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => $label,)*
                }
            }

            /// What happened, in a few words (`fastpath explain`'s verdict line).
            pub const fn short(self) -> &'static str {
                match self {
                    $(Reason::$name => $short,)*
                }
            }

            /// Why this reason applies, in a sentence (`fastpath explain`'s reasoning).
            pub const fn describe(self) -> &'static str {
                match self {
                    $(Reason::$name => $describe,)*
                }
            }
        }
    };
}

reasons! {
    /// Every outcome of every program. The counters map has one slot per variant.
    pub enum Reason {
        /// An ARP request from a pod was answered with `ee:ee:ee:ee:ee:ee`.
        ArpReplied = 0 {
            label: "arp_replied",
            short: "an ARP request answered",
            describe: "the programs answer a pod's ARP request with ee:ee:ee:ee:ee:ee, as a proxy would, so the pod sends every packet to the node",
        },
        /// ARP request whose sender asks for its own address (gratuitous ARP): the kernel's business.
        PassArpGratuitous = 1 {
            label: "passed_arp_gratuitous",
            short: "gratuitous ARP",
            describe: "a pod announcing its own address is the kernel's business",
        },
        /// ARP request with sender 0.0.0.0 (duplicate address detection probe).
        PassArpProbe = 2 {
            label: "passed_arp_probe",
            short: "duplicate-address probe",
            describe: "a duplicate-address probe (sender 0.0.0.0) must stay unanswered",
        },
        /// ARP that is not a request (a reply, RARP, ...).
        PassArpNotRequest = 3 {
            label: "passed_arp_not_request",
            short: "ARP that is not a request",
            describe: "the programs answer only ARP requests; a reply (or RARP, ...) is the kernel's business",
        },
        /// ARP that is not Ethernet/IPv4 or is shorter than its header says.
        PassArpMalformed = 4 {
            label: "passed_arp_malformed",
            short: "ARP that is not Ethernet/IPv4",
            describe: "ARP that is not Ethernet/IPv4, or is shorter than its header says, goes to the kernel unchanged",
        },
        /// A frame too short to hold an Ethernet header.
        PassTruncatedEthernet = 5 {
            label: "passed_truncated_ethernet",
            short: "a frame shorter than an Ethernet header",
            describe: "a frame too short to hold an Ethernet header goes to the kernel unchanged",
        },
        /// Retired in 0.2 (IPv4 is now forwarded or passed with a precise reason); never counted.
        PassIpv4 = 6 {
            label: "passed_ipv4",
            short: "a retired code",
            describe: "a retired code, counted by no program",
        },
        /// Neither ARP nor IPv4 (IPv6, LLDP, ...).
        PassOtherEthertype = 7 {
            label: "passed_other_ethertype",
            short: "neither ARP nor IPv4",
            describe: "the programs carry only ARP and IPv4; the kernel takes any other ethertype (IPv6, LLDP, ...)",
        },
        /// Delivered straight into a pod on this node (`bpf_redirect_peer`).
        RedirectedLocal = 8 {
            label: "redirected_local",
            short: "delivered into a pod on this node",
            describe: "the destination is a pod on this node: the program delivers the packet straight into it",
        },
        /// Encapsulated in IPIP and sent to the owning node over the underlay.
        Encapsulated = 9 {
            label: "encapsulated",
            short: "encapsulated in IPIP",
            describe: "the destination's block belongs to another node reached over IPIP: the program encapsulates the packet and sends it there over the underlay",
        },
        /// Sent to the owning node over the underlay without encapsulation.
        RoutedUnderlay = 10 {
            label: "routed_underlay",
            short: "routed over the underlay",
            describe: "the destination's block belongs to another node reached without a tunnel: the program sends the packet there over the underlay as it is",
        },
        /// IPIP from a known node, decapsulated and delivered into a pod on this node.
        Decapsulated = 11 {
            label: "decapsulated",
            short: "decapsulated from IPIP into a pod on this node",
            describe: "IPIP from a known node for a pod on this node: the program takes off the outer header and delivers the packet into the pod",
        },
        /// TTL ≤ 1: the kernel sends ICMP time exceeded, as a router must.
        PassTtlExceeded = 12 {
            label: "passed_ttl_expiring",
            short: "TTL expiring",
            describe: "TTL ≤ 1: the kernel sends ICMP time exceeded, as a router must",
        },
        /// IPv4 with options: the kernel's business.
        PassIpOptions = 13 {
            label: "passed_ip_options",
            short: "IPv4 options",
            describe: "IP options and fragments need the kernel's judgement",
        },
        /// An IPv4 fragment: the kernel's business.
        PassFragment = 14 {
            label: "passed_fragment",
            short: "an IPv4 fragment",
            describe: "IP options and fragments need the kernel's judgement",
        },
        /// Not a well-formed IPv4 header (version, IHL, total length).
        PassIpv4Malformed = 15 {
            label: "passed_ipv4_malformed",
            short: "a malformed IPv4 header",
            describe: "a header that is not well-formed IPv4 (version, header length, total length) is the kernel's to judge",
        },
        /// No fastpath route for the destination: the kernel routes it.
        PassNoRoute = 16 {
            label: "passed_no_route",
            short: "no fastpath route",
            describe: "the route table has no fastpath entry for the destination (host, service or outside addresses)",
        },
        /// The route says "kernel" (for instance a pod whose MAC is not known yet).
        PassKernelRoute = 17 {
            label: "passed_kernel_route",
            short: "the route is the kernel's",
            describe: "the route says the kernel routes it (a local pod whose MAC is not known yet, a VXLAN block whose neighbour or FDB entry is not, this node's tunnel address)",
        },
        /// Node address, loopback, zero, link-local, multicast or broadcast: never fast-pathed.
        PassSpecialDestination = 18 {
            label: "passed_special_destination",
            short: "a destination never fast-pathed",
            describe: "this node, loopback, 0.0.0.0/8, link-local (169.254.1.1) and multicast/broadcast never take the fast path",
        },
        /// Underlay traffic that is not a tunnel (IPIP, or VXLAN to this node's `vxlan.calico` port)
        /// to this node.
        PassUnderlayOther = 19 {
            label: "passed_underlay_other",
            short: "not a tunnel the programs take apart",
            describe: "the kernel takes what is not a tunnel the programs stand in for",
        },
        /// IPIP or VXLAN to this node whose inner destination is not a pod here.
        PassDecapNotLocal = 20 {
            label: "passed_decap_not_local",
            short: "not for a pod on this node",
            describe: "after decapsulation the destination is not a pod on this node",
        },
        /// Too big for the tunnel but fragmentable (no DF): the kernel fragments it.
        PassTooBig = 21 {
            label: "passed_too_big",
            short: "too big for the tunnel",
            describe: "it is too big for the tunnel but may be fragmented, which the kernel does (IPv6: the kernel answers it with ICMPv6 packet too big)",
        },
        /// The daemon has not configured this node yet.
        PassNotReady = 22 {
            label: "passed_not_ready",
            short: "the node is not configured yet",
            describe: "the daemon has not written this node's settings",
        },
        /// The kernel's FIB has no usable route to the next hop.
        PassFibFailed = 23 {
            label: "passed_fib_failed",
            short: "no usable route to the next hop",
            describe: "the kernel's FIB (bpf_fib_lookup) has no usable route to the next hop out of the underlay (for IPv6 also: its next hop is a router the kernel has no neighbour entry for yet): the kernel routes it",
        },
        /// DF packet too big for the tunnel: answered with ICMP fragmentation needed.
        IcmpFragNeeded = 24 {
            label: "icmp_frag_needed_sent",
            short: "answered with ICMP fragmentation needed",
            describe: "a packet that may not be fragmented (DF) is too big for the tunnel: the program answers the sender with ICMP fragmentation needed, as the kernel's tunnel would",
        },
        /// A pod sent with another pod's source address.
        DropSpoofedSource = 25 {
            label: "dropped_spoofed_source",
            short: "spoofed source",
            describe: "the source check (Calico's RPF) drops a pod sending with another pod's address",
        },
        /// An address in this node's pod block with no pod behind it.
        DropNoEndpoint = 26 {
            label: "dropped_no_endpoint",
            short: "no pod at this address of the node's block",
            describe: "the address is in this node's pod block (a blackhole route) but no pod has it",
        },
        /// IPIP or VXLAN to this node from an address that is not a known node.
        DropUnknownPeer = 27 {
            label: "dropped_unknown_tunnel_peer",
            short: "a tunnel from an unknown node",
            describe: "only nodes that own a block in the route table may send IPIP or VXLAN to this node",
        },
        /// A helper failed after the packet was already changed.
        DropRewriteFailed = 28 {
            label: "dropped_rewrite_failed",
            short: "a helper failed mid-rewrite",
            describe: "a helper failed after the packet was already changed: half rewritten, it can be neither sent on nor handed to the kernel, so it is dropped",
        },
        /// The kernel refused to make room for the tunnel header; the packet is unchanged.
        PassEncapFailed = 29 {
            label: "passed_encap_failed",
            short: "no room for the tunnel header",
            describe: "the kernel refused to make room for the tunnel header; the packet goes to the kernel unchanged",
        },
        /// `--trust kernel`: the kernel's conntrack holds no confirmed entry for this flow direction
        /// that the kernel has forwarded (yet).
        PassFlowPending = 30 {
            label: "passed_flow_pending",
            short: "the kernel has not confirmed the flow yet",
            describe: "the kernel's conntrack holds no confirmed entry of this flow direction yet",
        },
        /// Retired (the egress judge is gone: conntrack judges NAT too); never counted.
        PassFlowKernelOwned = 31 {
            label: "passed_flow_kernel_owned",
            short: "a retired code",
            describe: "a retired code, counted by no program",
        },
        /// Retired (conntrack's timeouts judge idle flows); never counted.
        PassFlowExpired = 32 {
            label: "passed_flow_expired",
            short: "a retired code",
            describe: "a retired code, counted by no program",
        },
        /// `--trust kernel`: TCP FIN or RST seen; the kernel carries the rest of the connection.
        PassFlowClosing = 33 {
            label: "passed_flow_closing",
            short: "the connection is closing",
            describe: "TCP FIN or RST seen: the kernel carries the rest of the connection",
        },
        /// `--trust kernel`: a packet no flow can be named for (an ICMP error, a protocol without
        /// ports, a cut header).
        PassFlowUntracked = 34 {
            label: "passed_flow_untracked",
            short: "no flow can be named for it",
            describe: "only the kernel can relate it to a flow",
        },
        /// Retired (the egress programs are gone); never counted.
        FlowApproved = 35 {
            label: "flow_approved",
            short: "a retired code",
            describe: "a retired code, counted by no program",
        },
        /// Retired (the egress programs are gone); never counted.
        FlowMarkedKernelOwned = 36 {
            label: "flow_marked_kernel_owned",
            short: "a retired code",
            describe: "a retired code, counted by no program",
        },
        /// Retired (the egress programs are gone); never counted.
        FlowEgressKnown = 37 {
            label: "flow_egress_known",
            short: "a retired code",
            describe: "a retired code, counted by no program",
        },
        /// Retired (the egress programs are gone); never counted.
        FlowEgressOther = 38 {
            label: "flow_egress_other",
            short: "a retired code",
            describe: "a retired code, counted by no program",
        },
        /// From a pod: the source is an address of this node's block that no pod has (Calico's
        /// rpfilter drops it; the kernel decides).
        PassSourceUnallocated = 39 {
            label: "passed_source_unallocated",
            short: "the source is an unallocated address of this node's block",
            describe: "the fast path carries a pod's packet only from an address of its own interface; the kernel's rpfilter and FORWARD rules judge any other source",
        },
        /// From a pod: the source is no pod's at all (a service, host or outside address).
        PassSourceNotPod = 40 {
            label: "passed_source_not_pod",
            short: "the source is no pod's address",
            describe: "the fast path carries a pod's packet only from an address of its own interface; the kernel's rpfilter and FORWARD rules judge any other source",
        },
        /// IPIP or VXLAN from a known node whose inner source is neither that node nor in a block
        /// routed via it: to the kernel still encapsulated.
        PassInnerSourceForeign = 41 {
            label: "passed_inner_source_foreign",
            short: "the inner source does not belong to the sending node",
            describe: "a node may send only its own pods' and its own packets; the kernel gets any other still encapsulated",
        },
        /// Encapsulated in VXLAN (as the node's `vxlan.calico` would) and sent to the owning node.
        EncapsulatedVxlan = 42 {
            label: "encapsulated_vxlan",
            short: "encapsulated in VXLAN",
            describe: "the destination's block belongs to another node reached over VXLAN: the program encapsulates the packet as the node's vxlan.calico would and sends it there over the underlay",
        },
        /// VXLAN from a known node, decapsulated and delivered into a pod on this node.
        DecapsulatedVxlan = 43 {
            label: "decapsulated_vxlan",
            short: "decapsulated from VXLAN into a pod on this node",
            describe: "VXLAN from a known node for a pod on this node: the program takes off the outer headers and delivers the packet into the pod",
        },
        /// VXLAN to this node from a known node that the fast path does not take apart (another VNI,
        /// other flags, an inner frame not for this node's `vxlan.calico` or not IPv4): the kernel's
        /// own VXLAN device judges it.
        PassVxlanOther = 44 {
            label: "passed_vxlan_other",
            short: "VXLAN the kernel's device judges",
            describe: "VXLAN the programs do not take apart goes to the kernel's own vxlan device",
        },
        /// Unencapsulated IPv4 from another node (a block route without a tunnel), of a flow the
        /// kernel here delivered before (`--trust kernel`), delivered straight into the pod.
        RoutedFromUnderlay = 45 {
            label: "routed_from_underlay",
            short: "delivered from the underlay into a pod on this node",
            describe: "plain IPv4 from another node, of a flow the kernel here delivered before: the program delivers it straight into the pod",
        },
        /// The endpoint has classic tc configuration (a qdisc, filter or action): the kernel carries
        /// its traffic both ways, so its qdiscs and filters see every packet.
        PassEndpointTc = 46 {
            label: "passed_endpoint_tc",
            short: "the pod's interface has classic tc configuration",
            describe: "a pod whose interface has a qdisc, filter or action of classic tc (a bandwidth limit, say) is carried by the kernel both ways, so the configuration sees every packet",
        },
        /// An ip rule sends this destination to another routing table (WireGuard, egress gateway):
        /// the kernel routes it.
        PassPolicyRoute = 47 {
            label: "passed_policy_route",
            short: "an ip rule routes it through another table",
            describe: "an ip rule sends the packet to a routing table other than main (WireGuard's, an egress gateway's), which the fast path does not reproduce",
        },
        /// The destination lies in a prefix the route map had no room for: the kernel routes it.
        PassMapOverflow = 48 {
            label: "passed_map_overflow",
            short: "the route map had no room for its prefix",
            describe: "the route map was full: a prefix inside this one could not be written, so the kernel routes it",
        },
        /// ICMP "fragmentation needed" from the underlay about one of this node's tunnel packets:
        /// the path MTU toward that node was noted, and the kernel gets the message too.
        PathMtuLearned = 49 {
            label: "path_mtu_learned",
            short: "a router's path MTU, noted",
            describe: "the tunnel toward that node now carries less, for 10 minutes, as the kernel's own tunnels learn it; the kernel gets the message too",
        },
        /// `--trust kernel`: a packet of an approved flow direction arriving elsewhere than its flow
        /// enters (another interface, another node, another tunnel, plain from a sender its source
        /// is not routed through): the kernel judges it.
        PassFlowElsewhere = 50 {
            label: "passed_flow_elsewhere",
            short: "it arrives elsewhere than its flow enters",
            describe: "conntrack's entry binds the flow to where it enters (a pod's interface, a node's tunnel, a sender on the underlay), and this packet arrives elsewhere",
        },
        /// ICMPv6 from a pod that is not a neighbour solicitation (a router solicitation, an
        /// advertisement, a redirect, ...): the kernel's business.
        PassNdpNotSolicitation = 51 {
            label: "passed_ndp_not_solicitation",
            short: "ICMPv6 that is not a neighbour solicitation",
            describe: "only a pod's neighbour solicitations are answered; router solicitations and every other ICMPv6 message are the kernel's",
        },
        /// A neighbour solicitation RFC 4861 §7.1.1 calls invalid (hop limit not 255, code not 0,
        /// too short, a multicast target, a bad checksum), or one with options the programs do not
        /// read.
        PassNdpMalformed = 52 {
            label: "passed_ndp_malformed",
            short: "an invalid neighbour solicitation",
            describe: "a solicitation with a hop limit other than 255, a code other than 0, a multicast target, too few bytes, a bad checksum or options beyond the sender's link-layer address is the kernel's to judge",
        },
        /// A neighbour solicitation from the unspecified address (duplicate address detection).
        PassNdpDadProbe = 53 {
            label: "passed_ndp_dad_probe",
            short: "duplicate-address probe",
            describe: "a duplicate-address probe (source ::) must stay unanswered",
        },
        /// A pod soliciting its own address: the kernel's business.
        PassNdpOwnAddress = 54 {
            label: "passed_ndp_own_address",
            short: "a pod asking for its own address",
            describe: "a pod soliciting its own address is checking it, which is the kernel's business",
        },
        /// Not a well-formed IPv6 header (version, payload length, a multicast source).
        PassIpv6Malformed = 55 {
            label: "passed_ipv6_malformed",
            short: "malformed IPv6",
            describe: "the IPv6 header is not well-formed (version, payload length past the frame, a multicast source)",
        },
        /// IPv6 with an extension header (hop-by-hop, routing, destination options, AH, ESP, ...).
        PassIpv6ExtensionHeader = 56 {
            label: "passed_ipv6_extension_header",
            short: "IPv6 with an extension header",
            describe: "extension headers need the kernel's judgement, as IPv4 options do",
        },
        /// IPv6 whose upper layer is not one the fast path carries.
        PassIpv6OtherNextHeader = 57 {
            label: "passed_ipv6_other_next_header",
            short: "IPv6 of an upper layer the fast path does not carry",
            describe: "the fast path carries only TCP, UDP, UDP-Lite, SCTP, DCCP and ICMPv6 over IPv6",
        },
        /// A pod's IPv6 neighbour solicitation answered with `ee:ee:ee:ee:ee:ee`.
        NdpReplied = 58 {
            label: "ndp_replied",
            short: "a neighbour solicitation answered",
            describe: "the programs answer a pod's neighbour solicitation with ee:ee:ee:ee:ee:ee, as the host end's own address (the gateway) or a proxy would, so the pod sends every IPv6 packet to the node",
        },
        /// `--trust kernel`: an IPv6 flow conntrack translates (an IPv6 service, natOutgoing):
        /// the fast path does not translate IPv6, so the kernel carries it.
        PassIpv6Translated = 59 {
            label: "passed_ipv6_translated",
            short: "an IPv6 flow conntrack translates",
            describe: "under --trust kernel, conntrack translates this IPv6 flow (a service's DNAT, or SNAT), which the fast path does not do for IPv6, so the kernel carries it",
        },
        /// IPv6 VXLAN needs a real UDP checksum (the kernel's `vxlan-v6.calico` drops a zero one),
        /// which the programs make without reading the payload only for a whole TCP, UDP or
        /// ICMPv6 packet, or a TCP or UDP GSO packet cut into equal segments (they all carry one
        /// checksum). A GSO packet with a shorter last segment (its checksum would differ),
        /// another upper layer, a UDP datagram without a checksum or a frame with bytes after its
        /// packet is handed straight to this node's `vxlan-v6.calico` (hop limit − 1, inner
        /// Ethernet to the other node's VTEP), which encapsulates and checksums it (per segment,
        /// in GSO), without a pass through the kernel's forwarding.
        Vxlan6ByDevice = 60 {
            label: "redirected_vxlan6_device",
            short: "handed to vxlan-v6.calico to encapsulate",
            describe: "IPv6 VXLAN must carry a real UDP checksum; the program makes it from the inner packet's own checksum only for a whole TCP, UDP or ICMPv6 packet or a TCP or UDP GSO packet of equal segments, so a GSO packet with a shorter last segment, another upper layer or a datagram without a checksum is handed to this node's vxlan-v6.calico, which encapsulates and checksums it",
        },
        /// An IPv6 packet too big for the tunnel or the underlay: answered with ICMPv6 "packet too
        /// big" carrying that MTU (a router never fragments IPv6).
        Icmp6PacketTooBig = 61 {
            label: "icmp6_packet_too_big_sent",
            short: "answered with ICMPv6 packet too big",
            describe: "an IPv6 packet is too big for the tunnel or the underlay, and IPv6 is never fragmented on the way: the program answers the sender with ICMPv6 packet too big carrying the MTU, as the kernel would",
        },
    }
}

impl Reason {
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
            | Reason::NdpReplied
            | Reason::RedirectedLocal
            | Reason::Encapsulated
            | Reason::RoutedUnderlay
            | Reason::Decapsulated
            | Reason::IcmpFragNeeded
            | Reason::Icmp6PacketTooBig
            | Reason::Vxlan6ByDevice
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
    fn every_reason_has_a_label_and_words_and_labels_are_unique() {
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert!(!reason.as_str().is_empty(), "{reason:?}");
            assert!(!reason.short().is_empty(), "{reason:?}");
            assert!(!reason.describe().is_empty(), "{reason:?}");
            for other in &Reason::ALL[i + 1..] {
                assert_ne!(reason.as_str(), other.as_str(), "{reason:?} and {other:?}");
            }
        }
    }

    #[test]
    fn metrics_labels_never_change() {
        // Labels are metrics API: a spot check that the table still says what dashboards read.
        assert_eq!(Reason::ArpReplied.as_str(), "arp_replied");
        assert_eq!(Reason::Encapsulated.as_str(), "encapsulated");
        assert_eq!(Reason::PassTtlExceeded.as_str(), "passed_ttl_expiring");
        assert_eq!(Reason::IcmpFragNeeded.as_str(), "icmp_frag_needed_sent");
        assert_eq!(Reason::DropUnknownPeer.as_str(), "dropped_unknown_tunnel_peer");
        assert_eq!(Reason::EncapsulatedVxlan.as_str(), "encapsulated_vxlan");
        assert_eq!(Reason::PassFlowElsewhere.as_str(), "passed_flow_elsewhere");
        assert_eq!(Reason::COUNT, 62);
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
