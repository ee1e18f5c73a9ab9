//! Following the kernel's interfaces through rtnetlink: one dump at start, then events.

use futures::{channel::mpsc::UnboundedReceiver, StreamExt as _, TryStreamExt as _};
use rtnetlink::{
    packet_core::{NetlinkMessage, NetlinkPayload},
    packet_route::{
        link::{LinkAttribute, LinkMessage},
        RouteNetlinkMessage,
    },
    sys::SocketAddr,
    Handle, MulticastGroup,
};

use crate::{attach::Link, Error};

/// A change to the set of interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// RTM_NEWLINK: created, renamed, or its state changed.
    Present(Link),
    /// RTM_DELLINK: deleted or moved to another namespace.
    Gone(Link),
}

type Messages = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

/// A netlink socket subscribed to link events, with a handle for requests.
pub struct LinkWatcher {
    handle: Handle,
    messages: Messages,
}

impl LinkWatcher {
    /// Subscribe before dumping, so that no interface created in between is missed.
    /// Must be called inside a tokio runtime (the connection runs as a task).
    pub fn new() -> Result<Self, Error> {
        let (connection, handle, messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link]).map_err(|source| {
                Error::Netlink {
                    what: "cannot open a link-event socket",
                    source,
                }
            })?;
        tokio::spawn(connection);
        Ok(Self { handle, messages })
    }

    /// Every interface that exists now.
    pub async fn dump(&self) -> Result<Vec<Link>, Error> {
        let mut stream = self.handle.link().get().execute();
        let mut links = Vec::new();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|source| Error::NetlinkRequest {
                what: "link dump",
                source,
            })?
        {
            links.extend(link_of(&msg));
        }
        Ok(links)
    }

    /// The next link event; `None` when the socket closed.
    pub async fn next(&mut self) -> Option<LinkEvent> {
        loop {
            let (message, _) = self.messages.next().await?;
            if let Some(event) = link_event(&message) {
                return Some(event);
            }
        }
    }
}

/// The link event a netlink message carries, if any.
pub fn link_event(message: &NetlinkMessage<RouteNetlinkMessage>) -> Option<LinkEvent> {
    match &message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(msg)) => {
            link_of(msg).map(LinkEvent::Present)
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(msg)) => {
            link_of(msg).map(LinkEvent::Gone)
        }
        _ => None,
    }
}

/// Index and name of a link message; messages without a name are not interfaces we can use.
pub fn link_of(msg: &LinkMessage) -> Option<Link> {
    let name = msg.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::IfName(name) => Some(name.clone()),
        _ => None,
    })?;
    Some(Link {
        index: msg.header.index,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link_message(index: u32, name: Option<&str>) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if let Some(name) = name {
            msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        }
        msg
    }

    fn netlink(inner: RouteNetlinkMessage) -> NetlinkMessage<RouteNetlinkMessage> {
        NetlinkMessage::from(inner)
    }

    #[test]
    fn new_link_is_present_and_del_link_is_gone() {
        let link = Link {
            index: 507,
            name: "cali0f293e89ca7".into(),
        };
        let new = netlink(RouteNetlinkMessage::NewLink(link_message(
            507,
            Some("cali0f293e89ca7"),
        )));
        let del = netlink(RouteNetlinkMessage::DelLink(link_message(
            507,
            Some("cali0f293e89ca7"),
        )));
        assert_eq!(link_event(&new), Some(LinkEvent::Present(link.clone())));
        assert_eq!(link_event(&del), Some(LinkEvent::Gone(link)));
    }

    #[test]
    fn a_link_message_without_a_name_is_ignored() {
        assert_eq!(link_of(&link_message(3, None)), None);
    }

    #[test]
    fn other_messages_are_not_link_events() {
        let msg = netlink(RouteNetlinkMessage::NewRoute(Default::default()));
        assert_eq!(link_event(&msg), None);
    }
}
