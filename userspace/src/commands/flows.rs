//! `fastpath flows`: the flow table of `--trust kernel` (the directions the kernel's conntrack
//! holds confirmed entries for, as the daemon wrote them), read from the pinned map, and the
//! summary `explain` and `status` give of it.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use aya::maps::{HashMap, MapData};
use fastpath_common::{
    flow::{
        Arrival, FlowKey, FlowState, FlowValue, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, PROTO_DCCP, PROTO_ICMP,
        PROTO_SCTP, PROTO_TCP, PROTO_UDP, PROTO_UDPLITE,
    },
    flow6::{FlowKey6, FlowValue6, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST},
    ipv6::NEXT_ICMPV6,
    maps::{FLOWS, FLOWS6},
};

use crate::{
    dataplane::bpffs,
    output::{self, Format},
    Error,
};

/// One IPv4 flow direction as the table holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub key: FlowKey,
    pub value: FlowValue,
}

/// One IPv6 flow direction as `FP_FLOWS6` holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow6 {
    pub key: FlowKey6,
    pub value: FlowValue6,
}

impl Flow {
    pub fn state(&self) -> Option<FlowState> {
        FlowState::of(self.value.state)
    }

    pub fn state_name(&self) -> &'static str {
        state_name(self.value.state)
    }
}

/// A state byte in words.
pub fn state_name(state: u8) -> &'static str {
    FlowState::of(state).map_or("unknown", FlowState::as_str)
}

/// Seconds since the fast path last carried a packet of a direction last seen at `last_seen_ns`,
/// as of `now_ns` (`CLOCK_MONOTONIC`); `None` when it has carried none.
fn idle_secs(last_seen_ns: u64, now_ns: u64) -> Option<u64> {
    (last_seen_ns != 0).then(|| now_ns.saturating_sub(last_seen_ns) / 1_000_000_000)
}

/// Every entry of the pinned IPv4 flow table, sorted by source, destination and ports.
pub fn read_pinned(dir: &Path) -> Result<Vec<Flow>, Error> {
    let map: HashMap<MapData, FlowKey, FlowValue> = bpffs::open_pinned_as(dir, FLOWS)?;
    // Entries evicted or deleted while we walk the table are skipped, not an error.
    let mut flows: Vec<Flow> =
        map.iter().filter_map(Result::ok).map(|(key, value)| Flow { key, value }).collect();
    flows.sort_by_key(|f| f.key);
    Ok(flows)
}

/// Every entry of the pinned IPv6 flow table, sorted as [`read_pinned`]'s.
pub fn read_pinned6(dir: &Path) -> Result<Vec<Flow6>, Error> {
    let map: HashMap<MapData, FlowKey6, FlowValue6> = bpffs::open_pinned_as(dir, FLOWS6)?;
    let mut flows: Vec<Flow6> =
        map.iter().filter_map(Result::ok).map(|(key, value)| Flow6 { key, value }).collect();
    flows.sort_by_key(|f| f.key);
    Ok(flows)
}

/// Both tables' directions as rows, as of `now_ns`: IPv4's, then IPv6's.
pub fn rows(flows: &[Flow], flows6: &[Flow6], now_ns: u64) -> Vec<FlowRow> {
    flows
        .iter()
        .map(|f| FlowRow::new(f, now_ns))
        .chain(flows6.iter().map(|f| FlowRow::new6(f, now_ns)))
        .collect()
}

/// [`rows`] of the pinned tables.
pub fn rows_pinned(dir: &Path, now_ns: u64) -> Result<Vec<FlowRow>, Error> {
    Ok(rows(&read_pinned(dir)?, &read_pinned6(dir)?, now_ns))
}

/// `fastpath flows`.
pub fn list_pinned(dir: &Path, format: Format, now_ns: u64) -> Result<String, Error> {
    let rows = rows_pinned(dir, now_ns)?;
    output::render(&rows, format, |rows| format_table(rows))
}

/// One flow direction as `flows` lists it (`-o json|yaml`: one object each), of either family.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowRow {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `dccp`, `udplite` or the protocol number.
    pub protocol: String,
    /// The protocol's number.
    pub protocol_number: u8,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    /// `approved` or `closing`.
    pub state: String,
    /// Where its packets may arrive from, in words.
    pub arrives: String,
    /// Whether conntrack translates it; `to_*` is what it leaves as (IPv6: the kernel carries
    /// a translated direction, and `to_*` is its own tuple).
    pub nat: bool,
    pub to_src: IpAddr,
    pub to_sport: u16,
    pub to_dst: IpAddr,
    pub to_dport: u16,
    /// Seconds since the fast path last carried a packet of it; `null` when it has carried none.
    pub idle_seconds: Option<u64>,
    pub fast_packets: u64,
    pub kernel_packets: u64,
}

impl FlowRow {
    pub fn new(f: &Flow, now_ns: u64) -> Self {
        let to = f.value.leaves_as(&f.key);
        Self {
            protocol: protocol_name(f.key.protocol),
            protocol_number: f.key.protocol,
            src: Ipv4Addr::from(f.key.src).into(),
            sport: f.key.sport,
            dst: Ipv4Addr::from(f.key.dst).into(),
            dport: f.key.dport,
            state: f.state_name().to_string(),
            arrives: arrival_words(&f.value),
            nat: f.value.nat != 0,
            to_src: Ipv4Addr::from(to.src).into(),
            to_sport: to.sport,
            to_dst: Ipv4Addr::from(to.dst).into(),
            to_dport: to.dport,
            idle_seconds: idle_secs(f.value.last_seen_ns, now_ns),
            fast_packets: f.value.fast_packets,
            kernel_packets: f.value.kernel_packets,
        }
    }

    pub fn new6(f: &Flow6, now_ns: u64) -> Self {
        let (src, dst) = (Ipv6Addr::from(f.key.src).into(), Ipv6Addr::from(f.key.dst).into());
        Self {
            protocol: protocol_name(f.key.protocol),
            protocol_number: f.key.protocol,
            src,
            sport: f.key.sport,
            dst,
            dport: f.key.dport,
            state: state_name(f.value.state).to_string(),
            arrives: arrival_words6(&f.value),
            nat: f.value.translated != 0,
            to_src: src,
            to_sport: f.key.sport,
            to_dst: dst,
            to_dport: f.key.dport,
            idle_seconds: idle_secs(f.value.last_seen_ns, now_ns),
            fast_packets: f.value.fast_packets,
            kernel_packets: f.value.kernel_packets,
        }
    }

    /// One line naming the direction ([`describe`]'s).
    pub fn describe(&self) -> String {
        describe_parts(self.protocol_number, (self.src, self.sport), (self.dst, self.dport))
    }

    /// What it leaves as, in words: `-` without NAT; for IPv6, that the kernel carries it.
    pub fn leaves(&self) -> String {
        match (self.nat, self.src) {
            (false, _) => "-".into(),
            (true, IpAddr::V6(_)) => "translated: the kernel carries it".into(),
            (true, IpAddr::V4(_)) => format!(
                "{} → {}",
                end(self.to_src, self.to_sport, self.protocol_number),
                end(self.to_dst, self.to_dport, self.protocol_number)
            ),
        }
    }
}

pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        PROTO_TCP => "tcp".into(),
        PROTO_UDP => "udp".into(),
        PROTO_ICMP => "icmp".into(),
        NEXT_ICMPV6 => "icmpv6".into(),
        PROTO_SCTP => "sctp".into(),
        PROTO_DCCP => "dccp".into(),
        PROTO_UDPLITE => "udplite".into(),
        other => other.to_string(),
    }
}

fn is_icmp(protocol: u8) -> bool {
    matches!(protocol, PROTO_ICMP | NEXT_ICMPV6)
}

/// One end of a direction: an address and its port (for an ICMP echo, the address alone).
fn end(addr: IpAddr, port: u16, protocol: u8) -> String {
    match (is_icmp(protocol), addr) {
        (true, _) => addr.to_string(),
        (false, IpAddr::V4(a)) => format!("{a}:{port}"),
        (false, IpAddr::V6(a)) => format!("[{a}]:{port}"),
    }
}

/// An ICMP echo's identifier and type (`sport`, `dport`) in words.
fn icmp_words(protocol: u8, sport: u16, dport: u16) -> String {
    let kind = match (protocol, dport as u8) {
        (PROTO_ICMP, ICMP_ECHO_REQUEST) | (NEXT_ICMPV6, ICMPV6_ECHO_REQUEST) => "echo request",
        (PROTO_ICMP, ICMP_ECHO_REPLY) | (NEXT_ICMPV6, ICMPV6_ECHO_REPLY) => "echo reply",
        _ => "type",
    };
    format!(" ({kind} id {sport})")
}

fn describe_parts(protocol: u8, (src, sport): (IpAddr, u16), (dst, dport): (IpAddr, u16)) -> String {
    let icmp = if is_icmp(protocol) { icmp_words(protocol, sport, dport) } else { String::new() };
    format!("{} {} → {}{icmp}", protocol_name(protocol), end(src, sport, protocol), end(dst, dport, protocol))
}

/// One line naming a flow direction: `tcp 10.244.40.36:40000 → 10.244.166.150:80`.
pub fn describe(key: &FlowKey) -> String {
    describe_parts(
        key.protocol,
        (Ipv4Addr::from(key.src).into(), key.sport),
        (Ipv4Addr::from(key.dst).into(), key.dport),
    )
}

/// [`describe`] for an IPv6 direction: `tcp [fd00:10:244::24]:40000 → [fd00:10:244:1::9]:80`.
pub fn describe6(key: &FlowKey6) -> String {
    describe_parts(
        key.protocol,
        (Ipv6Addr::from(key.src).into(), key.sport),
        (Ipv6Addr::from(key.dst).into(), key.dport),
    )
}

fn arrival_parts(arrival: u8, ifindex: u32, peer: IpAddr) -> String {
    match Arrival::of(arrival) {
        Some(Arrival::Pod) => format!("from a pod, on ifindex {ifindex}"),
        Some(Arrival::Plain) => format!("plain from {peer} on the underlay"),
        Some(Arrival::Ipip) => format!("in IPIP from {peer}"),
        Some(Arrival::Vxlan) => format!("in VXLAN from {peer}"),
        None => format!("unknown ({arrival})"),
    }
}

/// Where a direction's packets may arrive from, in words.
pub fn arrival_words(value: &FlowValue) -> String {
    arrival_parts(value.arrival, value.ifindex, Ipv4Addr::from(value.peer).into())
}

/// [`arrival_words`] for an IPv6 direction.
pub fn arrival_words6(value: &FlowValue6) -> String {
    arrival_parts(value.arrival, value.ifindex, Ipv6Addr::from(value.peer).into())
}

/// How many flow directions are approved, and how many closing.
pub fn census(rows: &[FlowRow]) -> (usize, usize) {
    let count = |state: FlowState| rows.iter().filter(|r| r.state == state.as_str()).count();
    (count(FlowState::Approved), count(FlowState::Closing))
}

pub fn format_table(rows: &[FlowRow]) -> String {
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.protocol.clone(),
                end(r.src, r.sport, r.protocol_number),
                end(r.dst, r.dport, r.protocol_number),
                r.state.clone(),
                r.arrives.clone(),
                r.leaves(),
                r.idle_seconds.map_or("-".to_string(), |s| format!("{s}s")),
                r.fast_packets.to_string(),
                r.kernel_packets.to_string(),
            ]
        })
        .collect();
    let header =
        ["PROTO", "SOURCE", "DESTINATION", "STATE", "ARRIVES", "LEAVES AS", "IDLE", "FAST", "KERNEL"];
    // Each column as wide as its widest cell (an IPv6 end is far wider than an IPv4 one).
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 9], tail: &str| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            // The counts are right-aligned.
            let _ = if i >= 6 { write!(out, "{cell:>width$} ") } else { write!(out, "{cell:<width$} ") };
        }
        format!("{}{tail}\n", out.trim_end())
    };
    let mut out = line(header, "");
    for (r, row) in rows.iter().zip(&cells) {
        let icmp = if is_icmp(r.protocol_number) {
            icmp_words(r.protocol_number, r.sport, r.dport)
        } else {
            String::new()
        };
        out.push_str(&line(row.each_ref().map(String::as_str), &icmp));
    }
    let (approved, closing) = census(rows);
    let _ = writeln!(out, "{} flow directions: {approved} approved, {closing} closing", rows.len());
    out
}

#[cfg(test)]
mod tests {
    use fastpath_common::flow::Arrived;

    use super::*;

    fn flow(to_port: u16, state: FlowState) -> Flow {
        let key = FlowKey::new([10, 244, 40, 36], [10, 96, 0, 10], PROTO_TCP, (40000, 80));
        let to = FlowKey::new([10, 244, 40, 36], [10, 244, 166, 150], PROTO_TCP, (40000, to_port));
        let value = FlowValue {
            state: state as u8,
            last_seen_ns: 1_000_000_000,
            fast_packets: 7,
            kernel_packets: 1,
            ..FlowValue::approved(&key, &Arrived::from_pod(5), &to)
        };
        Flow { key, value }
    }

    #[test]
    fn the_table_names_each_direction_its_arrival_and_its_translation() {
        let now = 4_000_000_000;
        let table = format_table(&[
            FlowRow::new(&flow(8080, FlowState::Approved), now),
            FlowRow::new(&flow(80, FlowState::Closing), now),
        ]);
        assert!(table.contains("10.244.40.36:40000"), "{table}");
        assert!(table.contains("from a pod, on ifindex 5"), "{table}");
        assert!(table.contains("10.244.40.36:40000 → 10.244.166.150:8080"), "{table}");
        assert!(table.contains("3s"), "{table}");
        assert!(table.ends_with("2 flow directions: 1 approved, 1 closing\n"), "{table}");
    }

    #[test]
    fn json_has_one_object_per_direction() {
        let row = FlowRow::new(&flow(8080, FlowState::Approved), 1_000_000_000);
        let json = output::json(std::slice::from_ref(&row)).unwrap();
        assert_eq!(serde_json::from_str::<Vec<FlowRow>>(&json).unwrap(), [row]);
        assert_eq!(
            json,
            r#"[{"protocol":"tcp","protocol_number":6,"src":"10.244.40.36","sport":40000,"dst":"10.96.0.10","dport":80,"state":"approved","arrives":"from a pod, on ifindex 5","nat":true,"to_src":"10.244.40.36","to_sport":40000,"to_dst":"10.244.166.150","to_dport":8080,"idle_seconds":0,"fast_packets":7,"kernel_packets":1}]"#
        );
    }

    #[test]
    fn icmp_echo_is_named_by_its_identifier_and_type() {
        let key = FlowKey::new([10, 244, 40, 36], [10, 244, 166, 150], PROTO_ICMP, (77, 8));
        assert_eq!(describe(&key), "icmp 10.244.40.36 → 10.244.166.150 (echo request id 77)");
        let pod: Ipv6Addr = "fd00:10:244::24".parse().unwrap();
        let remote: Ipv6Addr = "fd00:10:244:1::9".parse().unwrap();
        let key6 = FlowKey6::new(pod.octets(), remote.octets(), NEXT_ICMPV6, (77, 129));
        assert_eq!(describe6(&key6), "icmpv6 fd00:10:244::24 → fd00:10:244:1::9 (echo reply id 77)");
    }

    #[test]
    fn ipv6_directions_are_listed_beside_ipv4_ones_in_columns_that_fit_them() {
        use fastpath_common::flow6::Arrived6;
        let pod: Ipv6Addr = "fd00:10:244::24".parse().unwrap();
        let remote: Ipv6Addr = "fd00:10:244:1::9".parse().unwrap();
        let node: Ipv6Addr = "fd00:10:101::51".parse().unwrap();
        let key = FlowKey6::new(remote.octets(), pod.octets(), PROTO_TCP, (8080, 40000));
        let value = FlowValue6 {
            fast_packets: 12,
            ..FlowValue6::approved(&Arrived6::from_underlay(Arrival::Vxlan, node.octets()), false)
        };
        let rows =
            [FlowRow::new(&flow(8080, FlowState::Approved), 0), FlowRow::new6(&Flow6 { key, value }, 0)];
        let table = format_table(&rows);
        assert!(table.contains("[fd00:10:244:1::9]:8080"), "{table}");
        assert!(table.contains("in VXLAN from fd00:10:101::51"), "{table}");
        let lines: Vec<&str> = table.lines().collect();
        let column = |line: &str, cell: &str| line.find(cell).unwrap();
        assert_eq!(column(lines[0], "STATE"), column(lines[2], "approved"), "{table}");
        assert_eq!(column(lines[1], "approved"), column(lines[2], "approved"), "{table}");
        assert!(table.ends_with("2 flow directions: 2 approved, 0 closing\n"), "{table}");
        let translated = FlowRow::new6(&Flow6 { key, value: FlowValue6 { translated: 1, ..value } }, 0);
        assert_eq!(translated.leaves(), "translated: the kernel carries it");
        let json = output::json(std::slice::from_ref(&rows[1])).unwrap();
        assert!(json.contains(r#""src":"fd00:10:244:1::9""#), "{json}");
    }
}
