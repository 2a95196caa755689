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

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use revshare_core::bundle::{BATCHES_DIR, Bundle};
use revshare_store::export::{self, ExportError};

use crate::AppState;
use crate::auth::Caller;
use crate::extract::{Params, agreement_id, number, params, period_of, readable};
use crate::problem::{Problem, ProblemDetails};

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
        (status = 200, description = "the bundle as a tar archive (`tar x -C DIR`, then `revshare verify DIR`)", body = TarArchive, content_type = "application/x-tar"),
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
    query: Params,
) -> Result<Response, Problem> {
    let id = agreement_id(&agreement)?;
    let period = period_of(&period)?;
    let sequence = number(&params(query)?, "sequence")?
        .map(|n| u32::try_from(n).map_err(|_| Problem::bad_request(format!("`sequence` must be at most {}, not {n}", u32::MAX))))
        .transpose()?;
    let (archive, summary) = state
        .run(move |store, shared| {
            readable(store, &caller, &id)?;
            let (bundle, summary) = export::bundle(store, shared.key(), &id, period, sequence, shared.now())?;
            let archive = tar(&bundle).map_err(|e| Problem::internal("the bundle cannot be archived", &e))?;
            Ok((archive, summary))
        })
        .await?;
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
