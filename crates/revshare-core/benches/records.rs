//! Per-record costs on the settle path: `cargo bench -p revshare-core --bench records`.

use criterion::{Criterion, criterion_group, criterion_main};
use revshare_core::decimal::Decimal;
use revshare_core::dedup::DedupIndex;
use revshare_core::time::Instant;
use revshare_core::usage::{parse_json_line, parse_json_line_generic};
use revshare_core::usage_set::UsageSet;

const LINE: &[u8] = br#"{"id":"evt-h1-0000123456","host":"h1","model":"m-70b","use_case":"customer_service","region":"eu","time":"2026-10-17T08:21:45Z","requests":412,"input_tokens":2405911,"output_tokens":1051722,"revenue":"3.111876","currency":"USD"}"#;

fn records(c: &mut Criterion) {
    let record = parse_json_line(LINE).expect("the sample line is valid");
    let index = DedupIndex::new(1);
    c.bench_function("parse_json_line (fast path)", |b| b.iter(|| parse_json_line(std::hint::black_box(LINE))));
    c.bench_function("parse_json_line_generic", |b| b.iter(|| parse_json_line_generic(std::hint::black_box(LINE))));
    c.bench_function("utf8 validation of a line", |b| b.iter(|| std::str::from_utf8(std::hint::black_box(LINE)).is_ok()));
    c.bench_function("Decimal::parse", |b| b.iter(|| Decimal::parse(std::hint::black_box("3.111876"))));
    c.bench_function("Instant::parse_rfc3339", |b| b.iter(|| Instant::parse_rfc3339(std::hint::black_box("2026-10-17T08:21:45Z"))));
    c.bench_function("fingerprint", |b| b.iter(|| index.fingerprint(std::hint::black_box(&record))));
    c.bench_function("hash_key", |b| b.iter(|| index.hash_key(std::hint::black_box(&record.host), &record.id)));
    c.bench_function("canonical form", |b| {
        let mut out = Vec::with_capacity(320);
        b.iter(|| {
            out.clear();
            std::hint::black_box(&record).write_canonical(&mut out);
        })
    });
    c.bench_function("digest (canonical + sha256)", |b| b.iter(|| std::hint::black_box(&record).digest()));
    c.bench_function("usage set insert (LtHash16 element)", |b| {
        let (digest, mut set) = (record.digest(), UsageSet::new());
        b.iter(|| set.insert(std::hint::black_box(&digest)))
    });
}

criterion_group!(benches, records);
criterion_main!(benches);
