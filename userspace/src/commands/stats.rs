//! The counters in words: a table, rates, a listing; and the monitor's events as rows. Reading
//! and summing them is [`crate::dataplane::counters`]'s.

use std::fmt::Write as _;

use fastpath_common::Reason;

use crate::dataplane::counters::ReasonTotal;

/// A table of every reason, aligned, with a header.
pub fn format_table(totals: &[ReasonTotal]) -> String {
    let width = totals.iter().map(|t| t.reason.as_str().len()).max().unwrap_or(0).max("REASON".len());
    let mut out = format!("{:<width$}  {:>12}  {:>14}\n", "REASON", "PACKETS", "BYTES");
    for t in totals {
        let _ =
            writeln!(out, "{:<width$}  {:>12}  {:>14}", t.reason.as_str(), t.total.packets, t.total.bytes);
    }
    out
}

/// One reason's line of `fastpath stats -o json|yaml`: the listing is an object keyed by reason
/// name (retired reasons left out), in code order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReasonCount {
    pub packets: u64,
    pub bytes: u64,
    /// `pass`, `redirect` or `drop`: what the programs did with these packets.
    pub verdict: String,
}

/// What `stats -o json|yaml` deserializes into: reason name → its count.
pub type StatsListing = std::collections::BTreeMap<String, ReasonCount>;

/// Every reason's count, keyed by name, for serde (a map, in code order).
pub struct Listing<'a>(pub &'a [ReasonTotal]);

impl serde::Serialize for Listing<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for t in self.0 {
            let count = ReasonCount {
                packets: t.total.packets,
                bytes: t.total.bytes,
                verdict: t.reason.verdict().as_str().to_string(),
            };
            map.serialize_entry(t.reason.as_str(), &count)?;
        }
        map.end()
    }
}

/// The `--watch` screen: each reason that moved, with packets and bytes per second.
pub fn format_rates(before: &[ReasonTotal], after: &[ReasonTotal], seconds: f64) -> String {
    let mut out = format!("{:<30} {:>12} {:>14} {:>14}\n", "REASON", "PACKETS/S", "BYTES/S", "PACKETS");
    for (b, a) in before.iter().zip(after) {
        let packets = a.total.packets.saturating_sub(b.total.packets) as f64 / seconds.max(1e-9);
        let bytes = a.total.bytes.saturating_sub(b.total.bytes) as f64 / seconds.max(1e-9);
        if a.total.packets > 0 {
            let _ = writeln!(
                out,
                "{:<30} {packets:>12.0} {bytes:>14.0} {:>14}",
                a.reason.as_str(),
                a.total.packets
            );
        }
    }
    out
}

/// One monitor event as `monitor --json` prints it: names where the table has names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventRow {
    /// Wall-clock time, nanoseconds since the epoch.
    pub time_ns: u128,
    pub ifindex: u32,
    pub iface: Option<String>,
    /// `from_pod` or `from_underlay`.
    pub program: String,
    /// `tcp`, `udp`, `icmp`, … or the protocol number.
    pub protocol: String,
    pub src: std::net::Ipv4Addr,
    pub sport: u16,
    pub dst: std::net::Ipv4Addr,
    pub dport: u16,
    /// `pass`, `redirect` or `drop` (`other` for an action the monitor does not know).
    pub verdict: String,
    pub reason: String,
    /// The packet's length as it arrived, in bytes.
    pub len: u32,
}

impl EventRow {
    pub fn new(e: &fastpath_common::maps::MonitorEvent, wall_ns: u128, iface: Option<String>) -> Self {
        Self {
            time_ns: wall_ns,
            ifindex: e.ifindex,
            iface,
            program: if e.program == fastpath_common::maps::PROGRAM_FROM_POD {
                "from_pod"
            } else {
                "from_underlay"
            }
            .to_string(),
            protocol: crate::commands::flows::protocol_name(e.protocol),
            src: std::net::Ipv4Addr::from(e.src),
            sport: e.sport,
            dst: std::net::Ipv4Addr::from(e.dst),
            dport: e.dport,
            verdict: fastpath_common::Verdict::from_tc_action(e.verdict)
                .map_or("other", |v| v.as_str())
                .to_string(),
            reason: Reason::try_from(e.reason).map_or("unknown", Reason::as_str).to_string(),
            len: e.len,
        }
    }
}

#[cfg(test)]
mod tests {
    use fastpath_common::maps::Counter;

    use super::*;

    fn sample() -> Vec<ReasonTotal> {
        vec![
            ReasonTotal { reason: Reason::ArpReplied, total: Counter { packets: 3, bytes: 126 } },
            ReasonTotal { reason: Reason::PassIpv4, total: Counter { packets: 0, bytes: 0 } },
        ]
    }

    #[test]
    fn table_has_a_header_and_a_row_per_reason() {
        let table = format_table(&sample());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("REASON"));
        assert!(lines[1].starts_with("arp_replied") && lines[1].ends_with("126"), "{}", lines[1]);
    }

    #[test]
    fn rates_are_per_second_and_only_for_reasons_that_moved() {
        let after = vec![
            ReasonTotal { reason: Reason::ArpReplied, total: Counter { packets: 23, bytes: 1126 } },
            ReasonTotal { reason: Reason::PassIpv4, total: Counter { packets: 0, bytes: 0 } },
        ];
        let screen = format_rates(&sample(), &after, 2.0);
        let lines: Vec<&str> = screen.lines().collect();
        assert_eq!(lines.len(), 2, "{screen}");
        assert!(lines[1].contains(" 10 ") && lines[1].contains(" 500 "), "{screen}");
    }

    #[test]
    fn json_names_every_reason_and_its_verdict() {
        let json = serde_json::to_string(&Listing(&sample())).unwrap();
        assert_eq!(
            json,
            r#"{"arp_replied":{"packets":3,"bytes":126,"verdict":"redirect"},"passed_ipv4":{"packets":0,"bytes":0,"verdict":"pass"}}"#
        );
        let back: StatsListing = serde_json::from_str(&json).unwrap();
        assert_eq!(back["arp_replied"].packets, 3);
    }
}
