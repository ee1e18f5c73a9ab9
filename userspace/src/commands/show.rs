//! Route table entries in words, for `fastpath routes` (pure).

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use fastpath_common::{
    maps::Endpoint,
    route::{self, RouteKind, RouteValue, ROUTE_F_VXLAN},
    route6::RouteValue6,
    tunnel::Tunnel,
    Reason,
};

use crate::{
    model::route::{Prefix, Prefix6},
    text::mac_string,
};

/// One entry, in words: a row of `fastpath routes` (and `endpoints`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteRow {
    /// `ADDR/LEN`.
    pub prefix: String,
    /// `local`, `remote`, `blackhole` or `kernel`.
    pub kind: String,
    /// The pod's interface, for a local entry (or a kernel entry of a pod).
    pub iface: Option<String>,
    pub ifindex: Option<u32>,
    /// The pod's MAC, or for a VXLAN block the other node's VTEP MAC.
    pub mac: Option<String>,
    /// The node a remote block is routed via.
    pub next_hop: Option<IpAddr>,
    /// For a remote block: `ipip`, `vxlan` or `none`.
    pub encap: Option<String>,
    /// For a "kernel" entry: why the kernel routes it.
    pub why: Option<String>,
}

/// Why the kernel routes to a "kernel" entry, in words (`None` for other kinds).
pub fn kernel_why(value: &RouteValue) -> Option<&'static str> {
    if value.kind != RouteKind::Kernel as u32 {
        return None;
    }
    let reason = value.kernel_reason();
    Some(if reason == Reason::PassKernelRoute && value.ifindex != 0 {
        "MAC not known yet"
    } else {
        kernel_words(reason)
    })
}

/// Why the kernel routes a "kernel" entry of either family, in words.
fn kernel_words(reason: Reason) -> &'static str {
    match reason {
        Reason::PassEndpointTc => "classic tc configuration",
        Reason::PassPolicyRoute => "an ip rule routes it through another table",
        Reason::PassMapOverflow => "the route map had no room for a prefix inside it",
        _ => "the kernel's route",
    }
}

pub fn kind_name(kind: u32) -> &'static str {
    match RouteKind::try_from(kind) {
        Ok(RouteKind::Kernel) => "kernel",
        Ok(RouteKind::LocalEndpoint) => "local",
        Ok(RouteKind::RemoteBlock) => "remote",
        Ok(RouteKind::Blackhole) => "blackhole",
        Err(_) => "unknown",
    }
}

/// Describe an entry; `ifname` names an ifindex (in the caller's namespace).
pub fn row(prefix: Prefix, value: &RouteValue, ifname: impl Fn(u32) -> Option<String>) -> RouteRow {
    let kind = RouteKind::try_from(value.kind);
    let has_iface =
        matches!(kind, Ok(RouteKind::LocalEndpoint)) || (kind == Ok(RouteKind::Kernel) && value.ifindex != 0);
    RouteRow {
        prefix: format!("{}/{}", prefix.1, prefix.0),
        kind: kind_name(value.kind).to_string(),
        iface: has_iface.then(|| ifname(value.ifindex)).flatten(),
        ifindex: has_iface.then_some(value.ifindex),
        mac: match kind {
            Ok(RouteKind::LocalEndpoint) => Some(mac_string(value.mac)),
            _ => vtep_mac(value),
        },
        next_hop: (kind == Ok(RouteKind::RemoteBlock)).then(|| Ipv4Addr::from(value.next_hop).into()),
        encap: (kind == Ok(RouteKind::RemoteBlock)).then(|| value.encap_name().to_string()),
        why: kernel_why(value).map(str::to_string),
    }
}

/// An `FP_ROUTES6` entry in words, as a row of `fastpath routes`.
pub fn row6((len, addr): Prefix6, value: &RouteValue6) -> RouteRow {
    let remote = value.kind == RouteKind::RemoteBlock as u32;
    let vxlan = remote && value.flags & ROUTE_F_VXLAN != 0;
    RouteRow {
        prefix: format!("{addr}/{len}"),
        kind: kind_name(value.kind).to_string(),
        iface: None,
        ifindex: None,
        mac: vxlan.then(|| mac_string(value.mac)),
        next_hop: remote.then(|| Ipv6Addr::from(value.next_hop).into()),
        encap: remote.then(|| if vxlan { Tunnel::Vxlan.name() } else { "none" }.to_string()),
        why: (value.kind == RouteKind::Kernel as u32)
            .then(|| kernel_words(route::kernel_reason(value.flags)).to_string()),
    }
}

/// A pod's IPv6 address as `FP_ENDPOINTS6` holds it, as a row of `fastpath endpoints`.
pub fn endpoint6_row(addr: Ipv6Addr, e: &Endpoint, ifname: impl Fn(u32) -> Option<String>) -> RouteRow {
    RouteRow {
        prefix: format!("{addr}/128"),
        kind: kind_name(RouteKind::LocalEndpoint as u32).to_string(),
        iface: ifname(e.ifindex),
        ifindex: Some(e.ifindex),
        mac: Some(mac_string(e.mac)),
        next_hop: None,
        encap: None,
        why: None,
    }
}

/// The other node's `vxlan.calico` MAC, for a VXLAN remote block.
pub fn vtep_mac(value: &RouteValue) -> Option<String> {
    let remote = value.kind == RouteKind::RemoteBlock as u32;
    match value.tunnel() {
        Ok(Some(Tunnel::Vxlan)) if remote => Some(mac_string(value.mac)),
        _ => None,
    }
}

pub fn table(rows: &[RouteRow]) -> String {
    // IPv4's widths, wider where an IPv6 prefix or node needs it.
    let prefix_width = rows.iter().map(|r| r.prefix.len()).max().unwrap_or(0).max(20);
    let hop_width =
        rows.iter().filter_map(|r| r.next_hop).map(|h| h.to_string().len()).max().unwrap_or(0).max(16);
    let mut out = format!(
        "{:<prefix_width$} {:<10} {:<22} {:<18} {:<hop_width$} {}\n",
        "PREFIX", "KIND", "INTERFACE", "MAC", "NEXT HOP", "ENCAP"
    );
    for r in rows {
        let iface = match (&r.iface, r.ifindex) {
            (Some(name), Some(index)) => format!("{name} ({index})"),
            (None, Some(index)) => format!("ifindex {index}"),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<prefix_width$} {:<10} {:<22} {:<18} {:<hop_width$} {}",
            r.prefix,
            r.kind,
            iface,
            r.mac.as_deref().unwrap_or("-"),
            r.next_hop.map_or("-".to_string(), |h| h.to_string()),
            r.encap.as_deref().unwrap_or("-")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(index: u32) -> Option<String> {
        (index == 7).then(|| "cali0f293e89ca7".to_string())
    }

    #[test]
    fn a_local_endpoint_in_words() {
        let value = RouteValue::local(7, [0x86, 0x79, 0x13, 0x2b, 0x26, 0x1d]);
        let r = row((32, Ipv4Addr::new(10, 244, 40, 36)), &value, name);
        assert_eq!(r.prefix, "10.244.40.36/32");
        assert_eq!(r.kind, "local");
        assert_eq!(r.iface.as_deref(), Some("cali0f293e89ca7"));
        assert_eq!(r.mac.as_deref(), Some("86:79:13:2b:26:1d"));
        assert_eq!(r.next_hop, None);
    }

    #[test]
    fn a_remote_block_in_words_and_json() {
        let value = RouteValue::remote([10, 101, 14, 51], true);
        let r = row((26, Ipv4Addr::new(10, 244, 166, 128)), &value, name);
        assert_eq!(r.next_hop, Some(Ipv4Addr::new(10, 101, 14, 51).into()));
        assert_eq!(r.encap.as_deref(), Some("ipip"));
        let json = serde_json::to_string(std::slice::from_ref(&r)).unwrap();
        assert_eq!(
            json,
            r#"[{"prefix":"10.244.166.128/26","kind":"remote","iface":null,"ifindex":null,"mac":null,"next_hop":"10.101.14.51","encap":"ipip","why":null}]"#
        );
        assert_eq!(serde_json::from_str::<Vec<RouteRow>>(&json).unwrap(), std::slice::from_ref(&r));
        let t = table(&[r]);
        assert!(t.lines().nth(1).unwrap().contains("10.101.14.51"), "{t}");
    }

    #[test]
    fn a_vxlan_block_names_its_vtep() {
        let value = RouteValue::vxlan([10, 101, 14, 51], [0x66, 0, 10, 101, 14, 51]);
        let r = row((26, Ipv4Addr::new(10, 244, 166, 128)), &value, name);
        assert_eq!(r.encap.as_deref(), Some("vxlan"));
        assert_eq!(r.mac.as_deref(), Some("66:00:0a:65:0e:33"));
        assert_eq!(r.next_hop, Some(Ipv4Addr::new(10, 101, 14, 51).into()));
        let pending = row((26, Ipv4Addr::new(10, 244, 7, 0)), &RouteValue::kernel(), name);
        assert_eq!((pending.kind.as_str(), pending.iface, pending.encap), ("kernel", None, None));
        assert_eq!(pending.why.as_deref(), Some("the kernel's route"));
        let shaped = row((32, Ipv4Addr::new(10, 244, 40, 36)), &RouteValue::local_with_tc(7), name);
        assert_eq!(shaped.why.as_deref(), Some("classic tc configuration"));
        let ruled = row((26, Ipv4Addr::new(10, 244, 7, 0)), &RouteValue::policy(0), name);
        assert_eq!(ruled.why.as_deref(), Some("an ip rule routes it through another table"));
    }

    #[test]
    fn a_pending_local_pod_names_its_interface() {
        let r = row((32, Ipv4Addr::new(10, 244, 40, 37)), &RouteValue::local_pending(7), name);
        assert_eq!(r.kind, "kernel");
        assert_eq!(r.iface.as_deref(), Some("cali0f293e89ca7"));
        assert_eq!(r.mac, None);
    }

    #[test]
    fn ipv6_entries_in_words_and_the_table_widens_for_them() {
        let block: Ipv6Addr = "fd5f:a1b2:c3d4::af4:a680".parse().unwrap();
        let node: Ipv6Addr = "fd00:101::a65:e33".parse().unwrap();
        let vtep = [0x66, 6, 10, 101, 14, 51];
        let vxlan = row6((122, block), &RouteValue6::vxlan(node.octets(), vtep));
        assert_eq!((vxlan.prefix.as_str(), vxlan.kind.as_str()), ("fd5f:a1b2:c3d4::af4:a680/122", "remote"));
        assert_eq!(vxlan.next_hop, Some(node.into()));
        assert_eq!(
            (vxlan.encap.as_deref(), vxlan.mac.as_deref()),
            (Some("vxlan"), Some("66:06:0a:65:0e:33"))
        );
        let plain = row6((122, block), &RouteValue6::plain(node.octets()));
        assert_eq!((plain.encap.as_deref(), plain.mac), (Some("none"), None));
        let own = row6((128, block), &RouteValue6::kernel(0));
        assert_eq!((own.kind.as_str(), own.why.as_deref()), ("kernel", Some("the kernel's route")));
        assert_eq!(row6((122, block), &RouteValue6::blackhole()).kind, "blackhole");
        let text = table(&[vxlan, own]);
        let lines: Vec<&str> = text.lines().collect();
        let column = |line: &str, word: &str| line.find(word).unwrap();
        assert_eq!(column(lines[0], "KIND"), column(lines[1], "remote"), "{text}");
        assert_eq!(column(lines[0], "ENCAP"), column(lines[1], "vxlan"), "{text}");
    }
}
