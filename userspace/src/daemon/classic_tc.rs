//! Classic tc on a pod's interface (pure): a bandwidth limit (Calico's QoS puts a TBF root qdisc
//! on the `cali*` for traffic into the pod, and an ingress qdisc whose u32 filter redirects the
//! pod's traffic through an IFB device with its own TBF), or any other qdisc, filter or action.
//! The fast path would skip all of it (`bpf_redirect_peer` skips the host veth's qdisc, and a
//! redirect never meets a filter), so such an endpoint's traffic stays with the kernel, both ways.

use crate::{
    dataplane::{legacy_tc, loader::HOOKS},
    model::tc::TcObject,
};

const TC_H_ROOT: u32 = 0xFFFF_FFFF;
const TC_H_INGRESS: u32 = 0xFFFF_FFF1;

/// Qdiscs that only hold filters (clsact, ingress) or do nothing (noqueue): not configuration by
/// themselves, whatever their handle.
const HOOK_QDISCS: [&str; 3] = ["clsact", "ingress", "noqueue"];

/// The classic tc configuration of an interface with these qdiscs and these filters (on its
/// ingress and egress hooks), in words; `None` when it has none. The kernel's default root qdisc
/// (handle 0: noqueue on a veth, or pfifo_fast, mq) is not configuration; nor are fastpath's own
/// filters under legacy tc.
pub fn describe(qdiscs: &[TcObject], filters: &[TcObject]) -> Option<String> {
    if let Some(q) = qdiscs.iter().find(|q| q.handle != 0 && !HOOK_QDISCS.contains(&q.kind.as_str())) {
        return Some(format!("qdisc {} {} {}", q.kind, handle(q.handle), parent(q.parent)));
    }
    // A dump lists each filter type's priority (handle 0) before its filters: the filters are
    // what counts.
    let filter = filters.iter().find(|f| f.handle != 0 && !is_ours(f))?;
    let hook = if filter.parent & 0xFFFF == 0xFFF3 { "egress" } else { "ingress" };
    Some(format!("filter {} (priority {}) on {hook}", filter.kind, filter.priority))
}

/// One of fastpath's own `cls_bpf` filters (legacy tc): its priority and one of its handles.
fn is_ours(filter: &TcObject) -> bool {
    filter.kind == "bpf"
        && filter.priority == legacy_tc::PRIORITY
        && HOOKS.iter().any(|(name, _)| u32::from(legacy_tc::handle(name)) == filter.handle)
}

fn handle(h: u32) -> String {
    format!("{:x}:", h >> 16)
}

fn parent(p: u32) -> String {
    match p {
        TC_H_ROOT => "root".into(),
        TC_H_INGRESS => "ingress".into(),
        other => format!("parent {:x}:{:x}", other >> 16, other & 0xFFFF),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qdisc(kind: &str, handle: u32, parent: u32) -> TcObject {
        TcObject { kind: kind.into(), handle, parent, priority: 0 }
    }

    fn filter(kind: &str, handle: u32, parent: u32, priority: u16) -> TcObject {
        TcObject { kind: kind.into(), handle, parent, priority }
    }

    #[test]
    fn a_veths_defaults_and_bare_hooks_are_no_configuration() {
        let defaults = [qdisc("noqueue", 0, TC_H_ROOT), qdisc("clsact", 0xFFFF_0000, TC_H_INGRESS)];
        assert_eq!(describe(&defaults, &[]), None);
        assert_eq!(describe(&[qdisc("pfifo_fast", 0, TC_H_ROOT)], &[]), None);
        assert_eq!(describe(&[qdisc("ingress", 0xFFFF_0000, TC_H_INGRESS)], &[]), None);
    }

    #[test]
    fn calicos_bandwidth_limits_are_configuration() {
        // Ingress bandwidth: TBF at the root of the cali interface.
        assert_eq!(
            describe(&[qdisc("tbf", 0x8001_0000, TC_H_ROOT)], &[]),
            Some("qdisc tbf 8001: root".into())
        );
        // Egress bandwidth: an ingress qdisc whose u32 filter redirects to an IFB device.
        let hook = [qdisc("ingress", 0xFFFF_0000, TC_H_INGRESS)];
        let u32_filter = filter("u32", 0x8000_0800, 0xFFFF_FFF2, 49152);
        assert_eq!(describe(&hook, &[u32_filter]), Some("filter u32 (priority 49152) on ingress".into()));
    }

    #[test]
    fn fastpaths_own_legacy_filters_are_not_configuration() {
        let clsact = [qdisc("clsact", 0xFFFF_0000, TC_H_INGRESS)];
        let ours = filter("bpf", 1, 0xFFFF_FFF2, legacy_tc::PRIORITY);
        let its_priority = filter("bpf", 0, 0xFFFF_FFF2, legacy_tc::PRIORITY);
        assert_eq!(describe(&clsact, &[its_priority, ours.clone()]), None);
        let someone_elses = filter("bpf", 7, 0xFFFF_FFF3, 2);
        assert_eq!(
            describe(&clsact, &[ours, someone_elses]),
            Some("filter bpf (priority 2) on egress".into())
        );
    }
}
