//! `GET /v1/compliance?period=P`: a licensor's compliance report for a month (SPEC §11;
//! `revshare compliance report`): usage of its models that no agreement covered, and the flagged
//! lines of its agreements' statements (final, or the open month so far). The licensor's alone:
//! any other token is refused, and the report names only the licensor's own hosts and agreements.

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use revshare_store::Role;
use revshare_store::compliance::{self, FINDING_MEMBERS, Finding};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::csv_answer::json_or_rows;
use crate::extract::{Params, only, params, period_of};
use crate::problem::{Problem, ProblemDetails};

/// A licensor's findings for a month.
#[derive(Serialize, ToSchema)]
pub struct ComplianceReport {
    #[schema(example = "meridian")]
    pub licensor: String,
    #[schema(example = "2026-10")]
    pub period: String,
    /// Usage outside every agreement first (by host, model, use case, region), then the flagged
    /// lines (by agreement, in statement order).
    pub findings: Vec<ComplianceFinding>,
}

/// Usage of one of the licensor's models, in one use case and region, that no agreement covered;
/// or a flagged line of an agreement's statement.
#[derive(Serialize, ToSchema)]
pub struct ComplianceFinding {
    /// The line's flags (`unlicensed_model`, `naming_violation`, `prohibited_use`), or
    /// `["unlicensed_model"]` for usage outside every agreement.
    #[schema(example = json!(["prohibited_use"]))]
    pub flags: Vec<String>,
    /// The agreement whose statement carries the line; null for usage outside every agreement.
    #[schema(example = "meridian-northwind")]
    pub agreement: Option<String>,
    #[schema(example = "northwind")]
    pub host: String,
    #[schema(example = "m-70b")]
    pub model: String,
    #[schema(example = "surveillance")]
    pub use_case: String,
    #[schema(example = "us")]
    pub region: String,
    /// `final` (the month's statement) or `open` (the month so far); null for usage outside every
    /// agreement.
    #[schema(example = "final")]
    pub standing: Option<String>,
    #[schema(example = "USD")]
    pub currency: String,
    #[schema(example = 12)]
    pub records: u64,
    /// A decimal string.
    #[schema(example = "120")]
    pub requests: String,
    /// A decimal string.
    #[schema(example = "48000")]
    pub input_tokens: String,
    /// A decimal string.
    #[schema(example = "9000")]
    pub output_tokens: String,
    /// Rounded once, half to even, to the currency's minor unit.
    #[schema(example = "310.25")]
    pub revenue: String,
    /// What the line owes the licensor; null for usage outside every agreement.
    #[schema(example = "62.05")]
    pub amount: Option<String>,
}

impl From<Finding> for ComplianceFinding {
    fn from(f: Finding) -> ComplianceFinding {
        ComplianceFinding {
            flags: f.flags,
            agreement: f.agreement,
            host: f.host,
            model: f.model,
            use_case: f.use_case,
            region: f.region,
            standing: f.standing.map(str::to_owned),
            currency: f.currency,
            records: f.records,
            requests: f.requests,
            input_tokens: f.input_tokens,
            output_tokens: f.output_tokens,
            revenue: f.revenue,
            amount: f.amount,
        }
    }
}

/// A licensor's compliance report for a month.
#[utoipa::path(
    get,
    path = "/compliance",
    tag = "compliance",
    params(("period" = String, Query, description = "the month, `YYYY-MM`", example = "2026-10")),
    responses(
        (status = 200, description = "the findings; CSV of them with `Accept: text/csv`", content((ComplianceReport = "application/json"), (String = "text/csv"))),
        (status = 400, description = "a missing, invalid or unknown parameter", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not a licensor's token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn report(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    query: Params,
) -> Result<Response, Problem> {
    caller.require(Role::Licensor, "read a compliance report")?;
    let params = params(query)?;
    only(&params, &["period"])?;
    let period = period_of(params.get("period").ok_or_else(|| Problem::bad_request("the query needs `period` (`YYYY-MM`)"))?)?;
    let report = state
        .run(move |store, _| {
            let report = compliance::report(store, &caller.party, period)?;
            Ok(ComplianceReport {
                licensor: report.licensor,
                period: report.period,
                findings: report.findings.into_iter().map(ComplianceFinding::from).collect(),
            })
        })
        .await?;
    json_or_rows(&headers, &report, FINDING_MEMBERS, &report.findings)
}
