//! RFC 9457 problem details: every refused or failed call answers with one.
//!
//! The body is `application/problem+json` with `type` (a `urn:revshare:problem:` name that stays
//! the same across messages, for programs), `title` (the same for every problem of a type),
//! `status`, `detail` (what failed here and what would be right) and, where single records or
//! fields are at fault, `errors`: each with the `line` (and `column`) of the body, the `record`
//! id and the `field` it is about, and a `message`. Store errors map to a status in one
//! exhaustive `match`, so a new error variant has to be given one. A failure of the database
//! itself is logged here, once, and answered as 500 without its text (which may name internals).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use revshare_core::dispute::DisputeError;
use revshare_store::receipts::ProofError;
use revshare_store::{Fault, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

/// One record or field at fault.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProblemItem {
    /// The line of the body (1-based) the record starts on, or the problem is at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The column (in bytes, 1-based) of the problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    /// The record's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// The field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// An RFC 9457 problem details object, as sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDetails {
    /// `urn:revshare:problem:<name>`: stable, for programs.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What failed and what would be right.
    pub detail: String,
    /// The records or fields at fault, where there are any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemItem>,
}

/// A refused or failed call.
#[derive(Clone, Debug)]
pub struct Problem {
    pub status: StatusCode,
    /// The last part of the `type` URN, e.g. `conflict`.
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<ProblemItem>,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem { status, kind, title, detail: detail.into(), errors: Vec::new(), retry_after: None }
    }

    pub fn with_errors(mut self, errors: Vec<ProblemItem>) -> Problem {
        self.errors = errors;
        self
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "no valid bearer token", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "not allowed for this token", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "not found", detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", "the request is not valid", detail)
    }

    pub fn too_many_requests(token: &str, wait: std::time::Duration) -> Problem {
        let detail = format!("token {token} is over its rate limit; retry in {} s", wait.as_secs());
        Problem {
            retry_after: Some(wait.as_secs()),
            ..Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "too many requests", detail)
        }
    }

    /// Too many failed authentications from the client's address.
    pub fn too_many_failures(wait: std::time::Duration) -> Problem {
        let detail = format!("too many requests with a missing, unknown or revoked token from this address; retry in {} s", wait.as_secs());
        Problem {
            retry_after: Some(wait.as_secs()),
            ..Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "too many requests", detail)
        }
    }

    /// The store failing in a way that passes (down, busy, full): logged, answered with what
    /// failed (the store, not a party's data) and `Retry-After`; nothing of the call was stored.
    pub fn unavailable(status: StatusCode, kind: &'static str, error: &StoreError) -> Problem {
        tracing::warn!(%error, "the store is unavailable");
        let what = if status == StatusCode::INSUFFICIENT_STORAGE { "the store has no room left" } else { "the store does not answer" };
        // Only a commit cut short leaves the outcome open; every other fault comes before it.
        let outcome = if matches!(error, StoreError::CommitInDoubt(_)) {
            "it stopped while committing, so the change may or may not be stored: send it again, and what is stored is answered as such (a usage batch as duplicates)"
        } else {
            "nothing was changed"
        };
        Problem {
            retry_after: Some(RETRY_AFTER_SECONDS),
            ..Problem::new(status, kind, "the store is unavailable", format!("{what}; {outcome}; retry in {RETRY_AFTER_SECONDS} s"))
        }
    }

    /// A failure of the server or its store: logged here, answered without internals.
    pub fn internal(what: &str, error: &dyn std::fmt::Display) -> Problem {
        tracing::error!(%error, "{what}");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed",
            format!("{what}; the error is in the server's log"),
        )
    }

    pub fn details(&self) -> ProblemDetails {
        ProblemDetails {
            kind: format!("urn:revshare:problem:{}", self.kind),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
        }
    }
}

/// How long a client is asked to wait before retrying after the store failed in passing.
const RETRY_AFTER_SECONDS: u64 = 5;

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.details()).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"revshare\""));
        }
        response
    }
}

impl From<ProofError> for Problem {
    fn from(error: ProofError) -> Problem {
        match error {
            ProofError::Range(detail) => Problem::bad_request(detail),
            ProofError::Store(e) => (*e).into(),
        }
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Problem {
        use StatusCode as S;
        match error.fault() {
            Some(Fault::Unavailable) => return Problem::unavailable(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &error),
            Some(Fault::Full) => return Problem::unavailable(StatusCode::INSUFFICIENT_STORAGE, "storage-full", &error),
            None => {}
        }
        let (status, kind, title) = match &error {
            StoreError::Sqlite(_)
            | StoreError::Postgres(_)
            | StoreError::Connect { .. }
            | StoreError::DatabaseSetting { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Internal { .. }
            | StoreError::NewerSchema { .. }
            | StoreError::DisclosingLog { .. }
            | StoreError::CommitInDoubt(_) => {
                return Problem::internal("the store failed", &error);
            }
            // The server checks proof ranges before asking; what is left is the log failing.
            StoreError::Log(_) => return Problem::internal("the transparency log failed", &error),
            StoreError::BadRole(_)
            | StoreError::OperatorIsNoParty
            | StoreError::BadName { .. }
            | StoreError::BadTokenId(_)
            | StoreError::PaymentAmount(_) => (S::BAD_REQUEST, "bad-request", "the request is not valid"),
            StoreError::PartyExists { .. }
            | StoreError::ModelExists { .. }
            | StoreError::AliasExists { .. }
            | StoreError::TokenExists { .. }
            | StoreError::StatementExists { .. }
            | StoreError::ContributionConflict { .. } => (S::CONFLICT, "conflict", "conflicts with what is stored"),
            StoreError::UnknownAgreement { .. }
            | StoreError::UnknownToken { .. }
            | StoreError::NoGrant { .. }
            | StoreError::NoStatement { .. }
            | StoreError::UnknownDispute { .. }
            | StoreError::NoPendingPayment { .. } => (S::NOT_FOUND, "not-found", "not found"),
            StoreError::Dispute(DisputeError::NotAllowed { .. }) => (S::FORBIDDEN, "forbidden", "not allowed to do that"),
            StoreError::Dispute(DisputeError::Transition { .. } | DisputeError::Late { .. } | DisputeError::OutOfOrder { .. }) => {
                (S::CONFLICT, "dispute-state", "the dispute is not in a state that allows it")
            }
            StoreError::Signature(_) => (S::UNPROCESSABLE_ENTITY, "signature-refused", "the signature is refused"),
            StoreError::UnknownParty { .. }
            | StoreError::WrongRole { .. }
            | StoreError::NotAnArbiter { .. }
            | StoreError::UnknownModel { .. }
            | StoreError::DerivedOwner { .. }
            | StoreError::HostModelNotDerived { .. }
            | StoreError::Unresolved { .. }
            | StoreError::Agreement(_)
            | StoreError::AgreementVersion { .. }
            | StoreError::ForeignModel { .. }
            | StoreError::ExclusivityConflict { .. }
            | StoreError::EffectiveOverlap { .. }
            | StoreError::CurrencyMismatch { .. }
            | StoreError::NothingToRestate { .. }
            | StoreError::StatementDigest { .. }
            | StoreError::StatementMismatch(_)
            | StoreError::RollupOverflow(_)
            | StoreError::EntryRequired { .. }
            | StoreError::EntryNotAllowed { .. }
            | StoreError::StatementEntry { .. }
            | StoreError::StatementEntryAlone { .. }
            | StoreError::StatementReversal { .. }
            | StoreError::EntryCurrency { .. }
            | StoreError::Ledger(_)
            | StoreError::Contribution(_)
            | StoreError::Dispute(_) => (S::UNPROCESSABLE_ENTITY, "unprocessable", "the request cannot be applied"),
        };
        Problem::new(status, kind, title, error.to_string())
    }
}
