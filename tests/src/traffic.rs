//! Traffic between the test bed's namespaces: pings, checksummed TCP transfers, and crafted
//! packets sent from raw sockets. Every loop here is bounded in count and time.

use std::{
    fs::File,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::{cmd, Pod};

/// Run `f` on a thread that has entered network namespace `ns`: sockets it opens live there.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let ns = ns.to_string();
    let handle = std::thread::spawn(move || {
        enter_netns(&ns)?;
        f()
    });
    handle.join().map_err(|_| anyhow::anyhow!("thread in a namespace panicked"))?
}

/// Move the calling thread into network namespace `ns` (for a thread of its own: it stays there).
pub fn enter_netns(ns: &str) -> Result<()> {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).with_context(|| format!("open {path}"))?;
    // SAFETY: setns on a namespace fd we hold; it changes only this thread's namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// What `ping` saw.
#[derive(Debug)]
pub struct Ping {
    pub received: bool,
    /// TTL of the first reply.
    pub ttl: Option<u8>,
    pub output: String,
}

/// `ping -c COUNT -W 2 [extra...] DST` from a pod.
pub fn ping(pod: &Pod, dst: Ipv4Addr, count: u32, extra: &[&str]) -> Result<Ping> {
    ping_to(pod, dst.to_string(), count, extra)
}

/// `ping -6 -c COUNT -W 2 [extra...] DST` from a pod (`ttl` is then the reply's hop limit).
pub fn ping6(pod: &Pod, dst: std::net::Ipv6Addr, count: u32, extra: &[&str]) -> Result<Ping> {
    ping_to(pod, dst.to_string(), count, &[&["-6"], extra].concat())
}

fn ping_to(pod: &Pod, dst: String, count: u32, extra: &[&str]) -> Result<Ping> {
    let count = count.to_string();
    let mut args = vec!["-n", "-c", &count, "-W", "2", "-i", "0.2"];
    args.extend_from_slice(extra);
    args.push(&dst);
    let out = cmd::in_ns(&pod.ns.name, "ping", &args)?;
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let ttl = output.split("ttl=").nth(1).and_then(|rest| rest.split_whitespace().next()?.parse().ok());
    Ok(Ping { received: out.status.success(), ttl, output })
}

/// Send `bytes` of pseudo-random data over TCP from `from` to `to` and check that what arrived
/// is what was sent (length and FNV-1a 64 hash). Bounded by a 60 s deadline.
pub fn transfer(from: &Pod, to: &Pod, bytes: usize) -> Result<()> {
    transfer_to(from, &to.ns.name, to.ip, bytes)
}

/// As [`transfer`], over IPv6: to `to`'s IPv6 address (an error for a pod without one).
pub fn transfer6(from: &Pod, to: &Pod, bytes: usize) -> Result<()> {
    let to_ip = to.ip6.with_context(|| format!("pod {} has no IPv6 address", to.ip))?;
    transfer_via(from, &to.ns.name, SocketAddr::from((to_ip, 0)), None, bytes)
}

/// As [`transfer`], to address `to_ip` in namespace `to_ns` (a pod's, or one behind it).
pub fn transfer_to(from: &Pod, to_ns: &str, to_ip: Ipv4Addr, bytes: usize) -> Result<()> {
    transfer_via(from, to_ns, SocketAddr::from((to_ip, 0)), None, bytes)
}

/// As [`transfer`], to a server listening on `listen` in namespace `to_ns`, reached at
/// `connect` (a service address the kernel translates to `listen`), or at `listen` itself.
pub fn transfer_via(
    from: &Pod,
    to_ns: &str,
    listen: SocketAddr,
    connect: Option<SocketAddr>,
    bytes: usize,
) -> Result<()> {
    let deadline = Duration::from_secs(60);
    let (to_ns, from_ns) = (to_ns.to_string(), from.ns.name.clone());
    let listener = in_netns(&to_ns, move || Ok(TcpListener::bind(listen)?))?;
    let addr = connect.unwrap_or(listener.local_addr()?);
    let server = std::thread::spawn(move || receive(&listener, deadline));
    let sent = in_netns(&from_ns, move || send(addr, bytes, deadline))?;
    let received = server.join().map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    if sent != received {
        bail!("sent {sent:?} (bytes, hash) but {received:?} arrived");
    }
    Ok(())
}

fn send(addr: SocketAddr, bytes: usize, deadline: Duration) -> Result<(usize, u64)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).context("connect")?;
    stream.set_write_timeout(Some(deadline))?;
    let (mut state, mut hash, mut sent) = (0x9e37_79b9_7f4a_7c15_u64, FNV_OFFSET, 0);
    let mut chunk = vec![0u8; 64 * 1024];
    while sent < bytes {
        let n = chunk.len().min(bytes - sent);
        fill_pseudo_random(&mut state, &mut chunk[..n]);
        stream.write_all(&chunk[..n]).context("send")?;
        hash = fnv(hash, &chunk[..n]);
        sent += n;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    Ok((sent, hash))
}

/// xorshift64: bytes that compress badly and are cheap to make.
fn fill_pseudo_random(state: &mut u64, bytes: &mut [u8]) {
    for byte in bytes {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *byte = *state as u8;
    }
}

/// The next connection on `listener`, waiting at most 10 s.
fn accept_within_10s(listener: &TcpListener) -> Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let start = Instant::now();
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && start.elapsed() < Duration::from_secs(10) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e).context("accept"),
        }
    };
    stream.set_nonblocking(false)?;
    Ok(stream)
}

fn receive(listener: &TcpListener, deadline: Duration) -> Result<(usize, u64)> {
    let mut stream = accept_within_10s(listener)?;
    stream.set_read_timeout(Some(deadline))?;
    let (mut hash, mut received) = (FNV_OFFSET, 0);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut chunk).context("receive")?;
        if n == 0 {
            return Ok((received, hash));
        }
        hash = fnv(hash, &chunk[..n]);
        received += n;
    }
}

/// `UDP_SEGMENT` (`linux/udp.h`), which the libc crate names only for other C libraries.
const UDP_SEGMENT: libc::c_int = 103;

/// One `total`-byte send from `from` to `to`'s IPv6 address and port 7000 with `UDP_SEGMENT` set
/// to `segment` (one GSO aggregate the kernel cuts into datagrams of `segment` bytes, the last
/// the remainder): the sizes of the datagrams that arrived, each checked against what was sent.
/// Waits at most 5 s for the last one.
pub fn udp_gso_send6(from: &Pod, to: &Pod, segment: u16, total: usize) -> Result<Vec<usize>> {
    let to_ip = to.ip6.with_context(|| format!("pod {} has no IPv6 address", to.ip))?;
    let listen = SocketAddr::from((to_ip, 7000));
    let receiver = in_netns(&to.ns.name, move || Ok(std::net::UdpSocket::bind(listen)?))?;
    receiver.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut payload = vec![0u8; total];
    fill_pseudo_random(&mut 0x2545_f491_4f6c_dd1d, &mut payload);
    let sent = payload.clone();
    in_netns(&from.ns.name, move || {
        let socket = std::net::UdpSocket::bind(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)))?;
        let size = libc::c_int::from(segment);
        // SAFETY: setsockopt on a socket we own, with a pointer to an int of the length given.
        let set = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_UDP,
                UDP_SEGMENT,
                std::ptr::from_ref(&size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set != 0 {
            bail!("UDP_SEGMENT: {}", std::io::Error::last_os_error());
        }
        socket.send_to(&payload, listen).context("send")?;
        Ok(())
    })?;
    let mut sizes = Vec::new();
    let mut buffer = vec![0u8; 65536];
    for piece in sent.chunks(usize::from(segment)) {
        let n = receiver.recv(&mut buffer).context("receive")?;
        if buffer[..n] != *piece {
            bail!("datagram {} ({n} bytes) is not the one sent ({} bytes)", sizes.len(), piece.len());
        }
        sizes.push(n);
    }
    Ok(sizes)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash = (hash ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    hash
}

/// An echo server on `pod`'s address and `port`: it serves `connections` connections one after
/// another, sending back whatever arrives until the client closes. Every accept waits at most
/// 10 s and every read or write 30 s. Joins to the number served.
pub fn serve_echo(
    pod: &Pod,
    port: u16,
    connections: usize,
) -> Result<std::thread::JoinHandle<Result<usize>>> {
    serve_echo_at(&pod.ns.name, SocketAddr::from((pod.ip, port)), connections)
}

/// As [`serve_echo`], on `at` in namespace `ns`.
pub fn serve_echo_at(
    ns: &str,
    at: SocketAddr,
    connections: usize,
) -> Result<std::thread::JoinHandle<Result<usize>>> {
    let listener = in_netns(ns, move || Ok(TcpListener::bind(at)?))?;
    Ok(std::thread::spawn(move || {
        for served in 0..connections {
            let mut stream =
                accept_within_10s(&listener).with_context(|| format!("after {served} connections"))?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            stream.set_write_timeout(Some(Duration::from_secs(30)))?;
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = stream.read(&mut chunk).context("echo: read")?;
                if n == 0 {
                    break;
                }
                stream.write_all(&chunk[..n]).context("echo: write")?;
            }
        }
        Ok(connections)
    }))
}

/// From `from`, connect to `to`, send `bytes` of pseudo-random data, close the sending side, and
/// check that exactly the same bytes come back (an echo server's answer).
pub fn echo_round_trip(from: &Pod, to: SocketAddr, bytes: usize) -> Result<()> {
    in_netns(&from.ns.name.clone(), move || {
        let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(5)).context("connect")?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let mut message = vec![0u8; bytes];
        fill_pseudo_random(&mut (0x2545_f491_4f6c_dd1d_u64 ^ bytes as u64), &mut message);
        // Send on a thread of its own while this one reads the echo: neither side waits for the
        // other's buffers to drain.
        let mut sender = stream.try_clone()?;
        let sent = message.clone();
        let writer = std::thread::spawn(move || -> Result<()> {
            sender.write_all(&sent).context("send")?;
            Ok(sender.shutdown(std::net::Shutdown::Write)?)
        });
        let mut echo = Vec::with_capacity(bytes);
        let read = stream.read_to_end(&mut echo).context("receive the echo");
        writer.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
        read?;
        if echo != message {
            bail!(
                "sent {} bytes, {} came back{}",
                message.len(),
                echo.len(),
                if echo.len() == bytes { ", different" } else { "" }
            );
        }
        Ok(())
    })
}

/// A TCP connection from a pod to an echo server, kept open between exchanges.
pub struct OpenConnection {
    stream: TcpStream,
}

impl OpenConnection {
    pub fn new(from: &Pod, to: SocketAddr) -> Result<Self> {
        let stream = in_netns(&from.ns.name.clone(), move || {
            TcpStream::connect_timeout(&to, Duration::from_secs(5)).context("connect")
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self { stream })
    }

    /// The connection's own port.
    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().map_or(0, |a| a.port())
    }

    /// Send `bytes` (at most what the socket buffers hold, so no thread is needed) and check the
    /// same bytes come back.
    pub fn exchange(&mut self, bytes: usize) -> Result<()> {
        let mut message = vec![0u8; bytes];
        fill_pseudo_random(&mut (0x9e37_79b9_u64 ^ bytes as u64), &mut message);
        self.stream.write_all(&message).context("send")?;
        let mut echo = vec![0u8; bytes];
        self.stream.read_exact(&mut echo).context("receive the echo")?;
        if echo != message {
            bail!("the echo of {bytes} bytes differs");
        }
        Ok(())
    }
}

/// `iperf3` for `seconds` from pod `from` to pod `to` (one TCP stream); returns the receiver's
/// rate in words. The server serves one test and is killed if it outlives it.
pub fn iperf(from: &Pod, to: &Pod, seconds: u32) -> Result<String> {
    Ok(format!("{:.2} Gbit/s", iperf_bits_per_second(from, to, seconds)? / 1e9))
}

/// As [`iperf`], the receiver's rate in bits per second.
pub fn iperf_bits_per_second(from: &Pod, to: &Pod, seconds: u32) -> Result<f64> {
    let (to_ns, to_ip) = (to.ns.name.clone(), to.ip.to_string());
    let server = std::process::Command::new("ip")
        .args(["netns", "exec", &to_ns, "iperf3", "-s", "-1", "-B", &to_ip])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start iperf3 (`cargo xtask setup` installs it)")?;
    let _server = KillOnDrop(server);
    let listening = crate::wait::until(Duration::from_secs(5), || {
        let out = cmd::in_ns(&to_ns, "ss", &["-Hltn", "sport = :5201"]).ok()?;
        (!out.stdout.is_empty()).then_some(())
    });
    if listening.is_none() {
        bail!("iperf3 did not listen within 5 s");
    }
    let time = seconds.to_string();
    let json = cmd::in_ns_ok(&from.ns.name, "iperf3", &["-c", &to_ip, "-t", &time, "-J"])?;
    let report: serde_json::Value = serde_json::from_str(&json).context("iperf3 -J")?;
    report["end"]["sum_received"]["bits_per_second"].as_f64().context("iperf3: no received rate")
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether a TCP connection from `from` to `to` is established within `within`.
pub fn connects(from: &Pod, to: SocketAddr, within: Duration) -> Result<bool> {
    in_netns(&from.ns.name.clone(), move || Ok(TcpStream::connect_timeout(&to, within).is_ok()))
}

/// Send one raw IPv4 packet (`packet` starts with its IP header) from namespace `ns`.
pub fn send_raw_ipv4(ns: &str, packet: Vec<u8>) -> Result<()> {
    in_netns(ns, move || {
        // SAFETY: plain socket calls on a descriptor we own and close.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        if fd < 0 {
            bail!("raw socket: {}", std::io::Error::last_os_error());
        }
        let dst = [packet[16], packet[17], packet[18], packet[19]];
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(dst) },
            sin_zero: [0; 8],
        };
        // SAFETY: the buffer and address are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                fd,
                packet.as_ptr().cast(),
                packet.len(),
                0,
                std::ptr::addr_of!(addr).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        let err = std::io::Error::last_os_error();
        // SAFETY: closing the descriptor we opened.
        unsafe { libc::close(fd) };
        if sent < 0 {
            bail!("sendto: {err}");
        }
        Ok(())
    })
}

/// What a request/response run measured.
#[derive(Clone, Debug)]
pub struct RequestResponse {
    pub transactions: u64,
    pub seconds: f64,
    /// Round-trip times, sorted, in nanoseconds.
    pub rtt_ns: Vec<u64>,
}

impl RequestResponse {
    pub fn per_second(&self) -> f64 {
        self.transactions as f64 / self.seconds
    }

    /// The `p`-quantile of the round-trip time, in microseconds.
    pub fn percentile_us(&self, p: f64) -> f64 {
        let i = ((self.rtt_ns.len() as f64 * p) as usize).min(self.rtt_ns.len().saturating_sub(1));
        self.rtt_ns.get(i).map_or(0.0, |ns| *ns as f64 / 1000.0)
    }
}

/// TCP request/response with 1-byte messages over one connection for `duration`: the client
/// sends a byte, the server echoes it, and every round trip is timed.
pub fn tcp_request_response(
    client_ns: &str,
    server_ns: &str,
    server_ip: Ipv4Addr,
    duration: Duration,
) -> Result<RequestResponse> {
    tcp_request_response_via(client_ns, server_ns, SocketAddr::from((server_ip, 0)), None, duration)
}

/// As [`tcp_request_response`], the server listening on `listen`, reached at `connect` (a
/// service address the kernel translates to `listen`), or at `listen` itself.
pub fn tcp_request_response_via(
    client_ns: &str,
    server_ns: &str,
    listen: SocketAddr,
    connect: Option<SocketAddr>,
    duration: Duration,
) -> Result<RequestResponse> {
    let listener = in_netns(server_ns, move || Ok(TcpListener::bind(listen)?))?;
    let addr = connect.unwrap_or(listener.local_addr()?);
    let server = std::thread::spawn(move || -> Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(duration + Duration::from_secs(10)))?;
        let mut byte = [0u8; 1];
        while stream.read(&mut byte)? == 1 {
            stream.write_all(&byte)?;
        }
        Ok(())
    });
    let result = in_netns(client_ns, move || {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut rtt_ns = Vec::with_capacity(1 << 20);
        let mut byte = [1u8; 1];
        let start = Instant::now();
        while start.elapsed() < duration {
            let sent = Instant::now();
            stream.write_all(&byte)?;
            stream.read_exact(&mut byte)?;
            rtt_ns.push(sent.elapsed().as_nanos() as u64);
        }
        let seconds = start.elapsed().as_secs_f64();
        drop(stream);
        rtt_ns.sort_unstable();
        Ok(RequestResponse { transactions: rtt_ns.len() as u64, seconds, rtt_ns })
    })?;
    server.join().map_err(|_| anyhow::anyhow!("echo server panicked"))??;
    Ok(result)
}

/// New TCP connections one after another for `duration`, like netperf's TCP_CRR: connect, send
/// one byte, receive the server's byte, close; the rate of completed transactions and the time
/// each took (connect to answer). The client closes first, so its side of every connection waits
/// in TIME_WAIT: to keep thousands a second from exhausting ephemeral ports, this sets
/// `net.ipv4.tcp_tw_reuse=1` and `net.ipv4.ip_local_port_range=1024 65535` in `client_ns` only
/// (a test bed pod's namespace, gone with it). Every connect waits at most 5 s, every read 5 s.
pub fn tcp_connect_request_response(
    client_ns: &str,
    server_ns: &str,
    server_ip: Ipv4Addr,
    duration: Duration,
) -> Result<RequestResponse> {
    tcp_connect_request_response_via(client_ns, server_ns, SocketAddr::from((server_ip, 0)), None, duration)
}

/// As [`tcp_connect_request_response`], the server listening on `listen`, reached at `connect`
/// (a service address the kernel translates to `listen`), or at `listen` itself.
pub fn tcp_connect_request_response_via(
    client_ns: &str,
    server_ns: &str,
    listen: SocketAddr,
    connect: Option<SocketAddr>,
    duration: Duration,
) -> Result<RequestResponse> {
    cmd::sysctl(client_ns, "net.ipv4.tcp_tw_reuse", "1")?;
    cmd::sysctl(client_ns, "net.ipv4.ip_local_port_range", "1024 65535")?;
    let listener = in_netns(server_ns, move || Ok(TcpListener::bind(listen)?))?;
    let addr = connect.unwrap_or(listener.local_addr()?);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let done = done.clone();
        std::thread::spawn(move || serve_one_byte_each(&listener, &done))
    };
    let client = in_netns(client_ns, move || {
        let mut rtt_ns = Vec::with_capacity(1 << 18);
        let start = Instant::now();
        while start.elapsed() < duration {
            let began = Instant::now();
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .with_context(|| format!("connection {}", rtt_ns.len() + 1))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut byte = [1u8; 1];
            stream.write_all(&byte)?;
            stream.read_exact(&mut byte)?;
            rtt_ns.push(began.elapsed().as_nanos() as u64);
        }
        let seconds = start.elapsed().as_secs_f64();
        rtt_ns.sort_unstable();
        Ok(RequestResponse { transactions: rtt_ns.len() as u64, seconds, rtt_ns })
    });
    // Wake the server from its accept whatever the client's fate, so it sees `done` and ends.
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = in_netns(client_ns, move || Ok(TcpStream::connect_timeout(&addr, Duration::from_secs(1))));
    let served = server.join().map_err(|_| anyhow::anyhow!("CRR server panicked"))?;
    let result = client?;
    served.context("CRR server")?;
    Ok(result)
}

/// `tcp_connect_request_response`'s server: for each connection, read a byte, answer it, wait
/// for the client to close, close. Ends when `done` is set (the client then connects once more
/// to wake it) or after 10 s without a connection.
fn serve_one_byte_each(listener: &TcpListener, done: &std::sync::atomic::AtomicBool) -> Result<()> {
    set_receive_timeout(listener, Duration::from_secs(10))?;
    loop {
        // The listener's receive timeout bounds accept, and accepted sockets inherit it.
        let (mut stream, _) = listener.accept().context("accept")?;
        if done.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).context("read the request")?;
        stream.write_all(&byte).context("answer")?;
        // The client closes first (its side keeps the TIME_WAIT); 0 is its FIN.
        let _ = stream.read(&mut byte);
    }
}

/// SO_RCVTIMEO on a listener: its accept waits at most `timeout`.
fn set_receive_timeout(listener: &TcpListener, timeout: Duration) -> Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    // SAFETY: setsockopt on a descriptor we own, with a timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of!(tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Datagrams arriving on a socket bound in namespace `ns`, counted on a thread for `within`.
pub struct Catch {
    handle: std::thread::JoinHandle<Result<Vec<Vec<u8>>>>,
}

impl Catch {
    /// UDP datagrams to `at` in `ns`.
    pub fn udp(ns: &str, at: SocketAddr, within: Duration) -> Result<Self> {
        let socket = in_netns(ns, move || Ok(std::net::UdpSocket::bind(at)?))?;
        Self::start(within, move |buf| {
            socket.set_read_timeout(Some(Duration::from_millis(50))).and_then(|()| socket.recv(buf))
        })
    }

    /// Every IPv4 packet of `protocol` that reaches namespace `ns` (a raw socket: its IP header
    /// and all), whether or not the kernel there speaks the protocol.
    pub fn raw(ns: &str, protocol: u8, within: Duration) -> Result<Self> {
        let fd = in_netns(ns, move || {
            // SAFETY: a plain socket call; the descriptor is owned at once.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, i32::from(protocol)) };
            if fd < 0 {
                bail!("raw socket: {}", std::io::Error::last_os_error());
            }
            // SAFETY: `fd` was just opened and is owned by nothing else.
            Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
        })?;
        let socket = std::net::UdpSocket::from(fd);
        Self::start(within, move |buf| {
            socket.set_read_timeout(Some(Duration::from_millis(50))).and_then(|()| socket.recv(buf))
        })
    }

    fn start(
        within: Duration,
        mut recv: impl FnMut(&mut [u8]) -> std::io::Result<usize> + Send + 'static,
    ) -> Result<Self> {
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + within;
            let mut caught = Vec::new();
            let mut buf = vec![0u8; 65536];
            while Instant::now() < deadline {
                match recv(&mut buf) {
                    Ok(n) => caught.push(buf[..n].to_vec()),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e).context("receive"),
                }
            }
            Ok(caught)
        });
        Ok(Self { handle })
    }

    /// Everything caught, once `within` has passed.
    pub fn caught(self) -> Result<Vec<Vec<u8>>> {
        self.handle.join().map_err(|_| anyhow::anyhow!("the catcher panicked"))?
    }
}

/// `count` UDP datagrams of `payload` from `from` (bound there, in namespace `ns`) to `to`,
/// 5 ms apart.
pub fn send_udp(ns: &str, from: SocketAddr, to: SocketAddr, payload: &[u8], count: usize) -> Result<()> {
    let payload = payload.to_vec();
    in_netns(ns, move || {
        let socket = std::net::UdpSocket::bind(from)?;
        for _ in 0..count {
            socket.send_to(&payload, to).context("send_to")?;
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    })
}

/// Run `during` while tcpdump captures up to `count` packets matching `filter` on node namespace
/// `ns`'s eth0 (for at most 10 s, link-level headers shown, and for VXLAN the packet inside);
/// returns what it printed.
pub fn captured_on_eth0(ns: &str, filter: &str, count: u32, during: impl FnOnce()) -> String {
    let count = count.to_string();
    let capture = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "10", "tcpdump", "-e", "-n", "-l", "-c", &count, "-i", "eth0"])
        .arg(filter)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tcpdump in the node's namespace");
    std::thread::sleep(Duration::from_millis(700));
    during();
    capture.wait_with_output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}
