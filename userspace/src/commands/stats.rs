//! The counters in words: a table, rates, a listing; and the monitor's events as rows. Reading
//! and summing them is [`crate::dataplane::counters`]'s.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv6Addr, SocketAddr},
};

use fastpath_common::{
    ipv4::PROTO_ICMP,
    ipv6::NEXT_ICMPV6,
    maps::{MonitorEvent, FAMILY_IPV6, PROGRAM_FROM_POD},
    Reason,
};

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

/// One monitor event as `monitor --json` prints it: names where the table has names. The text
/// line is another rendering of it ([`EventRow::line`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventRow {
    /// Wall-clock time, nanoseconds since the epoch.
    pub time_ns: u128,
    pub ifindex: u32,
    pub iface: Option<String>,
    /// `from_pod` or `from_underlay`.
    pub program: String,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, … or the protocol (IPv6: next header) number.
    pub protocol: String,
    /// IPv4 or IPv6; for a tunnel, the inner packet's.
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    /// The ICMP or ICMPv6 message type by name (`echo-request`, `type 42` for one without a
    /// name); `null` for other protocols.
    pub icmp_type: Option<String>,
    /// `pass`, `redirect` or `drop` (`other` for an action the monitor does not know).
    pub verdict: String,
    pub reason: String,
    /// The packet's length as it arrived, in bytes.
    pub len: u32,
}

impl EventRow {
    pub fn new(e: &MonitorEvent, wall_ns: u128, iface: Option<String>) -> Self {
        let ipv6 = e.family == FAMILY_IPV6;
        let address = |a: [u8; 16]| {
            let a = Ipv6Addr::from(a);
            match a.to_ipv4_mapped() {
                Some(v4) if !ipv6 => IpAddr::V4(v4),
                _ => IpAddr::V6(a),
            }
        };
        let icmp = if ipv6 { NEXT_ICMPV6 } else { PROTO_ICMP };
        Self {
            time_ns: wall_ns,
            ifindex: e.ifindex,
            iface,
            program: if e.program == PROGRAM_FROM_POD { "from_pod" } else { "from_underlay" }.to_string(),
            protocol: crate::commands::flows::protocol_name(e.protocol),
            src: address(e.src),
            sport: e.sport,
            dst: address(e.dst),
            dport: e.dport,
            icmp_type: (e.protocol == icmp).then(|| icmp_type_name(ipv6, e.icmp_type)),
            verdict: fastpath_common::Verdict::from_tc_action(e.verdict)
                .map_or("other", |v| v.as_str())
                .to_string(),
            reason: Reason::try_from(e.reason).map_or("unknown", Reason::as_str).to_string(),
            len: e.len,
        }
    }

    /// The monitor's text line: time (UTC), interface, program, protocol, source > destination
    /// (with ports, or the ICMP type after them), verdict, reason, length.
    pub fn line(&self) -> String {
        let secs = (self.time_ns / 1_000_000_000) as u64;
        let micros = ((self.time_ns % 1_000_000_000) / 1000) as u64;
        let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
        let proto = match self.protocol.as_str() {
            "icmpv6" => "ICMP6".to_string(),
            name if name.starts_with(|c: char| c.is_ascii_digit()) => format!("proto {name}"),
            name => name.to_ascii_uppercase(),
        };
        let endpoint = |addr: IpAddr, port: u16| {
            if port == 0 {
                addr.to_string()
            } else {
                SocketAddr::new(addr, port).to_string()
            }
        };
        let icmp = self.icmp_type.as_ref().map_or(String::new(), |t| format!(" {t}"));
        format!(
            "{h:02}:{m:02}:{s:02}.{micros:06} {:<16} {:<13} {proto:<5} {} > {}{icmp} {:<8} {} ({} B)",
            self.iface.clone().unwrap_or_else(|| format!("ifindex {}", self.ifindex)),
            self.program,
            endpoint(self.src, self.sport),
            endpoint(self.dst, self.dport),
            self.verdict.to_ascii_uppercase(),
            self.reason,
            self.len
        )
    }
}

/// An ICMP (`ipv6` false) or ICMPv6 message type's name, as iptables' `--icmp-type` and
/// ip6tables' `--icmpv6-type` spell them; `type N` for one they do not name.
pub fn icmp_type_name(ipv6: bool, icmp_type: u8) -> String {
    let name = match (ipv6, icmp_type) {
        (false, 0) | (true, 129) => "echo-reply",
        (false, 8) | (true, 128) => "echo-request",
        (false, 3) | (true, 1) => "destination-unreachable",
        (false, 11) | (true, 3) => "time-exceeded",
        (false, 12) | (true, 4) => "parameter-problem",
        (false, 5) | (true, 137) => "redirect",
        (false, 4) => "source-quench",
        (false, 9) | (true, 134) => "router-advertisement",
        (false, 10) | (true, 133) => "router-solicitation",
        (false, 13) => "timestamp-request",
        (false, 14) => "timestamp-reply",
        (true, 2) => "packet-too-big",
        (true, 135) => "neighbour-solicitation",
        (true, 136) => "neighbour-advertisement",
        _ => return format!("type {icmp_type}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use fastpath_common::{ipv6::v4_mapped, maps::Counter};

    use super::*;

    fn sample() -> Vec<ReasonTotal> {
        vec![
            ReasonTotal { reason: Reason::ArpReplied, total: Counter { packets: 3, bytes: 126 } },
            ReasonTotal { reason: Reason::PassIpv4, total: Counter { packets: 0, bytes: 0 } },
        ]
    }

    fn event(family: u8, src: [u8; 16], dst: [u8; 16], protocol: u8) -> MonitorEvent {
        MonitorEvent {
            time_ns: 0,
            ifindex: 5,
            program: PROGRAM_FROM_POD,
            src,
            dst,
            sport: 0,
            dport: 0,
            protocol,
            family,
            icmp_type: 0,
            _pad: 0,
            verdict: 7,
            reason: Reason::Encapsulated.index(),
            len: 1514,
            _pad2: 0,
        }
    }

    const POD6: [u8; 16] = [0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0, 0, 0, 0, 0, 0, 0x0a, 0xf4, 0x28, 0x24];
    const OTHER6: [u8; 16] = [0xfd, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0, 0, 0, 0, 0, 0, 0x0a, 0xf4, 0x28, 0x25];

    #[test]
    fn monitor_lines_read_like_a_capture() {
        let mut e = event(
            fastpath_common::maps::FAMILY_IPV4,
            v4_mapped([10, 244, 40, 36]),
            v4_mapped([10, 244, 166, 150]),
            6,
        );
        (e.sport, e.dport) = (40000, 5201);
        let row = EventRow::new(&e, 3_723_000_001_000, Some("cali1".into()));
        assert_eq!(row.src, IpAddr::from([10, 244, 40, 36]), "IPv4 again, not ::ffff:10.244.40.36");
        assert_eq!(row.icmp_type, None);
        assert_eq!(row.line(), "01:02:03.000001 cali1            from_pod      TCP   10.244.40.36:40000 > 10.244.166.150:5201 REDIRECT encapsulated (1514 B)");
    }

    #[test]
    fn icmp_lines_name_the_message_in_either_family() {
        let mut e = event(
            fastpath_common::maps::FAMILY_IPV4,
            v4_mapped([10, 244, 40, 36]),
            v4_mapped([10, 244, 166, 150]),
            PROTO_ICMP,
        );
        e.icmp_type = 0;
        let row = EventRow::new(&e, 3_723_000_001_000, None);
        assert_eq!(row.icmp_type.as_deref(), Some("echo-reply"));
        assert_eq!(row.line(), "01:02:03.000001 ifindex 5        from_pod      ICMP  10.244.40.36 > 10.244.166.150 echo-reply REDIRECT encapsulated (1514 B)");

        let mut e = event(FAMILY_IPV6, POD6, OTHER6, NEXT_ICMPV6);
        (e.icmp_type, e.reason, e.len) = (128, Reason::RedirectedLocal.index(), 118);
        let row = EventRow::new(&e, 3_723_000_001_000, Some("cali1".into()));
        assert_eq!((row.protocol.as_str(), row.icmp_type.as_deref()), ("icmpv6", Some("echo-request")));
        assert_eq!(row.line(), "01:02:03.000001 cali1            from_pod      ICMP6 fd5f:a1b2:c3d4::af4:2824 > fd5f:a1b2:c3d4::af4:2825 echo-request REDIRECT redirected_local (118 B)");
    }

    #[test]
    fn ipv6_lines_bracket_addresses_with_ports() {
        let mut e = event(FAMILY_IPV6, POD6, OTHER6, 6);
        (e.sport, e.dport) = (40000, 5201);
        let row = EventRow::new(&e, 0, Some("cali1".into()));
        assert!(
            row.line().contains(
                "TCP   [fd5f:a1b2:c3d4::af4:2824]:40000 > [fd5f:a1b2:c3d4::af4:2825]:5201 REDIRECT"
            ),
            "{}",
            row.line()
        );
        // An IPv6 packet between IPv4-mapped addresses stays IPv6.
        let mapped = EventRow::new(&event(FAMILY_IPV6, v4_mapped([1, 2, 3, 4]), OTHER6, 17), 0, None);
        assert_eq!(mapped.src, "::ffff:1.2.3.4".parse::<IpAddr>().unwrap());
        // The JSON names the address as the text does, and reads back.
        let json = serde_json::to_string(&row).unwrap();
        assert!(json.contains(r#""src":"fd5f:a1b2:c3d4::af4:2824""#), "{json}");
        assert_eq!(serde_json::from_str::<EventRow>(&json).unwrap(), row);
    }

    #[test]
    fn icmp_types_by_name() {
        assert_eq!(icmp_type_name(false, 8), "echo-request");
        assert_eq!(icmp_type_name(false, 3), "destination-unreachable");
        assert_eq!(icmp_type_name(true, 2), "packet-too-big");
        assert_eq!(icmp_type_name(true, 135), "neighbour-solicitation");
        assert_eq!(icmp_type_name(true, 8), "type 8", "8 is IPv4's echo request, not ICMPv6's");
        assert_eq!(icmp_type_name(false, 128), "type 128");
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
