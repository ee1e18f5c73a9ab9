//! What the daemon tells Prometheus, through the Prometheus project's own client library
//! (`prometheus-client`): every metric registered once in [`Metrics::registry`], named by the
//! Prometheus conventions, rendered in the text format (0.0.4).
//!
//! The daemon's own counters are metrics it updates as it works. What lives in the kernel (the
//! programs' per-reason counters, the maps' fill) and the process itself are read at scrape time
//! by custom collectors, so a scrape shows the kernel's numbers of that moment.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use fastpath_common::{maps::COUNTERS, Reason};
use prometheus_client::{
    collector::Collector,
    encoding::{prometheus_text, DescriptorEncoder, EncodeMetric as _},
    metrics::{
        counter::{ConstCounter, Counter},
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
        info::Info,
        MetricType,
    },
    registry::Registry,
};

use crate::{
    dataplane::{
        counters,
        fill::{self, FILLED_MAPS},
    },
    Error,
};

/// Upper bounds of the route-sync latency histogram, in seconds.
pub const SYNC_BUCKETS: [f64; 9] = [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.1];

/// The `Content-Type` of a `/metrics` page.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The git revision the binary was built from (`unknown` outside a git checkout).
pub const REVISION: &str = env!("FASTPATH_REVISION");

/// What the daemon counts about itself, and the registry that renders it with the collectors.
#[derive(Debug)]
pub struct Metrics {
    pub netlink_events: Counter,
    pub netlink_overruns: Counter,
    pub attach_failures: Counter,
    pub resync_repairs: Counter,
    /// Connections the metrics and health listeners closed at once: too many were open.
    pub http_refused: Counter,
    route_sync: Histogram,
    /// 1 when the maps are synced and every matching interface is attached.
    ready: Gauge,
    registry: Registry,
}

impl Metrics {
    /// Every metric, registered once; the kernel's numbers are read from the maps pinned in
    /// `pin_dir` at each scrape.
    pub fn new(pin_dir: &Path) -> Self {
        let mut registry = Registry::default();
        let m = Self {
            netlink_events: Counter::default(),
            netlink_overruns: Counter::default(),
            attach_failures: Counter::default(),
            resync_repairs: Counter::default(),
            http_refused: Counter::default(),
            route_sync: Histogram::new(SYNC_BUCKETS),
            ready: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "fastpath_build",
            "The version and git revision of the running daemon (always 1).",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION")), ("revision", REVISION)]),
        );
        registry.register(
            "fastpath_netlink_events",
            "Netlink events the daemon handled (links, addresses, routes, neighbours, rules, qdiscs).",
            m.netlink_events.clone(),
        );
        registry.register(
            "fastpath_netlink_overruns",
            "Times the kernel dropped netlink events for a full socket buffer (each followed by a full resync).",
            m.netlink_overruns.clone(),
        );
        registry.register(
            "fastpath_attach_failures",
            "Attachments of the programs to an interface that failed.",
            m.attach_failures.clone(),
        );
        registry.register(
            "fastpath_resync_repairs",
            "Map entries a periodic resync found drifted from the kernel and repaired.",
            m.resync_repairs.clone(),
        );
        registry.register(
            "fastpath_http_refused_connections",
            "Connections to the metrics or health listener closed at once because too many were open.",
            m.http_refused.clone(),
        );
        registry.register(
            "fastpath_route_sync_seconds",
            "From a netlink event's arrival to the maps holding its consequence.",
            m.route_sync.clone(),
        );
        registry.register(
            "fastpath_ready",
            "1 when the maps are synced and every matching interface is attached.",
            m.ready.clone(),
        );
        registry.register_collector(Box::new(ReasonCollector { pin_dir: pin_dir.to_path_buf() }));
        registry.register_collector(Box::new(MapCollector { pin_dir: pin_dir.to_path_buf() }));
        registry.register_collector(Box::new(ProcessCollector));
        Self { registry, ..m }
    }

    pub fn observe_sync(&self, elapsed: Duration) {
        self.route_sync.observe(elapsed.as_secs_f64());
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    pub fn is_ready(&self) -> bool {
        self.ready.get() == 1
    }

    /// The whole `/metrics` page.
    pub fn render(&self) -> Result<String, Error> {
        let mut page = String::new();
        prometheus_text::encode(&mut page, &self.registry).map_err(|_| Error::Scrape)?;
        Ok(page)
    }
}

/// Which way a reason's packets went, as the `verdict` label says it.
pub fn verdict_label(reason: Reason) -> &'static str {
    reason.verdict().as_str()
}

/// `fastpath_packets_total` and `fastpath_bytes_total`, by reason and verdict, from the
/// programs' per-CPU counters (retired reasons left out). A counter that cannot be read fails
/// the scrape: a page without them would look like a quiet node.
#[derive(Debug)]
struct ReasonCollector {
    pin_dir: PathBuf,
}

impl Collector for ReasonCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let totals = counters::read_pinned(&self.pin_dir).map_err(|e| {
            log::warn!("scrape: cannot read {COUNTERS}: {}", e.chain());
            fmt::Error
        })?;
        type Pick = fn(&counters::ReasonTotal) -> u64;
        let families: [(&str, &str, Pick); 2] = [
            ("fastpath_packets", "Packets the programs handled, by reason and verdict.", |t| t.total.packets),
            ("fastpath_bytes", "Bytes the programs handled, by reason and verdict.", |t| t.total.bytes),
        ];
        for (name, help, pick) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for t in &totals {
                let labels = [("reason", t.reason.as_str()), ("verdict", verdict_label(t.reason))];
                ConstCounter::new(pick(t)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// `fastpath_map_entries` and `fastpath_map_capacity` of each of [`FILLED_MAPS`], counted in the
/// pinned maps: every map keyed by an address or a flow. (The counters, the node and agent slots
/// and the monitor's control slot are fixed arrays, always full; the monitor's ring buffer has no
/// entries.) A map that cannot be read is left out of the page and logged.
#[derive(Debug)]
struct MapCollector {
    pin_dir: PathBuf,
}

impl Collector for MapCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let fill: Vec<(&str, u64, u64)> = FILLED_MAPS
            .iter()
            .filter_map(|&name| match fill::fill_of(&self.pin_dir, name) {
                Ok(f) => Some((name, f.entries as u64, u64::from(f.capacity))),
                Err(e) => {
                    log::debug!("scrape: {}", e.chain());
                    None
                }
            })
            .collect();
        type Pick = fn(&(&str, u64, u64)) -> u64;
        let families: [(&str, &str, Pick); 2] = [
            ("fastpath_map_entries", "Entries in each BPF map keyed by address or flow.", |f| f.1),
            ("fastpath_map_capacity", "The most entries each BPF map keyed by address or flow holds.", |f| {
                f.2
            }),
        ];
        for (name, help, pick) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for f in &fill {
                ConstGauge::new(pick(f) as i64).encode(family.encode_family(&[("map", f.0)])?)?;
            }
        }
        Ok(())
    }
}

/// The process metrics every Prometheus client exports (`process_*`), from `/proc/self` and
/// `getrlimit`. One that cannot be read (no descriptor left to open /proc) is left out.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let p = process::read();
        if let Some(cpu) = p.cpu_seconds {
            let counter = ConstCounter::new(cpu);
            let e = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                counter.metric_type(),
            )?;
            counter.encode(e)?;
        }
        for (name, help, value) in [
            ("process_resident_memory_bytes", "Resident memory size in bytes.", p.resident_bytes),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes.", p.virtual_bytes),
            ("process_open_fds", "Number of open file descriptors.", p.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors.", p.max_fds),
        ] {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value as i64);
                gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
            }
        }
        if let Some(start) = p.start_time_seconds {
            let gauge = ConstGauge::new(start);
            gauge.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                None,
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

mod process {
    use std::fs;

    #[derive(Debug, Default)]
    pub struct Process {
        pub cpu_seconds: Option<f64>,
        pub resident_bytes: Option<u64>,
        pub virtual_bytes: Option<u64>,
        pub open_fds: Option<u64>,
        pub max_fds: Option<u64>,
        pub start_time_seconds: Option<f64>,
    }

    pub fn read() -> Process {
        // SAFETY: sysconf only reads a constant of the system.
        let (page, ticks) = unsafe { (libc::sysconf(libc::_SC_PAGESIZE), libc::sysconf(libc::_SC_CLK_TCK)) };
        let stat = fs::read_to_string("/proc/self/stat").ok();
        // Fields after the command name, which is in parentheses and may hold spaces
        // (proc_pid_stat(5)): state is field 3, utime 14, stime 15, starttime 22, vsize 23, rss 24.
        let fields: Vec<&str> = stat
            .as_deref()
            .and_then(|s| s.rsplit_once(')'))
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let boot_time = fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<u64>().ok()))
        });
        let ticks = ticks.max(1) as f64;
        Process {
            cpu_seconds: field(14).zip(field(15)).map(|(u, s)| (u + s) as f64 / ticks),
            virtual_bytes: field(23),
            resident_bytes: field(24).map(|pages| pages * page.max(0) as u64),
            start_time_seconds: field(22)
                .zip(boot_time)
                .map(|(start, boot)| boot as f64 + start as f64 / ticks),
            open_fds: fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
            max_fds: max_fds(),
        }
    }

    fn max_fds() -> Option<u64> {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct we own.
        (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit.rlim_cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Families of a page: (sample name, type), from its `# TYPE` lines.
    fn families(page: &str) -> Vec<(String, String)> {
        page.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| {
                let (name, kind) = l.split_once(' ').unwrap();
                (name.to_string(), kind.to_string())
            })
            .collect()
    }

    #[test]
    fn every_family_is_registered_once_with_its_help() {
        // No pins here: the counters' collector fails the scrape, so render the registry without.
        let m = Metrics::new(Path::new("/nonexistent/fastpath-test"));
        assert!(m.render().is_err(), "a scrape that cannot read the counters must fail");
        let mut registry = Registry::default();
        registry.register("fastpath_netlink_events", "x", m.netlink_events.clone());
        let mut page = String::new();
        prometheus_text::encode(&mut page, &registry).unwrap();
        assert_eq!(families(&page), [("fastpath_netlink_events_total".into(), "counter".into())]);
    }

    #[test]
    fn the_daemons_own_metrics_render() {
        let m = Metrics::new(Path::new("/nonexistent/fastpath-test"));
        m.observe_sync(Duration::from_micros(80));
        m.netlink_events.inc_by(4);
        m.netlink_overruns.inc();
        m.resync_repairs.inc_by(3);
        m.set_ready(true);
        assert!(m.is_ready());
        // Render everything but the collectors that need pins.
        let mut page = String::new();
        let mut registry = Registry::default();
        registry.register("fastpath_route_sync_seconds", "h", m.route_sync.clone());
        registry.register("fastpath_netlink_overruns", "h", m.netlink_overruns.clone());
        registry.register("fastpath_resync_repairs", "h", m.resync_repairs.clone());
        registry.register("fastpath_ready", "h", m.ready.clone());
        prometheus_text::encode(&mut page, &registry).unwrap();
        for line in [
            "fastpath_route_sync_seconds_bucket{le=\"0.0001\"} 1",
            "fastpath_route_sync_seconds_bucket{le=\"5e-05\"} 0",
            "fastpath_route_sync_seconds_count 1",
            "fastpath_netlink_overruns_total 1",
            "fastpath_resync_repairs_total 3",
            "fastpath_ready 1",
        ] {
            assert!(page.lines().any(|l| l == line), "missing {line:?} in:\n{page}");
        }
    }

    #[test]
    fn process_metrics_are_read() {
        let p = process::read();
        assert!(p.cpu_seconds.is_some() && p.resident_bytes.unwrap() > 0 && p.virtual_bytes.unwrap() > 0);
        assert!(p.open_fds.unwrap() >= 3 && p.max_fds.unwrap() >= p.open_fds.unwrap());
        let start = p.start_time_seconds.unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(start <= now + 1.0 && start > now - 86_400.0 * 365.0, "{start} vs {now}");
    }

    #[test]
    fn verdict_labels_follow_the_reason() {
        assert_eq!(verdict_label(Reason::DropSpoofedSource), "drop");
        assert_eq!(verdict_label(Reason::Encapsulated), "redirect");
        assert_eq!(verdict_label(Reason::PassNoRoute), "pass");
    }
}
