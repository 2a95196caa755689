//! The idempotency index's worst pauses while it grows:
//! `cargo bench -p revshare-core --bench index_growth [-- KEYS]` (default 10,000,000).
//!
//! Offers KEYS new keys in batches of 1,000 (a server's request) and prints the total time, the
//! slowest single offer and the slowest batch. Criterion reports typical times; what a server's
//! p99 feels is the worst batch, so this prints that instead. It runs on mimalloc, the binaries'
//! allocator, since what growing costs depends on the allocator (glibc's `realloc` of a large
//! block remaps its pages instead of copying them).

use std::time::{Duration, Instant};

use revshare_core::dedup::DedupIndex;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // `cargo bench` passes `--bench`; the first number given is the key count.
    let keys = std::env::args().skip(1).find_map(|a| a.parse::<u64>().ok()).unwrap_or(10_000_000);
    let ids: Vec<String> = (0..keys).map(|i| format!("evt-h1-{i:010}")).collect();
    let mut index = DedupIndex::new(9);
    let (mut worst_offer, mut worst_batch) = (Duration::ZERO, (Duration::ZERO, 0));
    let started = Instant::now();
    for batch in ids.chunks(1000) {
        let batch_started = Instant::now();
        for (location, id) in (0u64..).zip(batch) {
            let offered = Instant::now();
            std::hint::black_box(index.offer("h1", id, [1; 16], location));
            worst_offer = worst_offer.max(offered.elapsed());
        }
        let took = batch_started.elapsed();
        if took > worst_batch.0 {
            worst_batch = (took, index.len());
        }
    }
    println!(
        "{keys} keys: {:.2?} in all; slowest offer {worst_offer:.2?}; slowest batch of 1,000 {:.2?} (ending at {} keys)",
        started.elapsed(),
        worst_batch.0,
        worst_batch.1
    );
}
