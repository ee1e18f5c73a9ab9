//! The sizes of the maps the daemon sizes from its flags.

use fastpath_common::maps::{
    MapLayout, ENDPOINTS, ENDPOINTS6, ENDPOINTS_MAX, FLOWS, FLOWS6, FLOWS_DEFAULT_MAX, ROUTES, ROUTES_MAX,
    TUNNEL_PEERS, TUNNEL_PEERS6, TUNNEL_PEERS_MAX,
};

/// How many entries the maps the daemon sizes hold (`--route-capacity`, `--endpoint-capacity`,
/// `--peer-capacity`, `--flow-table-size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    pub routes: u32,
    pub endpoints: u32,
    pub peers: u32,
    pub flows: u32,
}

impl Default for Capacities {
    fn default() -> Self {
        Self {
            routes: ROUTES_MAX,
            endpoints: ENDPOINTS_MAX,
            peers: TUNNEL_PEERS_MAX,
            flows: FLOWS_DEFAULT_MAX,
        }
    }
}

impl Capacities {
    /// Each sized map's name and size. A pod's IPv6 address takes the room its IPv4 one does,
    /// a node's IPv6 address the room of its IPv4 one, and an IPv6 flow the room of an IPv4 one.
    pub fn sizes(&self) -> [(&'static str, u32); 7] {
        [
            (ROUTES, self.routes),
            (ENDPOINTS, self.endpoints),
            (ENDPOINTS6, self.endpoints),
            (TUNNEL_PEERS, self.peers),
            (TUNNEL_PEERS6, self.peers),
            (FLOWS, self.flows),
            (FLOWS6, self.flows),
        ]
    }

    /// `layout` with its size as these capacities say.
    pub fn layout(&self, layout: &MapLayout) -> MapLayout {
        match self.sizes().iter().find(|(name, _)| *name == layout.name) {
            Some((_, max_entries)) => MapLayout { max_entries: *max_entries, ..*layout },
            None => *layout,
        }
    }
}
