//! `revshare gen usage`: a deterministic generator of realistic usage records.
//!
//! Same arguments, same bytes: ChaCha8 seeded from `--seed`, integer arithmetic only. Hosts are
//! skewed (Zipf-like weights 1/k), three model sizes are priced per token like public Llama
//! prices, six common use cases and three regions; record times spread evenly over the month.
//! With `--agreement`, the records are that agreement's: its host, its models, the use cases it
//! rates (and the common ones, if it has default rates), the regions its exclusivity names, its
//! currency. A share of the lines (`--dup-rate`) are exact resends of a recent record, as a
//! billing pipeline that retries would send. Ids name the host, month and seed, so files
//! generated for other months or seeds never share an id.
//!
//! The file appears whole or not at all: lines go to a temporary file beside it, renamed over
//! it at the end; Ctrl-C stops the run, removes the temporary file and says so (exit 130).

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use revshare_core::decimal::Decimal;
use revshare_core::time::Period;

use crate::Failure;

#[derive(clap::Args)]
pub struct GenArgs {
    /// Lines to write, resends included.
    #[arg(long)]
    pub records: u64,
    /// Seeds the generator: the same arguments give the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The file to write (replaced whole once every line is written).
    #[arg(long)]
    pub out: PathBuf,
    /// The month the records fall in.
    #[arg(long, default_value = "2026-10", value_parser = crate::parse_period)]
    pub period: Period,
    /// Host ids, most active first.
    #[arg(long, value_delimiter = ',', default_value = "h1,h2,h3,h4,h5,h6,h7,h8")]
    pub hosts: Vec<String>,
    /// An agreement file (TOML): generate its host's records, for its models, use cases and
    /// regions, in its currency (instead of `--hosts`).
    #[arg(long, conflicts_with = "hosts")]
    pub agreement: Option<PathBuf>,
    /// Fraction of lines that resend an earlier record, like "0.01".
    #[arg(long, default_value = "0.01", value_parser = parse_rate)]
    pub dup_rate: u32,
}

/// What the records are drawn from, each choice with its weight.
pub struct Profile {
    hosts: Vec<(String, u32)>,
    /// (model, micro-units per million input tokens, per million output tokens)
    models: Vec<((String, u64, u64), u32)>,
    use_cases: Vec<(String, u32)>,
    regions: Vec<(String, u32)>,
    currency: String,
}

impl Profile {
    /// The default mix: the hosts given, the three common models, use cases and regions, USD.
    pub fn of_hosts(hosts: &[String]) -> Profile {
        let owned = |items: &[(&str, u32)]| items.iter().map(|(s, w)| ((*s).to_owned(), *w)).collect();
        Profile {
            hosts: hosts.iter().zip(1u32..).map(|(h, k)| (h.clone(), 27_720 / k)).collect(),
            models: MODELS.iter().map(|&((m, i, o), w)| ((m.to_owned(), i, o), w)).collect(),
            use_cases: owned(&USE_CASES),
            regions: owned(&REGIONS),
            currency: "USD".to_owned(),
        }
    }

    /// An agreement's mix: its host; its models (priced as the common model of their name, or
    /// as the middle one); the use cases it rates, and the common ones too when it has default
    /// rates; the common regions and those its exclusivity names; its currency.
    fn of_agreement(agreement: &revshare_core::agreement::Agreement) -> Profile {
        let models = agreement
            .models()
            .iter()
            .map(|m| {
                let (_, i, o) = MODELS.iter().map(|(p, _)| *p).find(|(name, ..)| *name == m.as_str()).unwrap_or(MODELS[1].0);
                ((m.as_str().to_owned(), i, o), 1)
            })
            .collect();
        let mut use_cases: Vec<(String, u32)> = agreement.rated_use_cases().map(|u| (u.to_owned(), 20)).collect();
        if agreement.has_default_rates() {
            for (u, w) in USE_CASES {
                if !use_cases.iter().any(|(have, _)| have == u) {
                    use_cases.push((u.to_owned(), w));
                }
            }
        }
        let mut regions: Vec<(String, u32)> = REGIONS.iter().map(|(r, w)| ((*r).to_owned(), *w)).collect();
        for region in agreement.exclusivity().iter().filter_map(|s| s.regions()).flatten() {
            if !regions.iter().any(|(have, _)| have == region) {
                regions.push((region.to_owned(), 20));
            }
        }
        Profile {
            hosts: vec![(agreement.host().as_str().to_owned(), 1)],
            models,
            use_cases,
            regions,
            currency: agreement.currency().code().to_owned(),
        }
    }
}

/// What a run wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub records: u64,
    pub resends: u64,
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
    let mut x = rng.random_range(0..total.max(1));
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &items[items.len() - 1].0
}

/// Writes `args.records` lines drawn from `profile` to `out`, calling `progress` every 65,536
/// lines; stops with [`std::io::ErrorKind::Interrupted`] once `stop` is set.
pub fn generate(
    args: &GenArgs,
    profile: &Profile,
    out: &mut dyn Write,
    progress: &dyn Fn(u64),
    stop: &AtomicBool,
) -> std::io::Result<Written> {
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let start = args.period.start().secs();
    let span = args.period.end_exclusive().secs() - start;
    let n = args.records.max(1);
    let (period, seed, currency) = (args.period, args.seed, &profile.currency);
    let mut written = Written::default();
    let mut recent: Vec<String> = Vec::with_capacity(1024);
    let mut line = String::with_capacity(320);
    for i in 0..args.records {
        if i % 65_536 == 0 {
            if stop.load(Ordering::Relaxed) {
                return Err(std::io::Error::from(std::io::ErrorKind::Interrupted));
            }
            progress(i);
        }
        written.records += 1;
        if !recent.is_empty() && rng.random_range(0..1_000_000) < args.dup_rate {
            let again = &recent[rng.random_range(0..recent.len())];
            out.write_all(again.as_bytes())?;
            written.resends += 1;
            continue;
        }
        let host = pick(&mut rng, &profile.hosts);
        let (model, p_in, p_out) = pick(&mut rng, &profile.models);
        let use_case = pick(&mut rng, &profile.use_cases);
        let region = pick(&mut rng, &profile.regions);
        let requests: u64 = rng.random_range(1..=500);
        let input_tokens = requests * rng.random_range(100..12_000);
        let output_tokens = requests * rng.random_range(20..5_000);
        let micro = (input_tokens * p_in + output_tokens * p_out) / 1_000_000;
        let secs = start + i64::try_from(u128::from(i) * u128::from(span.unsigned_abs()) / u128::from(n)).unwrap_or(0);
        let time = revshare_core::time::Instant::from_parts(secs, 0);
        line.clear();
        use std::fmt::Write as _;
        let _ = writeln!(
            line,
            r#"{{"id":"{host}-{period}-{seed}-{i:010}","host":"{host}","model":"{model}","use_case":"{use_case}","region":"{region}","time":"{time}","requests":{requests},"input_tokens":{input_tokens},"output_tokens":{output_tokens},"revenue":"{}.{:06}","currency":"{currency}"}}"#,
            micro / 1_000_000,
            micro % 1_000_000
        );
        out.write_all(line.as_bytes())?;
        if recent.len() < 1024 {
            recent.push(line.clone());
        } else {
            let slot = rng.random_range(0..recent.len());
            recent[slot].clone_from(&line);
        }
    }
    out.flush()?;
    Ok(written)
}

pub fn run(args: &GenArgs) -> Result<(), Failure> {
    let profile = match &args.agreement {
        Some(path) => {
            let agreement = crate::settle_files::load_agreement(path)?;
            if !agreement.covers(args.period) {
                let to = agreement.effective_to().map_or_else(|| "on".to_owned(), |to| format!("until {to}"));
                return Err(Failure::Invalid(format!(
                    "error: agreement {} is not in effect in {} (from {} {to}); pass --period with a month it covers\n",
                    agreement.id(),
                    args.period,
                    agreement.effective_from()
                )));
            }
            let profile = Profile::of_agreement(&agreement);
            if profile.use_cases.is_empty() {
                return Err(Failure::Invalid(format!(
                    "error: agreement {} rates no use case and has no default rate: no record could be billed\n",
                    agreement.id()
                )));
            }
            profile
        }
        None => {
            for host in &args.hosts {
                if !revshare_core::ids::is_party_id(host) {
                    return Err(Failure::Invalid(format!("error: `{host}` is not a valid host id: use 1-63 of a-z 0-9 _ -\n")));
                }
            }
            Profile::of_hosts(&args.hosts)
        }
    };
    // Ctrl-C sets the flag; the generator stops at its next check and the file is not written.
    let stop = crate::ctrl_c()?;
    let dir = match args.out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temporary = tempfile::Builder::new()
        .prefix(".revshare-gen-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, temporary);
    let bar = crate::settle_files::progress_bar(None, "generating");
    bar.set_length(args.records);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} records, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let written = match generate(args, &profile, &mut out, &|i| bar.set_position(i), &stop) {
        Ok(written) => written,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
            bar.finish_and_clear();
            return Err(Failure::Interrupted(format!("interrupted: {} was not written\n", args.out.display())));
        }
        Err(e) => return Err(anyhow::Error::from(e).context(format!("cannot write {}", args.out.display())).into()),
    };
    bar.finish_and_clear();
    let file = out.into_inner().map_err(|e| anyhow::Error::from(e.into_error()).context(format!("cannot write {}", args.out.display())))?;
    file.as_file().sync_all().with_context(|| format!("cannot write {}", args.out.display()))?;
    file.persist(&args.out).map_err(|e| anyhow::Error::from(e.error).context(format!("cannot write {}", args.out.display())))?;
    let hosts: Vec<&str> = profile.hosts.iter().map(|(h, _)| h.as_str()).collect();
    println!(
        "wrote {} ({}) of {} in {} to {}",
        crate::report::counted(written.records, "record"),
        crate::report::counted(written.resends, "resend"),
        hosts.join(", "),
        args.period,
        args.out.display()
    );
    Ok(())
}
