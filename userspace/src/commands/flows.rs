//! `fastpath flows`: the flow table of `--trust kernel`, read from the pinned map, and the
//! summary `explain` and `status` give of it.

use std::{fmt::Write as _, net::Ipv4Addr, path::Path};

use aya::maps::{HashMap, MapData};
use fastpath_common::{
    flow::{FlowKey, FlowState, FlowValue},
    ipv4::{PROTO_ICMP, PROTO_TCP, PROTO_UDP},
    maps::FLOWS,
};

use crate::{commands::show, dataplane::bpffs, Error};

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

    /// Seconds since an ingress program last saw it, as of `now_ns` (`CLOCK_MONOTONIC`).
    fn idle_secs(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.value.last_seen_ns) / 1_000_000_000
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
pub fn list_pinned(dir: &Path, json: bool, now_ns: u64) -> Result<String, Error> {
    let flows = read_pinned(dir)?;
    Ok(if json { format_json(&flows, now_ns) } else { format_table(&flows, now_ns) })
}

pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        PROTO_TCP => "tcp".into(),
        PROTO_UDP => "udp".into(),
        PROTO_ICMP => "icmp".into(),
        other => other.to_string(),
    }
}

fn endpoint(addr: [u8; 4], port: u16, protocol: u8) -> String {
    match protocol {
        PROTO_TCP | PROTO_UDP => format!("{}:{port}", Ipv4Addr::from(addr)),
        PROTO_ICMP => format!("{} id {port}", Ipv4Addr::from(addr)),
        _ => Ipv4Addr::from(addr).to_string(),
    }
}

/// One line naming a flow direction: `tcp 10.244.40.36:40000 → 10.244.166.150:80`.
pub fn describe(key: &FlowKey) -> String {
    format!(
        "{} {} → {}",
        protocol_name(key.protocol),
        endpoint(key.src, key.sport, key.protocol),
        endpoint(key.dst, key.dport, key.protocol)
    )
}

/// How many flow directions are in each state: approved, pending, kernel-owned, closing.
pub fn census(flows: &[Flow]) -> [usize; 4] {
    let mut counts = [0; 4];
    for flow in flows {
        if let Some(state) = flow.state() {
            counts[state as usize] += 1;
        }
    }
    [counts[1], counts[0], counts[2], counts[3]]
}

pub fn format_table(flows: &[Flow], now_ns: u64) -> String {
    let mut out = format!(
        "{:<5} {:<27} {:<27} {:<13} {:>6} {:>10} {:>8}\n",
        "PROTO", "SOURCE", "DESTINATION", "STATE", "IDLE", "FAST", "KERNEL"
    );
    for f in flows {
        let _ = writeln!(
            out,
            "{:<5} {:<27} {:<27} {:<13} {:>5}s {:>10} {:>8}",
            protocol_name(f.key.protocol),
            endpoint(f.key.src, f.key.sport, f.key.protocol),
            endpoint(f.key.dst, f.key.dport, f.key.protocol),
            f.state_name(),
            f.idle_secs(now_ns),
            f.value.fast_packets,
            f.value.kernel_packets
        );
    }
    let [approved, pending, owned, closing] = census(flows);
    let _ = writeln!(
        out,
        "{} flow directions: {approved} approved, {pending} pending, {owned} kernel-owned, {closing} closing",
        flows.len()
    );
    out
}

pub fn format_json(flows: &[Flow], now_ns: u64) -> String {
    let items: Vec<String> = flows
        .iter()
        .map(|f| {
            format!(
                r#"{{"protocol":{},"src":"{}","sport":{},"dst":"{}","dport":{},"state":{},"idle_seconds":{},"fast_packets":{},"kernel_packets":{}}}"#,
                show::json_string(&protocol_name(f.key.protocol)),
                Ipv4Addr::from(f.key.src),
                f.key.sport,
                Ipv4Addr::from(f.key.dst),
                f.key.dport,
                show::json_string(f.state_name()),
                f.idle_secs(now_ns),
                f.value.fast_packets,
                f.value.kernel_packets
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(state: FlowState, sport: u16) -> Flow {
        Flow {
            key: FlowKey::new([10, 244, 40, 36], [10, 244, 166, 150], PROTO_TCP, (sport, 80)),
            value: FlowValue { fast_packets: 7, kernel_packets: 1, ..FlowValue::new(state, 1_000_000_000) },
        }
    }

    #[test]
    fn the_table_names_each_direction_and_counts_the_states() {
        let flows = [flow(FlowState::Approved, 40000), flow(FlowState::KernelOwned, 40001)];
        let table = format_table(&flows, 4_000_000_000);
        assert!(table.contains("10.244.40.36:40000"), "{table}");
        assert!(table.contains("approved"), "{table}");
        assert!(table.contains("kernel-owned"), "{table}");
        assert!(table.contains("3s"), "{table}");
        assert!(
            table.ends_with("2 flow directions: 1 approved, 0 pending, 1 kernel-owned, 0 closing\n"),
            "{table}"
        );
    }

    #[test]
    fn json_has_one_object_per_direction() {
        let json = format_json(&[flow(FlowState::Pending, 40000)], 1_000_000_000);
        assert_eq!(
            json,
            r#"[{"protocol":"tcp","src":"10.244.40.36","sport":40000,"dst":"10.244.166.150","dport":80,"state":"pending","idle_seconds":0,"fast_packets":7,"kernel_packets":1}]"#
        );
    }

    #[test]
    fn icmp_echo_is_named_by_its_identifier() {
        let key = FlowKey::new([10, 244, 40, 36], [10, 244, 166, 150], PROTO_ICMP, (77, 77));
        assert_eq!(describe(&key), "icmp 10.244.40.36 id 77 → 10.244.166.150 id 77");
    }
}
