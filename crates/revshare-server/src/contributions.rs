//! Contributions over HTTP (SPEC §5, §9): a party records its own contributions to an agreement
//! (maintenance, updates, improvements), the other party accepts them, and both read them.
//!
//! The contribution is the SPEC §5 object, read by the core's own reader
//! (`parse_contribution_line`), so a contribution sent here and one in a file are held to one
//! set of rules; its `party` must be the token's, and it is recorded not accepted: only the
//! other party accepts it, and it counts from then on. Recording the same contribution again is a
//! no-op (the store's rule), so a client may resend.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::{Extension, Json};
use revshare_core::contribution::{Contribution, parse_contribution_line};
use revshare_core::ids::AgreementId;
use revshare_core::time::Period;
use revshare_store::Role;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::extract::{Months, Params, agreement_id, choice, json_body, readable, visible_agreements};
use crate::page::{Page, PageParams, Paging, created, key_of};
use crate::problem::{Problem, ProblemDetails, ProblemItem};

/// A contribution to record: its agreement and the SPEC §5 object (`id`, `party`, `kind`,
/// `date`, `description`, optional `evidence`; `accepted` false or left out).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContributionBody {
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
    #[schema(value_type = Object, example = json!({"id": "c-7", "party": "northwind", "kind": "maintenance", "date": "2026-10-12", "description": "patched the tokenizer"}))]
    pub contribution: Value,
}

/// A contribution to accept, by its agreement and id.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptanceBody {
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
    #[schema(example = "c-7")]
    pub id: String,
}

/// A contribution (SPEC §5) and its agreement.
#[derive(Serialize, ToSchema)]
pub struct ContributionView {
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
    #[schema(example = "c-7")]
    pub id: String,
    /// The party that made it: the licensor or the host.
    #[schema(example = "northwind")]
    pub party: String,
    /// One of the agreement's `[contributions]` kinds.
    #[schema(example = "maintenance")]
    pub kind: String,
    /// When it was made (RFC 3339, UTC); it counts in the month it falls in.
    #[schema(example = "2026-10-12T00:00:00Z")]
    pub date: String,
    #[schema(example = "patched the tokenizer")]
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// Whether the other party accepted it: only then does it count.
    pub accepted: bool,
}

impl ContributionView {
    fn of(agreement: &AgreementId, c: &Contribution) -> ContributionView {
        ContributionView {
            agreement: agreement.to_string(),
            id: c.id.clone(),
            party: c.party.to_string(),
            kind: c.kind.clone(),
            date: c.date.to_string(),
            description: c.description.clone(),
            evidence: c.evidence.clone(),
            accepted: c.accepted,
        }
    }

    /// Where it is read.
    fn location(&self) -> String {
        format!("/v1/contributions/{}/{}", self.agreement, self.id)
    }
}

fn only_parties(caller: &Caller, action: &str) -> Result<(), Problem> {
    if matches!(caller.role, Role::Host | Role::Licensor) {
        Ok(())
    } else {
        Err(Problem::forbidden(format!(
            "only an agreement's licensor or host may {action}; this token acts for {} {}",
            caller.role, caller.party
        )))
    }
}

/// Records the caller's own contribution to an agreement it is a party to, not yet accepted.
#[utoipa::path(
    post,
    path = "/contributions",
    tag = "contributions",
    request_body(content = ContributionBody, content_type = "application/json"),
    responses(
        (status = 201, description = "recorded and logged (or recorded before with the same content); `Location` names it", body = ContributionView,
            headers(("Location" = String, description = "the contribution: `/v1/contributions/{agreement}/{contribution}`"))),
        (status = 400, description = "a body or contribution that is not valid, each field named", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not a party of the agreement, or another party's contribution", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "the id is recorded with other content", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "another content type", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "a kind the agreement does not list, or a contribution sent as accepted", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_contribution(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, Problem> {
    only_parties(&caller, "record a contribution")?;
    let mut body: ContributionBody = json_body(&state, &headers, request_body).await?;
    let id = agreement_id(&body.agreement)?;
    // Recorded not accepted: `accepted` may be left out here (a file says it either way).
    if let Value::Object(fields) = &mut body.contribution {
        fields.entry("accepted").or_insert(Value::Bool(false));
    }
    let text = serde_json::to_vec(&body.contribution).map_err(|e| Problem::bad_request(format!("`contribution` cannot be read: {e}")))?;
    let contribution = parse_contribution_line(&text).map_err(|problems| {
        let errors = problems
            .iter()
            .map(|p| ProblemItem {
                field: p.field.clone().map(|f| format!("contribution.{f}")),
                message: p.message.clone(),
                ..ProblemItem::default()
            })
            .collect();
        Problem::bad_request(format!("{} problem(s) in `contribution`; nothing was recorded", problems.len())).with_errors(errors)
    })?;
    let recorded = state
        .write(move |store, _| {
            // The agreement first: another's is not found, as one that does not exist.
            readable(store, &caller, &id)?;
            if contribution.party != caller.party {
                let detail = format!("a party records its own contributions: `party` must be {}", caller.party);
                let item = ProblemItem { field: Some("contribution.party".to_owned()), message: detail.clone(), ..ProblemItem::default() };
                return Err(Problem::forbidden(detail).with_errors(vec![item]));
            }
            if contribution.accepted {
                return Err(Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unprocessable",
                    "the request cannot be applied",
                    "a contribution is recorded not accepted: the other party accepts it (POST /v1/contributions/acceptances)",
                ));
            }
            store.add_contribution(&id, &contribution)?;
            Ok(ContributionView::of(&id, &contribution))
        })
        .await?;
    Ok(created(&recorded.location(), Json(recorded)))
}

/// Accepts a contribution the other party of the agreement recorded: it counts from the
/// statement of the month it was made in (or the next close, as an adjustment).
#[utoipa::path(
    post,
    path = "/contributions/acceptances",
    tag = "contributions",
    request_body(content = AcceptanceBody, content_type = "application/json"),
    responses(
        (status = 200, description = "accepted and logged (or accepted before)", body = ContributionView),
        (status = 400, description = "invalid body", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "the contribution is the caller's own", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement or contribution that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "another content type", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn accept_contribution(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<ContributionView>, Problem> {
    only_parties(&caller, "accept a contribution")?;
    let body: AcceptanceBody = json_body(&state, &headers, request_body).await?;
    let id = agreement_id(&body.agreement)?;
    let accepted = state
        .write(move |store, _| {
            readable(store, &caller, &id)?;
            let found = store.contributions(&id)?.into_iter().find(|c| c.id == body.id);
            let Some(contribution) = found else {
                return Err(Problem::not_found(format!(
                    "agreement {id} has no contribution `{}`",
                    revshare_core::text::printable(&body.id, 130)
                )));
            };
            if contribution.party == caller.party {
                return Err(Problem::forbidden(format!(
                    "contribution `{}` is {}'s own: the other party of the agreement accepts it",
                    contribution.id, caller.party
                )));
            }
            let accepted = Contribution { accepted: true, ..contribution };
            store.add_contribution(&id, &accepted)?;
            Ok(ContributionView::of(&id, &accepted))
        })
        .await?;
    Ok(Json(accepted))
}

/// The contributions of the agreements this token may read, by agreement and id, accepted or
/// not; filtered by agreement, the month they were made in and state.
#[utoipa::path(
    get,
    path = "/contributions",
    tag = "contributions",
    params(
        PageParams,
        ("agreement" = Option<String>, Query, description = "only this agreement's"),
        ("from" = Option<String>, Query, description = "only those made in months from this one (`YYYY-MM`)"),
        ("to" = Option<String>, Query, description = "only those made in months up to this one (`YYYY-MM`)"),
        ("state" = Option<String>, Query, description = "only `recorded` (not yet accepted) or only `accepted` ones"),
    ),
    responses(
        (status = 200, description = "a page of the contributions; as CSV with `Accept: text/csv`; the next page in `Link`", content((Page<ContributionView> = "application/json"), (String = "text/csv"))),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_contributions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    query: Params,
) -> Result<Response, Problem> {
    let (params, paging) = Paging::read(query, &["agreement", "from", "to", "state"])?;
    let months = Months::of(&params)?;
    let accepted = choice(&params, "state", &["recorded", "accepted"])?.map(|s| s == "accepted");
    let agreement = params.get("agreement").map(|a| agreement_id(a)).transpose()?;
    let page = state
        .run(move |store, _| {
            let mut items = Vec::new();
            for id in visible_agreements(store, &caller, agreement.as_ref())? {
                let kept = store
                    .contributions(&id)?
                    .into_iter()
                    .filter(|c| accepted.is_none_or(|a| c.accepted == a) && months.contains(Period::of(c.date)))
                    .map(|c| ContributionView::of(&id, &c));
                items.extend(kept);
            }
            Ok(paging.page(items, |c: &ContributionView| key_of(&[&c.agreement, &c.id])))
        })
        .await?;
    let columns = ["agreement", "id", "party", "kind", "date", "description", "evidence", "accepted"];
    crate::page::answer(&headers, &uri, &page, &columns)
}

/// One contribution.
#[utoipa::path(
    get,
    path = "/contributions/{agreement}/{contribution}",
    tag = "contributions",
    params(("agreement" = String, Path, description = "the agreement"), ("contribution" = String, Path, description = "the contribution's id")),
    responses(
        (status = 200, description = "the contribution", body = ContributionView),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement or contribution that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_contribution(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((agreement, contribution)): Path<(String, String)>,
) -> Result<Json<ContributionView>, Problem> {
    let id = agreement_id(&agreement)?;
    let view = state
        .run(move |store, _| {
            readable(store, &caller, &id)?;
            let found = store.contributions(&id)?.into_iter().find(|c| c.id == contribution);
            found.map(|c| ContributionView::of(&id, &c)).ok_or_else(|| {
                Problem::not_found(format!("agreement {id} has no contribution `{}`", revshare_core::text::printable(&contribution, 130)))
            })
        })
        .await?;
    Ok(Json(view))
}
