//! A Calico-shaped cluster built from network namespaces.
//!
//! One "switch" namespace holds a bridge: the underlay. Each node is a namespace with `eth0` on
//! that bridge, forwarding on, a blackhole route for its own pod block and a route per remote
//! block via the owning node. Each pod is a namespace whose `eth0` is one end of a veth; the other
//! end, `cali…` with MAC ee:ee:ee:ee:ee:ee, sits in the node with a /32 route to the pod. The pod
//! has the address as a /32 and a default route via 169.254.1.1, exactly as Calico sets it up.
//! proxy_arp is off on every `cali…`: only fastpath answers the pod's ARP.

use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};

use crate::{cmd, names, Netns};

/// The gateway every pod routes through; nobody owns it.
pub const POD_GATEWAY: &str = "169.254.1.1";
/// The underlay subnet of the seed's nodes (10.101.14.48/28) and its prefix length.
pub const UNDERLAY_PREFIX_LEN: u8 = 28;
/// The underlay's default gateway in the seed (it need not exist for our tests).
pub const UNDERLAY_GATEWAY: &str = "10.101.14.62";

#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub underlay_ip: Ipv4Addr,
    /// This node's pod block (Calico IPAM /26).
    pub block: (Ipv4Addr, u8),
    pub pods: Vec<Ipv4Addr>,
}

#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub nodes: Vec<NodeSpec>,
    /// MTU of pod interfaces (1480 with IPIP, as Calico sets it).
    pub pod_mtu: u32,
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
                },
                NodeSpec {
                    underlay_ip: Ipv4Addr::new(10, 101, 14, 51),
                    block: (Ipv4Addr::new(10, 244, 166, 128), 26),
                    pods: vec![Ipv4Addr::new(10, 244, 166, 150)],
                },
            ],
            pod_mtu: 1480,
        }
    }
}

#[derive(Debug)]
pub struct Pod {
    pub ns: Netns,
    pub ip: Ipv4Addr,
    /// The host end of the pod's veth, in the node's namespace.
    pub host_iface: String,
}

#[derive(Debug)]
pub struct Node {
    // Pods are declared before the node's namespace so they are dropped (deleted) first.
    pub pods: Vec<Pod>,
    pub ns: Netns,
    pub underlay_ip: Ipv4Addr,
    pub block: (Ipv4Addr, u8),
}

#[derive(Debug)]
pub struct Cluster {
    pub tag: String,
    pub nodes: Vec<Node>,
    pub switch: Netns,
    pod_mtu: u32,
}

impl Cluster {
    /// Build every namespace, link, address and route of `spec`. Names start with a prefix
    /// unique to this call, so clusters of parallel tests never meet.
    pub fn build(tag: &str, spec: &ClusterSpec) -> Result<Self> {
        let tag = names::unique(tag);
        let switch = Netns::new(format!("{tag}-sw"))?;
        cmd::ip(&switch.name, &["link", "add", "br0", "type", "bridge"])?;
        cmd::ip(&switch.name, &["link", "set", "br0", "up"])?;
        let mut cluster = Self {
            tag,
            nodes: Vec::new(),
            switch,
            pod_mtu: spec.pod_mtu,
        };
        for (i, node) in spec.nodes.iter().enumerate() {
            cluster
                .add_node(i, node)
                .with_context(|| format!("building node {}", node.underlay_ip))?;
        }
        for i in 0..spec.nodes.len() {
            cluster.route_remote_blocks(i)?;
            for ip in &spec.nodes[i].pods {
                cluster.add_pod(i, *ip)?;
            }
        }
        Ok(cluster)
    }

    fn add_node(&mut self, index: usize, spec: &NodeSpec) -> Result<()> {
        let ns = Netns::new(format!("{}-n{}", self.tag, index + 1))?;
        let port = format!("n{}", index + 1);
        cmd::ip(
            &self.switch.name,
            &[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
            ],
        )?;
        cmd::ip(
            &self.switch.name,
            &["link", "set", &port, "master", "br0", "up"],
        )?;
        let address = format!("{}/{UNDERLAY_PREFIX_LEN}", spec.underlay_ip);
        cmd::ip(&ns.name, &["addr", "add", &address, "dev", "eth0"])?;
        cmd::ip(&ns.name, &["link", "set", "eth0", "up"])?;
        cmd::ip(
            &ns.name,
            &[
                "route",
                "add",
                "default",
                "via",
                UNDERLAY_GATEWAY,
                "dev",
                "eth0",
            ],
        )?;
        let block = format!("{}/{}", spec.block.0, spec.block.1);
        cmd::ip(&ns.name, &["route", "add", "blackhole", &block])?;
        cmd::sysctl(&ns.name, "net.ipv4.ip_forward", "1")?;
        self.nodes.push(Node {
            pods: Vec::new(),
            ns,
            underlay_ip: spec.underlay_ip,
            block: spec.block,
        });
        Ok(())
    }

    /// Routes to every other node's block via that node, as BIRD installs them (without IPIP:
    /// this kernel has no tunl0).
    fn route_remote_blocks(&self, index: usize) -> Result<()> {
        let node = &self.nodes[index];
        for (j, peer) in self.nodes.iter().enumerate() {
            if j != index {
                let block = format!("{}/{}", peer.block.0, peer.block.1);
                let via = peer.underlay_ip.to_string();
                cmd::ip(
                    &node.ns.name,
                    &["route", "add", &block, "via", &via, "dev", "eth0"],
                )?;
            }
        }
        Ok(())
    }

    /// Create a pod on node `node_index` as the CNI plugin would, while anything may be running.
    pub fn add_pod(&mut self, node_index: usize, ip: Ipv4Addr) -> Result<&Pod> {
        let mtu = self.pod_mtu.to_string();
        let node = &mut self.nodes[node_index];
        let ns = Netns::new(format!(
            "{}-n{}p{}",
            self.tag,
            node_index + 1,
            node.pods.len()
        ))?;
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
        cmd::ip(p, &["addr", "add", &format!("{ip}/32"), "dev", "eth0"])?;
        cmd::ip(p, &["link", "set", "eth0", "up"])?;
        cmd::ip(
            p,
            &["route", "add", POD_GATEWAY, "dev", "eth0", "scope", "link"],
        )?;
        cmd::ip(
            p,
            &["route", "add", "default", "via", POD_GATEWAY, "dev", "eth0"],
        )?;
        cmd::ip(
            n,
            &["link", "set", &host_iface, "address", "ee:ee:ee:ee:ee:ee"],
        )?;
        cmd::sysctl(n, &format!("net.ipv4.conf.{host_iface}.proxy_arp"), "0")?;
        cmd::ip(n, &["link", "set", &host_iface, "up"])?;
        cmd::ip(
            n,
            &[
                "route",
                "add",
                &ip.to_string(),
                "dev",
                &host_iface,
                "scope",
                "link",
            ],
        )?;
        node.pods.push(Pod { ns, ip, host_iface });
        Ok(node.pods.last().expect("just pushed"))
    }

    pub fn pod(&self, ip: Ipv4Addr) -> Option<&Pod> {
        self.nodes.iter().flat_map(|n| &n.pods).find(|p| p.ip == ip)
    }
}
