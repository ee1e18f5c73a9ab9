//! A Calico-shaped cluster built from network namespaces.
//!
//! One "switch" namespace holds a bridge: the underlay. Each node is a namespace with `eth0` on
//! that bridge, forwarding on, a blackhole route for its own pod block and a route per remote
//! block via the owning node. Each pod is a namespace whose `eth0` is one end of a veth; the other
//! end, `cali…` with MAC ee:ee:ee:ee:ee:ee, sits in the node with a /32 route to the pod. The pod
//! has the address as a /32 and a default route via 169.254.1.1, exactly as Calico sets it up.
//! proxy_arp is off on every `cali…`: only fastpath answers the pod's ARP.
//!
//! In VXLAN mode each node also has Felix's `vxlan.calico` (VNI 4096, port 4789, `local` the
//! node's address, no learning, MTU underlay − 50, its own MAC, a tunnel address from its block)
//! and, per other node, a block route via that node's tunnel address `dev vxlan.calico onlink`,
//! a permanent neighbour entry and a permanent FDB entry: the kernel's own VXLAN path, real.
//! Nodes whose addresses lie in different /28s sit on one bridge per subnet, and the switch
//! namespace routes between them (the subnet's `.62`): a node across a router.
//!
//! With [`ClusterSpec::ipv6`] set the cluster is dual stack: every pod, node and block has an
//! IPv6 address too, laid out as Calico does ([`crate::dual_stack`]).

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::{
    bird::Bird,
    cmd,
    dual_stack::{self, Family, Ipv6Layout, NodeIpv6, RemoteVia6},
    names, wait, Netns,
};

/// The gateway every pod routes through; nobody owns it.
pub const POD_GATEWAY: &str = "169.254.1.1";
/// The underlay subnet of the seed's nodes (10.101.14.48/28) and its prefix length.
pub const UNDERLAY_PREFIX_LEN: u8 = 28;
/// The underlay's default gateway in the seed (it need not exist for our tests; it does when the
/// nodes span several subnets, as each subnet's router).
pub const UNDERLAY_GATEWAY: &str = "10.101.14.62";
/// Calico's VXLAN device, VNI and port.
pub const VXLAN_DEVICE: &str = "vxlan.calico";
pub const VXLAN_VNI: u32 = 4096;
pub const VXLAN_PORT: u16 = 4789;
/// The pod MTU Calico sets in VXLAN mode (1500 − 50).
pub const VXLAN_POD_MTU: u32 = 1450;

#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub underlay_ip: Ipv4Addr,
    /// This node's pod block (Calico IPAM /26).
    pub block: (Ipv4Addr, u8),
    pub pods: Vec<Ipv4Addr>,
    /// This node runs no fastpath: proxy_arp on its pods' interfaces and its FORWARD chain open,
    /// whatever the cluster's settings (a node of a cluster fastpath is being rolled out to).
    pub kernel_only: bool,
}

/// How a node routes to another node's pod block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteVia {
    /// `via NODE dev eth0`: plain routing over the underlay (what the kernel alone can carry here).
    Underlay,
    /// `via NODE dev tunl0 onlink`, as Calico's BIRD installs it in IPIP mode. This kernel has no
    /// ipip module, so `tunl0` is a veth to nowhere: only fastpath can carry these packets.
    Tunl0,
    /// `via TUNNEL_ADDRESS dev vxlan.calico onlink` with the neighbour and FDB entries, as Felix
    /// programs VXLAN mode: a real kernel VXLAN path.
    Vxlan,
    /// Calico's VXLANCrossSubnet: VXLAN to nodes in other subnets, plain `via NODE dev eth0` to
    /// nodes in the same one.
    VxlanCrossSubnet,
}

impl RemoteVia {
    pub fn is_vxlan(self) -> bool {
        matches!(self, RemoteVia::Vxlan | RemoteVia::VxlanCrossSubnet)
    }
}

/// Where the nodes' block routes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteSource {
    /// `ip route` commands, as the test bed writes them.
    Static,
    /// BIRD 2 on every node, as Calico runs it ([`crate::bird`]): routes via the owning node on
    /// eth0, `proto bird`.
    Bird,
}

#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub nodes: Vec<NodeSpec>,
    /// MTU of pod interfaces (1480 with IPIP, as Calico sets it).
    pub pod_mtu: u32,
    pub remote_via: RemoteVia,
    /// proxy_arp on the `cali…` interfaces: on for the kernel's own path, off for fastpath.
    pub proxy_arp: bool,
    /// Whether the kernel may forward at all. Off means `iptables -P FORWARD DROP` (forwarding
    /// itself stays enabled), so pod traffic that arrives proves fastpath carried it.
    pub kernel_forwarding: bool,
    pub routes: RouteSource,
    /// Dual stack: an IPv6 address beside every IPv4 one, Calico's IPv6 layout on every pod and
    /// node. `None` (the default): IPv4 only.
    pub ipv6: Option<Ipv6Layout>,
}

impl ClusterSpec {
    /// The seed write-ups' cluster: pod 10.244.40.36 on node 10.101.14.50 and pod
    /// 10.244.166.150 on node 10.101.14.51.
    pub fn seed() -> Self {
        Self {
            nodes: vec![
                NodeSpec {
                    underlay_ip: Ipv4Addr::new(10, 101, 14, 50),
                    block: (Ipv4Addr::new(10, 244, 40, 0), 26),
                    pods: vec![Ipv4Addr::new(10, 244, 40, 36)],
                    kernel_only: false,
                },
                NodeSpec {
                    underlay_ip: Ipv4Addr::new(10, 101, 14, 51),
                    block: (Ipv4Addr::new(10, 244, 166, 128), 26),
                    pods: vec![Ipv4Addr::new(10, 244, 166, 150)],
                    kernel_only: false,
                },
            ],
            pod_mtu: 1480,
            remote_via: RemoteVia::Underlay,
            proxy_arp: false,
            kernel_forwarding: true,
            routes: RouteSource::Static,
            ipv6: None,
        }
    }

    /// The seed cluster as fastpath must carry it alone: IPIP routes via tunl0, proxy_arp off,
    /// the kernel's FORWARD chain closed.
    pub fn seed_fastpath_only() -> Self {
        Self { remote_via: RemoteVia::Tunl0, kernel_forwarding: false, ..Self::seed() }
    }

    /// `nodes` nodes (10.101.14.50, .51, …) with `pods` pods each, in blocks 10.244.N.0/26.
    pub fn grid(nodes: u8, pods: u8) -> Self {
        let nodes = (0..nodes)
            .map(|n| NodeSpec {
                underlay_ip: Ipv4Addr::new(10, 101, 14, 50 + n),
                block: (Ipv4Addr::new(10, 244, 10 + n, 0), 26),
                pods: (0..pods).map(|p| Ipv4Addr::new(10, 244, 10 + n, 2 + p)).collect(),
                kernel_only: false,
            })
            .collect();
        Self { nodes, ..Self::seed_fastpath_only() }
    }

    /// `self` in Calico's VXLAN mode: Felix's `vxlan.calico` on every node, blocks routed
    /// through it, pod MTU 1450.
    pub fn with_vxlan(self) -> Self {
        Self { remote_via: RemoteVia::Vxlan, pod_mtu: VXLAN_POD_MTU, ..self }
    }

    /// The seed cluster in VXLAN mode as fastpath must carry it alone: proxy_arp off, FORWARD
    /// closed (the kernel's vxlan.calico is there, but the kernel may not forward a pod's packet).
    pub fn seed_vxlan_fastpath_only() -> Self {
        Self { kernel_forwarding: false, ..Self::seed().with_vxlan() }
    }

    /// The seed cluster in VXLAN mode while fastpath is rolled out: the first node for fastpath
    /// (FORWARD closed, proxy_arp off), the second the kernel's alone.
    pub fn seed_vxlan_mixed() -> Self {
        let mut spec = Self::seed_vxlan_fastpath_only();
        spec.nodes[1].kernel_only = true;
        spec
    }

    /// Calico's VXLANCrossSubnet over `self`'s nodes, with the last one moved across a router
    /// (10.101.15.50 in 10.101.15.48/28): plain to the node in the same subnet, VXLAN to it.
    pub fn vxlan_cross_subnet(self) -> Self {
        let mut spec = Self { remote_via: RemoteVia::VxlanCrossSubnet, pod_mtu: VXLAN_POD_MTU, ..self };
        if let Some(last) = spec.nodes.last_mut() {
            last.underlay_ip = Ipv4Addr::new(10, 101, 15, 50);
        }
        spec
    }

    /// `self` in dual stack, IPv6 crossing nodes as Calico would beside `self`'s IPv4: in
    /// `vxlan-v6.calico` when IPv4 uses VXLAN (pod MTU 1430 then, IPv6 VXLAN's), plainly
    /// otherwise (Calico has no IPv6 IPIP). IPv6 block routes are static even with BIRD.
    pub fn dual_stack(self) -> Self {
        let via = match self.remote_via {
            RemoteVia::Underlay | RemoteVia::Tunl0 => RemoteVia6::Underlay,
            RemoteVia::Vxlan => RemoteVia6::Vxlan,
            RemoteVia::VxlanCrossSubnet => RemoteVia6::VxlanCrossSubnet,
        };
        self.with_ipv6(Ipv6Layout::new(via))
    }

    /// `self` as it carries `family`: IPv4 only as it is, or in dual stack for IPv6
    /// ([`Self::dual_stack`]).
    pub fn with_family(self, family: Family) -> Self {
        match family {
            Family::Ipv4 => self,
            Family::Ipv6 => self.dual_stack(),
        }
    }

    /// `self` in dual stack with IPv6 laid out as `layout` says (pod MTU lowered to IPv6
    /// VXLAN's when it uses VXLAN).
    pub fn with_ipv6(self, layout: Ipv6Layout) -> Self {
        let pod_mtu = match layout.remote_via {
            RemoteVia6::Underlay => self.pod_mtu,
            RemoteVia6::Vxlan | RemoteVia6::VxlanCrossSubnet => self.pod_mtu.min(dual_stack::VXLAN6_POD_MTU),
        };
        Self { ipv6: Some(layout), pod_mtu, ..self }
    }

    /// `self` with its block routes from BIRD instead (over the underlay, so remote blocks are
    /// routed via eth0; the kernel's FORWARD policy is kept).
    pub fn with_bird(self) -> Self {
        Self { routes: RouteSource::Bird, remote_via: RemoteVia::Underlay, ..self }
    }
}

#[derive(Debug)]
pub struct Pod {
    pub ns: Netns,
    pub ip: Ipv4Addr,
    /// The host end of the pod's veth, in the node's namespace.
    pub host_iface: String,
    /// Its IPv6 address, in a dual-stack cluster.
    pub ip6: Option<std::net::Ipv6Addr>,
}

impl Pod {
    /// Its address of `family`, if it has one.
    pub fn address(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::Ipv4 => Some(IpAddr::V4(self.ip)),
            Family::Ipv6 => self.ip6.map(IpAddr::V6),
        }
    }
}

/// A node's `vxlan.calico`: its MAC and its tunnel address (the first of its block, as Calico's
/// IPAM hands it out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vtep {
    pub mac: [u8; 6],
    pub tunnel_ip: Ipv4Addr,
}

impl Vtep {
    /// The node's VTEP: a locally administered MAC made of its address.
    pub fn of(underlay_ip: Ipv4Addr, block: (Ipv4Addr, u8)) -> Self {
        let [a, b, c, d] = underlay_ip.octets();
        Self { mac: [0x66, 0, a, b, c, d], tunnel_ip: block.0 }
    }

    pub fn mac_string(&self) -> String {
        self.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
    }
}

#[derive(Debug)]
pub struct Node {
    // Pods are declared before the node's namespace so they are dropped (deleted) first.
    pub pods: Vec<Pod>,
    pub ns: Netns,
    pub underlay_ip: Ipv4Addr,
    pub block: (Ipv4Addr, u8),
    /// Its `vxlan.calico`, in VXLAN mode.
    pub vtep: Option<Vtep>,
    pub kernel_only: bool,
    /// Its IPv6 half, in a dual-stack cluster.
    pub ipv6: Option<NodeIpv6>,
}

/// The /28 an underlay address lies in, and its router (`.62` of 10.101.14.48/28).
fn subnet_of(addr: Ipv4Addr) -> (Ipv4Addr, Ipv4Addr) {
    let mask = u32::MAX << (32 - u32::from(UNDERLAY_PREFIX_LEN));
    let network = u32::from(addr) & mask;
    (Ipv4Addr::from(network), Ipv4Addr::from(network + 14))
}

pub struct Cluster {
    /// Each node's BIRD, when the routes come from BIRD: stopped before the namespaces go.
    birds: Vec<Option<Bird>>,
    pub tag: String,
    pub nodes: Vec<Node>,
    pub switch: Netns,
    spec: ClusterSpec,
}

impl Cluster {
    /// Build every namespace, link, address and route of `spec`. Names start with a prefix
    /// unique to this call, so clusters of parallel tests never meet.
    pub fn build(tag: &str, spec: &ClusterSpec) -> Result<Self> {
        let tag = names::unique(tag);
        let switch = Netns::new(format!("{tag}-sw"))?;
        let mut cluster = Self { birds: Vec::new(), tag, nodes: Vec::new(), switch, spec: spec.clone() };
        cluster.add_subnets()?;
        for (i, node) in spec.nodes.iter().enumerate() {
            cluster.add_node(i, node).with_context(|| format!("building node {}", node.underlay_ip))?;
        }
        for i in 0..spec.nodes.len() {
            if spec.routes == RouteSource::Static {
                cluster.route_remote_blocks(i)?;
            }
            if spec.remote_via.is_vxlan() {
                cluster.add_vxlan_neighbours(i)?;
            }
            cluster.route_remote_blocks6(i)?;
            for ip in &spec.nodes[i].pods {
                cluster.add_pod(i, *ip)?;
            }
        }
        if spec.ipv6.is_some() {
            for node in &cluster.nodes {
                dual_stack::wait_addresses_usable(&node.ns.name)?;
            }
        }
        if spec.routes == RouteSource::Bird {
            for i in 0..spec.nodes.len() {
                cluster.start_bird(i)?;
            }
            for i in 0..spec.nodes.len() {
                cluster.wait_bird_routes(i, spec.nodes.len(), Duration::from_secs(15))?;
            }
        }
        Ok(cluster)
    }

    /// Start BIRD on node `index` (routes from BIRD only).
    pub fn start_bird(&mut self, index: usize) -> Result<()> {
        let node = &self.nodes[index];
        let peers: Vec<Ipv4Addr> =
            self.nodes.iter().filter(|n| n.underlay_ip != node.underlay_ip).map(|n| n.underlay_ip).collect();
        let bird = Bird::start(&node.ns.name, node.underlay_ip, node.block, &peers)?;
        self.birds.resize_with(self.nodes.len(), || None);
        self.birds[index] = Some(bird);
        Ok(())
    }

    /// Stop BIRD on node `index` with SIGTERM: its peers withdraw its block.
    pub fn stop_bird(&mut self, index: usize) -> Result<()> {
        match self.birds.get_mut(index).and_then(Option::take) {
            Some(mut bird) => bird.stop(),
            None => Ok(()),
        }
    }

    /// The `proto bird` routes in node `index`'s kernel, as `ip route` prints them.
    pub fn bird_routes(&self, index: usize) -> Result<Vec<String>> {
        let out = cmd::ip(&self.nodes[index].ns.name, &["route", "show", "proto", "bird"])?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// Wait until node `index` has `count` `proto bird` routes (its blackhole and one per other
    /// node's block).
    pub fn wait_bird_routes(&self, index: usize, count: usize, timeout: Duration) -> Result<Duration> {
        match wait::until(timeout, || (self.bird_routes(index).ok()?.len() == count).then_some(())) {
            Some(((), took)) => Ok(took),
            None => anyhow::bail!(
                "node {index} has {:?} from BIRD, not {count} routes, after {timeout:?}",
                self.bird_routes(index)
            ),
        }
    }

    /// The underlay subnets: one bridge each in the switch namespace. With more than one, the
    /// switch routes between them as each subnet's `.62`.
    fn subnets(&self) -> Vec<Ipv4Addr> {
        let mut subnets: Vec<Ipv4Addr> = Vec::new();
        for node in &self.spec.nodes {
            let (network, _) = subnet_of(node.underlay_ip);
            if !subnets.contains(&network) {
                subnets.push(network);
            }
        }
        subnets
    }

    fn add_subnets(&self) -> Result<()> {
        let subnets = self.subnets();
        for (i, network) in subnets.iter().enumerate() {
            let bridge = format!("br{i}");
            cmd::ip(&self.switch.name, &["link", "add", &bridge, "type", "bridge"])?;
            cmd::ip(&self.switch.name, &["link", "set", &bridge, "up"])?;
            if subnets.len() > 1 {
                let (_, router) = subnet_of(*network);
                let address = format!("{router}/{UNDERLAY_PREFIX_LEN}");
                cmd::ip(&self.switch.name, &["addr", "add", &address, "dev", &bridge])?;
            }
        }
        if subnets.len() > 1 {
            cmd::sysctl(&self.switch.name, "net.ipv4.ip_forward", "1")?;
            if let Some(layout) = &self.spec.ipv6 {
                let routers: Vec<_> =
                    subnets.iter().enumerate().map(|(i, n)| (format!("br{i}"), subnet_of(*n).1)).collect();
                dual_stack::add_subnets(&self.switch.name, layout, &routers)?;
            }
        }
        Ok(())
    }

    fn add_node(&mut self, index: usize, spec: &NodeSpec) -> Result<()> {
        let ns = Netns::new(format!("{}-n{}", self.tag, index + 1))?;
        let port = format!("n{}", index + 1);
        let (network, router) = subnet_of(spec.underlay_ip);
        let bridge = format!("br{}", self.subnets().iter().position(|n| *n == network).unwrap_or(0));
        cmd::ip(
            &self.switch.name,
            &["link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name],
        )?;
        cmd::ip(&self.switch.name, &["link", "set", &port, "master", &bridge, "up"])?;
        let address = format!("{}/{UNDERLAY_PREFIX_LEN}", spec.underlay_ip);
        cmd::ip(&ns.name, &["addr", "add", &address, "dev", "eth0"])?;
        cmd::ip(&ns.name, &["link", "set", "eth0", "up"])?;
        cmd::ip(&ns.name, &["route", "add", "default", "via", &router.to_string(), "dev", "eth0"])?;
        if self.spec.routes == RouteSource::Static {
            let block = format!("{}/{}", spec.block.0, spec.block.1);
            cmd::ip(&ns.name, &["route", "add", "blackhole", &block])?;
        }
        cmd::sysctl(&ns.name, "net.ipv4.ip_forward", "1")?;
        if !self.spec.kernel_forwarding && !spec.kernel_only {
            cmd::in_ns_ok(&ns.name, "iptables", &["-P", "FORWARD", "DROP"])?;
        }
        if self.spec.remote_via == RemoteVia::Tunl0 {
            cmd::ip(
                &ns.name,
                &["link", "add", "tunl0", "mtu", "1480", "type", "veth", "peer", "name", "tunl0-void"],
            )?;
            cmd::ip(&ns.name, &["link", "set", "tunl0-void", "up"])?;
            cmd::ip(&ns.name, &["link", "set", "tunl0", "up"])?;
        }
        let vtep = self.spec.remote_via.is_vxlan().then(|| Vtep::of(spec.underlay_ip, spec.block));
        if let Some(vtep) = vtep {
            add_vxlan_device(&ns.name, spec.underlay_ip, vtep)?;
        }
        let ipv6 = match &self.spec.ipv6 {
            Some(layout) => Some(dual_stack::add_node(
                &ns.name,
                layout,
                spec.underlay_ip,
                router,
                spec.block,
                self.spec.routes == RouteSource::Static,
                !self.spec.kernel_forwarding && !spec.kernel_only,
            )?),
            None => None,
        };
        self.nodes.push(Node {
            pods: Vec::new(),
            ns,
            underlay_ip: spec.underlay_ip,
            block: spec.block,
            vtep,
            kernel_only: spec.kernel_only,
            ipv6,
        });
        Ok(())
    }

    /// Felix's layer-2 entries on node `index` for every other node: a permanent neighbour
    /// entry for its tunnel address and a permanent FDB entry to its address.
    fn add_vxlan_neighbours(&self, index: usize) -> Result<()> {
        let ns = &self.nodes[index].ns.name;
        for (j, peer) in self.nodes.iter().enumerate() {
            let Some(vtep) = peer.vtep.filter(|_| j != index) else { continue };
            let (tunnel, mac, node) =
                (vtep.tunnel_ip.to_string(), vtep.mac_string(), peer.underlay_ip.to_string());
            cmd::ip(ns, &["neigh", "add", &tunnel, "lladdr", &mac, "dev", VXLAN_DEVICE, "nud", "permanent"])?;
            cmd::in_ns_ok(
                ns,
                "bridge",
                &["fdb", "add", &mac, "dev", VXLAN_DEVICE, "dst", &node, "self", "permanent"],
            )?;
        }
        Ok(())
    }

    /// Routes to every other node's block via that node, as BIRD installs them.
    fn route_remote_blocks(&self, index: usize) -> Result<()> {
        for (j, peer) in self.nodes.iter().enumerate() {
            if j != index {
                self.route_block(index, peer.block, peer.underlay_ip)?;
            }
        }
        Ok(())
    }

    /// In a dual-stack cluster, node `index`'s IPv6 routes (and VXLAN entries) to every other
    /// node's IPv6 block.
    fn route_remote_blocks6(&self, index: usize) -> Result<()> {
        let (Some(layout), Some(_)) = (&self.spec.ipv6, self.nodes[index].ipv6) else { return Ok(()) };
        let own_subnet = subnet_of(self.nodes[index].underlay_ip).0;
        for (j, peer) in self.nodes.iter().enumerate() {
            let Some(peer6) = peer.ipv6.filter(|_| j != index) else { continue };
            let peer_subnet = subnet_of(peer.underlay_ip).0;
            dual_stack::route_remote_block(
                &self.nodes[index].ns.name,
                layout,
                own_subnet,
                &peer6,
                peer_subnet,
            )?;
        }
        Ok(())
    }

    /// `ip route add BLOCK via NODE dev …` on node `index`, the way this cluster routes blocks.
    pub fn route_block(&self, index: usize, block: (Ipv4Addr, u8), via: Ipv4Addr) -> Result<()> {
        self.ip_route(index, "add", block, via)
    }

    /// `ip route del BLOCK via NODE dev …` on node `index`.
    pub fn unroute_block(&self, index: usize, block: (Ipv4Addr, u8), via: Ipv4Addr) -> Result<()> {
        self.ip_route(index, "del", block, via)
    }

    fn ip_route(&self, index: usize, verb: &str, block: (Ipv4Addr, u8), via: Ipv4Addr) -> Result<()> {
        let same_subnet = subnet_of(via).0 == subnet_of(self.nodes[index].underlay_ip).0;
        // VXLAN routes go via the other node's tunnel address.
        let tunnel =
            self.nodes.iter().find(|n| n.underlay_ip == via).and_then(|n| n.vtep).map(|v| v.tunnel_ip);
        let block = format!("{}/{}", block.0, block.1);
        let (gateway, device): (Ipv4Addr, &[&str]) = match self.spec.remote_via {
            RemoteVia::Underlay => (via, &["eth0"]),
            RemoteVia::Tunl0 => (via, &["tunl0", "onlink"]),
            RemoteVia::VxlanCrossSubnet if same_subnet => (via, &["eth0"]),
            RemoteVia::Vxlan | RemoteVia::VxlanCrossSubnet => {
                (tunnel.context("no VTEP for that node")?, &[VXLAN_DEVICE, "onlink"])
            }
        };
        let gateway = gateway.to_string();
        let mut args = vec!["route", verb, &block, "via", &gateway, "dev"];
        args.extend_from_slice(device);
        cmd::ip(&self.nodes[index].ns.name, &args).map(drop)
    }

    /// Create a pod on node `node_index` as the CNI plugin would, while anything may be running.
    pub fn add_pod(&mut self, node_index: usize, ip: Ipv4Addr) -> Result<&Pod> {
        self.add_pod_with_mtu(node_index, ip, self.spec.pod_mtu)
    }

    /// As [`Self::add_pod`], with an MTU of its own (both ends of its veth).
    pub fn add_pod_with_mtu(&mut self, node_index: usize, ip: Ipv4Addr, mtu: u32) -> Result<&Pod> {
        let proxy_arp = if self.spec.proxy_arp || self.nodes[node_index].kernel_only { "1" } else { "0" };
        let mtu = mtu.to_string();
        let ip6 = self.spec.ipv6.map(|layout| layout.pod(ip));
        let node = &mut self.nodes[node_index];
        let ns = Netns::new(format!("{}-n{}p{}", self.tag, node_index + 1, node.pods.len()))?;
        let host_iface = names::cali_name(&ns.name);
        let (n, p) = (node.ns.name.as_str(), ns.name.as_str());
        // The pod side first (named eth0 in the pod); the host side comes up last, already
        // configured, as Calico's CNI plugin does.
        cmd::ip(
            n,
            &[
                "link",
                "add",
                &host_iface,
                "mtu",
                &mtu,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "mtu",
                &mtu,
                "netns",
                p,
            ],
        )?;
        if ip6.is_some() {
            dual_stack::prepare_pod(p)?;
        }
        cmd::ip(p, &["addr", "add", &format!("{ip}/32"), "dev", "eth0"])?;
        cmd::ip(p, &["link", "set", "eth0", "up"])?;
        if let Some(ip6) = ip6 {
            dual_stack::address_pod(p, ip6)?;
        }
        cmd::ip(p, &["route", "add", POD_GATEWAY, "dev", "eth0", "scope", "link"])?;
        cmd::ip(p, &["route", "add", "default", "via", POD_GATEWAY, "dev", "eth0"])?;
        cmd::ip(n, &["link", "set", &host_iface, "address", "ee:ee:ee:ee:ee:ee"])?;
        cmd::sysctl(n, &format!("net.ipv4.conf.{host_iface}.proxy_arp"), proxy_arp)?;
        if ip6.is_some() {
            dual_stack::prepare_host_end(n, &host_iface)?;
        }
        cmd::ip(n, &["link", "set", &host_iface, "up"])?;
        cmd::ip(n, &["route", "add", &ip.to_string(), "dev", &host_iface, "scope", "link"])?;
        if let Some(ip6) = ip6 {
            dual_stack::route_to_pod(n, &host_iface, ip6)?;
        }
        node.pods.push(Pod { ns, ip, host_iface, ip6 });
        Ok(node.pods.last().expect("just pushed"))
    }

    /// Delete the pod with address `ip` as the CNI plugin does: its host-side veth first (at once,
    /// with its route), then its namespace.
    pub fn remove_pod(&mut self, ip: Ipv4Addr) -> Result<()> {
        let node =
            self.nodes.iter_mut().find(|n| n.pods.iter().any(|p| p.ip == ip)).context("no such pod")?;
        let index = node.pods.iter().position(|p| p.ip == ip).context("no such pod")?;
        let pod = node.pods.remove(index);
        cmd::ip(&node.ns.name, &["link", "del", &pod.host_iface])?;
        drop(pod);
        Ok(())
    }

    /// Calico's first FORWARD rule on every node: established connections accepted before any
    /// policy. With it conntrack tracks in the node's namespace (it tracks only where a rule or NAT
    /// asks it to), as on every node that runs kube-proxy or Calico: what `--trust kernel` judges by.
    pub fn accept_established(&self) -> Result<()> {
        for node in &self.nodes {
            cmd::in_ns_ok(
                &node.ns.name,
                "iptables",
                &["-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
            )?;
        }
        Ok(())
    }

    /// kube-proxy's DNAT on node `node`, as its iptables mode renders a ClusterIP: TCP to
    /// `service`:80 is sent to `backend`.
    pub fn expose_service(
        &self,
        node: usize,
        service: Ipv4Addr,
        backend: std::net::SocketAddr,
    ) -> Result<()> {
        let (service, backend) = (service.to_string(), backend.to_string());
        let rule =
            ["-t", "nat", "-A", "PREROUTING", "-d", &service, "-p", "tcp", "--dport", "80", "-j", "DNAT"];
        cmd::in_ns_ok(
            &self.nodes[node].ns.name,
            "iptables",
            &[&rule[..], &["--to-destination", &backend]].concat(),
        )?;
        Ok(())
    }

    pub fn pod(&self, ip: Ipv4Addr) -> Option<&Pod> {
        self.nodes.iter().flat_map(|n| &n.pods).find(|p| p.ip == ip)
    }

    /// Every pod with the index of its node.
    pub fn pods(&self) -> impl Iterator<Item = (usize, &Pod)> {
        self.nodes.iter().enumerate().flat_map(|(i, n)| n.pods.iter().map(move |p| (i, p)))
    }
}

/// Felix's `vxlan.calico` in node namespace `ns`: VNI 4096, port 4789, `local` the node's
/// address over eth0, no learning, MTU underlay − 50, the VTEP's MAC and tunnel address.
fn add_vxlan_device(ns: &str, underlay_ip: Ipv4Addr, vtep: Vtep) -> Result<()> {
    let (vni, port, local) = (VXLAN_VNI.to_string(), VXLAN_PORT.to_string(), underlay_ip.to_string());
    cmd::ip(
        ns,
        &[
            "link",
            "add",
            VXLAN_DEVICE,
            "type",
            "vxlan",
            "id",
            &vni,
            "dstport",
            &port,
            "local",
            &local,
            "dev",
            "eth0",
            "nolearning",
        ],
    )?;
    let mtu = (1500 - 50).to_string();
    cmd::ip(ns, &["link", "set", VXLAN_DEVICE, "address", &vtep.mac_string(), "mtu", &mtu])?;
    cmd::ip(ns, &["link", "set", VXLAN_DEVICE, "up"])?;
    cmd::ip(ns, &["addr", "add", &format!("{}/32", vtep.tunnel_ip), "dev", VXLAN_DEVICE])?;
    Ok(())
}
