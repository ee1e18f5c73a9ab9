//! ctnetlink's wire format, as far as the daemon speaks it (pure): conntrack's entries of both
//! families read from a dump's or an event's message, and the two changes the daemon asks for. Written
//! by hand rather than through a netlink crate because the daemon reads one message per
//! connection state change: parsing them into owned trees cost the daemon ~70 µs of CPU per
//! connection at the benchmark's connection rates (perf, `tests/examples/approval_time.rs`),
//! on the same cores as the traffic. Here a message is walked in place, allocating nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fastpath_common::{flow::PROTO_ICMP, ipv6::NEXT_ICMPV6};

/// `struct nlmsghdr` then `struct nfgenmsg`.
pub const NLMSG_HEADER_LEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_DUMP_INTR`: the table changed while it was dumped; the dump must be taken again.
pub const NLM_F_DUMP_INTR: u16 = 0x10;

/// ctnetlink's subsystem in a message type's high byte, and its message types.
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const NFNETLINK_V0: u8 = 0;

const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_TIMEOUT: u16 = 7;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTO_ICMP_ID: u16 = 4;
const CTA_PROTO_ICMP_TYPE: u16 = 5;
const CTA_PROTO_ICMP_CODE: u16 = 6;
const CTA_PROTO_ICMPV6_ID: u16 = 7;
const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
const CTA_PROTO_ICMPV6_CODE: u16 = 9;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
const CTA_PROTOINFO_TCP_FLAGS_ORIGINAL: u16 = 4;
const CTA_PROTOINFO_TCP_FLAGS_REPLY: u16 = 5;
/// `IP_CT_TCP_FLAG_BE_LIBERAL`.
const TCP_FLAG_BE_LIBERAL: u8 = 0x08;

/// `IPS_*` status bits.
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
pub const IPS_ASSURED: u32 = 1 << 2;
pub const IPS_CONFIRMED: u32 = 1 << 3;
pub const IPS_DYING: u32 = 1 << 9;

/// A TCP entry's state (`enum tcp_conntrack`).
pub const TCP_ESTABLISHED: u8 = 3;

/// One direction's tuple of a conntrack entry, of either family (both addresses of the same).
/// Ports in host order; an ICMP or ICMPv6 echo's identifier as `sport` and its type as `dport`,
/// as the flow tables name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub sport: u16,
    pub dport: u16,
}

/// A conntrack entry, as far as the judge needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub original: Tuple,
    pub reply: Tuple,
    /// `IPS_*`.
    pub status: u32,
    /// TCP's state, when the message said.
    pub tcp_state: Option<u8>,
}

/// What conntrack said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new entry, or a change of one: what the message carried (an update may leave out the
    /// status or the TCP state, which then did not change).
    Present { entry: Tuple, reply: Tuple, status: Option<u32>, tcp_state: Option<u8> },
    /// The entry is gone (timed out, closed, deleted).
    Gone(Tuple),
    /// The kernel dropped events (ENOBUFS): the picture is no longer to be trusted.
    Overrun,
}

/// One netlink message of a datagram.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    /// What follows the netlink header.
    pub payload: &'a [u8],
}

/// The netlink messages of one datagram, in order; a cut or malformed one ends the walk.
pub fn messages(datagram: &[u8]) -> impl Iterator<Item = Message<'_>> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        let header = rest.get(..NLMSG_HEADER_LEN)?;
        let len = u32::from_ne_bytes(header[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HEADER_LEN || len > rest.len() {
            return None;
        }
        let message = Message {
            kind: u16::from_ne_bytes([header[4], header[5]]),
            flags: u16::from_ne_bytes([header[6], header[7]]),
            seq: u32::from_ne_bytes(header[8..12].try_into().ok()?),
            payload: &rest[NLMSG_HEADER_LEN..len],
        };
        rest = rest.get(align(len)..).unwrap_or(&[]);
        Some(message)
    })
}

/// The errno an `NLMSG_ERROR` message carries (0: an acknowledgement).
pub fn error_of(message: &Message) -> Option<i32> {
    (message.kind == NLMSG_ERROR).then(|| {
        message.payload.get(..4).map_or(0, |code| -i32::from_ne_bytes(code.try_into().expect("four bytes")))
    })
}

/// The event a ctnetlink event message carries.
pub fn event_of(message: &Message) -> Option<Event> {
    let parsed = parse(message)?;
    if message.kind == ctnetlink_type(IPCTNL_MSG_CT_DELETE) {
        return Some(Event::Gone(parsed.original));
    }
    Some(Event::Present {
        entry: parsed.original,
        reply: parsed.reply?,
        status: parsed.status,
        tcp_state: parsed.tcp_state,
    })
}

/// The entry a dump's message describes.
pub fn entry_of(message: &Message) -> Option<Entry> {
    let parsed = parse(message)?;
    Some(Entry {
        original: parsed.original,
        reply: parsed.reply?,
        status: parsed.status.unwrap_or(0),
        tcp_state: parsed.tcp_state,
    })
}

struct Parsed {
    original: Tuple,
    reply: Option<Tuple>,
    status: Option<u32>,
    tcp_state: Option<u8>,
}

fn parse(message: &Message) -> Option<Parsed> {
    let kind = message.kind;
    if kind != ctnetlink_type(IPCTNL_MSG_CT_NEW) && kind != ctnetlink_type(IPCTNL_MSG_CT_DELETE) {
        return None;
    }
    let (family, attributes) = message.payload.split_first()?;
    if *family != AF_INET && *family != AF_INET6 {
        return None;
    }
    let (mut original, mut reply, mut status, mut tcp_state) = (None, None, None, None);
    for (kind, value) in attributes_of(attributes.get(NFGENMSG_LEN - 1..)?) {
        match kind {
            CTA_TUPLE_ORIG => original = tuple(value),
            CTA_TUPLE_REPLY => reply = tuple(value),
            CTA_STATUS => status = be_u32(value),
            CTA_PROTOINFO => tcp_state = protoinfo_tcp_state(value),
            _ => {}
        }
    }
    Some(Parsed { original: original?, reply, status, tcp_state })
}

/// A tuple from its nested attributes; `None` for a tuple without both addresses of one family.
fn tuple(nested: &[u8]) -> Option<Tuple> {
    let (mut src, mut dst, mut protocol) = (None, None, None);
    let (mut sport, mut dport, mut icmp_id, mut icmp_type) = (0, 0, 0, 0);
    for (kind, value) in attributes_of(nested) {
        match kind {
            CTA_TUPLE_IP => {
                for (kind, value) in attributes_of(value) {
                    match kind {
                        CTA_IP_V4_SRC => src = ipv4(value).map(IpAddr::V4),
                        CTA_IP_V4_DST => dst = ipv4(value).map(IpAddr::V4),
                        CTA_IP_V6_SRC => src = ipv6(value).map(IpAddr::V6),
                        CTA_IP_V6_DST => dst = ipv6(value).map(IpAddr::V6),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (kind, value) in attributes_of(value) {
                    match kind {
                        CTA_PROTO_NUM => protocol = value.first().copied(),
                        CTA_PROTO_SRC_PORT => sport = be_u16(value).unwrap_or(0),
                        CTA_PROTO_DST_PORT => dport = be_u16(value).unwrap_or(0),
                        CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => icmp_id = be_u16(value).unwrap_or(0),
                        CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                            icmp_type = value.first().map_or(0, |t| u16::from(*t));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let protocol = protocol?;
    let (sport, dport) = if is_icmp(protocol) { (icmp_id, icmp_type) } else { (sport, dport) };
    let (src, dst) = (src?, dst?);
    (src.is_ipv4() == dst.is_ipv4()).then_some(Tuple { src, dst, protocol, sport, dport })
}

fn is_icmp(protocol: u8) -> bool {
    protocol == PROTO_ICMP || protocol == NEXT_ICMPV6
}

fn protoinfo_tcp_state(nested: &[u8]) -> Option<u8> {
    let (_, tcp) = attributes_of(nested).find(|(kind, _)| *kind == CTA_PROTOINFO_TCP)?;
    let (_, state) = attributes_of(tcp).find(|(kind, _)| *kind == CTA_PROTOINFO_TCP_STATE)?;
    state.first().copied()
}

/// The attributes (type without flags, value) in `bytes`; a cut one ends the walk.
fn attributes_of(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let header = rest.get(..4)?;
        let len = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let kind = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
        let value = rest.get(4..len)?;
        rest = rest.get(align(len)..).unwrap_or(&[]);
        Some((kind, value))
    })
}

fn ipv4(value: &[u8]) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::from(<[u8; 4]>::try_from(value.get(..4)?).ok()?))
}

fn ipv6(value: &[u8]) -> Option<Ipv6Addr> {
    Some(Ipv6Addr::from(<[u8; 16]>::try_from(value.get(..16)?).ok()?))
}

fn be_u16(value: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(value.get(..2)?.try_into().ok()?))
}

fn be_u32(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?))
}

const fn align(len: usize) -> usize {
    (len + 3) & !3
}

const fn ctnetlink_type(message: u16) -> u16 {
    NFNL_SUBSYS_CTNETLINK << 8 | message
}

/// A classic BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const fn op(code: u16, jt: u8, jf: u8, k: u32) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

const BPF_LD_H_ABS: u16 = 0x28;
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_LD_B_IND: u16 = 0x50;
const BPF_LD_IMM: u16 = 0x00;
const BPF_LDX_IMM: u16 = 0x01;
const BPF_TAX: u16 = 0x07;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
/// The ancillary loads that find a netlink attribute: of type X from offset A on, and of type X
/// nested in the attribute at offset A (`SKF_AD_NLATTR`, `SKF_AD_NLATTR_NEST`).
const SKF_AD_NLATTR: u32 = 0xffff_f000 + 12;
const SKF_AD_NLATTR_NEST: u32 = 0xffff_f000 + 16;
/// A message type as a classic BPF halfword load sees it: in network byte order, while netlink
/// writes it in the host's (little-endian here).
const fn loaded(kind: u16) -> u32 {
    u16::from_be_bytes(kind.to_le_bytes()) as u32
}

/// What the event socket lets through, decided in the kernel so that the messages the judge
/// never acts on wake nobody: every message but a TCP entry's new or changed state other than
/// ESTABLISHED (its handshake and close are the kernel's; an entry leaves the flow table when
/// conntrack destroys it, and the programs hand a closing connection's packets to the kernel
/// meanwhile). Replies to requests pass too (they are no ctnetlink entry, or a dump's entry).
pub fn event_filter() -> Vec<SockFilter> {
    const ACCEPT: u32 = 0xffff_ffff;
    // Jumps are relative (to the instruction after): the last two instructions accept, drop.
    let program = [
        /* 0 */ op(BPF_LD_H_ABS, 0, 0, 4),
        /* 1 */ op(BPF_JEQ_K, 0, 26, loaded(ctnetlink_type(IPCTNL_MSG_CT_NEW))),
        /* 2 */ op(BPF_LD_IMM, 0, 0, (NLMSG_HEADER_LEN + NFGENMSG_LEN) as u32),
        /* 3 */ op(BPF_LDX_IMM, 0, 0, u32::from(CTA_TUPLE_ORIG)),
        /* 4 */ op(BPF_LD_W_ABS, 0, 0, SKF_AD_NLATTR),
        /* 5 */ op(BPF_JEQ_K, 22, 0, 0),
        /* 6 */ op(BPF_LDX_IMM, 0, 0, u32::from(CTA_TUPLE_PROTO)),
        /* 7 */ op(BPF_LD_W_ABS, 0, 0, SKF_AD_NLATTR_NEST),
        /* 8 */ op(BPF_JEQ_K, 19, 0, 0),
        /* 9 */ op(BPF_LDX_IMM, 0, 0, u32::from(CTA_PROTO_NUM)),
        /* 10 */ op(BPF_LD_W_ABS, 0, 0, SKF_AD_NLATTR_NEST),
        /* 11 */ op(BPF_JEQ_K, 16, 0, 0),
        /* 12 */ op(BPF_TAX, 0, 0, 0),
        /* 13 */ op(BPF_LD_B_IND, 0, 0, 4),
        /* 14 */ op(BPF_JEQ_K, 0, 13, u32::from(fastpath_common::flow::PROTO_TCP)),
        /* 15 */ op(BPF_LD_IMM, 0, 0, (NLMSG_HEADER_LEN + NFGENMSG_LEN) as u32),
        /* 16 */ op(BPF_LDX_IMM, 0, 0, u32::from(CTA_PROTOINFO)),
        /* 17 */ op(BPF_LD_W_ABS, 0, 0, SKF_AD_NLATTR),
        /* 18 */ op(BPF_JEQ_K, 10, 0, 0),
        /* 19 */ op(BPF_LDX_IMM, 0, 0, u32::from(CTA_PROTOINFO_TCP)),
        /* 20 */ op(BPF_LD_W_ABS, 0, 0, SKF_AD_NLATTR_NEST),
        /* 21 */ op(BPF_JEQ_K, 7, 0, 0),
        /* 22 */ op(BPF_LDX_IMM, 0, 0, u32::from(CTA_PROTOINFO_TCP_STATE)),
        /* 23 */ op(BPF_LD_W_ABS, 0, 0, SKF_AD_NLATTR_NEST),
        /* 24 */ op(BPF_JEQ_K, 4, 0, 0),
        /* 25 */ op(BPF_TAX, 0, 0, 0),
        /* 26 */ op(BPF_LD_B_IND, 0, 0, 4),
        /* 27 */ op(BPF_JEQ_K, 0, 1, u32::from(TCP_ESTABLISHED)),
        /* 28 */ op(BPF_RET_K, 0, 0, ACCEPT),
        /* 29 */ op(BPF_RET_K, 0, 0, 0),
    ];
    program.to_vec()
}

/// A request, built attribute by attribute.
struct Request {
    bytes: Vec<u8>,
}

impl Request {
    /// A request about entries of `family` (`AF_UNSPEC`: both).
    fn new(message: u16, flags: u16, seq: u32, family: u8) -> Self {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(&ctnetlink_type(message).to_ne_bytes());
        bytes.extend_from_slice(&flags.to_ne_bytes());
        bytes.extend_from_slice(&seq.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(&[family, NFNETLINK_V0, 0, 0]);
        Self { bytes }
    }

    fn attribute(&mut self, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.bytes.extend_from_slice(&(len as u16).to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value);
        self.bytes.resize(align(self.bytes.len()), 0);
    }

    /// A nested attribute whose contents `fill` writes.
    fn nested(&mut self, kind: u16, fill: impl FnOnce(&mut Self)) {
        let start = self.bytes.len();
        self.attribute(kind | NLA_F_NESTED, &[]);
        fill(self);
        let len = (self.bytes.len() - start) as u16;
        self.bytes[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn tuple(&mut self, kind: u16, t: &Tuple) {
        self.nested(kind, |r| {
            r.nested(CTA_TUPLE_IP, |r| match (t.src, t.dst) {
                (IpAddr::V6(src), IpAddr::V6(dst)) => {
                    r.attribute(CTA_IP_V6_SRC, &src.octets());
                    r.attribute(CTA_IP_V6_DST, &dst.octets());
                }
                (src, dst) => {
                    r.attribute(CTA_IP_V4_SRC, &v4_octets(src));
                    r.attribute(CTA_IP_V4_DST, &v4_octets(dst));
                }
            });
            r.nested(CTA_TUPLE_PROTO, |r| {
                r.attribute(CTA_PROTO_NUM, &[t.protocol]);
                if t.protocol == PROTO_ICMP {
                    r.attribute(CTA_PROTO_ICMP_ID, &t.sport.to_be_bytes());
                    r.attribute(CTA_PROTO_ICMP_TYPE, &[t.dport as u8]);
                    r.attribute(CTA_PROTO_ICMP_CODE, &[0]);
                } else if t.protocol == NEXT_ICMPV6 {
                    r.attribute(CTA_PROTO_ICMPV6_ID, &t.sport.to_be_bytes());
                    r.attribute(CTA_PROTO_ICMPV6_TYPE, &[t.dport as u8]);
                    r.attribute(CTA_PROTO_ICMPV6_CODE, &[0]);
                } else {
                    r.attribute(CTA_PROTO_SRC_PORT, &t.sport.to_be_bytes());
                    r.attribute(CTA_PROTO_DST_PORT, &t.dport.to_be_bytes());
                }
            });
        });
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.bytes.len() as u32;
        self.bytes[0..4].copy_from_slice(&len.to_ne_bytes());
        self.bytes
    }
}

/// An IPv4 address's bytes (a tuple's addresses are of one family: [`tuple`] reads no other).
fn v4_octets(addr: IpAddr) -> [u8; 4] {
    match addr {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or([0; 4], |a| a.octets()),
    }
}

/// The family byte of a request about `t`.
fn family_of(t: &Tuple) -> u8 {
    if t.src.is_ipv6() {
        AF_INET6
    } else {
        AF_INET
    }
}

/// A dump of every entry, of both families.
pub fn dump_request(seq: u32) -> Vec<u8> {
    Request::new(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, AF_UNSPEC).finish()
}

/// Make the entry whose original tuple is `original` time out `seconds` from now.
pub fn refresh_request(original: &Tuple, seconds: u32, seq: u32) -> Vec<u8> {
    let mut r = Request::new(IPCTNL_MSG_CT_NEW, NLM_F_REQUEST, seq, family_of(original));
    r.tuple(CTA_TUPLE_ORIG, original);
    r.attribute(CTA_TIMEOUT, &seconds.to_be_bytes());
    r.finish()
}

/// Make conntrack liberal about the TCP windows of the entry whose original tuple is
/// `original`, both ways (the flag, and the mask that says only it changes).
pub fn be_liberal_request(original: &Tuple, seq: u32) -> Vec<u8> {
    let mut r = Request::new(IPCTNL_MSG_CT_NEW, NLM_F_REQUEST, seq, family_of(original));
    r.tuple(CTA_TUPLE_ORIG, original);
    r.nested(CTA_PROTOINFO, |r| {
        r.nested(CTA_PROTOINFO_TCP, |r| {
            r.attribute(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, &[TCP_FLAG_BE_LIBERAL, TCP_FLAG_BE_LIBERAL]);
            r.attribute(CTA_PROTOINFO_TCP_FLAGS_REPLY, &[TCP_FLAG_BE_LIBERAL, TCP_FLAG_BE_LIBERAL]);
        });
    });
    r.finish()
}

#[cfg(test)]
mod tests {
    //! Messages are made by another implementation (the `netlink-packet-netfilter` crate) and
    //! read here, and the other way round: both must agree on every byte the kernel sends.

    use netlink_packet_core::{Emitable as _, NetlinkDeserializable as _, NetlinkHeader};
    use netlink_packet_netfilter::{
        conntrack::{
            ConntrackAttribute, ConntrackMessage, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple, Protocol,
            Status, Tuple as NlTuple,
        },
        NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
    };

    use super::*;

    fn tcp(src: [u8; 4], dst: [u8; 4], ports: (u16, u16)) -> Tuple {
        Tuple { src: src.into(), dst: dst.into(), protocol: 6, sport: ports.0, dport: ports.1 }
    }

    fn nl_tuple(t: &Tuple) -> Vec<NlTuple> {
        use netlink_packet_core::DefaultNla;
        let mut proto = vec![ProtoTuple::Protocol(Protocol::from(t.protocol))];
        let icmp = match t.protocol {
            PROTO_ICMP => Some((CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE)),
            NEXT_ICMPV6 => Some((CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMPV6_CODE)),
            _ => None,
        };
        if let Some((id, kind, code)) = icmp {
            proto.push(ProtoTuple::Other(DefaultNla::new(id, t.sport.to_be_bytes().to_vec())));
            proto.push(ProtoTuple::Other(DefaultNla::new(kind, vec![t.dport as u8])));
            proto.push(ProtoTuple::Other(DefaultNla::new(code, vec![0])));
        } else {
            proto.push(ProtoTuple::SourcePort(t.sport));
            proto.push(ProtoTuple::DestinationPort(t.dport));
        }
        vec![
            NlTuple::Ip(vec![IPTuple::SourceAddress(t.src), IPTuple::DestinationAddress(t.dst)]),
            NlTuple::Proto(proto),
        ]
    }

    /// The kernel's bytes for `inner`, as a message of ctnetlink type `kind`, headers and all.
    fn datagram(kind: u16, inner: ConntrackMessage) -> Vec<u8> {
        datagram_of(NetfilterProtoFamily::IPv4, kind, inner)
    }

    fn datagram_of(family: NetfilterProtoFamily, kind: u16, inner: ConntrackMessage) -> Vec<u8> {
        let m = NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), inner);
        let mut payload = vec![0; m.buffer_len()];
        m.emit(&mut payload);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&((NLMSG_HEADER_LEN + payload.len()) as u32).to_ne_bytes());
        bytes.extend_from_slice(&ctnetlink_type(kind).to_ne_bytes());
        bytes.extend_from_slice(&0u16.to_ne_bytes());
        bytes.extend_from_slice(&7u32.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(&payload);
        bytes
    }

    /// A DNATed connection: 10.244.40.36:40000 → 10.96.0.10:80, answered by 10.244.166.150:8080.
    fn service_entry() -> Vec<ConntrackAttribute> {
        let original = tcp([10, 244, 40, 36], [10, 96, 0, 10], (40000, 80));
        let reply = tcp([10, 244, 166, 150], [10, 244, 40, 36], (8080, 40000));
        vec![
            ConntrackAttribute::CtaTupleOrig(nl_tuple(&original)),
            ConntrackAttribute::CtaTupleReply(nl_tuple(&reply)),
            ConntrackAttribute::CtaStatus(
                Status::Confirmed | Status::SeenReply | Status::Assured | Status::DstNat,
            ),
            ConntrackAttribute::CtaProtoInfo(vec![ProtoInfo::TCP(vec![ProtoInfoTCP::State(
                TCP_ESTABLISHED,
            )])]),
        ]
    }

    fn only(bytes: &[u8]) -> Message<'_> {
        let all: Vec<Message> = messages(bytes).collect();
        assert_eq!(all.len(), 1);
        all[0]
    }

    #[test]
    fn an_entry_is_read_with_its_nat_status_and_tcp_state() {
        let bytes = datagram(IPCTNL_MSG_CT_NEW, ConntrackMessage::New(service_entry()));
        let m = only(&bytes);
        assert_eq!(m.seq, 7);
        let entry = entry_of(&m).unwrap();
        assert_eq!(entry.original, tcp([10, 244, 40, 36], [10, 96, 0, 10], (40000, 80)));
        assert_eq!(entry.reply, tcp([10, 244, 166, 150], [10, 244, 40, 36], (8080, 40000)));
        assert_ne!(entry.status & IPS_CONFIRMED, 0);
        assert_ne!(entry.status & IPS_SEEN_REPLY, 0);
        assert_ne!(entry.status & IPS_ASSURED, 0);
        assert_eq!(entry.tcp_state, Some(TCP_ESTABLISHED));
    }

    #[test]
    fn icmp_tuples_carry_their_identifier_and_type() {
        let request = Tuple {
            src: [10, 244, 40, 36].into(),
            dst: [10, 244, 40, 37].into(),
            protocol: 1,
            sport: 0x1234,
            dport: 8,
        };
        let reply = Tuple { src: request.dst, dst: request.src, protocol: 1, sport: 0x1234, dport: 0 };
        let bytes = datagram(
            IPCTNL_MSG_CT_NEW,
            ConntrackMessage::New(vec![
                ConntrackAttribute::CtaTupleOrig(nl_tuple(&request)),
                ConntrackAttribute::CtaTupleReply(nl_tuple(&reply)),
            ]),
        );
        let Some(Event::Present { entry, reply: r, status, .. }) = event_of(&only(&bytes)) else { panic!() };
        assert_eq!((entry, r, status), (request, reply, None));
    }

    #[test]
    fn a_destroyed_entry_is_an_event() {
        let bytes = datagram(IPCTNL_MSG_CT_DELETE, ConntrackMessage::Delete(service_entry()));
        assert_eq!(
            event_of(&only(&bytes)),
            Some(Event::Gone(tcp([10, 244, 40, 36], [10, 96, 0, 10], (40000, 80))))
        );
    }

    #[test]
    fn several_messages_in_one_datagram_and_cut_ones_are_walked_safely() {
        let mut bytes = datagram(IPCTNL_MSG_CT_NEW, ConntrackMessage::New(service_entry()));
        bytes.extend(datagram(IPCTNL_MSG_CT_DELETE, ConntrackMessage::Delete(service_entry())));
        assert_eq!(messages(&bytes).count(), 2);
        for cut in 0..bytes.len() {
            for m in messages(&bytes[..cut]) {
                let _ = event_of(&m);
            }
        }
    }

    /// What the other implementation reads from our request.
    fn read_back(bytes: &[u8]) -> (NetlinkHeader, Vec<ConntrackAttribute>) {
        let m = only(bytes);
        let mut header = NetlinkHeader::default();
        header.message_type = m.kind;
        header.flags = m.flags;
        let parsed = NetfilterMessage::deserialize(&header, m.payload).unwrap();
        let NetfilterMessageInner::Conntrack(ConntrackMessage::New(attributes)) = parsed.inner else {
            panic!("{parsed:?}")
        };
        (header, attributes)
    }

    #[test]
    fn requests_name_the_entry_and_carry_the_change() {
        let original = tcp([10, 244, 40, 36], [10, 96, 0, 10], (40000, 80));
        let (header, attributes) = read_back(&refresh_request(&original, 300, 9));
        assert_eq!(header.flags, NLM_F_REQUEST, "an update of an existing entry, no create");
        assert_eq!(attributes[0], ConntrackAttribute::CtaTupleOrig(nl_tuple(&original)));
        assert_eq!(attributes[1], ConntrackAttribute::CtaTimeout(300));
        let (_, attributes) = read_back(&be_liberal_request(&original, 10));
        let ConntrackAttribute::CtaProtoInfo(info) = &attributes[1] else { panic!("{attributes:?}") };
        assert!(
            format!("{info:?}").contains("OriginalFlags") && format!("{info:?}").contains("ReplyFlags"),
            "{info:?}"
        );
        let icmp = Tuple {
            src: [10, 244, 40, 36].into(),
            dst: [10, 244, 40, 37].into(),
            protocol: 1,
            sport: 9,
            dport: 8,
        };
        let (_, attributes) = read_back(&refresh_request(&icmp, 30, 11));
        let ConntrackAttribute::CtaTupleOrig(parts) = &attributes[0] else { panic!() };
        assert_eq!(tuple_of_parts(NetfilterProtoFamily::IPv4, parts), icmp);
    }

    /// Our own parser on the other implementation's reading of our bytes (a tuple of `family`),
    /// to close the loop.
    fn tuple_of_parts(family: NetfilterProtoFamily, parts: &[NlTuple]) -> Tuple {
        let m = datagram_of(
            family,
            IPCTNL_MSG_CT_NEW,
            ConntrackMessage::New(vec![
                ConntrackAttribute::CtaTupleOrig(parts.to_vec()),
                ConntrackAttribute::CtaTupleReply(parts.to_vec()),
            ]),
        );
        let Some(Event::Present { entry, .. }) = event_of(&only(&m)) else { panic!() };
        entry
    }

    #[test]
    fn a_dump_request_asks_for_every_entry_of_both_families() {
        let bytes = dump_request(3);
        let m = only(&bytes);
        assert_eq!(
            (m.kind, m.flags, m.payload),
            (ctnetlink_type(IPCTNL_MSG_CT_GET), NLM_F_REQUEST | NLM_F_DUMP, &[AF_UNSPEC, 0, 0, 0][..])
        );
    }

    fn v6(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_entries_are_read_and_named_in_requests_as_ipv4_ones() {
        let pod = v6("fd00:10:244::24");
        let remote = v6("fd00:10:244:1::9");
        let original = Tuple { src: pod, dst: remote, protocol: 6, sport: 40000, dport: 80 };
        let reply = Tuple { src: remote, dst: pod, protocol: 6, sport: 80, dport: 40000 };
        let bytes = datagram_of(
            NetfilterProtoFamily::IPv6,
            IPCTNL_MSG_CT_NEW,
            ConntrackMessage::New(vec![
                ConntrackAttribute::CtaTupleOrig(nl_tuple(&original)),
                ConntrackAttribute::CtaTupleReply(nl_tuple(&reply)),
                ConntrackAttribute::CtaStatus(Status::Confirmed | Status::SeenReply),
            ]),
        );
        let entry = entry_of(&only(&bytes)).unwrap();
        assert_eq!((entry.original, entry.reply), (original, reply));
        let echo = Tuple { src: pod, dst: remote, protocol: NEXT_ICMPV6, sport: 0x1234, dport: 128 };
        let answer = Tuple { src: remote, dst: pod, protocol: NEXT_ICMPV6, sport: 0x1234, dport: 129 };
        let bytes = datagram_of(
            NetfilterProtoFamily::IPv6,
            IPCTNL_MSG_CT_NEW,
            ConntrackMessage::New(vec![
                ConntrackAttribute::CtaTupleOrig(nl_tuple(&echo)),
                ConntrackAttribute::CtaTupleReply(nl_tuple(&answer)),
            ]),
        );
        let Some(Event::Present { entry, reply: r, .. }) = event_of(&only(&bytes)) else { panic!() };
        assert_eq!((entry, r), (echo, answer));
        // Requests name the entry in its own family.
        for t in [original, echo] {
            let bytes = refresh_request(&t, 30, 12);
            assert_eq!(only(&bytes).payload[0], AF_INET6);
            let (_, attributes) = read_back(&bytes);
            let ConntrackAttribute::CtaTupleOrig(parts) = &attributes[0] else { panic!() };
            assert_eq!(tuple_of_parts(NetfilterProtoFamily::IPv6, parts), t);
        }
        assert_eq!(only(&be_liberal_request(&original, 13)).payload[0], AF_INET6);
        assert_eq!(
            only(&refresh_request(&tcp([10, 0, 0, 1], [10, 0, 0, 2], (1, 2)), 30, 14)).payload[0],
            AF_INET
        );
    }

    /// The kernel's classic BPF, as far as the filter uses it (`net/core/filter.c`).
    fn run_filter(program: &[SockFilter], packet: &[u8]) -> u32 {
        let find = |from: usize, kind: u32, nested: bool| -> u32 {
            let Some(bytes) = packet.get(from..) else { return 0 };
            let bytes = if nested {
                let len = usize::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
                &bytes[4..len.min(bytes.len())]
            } else {
                bytes
            };
            let base = if nested { from + 4 } else { from };
            let mut offset = 0;
            while offset + 4 <= bytes.len() {
                let len = usize::from(u16::from_ne_bytes([bytes[offset], bytes[offset + 1]]));
                if len < 4 {
                    return 0;
                }
                let t = u16::from_ne_bytes([bytes[offset + 2], bytes[offset + 3]]) & NLA_TYPE_MASK;
                if u32::from(t) == kind {
                    return (base + offset) as u32;
                }
                offset += align(len);
            }
            0
        };
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        loop {
            let i = program[pc];
            pc += 1;
            match i.code {
                BPF_LD_H_ABS => {
                    a = u32::from(u16::from_be_bytes([packet[i.k as usize], packet[i.k as usize + 1]]))
                }
                BPF_LD_W_ABS if i.k == SKF_AD_NLATTR => a = find(a as usize, x, false),
                BPF_LD_W_ABS if i.k == SKF_AD_NLATTR_NEST => a = find(a as usize, x, true),
                BPF_LD_B_IND => a = u32::from(packet[(x + i.k) as usize]),
                BPF_LD_IMM => a = i.k,
                BPF_LDX_IMM => x = i.k,
                BPF_TAX => x = a,
                BPF_JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                BPF_RET_K => return i.k,
                other => panic!("unexpected instruction {other:#x}"),
            }
        }
    }

    fn tcp_in_state(kind: u16, state: Option<u8>) -> Vec<u8> {
        let mut attributes = service_entry();
        attributes.retain(|a| !matches!(a, ConntrackAttribute::CtaProtoInfo(_)));
        if let Some(state) = state {
            attributes.push(ConntrackAttribute::CtaProtoInfo(vec![ProtoInfo::TCP(vec![
                ProtoInfoTCP::State(state),
            ])]));
        }
        let inner = if kind == IPCTNL_MSG_CT_DELETE {
            ConntrackMessage::Delete(attributes)
        } else {
            ConntrackMessage::New(attributes)
        };
        datagram(kind, inner)
    }

    #[test]
    fn the_event_filter_lets_through_all_but_tcp_states_other_than_established() {
        let filter = event_filter();
        let passes = |bytes: &[u8]| run_filter(&filter, bytes) != 0;
        assert!(passes(&tcp_in_state(IPCTNL_MSG_CT_NEW, Some(TCP_ESTABLISHED))));
        for state in [1, 2, 4, 5, 6, 7, 8] {
            assert!(!passes(&tcp_in_state(IPCTNL_MSG_CT_NEW, Some(state))), "TCP state {state}");
        }
        assert!(!passes(&tcp_in_state(IPCTNL_MSG_CT_NEW, None)), "a TCP change that says no state");
        assert!(passes(&tcp_in_state(IPCTNL_MSG_CT_DELETE, Some(2))), "every destroyed entry");
        let udp = Tuple {
            src: [10, 244, 40, 36].into(),
            dst: [10, 96, 0, 10].into(),
            protocol: 17,
            sport: 1,
            dport: 53,
        };
        let udp = datagram(
            IPCTNL_MSG_CT_NEW,
            ConntrackMessage::New(vec![
                ConntrackAttribute::CtaTupleOrig(nl_tuple(&udp)),
                ConntrackAttribute::CtaTupleReply(nl_tuple(&udp)),
            ]),
        );
        assert!(passes(&udp), "every UDP event");
        let mut done = Vec::new();
        done.extend_from_slice(&(NLMSG_HEADER_LEN as u32 + 4).to_ne_bytes());
        done.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        done.extend_from_slice(&[0; 14]);
        assert!(passes(&done), "a dump's end");
    }

    #[test]
    fn an_error_message_carries_its_errno() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(NLMSG_HEADER_LEN as u32 + 4).to_ne_bytes());
        bytes.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        bytes.extend_from_slice(&[0; 10]);
        bytes.extend_from_slice(&(-2i32).to_ne_bytes());
        assert_eq!(error_of(&only(&bytes)), Some(2));
    }
}
