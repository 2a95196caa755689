//! `revshare demo`: a month of usage for one licensor and three hosts, settled in seconds.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::Context;
use revshare_core::time::Period;

use crate::Failure;
use crate::generate::{GenArgs, generate};
use crate::settle_files::settle_command;

const AGREEMENTS: [(&str, &str); 3] = [
    ("northwind.toml", include_str!("../demo/northwind.toml")),
    ("eastwater.toml", include_str!("../demo/eastwater.toml")),
    ("westfield.toml", include_str!("../demo/westfield.toml")),
];
const CONTRIBUTIONS: &str = include_str!("../demo/contributions.jsonl");

pub fn run(records: u64, dir: Option<PathBuf>) -> Result<(), Failure> {
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
            d
        }
        None => tempfile::Builder::new().prefix("revshare-demo-").tempdir().context("cannot create a temporary folder")?.keep(),
    };
    let period = Period::parse("2026-10").map_err(|e| anyhow::anyhow!(e))?;
    for (name, text) in AGREEMENTS {
        std::fs::write(dir.join(name), text).with_context(|| format!("cannot write {name}"))?;
    }
    let contributions = dir.join("contributions.jsonl");
    std::fs::write(&contributions, CONTRIBUTIONS).context("cannot write contributions.jsonl")?;
    let usage = dir.join("usage.jsonl");
    let args = GenArgs {
        records,
        seed: 2026,
        out: usage.clone(),
        period,
        hosts: vec!["northwind".into(), "eastwater".into(), "westfield".into()],
        dup_rate: 5_000,
    };
    let mut out = BufWriter::new(File::create(&usage).context("cannot create usage.jsonl")?);
    generate(&args, &mut out, &|_| {}).context("cannot write usage.jsonl")?;
    drop(out);
    println!("revshare demo: licensor meridian, hosts northwind, eastwater and westfield, {records} usage lines for {period}");
    println!(
        "files in {} (try: revshare settle --agreement {}/northwind.toml --usage {}/usage.jsonl --contributions {}/contributions.jsonl --period {period})\n",
        dir.display(),
        dir.display(),
        dir.display(),
        dir.display()
    );
    for (name, _) in AGREEMENTS {
        let (agreement, statement, summary) = settle_command(&dir.join(name), std::slice::from_ref(&usage), Some(&contributions), period)?;
        println!("{}", crate::report::statement_table(&agreement, &statement, &summary));
    }
    Ok(())
}
