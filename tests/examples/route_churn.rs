//! Route churn for `cargo xtask bench --control-plane`: changes /32 routes through rtnetlink at a
//! steady rate and, for each, measures how long until the pinned route map shows it (end to end:
//! from the `ip route` request to the map). Prints one JSON object.
//!
//! Run inside a node's namespace, beside a running daemon:
//!   route_churn BPFFS_DIR VIA_ADDR RATE SECONDS

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, Instant},
};

use aya::maps::lpm_trie::Key;
use rtnetlink::RouteMessageBuilder;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 5, "usage: route_churn BPFFS_DIR VIA_ADDR RATE SECONDS");
    let dir = PathBuf::from(&args[1]);
    let via: Ipv4Addr = args[2].parse()?;
    let rate: u32 = args[3].parse()?;
    let seconds: u32 = args[4].parse()?;
    let trie = fastpath::dataplane::tables::pinned_routes(&dir)?;
    let (connection, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(connection);

    let changes = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut latencies = Vec::with_capacity(changes as usize);
    let mut missed = 0u32;
    let start = Instant::now();
    for i in 0..changes {
        // Even steps add a route, odd steps remove the one just added.
        let n = i / 2;
        let dst = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 250, 0, 0)) + n);
        let message = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(dst, 32).gateway(via).build();
        let adding = i % 2 == 0;
        let sent = Instant::now();
        if adding {
            handle.route().add(message).execute().await?;
        } else {
            handle.route().del(message).execute().await?;
        }
        let key = Key::new(32, dst.octets());
        let seen = loop {
            let present = trie.get(&key, 0).is_ok_and(|v| v.next_hop == via.octets());
            if present == adding {
                break true;
            }
            if sent.elapsed() > Duration::from_millis(100) {
                break false;
            }
            std::hint::spin_loop();
        };
        if seen {
            latencies.push(sent.elapsed().as_micros() as u64);
        } else {
            missed += 1;
        }
        let next = start + interval * (i + 1);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        r#"{{"changes":{changes},"seconds":{elapsed:.2},"rate":{:.0},"e2e_p50_us":{},"e2e_p99_us":{},"e2e_max_us":{},"missed_100ms":{missed}}}"#,
        f64::from(changes) / elapsed,
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or(0)
    );
    Ok(())
}
