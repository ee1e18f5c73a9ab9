//! Map names, value layouts and the pin layout shared by the programs, the daemon and the CLI.

/// Per-CPU counters, indexed by [`crate::Reason`]: one [`Counter`] per reason per CPU.
pub const COUNTERS: &str = "FP_COUNTERS";

/// LPM trie: IPv4 prefix → [`crate::route::RouteValue`]. The key is aya's `lpm_trie::Key<[u8; 4]>`:
/// `prefix_len: u32` then the address in network order, as the kernel wants it.
pub const ROUTES: &str = "FP_ROUTES";

/// One-slot array: this node's [`NodeConfig`].
pub const NODE: &str = "FP_NODE";

/// Hash: node IPv4 (`[u8; 4]`) → 1, the nodes whose IPIP this node accepts.
pub const TUNNEL_PEERS: &str = "FP_PEERS";

/// Room in the route trie (Calico: one /32 per local pod plus one block per node).
pub const ROUTES_MAX: u32 = 262_144;
/// Room in the peer table (nodes in the cluster).
pub const TUNNEL_PEERS_MAX: u32 = 16_384;

/// The default folder the daemon pins its maps in.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/fastpath";

/// Maps the daemon pins in its folder, by file name (the map name, as bpftool shows it).
pub const PINNED_MAPS: [&str; 4] = [COUNTERS, ROUTES, NODE, TUNNEL_PEERS];

/// `NodeConfig::flags`: the daemon has filled this node's settings; until then every IPv4
/// packet goes to the kernel.
pub const NODE_F_READY: u32 = 1;

/// This node's settings, the one value of [`NODE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// Where encapsulated packets leave and arrive.
    pub underlay_ifindex: u32,
    /// The underlay address: source of our IPIP, destination of the IPIP we accept.
    pub node_ip: [u8; 4],
    pub node_mac: [u8; 6],
    pub _pad: [u8; 2],
    /// The underlay's MTU; the tunnel's is 20 bytes less.
    pub underlay_mtu: u32,
    /// `NODE_F_*`.
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<NodeConfig>() == 24);

impl NodeConfig {
    pub const fn ready(&self) -> bool {
        self.flags & NODE_F_READY != 0
    }

    /// The largest inner packet the tunnel carries.
    pub const fn tunnel_mtu(&self) -> u32 {
        self.underlay_mtu.saturating_sub(crate::ipv4::HEADER_LEN as u32)
    }
}

/// Packets and bytes seen under one reason on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<Counter>() == 16);

impl Counter {
    /// The sum of two counters (used to fold per-CPU values together).
    pub const fn add(self, other: Counter) -> Counter {
        Counter {
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: each type is `#[repr(C)]`, `Copy`, and has no implicit padding (its layout is
    // asserted above), so every byte pattern of its size is a valid value.
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::NodeConfig {}
    unsafe impl aya::Pod for crate::route::RouteValue {}
}
