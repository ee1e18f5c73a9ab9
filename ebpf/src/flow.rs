//! `--trust kernel` in the programs: the ingress gate, which lets only approved flows take the
//! fast path, and the egress judge, which approves a flow when the kernel forwards it unchanged
//! (the decisions themselves are `fastpath_common::flow`'s).

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST, TC_ACT_OK},
    helpers::bpf_ktime_get_ns,
    programs::TcContext,
};
use fastpath_common::{
    flow::{self, FlowKey, FlowState, FlowValue, Judgement, Signal},
    ipv4::{Ipv4Fields, HEADER_LEN, PROTO_ICMP, PROTO_TCP, PROTO_UDP},
    maps::NodeConfig,
    Reason,
};

use crate::{maps::FP_FLOWS, parse, stats::Outcome};

/// The flow direction of the option-less IPv4 packet at `l3`, and what its TCP flags say.
#[inline(always)]
pub fn name(ctx: &TcContext, l3: usize, ip: &Ipv4Fields) -> Result<(FlowKey, Signal), Reason> {
    let l4 = l3 + HEADER_LEN;
    let (ports, signal) = match ip.protocol {
        PROTO_TCP => {
            // The flags are the 14th byte of the TCP header.
            let tcp: *const [u8; 14] = parse::header_mut(ctx, l4).ok_or(Reason::PassFlowUntracked)?;
            // SAFETY: bounds-checked by `header_mut`.
            let tcp = unsafe { &*tcp };
            (flow::transport_ports(&[tcp[0], tcp[1], tcp[2], tcp[3]]), Signal::of_tcp_flags(tcp[13]))
        }
        PROTO_UDP => {
            let udp: *const [u8; 4] = parse::header_mut(ctx, l4).ok_or(Reason::PassFlowUntracked)?;
            // SAFETY: bounds-checked by `header_mut`.
            (flow::transport_ports(unsafe { &*udp }), Signal::default())
        }
        PROTO_ICMP => {
            let icmp: *const [u8; 6] = parse::header_mut(ctx, l4).ok_or(Reason::PassFlowUntracked)?;
            // SAFETY: bounds-checked by `header_mut`.
            (flow::icmp_ports(unsafe { &*icmp }).ok_or(Reason::PassFlowUntracked)?, Signal::default())
        }
        _ => ((0, 0), Signal::default()),
    };
    Ok((FlowKey::new(ip.src, ip.dst, ip.protocol, ports), signal))
}

#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: a plain helper call.
    unsafe { bpf_ktime_get_ns() }
}

/// Whether the fast path may carry this packet, whose route allows it: always under `--trust
/// routes`; under `--trust kernel` only when its flow is approved. Any other packet goes to the
/// kernel, remembered as pending, so that the kernel forwarding it approves its flow.
#[inline(always)]
pub fn admit(ctx: &TcContext, node: &NodeConfig, l3: usize, ip: &Ipv4Fields) -> Result<(), Reason> {
    if !node.trusts_kernel() {
        return Ok(());
    }
    let (key, signal) = name(ctx, l3, ip)?;
    let now = now_ns();
    let Some(entry) = FP_FLOWS.get_ptr_mut(key) else {
        remember_new(&key, now);
        return Err(Reason::PassFlowPending);
    };
    // SAFETY: a live map value. Another CPU writing the same entry at once can only cost a count
    // or a timestamp; the state written is always one of the decisions.
    let entry = unsafe { &mut *entry };
    let state = FlowState::try_from(entry.state).unwrap_or(FlowState::Pending);
    let admission = flow::admission(state, entry.last_seen_ns, now, node.flow_idle_ns(), signal);
    entry.state = admission.state as u32;
    entry.last_seen_ns = now;
    match admission.verdict {
        Ok(()) => entry.fast_packets += 1,
        Err(_) => entry.kernel_packets += 1,
    }
    admission.verdict
}

/// Under `--trust kernel`, note a packet the kernel is about to route toward a pod whose MAC is
/// not known yet, so that its forwarding approves the flow instead of marking it kernel-owned.
#[inline(always)]
pub fn remember(ctx: &TcContext, node: &NodeConfig, l3: usize, ip: &Ipv4Fields) {
    if !node.trusts_kernel() {
        return;
    }
    let Ok((key, _)) = name(ctx, l3, ip) else { return };
    let now = now_ns();
    match FP_FLOWS.get_ptr_mut(key) {
        // SAFETY: a live map value; see `admit`.
        Some(entry) => unsafe {
            (*entry).last_seen_ns = now;
            (*entry).kernel_packets += 1;
        },
        None => remember_new(&key, now),
    }
}

#[inline(always)]
fn remember_new(key: &FlowKey, now: u64) {
    let value = FlowValue { kernel_packets: 1, ..FlowValue::new(FlowState::Pending, now) };
    // A full LRU table evicts its oldest entry; an error here only costs an approval.
    let _ = FP_FLOWS.insert(key, value, u64::from(BPF_NOEXIST));
}

/// The kernel is sending the IPv4 packet at `l3` toward its destination: approve its flow if an
/// ingress handed it to the kernel with this very tuple; if none did (NAT rewrote it, or the
/// kernel made it), the kernel owns the flow, both ways. Never changes the packet.
#[inline(always)]
pub fn judge(ctx: &TcContext, l3: usize, ip: &Ipv4Fields) -> Outcome {
    let (key, _) = name(ctx, l3, ip).map_err(|_| Reason::FlowEgressOther)?;
    let entry = FP_FLOWS.get_ptr_mut(key);
    // SAFETY: a live map value, read once.
    let state = entry.map(|e| FlowState::try_from(unsafe { (*e).state }).unwrap_or(FlowState::Pending));
    let judgement = flow::judgement(state);
    match (judgement, entry) {
        // SAFETY: a live map value; see `admit`.
        (Judgement::Approve, Some(entry)) => unsafe { (*entry).state = FlowState::Approved as u32 },
        (Judgement::KernelOwned, _) => {
            let owned = FlowValue::new(FlowState::KernelOwned, now_ns());
            let _ = FP_FLOWS.insert(key, owned, u64::from(BPF_ANY));
            let _ = FP_FLOWS.insert(key.reversed(), owned, u64::from(BPF_ANY));
        }
        _ => {}
    }
    Ok((TC_ACT_OK, judgement.reason()))
}
