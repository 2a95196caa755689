//! `revshare gen usage`: a deterministic generator of realistic usage records.
//!
//! Same arguments, same bytes: ChaCha8 seeded from `--seed`, integer arithmetic only. Hosts are
//! skewed (Zipf-like weights 1/k), three model sizes are priced per token like public Llama
//! prices, six common use cases and three regions; record times spread evenly over the month.
//! A share of the lines (`--dup-rate`) are exact resends of a recent record, as a billing
//! pipeline that retries would send.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use revshare_core::decimal::Decimal;
use revshare_core::time::Period;

#[derive(clap::Args)]
pub struct GenArgs {
    /// Lines to write, resends included.
    #[arg(long)]
    pub records: u64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
    /// The month the records fall in.
    #[arg(long, default_value = "2026-10", value_parser = crate::parse_period)]
    pub period: Period,
    /// Host ids, most active first.
    #[arg(long, value_delimiter = ',', default_value = "h1,h2,h3,h4,h5,h6,h7,h8")]
    pub hosts: Vec<String>,
    /// Fraction of lines that resend an earlier record, like "0.01".
    #[arg(long, default_value = "0.01", value_parser = parse_rate)]
    pub dup_rate: u32,
}

/// A fraction in [0, 1) as parts per million.
fn parse_rate(text: &str) -> Result<u32, String> {
    let d = Decimal::parse(text).map_err(|e| e.to_string())?;
    revshare_core::money::round_half_even(&d.to_rational(), 6)
        .and_then(|ppm| u32::try_from(ppm).ok())
        .filter(|p| *p < 1_000_000)
        .ok_or_else(|| "the rate must be below 1".to_owned())
}

/// ((model, micro-USD per million input tokens, per million output tokens), weight).
const MODELS: [((&str, u64, u64), u32); 3] =
    [(("m-8b", 200_000, 600_000), 50), (("m-70b", 900_000, 900_000), 35), (("m-405b", 3_000_000, 3_000_000), 15)];
const USE_CASES: [(&str, u32); 6] = [
    ("customer_service", 25),
    ("content_moderation", 10),
    ("recommendations", 20),
    ("content_generation", 20),
    ("search", 15),
    ("accessibility", 10),
];
const REGIONS: [(&str, u32); 3] = [("us", 50), ("eu", 30), ("apac", 20)];

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [(T, u32)]) -> &'a T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &items[items.len() - 1].0
}

/// Writes `records` lines of usage to `out`, calling `progress` every 65,536 lines.
pub fn generate(args: &GenArgs, out: &mut dyn Write, progress: &dyn Fn(u64)) -> std::io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let hosts: Vec<(&str, u32)> = args.hosts.iter().zip(1u32..).map(|(h, k)| (h.as_str(), 27_720 / k)).collect();
    let start = args.period.start().secs();
    let span = args.period.end_exclusive().secs() - start;
    let n = args.records.max(1);
    let mut recent: Vec<String> = Vec::with_capacity(1024);
    let mut line = String::with_capacity(320);
    for i in 0..args.records {
        if !recent.is_empty() && rng.random_range(0..1_000_000) < args.dup_rate {
            let again = &recent[rng.random_range(0..recent.len())];
            out.write_all(again.as_bytes())?;
        } else {
            let host = *pick(&mut rng, &hosts);
            let &(model, p_in, p_out) = pick(&mut rng, &MODELS);
            let use_case = *pick(&mut rng, &USE_CASES);
            let region = *pick(&mut rng, &REGIONS);
            let requests: u64 = rng.random_range(1..=500);
            let input_tokens = requests * rng.random_range(100..12_000);
            let output_tokens = requests * rng.random_range(20..5_000);
            let micro_usd = (input_tokens * p_in + output_tokens * p_out) / 1_000_000;
            let secs = start + i64::try_from(u128::from(i) * u128::from(span.unsigned_abs()) / u128::from(n)).unwrap_or(0);
            let time = revshare_core::time::Instant::from_parts(secs, 0);
            line.clear();
            use std::fmt::Write as _;
            let _ = writeln!(
                line,
                r#"{{"id":"{host}-{i:010}","host":"{host}","model":"{model}","use_case":"{use_case}","region":"{region}","time":"{time}","requests":{requests},"input_tokens":{input_tokens},"output_tokens":{output_tokens},"revenue":"{}.{:06}","currency":"USD"}}"#,
                micro_usd / 1_000_000,
                micro_usd % 1_000_000
            );
            out.write_all(line.as_bytes())?;
            if recent.len() < 1024 {
                recent.push(line.clone());
            } else {
                let slot = rng.random_range(0..recent.len());
                recent[slot].clone_from(&line);
            }
        }
        if i % 65_536 == 0 {
            progress(i);
        }
    }
    out.flush()
}

pub fn run(args: &GenArgs) -> anyhow::Result<()> {
    for host in &args.hosts {
        anyhow::ensure!(revshare_core::ids::is_party_id(host), "`{host}` is not a valid host id: use 1-63 of a-z 0-9 _ -");
    }
    let file = File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let bar = crate::settle_files::progress_bar(None, "generating");
    bar.set_length(args.records);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} records, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    generate(args, &mut out, &|i| bar.set_position(i)).with_context(|| format!("cannot write {}", args.out.display()))?;
    bar.finish_and_clear();
    Ok(())
}
