//! `revshare batch sign`: a host signs a usage file as one batch on its own machine (no store),
//! for `POST /v1/usage` with the two headers printed.

use std::path::Path;

use anyhow::Context;
use revshare_core::transparency::b64;
use revshare_server::body::{self, Format};

use crate::Failure;
use crate::log_cmds::{read_signer, sign_batch};

/// Problems of a file that is not a batch, listed at most this many at a time.
const SHOWN: usize = 10;

/// Signs `file` (its records as `POST /v1/usage` reads them with `content_type`, by default
/// JSON Lines, or a JSON array for `.json`) with the private key in `key`; prints the
/// `Revshare-Signature` and `Revshare-Record-Key` headers (or, with `json`, an object with them
/// and the batch digest).
pub fn sign(file: &Path, key: &Path, content_type: Option<&str>, json: bool) -> Result<(), Failure> {
    let signer = read_signer(key)?;
    let media = content_type
        .unwrap_or_else(|| if file.extension().is_some_and(|e| e == "json") { "application/json" } else { "application/x-ndjson" });
    let format = Format::of_media(media).ok_or_else(|| {
        Failure::Invalid(format!(
            "error: `{}` is not a usage content type; use application/x-ndjson, application/json (an array of records) or \
             application/cloudevents-batch+json\n",
            revshare_core::text::printable(media, 80)
        ))
    })?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let parsed = body::parse(format, &bytes).map_err(|problems| {
        let mut text = String::new();
        for p in problems.iter().take(SHOWN) {
            let at = [
                p.line.map(|l| format!("line {l}")),
                p.column.map(|c| format!("column {c}")),
                p.record.as_ref().map(|r| format!("record {r}")),
            ];
            let at: Vec<String> = at.into_iter().flatten().collect();
            text.push_str(&format!("error: {}:{}: {}\n", file.display(), at.join(", "), revshare_core::text::printable(&p.message, 200)));
        }
        if problems.len() > SHOWN {
            text.push_str(&format!("… and {} more problems\n", problems.len() - SHOWN));
        }
        text.push_str("nothing was signed: a batch is signed whole, once every record reads\n");
        Failure::Invalid(text)
    })?;
    let Some(host) = parsed.records.first().map(|r| r.host.to_string()) else {
        return Err(Failure::Invalid(format!("error: {} holds no record; there is nothing to sign\n", file.display())));
    };
    if let Some(other) = parsed.records.iter().find(|r| r.host != host.as_str()) {
        return Err(Failure::Invalid(format!(
            "error: {}: record {} is of host {}, but the batch is {host}'s; a signed batch is one host's (split the file)\n",
            file.display(),
            revshare_core::text::printable(&other.id, 80),
            revshare_core::text::printable(&other.host, 80)
        )));
    }
    let batch = sign_batch(&signer, &parsed.records).map_err(|e| Failure::Invalid(format!("error: {e}\n")))?;
    let digest = revshare_store::batch_digest(&parsed.records, &batch.record_key);
    let signature = format!("{} {}", batch.signed.key, b64(&batch.signed.signature));
    let record_key = b64(&batch.record_key);
    if json {
        let out = serde_json::json!({
            "host": host, "records": parsed.records.len(), "content_type": media, "batch_digest": digest,
            "revshare_signature": signature, "revshare_record_key": record_key,
        });
        println!("{}", serde_json::to_string_pretty(&out).context("the answer serialises")?);
    } else {
        println!("Revshare-Signature: {signature}\nRevshare-Record-Key: {record_key}");
        eprintln!(
            "signed {} records of {host} as one batch (digest {digest}); send {} unchanged, as one POST /v1/usage with \
             Content-Type: {media} and the two headers above (curl -H @FILE reads them from a file)",
            parsed.records.len(),
            file.display()
        );
    }
    Ok(())
}
