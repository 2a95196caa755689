//! Load generator for `revshare serve` (bench/serve.sh runs it), compiled so that on a two-core
//! machine it leaves the cores to the server it measures: one thread, async I/O.
//!
//! ```text
//! load ingest URL USAGE.jsonl TOKENS.json CLIENTS BATCH
//! load read URL TOKEN SECONDS RATE PATH...
//! load absent URL TOKEN SECONDS RATE PATH...
//! ```
//!
//! `ingest`: the records of USAGE.jsonl, cut into batches of BATCH lines per host, are posted by
//! CLIENTS concurrent clients (one keep-alive connection each) as `application/x-ndjson`, each
//! batch with its host's token from TOKENS.json (`{"host": "token"}`); a batch counts once the
//! server answered 200, i.e. committed it. Prints records/s over the whole run and batch latency
//! percentiles.
//!
//! `read`: GETs the PATHs in turn at RATE requests/s for SECONDS seconds, open loop: request `i`
//! is due at `start + i / RATE` and its latency counts from then, so a slow server cannot hide
//! behind a load that slows down with it. Prints each path's latency percentiles.
//!
//! `absent`: as `read`, for paths the token may not read, each of which must be answered 404: to
//! compare the latency of what exists but is another party's with that of what does not exist.
//!
//! Exits with 1 if any request failed.

#![allow(clippy::float_arithmetic, clippy::as_conversions)] // rates and milliseconds for a report, not money

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

type Failure = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ok = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["ingest", url, usage, tokens, clients, batch] => ingest(url, usage, tokens, clients.parse()?, batch.parse()?).await?,
        ["read", url, token, seconds, rate, paths @ ..] if !paths.is_empty() => {
            read(url, token, seconds.parse()?, rate.parse()?, paths, 200).await?
        }
        ["absent", url, token, seconds, rate, paths @ ..] if !paths.is_empty() => {
            read(url, token, seconds.parse()?, rate.parse()?, paths, 404).await?
        }
        _ => {
            eprintln!(
                "usage: load ingest URL USAGE.jsonl TOKENS.json CLIENTS BATCH\n       load read|absent URL TOKEN SECONDS RATE PATH..."
            );
            std::process::exit(2);
        }
    };
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

/// One batch: its host, its record count and its body.
struct Batch {
    host: String,
    records: usize,
    body: Vec<u8>,
}

#[derive(serde::Deserialize)]
struct HostOnly {
    host: String,
}

async fn ingest(url: &str, usage: &str, tokens: &str, clients: usize, batch: usize) -> Result<bool, Failure> {
    let tokens: HashMap<String, String> = serde_json::from_slice(&std::fs::read(tokens)?)?;
    let text = std::fs::read(usage)?;
    let mut by_host: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
    for line in text.split_inclusive(|b| *b == b'\n').filter(|l| l.iter().any(|b| !b.is_ascii_whitespace())) {
        let HostOnly { host } = serde_json::from_slice(line)?;
        by_host.entry(host).or_default().push(line);
    }
    let mut batches: Vec<Batch> = by_host
        .iter()
        .flat_map(|(host, lines)| {
            lines.chunks(batch.max(1)).map(|chunk| Batch { host: host.clone(), records: chunk.len(), body: chunk.concat() })
        })
        .collect();
    batches.sort_by_key(|b| std::cmp::Reverse(b.records));
    let batches = Arc::new(batches);
    let tokens = Arc::new(tokens);
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Outcomes::default()));
    let endpoint = format!("{url}/v1/usage");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (batches, tokens, next, results, endpoint) = (batches.clone(), tokens.clone(), next.clone(), results.clone(), endpoint.clone());
        // One client per task: one keep-alive connection each, as a billing pipeline would hold.
        let client = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
        tasks.push(tokio::spawn(async move {
            while let Some(batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
                let token = tokens.get(&batch.host).map(String::as_str).unwrap_or_default();
                let sent = Instant::now();
                let answer = client
                    .post(&endpoint)
                    .bearer_auth(token)
                    .header("content-type", "application/x-ndjson")
                    .body(batch.body.clone())
                    .send()
                    .await;
                let status = match answer {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                results.lock().await.record(status == 200, status, sent.elapsed(), batch.records);
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let wall = start.elapsed().as_secs_f64();
    let mut outcome = results.lock().await;
    let records = outcome.records;
    println!(
        "ingest over HTTP: {records} records in {} batches of <= {batch}, {clients} clients: {wall:.2} s, {:.0} records/s; \
         batch latency p50 {}, p99 {}, max {}; failures {}",
        outcome.latencies.len(),
        records as f64 / wall.max(1e-9),
        outcome.percentile(50),
        outcome.percentile(99),
        outcome.percentile(100),
        outcome.failures.len()
    );
    Ok(outcome.report_failures())
}

/// GETs `paths` in turn at `rate` requests/s for `seconds`; each must be answered `expected`.
async fn read(url: &str, token: &str, seconds: u64, rate: u64, paths: &[&str], expected: u16) -> Result<bool, Failure> {
    let client = reqwest::Client::new();
    let total = seconds * rate;
    let mut outcomes: Vec<Arc<Mutex<Outcomes>>> = paths.iter().map(|_| Arc::new(Mutex::new(Outcomes::default()))).collect();
    let begin = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for i in 0..total {
        let due = begin + Duration::from_nanos(i * 1_000_000_000 / rate.max(1));
        tokio::time::sleep_until(due).await;
        let k = usize::try_from(i).unwrap_or(0) % paths.len();
        let (client, results) = (client.clone(), outcomes[k].clone());
        let request = client.get(format!("{url}{}", paths[k])).bearer_auth(token);
        tasks.push(tokio::spawn(async move {
            let status = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let _ = response.bytes().await;
                    status
                }
                Err(_) => 0,
            };
            results.lock().await.record(status == expected, status, due.elapsed(), 0);
        }));
    }
    for task in tasks {
        task.await?;
    }
    let span = begin.elapsed().as_secs_f64();
    let mut ok = true;
    for (path, outcome) in paths.iter().zip(&mut outcomes) {
        let mut outcome = outcome.lock().await;
        println!(
            "read {path}: {} requests at {:.0} req/s overall; p50 {}, p99 {}, max {}",
            outcome.latencies.len(),
            total as f64 / span.max(1e-9),
            outcome.percentile(50),
            outcome.percentile(99),
            outcome.percentile(100)
        );
        ok &= outcome.report_failures();
    }
    Ok(ok)
}

#[derive(Default)]
struct Outcomes {
    latencies: Vec<Duration>,
    failures: Vec<u16>,
    records: usize,
}

impl Outcomes {
    fn record(&mut self, answered: bool, status: u16, latency: Duration, records: usize) {
        if answered {
            self.latencies.push(latency);
            self.records += records;
        } else {
            self.failures.push(status);
        }
    }

    /// The `p`th percentile latency (nearest rank), in milliseconds.
    fn percentile(&mut self, p: usize) -> String {
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        match n {
            0 => "-".to_owned(),
            _ => format!("{:.2} ms", self.latencies[(n * p / 100).min(n - 1)].as_secs_f64() * 1000.0),
        }
    }

    /// Prints the failures, if any; true when there were none.
    fn report_failures(&self) -> bool {
        if !self.failures.is_empty() {
            println!("failures: {} (statuses {:?}…; 0 = no answer)", self.failures.len(), &self.failures[..self.failures.len().min(5)]);
        }
        self.failures.is_empty()
    }
}
