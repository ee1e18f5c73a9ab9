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
    /// IPv4: the kernel routes it (fastpath forwarding arrives with the routing issue).
    PassIpv4 = 6,
    /// Neither ARP nor IPv4 (IPv6, LLDP, ...).
    PassOtherEthertype = 7,
}

impl Reason {
    /// Number of reasons in use. The counters map is sized by [`COUNTER_SLOTS`], not this,
    /// so that appending a reason never changes the map's layout.
    pub const COUNT: usize = 8;

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
        }
    }

    /// The counters slot of this reason.
    pub const fn index(self) -> u32 {
        self as u32
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
        assert_eq!(
            Reason::try_from(Reason::COUNT as u32),
            Err(Reason::COUNT as u32)
        );
    }
}
