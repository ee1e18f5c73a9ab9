//! The two listeners, as felix and cilium-agent have them: `/metrics` on its own address (for
//! Prometheus, reachable from the cluster when asked), `/healthz` and `/readyz` on another (for
//! the kubelet's probes, on loopback).
//!
//! Each answers one GET per connection and closes it. Our own, not a library server: a request
//! line is all either endpoint reads, and what a library would not give us is what matters here,
//! the accept loop: at most [`MAX_CONNECTIONS`] connections at once per listener (more are
//! closed at once and counted), [`TIMEOUT`] for a connection to be answered, and a pause that
//! doubles up to a second after an accept error (EMFILE: out of descriptors) instead of retrying
//! at once, which would spin at 100 % CPU while the error lasts.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

use crate::{daemon::metrics::Metrics, Error};

/// Connections one listener serves at once.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a connection may take to send its request and take its answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The longest pause after an accept error.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Which endpoints a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoints {
    Metrics,
    Health,
}

impl Endpoints {
    fn name(self) -> &'static str {
        match self {
            Endpoints::Metrics => "/metrics",
            Endpoints::Health => "/healthz and /readyz",
        }
    }
}

/// An answer: status, content type, body.
type Answer = (u16, &'static str, String);

/// The answer to a request line (`GET /path HTTP/1.1`).
pub fn respond(endpoints: Endpoints, request_line: &str, metrics: &Metrics) -> Answer {
    const TEXT: &str = "text/plain; charset=utf-8";
    let mut words = request_line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" {
        return (405, TEXT, "only GET\n".into());
    }
    let path = path.split('?').next().unwrap_or("");
    match (endpoints, path) {
        (Endpoints::Health, "/healthz") => (200, TEXT, "ok\n".into()),
        (Endpoints::Health, "/readyz") if metrics.is_ready() => (200, TEXT, "ready\n".into()),
        (Endpoints::Health, "/readyz") => {
            (503, TEXT, "not ready: syncing or an interface is not attached\n".into())
        }
        (Endpoints::Metrics, "/metrics") => match metrics.render() {
            Ok(page) => (200, crate::daemon::metrics::CONTENT_TYPE, page),
            Err(e) => (500, TEXT, format!("{}\n", e.chain())),
        },
        (Endpoints::Health, _) => (404, TEXT, "not found: try /healthz or /readyz\n".into()),
        (Endpoints::Metrics, _) => (404, TEXT, "not found: try /metrics\n".into()),
    }
}

/// Bind `addr` now (so a bad address fails the daemon's start), then serve in a task.
pub async fn serve(addr: SocketAddr, endpoints: Endpoints, metrics: Arc<Metrics>) -> Result<(), Error> {
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Listen {
        what: endpoints.name(),
        addr,
        source,
    })?;
    log::info!("serving {} on http://{addr}", endpoints.name());
    tokio::spawn(accept_loop(listener, endpoints, metrics));
    Ok(())
}

async fn accept_loop(listener: TcpListener, endpoints: Endpoints, metrics: Arc<Metrics>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Backoff::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                let pause = backoff.next();
                if pause == MAX_BACKOFF || pause == Backoff::FIRST {
                    log::warn!("{}: accept failed: {e}; retrying in {pause:?}", endpoints.name());
                }
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        backoff = Backoff::default();
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            metrics.http_refused.inc();
            drop(stream);
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(TIMEOUT, answer(stream, endpoints, &metrics)).await;
            drop(permit);
        });
    }
}

/// The pause after consecutive accept errors: 10 ms, doubling up to [`MAX_BACKOFF`].
#[derive(Debug, Default)]
struct Backoff(Option<Duration>);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);

    fn next(&mut self) -> Duration {
        let pause = self.0.map_or(Self::FIRST, |p| (p * 2).min(MAX_BACKOFF));
        self.0 = Some(pause);
        pause
    }
}

async fn answer(mut stream: TcpStream, endpoints: Endpoints, metrics: &Metrics) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    // Read the head only, and no more than 8 KiB of it.
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&request);
    let (status, content_type, body) = respond(endpoints, head.lines().next().unwrap_or(""), metrics);
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn each_listener_answers_only_its_own_endpoints() {
        let m = Metrics::new(Path::new("/nonexistent/fastpath-test"));
        let health = |line| respond(Endpoints::Health, line, &m).0;
        assert_eq!(health("GET /healthz HTTP/1.1"), 200);
        assert_eq!(health("GET /readyz HTTP/1.1"), 503);
        assert_eq!(health("GET /metrics HTTP/1.1"), 404);
        assert_eq!(health("POST /healthz HTTP/1.1"), 405);
        m.set_ready(true);
        assert_eq!(respond(Endpoints::Health, "GET /readyz HTTP/1.1", &m).0, 200);
        assert_eq!(respond(Endpoints::Metrics, "GET /healthz HTTP/1.1", &m).0, 404);
        // No pins here: the counters cannot be read, and the scrape says so.
        assert_eq!(respond(Endpoints::Metrics, "GET /metrics HTTP/1.1", &m).0, 500);
    }

    #[test]
    fn accept_errors_back_off_to_a_second() {
        let mut b = Backoff::default();
        let pauses: Vec<Duration> = (0..10).map(|_| b.next()).collect();
        assert_eq!(pauses[0], Duration::from_millis(10));
        assert_eq!(pauses[1], Duration::from_millis(20));
        assert_eq!(pauses[9], MAX_BACKOFF);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
    }

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_and_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new(Path::new("/nonexistent/fastpath-test")));
        tokio::spawn(accept_loop(listener, Endpoints::Health, Arc::clone(&metrics)));
        // Hold the limit's worth of connections silent, then one more.
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf)).await.unwrap().unwrap();
        assert_eq!(n, 0, "the connection past the limit is closed at once");
        assert_eq!(metrics.http_refused.get(), 1);
        // Once they go, the listener answers again.
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await.unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    }
}
