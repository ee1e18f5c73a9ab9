//! The kernel's conntrack, followed through ctnetlink (the judge of `--trust kernel`): a dump of
//! its entries (of both families), then their events (new, updated, destroyed), and the two changes the daemon
//! makes to an entry it fast-paths: a fresher timeout while the fast path carries the flow, and
//! "be liberal" for TCP, so that the close the kernel sees after segments it did not is never
//! judged out of window (INVALID), as the nf flowtable marks the flows it offloads.
//!
//! The event socket, read until it would block, also carries the changes: the kernel sends the
//! events a change causes to every listener but the one that asked, so the daemon never reads
//! its own. Changes are sent without waiting for an answer (the kernel answers only a failure,
//! read and logged with the events): a connection must not cost the daemon a round trip. A
//! classic BPF filter (`ctnetlink::event_filter`) keeps what the judge never acts on in the
//! kernel. Dumps have a socket of their own.
//! The wire format is `ctnetlink.rs`'s; what the messages mean is decided in `judge.rs`.

use std::{
    collections::VecDeque,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use tokio::io::{unix::AsyncFd, Interest};

pub use crate::daemon::ctnetlink::{Entry, Event, Tuple, IPS_SEEN_REPLY, TCP_ESTABLISHED};
use crate::{
    daemon::ctnetlink::{self, Message, NLMSG_DONE, NLM_F_DUMP_INTR},
    Error,
};

/// The multicast groups of conntrack's events (`NFNLGRP_CONNTRACK_*`).
const NFNLGRP_CONNTRACK_NEW: u32 = 1;
const NFNLGRP_CONNTRACK_UPDATE: u32 = 2;
const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;
/// The event socket's receive buffer: a burst of connections must not overflow it.
const EVENT_BUFFER_BYTES: libc::c_int = 8 << 20;
/// Room for one datagram: a dump packs many messages in one.
const DATAGRAM_BYTES: usize = 64 << 10;
/// A dump the table's changes interrupted is taken again, this many times at most.
const DUMP_ATTEMPTS: usize = 5;
/// A dump that has not ended by then never will (a million entries take about a second).
const DUMP_TIMEOUT: Duration = Duration::from_secs(30);
/// Under a stream of events, how often the socket is read (`Conntrack::next`).
const BATCH_INTERVAL: Duration = Duration::from_millis(1);

/// A netlink socket of the netfilter family, non-blocking, under tokio.
struct Socket(AsyncFd<OwnedFd>);

impl Socket {
    fn open(groups: &[u32], what: &'static str) -> Result<Self, Error> {
        let fail = |source| Error::Netlink { what, source };
        // SAFETY: a plain socket call; the descriptor is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(fail(io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: all-zero is a valid sockaddr_nl; the kernel picks the port id.
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: binding our socket to an address of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::addr_of!(address).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(fail(io::Error::last_os_error()));
        }
        for group in groups {
            set_option(&fd, libc::SOL_NETLINK, libc::NETLINK_ADD_MEMBERSHIP, *group as libc::c_int)
                .map_err(fail)?;
        }
        if !groups.is_empty() {
            if let Err(e) = set_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, EVENT_BUFFER_BYTES) {
                log::warn!("cannot enlarge the conntrack event buffer: {e}");
            }
        }
        // SAFETY: the descriptor is an `OwnedFd` the `AsyncFd` owns from here on: it stays open
        // and the same until the `AsyncFd` goes.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
        Ok(Self(fd.map_err(|e| fail(e.into_parts().1))?))
    }

    /// One datagram into `buffer`, if one is waiting (`Ok(None)`: none).
    fn try_recv(&self, buffer: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: receiving into a buffer of the length given, on our socket.
        let n = unsafe {
            libc::recv(
                self.0.get_ref().as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(e)
        }
    }

    /// Wait until a datagram may be waiting.
    async fn readable(&self) -> io::Result<()> {
        let mut guard = self.0.readable().await?;
        guard.clear_ready();
        Ok(())
    }

    /// Let through only what `program` accepts (`SO_ATTACH_FILTER`).
    fn filter(&self, program: &[ctnetlink::SockFilter]) -> io::Result<()> {
        let fprog =
            libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut().cast() };
        // SAFETY: the program outlives the call (the kernel copies it); the option value is a
        // `sock_fprog` of the size given.
        let rc = unsafe {
            libc::setsockopt(
                self.0.get_ref().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                std::ptr::addr_of!(fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        // SAFETY: all-zero addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: sending a buffer of the length given to an address of the size given.
        let n = unsafe {
            libc::sendto(
                self.0.get_ref().as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                std::ptr::addr_of!(kernel).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

fn set_option(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt on our socket with a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// ctnetlink's events and changes on one socket (the kernel sends the events a change of ours
/// causes to every listener but the socket that asked, so the daemon never reads its own), and
/// dumps on another: the event filter sees only a datagram's first message, and a dump packs
/// many in one.
pub struct Conntrack {
    socket: Socket,
    dumps: Socket,
    /// Events read and not yet handed out.
    queue: VecDeque<Event>,
    buffer: Vec<u8>,
    /// Changes not sent yet: sent together, in one datagram, once the events at hand are handled.
    changes: Vec<u8>,
    /// When the socket was last read until it would block.
    drained_at: Option<Instant>,
    seq: u32,
    /// Whether a failed change was said at warning level already (later ones go to debug).
    change_failure_said: bool,
}

impl Conntrack {
    /// Subscribe before dumping, so that nothing created in between is missed. Must be called
    /// inside a tokio runtime.
    pub fn new() -> Result<Self, Error> {
        let socket = Socket::open(
            &[NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, NFNLGRP_CONNTRACK_DESTROY],
            "cannot follow conntrack's events",
        )?;
        socket
            .filter(&ctnetlink::event_filter())
            .map_err(|source| Error::Netlink { what: "cannot filter conntrack's events", source })?;
        Ok(Self {
            socket,
            dumps: Socket::open(&[], "cannot open a conntrack dump socket")?,
            queue: VecDeque::new(),
            buffer: vec![0; DATAGRAM_BYTES],
            changes: Vec::new(),
            drained_at: None,
            seq: 0,
            change_failure_said: false,
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Every entry conntrack holds now, of both families.
    pub async fn dump(&mut self) -> Result<Vec<Entry>, Error> {
        for _ in 0..DUMP_ATTEMPTS {
            let dumped = tokio::time::timeout(DUMP_TIMEOUT, self.dump_once()).await.map_err(|_| {
                Error::Netlink { what: "conntrack dump", source: io::ErrorKind::TimedOut.into() }
            })?;
            if let Some(entries) = dumped? {
                return Ok(entries);
            }
        }
        Err(Error::Netlink {
            what: "conntrack dump",
            source: io::Error::other("interrupted by changes every time"),
        })
    }

    /// A dump, or `None` when the table changed under it (`NLM_F_DUMP_INTR`).
    async fn dump_once(&mut self) -> Result<Option<Vec<Entry>>, Error> {
        let fail = |source| Error::Netlink { what: "conntrack dump", source };
        let seq = self.next_seq();
        self.dumps.send(&ctnetlink::dump_request(seq)).map_err(fail)?;
        let (mut entries, mut interrupted) = (Vec::new(), false);
        loop {
            let Some(n) = self.dumps.try_recv(&mut self.buffer).map_err(fail)? else {
                self.dumps.readable().await.map_err(fail)?;
                continue;
            };
            for message in ctnetlink::messages(&self.buffer[..n]) {
                if message.seq != seq {
                    // What is left of an earlier dump that timed out.
                    continue;
                }
                interrupted |= message.flags & NLM_F_DUMP_INTR != 0;
                if message.kind == NLMSG_DONE {
                    return Ok((!interrupted).then_some(entries));
                }
                if let Some(errno) = ctnetlink::error_of(&message).filter(|e| *e != 0) {
                    return Err(fail(io::Error::from_raw_os_error(errno)));
                }
                entries.extend(ctnetlink::entry_of(&message));
            }
        }
    }

    /// Set the entry whose original tuple is `original` to time out `seconds` from now.
    pub fn refresh(&mut self, original: &Tuple, seconds: u32) {
        let seq = self.next_seq();
        self.change(&ctnetlink::refresh_request(original, seconds, seq));
    }

    /// Make conntrack liberal about the TCP windows of the entry whose original tuple is
    /// `original`, both ways.
    pub fn be_liberal(&mut self, original: &Tuple) {
        let seq = self.next_seq();
        self.change(&ctnetlink::be_liberal_request(original, seq));
    }

    /// Queue a change; a full datagram's worth goes at once.
    fn change(&mut self, request: &[u8]) {
        if self.changes.len() + request.len() > DATAGRAM_BYTES {
            self.flush();
        }
        self.changes.extend_from_slice(request);
    }

    /// Whether events already read wait to be taken.
    pub fn has_queued_events(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Send the queued changes, in one datagram, without waiting: the kernel answers only a
    /// failure, read with the events.
    pub fn flush(&mut self) {
        if self.changes.is_empty() {
            return;
        }
        if let Err(e) = self.socket.send(&self.changes) {
            log::debug!("conntrack changes not sent: {e}");
        }
        self.changes.clear();
    }

    /// The next event; `None` when the socket failed. Under a stream of events the socket is
    /// read at most once per `BATCH_INTERVAL`, everything waiting at once: a busy node's
    /// connections cost the daemon one wakeup per interval, not one per event, at the price of
    /// approving them up to an interval later. The first event after a quiet spell is read at
    /// once.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            self.flush();
            match self.socket.try_recv(&mut self.buffer) {
                Ok(Some(n)) => {
                    for message in ctnetlink::messages(&self.buffer[..n]) {
                        route(&message, &mut self.queue, &mut self.change_failure_said);
                    }
                }
                Ok(None) => {
                    let busy = self.drained_at.is_some_and(|at| at.elapsed() < BATCH_INTERVAL);
                    if busy {
                        tokio::time::sleep(BATCH_INTERVAL).await;
                        self.drained_at = None;
                        continue;
                    }
                    if let Err(e) = self.socket.readable().await {
                        log::warn!("conntrack events: {e}");
                        return None;
                    }
                    self.drained_at = Some(Instant::now());
                }
                // The kernel dropped events for want of room: say so, and carry on reading.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Some(Event::Overrun),
                Err(e) => {
                    log::warn!("conntrack events: {e}");
                    return None;
                }
            }
        }
    }
}

/// A message that is no answer to a dump: an event to queue, or the answer to a change.
fn route(message: &Message, queue: &mut VecDeque<Event>, change_failure_said: &mut bool) {
    if ctnetlink::error_of(message).is_some() {
        said_failure(message, change_failure_said);
    } else if let Some(event) = ctnetlink::event_of(message) {
        queue.push_back(event);
    }
}

/// Log a failed change (an entry that went meanwhile is no news).
fn said_failure(message: &Message, said: &mut bool) {
    let Some(errno) = ctnetlink::error_of(message).filter(|e| *e != 0) else { return };
    let e = io::Error::from_raw_os_error(errno);
    if errno == libc::ENOENT || *said {
        log::debug!("conntrack change {}: {e}", message.seq);
    } else {
        *said = true;
        log::warn!("conntrack refused a change of an entry the fast path carries: {e}");
    }
}
