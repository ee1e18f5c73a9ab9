//! `fastpath explain`: what the programs would do with a packet, and why.
//!
//! The decision takes a frame and walks the programs' own steps in their order (`ebpf/src/pod.rs`
//! for a frame from a pod, `ebpf/src/underlay.rs` and `tunnel.rs` for one from the underlay,
//! IPIP or VXLAN), over the same maps
//! and through the same decision functions (`fastpath_common`). Because it takes a frame, a test
//! feeds it the very frames the programs get through BPF_PROG_TEST_RUN and requires the same
//! verdict and reason (`tests/tests/explain_agrees.rs`); the command builds its frame from the
//! question on the command line.

use std::{fmt::Write as _, net::Ipv4Addr, path::Path};

use aya::maps::{lpm_trie::Key, HashMap, MapData};
use fastpath_common::{
    arp::{self, ArpFields, ARP_IPV4_LEN},
    flow::{self, Arrival, Arrived, FlowKey, FlowValue, Signal, Translation},
    icmp,
    ipv4::{
        self, Ipv4Fields, OuterIpv4, FLAG_DF, FRAGMENT_MASK, HEADER_LEN, PROTO_ICMP, PROTO_IPIP, PROTO_TCP,
        PROTO_UDP,
    },
    maps::{
        AgentInfo, Endpoint, NextHopEntry, NodeConfig, PathMtu, AGENT, ENDPOINTS, NEXT_HOPS, NODE, PATH_MTU,
        TUNNEL_PEERS,
    },
    route::{self, Forward, RouteKind, RouteValue},
    tunnel::Tunnel,
    vxlan::{self, Received, VxlanConfig, INNER_ETH_LEN, UDP_HEADER_LEN},
    Reason, GATEWAY_MAC,
};

use crate::{
    cli::Encap,
    clock::monotonic_ns,
    commands::flows::{self, Flow},
    daemon::{netlink::Netlink, picture, routes},
    dataplane::{bpffs, tables},
    text::{mac_string, unpadded},
    Error,
};

const ETH_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;

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
    pub is_peer: &'a dyn Fn([u8; 4]) -> bool,
    /// The path MTU toward a node, as a router taught the programs.
    pub path_mtu: &'a dyn Fn([u8; 4]) -> Option<PathMtu>,
    /// The MAC the programs' next-hop cache holds for a node or gateway on the underlay (as of
    /// the current generation), for the sender of a plain packet.
    pub next_hop_mac: &'a dyn Fn([u8; 4]) -> Option<[u8; 6]>,
    /// The flow table's exact match (`--trust kernel`).
    pub flow: &'a dyn Fn(&FlowKey) -> Option<FlowValue>,
    /// Every flow the table holds, for the words of a question that names no flow.
    pub flows: &'a [Flow],
    /// `bpf_ktime_get_ns()` now (`CLOCK_MONOTONIC`), for idle flows.
    pub now_ns: u64,
    pub ifname: &'a dyn Fn(u32) -> Option<String>,
}

/// Where a packet arrived, as the program that saw it can tell (`flow.rs::Seen`).
enum Seen {
    Pod(u32),
    Tunnel(Arrival, [u8; 4]),
    /// Plain from the underlay, with the frame's source MAC.
    Plain([u8; 6]),
}

/// What the flow gate says.
enum Gate {
    /// `--trust routes`: no gate.
    Routes,
    /// `--trust kernel`, and the table holds no entry for the direction.
    Pending,
    /// An approved direction, and what it leaves as.
    Approved(Translation),
}

/// How the programs' walk ends: a verdict, its reason, and the verdict in words.
struct End {
    verdict: Verdict,
    reason: Reason,
    words: String,
}

/// A step of the walk: `Err` ends it early, as `?` does in the programs.
type Step<T> = Result<T, End>;

/// The decision of `program` about `frame`.
pub fn decide(program: Program, frame: &[u8], maps: &Maps) -> Decision {
    let mut walk = Walk { maps, why: Vec::new(), once_approved: None };
    let end = match program {
        Program::FromPod { ingress } => walk.pod_frame(frame, ingress),
        Program::FromUnderlay => walk.underlay_frame(frame),
    }
    .unwrap_or_else(|end| end);
    Decision {
        verdict: end.verdict,
        reason: end.reason,
        words: end.words,
        why: walk.why,
        once_approved: walk.once_approved,
    }
}

struct Walk<'a, 'm> {
    maps: &'m Maps<'a>,
    why: Vec<String>,
    once_approved: Option<String>,
}

impl Walk<'_, '_> {
    /// `from_pod`: ARP is answered, IPv4 forwarded, the rest passed.
    fn pod_frame(&mut self, frame: &[u8], ingress: u32) -> Step<End> {
        match ether_type(frame) {
            None => Err(self.refuse(Reason::PassTruncatedEthernet)),
            Some(ETH_P_ARP) => self.arp(frame),
            Some(ETH_P_IP) => self.forward(frame, ingress),
            Some(_) => Err(self.refuse(Reason::PassOtherEthertype)),
        }
    }

    fn arp(&mut self, frame: &[u8]) -> Step<End> {
        let Some(a) =
            frame.get(ETH_LEN..ETH_LEN + ARP_IPV4_LEN).and_then(|a| <&[u8; ARP_IPV4_LEN]>::try_from(a).ok())
        else {
            return Err(self.refuse(Reason::PassArpMalformed));
        };
        let fields = ArpFields::parse(a);
        arp::classify_request(&fields).map_err(|reason| self.refuse(reason))?;
        let (asker, target) = (Ipv4Addr::from(fields.spa), Ipv4Addr::from(fields.tpa));
        self.why.push(format!(
            "an ARP request from a pod for any address but its own is answered, as proxy_arp would ({asker} asks for {target})"
        ));
        Ok(act(
            Reason::ArpReplied,
            format!("ARP reply: {target} is at ee:ee:ee:ee:ee:ee, sent back out of the pod's interface"),
        ))
    }

    /// `pod.rs::forward`: the source check, the flow gate, the destination (the one the flow's
    /// conntrack entry translates it to), then carrying it.
    fn forward(&mut self, frame: &[u8], ingress: u32) -> Step<End> {
        let node = self.node()?;
        let ip = self.forwardable(frame, ETH_LEN)?;
        self.check_source(&ip, ingress)?;
        match self.gate(frame, ETH_LEN, &ip, Seen::Pod(ingress))? {
            Gate::Routes => {
                let to = self.forward_to(ip.dst, node.node_ip)?;
                Ok(self.carry(frame.len(), &ip, to))
            }
            // As the programs: the destination's own reason first, else the kernel first.
            Gate::Pending => {
                let to = self.forward_to(ip.dst, node.node_ip)?;
                let carried = self.carry(frame.len(), &ip, to);
                Err(self.pending(&carried.words))
            }
            Gate::Approved(t) => match self.forward_to(t.to_dst, node.node_ip) {
                Ok(to) => Ok(self.carry(frame.len(), &ip, to)),
                Err(end) if end.reason == Reason::PassNoRoute && t.nat != 0 => {
                    self.why.pop();
                    self.why.pop();
                    let underlay = self.name(node.underlay_ifindex);
                    self.fits(frame.len(), &ip, node.underlay_mtu, "the underlay MTU")?;
                    Ok(act(
                        Reason::RoutedUnderlay,
                        format!(
                            "route to {} as the kernel's FIB says, out of {underlay}",
                            Ipv4Addr::from(t.to_dst)
                        ),
                    ))
                }
                Err(end) => Err(end),
            },
        }
    }

    /// `underlay.rs::handle`, then `tunnel.rs::deliver`: IPIP, or VXLAN to this node's
    /// `vxlan.calico`, to this node from a known node, from a source of that node, for a pod here.
    fn underlay_frame(&mut self, frame: &[u8]) -> Step<End> {
        let node = self.node()?;
        let Some(outer) = plain_frame(frame) else {
            self.why.push("it is not a plain, option-less IPv4 frame".into());
            return Err(self.refuse(Reason::PassUnderlayOther));
        };
        self.learn_path_mtu(frame, &node, &outer)?;
        let (outer_src, this_node) = (Ipv4Addr::from(outer.src), Ipv4Addr::from(node.node_ip));
        let tunnel = if outer.dst != node.node_ip {
            self.why.push(format!("it is to {}, not to this node {this_node}", Ipv4Addr::from(outer.dst)));
            None
        } else if carries_ipip(&outer) {
            Some(Tunnel::Ipip)
        } else if is_vxlan_for(frame, &node, &outer) {
            Some(Tunnel::Vxlan)
        } else {
            self.why.push(if node.has_vxlan() {
                format!("it is neither IPIP nor VXLAN (UDP to port {})", node.vxlan.port)
            } else {
                "it is not IPIP (and this node has no vxlan.calico the programs stand in for)".into()
            });
            None
        };
        let Some(tunnel) = tunnel else { return self.plain(frame, &node, &outer) };
        let name = tunnel.name().to_uppercase();
        if !(self.maps.is_peer)(outer.src) {
            self.why.push(format!(
                "{outer_src} is not a node in the route table (no remote block routes via it)"
            ));
            return Err(self.refuse(Reason::DropUnknownPeer));
        }
        self.why.push(format!("{name} from {outer_src}, a known node, to this node {this_node}"));
        let (l3, delivered) = match tunnel {
            Tunnel::Ipip => (ETH_LEN + HEADER_LEN, Reason::Decapsulated),
            Tunnel::Vxlan => {
                self.check_vxlan(frame, &node, &outer)?;
                (ETH_LEN + vxlan::OVERHEAD, Reason::DecapsulatedVxlan)
            }
        };
        let inner = self.forwardable(frame, l3)?;
        self.check_inner_source(&inner, outer.src)?;
        let arrival = if tunnel == Tunnel::Ipip { Arrival::Ipip } else { Arrival::Vxlan };
        let dst = match self.gate(frame, l3, &inner, Seen::Tunnel(arrival, outer.src))? {
            Gate::Routes => inner.dst,
            Gate::Approved(t) => t.to_dst,
            Gate::Pending => {
                let Forward::Local { ifindex, mac } = self.deliver_after_decap(inner.dst, node.node_ip)?
                else {
                    return Err(self.refuse(Reason::PassDecapNotLocal));
                };
                let words = format!(
                    "decapsulate, then redirect to pod on {} (ifindex {ifindex}, MAC {})",
                    self.name(ifindex),
                    mac_string(mac)
                );
                return Err(self.pending(&words));
            }
        };
        let Forward::Local { ifindex, mac } = self.deliver_after_decap(dst, node.node_ip)? else {
            return Err(self.refuse(Reason::PassDecapNotLocal));
        };
        Ok(act(
            delivered,
            format!(
                "decapsulate, then redirect to pod on {} (ifindex {ifindex}, MAC {})",
                self.name(ifindex),
                mac_string(mac)
            ),
        ))
    }

    /// `path_mtu.rs::learn`: a router's "fragmentation needed" about one of this node's tunnel
    /// packets teaches the path MTU toward that node, and goes on to the kernel.
    fn learn_path_mtu(&mut self, frame: &[u8], node: &NodeConfig, outer: &Ipv4Fields) -> Step<()> {
        if outer.protocol != PROTO_ICMP || outer.dst != node.node_ip {
            return Ok(());
        }
        let Some(message) = frame.get(ETH_LEN + HEADER_LEN..).and_then(|m| m.get(..icmp::ARRIVING_LEN))
        else {
            return Ok(());
        };
        let message: &[u8; icmp::ARRIVING_LEN] = message.try_into().expect("the length asked for");
        let vxlan_port = node.has_vxlan().then_some(node.vxlan.port);
        let Some((peer, mtu)) = icmp::path_mtu_report(message, node.node_ip, vxlan_port) else {
            return Ok(());
        };
        let Some(learned) = PathMtu::learned(mtu, 0) else { return Ok(()) };
        self.why.push(format!(
            "a router says the path to node {} carries {} bytes (fragmentation needed about this node's tunnel packet)",
            Ipv4Addr::from(peer),
            learned.mtu
        ));
        Err(self.refuse(Reason::PathMtuLearned))
    }

    /// `vxlan.rs::Arriving::check`: the headers between the outer and inner IPv4 ones are this
    /// node's `vxlan.calico`'s to take apart.
    fn check_vxlan(&mut self, frame: &[u8], node: &NodeConfig, outer: &Ipv4Fields) -> Step<()> {
        let v = node.vxlan;
        let checked = received(frame).ok_or(Reason::PassVxlanOther);
        match checked.and_then(|r| vxlan::check_received(outer.total_len, &r, &v)) {
            Ok(()) => {
                self.why.push(format!(
                    "taken apart as {} would: UDP port {}, VNI {}, inner Ethernet to {}",
                    self.name(v.ifindex),
                    v.port,
                    v.vni,
                    mac_string(v.mac)
                ));
                Ok(())
            }
            Err(reason) => {
                self.why.push(format!(
                    "it is not what {} takes apart: VNI {}, flag I alone, a consistent UDP length, inner IPv4 to {}",
                    self.name(v.ifindex),
                    v.vni,
                    mac_string(v.mac)
                ));
                Err(self.refuse(reason))
            }
        }
    }

    /// `underlay.rs::plain`: under `--trust kernel`, plain traffic to a pod here or to this node
    /// (the replies of a flow conntrack translated to it), from no pod of this node, by its flow's
    /// conntrack entry, sent by the node or gateway its source is routed through.
    fn plain(&mut self, frame: &[u8], node: &NodeConfig, outer: &Ipv4Fields) -> Step<End> {
        let (src, dst) = (Ipv4Addr::from(outer.src), Ipv4Addr::from(outer.dst));
        if !node.trusts_kernel() {
            self.why
                .push("--trust routes: plain traffic from another node is the kernel's to deliver".into());
            return Err(self.refuse(Reason::PassUnderlayOther));
        }
        let to_node = outer.dst == node.node_ip;
        if !to_node && (self.maps.endpoint)(outer.dst).is_none() {
            self.why.push(format!("{dst} is no pod of this node"));
            return Err(self.refuse(Reason::PassUnderlayOther));
        }
        if (self.maps.endpoint)(outer.src).is_some() {
            self.why.push(format!("{src} is a pod of this node, which never sends from the underlay"));
            return Err(self.refuse(Reason::PassUnderlayOther));
        }
        let ip = self.forwardable(frame, ETH_LEN)?;
        let source_mac: [u8; 6] = frame.get(6..12).and_then(|m| m.try_into().ok()).unwrap_or([0; 6]);
        let t = match self.gate(frame, ETH_LEN, &ip, Seen::Plain(source_mac))? {
            Gate::Approved(t) => t,
            Gate::Pending if to_node => {
                self.why.pop();
                self.why.push(format!(
                    "plain IPv4 to this node {dst}, of no flow the fast path carries: the host's own"
                ));
                return Err(self.refuse(Reason::PassUnderlayOther));
            }
            Gate::Pending => {
                let words = self.delivery_words(outer.dst);
                return Err(self.pending(&words));
            }
            Gate::Routes => return Err(self.refuse(Reason::PassUnderlayOther)),
        };
        let Some(pod) = (self.maps.endpoint)(t.to_dst) else {
            self.why.push(format!("{} is no pod of this node", Ipv4Addr::from(t.to_dst)));
            return Err(self.refuse(Reason::PassDecapNotLocal));
        };
        self.why
            .push(format!("plain IPv4 from the underlay to pod {} on this node", Ipv4Addr::from(t.to_dst)));
        Ok(act(
            Reason::RoutedFromUnderlay,
            format!(
                "redirect to pod on {} (ifindex {}, MAC {})",
                self.name(pod.ifindex),
                pod.ifindex,
                mac_string(pod.mac)
            ),
        ))
    }

    fn delivery_words(&self, dst: [u8; 4]) -> String {
        match (self.maps.endpoint)(dst) {
            Some(pod) => format!(
                "redirect to pod on {} (ifindex {}, MAC {})",
                self.name(pod.ifindex),
                pod.ifindex,
                mac_string(pod.mac)
            ),
            None => "deliver it".into(),
        }
    }

    fn node(&mut self) -> Step<NodeConfig> {
        if self.maps.node.ready() {
            Ok(self.maps.node)
        } else {
            Err(self.refuse(Reason::PassNotReady))
        }
    }

    /// `ip.rs::forwardable`: a header a router may forward without the kernel's judgement.
    fn forwardable(&mut self, frame: &[u8], offset: usize) -> Step<Ipv4Fields> {
        let Some(header) = ipv4_header(frame, offset) else {
            return Err(self.refuse(Reason::PassIpv4Malformed));
        };
        let after_l2 = frame.len().saturating_sub(offset) as u32;
        ipv4::check_forwardable(&header, after_l2).map_err(|reason| self.refuse(reason))?;
        Ok(header)
    }

    /// `lookup.rs::check_source`: only from an address of the interface it arrives on.
    fn check_source(&mut self, ip: &Ipv4Fields, ingress: u32) -> Step<()> {
        let src = Ipv4Addr::from(ip.src);
        let own = (self.maps.endpoint)(ip.src).is_some_and(|e| e.ifindex == ingress);
        let route = (self.maps.route)(ip.src);
        let own_by_route =
            route.is_some_and(|r| r.kind == RouteKind::LocalEndpoint as u32 && r.ifindex == ingress);
        match ingress {
            0 => self.why.push("it arrives on no pod interface this node knows".into()),
            _ if own || own_by_route => self.why.push(format!(
                "it arrives on {} (ifindex {ingress}), the interface of pod {src}",
                self.name(ingress)
            )),
            _ => self.why.push(format!("it arrives on {} (ifindex {ingress})", self.name(ingress))),
        }
        if own {
            return Ok(());
        }
        route::check_source(route.as_ref(), ingress).map_err(|reason| {
            self.why.push(match reason {
                Reason::DropSpoofedSource => match route {
                    Some(r) if r.kind == RouteKind::RemoteBlock as u32 => format!(
                        "{src} is in a block of node {}: another pod's address, not one of the sender's interface",
                        Ipv4Addr::from(r.next_hop)
                    ),
                    _ => format!("{src} belongs to another pod, not to the sender's interface"),
                },
                Reason::PassSourceUnallocated => format!("{src} is in this node's block, but no pod has it"),
                Reason::PassSourceNotPod => {
                    format!("{src} is no pod's address (a service, host or outside address)")
                }
                _ => format!("{src} is this pod's, but its MAC is not known yet"),
            });
            self.refuse(reason)
        })
    }

    /// `lookup.rs::check_inner_source`: the sending node itself, or a block routed via it.
    fn check_inner_source(&mut self, inner: &Ipv4Fields, outer_src: [u8; 4]) -> Step<()> {
        let (src, node) = (Ipv4Addr::from(inner.src), Ipv4Addr::from(outer_src));
        route::check_inner_source(inner.src, outer_src, (self.maps.route)(inner.src).as_ref()).map_err(
            |reason| {
                self.why.push(format!(
                    "the inner source {src} is neither node {node} nor in a block routed via it"
                ));
                self.refuse(reason)
            },
        )?;
        self.why.push(if inner.src == outer_src {
            format!("the inner source is node {node} itself")
        } else {
            format!("the inner source {src} is in a block routed via node {node}")
        });
        Ok(())
    }

    /// `lookup.rs::forward_to`: the endpoint table first, then the route trie.
    fn forward_to(&mut self, dst: [u8; 4], node_ip: [u8; 4]) -> Step<Forward> {
        let to = match self.local(dst, node_ip) {
            Some(local) => Ok(local),
            None => route::forward_to(dst, node_ip, (self.maps.route)(dst).as_ref()),
        };
        let dst = Ipv4Addr::from(dst);
        match to {
            Ok(Forward::Local { ifindex, .. }) => {
                self.why.push(format!("{dst} is a pod on this node (a /32 via {})", self.name(ifindex)));
            }
            Ok(Forward::Encapsulate { next_hop, tunnel, .. }) => self.why.push(format!(
                "{dst} is in a block routed via node {}, with {}",
                Ipv4Addr::from(next_hop),
                tunnel.name().to_uppercase()
            )),
            Ok(Forward::Underlay { next_hop }) => self.why.push(format!(
                "{dst} is in a block routed via node {}, without encapsulation",
                Ipv4Addr::from(next_hop)
            )),
            Err(_) => {}
        }
        to.map_err(|reason| self.refuse(reason))
    }

    /// `lookup.rs::deliver_after_decap`: only to a pod on this node.
    fn deliver_after_decap(&mut self, dst: [u8; 4], node_ip: [u8; 4]) -> Step<Forward> {
        let to = match self.local(dst, node_ip) {
            Some(local) => Ok(local),
            None => route::deliver_after_decap(dst, node_ip, (self.maps.route)(dst).as_ref()),
        };
        if to.is_ok() {
            self.why.push(format!("{} is a pod on this node", Ipv4Addr::from(dst)));
        }
        to.map_err(|reason| self.refuse(reason))
    }

    fn local(&self, dst: [u8; 4], node_ip: [u8; 4]) -> Option<Forward> {
        if ipv4::is_special_destination(dst, node_ip) {
            return None;
        }
        (self.maps.endpoint)(dst).map(|e| Forward::Local { ifindex: e.ifindex, mac: e.mac })
    }

    /// How the fast path carries a packet its route allows (`deliver.rs`, `ipip.rs`); the flow
    /// gate comes first.
    fn carry(&mut self, frame_len: usize, ip: &Ipv4Fields, to: Forward) -> End {
        let node = self.maps.node;
        let underlay = self.name(node.underlay_ifindex);
        match to {
            Forward::Local { ifindex, mac } => act(
                Reason::RedirectedLocal,
                format!(
                    "redirect to pod on {} (ifindex {ifindex}, MAC {})",
                    self.name(ifindex),
                    mac_string(mac)
                ),
            ),
            Forward::Encapsulate { next_hop, tunnel, mac } => {
                if tunnel == Tunnel::Vxlan && !node.has_vxlan() {
                    self.why.push("this node has no vxlan.calico the programs can stand in for".into());
                    return self.refuse(Reason::PassKernelRoute);
                }
                let name = tunnel.name().to_uppercase();
                let (tunnel_mtu, what) = self.tunnel_mtu(&node, tunnel, next_hop);
                let next_hop = Ipv4Addr::from(next_hop);
                if let Err(end) = self.fits(frame_len, ip, tunnel_mtu, &format!("the {name} {what}")) {
                    return end;
                }
                let outer_src = Ipv4Addr::from(node.node_ip);
                match tunnel {
                    Tunnel::Ipip => act(
                        Reason::Encapsulated,
                        format!(
                            "IPIP to {next_hop} via {underlay} (outer {outer_src} → {next_hop}, protocol 4)"
                        ),
                    ),
                    Tunnel::Vxlan => {
                        let v = node.vxlan;
                        self.why.push(format!(
                            "as {} would send it: UDP port {}, VNI {}, inner Ethernet {} → {}",
                            self.name(v.ifindex),
                            v.port,
                            v.vni,
                            mac_string(v.mac),
                            mac_string(mac)
                        ));
                        act(
                            Reason::EncapsulatedVxlan,
                            format!(
                                "VXLAN to {next_hop} via {underlay} (outer {outer_src} → {next_hop}, UDP {}, VNI {}, inner MAC {})",
                                v.port,
                                v.vni,
                                mac_string(mac)
                            ),
                        )
                    }
                }
            }
            Forward::Underlay { next_hop } => {
                if let Err(end) = self.fits(frame_len, ip, node.underlay_mtu, "the underlay MTU") {
                    return end;
                }
                act(
                    Reason::RoutedUnderlay,
                    format!("route to {} via {underlay} without encapsulation", Ipv4Addr::from(next_hop)),
                )
            }
        }
    }

    /// `path_mtu.rs::limit`: the tunnel's MTU, or less where a router said the path toward
    /// `peer` is narrower and that still holds; with what it is, in words.
    fn tunnel_mtu(&self, node: &NodeConfig, tunnel: Tunnel, peer: [u8; 4]) -> (u32, String) {
        let mtu = node.tunnel_mtu(&tunnel);
        let path = (self.maps.path_mtu)(peer)
            .and_then(|p| Some((p.mtu, p.inner_mtu(tunnel.overhead(), self.maps.now_ns)?)))
            .filter(|(_, inner)| *inner < mtu);
        match path {
            Some((outer, inner)) => (
                inner,
                format!(
                    "tunnel MTU toward {} (a router said the path carries {outer})",
                    Ipv4Addr::from(peer)
                ),
            ),
            None => (mtu, "tunnel MTU".into()),
        }
    }

    /// `tunnel.rs::too_big`: the bytes after the Ethernet header (what the way out carries,
    /// even past the IP packet's own length) must fit `mtu`, else a router's answer.
    fn fits(&mut self, frame_len: usize, ip: &Ipv4Fields, mtu: u32, what: &str) -> Step<()> {
        let carried = frame_len.saturating_sub(ETH_LEN) as u32;
        if carried <= mtu {
            return Ok(());
        }
        self.why.push(format!("{carried} bytes do not fit {what} {mtu}"));
        if !ip.dont_fragment() {
            return Err(self.refuse(Reason::PassTooBig));
        }
        Err(act(
            Reason::IcmpFragNeeded,
            format!("ICMP fragmentation needed (mtu = {mtu}) sent back to {}", Ipv4Addr::from(ip.src)),
        ))
    }

    /// `flow.rs::admit`: under `--trust kernel`, only a direction the kernel's conntrack holds a
    /// confirmed entry for takes the fast path, arriving where its flow enters.
    fn gate(&mut self, frame: &[u8], l3: usize, ip: &Ipv4Fields, seen: Seen) -> Step<Gate> {
        if !self.maps.node.trusts_kernel() {
            self.why.push("--trust routes: every packet the routes allow takes the fast path".into());
            return Ok(Gate::Routes);
        }
        self.why.push("--trust kernel: a flow direction takes the fast path only while the kernel's conntrack holds a confirmed entry for it that the kernel forwarded, translated as that entry says".into());
        let Some((key, signal)) = flow_name(frame, l3, ip) else {
            self.why.push("no flow can be named for it (an ICMP error, a protocol without ports, a cut transport header)".into());
            return Err(self.refuse(Reason::PassFlowUntracked));
        };
        let Some(value) = (self.maps.flow)(&key) else {
            self.why.push(format!("the flow table holds no {} yet", flows::describe(&key)));
            return Ok(Gate::Pending);
        };
        let arrived = match seen {
            Seen::Pod(ifindex) => Arrived::from_pod(ifindex),
            Seen::Tunnel(arrival, node) => Arrived::from_underlay(arrival, node),
            Seen::Plain(source_mac) => {
                let sender = (self.maps.next_hop_mac)(value.peer).filter(|mac| *mac == source_mac);
                Arrived::from_underlay(Arrival::Plain, sender.map_or([0; 4], |_| value.peer))
            }
        };
        let admission = flow::admission(&value, &arrived, signal);
        self.why.push(format!("{} is {}", flows::describe(&key), Flow { key, value }.state_name()));
        match admission.verdict {
            Ok(()) => {
                if value.nat != 0 {
                    self.why.push(format!(
                        "conntrack translates it to {}",
                        flows::describe(&value.leaves_as(&key))
                    ));
                }
                Ok(Gate::Approved(value.translation(&key)))
            }
            Err(reason) => {
                if reason == Reason::PassFlowElsewhere {
                    self.why.push(format!(
                        "it arrives elsewhere than its flow enters ({})",
                        flows::arrival_words(&value)
                    ));
                }
                Err(self.refuse(reason))
            }
        }
    }

    /// The end of a walk whose flow the table does not hold: the kernel first, then the fast path.
    fn pending(&mut self, carried: &str) -> End {
        self.once_approved = Some(carried.to_string());
        let mut end = self.refuse(Reason::PassFlowPending);
        end.words = format!(
            "kernel first ({}), until the kernel's conntrack holds the flow; then: {carried}",
            Reason::PassFlowPending.as_str()
        );
        end
    }

    fn name(&self, ifindex: u32) -> String {
        (self.maps.ifname)(ifindex).unwrap_or_else(|| format!("ifindex {ifindex}"))
    }

    /// The end of a walk that does not carry the packet: the kernel's, or dropped.
    fn refuse(&mut self, reason: Reason) -> End {
        self.why.push(describe(reason).into());
        let (verdict, how) =
            if reason.is_drop() { (Verdict::Drop, "drop") } else { (Verdict::Kernel, "kernel") };
        End { verdict, reason, words: format!("{how}: {} (counted as {})", short(reason), reason.as_str()) }
    }
}

fn act(reason: Reason, words: String) -> End {
    End { verdict: Verdict::Redirect, reason, words }
}

fn ether_type(frame: &[u8]) -> Option<u16> {
    frame.get(12..ETH_LEN).map(|t| u16::from_be_bytes([t[0], t[1]]))
}

fn ipv4_header(frame: &[u8], offset: usize) -> Option<Ipv4Fields> {
    let header: &[u8; HEADER_LEN] = frame.get(offset..offset + HEADER_LEN)?.try_into().ok()?;
    Some(Ipv4Fields::parse(header))
}

/// `ip.rs::plain_frame`: an IPv4 frame whose header is well-formed, option-less and not a
/// fragment.
fn plain_frame(frame: &[u8]) -> Option<Ipv4Fields> {
    if ether_type(frame)? != ETH_P_IP {
        return None;
    }
    let outer = ipv4_header(frame, ETH_LEN)?;
    let after_l2 = frame.len().saturating_sub(ETH_LEN) as u32;
    let plain = outer.version_ihl == 0x45 && outer.frag & FRAGMENT_MASK == 0;
    (plain && ipv4::is_well_formed(&outer, after_l2)).then_some(outer)
}

/// `ipip.rs::carries_ipip`: protocol 4, with room for an inner header.
fn carries_ipip(outer: &Ipv4Fields) -> bool {
    outer.protocol == PROTO_IPIP && u32::from(outer.total_len) >= 2 * HEADER_LEN as u32
}

/// `vxlan.rs::is_vxlan_for`: UDP to this node's `vxlan.calico` port, with room for the whole
/// VXLAN packet.
fn is_vxlan_for(frame: &[u8], node: &NodeConfig, outer: &Ipv4Fields) -> bool {
    outer.protocol == PROTO_UDP
        && node.has_vxlan()
        && u32::from(outer.total_len) >= (vxlan::OVERHEAD + HEADER_LEN) as u32
        && received(frame).is_some_and(|r| vxlan::destination_port(&r.udp) == node.vxlan.port)
}

/// `vxlan.rs::received`: the UDP, VXLAN and inner Ethernet headers.
fn received(frame: &[u8]) -> Option<Received> {
    let udp = ETH_LEN + HEADER_LEN;
    let header = udp + UDP_HEADER_LEN;
    let inner_eth = header + vxlan::HEADER_LEN;
    Some(Received {
        udp: frame.get(udp..header)?.try_into().ok()?,
        vxlan: frame.get(header..inner_eth)?.try_into().ok()?,
        inner_eth: frame.get(inner_eth..inner_eth + INNER_ETH_LEN)?.try_into().ok()?,
    })
}

/// `flow.rs::name`: the flow direction of the option-less packet at `l3`, and its TCP flags.
fn flow_name(frame: &[u8], l3: usize, ip: &Ipv4Fields) -> Option<(FlowKey, Signal)> {
    let l4 = frame.get(l3 + HEADER_LEN..).unwrap_or(&[]);
    let signal =
        if ip.protocol == PROTO_TCP { Signal::of_tcp_flags(*l4.get(13)?) } else { Signal::default() };
    let head: &[u8; flow::PORTS_LEN] = l4.get(..flow::PORTS_LEN)?.try_into().ok()?;
    let ports = flow::ports_of(ip.protocol, head)?;
    Some((FlowKey::new(ip.src, ip.dst, ip.protocol, ports), signal))
}

fn short(reason: Reason) -> &'static str {
    match reason {
        Reason::DropSpoofedSource => "spoofed source",
        Reason::DropNoEndpoint => "no pod at this address of the node's block",
        Reason::DropUnknownPeer => "a tunnel from an unknown node",
        Reason::PassVxlanOther => "VXLAN the kernel's device judges",
        Reason::PassUnderlayOther => "not a tunnel the programs take apart",
        Reason::PassNoRoute => "no fastpath route",
        Reason::PassKernelRoute => "the route is the kernel's",
        Reason::PassSpecialDestination => "a destination never fast-pathed",
        Reason::PassTtlExceeded => "TTL expiring",
        Reason::PassTooBig => "too big for the tunnel",
        Reason::PassNotReady => "the node is not configured yet",
        Reason::PassDecapNotLocal => "not for a pod on this node",
        Reason::PassArpGratuitous => "gratuitous ARP",
        Reason::PassArpProbe => "duplicate-address probe",
        Reason::PassSourceUnallocated => "the source is an unallocated address of this node's block",
        Reason::PassSourceNotPod => "the source is no pod's address",
        Reason::PassInnerSourceForeign => "the inner source does not belong to the sending node",
        Reason::PassEndpointTc => "the pod's interface has classic tc configuration",
        Reason::PassPolicyRoute => "an ip rule routes it through another table",
        Reason::PassMapOverflow => "the route map had no room for its prefix",
        Reason::PathMtuLearned => "a router's path MTU, noted",
        _ => "not the fast path's to carry",
    }
}

/// Why a reason applies, in a sentence.
pub fn describe(reason: Reason) -> &'static str {
    match reason {
        Reason::PassNoRoute => "the route table has no fastpath entry for the destination (host, service or outside addresses)",
        Reason::PassKernelRoute => "the route says the kernel routes it (a local pod whose MAC is not known yet, a VXLAN block whose neighbour or FDB entry is not, this node's tunnel address)",
        Reason::PassSpecialDestination => {
            "this node, loopback, 0.0.0.0/8, link-local (169.254.1.1) and multicast/broadcast never take the fast path"
        }
        Reason::PassTtlExceeded => "TTL ≤ 1: the kernel sends ICMP time exceeded, as a router must",
        Reason::PassIpOptions | Reason::PassFragment => "IP options and fragments need the kernel's judgement",
        Reason::PassTooBig => "it is too big for the tunnel but may be fragmented, which the kernel does",
        Reason::PassNotReady => "the daemon has not written this node's settings",
        Reason::PassDecapNotLocal => "after decapsulation the destination is not a pod on this node",
        Reason::DropSpoofedSource => "the source check (Calico's RPF) drops a pod sending with another pod's address",
        Reason::DropNoEndpoint => "the address is in this node's pod block (a blackhole route) but no pod has it",
        Reason::DropUnknownPeer => "only nodes that own a block in the route table may send IPIP or VXLAN to this node",
        Reason::PassUnderlayOther => "the kernel takes what is not a tunnel the programs stand in for",
        Reason::PassVxlanOther => "VXLAN the programs do not take apart goes to the kernel's own vxlan device",
        Reason::PassArpGratuitous => "a pod announcing its own address is the kernel's business",
        Reason::PassArpProbe => "a duplicate-address probe (sender 0.0.0.0) must stay unanswered",
        Reason::PassSourceUnallocated | Reason::PassSourceNotPod => {
            "the fast path carries a pod's packet only from an address of its own interface; the kernel's rpfilter and FORWARD rules judge any other source"
        }
        Reason::PassInnerSourceForeign => {
            "a node may send only its own pods' and its own packets; the kernel gets any other still encapsulated"
        }
        Reason::PassFlowPending => "the kernel's conntrack holds no confirmed entry of this flow direction yet",
        Reason::PassFlowKernelOwned | Reason::PassFlowExpired => "a retired code, counted by no program",
        Reason::PassFlowClosing => "TCP FIN or RST seen: the kernel carries the rest of the connection",
        Reason::PassFlowUntracked => "only the kernel can relate it to a flow",
        Reason::PassEndpointTc => {
            "a pod whose interface has a qdisc, filter or action of classic tc (a bandwidth limit, say) is carried by the kernel both ways, so the configuration sees every packet"
        }
        Reason::PassPolicyRoute => {
            "an ip rule sends the packet to a routing table other than main (WireGuard's, an egress gateway's), which the fast path does not reproduce"
        }
        Reason::PassFlowElsewhere => {
            "conntrack's entry binds the flow to where it enters (a pod's interface, a node's tunnel, a sender on the underlay), and this packet arrives elsewhere"
        }
        Reason::PassMapOverflow => "the route map was full: a prefix inside this one could not be written, so the kernel routes it",
        Reason::PathMtuLearned => {
            "the tunnel toward that node now carries less, for 10 minutes, as the kernel's own tunnels learn it; the kernel gets the message too"
        }
        _ => "the programs hand it to the kernel unchanged",
    }
}

/// The packet `fastpath explain SRC DST` asks about.
#[derive(Clone, Copy, Debug)]
pub struct Question {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
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

/// The frame a question describes, and the program it meets: an ARP request, or a TCP segment
/// of `size` IP bytes (in IPIP, or VXLAN as a node's `vxlan.calico` sends it, to this node when
/// it comes from the underlay).
pub fn question_frame(q: &Question, maps: &Maps) -> (Program, Vec<u8>) {
    const POD_SIDE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    if q.arp {
        let mut frame = ethernet([0xff; 6], POD_SIDE_MAC, ETH_P_ARP);
        frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        frame.extend_from_slice(&POD_SIDE_MAC);
        frame.extend_from_slice(&q.src.octets());
        frame.extend_from_slice(&[0; 6]);
        frame.extend_from_slice(&q.dst.octets());
        return (
            Program::FromPod { ingress: q.ingress.unwrap_or_else(|| pod_interface(q.src, maps)) },
            frame,
        );
    }
    let inner = tcp_packet(q);
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
            (Program::FromPod { ingress: q.ingress.unwrap_or_else(|| pod_interface(q.src, maps)) }, frame)
        }
    }
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
fn tcp_packet(q: &Question) -> Vec<u8> {
    let mut packet = vec![0u8; usize::from(q.size).max(HEADER_LEN)];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&q.size.to_be_bytes());
    packet[6..8].copy_from_slice(&(if q.df { FLAG_DF } else { 0 }).to_be_bytes());
    packet[8] = q.ttl;
    packet[9] = PROTO_TCP;
    packet[12..16].copy_from_slice(&q.src.octets());
    packet[16..20].copy_from_slice(&q.dst.octets());
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
    if !matches!(reason, Reason::PassPolicyRoute | Reason::PassEndpointTc) {
        return Ok(Vec::new());
    }
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
        detail.extend([q.dst, q.src].iter().filter_map(|addr| policy.why_diverted(*addr, kernel, &name)));
    } else {
        for addr in [q.src, q.dst] {
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
        let asked = FlowKey::new(q.src.octets(), q.dst.octets(), PROTO_TCP, (0, 0));
        let unnamed = format!("the flow table holds no {} yet", flows::describe(&asked));
        decision.why.retain(|line| *line != unnamed && *line != describe(Reason::PassFlowPending));
        let between: Vec<&Flow> = maps
            .flows
            .iter()
            .filter(|f| f.key.src == q.src.octets() && f.key.dst == q.dst.octets())
            .collect();
        for f in &between {
            let translated = if f.value.nat == 0 {
                String::new()
            } else {
                format!(", leaving as {}", flows::leaves_words(f))
            };
            decision.why.push(format!("{} is {}{translated}", flows::describe(&f.key), f.state_name()));
        }
        if between.is_empty() {
            decision.why.push(format!("the flow table holds no flow from {} to {} yet", q.src, q.dst));
        }
        let approved = between.iter().filter(|f| f.state() == Some(flow::FlowState::Approved)).count();
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
    let is_peer = |addr: [u8; 4]| peers.get(&addr, 0).is_ok();
    // A pin folder of an older version has no path MTU table: then no router said anything.
    let path_mtus: Option<HashMap<MapData, [u8; 4], PathMtu>> = bpffs::open_pinned_as(dir, PATH_MTU).ok();
    let path_mtu = |addr: [u8; 4]| path_mtus.as_ref().and_then(|m| m.get(&addr, 0).ok());
    // A pin folder of an older version has no flow table: then there is nothing to list.
    let flows = flows::read_pinned(dir).unwrap_or_default();
    let flow = |key: &FlowKey| flows.iter().find(|f| f.key == *key).map(|f| f.value);
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
        is_peer: &is_peer,
        path_mtu: &path_mtu,
        flow: &flow,
        flows: &flows,
        now_ns: monotonic_ns(),
        ifname,
    };
    Ok(explain(q, &maps))
}

#[cfg(test)]
mod tests {
    use fastpath_common::{
        flow::FlowState,
        maps::{NODE_F_READY, NODE_F_TRUST_KERNEL, NODE_F_VXLAN},
    };

    use super::*;

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
        route::endpoint_of(&route(addr)?)
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
        let maps = Maps {
            node: node(flags),
            next_hop_mac: &|_| None,
            route: &route,
            endpoint: &endpoint,
            is_peer: &is_peer,
            path_mtu: &|_| None,
            flow: &flow,
            flows,
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
    fn under_trust_kernel_only_approved_flows_are_fast() {
        let q = ask("10.244.40.36", "10.244.166.150");
        let key = FlowKey::new(q.src.octets(), q.dst.octets(), 6, (40000, 80));
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
            is_peer: &is_peer,
            path_mtu: &|_| None,
            flow: &|_| None,
            flows: &[],
            now_ns: 0,
            ifname: &ifname,
        };
        let pod = Program::FromPod { ingress: 5 };
        assert_eq!(decide(pod, &[0; 10], &maps).reason, Reason::PassTruncatedEthernet);
        let ipv6 = ethernet(GATEWAY_MAC, POD_MAC, 0x86dd);
        assert_eq!(decide(pod, &ipv6, &maps).reason, Reason::PassOtherEthertype);
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
