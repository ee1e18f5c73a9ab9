//! Following the kernel through rtnetlink: one dump of links, addresses, IPv4 rules and routes,
//! neighbours (the IPv4 neighbour table and the bridge FDB, for `vxlan.calico`) and the pod
//! interfaces' qdiscs and filters at start, then events. Messages become plain structs here;
//! what they mean is decided elsewhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::{channel::mpsc::UnboundedReceiver, StreamExt as _, TryStreamExt as _};
use rtnetlink::{
    packet_core::{DefaultNla, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST},
    packet_route::{
        address::{AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope},
        link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
        neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
        route::{RouteAddress, RouteAttribute, RouteMessage, RouteType},
        rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage},
        tc::{TcAttribute, TcMessage},
        AddressFamily, RouteNetlinkMessage,
    },
    sys::{AsyncSocket as _, SocketAddr},
    Handle, IpVersion, MulticastGroup,
};

use crate::{
    daemon::classic_tc,
    model::{
        family::Family,
        link::{Address, Address6, LinkState, VxlanLink},
        neighbour::{Neighbour, NeighbourTable},
        route::{KernelRoute, KernelRoute6, RouteKindOf},
        rule::{Rule, Verb},
        tc::TcObject,
    },
    Error,
};

/// Receive buffer of the event socket.
const EVENT_BUFFER_BYTES: libc::c_int = 8 << 20;

/// IFLA_TARGET_NETNSID (include/uapi/linux/if_link.h): ask about a link in another namespace.
const IFLA_TARGET_NETNSID: u16 = 46;

/// A change in the kernel's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// RTM_NEWLINK: created, renamed, or its state changed.
    LinkPresent(LinkState),
    /// RTM_DELLINK: deleted or moved to another namespace.
    LinkGone(LinkState),
    RouteAdded(KernelRoute),
    RouteRemoved(KernelRoute),
    Route6Added(KernelRoute6),
    Route6Removed(KernelRoute6),
    /// RTM_NEWNEIGH: a neighbour or FDB entry added or changed.
    NeighbourPresent(Neighbour),
    /// RTM_DELNEIGH.
    NeighbourGone(Neighbour),
    /// RTM_NEWRULE (IPv4).
    RuleAdded(Rule),
    /// RTM_DELRULE (IPv4).
    RuleRemoved(Rule),
    /// RTM_NEWRULE (IPv6), with its addresses as selectors ([`rule6`]).
    Rule6Added(Rule),
    /// RTM_DELRULE (IPv6).
    Rule6Removed(Rule),
    /// A qdisc, filter or filter chain of this interface was added, changed or removed.
    TrafficControl(u32),
    /// An IPv6 address of this interface was added, changed (its duplicate address detection
    /// ended, say) or removed.
    Address6Changed(u32),
    /// The kernel dropped events because our socket's buffer was full (ENOBUFS): the picture
    /// is no longer to be trusted.
    Overrun,
}

type Messages = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

/// A netlink socket subscribed to link, IPv4 route and neighbour events, with a handle for
/// requests.
pub struct Netlink {
    handle: Handle,
    messages: Messages,
}

impl Netlink {
    /// Subscribe before dumping, so that nothing created in between is missed.
    /// Must be called inside a tokio runtime (the connection runs as a task).
    pub fn new() -> Result<Self, Error> {
        let (mut connection, handle, messages) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Link,
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
            MulticastGroup::Neigh,
            MulticastGroup::Ipv4Rule,
            MulticastGroup::Ipv6Rule,
            MulticastGroup::Ipv6Ifaddr,
            MulticastGroup::Tc,
        ])
        .map_err(|source| Error::Netlink { what: "cannot open an event socket", source })?;
        // A storm of route changes overflows the default buffer (net.core.rmem_max); ask for
        // more, past that limit since we hold CAP_NET_ADMIN. Overflows that still happen are
        // reported as Event::Overrun and answered with a full resync.
        let fd = std::os::fd::AsRawFd::as_raw_fd(connection.socket_mut().socket_mut());
        let size: libc::c_int = EVENT_BUFFER_BYTES;
        // SAFETY: setsockopt on a socket we own, with a c_int option value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                std::ptr::addr_of!(size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            log::warn!("cannot enlarge the netlink event buffer: {}", std::io::Error::last_os_error());
        }
        tokio::spawn(connection);
        Ok(Self { handle, messages })
    }

    pub async fn links(&self) -> Result<Vec<LinkState>, Error> {
        let stream = self.handle.link().get().execute();
        collect(stream, "link dump", |msg| Some(link_state(&msg))).await
    }

    /// Whether the kernel has an IPIP device (the ipip module's `tunl0`): without one it cannot
    /// take back IPIP that another node's fast path sends.
    pub async fn has_ipip_device(&self) -> Result<bool, Error> {
        let stream = self.handle.link().get().execute();
        let ipip = collect(stream, "link dump", |msg| is_ipip(&msg).then_some(())).await?;
        Ok(!ipip.is_empty())
    }

    /// Every IPv4 address, and the global IPv6 addresses usable as a source (see [`address6`]),
    /// from one dump.
    pub async fn addresses(&self) -> Result<(Vec<Address>, Vec<Address6>), Error> {
        let stream = self.handle.address().get().execute();
        let messages = collect(stream, "address dump", Some).await?;
        Ok((messages.iter().filter_map(address).collect(), messages.iter().filter_map(address6).collect()))
    }

    pub async fn ipv4_routes(&self) -> Result<Vec<KernelRoute>, Error> {
        self.routes().await
    }

    pub async fn ipv6_routes(&self) -> Result<Vec<KernelRoute6>, Error> {
        self.routes().await
    }

    async fn routes<A: RouteFamily>(&self) -> Result<Vec<KernelRoute<A>>, Error> {
        let mut request = RouteMessage::default();
        request.header.address_family = A::FAMILY;
        let stream = self.handle.route().get(request).execute();
        collect(stream, "route dump", |msg| kernel_route(&msg)).await
    }

    /// Every IPv4 rule, in the kernel's order.
    pub async fn ipv4_rules(&self) -> Result<Vec<Rule>, Error> {
        let stream = self.handle.rule().get(IpVersion::V4).execute();
        collect(stream, "rule dump", |msg| rule(&msg)).await
    }

    /// Every IPv6 rule, in the kernel's order ([`rule6`]).
    pub async fn ipv6_rules(&self) -> Result<Vec<Rule>, Error> {
        let stream = self.handle.rule().get(IpVersion::V6).execute();
        collect(stream, "rule dump", |msg| rule6(&msg)).await
    }

    /// The classic tc configuration of interface `ifindex`, in words (`None`: nothing but the
    /// defaults and fastpath's own filters).
    pub async fn classic_tc(&self, ifindex: u32) -> Result<Option<String>, Error> {
        let stream = self.handle.clone().qdisc().get().execute();
        let qdiscs = collect(stream, "qdisc dump", |msg| tc_object(&msg, ifindex)).await?;
        let mut filters = Vec::new();
        // Filters hang on the ingress or clsact qdisc's hooks; without one there are none there.
        if qdiscs.iter().any(|q| q.kind == "clsact" || q.kind == "ingress") {
            let index = ifindex as i32;
            let ingress = self.handle.clone().traffic_filter(index).get().ingress().execute();
            filters.extend(collect(ingress, "filter dump", |msg| tc_object(&msg, ifindex)).await?);
            let egress = self.handle.clone().traffic_filter(index).get().egress().execute();
            // An ingress qdisc has no egress hook: nothing to find there.
            filters.extend(
                collect(egress, "filter dump", |msg| tc_object(&msg, ifindex)).await.unwrap_or_default(),
            );
        }
        Ok(classic_tc::describe(&qdiscs, &filters))
    }

    /// Every neighbour of both families and every bridge FDB entry (a vxlan device's included).
    pub async fn neighbours(&self) -> Result<Vec<Neighbour>, Error> {
        let mut all = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6, AddressFamily::Bridge] {
            let stream = self.handle.neighbours().get().set_address_family(family).execute();
            all.extend(collect(stream, "neighbour dump", |msg| neighbour(&msg)).await?);
        }
        Ok(all)
    }

    /// The MAC of the other end of a veth: the link `peer_index` in the namespace this one
    /// knows as `netnsid` (RTM_GETLINK with IFLA_TARGET_NETNSID, Linux ≥ 4.20).
    pub async fn peer_mac(&self, netnsid: i32, peer_index: u32) -> Result<Option<[u8; 6]>, Error> {
        let mut msg = LinkMessage::default();
        msg.header.index = peer_index;
        msg.attributes
            .push(LinkAttribute::Other(DefaultNla::new(IFLA_TARGET_NETNSID, netnsid.to_ne_bytes().to_vec())));
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetLink(msg));
        request.header.flags = NLM_F_REQUEST;
        let mut responses = self
            .handle
            .clone()
            .request(request)
            .map_err(|source| Error::NetlinkRequest { what: "peer link query", source })?;
        while let Some(response) = responses.next().await {
            match response.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                    return Ok(link_state(&link).mac)
                }
                NetlinkPayload::Error(e) => {
                    return Err(Error::Netlink { what: "peer link query", source: e.to_io() });
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// The next event; `None` when the socket closed.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let (message, _) = self.messages.next().await?;
            if let Some(event) = event(&message) {
                return Some(event);
            }
        }
    }
}

async fn collect<M, T>(
    stream: impl futures::Stream<Item = Result<M, rtnetlink::Error>>,
    what: &'static str,
    convert: impl Fn(M) -> Option<T>,
) -> Result<Vec<T>, Error> {
    stream
        .map_err(|source| Error::NetlinkRequest { what, source })
        .try_filter_map(|msg| futures::future::ready(Ok(convert(msg))))
        .try_collect()
        .await
}

/// The event a netlink message carries, if any.
pub fn event(message: &NetlinkMessage<RouteNetlinkMessage>) -> Option<Event> {
    match &message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(msg)) => {
            Some(Event::LinkPresent(link_state(msg)))
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(msg)) => {
            Some(Event::LinkGone(link_state(msg)))
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(msg)) => {
            kernel_route(msg).map(Event::RouteAdded).or_else(|| kernel_route(msg).map(Event::Route6Added))
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(msg)) => {
            kernel_route(msg).map(Event::RouteRemoved).or_else(|| kernel_route(msg).map(Event::Route6Removed))
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(msg)) => {
            neighbour(msg).map(Event::NeighbourPresent)
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelNeighbour(msg)) => {
            neighbour(msg).map(Event::NeighbourGone)
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRule(msg)) => {
            rule(msg).map(Event::RuleAdded).or_else(|| rule6(msg).map(Event::Rule6Added))
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRule(msg)) => {
            rule(msg).map(Event::RuleRemoved).or_else(|| rule6(msg).map(Event::Rule6Removed))
        }
        NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewQueueDiscipline(msg)
            | RouteNetlinkMessage::DelQueueDiscipline(msg)
            | RouteNetlinkMessage::NewTrafficFilter(msg)
            | RouteNetlinkMessage::DelTrafficFilter(msg)
            | RouteNetlinkMessage::NewTrafficChain(msg)
            | RouteNetlinkMessage::DelTrafficChain(msg),
        ) => u32::try_from(msg.header.index).ok().map(Event::TrafficControl),
        NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewAddress(msg) | RouteNetlinkMessage::DelAddress(msg),
        ) if msg.header.family == AddressFamily::Inet6 => Some(Event::Address6Changed(msg.header.index)),
        NetlinkPayload::Overrun(_) => Some(Event::Overrun),
        _ => None,
    }
}

/// A qdisc or filter of interface `ifindex` (a dump lists every interface's).
fn tc_object(msg: &TcMessage, ifindex: u32) -> Option<TcObject> {
    if u32::try_from(msg.header.index).ok()? != ifindex {
        return None;
    }
    let kind = msg.attributes.iter().find_map(|a| match a {
        TcAttribute::Kind(kind) => Some(kind.clone()),
        _ => None,
    })?;
    Some(TcObject {
        kind,
        handle: msg.header.handle.into(),
        parent: msg.header.parent.into(),
        priority: (msg.header.info >> 16) as u16,
    })
}

/// An IPv4 rule; `None` for other families.
pub fn rule(msg: &RuleMessage) -> Option<Rule> {
    (msg.header.family == AddressFamily::Inet).then(|| any_rule(msg))
}

/// An IPv6 rule; `None` for other families. [`Rule`]'s prefixes are IPv4's: an IPv6 source or
/// destination selector is kept as one of its `other_selectors`, which is all the IPv6 fast path
/// asks of a rule (whether it is one of the kernel's defaults).
pub fn rule6(msg: &RuleMessage) -> Option<Rule> {
    (msg.header.family == AddressFamily::Inet6).then(|| any_rule(msg))
}

fn any_rule(msg: &RuleMessage) -> Rule {
    let verb = match msg.header.action {
        RuleAction::ToTable => Verb::Lookup(u32::from(msg.header.table)),
        RuleAction::Goto => Verb::Goto(0),
        RuleAction::Nop => Verb::Nop,
        RuleAction::Blackhole => Verb::Blackhole,
        RuleAction::Unreachable => Verb::Unreachable,
        RuleAction::Prohibit => Verb::Prohibit,
        RuleAction::Other(code) => Verb::Other(code),
        _ => Verb::Other(0),
    };
    let mut rule = Rule {
        invert: msg.header.flags.contains(RuleFlags::Invert),
        tos: msg.header.tos,
        verb,
        ..Rule::lookup(0, 0)
    };
    let (mut mark, mut mask) = (None, None);
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Priority(p) => rule.priority = *p,
            // The header's table field is 8 bits; FRA_TABLE carries the full id.
            RuleAttribute::Table(table) => {
                if let Verb::Lookup(_) = rule.verb {
                    rule.verb = Verb::Lookup(*table);
                }
            }
            RuleAttribute::Goto(target) => rule.verb = Verb::Goto(*target),
            RuleAttribute::Source(IpAddr::V4(addr)) => rule.src = Some((msg.header.src_len, *addr)),
            RuleAttribute::Destination(IpAddr::V4(addr)) => rule.dst = Some((msg.header.dst_len, *addr)),
            RuleAttribute::Source(IpAddr::V6(_)) | RuleAttribute::Destination(IpAddr::V6(_)) => {
                rule.other_selectors = true
            }
            RuleAttribute::Iifname(name) => rule.iif = Some(name.clone()),
            RuleAttribute::Oifname(name) => rule.oif = Some(name.clone()),
            RuleAttribute::FwMark(m) => mark = Some(*m),
            RuleAttribute::FwMask(m) => mask = Some(*m),
            RuleAttribute::L3MDev(on) => rule.l3mdev = *on,
            // -1 (u32::MAX) means unset.
            RuleAttribute::SuppressPrefixLen(len) => rule.suppress_prefixlen = u8::try_from(*len).ok(),
            RuleAttribute::SuppressIfGroup(group) => {
                rule.suppress_ifgroup = (*group != u32::MAX).then_some(*group)
            }
            RuleAttribute::IpProtocol(_)
            | RuleAttribute::SourcePortRange(_)
            | RuleAttribute::DestinationPortRange(_)
            | RuleAttribute::UidRange(_)
            | RuleAttribute::TunId(_) => rule.other_selectors = true,
            _ => {}
        }
    }
    // A mark without a mask is matched whole (`fwmark 0x10` is `0x10/0xffffffff`).
    rule.fwmark = mark.map(|m| (m, mask.unwrap_or(u32::MAX))).filter(|(m, mask)| *m != 0 || *mask != 0);
    rule
}

pub fn link_state(msg: &LinkMessage) -> LinkState {
    let mut link = LinkState {
        index: msg.header.index,
        up: msg.header.flags.contains(LinkFlags::Up),
        ..LinkState::default()
    };
    let (mut netnsid, mut peer_index) = (None, None);
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name.clone_from(name),
            LinkAttribute::Address(bytes) => link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Link(index) => peer_index = Some(*index),
            LinkAttribute::LinkNetNsId(id) => netnsid = Some(*id),
            LinkAttribute::LinkInfo(infos) => link.vxlan = vxlan_link(infos),
            _ => {}
        }
    }
    link.peer = netnsid.zip(peer_index);
    link
}

fn vxlan_link(infos: &[LinkInfo]) -> Option<VxlanLink> {
    let attributes = infos.iter().find_map(|info| match info {
        LinkInfo::Data(InfoData::Vxlan(attributes)) => Some(attributes),
        _ => None,
    })?;
    let mut v = VxlanLink::default();
    for attribute in attributes {
        match attribute {
            InfoVxlan::Id(vni) => v.vni = Some(*vni),
            InfoVxlan::Port(port) => v.port = Some(*port),
            InfoVxlan::Local(addr) => v.local = Some(IpAddr::V4(*addr)).filter(|a| !a.is_unspecified()),
            InfoVxlan::Local6(addr) => v.local = Some(IpAddr::V6(*addr)).filter(|a| !a.is_unspecified()),
            InfoVxlan::Link(index) => v.link = Some(*index),
            InfoVxlan::PortRange(range) => v.port_range = Some(*range),
            InfoVxlan::Ttl(ttl) => v.ttl = *ttl,
            InfoVxlan::TtlInherit(on) => v.ttl_inherit = *on != 0,
            InfoVxlan::TtlInheritFlag => v.ttl_inherit = true,
            InfoVxlan::Tos(tos) => v.tos = *tos,
            InfoVxlan::Df(df) => v.df = u8::from(*df),
            InfoVxlan::CollectMetadata(on) => v.collect_metadata = *on,
            InfoVxlan::Gbp | InfoVxlan::Gpe | InfoVxlan::RemCsumNoPartial => v.extensions = true,
            InfoVxlan::RemCsumTX(on) | InfoVxlan::RemCsumRX(on) => v.extensions |= *on,
            _ => {}
        }
    }
    Some(v)
}

/// A neighbour or FDB entry; `None` for other families.
pub fn neighbour(msg: &NeighbourMessage) -> Option<Neighbour> {
    let table = match msg.header.family {
        AddressFamily::Inet => NeighbourTable::Ipv4,
        AddressFamily::Inet6 => NeighbourTable::Ipv6,
        AddressFamily::Bridge => NeighbourTable::Bridge,
        _ => return None,
    };
    let resolved = !matches!(
        msg.header.state,
        NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
    );
    let mut n =
        Neighbour { ifindex: msg.header.ifindex, table, addr: None, mac: None, resolved, overridden: false };
    for attribute in &msg.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(addr)) => n.addr = Some((*addr).into()),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(addr)) => n.addr = Some((*addr).into()),
            // An FDB entry's destination comes as raw bytes (its family is AF_BRIDGE), 4 or 16.
            NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                n.addr = match bytes.len() {
                    4 => <[u8; 4]>::try_from(bytes.as_slice()).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(bytes.as_slice()).ok().map(IpAddr::from),
                    _ => None,
                };
            }
            NeighbourAttribute::LinkLayerAddress(bytes) => n.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            NeighbourAttribute::Port(_)
            | NeighbourAttribute::Vni(_)
            | NeighbourAttribute::IfIndex(_)
            | NeighbourAttribute::SourceVni(_) => n.overridden = true,
            _ => {}
        }
    }
    Some(n)
}

fn is_ipip(msg: &LinkMessage) -> bool {
    msg.attributes.iter().any(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::IpIp))),
        _ => false,
    })
}

fn address(msg: &AddressMessage) -> Option<Address> {
    if msg.header.family != AddressFamily::Inet {
        return None;
    }
    address_of(msg)
}

/// A global IPv6 address this host can send from: universe scope, and neither tentative (still
/// in duplicate address detection) nor found a duplicate.
fn address6(msg: &AddressMessage) -> Option<Address6> {
    let unusable = AddressHeaderFlags::Tentative | AddressHeaderFlags::Dadfailed;
    let usable = msg.header.family == AddressFamily::Inet6
        && msg.header.scope == AddressScope::Universe
        && !msg.header.flags.intersects(unusable);
    if !usable {
        return None;
    }
    address_of(msg)
}

/// The address of family `A` an address message gives the interface.
fn address_of<A: Family>(msg: &AddressMessage) -> Option<Address<A>> {
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point links.
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => A::of(*ip),
        _ => None,
    });
    let addr = local.or_else(|| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => A::of(*ip),
            _ => None,
        })
    })?;
    Some(Address { index: msg.header.index, addr, prefix_len: msg.header.prefix_len })
}

/// An address family as netlink names it.
pub trait RouteFamily: Family {
    const FAMILY: AddressFamily;
}

impl RouteFamily for Ipv4Addr {
    const FAMILY: AddressFamily = AddressFamily::Inet;
}

impl RouteFamily for Ipv6Addr {
    const FAMILY: AddressFamily = AddressFamily::Inet6;
}

/// A route's address, if it is of family `A`.
fn route_address<A: Family>(address: &RouteAddress) -> Option<A> {
    match address {
        RouteAddress::Inet(addr) => A::of((*addr).into()),
        RouteAddress::Inet6(addr) => A::of((*addr).into()),
        _ => None,
    }
}

/// A route of family `A` as the mapping sees it; `None` for other families.
pub fn kernel_route<A: RouteFamily>(msg: &RouteMessage) -> Option<KernelRoute<A>> {
    if msg.header.address_family != A::FAMILY {
        return None;
    }
    let mut route = KernelRoute {
        dst: A::UNSPECIFIED,
        prefix_len: msg.header.destination_prefix_length,
        kind: match msg.header.kind {
            RouteType::Unicast => RouteKindOf::Unicast,
            RouteType::BlackHole => RouteKindOf::Blackhole,
            RouteType::Local => RouteKindOf::Local,
            RouteType::Throw => RouteKindOf::Throw,
            _ => RouteKindOf::Other,
        },
        table: u32::from(msg.header.table),
        priority: 0,
        tos: msg.header.tos,
        oif: None,
        gateway: None,
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(addr) => route.dst = route_address(addr)?,
            RouteAttribute::Gateway(addr) => route.gateway = route_address(addr),
            RouteAttribute::Oif(index) => route.oif = Some(*index),
            RouteAttribute::Priority(priority) => route.priority = *priority,
            // The header's table field is 8 bits; RTA_TABLE carries the full id.
            RouteAttribute::Table(table) => route.table = *table,
            _ => {}
        }
    }
    Some(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link_message(index: u32, attrs: Vec<LinkAttribute>) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.attributes = attrs;
        msg
    }

    #[test]
    fn a_pod_veth_reports_its_name_mac_and_peer() {
        let msg = link_message(
            507,
            vec![
                LinkAttribute::IfName("cali0f293e89ca7".into()),
                LinkAttribute::Address(vec![0xee; 6]),
                LinkAttribute::Mtu(1480),
                LinkAttribute::Link(4),
                LinkAttribute::LinkNetNsId(17),
            ],
        );
        let link = link_state(&msg);
        assert_eq!(
            link,
            LinkState {
                index: 507,
                name: "cali0f293e89ca7".into(),
                mac: Some([0xee; 6]),
                mtu: 1480,
                up: true,
                peer: Some((17, 4)),
                vxlan: None,
            }
        );
    }

    #[test]
    fn an_ipip_device_is_told_by_its_kind() {
        let tunl0 = link_message(9, vec![LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::IpIp)])]);
        let veth = link_message(10, vec![LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)])]);
        assert!(is_ipip(&tunl0));
        assert!(!is_ipip(&veth));
        assert!(!is_ipip(&link_message(11, vec![])));
    }

    #[test]
    fn new_and_del_link_are_events() {
        let msg = link_message(3, vec![LinkAttribute::IfName("cali1".into())]);
        let new = NetlinkMessage::from(RouteNetlinkMessage::NewLink(msg.clone()));
        let del = NetlinkMessage::from(RouteNetlinkMessage::DelLink(msg));
        assert!(matches!(event(&new), Some(Event::LinkPresent(l)) if l.name == "cali1"));
        assert!(matches!(event(&del), Some(Event::LinkGone(l)) if l.index == 3));
    }

    #[test]
    fn a_bird_block_route_is_read_with_its_gateway_and_table() {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 26;
        msg.header.kind = RouteType::Unicast;
        msg.header.table = 254;
        msg.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::new(10, 244, 166, 128))),
            RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(10, 101, 14, 51))),
            RouteAttribute::Oif(9),
            RouteAttribute::Table(254),
        ];
        let route = kernel_route(&msg).unwrap();
        assert_eq!(route.dst, Ipv4Addr::new(10, 244, 166, 128));
        assert_eq!(route.prefix_len, 26);
        assert_eq!(route.gateway, Some(Ipv4Addr::new(10, 101, 14, 51)));
        assert_eq!(route.oif, Some(9));
        assert_eq!(route.kind, RouteKindOf::Unicast);
        assert_eq!(route.table, 254);
    }

    #[test]
    fn an_overrun_is_an_event() {
        let overrun: NetlinkMessage<RouteNetlinkMessage> =
            NetlinkMessage::new(Default::default(), NetlinkPayload::Overrun(Vec::new()));
        assert_eq!(event(&overrun), Some(Event::Overrun));
    }

    #[test]
    fn a_vxlan_device_reports_its_settings() {
        let msg = link_message(
            9,
            vec![
                LinkAttribute::IfName("vxlan.calico".into()),
                LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(rtnetlink::packet_route::link::InfoKind::Vxlan),
                    LinkInfo::Data(InfoData::Vxlan(vec![
                        InfoVxlan::Id(4096),
                        InfoVxlan::Link(2),
                        InfoVxlan::Local(Ipv4Addr::new(10, 101, 14, 50)),
                        InfoVxlan::Ttl(0),
                        InfoVxlan::TtlInherit(0),
                        InfoVxlan::Tos(0),
                        InfoVxlan::Learning(false),
                        InfoVxlan::PortRange((0, 0)),
                        InfoVxlan::CollectMetadata(false),
                        InfoVxlan::Port(4789),
                        InfoVxlan::UDPCsum(false),
                    ])),
                ]),
            ],
        );
        let link = link_state(&msg);
        assert_eq!(
            link.vxlan,
            Some(VxlanLink {
                vni: Some(4096),
                port: Some(4789),
                local: Some(IpAddr::V4(Ipv4Addr::new(10, 101, 14, 50))),
                link: Some(2),
                port_range: Some((0, 0)),
                ..VxlanLink::default()
            })
        );
        assert_eq!(link_state(&link_message(3, vec![])).vxlan, None);
    }

    #[test]
    fn ipv6_addresses_are_events_and_only_usable_global_ones_count_as_the_nodes() {
        let addr: Ipv6Addr = "fd00:101::a65:e32".parse().unwrap();
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet6;
        msg.header.index = 2;
        msg.header.prefix_len = 124;
        msg.attributes = vec![AddressAttribute::Address(addr.into())];
        let message = NetlinkMessage::from(RouteNetlinkMessage::NewAddress(msg.clone()));
        assert_eq!(event(&message), Some(Event::Address6Changed(2)));
        let message = NetlinkMessage::from(RouteNetlinkMessage::DelAddress(msg.clone()));
        assert_eq!(event(&message), Some(Event::Address6Changed(2)));
        assert_eq!(address6(&msg), Some(Address6 { index: 2, addr, prefix_len: 124 }));
        let mut tentative = msg.clone();
        tentative.header.flags = AddressHeaderFlags::Tentative;
        assert_eq!(address6(&tentative), None, "still in duplicate address detection");
        let mut link_local = msg;
        link_local.header.scope = AddressScope::Link;
        assert_eq!(address6(&link_local), None);
    }

    #[test]
    fn neighbour_and_fdb_entries_are_read() {
        use rtnetlink::packet_route::neighbour::NeighbourHeader;
        let mut arp = NeighbourMessage::default();
        arp.header = NeighbourHeader {
            family: AddressFamily::Inet,
            ifindex: 9,
            state: NeighbourState::Permanent,
            ..NeighbourHeader::default()
        };
        arp.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet(Ipv4Addr::new(10, 244, 166, 128))),
            NeighbourAttribute::LinkLayerAddress(vec![0x66, 0, 10, 101, 14, 51]),
        ];
        let n = neighbour(&arp).unwrap();
        assert_eq!(
            (n.table, n.addr, n.mac, n.resolved),
            (
                NeighbourTable::Ipv4,
                Some(Ipv4Addr::new(10, 244, 166, 128).into()),
                Some([0x66, 0, 10, 101, 14, 51]),
                true
            )
        );
        let mut fdb = arp.clone();
        fdb.header.family = AddressFamily::Bridge;
        fdb.attributes[0] = NeighbourAttribute::Destination(NeighbourAddress::Other(vec![10, 101, 14, 51]));
        let n = neighbour(&fdb).unwrap();
        assert_eq!(
            (n.table, n.addr, n.overridden),
            (NeighbourTable::Bridge, Some(Ipv4Addr::new(10, 101, 14, 51).into()), false)
        );
        // IPv6: vxlan-v6.calico's neighbour entry, and an FDB entry with a 16-byte destination.
        let (tunnel, node): (Ipv6Addr, Ipv6Addr) =
            ("fd5f:a1b2:c3d4::af4:a680".parse().unwrap(), "fd00:101::a65:e33".parse().unwrap());
        let mut ndp = arp.clone();
        ndp.header.family = AddressFamily::Inet6;
        ndp.attributes[0] = NeighbourAttribute::Destination(NeighbourAddress::Inet6(tunnel));
        let n = neighbour(&ndp).unwrap();
        assert_eq!((n.table, n.addr), (NeighbourTable::Ipv6, Some(tunnel.into())));
        fdb.attributes[0] = NeighbourAttribute::Destination(NeighbourAddress::Other(node.octets().to_vec()));
        assert_eq!(neighbour(&fdb).unwrap().addr, Some(IpAddr::V6(node)));
        fdb.attributes.push(NeighbourAttribute::Port(8472));
        assert!(neighbour(&fdb).unwrap().overridden);
        let mut failed = arp.clone();
        failed.header.state = NeighbourState::Failed;
        assert!(!neighbour(&failed).unwrap().resolved);
        let event = NetlinkMessage::from(RouteNetlinkMessage::DelNeighbour(arp));
        assert!(matches!(event_of(&event), Some(Event::NeighbourGone(n)) if n.ifindex == 9));
    }

    fn event_of(message: &NetlinkMessage<RouteNetlinkMessage>) -> Option<Event> {
        event(message)
    }

    #[test]
    fn felixs_wireguard_rule_is_read() {
        let mut msg = RuleMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.action = RuleAction::ToTable;
        msg.header.table = 1;
        msg.header.flags = RuleFlags::Invert;
        msg.attributes = vec![
            RuleAttribute::Priority(99),
            RuleAttribute::Table(1),
            RuleAttribute::FwMark(0x10_0000),
            RuleAttribute::FwMask(0x10_0000),
            RuleAttribute::SuppressPrefixLen(u32::MAX),
        ];
        let rule = rule(&msg).unwrap();
        assert_eq!(rule.to_string(), "99: not from all fwmark 0x100000/0x100000 lookup 1");
        assert_eq!(rule.suppress_prefixlen, None);
        let mut v6 = msg.clone();
        v6.header.family = AddressFamily::Inet6;
        assert_eq!(super::rule(&v6), None);
        let event = NetlinkMessage::from(RouteNetlinkMessage::NewRule(msg));
        assert!(matches!(event_of(&event), Some(Event::RuleAdded(r)) if r.priority == 99));
    }

    #[test]
    fn a_qdisc_event_names_its_interface() {
        let msg = TcMessage::with_index(7);
        let event = NetlinkMessage::from(RouteNetlinkMessage::NewQueueDiscipline(msg));
        assert_eq!(event_of(&event), Some(Event::TrafficControl(7)));
    }

    #[test]
    fn each_family_is_read_by_its_own_parser() {
        let pod: Ipv6Addr = "fd5f:a1b2:c3d4::a0a:2824".parse().unwrap();
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet6;
        msg.header.destination_prefix_length = 128;
        msg.header.kind = RouteType::Unicast;
        msg.header.table = 254;
        msg.attributes = vec![RouteAttribute::Destination(RouteAddress::Inet6(pod)), RouteAttribute::Oif(7)];
        assert_eq!(kernel_route::<Ipv4Addr>(&msg), None);
        assert_eq!(kernel_route::<Ipv6Addr>(&msg), Some(KernelRoute::main_unicast(pod, 128, Some(7), None)));
        let event = NetlinkMessage::from(RouteNetlinkMessage::DelRoute(msg));
        assert!(matches!(event_of(&event), Some(Event::Route6Removed(r)) if r.dst == pod));
    }
}
