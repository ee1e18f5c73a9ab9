//! `fastpath explain`: what the programs would do with a packet, and why.
//!
//! There is no decision here: `explain` runs the programs' own walk
//! (`fastpath_common::pipeline`) on a frame, over the pinned maps, and puts the notes the walk
//! took on its way, and the plan it ends with, into words. `tests/tests/explain_agrees.rs` feeds
//! it the very frames the programs get through BPF_PROG_TEST_RUN and requires the same verdict
//! and reason, as a safety net; the command builds its frame from the question on the command
//! line.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use aya::maps::{lpm_trie::Key, HashMap, MapData};
use fastpath_common::{
    flow::{self, Admission, FlowKey, FlowValue},
    flow6::{FlowKey6, FlowValue6},
    ipv4::{self, OuterIpv4, FLAG_DF, HEADER_LEN, PROTO_TCP},
    ipv6,
    maps::{
        AgentInfo, Endpoint, NextHopEntry, Node6Config, NodeConfig, PathMtu, AGENT, ENDPOINTS, ENDPOINTS6,
        NEXT_HOPS, NODE, NODE6, PATH_MTU, PATH_MTU6, ROUTES6, TUNNEL_PEERS, TUNNEL_PEERS6,
    },
    ndp,
    pipeline::{self, Bytes, Limit, Note, Pending, Plan, Plan6, Tables, Trace, ETH_LEN, ETH_P_ARP, ETH_P_IP},
    route::{Forward, RouteKind, RouteValue},
    route6::{Forward6, RouteValue6},
    tunnel::Tunnel,
    vxlan::{self, VxlanConfig},
    Reason, GATEWAY_MAC,
};

use crate::{
    cli::Encap,
    clock::monotonic_ns,
    commands::flows::{self, Flow, FlowRow},
    daemon::{netlink::Netlink, picture, routes},
    dataplane::{bpffs, tables},
    text::{mac_string, unpadded},
    Error,
};

/// The program a frame meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// `from_pod`, on the pod interface with this ifindex (0: none known).
    FromPod { ingress: u32 },
    /// `from_underlay`.
    FromUnderlay,
}

/// What the program returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// TC_ACT_UNSPEC: to the kernel, unchanged.
    Kernel,
    /// TC_ACT_SHOT.
    Drop,
    /// TC_ACT_REDIRECT: the fast path carries it.
    Redirect,
}

/// The programs' decision about one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The counter it is counted under.
    pub reason: Reason,
    /// The verdict in words: the first line `explain` prints.
    pub words: String,
    /// Why, one clause each.
    pub why: Vec<String>,
    /// Under `--trust kernel`, when the flow gate sent the frame to the kernel: what the routes
    /// would have the fast path do once the flow is approved.
    pub once_approved: Option<String>,
}

/// What the decision reads: the maps, as the programs see them, and the clock they read.
pub struct Maps<'a> {
    pub node: NodeConfig,
    /// The route trie's longest match.
    pub route: &'a dyn Fn([u8; 4]) -> Option<RouteValue>,
    /// The endpoint table's exact match.
    pub endpoint: &'a dyn Fn([u8; 4]) -> Option<Endpoint>,
    /// The IPv6 endpoint table's exact match.
    pub endpoint6: &'a dyn Fn([u8; 16]) -> Option<Endpoint>,
    pub is_peer: &'a dyn Fn([u8; 4]) -> bool,
    /// This node's IPv6 side, as pinned (the programs read it only when ready).
    pub node6: Node6Config,
    /// The IPv6 route trie's longest match.
    pub route6: &'a dyn Fn([u8; 16]) -> Option<RouteValue6>,
    /// Whether a node's IPv6 VXLAN is accepted.
    pub is_peer6: &'a dyn Fn([u8; 16]) -> bool,
    /// The path MTU toward a node, as a router taught the programs.
    pub path_mtu: &'a dyn Fn([u8; 4]) -> Option<PathMtu>,
    /// The path MTU toward a node's IPv6 address, as a router taught the programs.
    pub path_mtu6: &'a dyn Fn([u8; 16]) -> Option<PathMtu>,
    /// The MAC the programs' next-hop cache holds for a node or gateway on the underlay (as of
    /// the current generation), for the sender of a plain packet.
    pub next_hop_mac: &'a dyn Fn([u8; 4]) -> Option<[u8; 6]>,
    /// The flow table's exact match (`--trust kernel`).
    pub flow: &'a dyn Fn(&FlowKey) -> Option<FlowValue>,
    /// The IPv6 flow table's exact match.
    pub flow6: &'a dyn Fn(&FlowKey6) -> Option<FlowValue6>,
    /// Every flow both tables hold, for the words of a question that names no flow.
    pub flows: &'a [FlowRow],
    /// `bpf_ktime_get_ns()` now (`CLOCK_MONOTONIC`), for idle flows.
    pub now_ns: u64,
    pub ifname: &'a dyn Fn(u32) -> Option<String>,
}

/// The maps as the shared walk reads them. `explain` cannot ask the kernel's FIB from here: a
/// hop is what the FIB will say, on the underlay.
impl Tables for Maps<'_> {
    type Route = RouteValue;
    type Flow = FlowValue;
    type Hop = ();
    type Route6 = RouteValue6;
    type Hop6 = ();
    type Flow6 = FlowValue6;

    fn node(&self) -> Result<&NodeConfig, Reason> {
        if self.node.ready() {
            Ok(&self.node)
        } else {
            Err(Reason::PassNotReady)
        }
    }

    fn route(&self, addr: [u8; 4]) -> Option<RouteValue> {
        (self.route)(addr)
    }

    fn endpoint(&self, addr: [u8; 4]) -> Option<Endpoint> {
        (self.endpoint)(addr)
    }

    fn endpoint6(&self, addr: &[u8; 16]) -> Option<Endpoint> {
        (self.endpoint6)(*addr)
    }

    fn is_peer(&self, addr: [u8; 4]) -> bool {
        (self.is_peer)(addr)
    }

    fn path_mtu(&self, peer: [u8; 4]) -> Option<PathMtu> {
        (self.path_mtu)(peer)
    }

    fn now_ns(&self) -> u64 {
        self.now_ns
    }

    fn learn_path_mtu(&self, _: [u8; 4], _: PathMtu) {}

    fn path_mtu6(&self, peer: &[u8; 16]) -> Option<PathMtu> {
        (self.path_mtu6)(*peer)
    }

    fn learn_path_mtu6(&self, _: &[u8; 16], _: PathMtu) {}

    fn flow(&self, key: &FlowKey) -> Option<FlowValue> {
        (self.flow)(key)
    }

    fn settle(&self, _: &mut FlowValue, _: &FlowKey, _: &Admission) {}

    fn flow6(&self, key: &FlowKey6) -> Option<FlowValue6> {
        (self.flow6)(key)
    }

    fn settle6(&self, _: &mut FlowValue6, _: &FlowKey6, _: &Admission) {}

    fn hop(&self, _: [u8; 4]) -> Result<(), Reason> {
        Ok(())
    }

    fn hop_ifindex(&self, _: &()) -> u32 {
        self.node.underlay_ifindex
    }

    fn sender_mac(&self, addr: [u8; 4]) -> Option<[u8; 6]> {
        (self.next_hop_mac)(addr)
    }

    fn node6(&self) -> Option<&Node6Config> {
        Some(&self.node6).filter(|n| n.ready())
    }

    fn route6(&self, addr: &[u8; 16]) -> Option<RouteValue6> {
        (self.route6)(*addr)
    }

    fn is_peer6(&self, addr: &[u8; 16]) -> bool {
        (self.is_peer6)(*addr)
    }

    fn hop6(&self, _: &[u8; 16]) -> Result<(), Reason> {
        Ok(())
    }
}

/// The walk's notes, kept to be told.
struct Notes(Vec<Note>);

impl Trace for Notes {
    fn note(&mut self, note: Note) {
        self.0.push(note);
    }
}

/// The decision of `program` about `frame`: the programs' own walk, then its notes in words.
pub fn decide(program: Program, frame: &[u8], maps: &Maps) -> Decision {
    let bytes = Bytes::new(frame);
    let mut notes = Notes(Vec::new());
    let decided = match program {
        Program::FromPod { ingress } => pipeline::from_pod(&bytes, ingress, maps, &mut notes),
        Program::FromUnderlay => pipeline::from_underlay(&bytes, maps, &mut notes),
    };
    let words = Words { maps };
    let mut why = Vec::new();
    for note in &notes.0 {
        words.tell(note, &mut why);
    }
    let once_approved = notes.0.iter().find_map(|note| match note {
        Note::Pending { then } => Some(words.pending(then)),
        _ => None,
    });
    let (verdict, reason, text) = match decided {
        Ok(plan) => (Verdict::Redirect, plan.reason(), words.plan(&plan, &notes.0, frame, &mut why)),
        Err(reason) => {
            why.push(reason.describe().into());
            let how = if reason.is_drop() { "drop" } else { "kernel" };
            let verdict = if reason.is_drop() { Verdict::Drop } else { Verdict::Kernel };
            let text = match &once_approved {
                Some(then) if reason == Reason::PassFlowPending => format!(
                    "kernel first ({}), until the kernel's conntrack holds the flow; then: {then}",
                    reason.as_str()
                ),
                _ => format!("{how}: {} (counted as {})", reason.short(), reason.as_str()),
            };
            (verdict, reason, text)
        }
    };
    Decision { verdict, reason, words: text, why, once_approved }
}

/// The walk in words.
struct Words<'m, 'a> {
    maps: &'m Maps<'a>,
}

impl Words<'_, '_> {
    fn name(&self, ifindex: u32) -> String {
        (self.maps.ifname)(ifindex).unwrap_or_else(|| format!("ifindex {ifindex}"))
    }

    fn pod(&self, ifindex: u32, mac: [u8; 6]) -> String {
        format!("redirect to pod on {} (ifindex {ifindex}, MAC {})", self.name(ifindex), mac_string(mac))
    }

    /// Each note as the clauses after "because".
    fn tell(&self, note: &Note, why: &mut Vec<String>) {
        let node = &self.maps.node;
        let this_node = Ipv4Addr::from(node.node_ip);
        let v = node.vxlan;
        match *note {
            Note::ArpAnswered { asker, target } => why.push(format!(
                "an ARP request from a pod for any address but its own is answered, as proxy_arp would ({} asks for {})",
                Ipv4Addr::from(asker),
                Ipv4Addr::from(target)
            )),
            Note::Source { src, ingress, own, route, verdict } => self.source(src, ingress, own, route, verdict, why),
            Note::Destination { dst, to } => why.push(self.destination(dst, &to)),
            Note::NdpAnswered { asker, target } => why.push(format!(
                "a neighbour solicitation from a pod is answered, as the host end of its veth would ({} asks for {})",
                Ipv6Addr::from(asker),
                Ipv6Addr::from(target)
            )),
            Note::Source6 { src, ingress, verdict } => {
                let src = Ipv6Addr::from(src);
                why.push(match verdict {
                    Ok(()) => format!("it arrives on {} (ifindex {ingress}), the interface of pod {src}", self.name(ingress)),
                    Err(Reason::DropSpoofedSource) => format!("{src} belongs to another pod, not to the sender's interface"),
                    Err(_) => format!("{src} is no pod's IPv6 address on this node"),
                });
            }
            Note::Destination6 { dst, ifindex } => why.push(format!(
                "{} is a pod on this node (a /128 via {})",
                Ipv6Addr::from(dst),
                self.name(ifindex)
            )),
            Note::Route6 { dst, to } => why.push(match to {
                Ok(Forward6::Underlay { next_hop }) => format!(
                    "{} is in a block of node {} routed over the underlay",
                    Ipv6Addr::from(dst),
                    Ipv6Addr::from(next_hop)
                ),
                Ok(Forward6::Vxlan { next_hop, mac }) => format!(
                    "{} is in a block of node {} reached in IPv6 VXLAN (its VTEP {})",
                    Ipv6Addr::from(dst),
                    Ipv6Addr::from(next_hop),
                    mac_string(mac)
                ),
                Ok(Forward6::Local { ifindex, .. }) => {
                    format!("{} is a pod on this node (via {})", Ipv6Addr::from(dst), self.name(ifindex))
                }
                Err(reason) => format!("{}: {}", Ipv6Addr::from(dst), reason.short()),
            }),
            Note::TunnelFrom6 { node, known } => why.push(if known {
                format!("it is IPv6 VXLAN from node {}", Ipv6Addr::from(node))
            } else {
                format!("it is IPv6 VXLAN from {}, which is no node this one accepts tunnels from", Ipv6Addr::from(node))
            }),
            Note::InnerSource6 { src, node, verdict } => why.push(match verdict {
                Ok(()) => format!("its inner source {} belongs to node {}", Ipv6Addr::from(src), Ipv6Addr::from(node)),
                Err(_) => format!(
                    "its inner source {} is neither node {} nor in a block routed via it",
                    Ipv6Addr::from(src),
                    Ipv6Addr::from(node)
                ),
            }),
            Note::Delivery6 { dst, pod } => why.push(if pod {
                format!("{} is a pod on this node", Ipv6Addr::from(dst))
            } else {
                format!("{} is no pod on this node", Ipv6Addr::from(dst))
            }),
            Note::Delivery { dst } => why.push(format!("{} is a pod on this node", Ipv4Addr::from(dst))),
            Note::TrustRoutes => why.push("--trust routes: every packet the routes allow takes the fast path".into()),
            Note::TrustKernel => why.push("--trust kernel: a flow direction takes the fast path only while the kernel's conntrack holds a confirmed entry for it that the kernel forwarded, translated as that entry says".into()),
            Note::Unnamed => why.push("no flow can be named for it (an ICMP error, a protocol without ports, a cut transport header)".into()),
            Note::NoFlow { key } => why.push(format!("the flow table holds no {} yet", flows::describe(&key))),
            Note::Flow { key, value, admission } => {
                why.push(format!("{} is {}", flows::describe(&key), Flow { key, value }.state_name()));
                match admission.verdict {
                    Ok(()) if value.nat != 0 => {
                        why.push(format!("conntrack translates it to {}", flows::describe(&value.leaves_as(&key))));
                    }
                    Err(Reason::PassFlowElsewhere) => why.push(format!(
                        "it arrives elsewhere than its flow enters ({})",
                        flows::arrival_words(&value)
                    )),
                    _ => {}
                }
            }
            Note::NoFlow6 { key } => why.push(format!("the flow table holds no {} yet", flows::describe6(&key))),
            Note::Flow6 { key, value, admission } => {
                why.push(format!("{} is {}", flows::describe6(&key), flows::state_name(value.state)));
                match admission.verdict {
                    Err(Reason::PassIpv6Translated) => why.push("conntrack translates it".into()),
                    Err(Reason::PassFlowElsewhere) => why.push(format!(
                        "it arrives elsewhere than its flow enters ({})",
                        flows::arrival_words6(&value)
                    )),
                    _ => {}
                }
            }
            Note::Pending { .. } => {}
            Note::ByFib { dst } => why.push(format!(
                "conntrack translates it to {}, which no route holds: it leaves by the underlay, as the kernel's FIB says",
                Ipv4Addr::from(dst)
            )),
            Note::NoVxlanDevice => why.push("this node has no vxlan.calico the programs can stand in for".into()),
            Note::TooBig { carried, mtu, limit } => {
                let what = match limit {
                    Limit::Underlay => "the underlay MTU".to_string(),
                    Limit::Vxlan6 { path: None, .. } => "the IPv6 VXLAN tunnel MTU".to_string(),
                    Limit::Vxlan6 { peer, path: Some(outer) } => format!(
                        "the IPv6 VXLAN tunnel MTU toward {} (a router said the path carries {outer})",
                        Ipv6Addr::from(peer)
                    ),
                    Limit::Tunnel { tunnel, path: None, .. } => {
                        format!("the {} tunnel MTU", tunnel.name().to_uppercase())
                    }
                    Limit::Tunnel { tunnel, peer, path: Some(outer) } => format!(
                        "the {} tunnel MTU toward {} (a router said the path carries {outer})",
                        tunnel.name().to_uppercase(),
                        Ipv4Addr::from(peer)
                    ),
                };
                why.push(format!("{carried} bytes do not fit {what} {mtu}"));
            }
            Note::NotPlainIpv4 => why.push("it is not a plain, option-less IPv4 frame".into()),
            Note::PathMtuReport { peer, mtu } => why.push(format!(
                "a router says the path to node {} carries {mtu} bytes (fragmentation needed about this node's tunnel packet)",
                Ipv4Addr::from(peer)
            )),
            Note::PathMtuReport6 { peer, mtu } => why.push(format!(
                "a router says the path to node {} carries {mtu} bytes (ICMPv6 packet too big about this node's IPv6 VXLAN packet)",
                Ipv6Addr::from(peer)
            )),
            Note::NotToThisNode { dst } => {
                why.push(format!("it is to {}, not to this node {this_node}", Ipv4Addr::from(dst)));
            }
            Note::NotATunnel => why.push(if node.has_vxlan() {
                format!("it is neither IPIP nor VXLAN (UDP to port {})", v.port)
            } else {
                "it is not IPIP (and this node has no vxlan.calico the programs stand in for)".into()
            }),
            Note::UnknownPeer { node } => why.push(format!(
                "{} is not a node in the route table (no remote block routes via it)",
                Ipv4Addr::from(node)
            )),
            Note::TunnelFrom { tunnel, node } => why.push(format!(
                "{} from {}, a known node, to this node {this_node}",
                tunnel.name().to_uppercase(),
                Ipv4Addr::from(node)
            )),
            Note::VxlanHeaders { accepted: true } => why.push(format!(
                "taken apart as {} would: UDP port {}, VNI {}, inner Ethernet to {}",
                self.name(v.ifindex),
                v.port,
                v.vni,
                mac_string(v.mac)
            )),
            Note::VxlanHeaders { accepted: false } => why.push(format!(
                "it is not what {} takes apart: VNI {}, flag I alone, a consistent UDP length, inner IPv4 to {}",
                self.name(v.ifindex),
                v.vni,
                mac_string(v.mac)
            )),
            Note::InnerSource { src, node, verdict } => {
                let (src, node) = (Ipv4Addr::from(src), Ipv4Addr::from(node));
                why.push(match verdict {
                    Ok(()) if src == node => format!("the inner source is node {node} itself"),
                    Ok(()) => format!("the inner source {src} is in a block routed via node {node}"),
                    Err(_) => format!("the inner source {src} is neither node {node} nor in a block routed via it"),
                });
            }
            Note::PlainUnderRoutes => {
                why.push("--trust routes: plain traffic from another node is the kernel's to deliver".into());
            }
            Note::NotOurPod { dst } => why.push(format!("{} is no pod of this node", Ipv4Addr::from(dst))),
            Note::FromOurPod { src } => why.push(format!(
                "{} is a pod of this node, which never sends from the underlay",
                Ipv4Addr::from(src)
            )),
            Note::HostsOwn { dst } => why.push(format!(
                "plain IPv4 to this node {}, of no flow the fast path carries: the host's own",
                Ipv4Addr::from(dst)
            )),
        }
    }

    /// Where a pod's packet arrived, and what the source check made of its source.
    fn source(
        &self,
        src: [u8; 4],
        ingress: u32,
        own: bool,
        route: Option<RouteValue>,
        verdict: Result<(), Reason>,
        why: &mut Vec<String>,
    ) {
        let own_by_route =
            route.is_some_and(|r| r.kind == RouteKind::LocalEndpoint as u32 && r.ifindex == ingress);
        let src = Ipv4Addr::from(src);
        why.push(match ingress {
            0 => "it arrives on no pod interface this node knows".into(),
            _ if own || own_by_route => {
                format!(
                    "it arrives on {} (ifindex {ingress}), the interface of pod {src}",
                    self.name(ingress)
                )
            }
            _ => format!("it arrives on {} (ifindex {ingress})", self.name(ingress)),
        });
        let Err(reason) = verdict else { return };
        why.push(match reason {
            Reason::DropSpoofedSource => match route {
                Some(r) if r.kind == RouteKind::RemoteBlock as u32 => format!(
                    "{src} is in a block of node {}: another pod's address, not one of the sender's interface",
                    Ipv4Addr::from(r.next_hop)
                ),
                _ => format!("{src} belongs to another pod, not to the sender's interface"),
            },
            Reason::PassSourceUnallocated => format!("{src} is in this node's block, but no pod has it"),
            Reason::PassSourceNotPod => format!("{src} is no pod's address (a service, host or outside address)"),
            Reason::PassKernelRoute => format!("{src} is this pod's, but its MAC is not known yet"),
            other => format!("{src} is this pod's, and its route is the kernel's: {}", other.short()),
        });
    }

    fn destination(&self, dst: [u8; 4], to: &Forward) -> String {
        let dst = Ipv4Addr::from(dst);
        match *to {
            Forward::Local { ifindex, .. } => {
                format!("{dst} is a pod on this node (a /32 via {})", self.name(ifindex))
            }
            Forward::Encapsulate { next_hop, tunnel, .. } => format!(
                "{dst} is in a block routed via node {}, with {}",
                Ipv4Addr::from(next_hop),
                tunnel.name().to_uppercase()
            ),
            Forward::Underlay { next_hop } => {
                format!(
                    "{dst} is in a block routed via node {}, without encapsulation",
                    Ipv4Addr::from(next_hop)
                )
            }
        }
    }

    /// What carrying a packet by route `to` is, in words.
    fn carried(&self, to: &Forward) -> String {
        let node = &self.maps.node;
        let underlay = self.name(node.underlay_ifindex);
        let outer_src = Ipv4Addr::from(node.node_ip);
        match *to {
            Forward::Local { ifindex, mac } => self.pod(ifindex, mac),
            Forward::Encapsulate { next_hop, tunnel: Tunnel::Ipip, .. } => {
                let next_hop = Ipv4Addr::from(next_hop);
                format!("IPIP to {next_hop} via {underlay} (outer {outer_src} → {next_hop}, protocol 4)")
            }
            Forward::Encapsulate { next_hop, tunnel: Tunnel::Vxlan, mac } => {
                let (next_hop, v) = (Ipv4Addr::from(next_hop), node.vxlan);
                format!(
                    "VXLAN to {next_hop} via {underlay} (outer {outer_src} → {next_hop}, UDP {}, VNI {}, inner MAC {})",
                    v.port,
                    v.vni,
                    mac_string(mac)
                )
            }
            Forward::Underlay { next_hop } => {
                format!("route to {} via {underlay} without encapsulation", Ipv4Addr::from(next_hop))
            }
        }
    }

    /// What the fast path does, in words (the verdict's line); VXLAN adds how it is built.
    fn plan(&self, plan: &Plan<()>, notes: &[Note], frame: &[u8], why: &mut Vec<String>) -> String {
        match *plan {
            Plan::AnswerArp => {
                let target = notes.iter().find_map(|n| match n {
                    Note::ArpAnswered { target, .. } => Some(Ipv4Addr::from(*target)),
                    _ => None,
                });
                let target = target.map_or_else(String::new, |t| t.to_string());
                format!("ARP reply: {target} is at ee:ee:ee:ee:ee:ee, sent back out of the pod's interface")
            }
            Plan::Ipv6(Plan6::AnswerNdp) => {
                let target = notes.iter().find_map(|n| match n {
                    Note::NdpAnswered { target, .. } => Some(Ipv6Addr::from(*target)),
                    _ => None,
                });
                let target = target.map_or_else(String::new, |t| t.to_string());
                format!("neighbour advertisement: {target} is at ee:ee:ee:ee:ee:ee, sent back out of the pod's interface")
            }
            Plan::Ipv6(Plan6::ToPod { ifindex, mac, decap: false }) => {
                self.carried6(&Forward6::Local { ifindex, mac })
            }
            Plan::Ipv6(Plan6::ToPod { ifindex, mac, decap: true }) => {
                format!("decapsulate, then {}", self.pod(ifindex, mac))
            }
            Plan::Ipv6(Plan6::TooBig { mtu }) => {
                let src = frame.get(ETH_LEN + 8..ETH_LEN + 24).and_then(|s| <[u8; 16]>::try_from(s).ok());
                let src = Ipv6Addr::from(src.unwrap_or_default());
                format!("ICMPv6 packet too big (mtu = {mtu}) sent back to {src}")
            }
            Plan::Ipv6(Plan6::ToUnderlay { next_hop, .. }) => self.carried6(&Forward6::Underlay { next_hop }),
            Plan::Ipv6(Plan6::ByVxlanDevice { ifindex, mac, .. }) => {
                let device = self.name(ifindex);
                why.push(format!(
                    "the program makes IPv6 VXLAN's UDP checksum only for a whole TCP, UDP or ICMPv6 packet, or a TCP or UDP GSO packet of equal segments; {device} checksums this one (each segment of a GSO packet)"
                ));
                format!("hand to {device} to encapsulate, inner Ethernet to {}", mac_string(mac))
            }
            Plan::Ipv6(Plan6::Encapsulate { next_hop, mac, .. }) => {
                let v = self.maps.node6.vxlan;
                why.push(format!(
                    "as {} would send it: UDP port {}, VNI {}, a real UDP checksum, inner Ethernet {} → {}",
                    self.name(v.ifindex),
                    v.port,
                    v.vni,
                    mac_string(v.mac),
                    mac_string(mac)
                ));
                self.carried6(&Forward6::Vxlan { next_hop, mac })
            }
            Plan::FragNeeded { mtu } => {
                let src = frame.get(ETH_LEN + 12..ETH_LEN + 16).and_then(|s| <[u8; 4]>::try_from(s).ok());
                let src = Ipv4Addr::from(src.unwrap_or_default());
                format!("ICMP fragmentation needed (mtu = {mtu}) sent back to {src}")
            }
            Plan::ToPod { ifindex, mac, decap: Some(_), .. } => {
                format!("decapsulate, then {}", self.pod(ifindex, mac))
            }
            Plan::ToPod { ifindex, mac, decap: None, .. } => self.pod(ifindex, mac),
            Plan::Encapsulate { tunnel, next_hop, mac, .. } => {
                if tunnel == Tunnel::Vxlan {
                    let v = self.maps.node.vxlan;
                    why.push(format!(
                        "as {} would send it: UDP port {}, VNI {}, inner Ethernet {} → {}",
                        self.name(v.ifindex),
                        v.port,
                        v.vni,
                        mac_string(v.mac),
                        mac_string(mac)
                    ));
                }
                self.carried(&Forward::Encapsulate { next_hop, tunnel, mac })
            }
            Plan::ToUnderlay { next_hop: Some(next_hop), .. } => {
                self.carried(&Forward::Underlay { next_hop })
            }
            Plan::ToUnderlay { next_hop: None, nat, .. } => format!(
                "route to {} as the kernel's FIB says, out of {}",
                Ipv4Addr::from(nat.to_dst),
                self.name(self.maps.node.underlay_ifindex)
            ),
        }
    }

    /// How an IPv6 packet leaves by `to`, in words.
    fn carried6(&self, to: &Forward6) -> String {
        let underlay = self.name(self.maps.node.underlay_ifindex);
        match *to {
            Forward6::Local { ifindex, mac } => self.pod(ifindex, mac),
            Forward6::Underlay { next_hop } => {
                format!("route to node {} over the underlay, out of {underlay}", Ipv6Addr::from(next_hop))
            }
            Forward6::Vxlan { next_hop, .. } => {
                format!("encapsulate in IPv6 VXLAN to node {}, out of {underlay}", Ipv6Addr::from(next_hop))
            }
        }
    }

    /// What the fast path will do once conntrack approves the flow.
    fn pending(&self, then: &Pending) -> String {
        match *then {
            Pending::Forward(to) => self.carried(&to),
            Pending::Decapsulate { ifindex, mac } => format!("decapsulate, then {}", self.pod(ifindex, mac)),
            Pending::Deliver { dst } => match (self.maps.endpoint)(dst) {
                Some(pod) => self.pod(pod.ifindex, pod.mac),
                None => "deliver it".into(),
            },
            Pending::Carry6(to) => self.carried6(&to),
        }
    }
}

/// The packet `fastpath explain SRC DST` asks about.
#[derive(Clone, Copy, Debug)]
pub struct Question {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// How SRC resolves DST: an ARP request, or for IPv6 a neighbour solicitation.
    pub arp: bool,
    /// It arrives from this node on the underlay.
    pub from_underlay: Option<Ipv4Addr>,
    /// How it comes from the underlay (with `from_underlay`).
    pub encap: Encap,
    /// The pod interface it arrives on (`--iface`); else the interface of SRC's pod, if any.
    pub ingress: Option<u32>,
    pub ttl: u8,
    pub size: u16,
    pub df: bool,
}

/// The MAC of the pod side of a veth, in a question's frame (the programs do not read it).
const POD_SIDE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// The frame a question describes, and the program it meets: an ARP request, or a TCP segment
/// of `size` IP bytes (in IPIP, or VXLAN as a node's `vxlan.calico` sends it, to this node when
/// it comes from the underlay).
pub fn question_frame(q: &Question, maps: &Maps) -> (Program, Vec<u8>) {
    let (src, dst) = match (q.src, q.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => (src, dst),
        // `cli::check` lets only two addresses of one family through.
        (src, dst) => return ipv6_question_frame(q, v6(src), v6(dst), maps),
    };
    if q.arp {
        let mut frame = ethernet([0xff; 6], POD_SIDE_MAC, ETH_P_ARP);
        frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        frame.extend_from_slice(&POD_SIDE_MAC);
        frame.extend_from_slice(&src.octets());
        frame.extend_from_slice(&[0; 6]);
        frame.extend_from_slice(&dst.octets());
        return (Program::FromPod { ingress: q.ingress.unwrap_or_else(|| pod_interface(src, maps)) }, frame);
    }
    let inner = tcp_packet(q, src, dst);
    match q.from_underlay {
        Some(node) if q.encap == Encap::Vxlan => {
            let mut frame = ethernet(maps.node.node_mac, POD_SIDE_MAC, ETH_P_IP);
            let outer = OuterIpv4 {
                src: node.octets(),
                dst: maps.node.node_ip,
                protocol: 0,
                tos: 0,
                ttl: 64,
                df: false,
                id: 1,
            };
            // The sender's VTEP is of no consequence here: inner Ethernet to this node's.
            let sender = VxlanConfig { mac: POD_SIDE_MAC, ..maps.node.vxlan };
            let encap =
                vxlan::Encap { outer, source_port: 49152, config: sender, peer_mac: maps.node.vxlan.mac };
            frame.extend_from_slice(&vxlan::headers(&encap, q.size).unwrap_or([0; vxlan::OVERHEAD]));
            frame.extend_from_slice(&inner);
            (Program::FromUnderlay, frame)
        }
        Some(_) if q.encap == Encap::None => {
            let mut frame = ethernet(maps.node.node_mac, POD_SIDE_MAC, ETH_P_IP);
            frame.extend_from_slice(&inner);
            (Program::FromUnderlay, frame)
        }
        Some(node) => {
            let mut frame = ethernet(maps.node.node_mac, POD_SIDE_MAC, ETH_P_IP);
            frame.extend_from_slice(&ipv4::outer_header(node.octets(), maps.node.node_ip, q.size, 0, q.df));
            frame.extend_from_slice(&inner);
            (Program::FromUnderlay, frame)
        }
        None => {
            let mut frame = ethernet(GATEWAY_MAC, POD_SIDE_MAC, ETH_P_IP);
            frame.extend_from_slice(&inner);
            (Program::FromPod { ingress: q.ingress.unwrap_or_else(|| pod_interface(src, maps)) }, frame)
        }
    }
}

impl Question {
    /// SRC and DST, when they are IPv4 addresses.
    fn ipv4(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Some((src, dst)),
            _ => None,
        }
    }
}

/// An IPv6 address (the other family cannot reach here: `cli::check`).
fn v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V6(addr) => addr,
        IpAddr::V4(addr) => addr.to_ipv6_mapped(),
    }
}

/// The IPv6 frame a question describes, from a pod: a neighbour solicitation for DST (to its
/// solicited-node group, hop limit 255, with the sender's link-layer address, as a pod's kernel
/// sends it), or a TCP segment of `size` IP bytes.
fn ipv6_question_frame(q: &Question, src: Ipv6Addr, dst: Ipv6Addr, maps: &Maps) -> (Program, Vec<u8>) {
    let ingress = q.ingress.unwrap_or_else(|| (maps.endpoint6)(src.octets()).map_or(0, |e| e.ifindex));
    let (ip_dst, hop_limit, upper) = if q.arp {
        let mut group = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
        group[13..].copy_from_slice(&dst.octets()[13..]);
        let mut message = vec![ndp::TYPE_NEIGHBOUR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
        message.extend_from_slice(&dst.octets());
        message.extend_from_slice(&[1, 1]);
        message.extend_from_slice(&POD_SIDE_MAC);
        (group, 255, message)
    } else {
        let mut segment = vec![0u8; usize::from(q.size).saturating_sub(ipv6::HEADER_LEN).max(20)];
        segment[12] = 0x50;
        segment[13] = 0x10;
        (dst.octets(), q.ttl, segment)
    };
    let next_header = if q.arp { ipv6::NEXT_ICMPV6 } else { ipv6::NEXT_TCP };
    let mut upper = upper;
    if q.arp {
        let sum = ipv6::upper_layer_checksum(&src.octets(), &ip_dst, next_header, &upper);
        upper[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    let header = ipv6::Ipv6Fields {
        payload_len: upper.len() as u16,
        next_header,
        hop_limit,
        src: src.octets(),
        dst: ip_dst,
        version: ipv6::VERSION,
        traffic_class: 0,
        flow_label: 0,
    };
    let mut frame = ethernet(GATEWAY_MAC, POD_SIDE_MAC, ipv6::ETHERTYPE);
    frame.extend_from_slice(&header.header());
    frame.extend_from_slice(&upper);
    (Program::FromPod { ingress }, frame)
}

/// The host side of the pod with address `addr` on this node, 0 when none.
fn pod_interface(addr: Ipv4Addr, maps: &Maps) -> u32 {
    if let Some(e) = (maps.endpoint)(addr.octets()) {
        return e.ifindex;
    }
    (maps.route)(addr.octets())
        .filter(|r| matches!(RouteKind::try_from(r.kind), Ok(RouteKind::LocalEndpoint | RouteKind::Kernel)))
        .map_or(0, |r| r.ifindex)
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ether_type: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETH_LEN + 64);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ether_type.to_be_bytes());
    frame
}

/// An IPv4 packet of `q.size` bytes (at least a header's worth of bytes), carrying the start of
/// a TCP segment with no ports and ACK set: a packet of no flow in particular.
fn tcp_packet(q: &Question, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut packet = vec![0u8; usize::from(q.size).max(HEADER_LEN)];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&q.size.to_be_bytes());
    packet[6..8].copy_from_slice(&(if q.df { FLAG_DF } else { 0 }).to_be_bytes());
    packet[8] = q.ttl;
    packet[9] = PROTO_TCP;
    packet[12..16].copy_from_slice(&src.octets());
    packet[16..20].copy_from_slice(&dst.octets());
    let header: [u8; HEADER_LEN] = packet[..HEADER_LEN].try_into().expect("20 bytes");
    packet[10..12].copy_from_slice(&ipv4::header_checksum(&header).to_be_bytes());
    if let Some(tcp) = packet.get_mut(HEADER_LEN..HEADER_LEN + 14) {
        tcp[12] = 0x50;
        tcp[13] = 0x10;
    }
    packet
}

/// What the kernel's own configuration says about a decision the maps cannot explain alone:
/// which ip rule sends the packet elsewhere than the main table, which qdisc or filter keeps a
/// pod with the kernel. Read through netlink, so run it in the node's network namespace; one
/// clause each.
pub async fn kernel_detail(dir: &Path, reason: Reason, q: &Question) -> Result<Vec<String>, Error> {
    // Both are decisions of IPv4's walk only.
    let Some((src, dst)) =
        q.ipv4().filter(|_| matches!(reason, Reason::PassPolicyRoute | Reason::PassEndpointTc))
    else {
        return Ok(Vec::new());
    };
    let agent: AgentInfo = bpffs::read_pinned_slot(dir, AGENT)?;
    let node: NodeConfig = bpffs::read_pinned_slot(dir, NODE)?;
    let pod_prefix = unpadded(&agent.iface_prefix);
    let netlink = Netlink::new()?;
    let links = netlink.links().await?;
    let underlay = links.iter().find(|l| l.index == node.underlay_ifindex).map(|l| l.name.clone());
    let picture = picture::take(&netlink, underlay.as_deref(), &pod_prefix).await?;
    let kernel = &picture.kernel;
    let name = |ifindex: u32| {
        kernel.interfaces.get(&ifindex).map_or(format!("ifindex {ifindex}"), |i| i.name.clone())
    };
    let mut detail = Vec::new();
    if reason == Reason::PassPolicyRoute {
        let policy =
            routes::pod_policy(&kernel.rules, &kernel.interfaces, &picture.node.underlay, &pod_prefix);
        detail.extend([dst, src].iter().filter_map(|addr| policy.why_diverted(*addr, kernel, &name)));
    } else {
        for addr in [src, dst] {
            let configured = kernel.routes_of(&(32, addr)).iter().find_map(|r| {
                let interface = kernel.interfaces.get(&r.oif?)?;
                Some((interface.name.clone(), interface.classic_tc.clone()?))
            });
            if let Some((iface, config)) = configured {
                detail.push(format!("{iface}, the interface of pod {addr}, has {config}"));
            }
        }
    }
    Ok(detail)
}

/// `fastpath explain`'s answer: the verdict on the first line, then why. Under `--trust kernel`
/// a question names no flow; the answer then tells the flows between SRC and DST the table
/// holds, and the fast path's verdict for the approved ones.
pub fn explain(q: &Question, maps: &Maps) -> (String, Reason) {
    let (program, frame) = question_frame(q, maps);
    let mut decision = decide(program, &frame, maps);
    if maps.node.trusts_kernel() {
        // The question names no ports, so its own flow is never in the table: tell the flows
        // between SRC and DST that are, and what conntrack's NAT makes of them.
        let unnamed = match (q.src, q.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                flows::describe(&FlowKey::new(src.octets(), dst.octets(), PROTO_TCP, (0, 0)))
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                flows::describe6(&FlowKey6::new(src.octets(), dst.octets(), PROTO_TCP, (0, 0)))
            }
            _ => String::new(),
        };
        let unnamed = format!("the flow table holds no {unnamed} yet");
        decision.why.retain(|line| *line != unnamed && *line != Reason::PassFlowPending.describe());
        let between: Vec<&FlowRow> = maps.flows.iter().filter(|f| f.src == q.src && f.dst == q.dst).collect();
        for f in &between {
            let translated = if f.nat { format!(", leaving as {}", f.leaves()) } else { String::new() };
            decision.why.push(format!("{} is {}{translated}", f.describe(), f.state));
        }
        if between.is_empty() {
            decision.why.push(format!("the flow table holds no flow from {} to {} yet", q.src, q.dst));
        }
        // Approved and carried: an IPv6 direction conntrack translates is the kernel's.
        let approved = between
            .iter()
            .filter(|f| f.state == flow::FlowState::Approved.as_str() && !(f.nat && f.src.is_ipv6()))
            .count();
        if approved > 0 {
            decision.words = match &decision.once_approved {
                Some(fast) => format!("{fast}, for the {approved} approved flows; any other goes to the kernel first"),
                None => format!(
                    "{}; but the {approved} flows conntrack approved take the fast path, translated as it says",
                    decision.words
                ),
            };
        }
    }
    let mut out = format!("{}\n", decision.words);
    for line in decision.why {
        let _ = writeln!(out, "  because {line}");
    }
    (out, decision.reason)
}

/// `fastpath explain` against the pinned maps.
pub fn explain_pinned(
    dir: &Path,
    q: &Question,
    ifname: &dyn Fn(u32) -> Option<String>,
) -> Result<(String, Reason), Error> {
    let node: NodeConfig = bpffs::read_pinned_slot(dir, NODE)?;
    let trie = tables::pinned_routes(dir)?;
    let endpoints: HashMap<MapData, [u8; 4], Endpoint> = bpffs::open_pinned_as(dir, ENDPOINTS)?;
    let peers: HashMap<MapData, [u8; 4], u32> = bpffs::open_pinned_as(dir, TUNNEL_PEERS)?;
    // The kernel's LPM lookup: the most specific prefix containing the address.
    let route = |addr: [u8; 4]| trie.get(&Key::new(32, addr), 0).ok();
    let endpoint = |addr: [u8; 4]| endpoints.get(&addr, 0).ok();
    // A pin folder of an older version has no IPv6 endpoint table: then no pod has IPv6 here.
    let endpoints6: Option<HashMap<MapData, [u8; 16], Endpoint>> =
        bpffs::open_pinned_as(dir, ENDPOINTS6).ok();
    let endpoint6 = |addr: [u8; 16]| endpoints6.as_ref().and_then(|m| m.get(&addr, 0).ok());
    let is_peer = |addr: [u8; 4]| peers.get(&addr, 0).is_ok();
    // A pin folder of an older version has no IPv6 routes, peers or node: then IPv6 for other
    // nodes is the kernel's.
    let node6: Node6Config = bpffs::read_pinned_slot(dir, NODE6).unwrap_or_default();
    let trie6: Option<aya::maps::LpmTrie<MapData, [u8; 16], RouteValue6>> =
        bpffs::open_pinned_as(dir, ROUTES6).ok();
    let route6 = |addr: [u8; 16]| trie6.as_ref().and_then(|t| t.get(&Key::new(128, addr), 0).ok());
    let peers6: Option<HashMap<MapData, [u8; 16], u32>> = bpffs::open_pinned_as(dir, TUNNEL_PEERS6).ok();
    let is_peer6 = |addr: [u8; 16]| peers6.as_ref().is_some_and(|m| m.get(&addr, 0).is_ok());
    // A pin folder of an older version has no path MTU table: then no router said anything.
    let path_mtus: Option<HashMap<MapData, [u8; 4], PathMtu>> = bpffs::open_pinned_as(dir, PATH_MTU).ok();
    let path_mtu = |addr: [u8; 4]| path_mtus.as_ref().and_then(|m| m.get(&addr, 0).ok());
    let path_mtus6: Option<HashMap<MapData, [u8; 16], PathMtu>> = bpffs::open_pinned_as(dir, PATH_MTU6).ok();
    let path_mtu6 = |addr: [u8; 16]| path_mtus6.as_ref().and_then(|m| m.get(&addr, 0).ok());
    // A pin folder of an older version has no flow table: then there is nothing to list.
    let flows = flows::read_pinned(dir).unwrap_or_default();
    let flow = |key: &FlowKey| flows.iter().find(|f| f.key == *key).map(|f| f.value);
    let flows6 = flows::read_pinned6(dir).unwrap_or_default();
    let flow6 = |key: &FlowKey6| flows6.iter().find(|f| f.key == *key).map(|f| f.value);
    let now_ns = monotonic_ns();
    let rows = flows::rows(&flows, &flows6, now_ns);
    // What the programs remembered of the FIB's answer, while the daemon's generation holds it.
    let next_hops: Option<HashMap<MapData, [u8; 4], NextHopEntry>> =
        bpffs::open_pinned_as(dir, NEXT_HOPS).ok();
    let next_hop_mac = |addr: [u8; 4]| {
        let entry = next_hops.as_ref()?.get(&addr, 0).ok()?;
        (entry.generation == node.next_hop_generation).then_some(entry.dmac)
    };
    let maps = Maps {
        node,
        next_hop_mac: &next_hop_mac,
        route: &route,
        endpoint: &endpoint,
        endpoint6: &endpoint6,
        is_peer: &is_peer,
        node6,
        route6: &route6,
        is_peer6: &is_peer6,
        path_mtu: &path_mtu,
        path_mtu6: &path_mtu6,
        flow: &flow,
        flow6: &flow6,
        flows: &rows,
        now_ns,
        ifname,
    };
    Ok(explain(q, &maps))
}

#[cfg(test)]
mod tests {
    use fastpath_common::{
        flow::{Arrived, FlowState},
        flow6::Arrived6,
        maps::{NODE_F_READY, NODE_F_TRUST_KERNEL, NODE_F_VXLAN},
    };

    use super::*;
    use crate::commands::flows::Flow6;

    const NODE_IP: [u8; 4] = [10, 101, 14, 50];
    const POD_MAC: [u8; 6] = [0x86, 0x79, 0x13, 0x2b, 0x26, 0x1d];

    fn node(flags: u32) -> NodeConfig {
        NodeConfig {
            underlay_ifindex: 2,
            node_ip: NODE_IP,
            node_mac: [2; 6],
            _pad: [0; 2],
            underlay_mtu: 1500,
            flags: NODE_F_READY | NODE_F_VXLAN | flags,
            next_hop_generation: 0,
            vxlan: VxlanConfig {
                ifindex: 9,
                vni: 4096,
                mac: [0x66, 0, 10, 101, 14, 50],
                port: 4789,
                port_min: 32768,
                port_max: 60999,
                ttl: 64,
                ..VxlanConfig::default()
            },
            ipip_mtu: 1480,
            vxlan_mtu: 1450,
        }
    }

    fn route(addr: [u8; 4]) -> Option<RouteValue> {
        match addr {
            [10, 244, 40, 36] => Some(RouteValue::local(5, POD_MAC)),
            [10, 244, 40, 37] => Some(RouteValue::local(6, [1; 6])),
            [10, 244, 40, 0..=63] => Some(RouteValue::blackhole()),
            [10, 244, 166, 128..=191] => Some(RouteValue::remote([10, 101, 14, 51], true)),
            [10, 244, 7, 0..=63] => Some(RouteValue::remote([10, 101, 14, 52], true)),
            [10, 244, 8, 0..=63] => Some(RouteValue::vxlan([10, 101, 14, 53], [0x66, 0, 10, 101, 14, 53])),
            _ => None,
        }
    }

    fn endpoint(addr: [u8; 4]) -> Option<Endpoint> {
        fastpath_common::route::endpoint_of(&route(addr)?)
    }

    /// Two pods of this node, by their IPv6 addresses (ifindex 5 and 7).
    fn endpoint6(addr: [u8; 16]) -> Option<Endpoint> {
        let addr = Ipv6Addr::from(addr);
        let pod = |ifindex, mac| Some(Endpoint { ifindex, mac, _pad: [0; 2] });
        match addr.to_string().as_str() {
            "fd5f:a1b2:c3d4::af4:2824" => pod(5, POD_MAC),
            "fd5f:a1b2:c3d4::af4:2825" => pod(7, [2, 0, 0, 0, 0, 7]),
            _ => None,
        }
    }

    fn ask(src: &str, dst: &str) -> Question {
        Question {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            arp: false,
            from_underlay: None,
            encap: Encap::Ipip,
            ingress: None,
            ttl: 64,
            size: 84,
            df: true,
        }
    }

    fn explained_with(q: Question, flags: u32, flows: &[Flow]) -> String {
        explained_with6(q, flags, flows, &[])
    }

    fn explained_with6(q: Question, flags: u32, flows: &[Flow], flows6: &[Flow6]) -> String {
        let is_peer = |a: [u8; 4]| a == [10, 101, 14, 51] || a == [10, 101, 14, 52] || a == [10, 101, 14, 53];
        let ifname = |i: u32| {
            Some(match i {
                2 => "eth0".to_string(),
                5 => "cali0f293e89ca7".to_string(),
                9 => "vxlan.calico".to_string(),
                i => format!("cali{i}"),
            })
        };
        let flow = |key: &FlowKey| flows.iter().find(|f| f.key == *key).map(|f| f.value);
        let flow6 = |key: &FlowKey6| flows6.iter().find(|f| f.key == *key).map(|f| f.value);
        let rows = flows::rows(flows, flows6, 1_000);
        let maps = Maps {
            node: node(flags),
            next_hop_mac: &|_| None,
            route: &route,
            endpoint: &endpoint,
            endpoint6: &endpoint6,
            is_peer: &is_peer,
            node6: Node6Config::default(),
            route6: &|_| None,
            is_peer6: &|_| false,
            path_mtu: &|_| None,
            path_mtu6: &|_| None,
            flow: &flow,
            flow6: &flow6,
            flows: &rows,
            now_ns: 1_000,
            ifname: &ifname,
        };
        explain(&q, &maps).0
    }

    fn explained(q: Question) -> String {
        explained_with(q, 0, &[])
    }

    fn first(q: Question) -> String {
        explained(q).lines().next().unwrap().to_string()
    }

    #[test]
    fn every_kind_of_decision_in_words() {
        assert_eq!(
            first(ask("10.244.40.37", "10.244.40.36")),
            "redirect to pod on cali0f293e89ca7 (ifindex 5, MAC 86:79:13:2b:26:1d)"
        );
        assert_eq!(
            first(ask("10.244.40.36", "10.244.166.150")),
            "IPIP to 10.101.14.51 via eth0 (outer 10.101.14.50 → 10.101.14.51, protocol 4)"
        );
        assert!(first(ask("10.244.40.36", "8.8.8.8")).starts_with("kernel: no fastpath route"));
        assert!(first(ask("10.244.40.36", "10.244.40.50")).starts_with("drop: no pod"));
        assert!(first(ask("10.244.166.150", "10.244.40.36")).starts_with("drop: spoofed source"));
        assert!(first(Question { arp: true, ..ask("10.244.40.36", "169.254.1.1") })
            .starts_with("ARP reply: 169.254.1.1 is at ee:ee:ee:ee:ee:ee"));
        assert!(first(Question { ttl: 1, ..ask("10.244.40.36", "10.244.166.150") })
            .starts_with("kernel: TTL expiring"));
        assert_eq!(
            first(Question { size: 1500, ..ask("10.244.40.36", "10.244.166.150") }),
            "ICMP fragmentation needed (mtu = 1480) sent back to 10.244.40.36"
        );
        assert!(first(Question { size: 1500, df: false, ..ask("10.244.40.36", "10.244.166.150") })
            .starts_with("kernel: too big for the tunnel"));
        let decap = Question {
            from_underlay: Some("10.101.14.51".parse().unwrap()),
            ..ask("10.244.166.150", "10.244.40.36")
        };
        assert!(first(decap).starts_with("decapsulate, then redirect to pod on cali0f293e89ca7"));
        let rogue = Question {
            from_underlay: Some("10.101.14.60".parse().unwrap()),
            ..ask("10.244.166.150", "10.244.40.36")
        };
        assert!(first(rogue).starts_with("drop: a tunnel from an unknown node"));
    }

    #[test]
    fn vxlan_decisions_in_words() {
        let out = explained(ask("10.244.40.36", "10.244.8.9"));
        assert!(
            out.starts_with("VXLAN to 10.101.14.53 via eth0 (outer 10.101.14.50 → 10.101.14.53, UDP 4789, VNI 4096, inner MAC 66:00:0a:65:0e:35)"),
            "{out}"
        );
        assert!(out.contains("is in a block routed via node 10.101.14.53, with VXLAN"), "{out}");
        assert!(out.contains("as vxlan.calico would send it: UDP port 4789, VNI 4096"), "{out}");
        assert!(first(Question { size: 1451, ..ask("10.244.40.36", "10.244.8.9") })
            .starts_with("ICMP fragmentation needed (mtu = 1450)"));
        let arriving = Question {
            from_underlay: Some("10.101.14.53".parse().unwrap()),
            encap: Encap::Vxlan,
            ..ask("10.244.8.9", "10.244.40.36")
        };
        let out = explained(arriving);
        assert!(out.starts_with("decapsulate, then redirect to pod on cali0f293e89ca7"), "{out}");
        assert!(out.contains("VXLAN from 10.101.14.53, a known node"), "{out}");
        assert!(out.contains("taken apart as vxlan.calico would"), "{out}");
        let stranger = Question { from_underlay: Some("10.101.14.60".parse().unwrap()), ..arriving };
        assert!(first(stranger).starts_with("drop: a tunnel from an unknown node"));
        let foreign = Question { src: "10.244.166.150".parse().unwrap(), ..arriving };
        assert!(first(foreign).contains("passed_inner_source_foreign"));
    }

    #[test]
    fn a_pod_may_send_only_from_an_address_of_its_own_interface() {
        let from_pod = |src: &str| Question { ingress: Some(5), ..ask(src, "10.244.40.37") };
        let unallocated = explained(from_pod("10.244.40.50"));
        assert!(
            unallocated.starts_with("kernel: the source is an unallocated address of this node's block (counted as passed_source_unallocated)"),
            "{unallocated}"
        );
        assert!(unallocated.contains("because it arrives on cali0f293e89ca7 (ifindex 5)\n"), "{unallocated}");
        for outside in ["10.96.0.10", "192.0.2.7"] {
            let text = explained(from_pod(outside));
            assert!(
                text.starts_with("kernel: the source is no pod's address (counted as passed_source_not_pod)"),
                "{text}"
            );
            assert!(text.contains("is no pod's address (a service, host or outside address)"), "{text}");
        }
        let remote = explained(from_pod("10.244.166.150"));
        assert!(remote.starts_with("drop: spoofed source (counted as dropped_spoofed_source)"), "{remote}");
        assert!(remote.contains("is in a block of node 10.101.14.51"), "{remote}");
        let neighbour = explained(from_pod("10.244.40.37"));
        assert!(neighbour.starts_with("drop: spoofed source"), "{neighbour}");
        let own = explained(from_pod("10.244.40.36"));
        assert!(own.starts_with("redirect to pod on cali6"), "{own}");
        assert!(own.contains("the interface of pod 10.244.40.36"), "{own}");
        // Without --iface, a source that is no pod's arrives on no known interface.
        assert!(first(ask("192.0.2.7", "10.244.40.37")).contains("passed_source_not_pod"));
    }

    #[test]
    fn a_node_may_tunnel_only_its_own_sources() {
        let via = |src: &str, node: &str| Question {
            from_underlay: Some(node.parse().unwrap()),
            ..ask(src, "10.244.40.36")
        };
        let third = explained(via("10.244.7.9", "10.101.14.51"));
        assert!(
            third.starts_with("kernel: the inner source does not belong to the sending node (counted as passed_inner_source_foreign)"),
            "{third}"
        );
        assert!(
            third.contains("10.244.7.9 is neither node 10.101.14.51 nor in a block routed via it"),
            "{third}"
        );
        assert!(first(via("10.244.40.37", "10.101.14.51")).contains("passed_inner_source_foreign"));
        assert!(
            first(via("10.101.14.51", "10.101.14.51")).starts_with("decapsulate"),
            "the node's own host network"
        );
        assert!(first(via("10.244.7.9", "10.101.14.52")).starts_with("decapsulate"));
    }

    #[test]
    fn ipv6_questions_are_walked_as_the_programs_walk_ipv6() {
        let (a, b) = ("fd5f:a1b2:c3d4::af4:2824", "fd5f:a1b2:c3d4::af4:2825");
        assert_eq!(first(ask(a, b)), "redirect to pod on cali7 (ifindex 7, MAC 02:00:00:00:00:07)");
        let why = explained(ask(a, b));
        assert!(why.contains(&format!("because {b} is a pod on this node")), "{why}");
        assert_eq!(
            first(Question { arp: true, ..ask(a, "fe80::ecee:eeff:feee:eeee") }),
            "neighbour advertisement: fe80::ecee:eeff:feee:eeee is at ee:ee:ee:ee:ee:ee, sent back out of the pod's interface"
        );
        // Pod b's address, sent from pod a's interface.
        let spoofed = Question { ingress: Some(5), ..ask(b, "fd5f:a1b2:c3d4::af4:2826") };
        assert!(first(spoofed).starts_with("drop: spoofed source"), "{}", explained(spoofed));
        assert!(
            first(ask(a, "fd5f:a1b2:c3d4::af4:a696")).starts_with("kernel"),
            "{}",
            explained(ask(a, "fd5f:a1b2:c3d4::af4:a696"))
        );
        assert!(first(Question { ttl: 1, ..ask(a, b) }).starts_with("kernel"));
        // Under --trust kernel, by the IPv6 flow table.
        let none = explained_with(ask(a, b), NODE_F_TRUST_KERNEL, &[]);
        assert!(none.starts_with("kernel first (passed_flow_pending)"), "{none}");
        assert!(none.contains("then: redirect to pod on cali7"), "{none}");
        let key = FlowKey6::new(
            a.parse::<Ipv6Addr>().unwrap().octets(),
            b.parse::<Ipv6Addr>().unwrap().octets(),
            6,
            (40000, 80),
        );
        let value = FlowValue6::approved(&Arrived6::from_pod(5), false);
        let approved = explained_with6(ask(a, b), NODE_F_TRUST_KERNEL, &[], &[Flow6 { key, value }]);
        assert!(approved.starts_with("redirect to pod on cali7"), "{approved}");
        assert!(approved.contains("for the 1 approved flows"), "{approved}");
        assert!(approved.contains(&format!("tcp [{a}]:40000 → [{b}]:80 is approved")), "{approved}");
        let translated = explained_with6(
            ask(a, b),
            NODE_F_TRUST_KERNEL,
            &[],
            &[Flow6 { key, value: FlowValue6 { translated: 1, ..value } }],
        );
        assert!(translated.starts_with("kernel first"), "{translated}");
        assert!(translated.contains("translated: the kernel carries it"), "{translated}");
    }

    #[test]
    fn a_routers_packet_too_big_about_ipv6_vxlan_is_told_in_words() {
        let node_ip: Ipv6Addr = "fd00:101::a65:e32".parse().unwrap();
        let peer: Ipv6Addr = "fd00:101::a65:e33".parse().unwrap();
        let router: Ipv6Addr = "fd00:101::a65:e3e".parse().unwrap();
        let node6 = Node6Config {
            flags: fastpath_common::maps::NODE6_F_READY | fastpath_common::maps::NODE6_F_VXLAN,
            vxlan_mtu: 1430,
            node_ip: node_ip.octets(),
            vxlan: VxlanConfig { ifindex: 10, vni: 4096, port: 4789, ..node(0).vxlan },
        };
        let pod: Ipv6Addr = "fd5f:a1b2:c3d4::af4:2824".parse().unwrap();
        let remote: Ipv6Addr = "fd5f:a1b2:c3d4::af4:809".parse().unwrap();
        let route6 = |addr: [u8; 16]| {
            (addr[..15] == remote.octets()[..15])
                .then(|| RouteValue6::vxlan(peer.octets(), [0x66, 6, 0, 0, 0, 0x51]))
        };
        let learned = PathMtu { mtu: 1400, _pad: 0, expires_ns: 2_000 };
        let path_mtu6 = |addr: [u8; 16]| (addr == peer.octets()).then_some(learned);
        let maps = Maps {
            node: node(0),
            next_hop_mac: &|_| None,
            route: &route,
            endpoint: &endpoint,
            endpoint6: &endpoint6,
            is_peer: &|_| false,
            node6,
            route6: &route6,
            is_peer6: &|_| false,
            path_mtu: &|_| None,
            path_mtu6: &path_mtu6,
            flow: &|_| None,
            flow6: &|_| None,
            flows: &[],
            now_ns: 1_000,
            ifname: &|_| None,
        };
        let ip6 = |src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, upper: &[u8]| {
            let mut frame = ethernet([2; 6], [4; 6], 0x86dd);
            frame.extend_from_slice(&[0x60, 0, 0, 0]);
            frame.extend_from_slice(&(upper.len() as u16).to_be_bytes());
            frame.extend_from_slice(&[next_header, 64]);
            frame.extend_from_slice(&src.octets());
            frame.extend_from_slice(&dst.octets());
            frame.extend_from_slice(upper);
            frame
        };
        // The router's message, quoting this node's IPv6 VXLAN packet to the next node.
        let mut message = vec![2, 0, 0, 0, 0, 0, 0x05, 0x78];
        message.extend_from_slice(&ip6(node_ip, peer, 17, &[0; 8])[14..54]);
        message.extend_from_slice(&[0xc7, 0x38, 0x12, 0xb5, 0x05, 0xb4, 0, 0]);
        let sum = ipv6::upper_layer_checksum(&router.octets(), &node_ip.octets(), 58, &message);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
        let decision = decide(Program::FromUnderlay, &ip6(router, node_ip, 58, &message), &maps);
        assert_eq!((decision.verdict, decision.reason), (Verdict::Kernel, Reason::PathMtuLearned));
        let why = decision.why.join("; ");
        assert!(why.contains(&format!("a router says the path to node {peer} carries 1400 bytes")), "{why}");
        // The pod's packet too big for the path it taught.
        let mut tcp = vec![0u8; 20 + 1331 - 60];
        tcp[12] = 5 << 4;
        let decision = decide(Program::FromPod { ingress: 5 }, &ip6(pod, remote, 6, &tcp), &maps);
        assert_eq!(decision.reason, Reason::Icmp6PacketTooBig);
        let why = decision.why.join("; ");
        assert!(
            why.contains(&format!(
                "1331 bytes do not fit the IPv6 VXLAN tunnel MTU toward {peer} (a router said the path carries 1400) 1330"
            )),
            "{why}"
        );
    }

    #[test]
    fn under_trust_kernel_only_approved_flows_are_fast() {
        let q = ask("10.244.40.36", "10.244.166.150");
        let (src, dst) = q.ipv4().unwrap();
        let key = FlowKey::new(src.octets(), dst.octets(), 6, (40000, 80));
        let approved_value = FlowValue::approved(&key, &Arrived::from_pod(5), &key);
        let with = |value| explained_with(q, NODE_F_TRUST_KERNEL, &[Flow { key, value }]);
        let none = explained_with(q, NODE_F_TRUST_KERNEL, &[]);
        assert!(
            none.starts_with(
                "kernel first (passed_flow_pending), until the kernel's conntrack holds the flow"
            ),
            "{none}"
        );
        assert!(none.contains("holds no flow from 10.244.40.36 to 10.244.166.150"), "{none}");
        let approved = with(approved_value);
        assert!(approved.starts_with("IPIP to 10.101.14.51 via eth0"), "{approved}");
        assert!(approved.contains("for the 1 approved flows"), "{approved}");
        assert!(approved.contains("tcp 10.244.40.36:40000 → 10.244.166.150:80 is approved"), "{approved}");
        let closing = with(FlowValue { state: FlowState::Closing as u8, ..approved_value });
        assert!(closing.starts_with("kernel first"), "{closing}");
        assert!(closing.contains("is closing"), "{closing}");
        assert!(explained(q).contains("--trust routes"));
    }

    #[test]
    fn the_reasons_follow_the_verdict() {
        let text = explained(ask("10.244.40.36", "8.8.8.8"));
        assert!(text.lines().skip(1).all(|l| l.starts_with("  because ")), "{text}");
        assert!(text.lines().any(|l| l.contains("no fastpath entry")), "{text}");
    }

    #[test]
    fn frames_decide_as_the_programs_do() {
        let is_peer = |a: [u8; 4]| a == [10, 101, 14, 51];
        let ifname = |_: u32| None;
        let maps = Maps {
            node: node(0),
            next_hop_mac: &|_| None,
            route: &route,
            endpoint: &endpoint,
            endpoint6: &|_| None,
            is_peer: &is_peer,
            node6: Node6Config::default(),
            route6: &|_| None,
            is_peer6: &|_| false,
            path_mtu: &|_| None,
            path_mtu6: &|_| None,
            flow: &|_| None,
            flow6: &|_| None,
            flows: &[],
            now_ns: 0,
            ifname: &ifname,
        };
        let pod = Program::FromPod { ingress: 5 };
        assert_eq!(decide(pod, &[0; 10], &maps).reason, Reason::PassTruncatedEthernet);
        let lldp = ethernet(GATEWAY_MAC, POD_MAC, 0x88cc);
        assert_eq!(decide(pod, &lldp, &maps).reason, Reason::PassOtherEthertype);
        let cut_ipv6 = ethernet(GATEWAY_MAC, POD_MAC, 0x86dd);
        assert_eq!(decide(pod, &cut_ipv6, &maps).reason, Reason::PassIpv6Malformed);
        let mut cut = ethernet(GATEWAY_MAC, POD_MAC, ETH_P_IP);
        cut.extend_from_slice(&[0x45; 10]);
        let decision = decide(pod, &cut, &maps);
        assert_eq!((decision.verdict, decision.reason), (Verdict::Kernel, Reason::PassIpv4Malformed));
        let (_, mut frame) = question_frame(&ask("10.244.40.36", "10.244.166.150"), &maps);
        assert_eq!(decide(pod, &frame, &maps).verdict, Verdict::Redirect);
        frame.truncate(frame.len() - 1);
        assert_eq!(decide(pod, &frame, &maps).reason, Reason::PassIpv4Malformed, "total length past the end");
        assert_eq!(decide(Program::FromUnderlay, &frame, &maps).reason, Reason::PassUnderlayOther);
    }
}
