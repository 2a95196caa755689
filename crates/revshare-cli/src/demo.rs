//! `revshare demo`: a month of usage for one licensor and three hosts, settled in seconds.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use revshare_core::time::Period;

use crate::Failure;
use crate::generate::{GenArgs, Profile, generate};
use crate::settle_files::settle_command;

/// One demo agreement: its file name and text, and its contributions file, if it has one.
struct DemoAgreement {
    file: &'static str,
    text: &'static str,
    contributions: Option<(&'static str, &'static str)>,
}

const AGREEMENTS: [DemoAgreement; 3] = [
    DemoAgreement {
        file: "northwind.toml",
        text: include_str!("../demo/northwind.toml"),
        contributions: Some(("contributions-northwind.jsonl", include_str!("../demo/contributions-northwind.jsonl"))),
    },
    DemoAgreement { file: "eastwater.toml", text: include_str!("../demo/eastwater.toml"), contributions: None },
    DemoAgreement {
        file: "westfield.toml",
        text: include_str!("../demo/westfield.toml"),
        contributions: Some(("contributions-westfield.jsonl", include_str!("../demo/contributions-westfield.jsonl"))),
    },
];

pub fn run(records: u64, dir: Option<PathBuf>) -> Result<(), Failure> {
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
            d
        }
        None => tempfile::Builder::new().prefix("revshare-demo-").tempdir().context("cannot create a temporary folder")?.keep(),
    };
    let period = Period::parse("2026-10").map_err(|e| anyhow::anyhow!(e))?;
    for DemoAgreement { file, text, contributions } in AGREEMENTS {
        std::fs::write(dir.join(file), text).with_context(|| format!("cannot write {file}"))?;
        if let Some((name, text)) = contributions {
            std::fs::write(dir.join(name), text).with_context(|| format!("cannot write {name}"))?;
        }
    }
    let usage = dir.join("usage.jsonl");
    let args = GenArgs {
        records,
        seed: 2026,
        out: usage.clone(),
        period,
        hosts: vec!["northwind".into(), "eastwater".into(), "westfield".into()],
        agreement: None,
        dup_rate: 5_000,
    };
    let mut out = BufWriter::new(File::create(&usage).context("cannot create usage.jsonl")?);
    let profile = Profile::of_hosts(&args.hosts);
    generate(&args, &profile, &mut out, &|_| {}, &AtomicBool::new(false)).context("cannot write usage.jsonl")?;
    drop(out);
    println!("revshare demo: licensor meridian, hosts northwind, eastwater and westfield, {records} usage lines for {period}");
    let d = dir.display();
    println!(
        "files in {d} (try: revshare settle --agreement {d}/northwind.toml --usage {d}/usage.jsonl --contributions {d}/contributions-northwind.jsonl --period {period})\n"
    );
    for DemoAgreement { file: name, contributions, .. } in AGREEMENTS {
        let contributions = contributions.map(|(file, _)| dir.join(file));
        let (agreement, statement, summary) =
            settle_command(&dir.join(name), std::slice::from_ref(&usage), contributions.as_deref(), period)?;
        println!("{}", crate::report::settled_table(&agreement, &statement, &summary));
    }
    Ok(())
}
