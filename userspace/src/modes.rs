//! How the operator asks the fast path to work: `--ipip`, `--vxlan` and `--trust`, one type
//! each. clap parses them (`ValueEnum`), the daemon decides with them, and they become the agent
//! and node maps' codes and flag bits here, once.
//!
//! When to encapsulate toward another node, and in which tunnel (pure): what `--ipip` and
//! `--vxlan` share. Each flag has the shape of a Calico IPPool's `ipipMode`/`vxlanMode`
//! (Always, CrossSubnet, Never), plus `follow`: as the kernel's routes say.
//!
//! A route through a tunnel device (`tunl0`, `vxlan.calico`) is that tunnel unless its mode is
//! `never` (then the packets go plain to the same node). A route via another node on the
//! underlay is plain, unless one of the two modes says `always` or `cross-subnet` (and the node
//! is outside the underlay subnet): only one of them may, or the choice would be ambiguous.

use std::net::Ipv4Addr;

use fastpath_common::maps::{AGENT_F_TRUST_KERNEL, NODE_F_TRUST_KERNEL};

use crate::model::route::Underlay;

/// One tunnel's mode (`--ipip`, `--vxlan`); the numbers are what the agent map stores. The flags'
/// help words the values; the variants' docs stay out of it (`help = None`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EncapMode {
    /// As the routes say: via the tunnel device is the tunnel, via the underlay is plain.
    #[default]
    #[value(help = None::<&str>)]
    Follow,
    /// Every remote block, those routed via the underlay too.
    #[value(help = None::<&str>)]
    Always,
    /// Remote blocks whose node is outside the underlay subnet (Calico's CrossSubnet).
    #[value(help = None::<&str>)]
    CrossSubnet,
    /// None: remote blocks are routed plain, even via the tunnel device.
    #[value(help = None::<&str>)]
    Never,
}

impl EncapMode {
    /// The mode stored as `code` in the agent map (`mode as u32`).
    pub fn from_code(code: u32) -> Option<Self> {
        [Self::Follow, Self::Always, Self::CrossSubnet, Self::Never].into_iter().find(|m| *m as u32 == code)
    }

    /// The flag value that selects this mode.
    pub fn name(self) -> &'static str {
        match self {
            Self::Follow => "follow",
            Self::Always => "always",
            Self::CrossSubnet => "cross-subnet",
            Self::Never => "never",
        }
    }

    /// Whether this mode encapsulates a route via the underlay to `node`.
    fn claims(self, underlay: &Underlay, node: Ipv4Addr) -> bool {
        match self {
            Self::Always => true,
            Self::CrossSubnet => !underlay.contains(node),
            Self::Follow | Self::Never => false,
        }
    }

    /// Whether this mode may claim routes via the underlay at all.
    fn claims_underlay_routes(self) -> bool {
        matches!(self, Self::Always | Self::CrossSubnet)
    }
}

/// `--trust`: which packets take the fast path. The flag's help words the values, as for
/// [`EncapMode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// A flow direction only while the kernel's conntrack holds a confirmed entry for it.
    #[value(help = None::<&str>)]
    Kernel,
    /// Every packet the routes allow.
    #[value(help = None::<&str>)]
    Routes,
}

impl Trust {
    /// The flag value that selects it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Routes => "routes",
        }
    }

    /// Its bit in the agent map's `flags`.
    pub fn agent_flag(self) -> u32 {
        match self {
            Self::Kernel => AGENT_F_TRUST_KERNEL,
            Self::Routes => 0,
        }
    }

    /// The trust the agent map's `flags` say.
    pub fn from_agent_flags(flags: u32) -> Self {
        if flags & AGENT_F_TRUST_KERNEL != 0 {
            Self::Kernel
        } else {
            Self::Routes
        }
    }

    /// Its bit in the node map's `flags` (the programs read it there).
    pub fn node_flag(self) -> u32 {
        match self {
            Self::Kernel => NODE_F_TRUST_KERNEL,
            Self::Routes => 0,
        }
    }
}

/// Which tunnel a route via the underlay takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnderlayChoice {
    Plain,
    Ipip,
    Vxlan,
}

/// `--ipip` and `--vxlan` together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Modes {
    pub ipip: EncapMode,
    pub vxlan: EncapMode,
}

impl Modes {
    /// Both modes claiming the routes via the underlay: a usage error, in words.
    pub fn conflict(&self) -> Option<String> {
        (self.ipip.claims_underlay_routes() && self.vxlan.claims_underlay_routes()).then(|| {
            format!(
                "--ipip {} and --vxlan {} both claim the routes via the underlay: give one of them follow or never",
                self.ipip.name(),
                self.vxlan.name()
            )
        })
    }

    /// The tunnel for a route via the underlay to `node` (whose address is `node`).
    pub fn via_underlay(&self, underlay: &Underlay, node: Ipv4Addr) -> UnderlayChoice {
        if self.ipip.claims(underlay, node) {
            UnderlayChoice::Ipip
        } else if self.vxlan.claims(underlay, node) {
            UnderlayChoice::Vxlan
        } else {
            UnderlayChoice::Plain
        }
    }

    /// "IPIP follow, VXLAN follow".
    pub fn describe(&self) -> String {
        format!("IPIP {}, VXLAN {}", self.ipip.name(), self.vxlan.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNDERLAY: Underlay = Underlay {
        ifindex: 2,
        addr: Ipv4Addr::new(10, 101, 14, 50),
        prefix_len: 28,
        gateway: Some(Ipv4Addr::new(10, 101, 14, 62)),
    };
    const SAME_SUBNET: Ipv4Addr = Ipv4Addr::new(10, 101, 14, 51);
    const ACROSS: Ipv4Addr = Ipv4Addr::new(10, 101, 15, 50);

    fn modes(ipip: EncapMode, vxlan: EncapMode) -> Modes {
        Modes { ipip, vxlan }
    }

    #[test]
    fn modes_round_trip_through_their_codes() {
        for mode in [EncapMode::Follow, EncapMode::Always, EncapMode::CrossSubnet, EncapMode::Never] {
            assert_eq!(EncapMode::from_code(mode as u32), Some(mode));
        }
        assert_eq!(EncapMode::from_code(4), None);
        assert_eq!(EncapMode::CrossSubnet.name(), "cross-subnet");
    }

    #[test]
    fn names_are_the_flag_values_clap_takes() {
        use clap::ValueEnum as _;
        for mode in EncapMode::value_variants() {
            assert_eq!(mode.to_possible_value().unwrap().get_name(), mode.name());
        }
        for trust in Trust::value_variants() {
            assert_eq!(trust.to_possible_value().unwrap().get_name(), trust.name());
        }
    }

    #[test]
    fn trust_round_trips_through_the_agent_flags() {
        for trust in [Trust::Kernel, Trust::Routes] {
            assert_eq!(Trust::from_agent_flags(trust.agent_flag() | 1 << 31), trust);
        }
        assert_eq!(Trust::Kernel.node_flag(), NODE_F_TRUST_KERNEL);
        assert_eq!(Trust::Routes.node_flag(), 0);
    }

    #[test]
    fn routes_via_the_underlay_follow_the_one_mode_that_claims_them() {
        use EncapMode::*;
        use UnderlayChoice as C;
        for (ipip, vxlan, same, across) in [
            (Follow, Follow, C::Plain, C::Plain),
            (Always, Follow, C::Ipip, C::Ipip),
            (CrossSubnet, Never, C::Plain, C::Ipip),
            (Follow, Always, C::Vxlan, C::Vxlan),
            (Never, CrossSubnet, C::Plain, C::Vxlan),
        ] {
            let m = modes(ipip, vxlan);
            assert_eq!(m.conflict(), None, "{m:?}");
            assert_eq!(m.via_underlay(&UNDERLAY, SAME_SUBNET), same, "{m:?}");
            assert_eq!(m.via_underlay(&UNDERLAY, ACROSS), across, "{m:?}");
        }
    }

    #[test]
    fn two_modes_claiming_the_underlay_are_refused() {
        use EncapMode::*;
        for (ipip, vxlan) in
            [(Always, Always), (Always, CrossSubnet), (CrossSubnet, Always), (CrossSubnet, CrossSubnet)]
        {
            let why = modes(ipip, vxlan).conflict().expect("a conflict");
            assert!(
                why.starts_with(&format!("--ipip {} and --vxlan {}", ipip.name(), vxlan.name())),
                "{why}"
            );
        }
        assert_eq!(modes(Always, Never).describe(), "IPIP always, VXLAN never");
    }
}
