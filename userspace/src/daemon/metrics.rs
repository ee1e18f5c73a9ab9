//! `/metrics` (Prometheus text format), `/healthz` and `/readyz`, served while the daemon runs.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use crate::{
    commands::stats,
    dataplane::fill::{self, MapFill},
    Error,
};

/// Upper bounds of the route-sync latency histogram, in seconds.
pub const SYNC_BUCKETS: [f64; 9] = [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.1];

/// What the daemon counts about itself (the programs' counters are read from their map).
#[derive(Debug, Default)]
pub struct Metrics {
    pub netlink_events: AtomicU64,
    pub attach_failures: AtomicU64,
    pub resync_repairs: AtomicU64,
    pub netlink_overruns: AtomicU64,
    /// The maps are synced and every matching interface is attached.
    pub ready: AtomicBool,
    sync: Mutex<Histogram>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or below each of [`SYNC_BUCKETS`].
    pub buckets: [u64; SYNC_BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(SYNC_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

impl Metrics {
    pub fn observe_sync(&self, elapsed: Duration) {
        if let Ok(mut h) = self.sync.lock() {
            h.observe(elapsed.as_secs_f64());
        }
    }

    fn sync_histogram(&self) -> Histogram {
        self.sync.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

/// The whole `/metrics` page.
pub fn render(totals: &[stats::ReasonTotal], fills: &[MapFill], m: &Metrics) -> String {
    let mut out = String::new();
    let packets = family_line(
        &mut out,
        "fastpath_packets_total",
        "counter",
        "Packets the programs handled, by reason.",
    );
    for t in totals {
        let _ = writeln!(out, "{packets}{{reason=\"{}\"}} {}", t.reason.as_str(), t.total.packets);
    }
    let bytes =
        family_line(&mut out, "fastpath_bytes_total", "counter", "Bytes the programs handled, by reason.");
    for t in totals {
        let _ = writeln!(out, "{bytes}{{reason=\"{}\"}} {}", t.reason.as_str(), t.total.bytes);
    }
    let entries = family_line(&mut out, "fastpath_map_entries", "gauge", "Entries in each map.");
    for f in fills {
        let _ = writeln!(out, "{entries}{{map=\"{}\"}} {}", f.name, f.entries);
    }
    let capacity =
        family_line(&mut out, "fastpath_map_capacity", "gauge", "Entries each map can hold (max_entries).");
    for f in fills {
        let _ = writeln!(out, "{capacity}{{map=\"{}\"}} {}", f.name, f.capacity);
    }
    let sync = family_line(
        &mut out,
        "fastpath_route_sync_seconds",
        "histogram",
        "From a netlink event's arrival to the maps holding its consequence.",
    );
    let h = m.sync_histogram();
    for (count, bound) in h.buckets.iter().zip(SYNC_BUCKETS) {
        let _ = writeln!(out, "{sync}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "{sync}_bucket{{le=\"+Inf\"}} {}\n{sync}_sum {}\n{sync}_count {}",
        h.count, h.sum, h.count
    );
    for (name, help, value) in [
        (
            "fastpath_netlink_events_total",
            "Netlink events handled.",
            m.netlink_events.load(Ordering::Relaxed),
        ),
        (
            "fastpath_attach_failures_total",
            "Attachments that failed.",
            m.attach_failures.load(Ordering::Relaxed),
        ),
        (
            "fastpath_resync_repairs_total",
            "Map entries resyncs found drifted from the kernel and repaired.",
            m.resync_repairs.load(Ordering::Relaxed),
        ),
        (
            "fastpath_netlink_overruns_total",
            "Times the kernel dropped netlink events (each followed by a resync).",
            m.netlink_overruns.load(Ordering::Relaxed),
        ),
    ] {
        let name = family_line(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let ready = family_line(
        &mut out,
        "fastpath_ready",
        "gauge",
        "1 when the maps are synced and every matching interface is attached.",
    );
    let _ = writeln!(out, "{ready} {}", u8::from(m.ready.load(Ordering::Relaxed)));
    out
}

fn family_line(out: &mut String, name: &str, kind: &str, help: &str) -> String {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    name.to_string()
}

/// Status line and body for a request line (`GET /path HTTP/1.1`).
pub fn respond(
    request_line: &str,
    metrics: &Metrics,
    page: impl FnOnce() -> Result<String, Error>,
) -> (u16, String) {
    let mut words = request_line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" {
        return (405, "only GET\n".into());
    }
    match path {
        "/healthz" => (200, "ok\n".into()),
        "/readyz" if metrics.ready.load(Ordering::Relaxed) => (200, "ready\n".into()),
        "/readyz" => (503, "not ready: syncing or an interface is not attached\n".into()),
        "/metrics" => match page() {
            Ok(body) => (200, body),
            Err(e) => (500, format!("{}\n", e.chain())),
        },
        _ => (404, "not found: try /metrics, /healthz or /readyz\n".into()),
    }
}

/// Bind `addr` now (so a bad address fails the daemon's start), then serve in a task.
pub async fn serve(addr: SocketAddr, pin_dir: PathBuf, metrics: Arc<Metrics>) -> Result<(), Error> {
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Metrics { addr, source })?;
    log::info!("serving /metrics, /healthz and /readyz on http://{addr}");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (dir, metrics) = (pin_dir.clone(), Arc::clone(&metrics));
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, &dir, &metrics)).await;
            });
        }
    });
    Ok(())
}

async fn answer(mut stream: TcpStream, dir: &std::path::Path, metrics: &Metrics) -> std::io::Result<()> {
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
    let line = head.lines().next().unwrap_or("");
    let (status, body) =
        respond(line, metrics, || Ok(render(&stats::read_pinned(dir)?, &fill::read(dir)?, metrics)));
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use fastpath_common::{maps::Counter, Reason};

    use super::*;

    #[test]
    fn the_page_has_every_family() {
        let m = Metrics::default();
        m.observe_sync(Duration::from_micros(80));
        m.netlink_events.store(4, Ordering::Relaxed);
        m.ready.store(true, Ordering::Relaxed);
        let totals =
            [stats::ReasonTotal { reason: Reason::Encapsulated, total: Counter { packets: 7, bytes: 700 } }];
        let fills = [MapFill { name: "FP_ROUTES", entries: 64, capacity: 64 }];
        let page = render(&totals, &fills, &m);
        for line in [
            "fastpath_packets_total{reason=\"encapsulated\"} 7",
            "fastpath_bytes_total{reason=\"encapsulated\"} 700",
            "fastpath_map_entries{map=\"FP_ROUTES\"} 64",
            "fastpath_map_capacity{map=\"FP_ROUTES\"} 64",
            "fastpath_route_sync_seconds_bucket{le=\"0.00005\"} 0",
            "fastpath_route_sync_seconds_bucket{le=\"0.0001\"} 1",
            "fastpath_route_sync_seconds_count 1",
            "fastpath_netlink_events_total 4",
            "fastpath_attach_failures_total 0",
            "fastpath_resync_repairs_total 0",
            "fastpath_ready 1",
            "# TYPE fastpath_route_sync_seconds histogram",
        ] {
            assert!(page.lines().any(|l| l == line), "missing {line:?} in:\n{page}");
        }
    }

    #[test]
    fn endpoints_answer_as_probes_expect() {
        let m = Metrics::default();
        let page = || Ok(String::from("page"));
        assert_eq!(respond("GET /healthz HTTP/1.1", &m, page).0, 200);
        assert_eq!(respond("GET /readyz HTTP/1.1", &m, page).0, 503);
        m.ready.store(true, Ordering::Relaxed);
        assert_eq!(respond("GET /readyz HTTP/1.1", &m, page).0, 200);
        assert_eq!(respond("GET /metrics HTTP/1.1", &m, page), (200, "page".into()));
        assert_eq!(respond("GET /nope HTTP/1.1", &m, page).0, 404);
        assert_eq!(respond("POST /metrics HTTP/1.1", &m, page).0, 405);
    }
}
