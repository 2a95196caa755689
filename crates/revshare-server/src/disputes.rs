//! Disputes over HTTP (SPEC §8), as `revshare dispute` moves them: the same core rules
//! (`revshare_core::dispute`) through the same store calls (`Store::open_dispute`,
//! `dispute_transition`, `escalate_disputes`).
//!
//! Who may do what: the token's party acts in its role. The licensor and the host of the
//! disputed statement's agreement open disputes and answer them (the core decides which side
//! answers what); an arbiter decides escalated disputes; an auditor reads and does not act. A
//! dispute is read by whoever may read its agreement; for anyone else it is not found, exactly as
//! one that does not exist. Every answer shows the process as it stands: a read shows the
//! escalations whose deadlines have passed as applied (`StoredDispute::effective`) without
//! writing them; a move applies them first (`escalate_disputes`), and `serve`'s scheduled pass logs
//! them.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, Uri, header};
use axum::response::Response;
use axum::{Extension, Json};
use revshare_core::dispute::{Actor, ActorRole, Request, State as DisputeState};
use revshare_store::{Role, Store, StoreError, StoredDispute};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{Caller, may_read};
use crate::extract::{Months, Params, agreement_id, choice, json_body, party_id, period_of, readable};
use crate::page::{Page, PageParams, Paging, number_key};
use crate::problem::{Problem, ProblemDetails};
use revshare_core::ids::AgreementId;
use revshare_core::time::Period;

/// One step of a dispute.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TransitionView {
    /// `open`, `countered`, `accepted`, `rejected`, `escalated` or `decided`.
    #[schema(example = "countered")]
    pub state: String,
    #[schema(example = "meridian")]
    pub party: String,
    /// `licensor`, `host`, `arbiter`, or `deployment` for an escalation when a deadline passed.
    #[schema(example = "licensor")]
    pub role: String,
    #[schema(example = "2026-11-04T09:30:00Z")]
    pub at: String,
    pub reason: String,
    /// The claim when opened, the offer when countered, the amount accepted or decided.
    #[schema(example = "40.00")]
    pub amount: Option<String>,
    /// Links or digests.
    pub evidence: Vec<String>,
    /// On an escalation by a side: the arbiter that side accepts for the dispute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "arbitra")]
    pub arbiter: Option<String>,
}

/// The statement line that carries a dispute's adjustment.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CarriedBy {
    /// The month of the original statement that carries it.
    #[schema(example = "2026-11")]
    pub period: String,
    pub sequence: u32,
    /// Its index in that statement's `adjustments`.
    pub line: usize,
}

/// A dispute of a finalised statement (or one of its lines) and its history.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct DisputeView {
    pub id: u64,
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
    #[schema(example = "2026-10")]
    pub period: String,
    /// Which statement of the month (1 is the original).
    pub sequence: u32,
    pub statement_digest: String,
    /// The disputed line's index in the statement's `lines`; none for the whole statement.
    pub line: Option<u32>,
    #[schema(example = "USD")]
    pub currency: String,
    /// `licensor` or `host`.
    pub opened_by: String,
    #[schema(example = "100.00")]
    pub claimed: String,
    #[schema(example = "open")]
    pub state: String,
    /// Until when the last step may be answered (or a rejection escalated).
    pub respond_by: Option<String>,
    /// Once accepted or decided: what it changes in what the host owes (negative: credited to
    /// the host), carried as an adjustment line of the next statement closed.
    pub adjustment: Option<String>,
    /// The arbiter both sides named for this dispute, if they did; it decides the dispute beside
    /// the arbiters the agreement names.
    pub arbiter: Option<String>,
    /// Where its adjustment went, once a statement carries it.
    pub carried_by: Option<CarriedBy>,
    pub history: Vec<TransitionView>,
}

impl DisputeView {
    /// The core's JSON view, typed: one mapping for the CLI and the API.
    fn of(stored: &StoredDispute) -> Result<DisputeView, Problem> {
        serde_json::from_value(stored.to_json()).map_err(|e| Problem::internal("a dispute view cannot be built", &e))
    }
}

/// A dispute to open.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenDispute {
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
    #[schema(example = "2026-10")]
    pub period: String,
    /// Which statement of the month; default the latest.
    pub sequence: Option<u32>,
    /// One line of it, by index from 0; default the whole statement.
    pub line: Option<u32>,
    /// The amount claimed, in the agreement's currency, with at most its decimal places.
    #[schema(example = "100.00")]
    pub amount: String,
    pub reason: String,
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// What to do with a dispute.
#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The other side takes the amount on the table (the claim, or the counter-offer).
    Accept,
    Reject,
    /// The answering side offers less than claimed (`amount`).
    Counter,
    /// Either side takes a rejected dispute to an arbiter; either side names the arbiter it
    /// accepts for the dispute (`arbiter`), when escalating or once escalated.
    Escalate,
    /// An arbiter decides an escalated dispute (`amount`, from 0 to the claim).
    Decide,
}

/// A step asked for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveDispute {
    pub action: Action,
    pub reason: String,
    /// For `counter` and `decide`, in the agreement's currency.
    #[schema(example = "40.00")]
    pub amount: Option<String>,
    #[serde(default)]
    pub evidence: Vec<String>,
    /// For `escalate`: the arbiter this side accepts for the dispute. Once both sides name the
    /// same one, it reads and decides the dispute beside the arbiters the agreement names.
    #[schema(example = "arbitra")]
    pub arbiter: Option<String>,
}

fn dispute_id(text: &str) -> Result<u64, Problem> {
    text.parse().map_err(|_| Problem::bad_request(format!("`{text}` is not a dispute id; dispute ids are whole numbers from 1")))
}

/// The capacity the caller acts in, or 403 for an auditor.
fn actor(caller: &Caller) -> Result<Actor, Problem> {
    let role = caller.role.dispute_role().ok_or_else(|| {
        Problem::forbidden(format!("{} is an {}: auditors read disputes and do not act on them", caller.party, caller.role))
    })?;
    Ok(Actor { party: caller.party.to_string(), role })
}

/// A dispute this caller may read, as it stands at `now` (an escalation due is shown, not
/// written: reads never write; the writer logs it). For a party of its agreement, or an auditor,
/// who may read it is decided from the agreement's parties, read alone, so that another's dispute
/// takes the work of one that does not exist; an arbiter's reading depends on the dispute's
/// history, which is read whole.
fn readable_dispute(store: &mut dyn Store, caller: &Caller, id: u64, now: revshare_core::time::Instant) -> Result<StoredDispute, Problem> {
    let not_found = || Problem::not_found(format!("there is no dispute {id} that this token can read"));
    if caller.role != Role::Arbiter {
        match store.dispute_parties(id)? {
            Some((agreement, licensor, host)) if may_read(caller, &agreement, &licensor, &host) => {}
            _ => return Err(not_found()),
        }
    }
    match store.dispute(id)?.map(|stored| stored.effective(now)) {
        Some(stored) if may_read_dispute(caller, &stored) => Ok(stored),
        _ => Err(not_found()),
    }
}

/// Whether a caller may read a dispute, as it stands (SPEC §9): whoever may read its agreement,
/// and, once the dispute has been escalated, an arbiter who decides it (one the agreement names,
/// or the one both sides named for it). An arbiter only one side named does not.
pub(crate) fn may_read_dispute(caller: &Caller, stored: &StoredDispute) -> bool {
    let terms = &stored.terms;
    may_read(caller, &stored.dispute.subject.agreement, &terms.licensor, &terms.host)
        || (caller.role == Role::Arbiter
            && stored.dispute.may_decide(terms, caller.party.as_str())
            && stored.dispute.history.iter().any(|step| step.state == DisputeState::Escalated))
}

/// Opens a dispute of a finalised statement, as `revshare dispute open` does: the agreement's
/// licensor or host, within its dispute window.
#[utoipa::path(
    post,
    path = "/disputes",
    tag = "disputes",
    request_body(content = OpenDispute, content_type = "application/json"),
    responses((status = 415, description = "the body is not sent as application/json", body = ProblemDetails, content_type = "application/problem+json"), 
        (status = 201, description = "opened and logged", body = DisputeView,
            headers(("Location" = String, description = "the dispute: `/v1/disputes/{id}`"))),
        (status = 400, description = "a body that is not valid", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "an auditor or arbiter token, which do not open disputes", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement or statement that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "the window closed, no such line, or an amount, reason or evidence that is not valid", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn open_dispute(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<(StatusCode, [(HeaderName, String); 1], Json<DisputeView>), Problem> {
    let body: OpenDispute = json_body(&state, &headers, request_body).await?;
    let id = agreement_id(&body.agreement)?;
    let period = period_of(&body.period)?;
    let actor = actor(&caller)?;
    if actor.role == ActorRole::Arbiter {
        return Err(Problem::forbidden(format!("{} is an arbiter: arbiters decide escalated disputes and do not open them", caller.party)));
    }
    let view = state
        .write(move |store, shared| {
            let currency = readable(store, &caller, &id)?.currency();
            let request = Request {
                state: DisputeState::Open,
                actor,
                reason: body.reason,
                amount: Some(body.amount),
                evidence: body.evidence,
                arbiter: None,
            };
            let opening = request.transition(shared.now(), currency, None).map_err(StoreError::from)?;
            DisputeView::of(&store.open_dispute(&id, period, body.sequence, body.line, opening)?)
        })
        .await?;
    tracing::info!(dispute = view.id, agreement = %view.agreement, period = %view.period, "dispute opened");
    Ok((StatusCode::CREATED, [(header::LOCATION, format!("/v1/disputes/{}", view.id))], Json(view)))
}

/// Answers, escalates or decides a dispute, as `revshare dispute accept|reject|counter|escalate|decide` do.
#[utoipa::path(
    post,
    path = "/disputes/{id}/transitions",
    tag = "disputes",
    params(("id" = u64, Path, description = "the dispute id")),
    request_body(content = MoveDispute, content_type = "application/json"),
    responses((status = 415, description = "the body is not sent as application/json", body = ProblemDetails, content_type = "application/problem+json"), 
        (status = 200, description = "the step is recorded and logged", body = DisputeView),
        (status = 400, description = "a body that is not valid", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not the side (or an arbiter) that takes this step", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such dispute that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "the dispute's state does not allow the step, or its deadline passed", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "an amount, reason or evidence that is not valid", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn move_dispute(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<DisputeView>, Problem> {
    let id = dispute_id(&id)?;
    let body: MoveDispute = json_body(&state, &headers, request_body).await?;
    let actor = actor(&caller)?;
    let arbiter = body.arbiter.as_deref().map(|a| party_id(a, "arbiter")).transpose()?;
    let to = match body.action {
        Action::Accept => DisputeState::Accepted,
        Action::Reject => DisputeState::Rejected,
        Action::Counter => DisputeState::Countered,
        Action::Escalate => DisputeState::Escalated,
        Action::Decide => DisputeState::Decided,
    };
    let view = state
        .write(move |store, shared| {
            let now = shared.now();
            let stored = readable_dispute(store, &caller, id, now)?;
            let request = Request { state: to, actor, reason: body.reason, amount: body.amount, evidence: body.evidence, arbiter };
            let transition = request.transition(now, stored.terms.currency, Some(&stored.dispute)).map_err(StoreError::from)?;
            DisputeView::of(&store.dispute_transition(id, transition)?)
        })
        .await?;
    tracing::info!(dispute = view.id, state = %view.state, "dispute moved");
    Ok(Json(view))
}

/// The disputes this token may read, by number; filtered by agreement, the disputed statement's
/// month and state.
#[utoipa::path(
    get,
    path = "/disputes",
    tag = "disputes",
    params(
        PageParams,
        ("agreement" = Option<String>, Query, description = "only this agreement's disputes"),
        ("from" = Option<String>, Query, description = "only disputes of statements of months from this one (`YYYY-MM`)"),
        ("to" = Option<String>, Query, description = "only disputes of statements of months up to this one (`YYYY-MM`)"),
        ("state" = Option<String>, Query, description = "only disputes in this state: `open`, `countered`, `accepted`, `rejected`, `escalated` or `decided`"),
    ),
    responses(
        (status = 200, description = "a page of the disputes; one row each as CSV with `Accept: text/csv`; the next page in `Link`", content((Page<DisputeView> = "application/json"), (String = "text/csv"))),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_disputes(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    query: Params,
) -> Result<Response, Problem> {
    let (params, paging) = Paging::read(query, &["agreement", "from", "to", "state"])?;
    let months = Months::of(&params)?;
    let states: Vec<&str> = DisputeState::ALL.iter().map(DisputeState::as_str).collect();
    let wanted = choice(&params, "state", &states)?.map(str::to_owned);
    let agreement = params.get("agreement").map(|a| agreement_id(a)).transpose()?;
    let views = disputes_of(&state, caller, agreement).await?;
    let kept = views
        .into_iter()
        .filter(|d| wanted.as_deref().is_none_or(|s| d.state == s))
        .filter(|d| Period::parse(&d.period).is_ok_and(|p| months.contains(p)))
        .collect();
    let page = paging.page(kept, |d: &DisputeView| number_key(d.id));
    let columns = [
        "id",
        "agreement",
        "period",
        "sequence",
        "line",
        "opened_by",
        "state",
        "respond_by",
        "currency",
        "claimed",
        "adjustment",
        "arbiter",
    ];
    crate::page::answer(&headers, &uri, &page, &columns)
}

/// The disputes `caller` may read (of one agreement, with `agreement`).
pub(crate) async fn disputes_of(state: &AppState, caller: Caller, agreement: Option<AgreementId>) -> Result<Vec<DisputeView>, Problem> {
    state
        .run(move |store, shared| {
            if let Some(id) = &agreement {
                readable(store, &caller, id)?;
            }
            let now = shared.now();
            store
                .disputes(agreement.as_ref())?
                .into_iter()
                .map(|d| d.effective(now))
                .filter(|d| may_read_dispute(&caller, d))
                .map(|d| DisputeView::of(&d))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
}

/// One dispute and its history.
#[utoipa::path(
    get,
    path = "/disputes/{id}",
    tag = "disputes",
    params(("id" = u64, Path, description = "the dispute id")),
    responses(
        (status = 200, description = "the dispute; its history, a row a step, as CSV with `Accept: text/csv`", content((DisputeView = "application/json"), (String = "text/csv"))),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such dispute that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_dispute(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let view = dispute_of(&state, caller, &id).await?;
    let history: Vec<serde_json::Value> = view
        .history
        .iter()
        .map(|step| {
            serde_json::to_value(step).map(|mut row| {
                row["currency"] = serde_json::Value::from(view.currency.as_str());
                row
            })
        })
        .collect::<Result<_, _>>()
        .map_err(|e| Problem::internal("a dispute's history cannot be written", &e))?;
    let columns = ["at", "state", "party", "role", "arbiter", "amount", "currency", "reason", "evidence"];
    crate::csv_answer::json_or_rows(&headers, &view, &columns, &history)
}

/// The dispute `id` names, as `caller` may read it.
pub(crate) async fn dispute_of(state: &AppState, caller: Caller, id: &str) -> Result<DisputeView, Problem> {
    let id = dispute_id(id)?;
    state.run(move |store, shared| DisputeView::of(&readable_dispute(store, &caller, id, shared.now())?)).await
}
