//! A statement's bundle over HTTP: `GET /v1/statements/{agreement}/{period}/bundle`, the same
//! files `revshare statement export --bundle DIR` writes (assembled once, by the store's
//! `export::bundle`), as one tar archive, so that
//! `curl … | tar x -C dir && revshare verify dir` checks a statement offline.
//!
//! The archive is deterministic: ustar headers with mode 0644 (0755 for the `batches/` folder),
//! mtime 0, uid and gid 0 and no user or group names, the files in `Bundle::files`' order. The
//! same bundle is the same bytes; only the checkpoint signed for the request (its `time` line and
//! the log size) differs from one request to the next. The archive is built in memory on a
//! blocking thread: a month's bundle is about the size of its records as canonical JSON Lines.
//! Whoever may read the statement may fetch its bundle; for anyone else it is not found, as the
//! statement is, and nothing (no checkpoint) is written.
//!
//! With `Accept: application/json` (and not the archive's type) the answer is the bundle's index
//! instead ([`BundleIndex`]): each file's path, size and SHA-256, and what the bundle proves, so
//! that a client can check what it unpacked against what the server sent, or see what a proof
//! consists of before fetching it.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use revshare_core::bundle::{BATCHES_DIR, Bundle};
use revshare_store::export::{self, ExportError};

use crate::AppState;
use crate::auth::Caller;
use crate::extract::{Params, agreement_id, number, params, period_of, readable};
use crate::problem::{Problem, ProblemDetails};

/// What a bundle holds, without its bytes.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct BundleIndex {
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
    #[schema(example = "2026-10")]
    pub period: String,
    #[schema(example = 1)]
    pub sequence: u32,
    /// `sha256:` of the statement's canonical bytes (`statement.json`).
    pub statement_digest: String,
    /// Records counted (`records.jsonl` lines).
    #[schema(example = 6)]
    pub records: usize,
    /// Usage batches of those records (`batches/*.digests`).
    pub batches: usize,
    /// Log leaves proven in `log.json`.
    pub leaves: usize,
    /// The size of the checkpoint the leaves are proven under.
    pub tree_size: u64,
    /// The archive's files, in its order.
    pub files: Vec<BundleFile>,
}

/// One file of a bundle.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct BundleFile {
    /// Its path in the archive.
    #[schema(example = "statement.json")]
    pub path: String,
    #[schema(example = 2048)]
    pub bytes: usize,
    /// `sha256:` of its bytes.
    #[schema(example = "sha256:15ea8883cd7893a29221ee19251d640a50b2df28975bd3e5db6c7b7fdafbd3ab")]
    pub sha256: String,
}

/// What a bundle request answers with.
enum Answer {
    Archive(Vec<u8>),
    Index(Vec<BundleFile>),
}

/// A tar archive (for the OpenAPI document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "a schema for the OpenAPI document; the archive is written by `tar`")]
#[schema(value_type = String, format = Binary)]
pub struct TarArchive(Vec<u8>);

impl From<ExportError> for Problem {
    fn from(error: ExportError) -> Problem {
        match error {
            ExportError::Store(e) => (*e).into(),
            e @ ExportError::NoStatement { .. } => Problem::not_found(e.to_string()),
            e @ (ExportError::StatementNotLogged { .. } | ExportError::AgreementNotLogged { .. }) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", "the request cannot be applied", e.to_string())
            }
            e @ ExportError::Encode(_) => Problem::internal("a bundle cannot be encoded", &e),
        }
    }
}

/// A bundle as a tar archive with deterministic headers.
pub fn tar(bundle: &Bundle) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let header = |size: usize, mode: u32, kind: tar::EntryType| {
        let mut header = tar::Header::new_ustar();
        header.set_size(u64::try_from(size).unwrap_or(u64::MAX));
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(kind);
        header
    };
    // The folder first, so that unpacking creates it even when the month has no logged batch
    // (as the CLI does).
    builder.append_data(&mut header(0, 0o755, tar::EntryType::Directory), format!("{BATCHES_DIR}/"), std::io::empty())?;
    for (path, bytes) in bundle.files() {
        builder.append_data(&mut header(bytes.len(), 0o644, tar::EntryType::Regular), &path, bytes)?;
    }
    builder.into_inner()
}

/// The bundle of an agreement's latest statement of a month (or of statement `sequence`): a tar
/// archive of the files `revshare verify` checks offline.
#[utoipa::path(
    get,
    path = "/statements/{agreement}/{period}/bundle",
    tag = "statements",
    params(
        ("agreement" = String, Path, description = "the agreement id"),
        ("period" = String, Path, description = "the month, YYYY-MM"),
        ("sequence" = Option<u32>, Query, description = "which statement of the month: 1 the original, then its restatements (default: the latest)")
    ),
    responses(
        (status = 200, description = "the bundle as a tar archive (`tar x -C DIR`, then `revshare verify DIR`); its index with `Accept: application/json`", content((TarArchive = "application/x-tar"), (BundleIndex = "application/json"))),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement or statement that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "the statement or its agreement predates the transparency log, so it has no proofs", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_bundle(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((agreement, period)): Path<(String, String)>,
    request_headers: HeaderMap,
    query: Params,
) -> Result<Response, Problem> {
    let id = agreement_id(&agreement)?;
    let period = period_of(&period)?;
    let sequence = number(&params(query)?, "sequence")?
        .map(|n| u32::try_from(n).map_err(|_| Problem::bad_request(format!("`sequence` must be at most {}, not {n}", u32::MAX))))
        .transpose()?;
    let index = crate::csv_answer::accepts(&request_headers, "application/json")
        && !crate::csv_answer::accepts(&request_headers, "application/x-tar");
    let (answer, summary) = state
        .run(move |store, shared| {
            readable(store, &caller, &id)?;
            let (bundle, summary) = export::bundle(store, shared.key(), &id, period, sequence, shared.now())?;
            let answer = if index {
                Answer::Index(
                    bundle
                        .files()
                        .into_iter()
                        .map(|(path, bytes)| BundleFile { sha256: revshare_core::canonical::digest(bytes), bytes: bytes.len(), path })
                        .collect(),
                )
            } else {
                Answer::Archive(tar(&bundle).map_err(|e| Problem::internal("the bundle cannot be archived", &e))?)
            };
            Ok((answer, summary))
        })
        .await?;
    let archive = match answer {
        Answer::Archive(archive) => archive,
        Answer::Index(files) => {
            return Ok(Json(BundleIndex {
                agreement: summary.agreement.to_string(),
                period: summary.period.to_string(),
                sequence: summary.sequence,
                statement_digest: summary.digest,
                records: summary.records,
                batches: summary.batches,
                leaves: summary.leaves,
                tree_size: summary.tree_size,
                files,
            })
            .into_response());
        }
    };
    let value = |text: String| HeaderValue::from_str(&text).map_err(|e| Problem::internal("a bundle header cannot be written", &e));
    let file = format!("{}-{}-{}.tar", summary.agreement, summary.period, summary.sequence);
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar")),
        (header::CONTENT_DISPOSITION, value(format!("attachment; filename=\"{file}\""))?),
        (HeaderName::from_static("revshare-statement-digest"), value(summary.digest.clone())?),
        (HeaderName::from_static("revshare-statement-sequence"), value(summary.sequence.to_string())?),
    ];
    tracing::info!(agreement = %summary.agreement, period = %summary.period, sequence = summary.sequence, records = summary.records, "bundle exported");
    Ok((headers, archive).into_response())
}
