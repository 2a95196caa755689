//! `GET /v1/usage/summary`: an agreement's usage so far, per day or month, in total or by model,
//! use case and region, from the rollups the store keeps at ingest (never its records), the open
//! month included: what its preview will bill, as it arrives. And a host's own usage batches,
//! each with its receipt (`GET /v1/usage/batches`, `…/{leaf}`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::{Extension, Json};
use revshare_core::time::Period;
use revshare_core::transparency::read_event;
use revshare_store::LoggedBatch;
use revshare_store::receipts;
use revshare_store::{Grain, GroupBy, UsageRow, regroup};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::extract::{Params, agreement_id, month_range, only, params, readable};
use crate::page::{Page, PageParams, Paging, number_key};
use crate::problem::{Problem, ProblemDetails};

/// An agreement's usage over a range of months.
#[derive(Serialize, ToSchema)]
pub struct UsageSummary {
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
    /// The agreement's currency: the revenue's.
    #[schema(example = "USD")]
    pub currency: String,
    #[schema(example = "2026-01")]
    pub from: String,
    #[schema(example = "2026-12")]
    pub to: String,
    /// `day` or `month`.
    #[schema(example = "day")]
    pub interval: String,
    /// The names the items are told apart by.
    pub group_by: Vec<String>,
    /// One per day (or month) with usage, and per combination of the `group_by` names, in order.
    pub items: Vec<UsageItem>,
}

/// Usage on one day or in one month. Counts are decimal strings: they may pass 2^53.
#[derive(Serialize, ToSchema)]
pub struct UsageItem {
    /// `YYYY-MM-DD` (UTC) or `YYYY-MM`.
    #[schema(example = "2026-10-03")]
    pub date: String,
    /// Present when grouped by model.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "m-70b")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "search")]
    pub use_case: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "eu")]
    pub region: Option<String>,
    /// Distinct records.
    #[schema(example = 1250)]
    pub records: u64,
    #[schema(example = "125000")]
    pub requests: String,
    #[schema(example = "9800000")]
    pub input_tokens: String,
    #[schema(example = "2100000")]
    pub output_tokens: String,
    /// The revenue the host reported, exact.
    #[schema(example = "1520.75")]
    pub revenue: String,
}

impl UsageItem {
    fn of(row: UsageRow, by: GroupBy) -> UsageItem {
        let kept = |name: String, kept: bool| kept.then_some(name);
        let revenue = row.revenue_text();
        UsageItem {
            records: row.records,
            requests: row.requests.to_string(),
            input_tokens: row.input_tokens.to_string(),
            output_tokens: row.output_tokens.to_string(),
            revenue,
            model: kept(row.model, by.model),
            use_case: kept(row.use_case, by.use_case),
            region: kept(row.region, by.region),
            date: row.date,
        }
    }
}

const TAKES: [&str; 5] = ["agreement", "from", "to", "interval", "group_by"];
const COLUMNS: [&str; 9] = ["date", "model", "use_case", "region", "records", "requests", "input_tokens", "output_tokens", "revenue"];

/// The names `group_by` lists.
fn group_by(text: Option<&String>) -> Result<GroupBy, Problem> {
    let mut by = GroupBy::default();
    for name in text.map(String::as_str).unwrap_or_default().split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "model" => by.model = true,
            "use_case" => by.use_case = true,
            "region" => by.region = true,
            other => {
                return Err(Problem::bad_request(format!(
                    "`group_by` names `{}`; it takes `model`, `use_case` and `region`, comma-separated",
                    revshare_core::text::printable(other, 40)
                )));
            }
        }
    }
    Ok(by)
}

/// An agreement's usage so far, per day or month, in total or by model, use case and region.
#[utoipa::path(
    get,
    path = "/usage/summary",
    tag = "usage",
    params(
        ("agreement" = String, Query, description = "the agreement", example = "meridian-northwind"),
        ("from" = Option<String>, Query, description = "the first month (`YYYY-MM`); by default the month before `to`", example = "2026-01"),
        ("to" = Option<String>, Query, description = "the last month (`YYYY-MM`), at most 12 months after `from`; by default this month", example = "2026-12"),
        ("interval" = Option<String>, Query, description = "`day` (the default) or `month`", example = "day"),
        ("group_by" = Option<String>, Query, description = "the names to tell usage apart by, comma-separated: `model`, `use_case`, `region`; by default none", example = "model,region")
    ),
    responses(
        (status = 200, description = "the usage, from the rollups kept at ingest, the open month included; CSV with `Accept: text/csv`", content((UsageSummary = "application/json"), (String = "text/csv"))),
        (status = 400, description = "invalid or unknown parameters", body = crate::problem::ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = crate::problem::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement that this token can read", body = crate::problem::ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = crate::problem::ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn summary(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    query: Params,
) -> Result<Response, Problem> {
    let params = params(query)?;
    only(&params, &TAKES)?;
    let id = agreement_id(params.get("agreement").ok_or_else(|| Problem::bad_request("the query needs `agreement`"))?)?;
    let by = group_by(params.get("group_by"))?;
    let interval = params.get("interval").map_or("day", String::as_str).to_owned();
    let grain = match (interval.as_str(), by == GroupBy::default()) {
        ("day", true) => Grain::DayTotal,
        ("day", false) => Grain::Day,
        ("month", _) => Grain::Month,
        (other, _) => {
            return Err(Problem::bad_request(format!(
                "`interval` is `day` or `month`, not `{}`",
                revshare_core::text::printable(other, 40)
            )));
        }
    };
    let summary = state
        .run(move |store, shared| {
            let terms = readable(store, &caller, &id)?;
            let (from, to) = month_range(&params, Period::of(shared.now()))?;
            let rows = store.usage(&id, from, to, grain)?;
            let rows = regroup(rows, by).map_err(|e| Problem::internal("usage sums overflow", &e))?;
            let names = [("model", by.model), ("use_case", by.use_case), ("region", by.region)];
            Ok(UsageSummary {
                agreement: id.to_string(),
                currency: terms.currency().to_string(),
                from: from.to_string(),
                to: to.to_string(),
                interval,
                group_by: names.iter().filter(|(_, kept)| *kept).map(|(name, _)| (*name).to_owned()).collect(),
                items: rows.into_iter().map(|row| UsageItem::of(row, by)).collect(),
            })
        })
        .await?;
    crate::csv_answer::json_or_rows(&headers, &summary, &COLUMNS, &summary.items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_by_names_model_use_case_and_region_only() {
        let by = |text: &str| group_by(Some(&text.to_owned())).map_err(|p| p.detail);
        assert_eq!(by("model, region"), Ok(GroupBy { model: true, use_case: false, region: true }));
        assert_eq!(by(""), Ok(GroupBy::default()));
        assert_eq!(group_by(None).map_err(|p| p.detail), Ok(GroupBy::default()));
        assert!(by("model,customer").is_err_and(|e| e.contains("`customer`") && e.contains("`use_case`")));
    }
}

/// A usage batch a host sent and the store kept.
#[derive(Serialize, ToSchema)]
pub struct BatchView {
    /// Its leaf in the log.
    #[schema(example = 3)]
    pub leaf: u64,
    /// The batch digest (over its records' salted commitments).
    pub digest: String,
    /// Its distinct records.
    #[schema(example = 50000)]
    pub records: u64,
    /// The host key that signed it, for a signed batch.
    pub signed_by: Option<String>,
    /// Where its receipt is: `/v1/usage/batches/{leaf}`.
    pub receipt: String,
}

fn only_hosts(caller: &Caller) -> Result<(), Problem> {
    caller.require(revshare_store::Role::Host, "list usage batches: a batch and its receipt are the host's that sent it")
}

/// The caller's usage batches that stored records, by leaf (oldest first).
#[utoipa::path(
    get,
    path = "/usage/batches",
    tag = "usage",
    params(PageParams),
    responses(
        (status = 200, description = "a page of the host's batches; the next page in `Link`", body = Page<BatchView>),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not a host's token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_batches(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    query: Params,
) -> Result<Response, Problem> {
    only_hosts(&caller)?;
    let (_, paging) = Paging::read(query, &[])?;
    let after = paging.after_number()?;
    let page = state
        .run(move |store, _| {
            let limit = u32::try_from(paging.limit() + 1).unwrap_or(u32::MAX);
            let mut items = Vec::new();
            for leaf in store.host_batches(&caller.party, after, limit)? {
                let batch = store.usage_batch(leaf)?;
                let event = store.log_leaf(leaf)?.event;
                let signed_by = read_event(&event).and_then(|(_, v)| v.pointer("/signed/key").and_then(|k| k.as_str()).map(str::to_owned));
                items.push(BatchView {
                    leaf,
                    digest: batch.digest,
                    records: batch.commitments.len() as u64,
                    signed_by,
                    receipt: format!("/v1/usage/batches/{leaf}"),
                });
            }
            Ok(paging.page_read(items, |b: &BatchView| number_key(b.leaf)))
        })
        .await?;
    crate::page::answer(&headers, &uri, &page, &["leaf", "digest", "records", "signed_by", "receipt"])
}

/// One of the caller's usage batches: its receipt, signed under a fresh checkpoint, as the
/// answer to its `POST /v1/usage` gave it (the record-salt key too: the host's own).
#[utoipa::path(
    get,
    path = "/usage/batches/{leaf}",
    tag = "usage",
    params(("leaf" = u64, Path, description = "the batch's leaf")),
    responses(
        (status = 200, description = "the batch's receipt", body = crate::schemas::ReceiptSchema),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not a host's token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no batch of the caller's at that leaf", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_batch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(leaf): Path<u64>,
) -> Result<Json<serde_json::Value>, Problem> {
    only_hosts(&caller)?;
    let receipt = state
        .run(move |store, shared| {
            let size = store.log_size()?;
            let own = leaf < size && store.batch_parties(leaf)?.iter().any(|(host, _)| host == caller.party.as_str());
            if !own {
                return Err(Problem::not_found(format!("there is no usage batch of {} at leaf {leaf}", caller.party)));
            }
            let stored = store.usage_batch(leaf)?;
            let batch =
                LoggedBatch { leaf, digest: stored.digest, records: stored.commitments.len() as u64, record_key: stored.record_key };
            let checkpoint = receipts::sign_checkpoint(store, shared.key(), shared.now())?;
            Ok(receipts::receipt_under(store, shared.key(), &checkpoint, &batch)?)
        })
        .await?;
    Ok(Json(receipt))
}
