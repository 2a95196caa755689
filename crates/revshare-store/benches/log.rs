//! The persisted transparency log: `cargo bench -p revshare-store --bench log`.
//!
//! - `append`: leaves appended per second, in transactions of 10,000 leaves of a usage-batch
//!   leaf's size, to the SQLite store (and to PostgreSQL when `REVSHARE_BENCH_PG` names a server,
//!   e.g. `host=127.0.0.1 user=postgres dbname=postgres`; a database `revshare_bench_log` is
//!   created there).
//! - `proof at 10M`: an inclusion proof and a consistency proof from a SQLite log of 10,000,000
//!   leaves. The log is built once into `CARGO_TARGET_TMPDIR` and reused by later runs.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use revshare_core::merkle;
use revshare_store::{LogLeaf, PgStore, SqliteStore, Store};

const BATCH: usize = 10_000;
const BIG: u64 = 10_000_000;

/// A leaf the size of a usage batch's, its event salted.
fn leaf(i: u64) -> LogLeaf {
    let event = format!(r#"{{"digest":"sha256:{i:064x}","records":10000,"type":"usage_batch"}}"#);
    LogLeaf::new("usage_batch", "batch".to_owned(), event.into_bytes()).expect("a fresh salt")
}

fn leaves(from: u64, n: usize) -> Vec<LogLeaf> {
    (from..).take(n).map(leaf).collect()
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.sample_size(10).throughput(Throughput::Elements(u64::try_from(BATCH).unwrap_or(u64::MAX)));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut sqlite = SqliteStore::open(dir.path().join("log.db")).expect("the SQLite store");
    let mut next = 0u64;
    group.bench_function("sqlite, 10k leaves a transaction", |b| {
        b.iter_batched(
            || {
                let batch = leaves(next, BATCH);
                next += u64::try_from(BATCH).unwrap_or(0);
                batch
            },
            |batch| sqlite.append_leaves(&batch).expect("append"),
            BatchSize::LargeInput,
        )
    });
    if let Ok(admin) = std::env::var("REVSHARE_BENCH_PG") {
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).expect("the benchmark's PostgreSQL");
        client.batch_execute("DROP DATABASE IF EXISTS revshare_bench_log WITH (FORCE)").expect("drop");
        client.batch_execute("CREATE DATABASE revshare_bench_log").expect("create");
        let mut config: postgres::Config = admin.parse().expect("a connection string");
        config.dbname("revshare_bench_log");
        let mut pg = PgStore::connect_with(&config).expect("the PostgreSQL store");
        let mut next = 0u64;
        group.bench_function("postgres, 10k leaves a transaction", |b| {
            b.iter_batched(
                || {
                    let batch = leaves(next, BATCH);
                    next += u64::try_from(BATCH).unwrap_or(0);
                    batch
                },
                |batch| pg.append_leaves(&batch).expect("append"),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// The 10M-leaf log, built on the first run.
fn big_log() -> SqliteStore {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("revshare-log-10m-committed.db");
    let mut store = SqliteStore::open(&path).expect("the SQLite store");
    let mut size = store.log_size().expect("size");
    if size < BIG {
        eprintln!("building a log of {BIG} leaves in {} (once)…", path.display());
    }
    while size < BIG {
        let n = usize::try_from((BIG - size).min(100_000)).unwrap_or(100_000);
        store.append_leaves(&leaves(size, n)).expect("append");
        size = store.log_size().expect("size");
    }
    store
}

fn proofs(c: &mut Criterion) {
    let mut store = big_log();
    let root = store.log_root(BIG).expect("root");
    let mut group = c.benchmark_group("proof at 10M leaves");
    let mut index = 1_234_567u64;
    group.bench_function("inclusion (sqlite)", |b| {
        b.iter(|| {
            index = (index * 48_271) % BIG;
            store.inclusion_proof(index, BIG).expect("proof")
        })
    });
    let proof = store.inclusion_proof(7_654_321, BIG).expect("proof");
    let leaf = store.log_leaf(7_654_321).expect("the leaf");
    merkle::verify_inclusion(&merkle::leaf_hash(&leaf.data()), 7_654_321, BIG, &proof, &root).expect("the proof verifies");
    let mut old = 3_000_001u64;
    group.bench_function("consistency (sqlite)", |b| {
        b.iter(|| {
            old = 1 + (old * 48_271) % (BIG - 1);
            store.consistency_proof(old, BIG).expect("proof")
        })
    });
    group.bench_function("root (sqlite)", |b| b.iter(|| store.log_root(BIG - 3).expect("root")));
    group.finish();
}

criterion_group!(benches, append, proofs);
criterion_main!(benches);
