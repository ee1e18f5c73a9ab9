//! The kernel's state, taken whole: links, the node's underlay and every IPv4 route, with the
//! pods' MACs asked for. The daemon takes one at start and again at each resync; `fastpath
//! verify` takes one to compare the maps with.

use crate::{
    daemon::{
        kernel::{KernelState, PeerQuery},
        netlink::{LinkState, Netlink},
        node::{self, Node},
    },
    Error,
};

pub struct Picture {
    pub links: Vec<LinkState>,
    pub node: Node,
    pub kernel: KernelState,
}

/// Dump links, addresses and routes through `netlink` and learn the pods' MACs.
pub async fn take(netlink: &Netlink, underlay: Option<&str>, pod_prefix: &str) -> Result<Picture, Error> {
    let links = netlink.links().await?;
    let addresses = netlink.ipv4_addresses().await?;
    let routes = netlink.ipv4_routes().await?;
    let node = node::choose(underlay, &links, &addresses, &routes)?;
    let mut kernel = KernelState::new(&links, routes);
    for query in KernelState::peer_queries(&links, pod_prefix) {
        learn_peer_mac(netlink, &mut kernel, query).await;
    }
    Ok(Picture { links, node, kernel })
}

/// Ask for a pod's MAC (the other end of its veth). Until it is known, its route stays with the
/// kernel.
pub async fn learn_peer_mac(netlink: &Netlink, kernel: &mut KernelState, query: PeerQuery) {
    match netlink.peer_mac(query.netnsid, query.peer_index).await {
        Ok(mac) => kernel.set_peer_mac(query.ifindex, mac),
        Err(e) => log::warn!(
            "pod MAC behind ifindex {} unknown, the kernel routes to it: {}",
            query.ifindex,
            e.chain()
        ),
    }
}
