//! `--trust kernel` at work: conntrack's picture, kept from its dump and events; the flow table
//! it implies (`judge.rs`), written on every change and whenever what the route table says about
//! an address changes (an endpoint that goes takes its flows along); and the upkeep of the
//! entries the fast path carries: a fresher timeout while it carries them (conntrack does not see
//! those packets), and liberal TCP window tracking, so the close the kernel sees is never
//! judged INVALID.

use std::{
    collections::{HashMap, HashSet},
    net::{Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use fastpath_common::{
    flow::{Arrival, Arrived, PROTO_DCCP, PROTO_ICMP, PROTO_SCTP, PROTO_TCP, PROTO_UDP, PROTO_UDPLITE},
    flow6::Arrived6,
    ipv6::NEXT_ICMPV6,
    route::{RouteKind, ROUTE_F_VXLAN},
    tunnel::Tunnel,
};

use crate::{
    daemon::{
        conntrack::{Conntrack, Entry, Event, Tuple, IPS_SEEN_REPLY},
        judge::{self, Judged, Places},
    },
    dataplane::{flow_table::FlowTables, tables::Written},
    Error,
};

/// The flow tables, each conntrack entry known by its original tuple.
pub type Flows = FlowTables<Tuple>;

/// Conntrack's entries and what the fast path does with them.
pub struct Trust {
    conntrack: Conntrack,
    entries: HashMap<Tuple, Entry>,
    /// Per entry the fast path carries: when its timeout was last refreshed, and the programs'
    /// last-seen time then.
    refreshed: HashMap<Tuple, (Instant, u64)>,
    /// TCP entries already made liberal.
    liberal: HashSet<Tuple>,
    /// Entries whose flow table entries wait until their change to liberal has been sent.
    held: Vec<Tuple>,
}

impl Trust {
    pub fn new() -> Result<Self, Error> {
        Ok(Self {
            conntrack: Conntrack::new()?,
            entries: HashMap::new(),
            refreshed: HashMap::new(),
            liberal: HashSet::new(),
            held: Vec::new(),
        })
    }

    /// Take conntrack's entries whole and make the flow table hold exactly what they imply:
    /// at start, and whenever events were lost.
    pub async fn resync(&mut self, table: &mut Flows, places: &impl Places) -> Result<Written, Error> {
        let entries = self.conntrack.dump().await?;
        self.entries = entries.into_iter().map(|e| (e.original, e)).collect();
        let gone: Vec<Tuple> = table.entries().filter(|t| !self.entries.contains_key(*t)).copied().collect();
        let mut written = Written::default();
        for original in gone {
            written = sum(written, table.set(&original, Vec::new(), Vec::new())?);
        }
        written = sum(written, self.rejudge(table, places)?);
        written = sum(written, self.release(table, places)?);
        written.removed += table.remove_unwritten()?;
        self.refreshed.retain(|t, _| self.entries.contains_key(t));
        self.liberal.retain(|t| self.entries.contains_key(t));
        Ok(written)
    }

    /// Judge every entry again: after the route table changed.
    pub fn rejudge(&mut self, table: &mut Flows, places: &impl Places) -> Result<Written, Error> {
        let mut written = Written::default();
        let originals: Vec<Tuple> = self.entries.keys().copied().collect();
        for original in originals {
            written = sum(written, self.apply(&original, table, places)?);
        }
        Ok(sum(written, self.release(table, places)?))
    }

    /// The next event of conntrack's (`None`: the socket closed).
    pub async fn next(&mut self) -> Option<Event> {
        self.conntrack.next().await
    }

    /// Follow one event of conntrack's.
    pub async fn handle(
        &mut self,
        event: Event,
        table: &mut Flows,
        places: &impl Places,
    ) -> Result<Written, Error> {
        match event {
            Event::Present { entry, reply, status, tcp_state } => {
                let known = self.entries.entry(entry).or_insert(Entry {
                    original: entry,
                    reply,
                    status: 0,
                    tcp_state: None,
                });
                known.reply = reply;
                if let Some(status) = status {
                    known.status = status;
                }
                if tcp_state.is_some() {
                    known.tcp_state = tcp_state;
                }
                let written = self.apply(&entry, table, places)?;
                // Once per batch of events: the last of those read at once.
                if self.conntrack.has_queued_events() {
                    return Ok(written);
                }
                Ok(sum(written, self.release(table, places)?))
            }
            Event::Gone(original) => {
                self.entries.remove(&original);
                self.refreshed.remove(&original);
                self.liberal.remove(&original);
                table.set(&original, Vec::new(), Vec::new())
            }
            Event::Overrun => {
                log::warn!("conntrack overflow: the kernel dropped events; resyncing from a full dump");
                self.resync(table, places).await
            }
        }
    }

    /// Write what one entry implies; make a TCP entry the fast path carries liberal. Such an
    /// entry's directions are held back until the change has gone ([`Self::release`]): a
    /// segment the fast path carried before conntrack became liberal would leave conntrack's
    /// window behind, and the close it then sees would be INVALID.
    fn apply(&mut self, original: &Tuple, table: &mut Flows, places: &impl Places) -> Result<Written, Error> {
        let Some(entry) = self.entries.get(original).copied() else { return Ok(Written::default()) };
        let judged = judge::judge(&entry, places);
        if judged.liberal && self.liberal.insert(*original) {
            self.conntrack.be_liberal(original);
            self.held.push(*original);
            return Ok(Written::default());
        }
        self.write(original, judged, table)
    }

    /// Send the queued changes to conntrack, then write the entries held back for them.
    fn release(&mut self, table: &mut Flows, places: &impl Places) -> Result<Written, Error> {
        if self.held.is_empty() {
            return Ok(Written::default());
        }
        // Netlink hands a request to conntrack within the send: liberal from here on.
        self.conntrack.flush();
        let mut written = Written::default();
        for original in std::mem::take(&mut self.held) {
            let Some(entry) = self.entries.get(&original).copied() else { continue };
            written = sum(written, self.write(&original, judge::judge(&entry, places), table)?);
        }
        Ok(written)
    }

    fn write(&mut self, original: &Tuple, judged: Judged, table: &mut Flows) -> Result<Written, Error> {
        if judged.directions.is_empty() && judged.directions6.is_empty() {
            self.refreshed.remove(original);
        } else {
            self.refreshed.entry(*original).or_insert((Instant::now(), 0));
        }
        table.set(original, judged.directions, judged.directions6)
    }

    /// Refresh the timeout of every entry the fast path carried a packet of since its last
    /// refresh, once a third of its timeout has passed: conntrack sees none of those packets, and
    /// must not time the connection out under it, as the nf flowtable refreshes the entries of
    /// the flows it offloads. Returns how many it refreshed.
    pub fn refresh(&mut self, table: &Flows) -> usize {
        let timeouts = Timeouts::read();
        let mut refreshed = 0;
        let due: Vec<(Tuple, u32)> = self
            .refreshed
            .iter()
            .filter_map(|(original, (at, _))| {
                let entry = self.entries.get(original)?;
                let timeout = timeouts.of(entry);
                (at.elapsed() >= Duration::from_secs(u64::from(timeout / 3).max(1)))
                    .then_some((*original, timeout))
            })
            .collect();
        for (original, timeout) in due {
            let seen = table.last_seen_ns(&original);
            let Some((at, last)) = self.refreshed.get_mut(&original) else { continue };
            *at = Instant::now();
            if seen <= *last {
                // Idle on the fast path: conntrack's own timeout judges it.
                continue;
            }
            *last = seen;
            self.conntrack.refresh(&original, timeout);
            refreshed += 1;
        }
        refreshed
    }

    /// Entries conntrack holds (as far as the daemon follows them).
    pub fn entries(&self) -> usize {
        self.entries.len()
    }
}

/// Whether the kernel's conntrack tracks nothing in this namespace. It tracks only while some
/// rule or NAT asks it to (kube-proxy's and Calico's always do); where nothing does, it holds no
/// entry and no flow is ever approved, while the programs hand every packet to the kernel as not
/// yet approved. Said once, on that evidence: many such packets while conntrack held no entry.
#[derive(Debug, Default)]
pub struct Untracked {
    pending: Option<u64>,
    /// Packets passed pending approval while conntrack held nothing.
    unexplained: u64,
    said: bool,
}

impl Untracked {
    /// Packets handed to the kernel as not yet approved, while conntrack held no entry, past
    /// which its empty table is no accident.
    pub const EVIDENCE: u64 = 1000;

    /// Given conntrack's entry count and the programs' total of packets passed pending approval
    /// now: `true` the first time the evidence says conntrack tracks nothing.
    pub fn observe(&mut self, entries: usize, pending: u64) -> bool {
        let grew = self.pending.map_or(0, |before| pending.saturating_sub(before));
        self.pending = Some(pending);
        self.unexplained = if entries > 0 { 0 } else { self.unexplained + grew };
        if self.said || self.unexplained < Self::EVIDENCE {
            return false;
        }
        self.said = true;
        true
    }
}

fn sum(a: Written, b: Written) -> Written {
    Written { upserted: a.upserted + b.upserted, removed: a.removed + b.removed }
}

/// Conntrack's timeouts for the states the fast path carries (`/proc/sys/net/netfilter`), read
/// afresh at each refresh, so a change of them is followed.
struct Timeouts {
    values: HashMap<&'static str, u32>,
}

impl Timeouts {
    fn read() -> Self {
        let names = [
            "nf_conntrack_tcp_timeout_established",
            "nf_conntrack_udp_timeout",
            "nf_conntrack_udp_timeout_stream",
            "nf_conntrack_icmp_timeout",
            "nf_conntrack_icmpv6_timeout",
            "nf_conntrack_sctp_timeout_established",
            "nf_conntrack_dccp_timeout_open",
            "nf_conntrack_generic_timeout",
        ];
        let values = names
            .into_iter()
            .filter_map(|name| {
                let text = std::fs::read_to_string(format!("/proc/sys/net/netfilter/{name}")).ok()?;
                Some((name, text.trim().parse().ok()?))
            })
            .collect();
        Self { values }
    }

    /// The timeout conntrack gives `entry` in the state the fast path carries it in.
    fn of(&self, entry: &Entry) -> u32 {
        let answered = entry.status & IPS_SEEN_REPLY != 0;
        let name = match entry.original.protocol {
            PROTO_TCP => "nf_conntrack_tcp_timeout_established",
            PROTO_UDP | PROTO_UDPLITE if answered => "nf_conntrack_udp_timeout_stream",
            PROTO_UDP | PROTO_UDPLITE => "nf_conntrack_udp_timeout",
            PROTO_ICMP => "nf_conntrack_icmp_timeout",
            NEXT_ICMPV6 => "nf_conntrack_icmpv6_timeout",
            PROTO_SCTP => "nf_conntrack_sctp_timeout_established",
            PROTO_DCCP => "nf_conntrack_dccp_timeout_open",
            _ => "nf_conntrack_generic_timeout",
        };
        // The kernel's defaults where the sysctl cannot be read.
        self.values.get(name).copied().unwrap_or(match name {
            "nf_conntrack_tcp_timeout_established" => 432_000,
            "nf_conntrack_udp_timeout_stream" => 120,
            "nf_conntrack_icmp_timeout" => 30,
            _ => 30,
        })
    }
}

/// Addresses as the route table the programs follow places them: the judge's [`Places`].
pub struct RouteTable<'a> {
    pub tables: &'a crate::dataplane::tables::Tables,
    pub underlay: &'a crate::model::route::Underlay,
}

impl RouteTable<'_> {
    /// The node an IPv6 remote block's packets come from, and how.
    fn block6(&self, addr: Ipv6Addr) -> Option<(Arrival, [u8; 16])> {
        let route = self.tables.route6_of(addr)?;
        (RouteKind::try_from(route.kind) == Ok(RouteKind::RemoteBlock)).then(|| {
            let arrival = if route.flags & ROUTE_F_VXLAN != 0 { Arrival::Vxlan } else { Arrival::Plain };
            (arrival, route.next_hop)
        })
    }
}

impl Places for RouteTable<'_> {
    fn arrival_of(&self, src: Ipv4Addr) -> Option<Arrived> {
        let Some(route) = self.tables.route_of(src) else {
            // The outside world: on the underlay's own subnet from itself, else through the
            // default gateway.
            let from = if self.underlay.contains(src) { Some(src) } else { self.underlay.gateway };
            return from.map(|from| Arrived::from_underlay(Arrival::Plain, from.octets()));
        };
        match RouteKind::try_from(route.kind) {
            Ok(RouteKind::LocalEndpoint) => Some(Arrived::from_pod(route.ifindex)),
            Ok(RouteKind::RemoteBlock) => {
                let arrival = match route.tunnel() {
                    Ok(Some(Tunnel::Ipip)) => Arrival::Ipip,
                    Ok(Some(Tunnel::Vxlan)) => Arrival::Vxlan,
                    Ok(None) => Arrival::Plain,
                    Err(_) => return None,
                };
                Some(Arrived::from_underlay(arrival, route.next_hop))
            }
            _ => None,
        }
    }

    fn routed(&self, dst: Ipv4Addr) -> bool {
        self.tables.route_of(dst).is_some_and(|r| {
            matches!(RouteKind::try_from(r.kind), Ok(RouteKind::LocalEndpoint | RouteKind::RemoteBlock))
        })
    }

    fn node(&self) -> Ipv4Addr {
        self.underlay.addr
    }

    fn arrival_of6(&self, src: Ipv6Addr) -> Option<Arrived6> {
        if let Some(pod) = self.tables.endpoint6_of(src) {
            return Some(Arrived6::from_pod(pod.ifindex));
        }
        // Only IPv6 VXLAN: the programs hand plain IPv6 from the underlay to the kernel.
        match self.block6(src)? {
            (Arrival::Vxlan, node) => Some(Arrived6::from_underlay(Arrival::Vxlan, node)),
            _ => None,
        }
    }

    fn routed6(&self, dst: Ipv6Addr) -> bool {
        self.tables.endpoint6_of(dst).is_some() || self.block6(dst).is_some()
    }

    fn node6(&self) -> Option<Ipv6Addr> {
        self.tables.node6_ip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_conntrack_table_is_said_once_on_evidence() {
        let mut u = Untracked::default();
        assert!(!u.observe(0, 5_000), "the first reading is no interval");
        assert!(!u.observe(0, 5_500), "little evidence yet");
        assert!(!u.observe(3, 9_000), "entries: conntrack tracks");
        assert!(!u.observe(0, 9_600));
        assert!(u.observe(0, 10_000), "1000 packets while conntrack held nothing");
        assert!(!u.observe(0, 20_000), "said once");
    }
}
