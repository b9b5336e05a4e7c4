//! Memory stays flat under load that nobody scrapes: the metrics recorder folds its histogram
//! samples away on its own (without that upkeep, each request left ~120 bytes behind until the
//! next `/metrics` scrape). Its own test binary: nothing else allocates in this process while
//! the resident set is measured.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod common;

use std::time::Duration;

use thrum_core::Tensor;
use thrum_serve::{ModelPool, PoolConfig};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn a_pool_nobody_scrapes_does_not_grow_with_requests() {
    thrum_serve::metrics::install();
    let model = common::zoo("mlp");
    let pool = ModelPool::start("mlp", model.clone(), PoolConfig::new(2)).unwrap();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let inputs = model.zero_inputs(1).unwrap();
    let run = |requests: usize| {
        rt.block_on(async {
            let callers: Vec<_> = (0..4)
                .map(|_| {
                    let (pool, inputs) = (pool.clone(), inputs.clone());
                    tokio::spawn(async move {
                        for _ in 0..requests / 4 {
                            let _: Vec<Tensor> = pool.submit(inputs.clone()).await.unwrap();
                        }
                    })
                })
                .collect();
            for c in callers {
                c.await.unwrap();
            }
        });
        // One upkeep pass after the last request.
        std::thread::sleep(thrum_serve::metrics::UPKEEP_INTERVAL + Duration::from_millis(500));
    };
    run(40_000); // warm: allocator arenas, the recorder's series
    let before = rss_bytes();
    run(200_000);
    let after = rss_bytes();
    let grown = after.saturating_sub(before) as f64 / (1 << 20) as f64;
    eprintln!(
        "RSS {:.1} MiB -> {:.1} MiB over 200,000 requests",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    // Without upkeep: 200,000 requests × 6 histogram samples kept ≈ 20 MiB or more.
    assert!(grown < 4.0, "RSS grew {grown:.1} MiB over 200,000 requests that nobody scraped");
    assert_eq!(pool.stats().success.0, 240_000);
}
