//! `fastpath flows`: the flow table of `--trust kernel` (the directions the kernel's conntrack
//! holds confirmed entries for, as the daemon wrote them), read from the pinned map, and the
//! summary `explain` and `status` give of it.

use std::{fmt::Write as _, net::Ipv4Addr, path::Path};

use aya::maps::{HashMap, MapData};
use fastpath_common::{
    flow::{
        Arrival, FlowKey, FlowState, FlowValue, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, PROTO_DCCP, PROTO_ICMP,
        PROTO_SCTP, PROTO_TCP, PROTO_UDP, PROTO_UDPLITE,
    },
    ipv6::NEXT_ICMPV6,
    maps::FLOWS,
};

use crate::{
    dataplane::bpffs,
    output::{self, Format},
    Error,
};

/// One flow direction as the table holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub key: FlowKey,
    pub value: FlowValue,
}

impl Flow {
    pub fn state(&self) -> Option<FlowState> {
        FlowState::try_from(self.value.state).ok()
    }

    pub fn state_name(&self) -> &'static str {
        self.state().map_or("unknown", FlowState::as_str)
    }

    /// Seconds since the fast path last carried a packet of it, as of `now_ns`
    /// (`CLOCK_MONOTONIC`); `None` when it has carried none.
    fn idle_secs(&self, now_ns: u64) -> Option<u64> {
        (self.value.last_seen_ns != 0).then(|| now_ns.saturating_sub(self.value.last_seen_ns) / 1_000_000_000)
    }
}

/// Every entry of the pinned flow table, sorted by source, destination and ports.
pub fn read_pinned(dir: &Path) -> Result<Vec<Flow>, Error> {
    let map: HashMap<MapData, FlowKey, FlowValue> = bpffs::open_pinned_as(dir, FLOWS)?;
    // Entries evicted or deleted while we walk the table are skipped, not an error.
    let mut flows: Vec<Flow> =
        map.iter().filter_map(Result::ok).map(|(key, value)| Flow { key, value }).collect();
    flows.sort_by_key(|f| f.key);
    Ok(flows)
}

/// `fastpath flows`.
pub fn list_pinned(dir: &Path, format: Format, now_ns: u64) -> Result<String, Error> {
    let flows = read_pinned(dir)?;
    let rows: Vec<FlowRow> = flows.iter().map(|f| FlowRow::new(f, now_ns)).collect();
    output::render(&rows, format, |_| format_table(&flows, now_ns))
}

/// One flow direction as `flows -o json|yaml` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowRow {
    /// `tcp`, `udp`, `icmp`, `sctp`, `dccp`, `udplite` or the protocol number.
    pub protocol: String,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
    /// `approved` or `closing`.
    pub state: String,
    /// Where its packets may arrive from, in words.
    pub arrives: String,
    /// Whether conntrack translates it; `to_*` is what it leaves as.
    pub nat: bool,
    pub to_src: Ipv4Addr,
    pub to_sport: u16,
    pub to_dst: Ipv4Addr,
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
            src: Ipv4Addr::from(f.key.src),
            sport: f.key.sport,
            dst: Ipv4Addr::from(f.key.dst),
            dport: f.key.dport,
            state: f.state_name().to_string(),
            arrives: arrival_words(&f.value),
            nat: f.value.nat != 0,
            to_src: Ipv4Addr::from(to.src),
            to_sport: to.sport,
            to_dst: Ipv4Addr::from(to.dst),
            to_dport: to.dport,
            idle_seconds: f.idle_secs(now_ns),
            fast_packets: f.value.fast_packets,
            kernel_packets: f.value.kernel_packets,
        }
    }
}

pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        PROTO_TCP => "tcp".into(),
        PROTO_UDP => "udp".into(),
        PROTO_ICMP => "icmp".into(),
        PROTO_SCTP => "sctp".into(),
        PROTO_DCCP => "dccp".into(),
        PROTO_UDPLITE => "udplite".into(),
        NEXT_ICMPV6 => "icmpv6".into(),
        other => other.to_string(),
    }
}

/// One end of a direction: an address and its port (or, for an ICMP echo, its identifier and
/// type on the source side).
fn end(addr: [u8; 4], port: u16, protocol: u8) -> String {
    match protocol {
        PROTO_ICMP => Ipv4Addr::from(addr).to_string(),
        _ => format!("{}:{port}", Ipv4Addr::from(addr)),
    }
}

fn icmp_words(key: &FlowKey) -> String {
    let kind = match key.dport as u8 {
        ICMP_ECHO_REQUEST => "echo request",
        ICMP_ECHO_REPLY => "echo reply",
        _ => "type",
    };
    format!(" ({kind} id {})", key.sport)
}

/// One line naming a flow direction: `tcp 10.244.40.36:40000 → 10.244.166.150:80`.
pub fn describe(key: &FlowKey) -> String {
    let icmp = if key.protocol == PROTO_ICMP { icmp_words(key) } else { String::new() };
    format!(
        "{} {} → {}{icmp}",
        protocol_name(key.protocol),
        end(key.src, key.sport, key.protocol),
        end(key.dst, key.dport, key.protocol)
    )
}

/// Where a direction's packets may arrive from, in words.
pub fn arrival_words(value: &FlowValue) -> String {
    match Arrival::try_from(value.arrival) {
        Ok(Arrival::Pod) => format!("from a pod, on ifindex {}", value.ifindex),
        Ok(Arrival::Plain) => format!("plain from {} on the underlay", Ipv4Addr::from(value.peer)),
        Ok(Arrival::Ipip) => format!("in IPIP from {}", Ipv4Addr::from(value.peer)),
        Ok(Arrival::Vxlan) => format!("in VXLAN from {}", Ipv4Addr::from(value.peer)),
        Err(code) => format!("unknown ({code})"),
    }
}

/// What a direction leaves as, in words: `-` without NAT.
pub fn leaves_words(f: &Flow) -> String {
    if f.value.nat == 0 {
        return "-".into();
    }
    let to = f.value.leaves_as(&f.key);
    format!("{} → {}", end(to.src, to.sport, to.protocol), end(to.dst, to.dport, to.protocol))
}

/// How many flow directions are approved, and how many closing.
pub fn census(flows: &[Flow]) -> (usize, usize) {
    let approved = flows.iter().filter(|f| f.state() == Some(FlowState::Approved)).count();
    let closing = flows.iter().filter(|f| f.state() == Some(FlowState::Closing)).count();
    (approved, closing)
}

pub fn format_table(flows: &[Flow], now_ns: u64) -> String {
    let mut out = format!(
        "{:<5} {:<22} {:<22} {:<9} {:<40} {:<43} {:>6} {:>10} {:>8}\n",
        "PROTO", "SOURCE", "DESTINATION", "STATE", "ARRIVES", "LEAVES AS", "IDLE", "FAST", "KERNEL"
    );
    for f in flows {
        let idle = f.idle_secs(now_ns).map_or("-".to_string(), |s| format!("{s}s"));
        let icmp = if f.key.protocol == PROTO_ICMP { icmp_words(&f.key) } else { String::new() };
        let _ = writeln!(
            out,
            "{:<5} {:<22} {:<22} {:<9} {:<40} {:<43} {:>6} {:>10} {:>8}{icmp}",
            protocol_name(f.key.protocol),
            end(f.key.src, f.key.sport, f.key.protocol),
            end(f.key.dst, f.key.dport, f.key.protocol),
            f.state_name(),
            arrival_words(&f.value),
            leaves_words(f),
            idle,
            f.value.fast_packets,
            f.value.kernel_packets
        );
    }
    let (approved, closing) = census(flows);
    let _ = writeln!(out, "{} flow directions: {approved} approved, {closing} closing", flows.len());
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
        let table =
            format_table(&[flow(8080, FlowState::Approved), flow(80, FlowState::Closing)], 4_000_000_000);
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
            r#"[{"protocol":"tcp","src":"10.244.40.36","sport":40000,"dst":"10.96.0.10","dport":80,"state":"approved","arrives":"from a pod, on ifindex 5","nat":true,"to_src":"10.244.40.36","to_sport":40000,"to_dst":"10.244.166.150","to_dport":8080,"idle_seconds":0,"fast_packets":7,"kernel_packets":1}]"#
        );
    }

    #[test]
    fn icmp_echo_is_named_by_its_identifier_and_type() {
        let key = FlowKey::new([10, 244, 40, 36], [10, 244, 166, 150], PROTO_ICMP, (77, 8));
        assert_eq!(describe(&key), "icmp 10.244.40.36 → 10.244.166.150 (echo request id 77)");
    }
}
