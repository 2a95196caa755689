//! Webhooks: a party subscribes endpoints to events, and `serve` delivers them, signed, at least
//! once, from a durable outbox (`revshare_store::webhooks`).
//!
//! Where events come from: the log. Every change a party can be told about (a statement
//! finalised, a dispute's step, a payment in the journal, a contribution recorded or accepted, an
//! agreement version) writes a leaf in its own transaction, so an event cannot be lost between a
//! change and its notification. Each endpoint remembers the first leaf it has not looked at; the
//! delivery pass ([`passes`], every [`WebhookConfig::pass_every`]) turns the leaves after it
//! into deliveries for the endpoint's party — only those the party may read by the log's own rule
//! (`may_read_leaf`), so a webhook tells a party nothing `GET /v1/log/inclusion` would not —
//! and queues them with the endpoint's new position in one transaction. Every
//! [`STATE_EVERY_PASSES`]th pass also offers the events of the state of things, which no leaf
//! marks: a payment its payer recorded and its payee has not confirmed (`payment.recorded`), a
//! dispute whose next answer is due within a day (`dispute.deadline_near`, once per step), the
//! open month's preview reaching an endpoint's threshold (`preview.threshold_crossed`, once a
//! month per agreement and threshold; each preview computed once a pass), each
//! under an id of its own, so finding it again queues nothing. Then it sends what is
//! due: a 2xx answer delivers; anything else is tried again after `retry_base × 4^(n−1)` (capped
//! at six hours), [`MAX_ATTEMPTS`] times in all. A restart loses nothing: the deliveries and the
//! positions are rows.
//!
//! Each delivery is `POST url` with the event as JSON (`{"id", "type", "created", "data"}`) and
//! `Revshare-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the
//! endpoint's secret>`, as Stripe signs; the receiver checks it and that `t` is recent, and
//! deduplicates by the event id, which is the same on every attempt and for every endpoint.
//!
//! Targets: `http://` URLs on the hosts the deployment allowed (`revshare serve --webhook-allow
//! HOST[:PORT]`, or `loopback` for any loopback address); nothing else, by default nothing at all,
//! so a token cannot make the server call into the network behind it, nor into the services of
//! its own machine unless the operator says so. This build sends plain HTTP (no TLS client): a
//! deployment delivers to the world through an egress proxy it allows.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::{Extension, Json};
use base64::Engine as _;
use hmac::{KeyInit as _, Mac as _};
use revshare_core::ids::PartyId;
use revshare_core::time::{Instant, Period};
use revshare_core::transparency::read_event;
use revshare_store::{Attempt, NewDelivery, NewEndpoint, Role, Store, WebhookDelivery, WebhookEndpoint};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::auth::{Caller, may_read_leaf};
use crate::extract::{Params, json_body};
use crate::page::{Page, PageParams, Paging, created, key_of, number_key};
use crate::problem::{Problem, ProblemDetails};
use crate::{AppState, Shared};

/// The events an endpoint may subscribe to, and when each is sent.
pub const EVENT_TYPES: [(&str, &str); 12] = [
    ("statement.closed", "a month's statement (an original or a restatement) is finalised and logged"),
    ("dispute.opened", "a dispute of a statement or a line is opened"),
    ("dispute.answered", "a dispute is countered, accepted or rejected"),
    ("dispute.escalated", "a dispute goes to an arbiter (by a side, or when a deadline passes)"),
    ("dispute.decided", "an arbiter decides a dispute"),
    ("dispute.deadline_near", "a dispute's next answer is due within a day"),
    ("payment.recorded", "a payer recorded a payment its payee has not confirmed yet"),
    ("payment.confirmed", "a payment is in the journal: its payee confirmed it, or recorded it"),
    ("contribution.recorded", "a party records a contribution to the agreement"),
    ("contribution.accepted", "the other party accepts a contribution"),
    ("agreement.registered", "a version of an agreement is registered"),
    (
        "preview.threshold_crossed",
        "the open month's preview reaches the endpoint's `preview_threshold` of net payable; once a month per agreement",
    ),
];

/// Attempts in all before a delivery is given up.
pub const MAX_ATTEMPTS: u32 = 12;
/// The longest wait between attempts.
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(6 * 3600);
/// How long a receiver may take to answer.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How close a dispute's deadline is when `dispute.deadline_near` is sent.
const DEADLINE_NEAR_SECS: i64 = 24 * 3600;
/// Every how many passes the state of things is looked at (payments waiting, deadlines near).
const STATE_EVERY_PASSES: u32 = 4;
/// Leaves looked at per endpoint and pass.
const LEAVES_PER_PASS: u64 = 1000;
/// Deliveries sent per pass.
const DELIVERIES_PER_PASS: u32 = 64;

/// Where deliveries may go and how often they are tried.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Hosts (`host` or `host:port`) endpoints may name; `loopback` allows every loopback
    /// address. None by default.
    pub allowed_hosts: Vec<String>,
    /// The wait after a first failed attempt; each later one waits four times longer.
    pub retry_base: std::time::Duration,
    /// How often the delivery pass runs.
    pub pass_every: std::time::Duration,
}

impl Default for WebhookConfig {
    fn default() -> WebhookConfig {
        WebhookConfig {
            allowed_hosts: Vec::new(),
            retry_base: std::time::Duration::from_secs(1),
            pass_every: std::time::Duration::from_millis(250),
        }
    }
}

/// An endpoint to subscribe.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookEndpoint {
    /// `http://` on a host the deployment allows.
    #[schema(example = "http://127.0.0.1:9000/revshare")]
    pub url: String,
    /// Event types, from `statement.closed`, `dispute.opened`, `dispute.answered`,
    /// `dispute.escalated`, `dispute.decided`, `dispute.deadline_near`, `payment.recorded`,
    /// `payment.confirmed`, `contribution.recorded`, `contribution.accepted`,
    /// `agreement.registered`, `preview.threshold_crossed`.
    #[schema(example = json!(["statement.closed", "dispute.opened"]))]
    pub events: Vec<String>,
    /// For `preview.threshold_crossed`: the net payable (a decimal, in each agreement's currency)
    /// the open month's preview must reach.
    #[schema(example = "10000.00")]
    pub preview_threshold: Option<String>,
}

/// A subscribed endpoint.
#[derive(Serialize, ToSchema)]
pub struct WebhookEndpointView {
    #[schema(example = 1)]
    pub id: u64,
    #[schema(example = "https://billing.northwind.example/revshare")]
    pub url: String,
    #[schema(example = json!(["statement.closed", "dispute.opened"]))]
    pub events: Vec<String>,
    /// RFC 3339.
    #[schema(example = "2026-11-04T09:00:00Z")]
    pub created: String,
    /// Removed: nothing more is delivered.
    pub disabled: bool,
    pub preview_threshold: Option<String>,
    /// `whsec_…`, the key of the deliveries' signatures: only in the answer that creates the
    /// endpoint. Keep it; it is never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl WebhookEndpointView {
    fn of(endpoint: &WebhookEndpoint, with_secret: bool) -> WebhookEndpointView {
        WebhookEndpointView {
            id: endpoint.id,
            url: endpoint.url.clone(),
            events: endpoint.events.clone(),
            created: Instant::from_parts(endpoint.created_secs, 0).to_string(),
            disabled: endpoint.disabled,
            preview_threshold: endpoint.preview_threshold.clone(),
            secret: with_secret.then(|| endpoint.secret.clone()),
        }
    }
}

/// One event's delivery to an endpoint.
#[derive(Serialize, ToSchema)]
pub struct WebhookDeliveryView {
    #[schema(example = "evt_42")]
    pub event_id: String,
    #[schema(example = "statement.closed")]
    pub event_type: String,
    /// When it was queued (RFC 3339).
    pub created: String,
    pub attempts: u32,
    /// `pending` (not tried yet), `retrying`, `delivered` or `failed` (given up).
    #[schema(example = "delivered")]
    pub state: String,
    /// When it is tried next (RFC 3339).
    pub next_attempt: Option<String>,
    pub delivered: Option<String>,
    /// The receiver's last HTTP status.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl WebhookDeliveryView {
    fn of(d: &WebhookDelivery) -> WebhookDeliveryView {
        let state = match (d.delivered_secs, d.next_attempt_ms, d.attempts) {
            (Some(_), _, _) => "delivered",
            (None, None, _) => "failed",
            (None, Some(_), 0) => "pending",
            (None, Some(_), _) => "retrying",
        };
        let at_ms = |ms: i64| Instant::from_parts(ms.div_euclid(1000), 0).to_string();
        WebhookDeliveryView {
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            created: Instant::from_parts(d.created_secs, 0).to_string(),
            attempts: d.attempts,
            state: state.to_owned(),
            next_attempt: d.next_attempt_ms.filter(|_| d.delivered_secs.is_none()).map(at_ms),
            delivered: d.delivered_secs.map(|s| Instant::from_parts(s, 0).to_string()),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
        }
    }
}

/// What a receiver gets: the body of every delivery.
#[derive(Serialize, ToSchema)]
pub struct WebhookEvent {
    /// `evt_<leaf>`: the same on every attempt and for every endpoint; deduplicate by it.
    #[schema(example = "evt_42")]
    pub id: String,
    #[serde(rename = "type")]
    #[schema(example = "statement.closed")]
    pub kind: String,
    /// When it was queued (RFC 3339).
    pub created: String,
    /// The logged event (its leaf's content, as `GET /v1/log/inclusion` discloses it to the party).
    #[schema(value_type = Object)]
    pub data: Value,
}

fn only_parties(caller: &Caller) -> Result<(), Problem> {
    if caller.role == Role::Operator {
        return Err(Problem::forbidden("the operator is no party: webhooks tell a party about its own agreements"));
    }
    Ok(())
}

/// Whether `url` is a target this deployment delivers to, or why not.
fn check_target(url: &str, allowed: &[String]) -> Result<(), String> {
    let shown = revshare_core::text::printable(url, 200);
    let uri: Uri = url.parse().map_err(|e| format!("`{shown}` is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "`{shown}`: deliveries are sent over `http://` (this server has no TLS client; deliver through an egress proxy the deployment allows)"
        ));
    }
    let authority = uri.authority().ok_or_else(|| format!("`{shown}` names no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("`{shown}`: a target carries no user name or password; the signature authenticates deliveries"));
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let listed = allowed.iter().any(|a| {
        a.eq_ignore_ascii_case(authority.as_str()) || a.eq_ignore_ascii_case(host) || (loopback && a.eq_ignore_ascii_case("loopback"))
    });
    if listed {
        Ok(())
    } else {
        Err(format!(
            "`{shown}`: endpoints are on the hosts this deployment allows (the operator's `revshare serve --webhook-allow HOST[:PORT]`, or `loopback`)"
        ))
    }
}

fn secret() -> Result<String, Problem> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Problem::internal("no random secret could be made", &e))?;
    Ok(format!("whsec_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// Subscribes an endpoint of the caller's to events. The answer holds the signing secret, once.
#[utoipa::path(
    post,
    path = "/webhooks",
    tag = "webhooks",
    request_body(content = NewWebhookEndpoint, content_type = "application/json"),
    responses(
        (status = 201, description = "subscribed from now on; the secret is in this answer only", body = WebhookEndpointView,
            headers(("Location" = String, description = "the endpoint: `/v1/webhooks/{id}`"))),
        (status = 400, description = "a body that is not an endpoint, or an event type that does not exist (named)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "an operator token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "another content type", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "a target this deployment does not deliver to", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: axum::body::Body,
) -> Result<Response, Problem> {
    only_parties(&caller)?;
    let body: NewWebhookEndpoint = json_body(&state, &headers, request_body).await?;
    let known: Vec<&str> = EVENT_TYPES.iter().map(|(name, _)| *name).collect();
    if body.events.is_empty() {
        return Err(Problem::bad_request(format!("`events` is empty; name one or more of {}", known.join(", "))));
    }
    if let Some(unknown) = body.events.iter().find(|e| !known.contains(&e.as_str())) {
        return Err(Problem::bad_request(format!(
            "`events`: there is no event `{}`; the events are {}",
            revshare_core::text::printable(unknown, 60),
            known.join(", ")
        )));
    }
    let wants_threshold = body.events.iter().any(|e| e == "preview.threshold_crossed");
    match (&body.preview_threshold, wants_threshold) {
        (None, true) => {
            return Err(Problem::bad_request(
                "`preview.threshold_crossed` needs `preview_threshold`: the net payable to be told of, such as \"10000.00\"",
            ));
        }
        (Some(_), false) => {
            return Err(Problem::bad_request(
                "`preview_threshold` is for `preview.threshold_crossed`; add that event, or leave the threshold out",
            ));
        }
        (Some(text), true) => {
            revshare_core::decimal::Decimal::parse(text).map_err(|e| Problem::bad_request(format!("`preview_threshold`: {e}")))?;
        }
        (None, false) => {}
    }
    check_target(&body.url, &state.webhooks().allowed_hosts)
        .map_err(|detail| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", "the request cannot be applied", detail))?;
    let mut events = body.events;
    events.sort_unstable();
    events.dedup();
    let secret = secret()?;
    let endpoint = state
        .write(move |store, shared| {
            let new = NewEndpoint {
                party: &caller.party,
                url: &body.url,
                events: &events,
                secret: &secret,
                preview_threshold: body.preview_threshold.as_deref(),
            };
            Ok(store.add_webhook(&new, shared.now())?)
        })
        .await?;
    tracing::info!(endpoint = endpoint.id, party = %endpoint.party, "webhook endpoint subscribed");
    Ok(created(&format!("/v1/webhooks/{}", endpoint.id), Json(WebhookEndpointView::of(&endpoint, true))))
}

/// The caller's endpoints, removed ones too, by id.
#[utoipa::path(
    get,
    path = "/webhooks",
    tag = "webhooks",
    params(PageParams),
    responses(
        (status = 200, description = "a page of the caller's endpoints (without their secrets); the next page in `Link`", body = Page<WebhookEndpointView>),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_webhooks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    query: Params,
) -> Result<Response, Problem> {
    let (_, paging) = Paging::read(query, &[])?;
    let page = state
        .run(move |store, _| {
            let items = store.webhooks(Some(&caller.party))?.iter().map(|e| WebhookEndpointView::of(e, false)).collect();
            Ok(paging.page(items, |e: &WebhookEndpointView| number_key(e.id)))
        })
        .await?;
    crate::page::answer(&headers, &uri, &page, &["id", "url", "events", "created", "disabled"])
}

/// The caller's endpoint `id`, or 404 (another party's is not found either).
fn own_endpoint(store: &mut dyn Store, caller: &Caller, id: u64) -> Result<WebhookEndpoint, Problem> {
    store
        .webhooks(Some(&caller.party))?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| Problem::not_found(format!("there is no webhook endpoint {id} of this token's party")))
}

/// One of the caller's endpoints.
#[utoipa::path(
    get,
    path = "/webhooks/{id}",
    tag = "webhooks",
    params(("id" = u64, Path, description = "the endpoint")),
    responses(
        (status = 200, description = "the endpoint (without its secret)", body = WebhookEndpointView),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such endpoint of the caller's", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Result<Json<WebhookEndpointView>, Problem> {
    let endpoint = state.run(move |store, _| own_endpoint(store, &caller, id)).await?;
    Ok(Json(WebhookEndpointView::of(&endpoint, false)))
}

/// Removes one of the caller's endpoints: nothing more is queued or delivered to it; its
/// delivery log stays readable.
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    tag = "webhooks",
    params(("id" = u64, Path, description = "the endpoint")),
    responses(
        (status = 200, description = "removed (or removed before)", body = WebhookEndpointView),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such endpoint of the caller's", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete_webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Result<Json<WebhookEndpointView>, Problem> {
    let endpoint = state
        .write(move |store, _| {
            own_endpoint(store, &caller, id)?;
            store.disable_webhook(&caller.party, id)?.ok_or_else(|| Problem::not_found(format!("there is no webhook endpoint {id}")))
        })
        .await?;
    Ok(Json(WebhookEndpointView::of(&endpoint, false)))
}

/// An endpoint's delivery log, oldest first.
#[utoipa::path(
    get,
    path = "/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(
        PageParams,
        ("id" = u64, Path, description = "the endpoint"),
    ),
    responses(
        (status = 200, description = "a page of the endpoint's deliveries; the next page in `Link`", body = Page<WebhookDeliveryView>),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such endpoint of the caller's", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_deliveries(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    uri: Uri,
    query: Params,
) -> Result<Response, Problem> {
    let (_, paging) = Paging::read(query, &[])?;
    let page = state
        .run(move |store, _| {
            own_endpoint(store, &caller, id)?;
            let deliveries = store.webhook_deliveries(id)?;
            let items = deliveries.iter().map(WebhookDeliveryView::of).collect();
            Ok(paging.page(items, |d: &WebhookDeliveryView| key_of(&[&d.created, &d.event_id])))
        })
        .await?;
    let columns = ["event_id", "event_type", "created", "attempts", "state", "next_attempt", "delivered", "last_status", "last_error"];
    crate::page::answer(&headers, &uri, &page, &columns)
}

/// The webhook event a log leaf is, if any: its type and data.
fn event_of(kind: &str, mut value: Value) -> Option<(&'static str, Value)> {
    if let Some(map) = value.as_object_mut() {
        map.remove("type");
    }
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let kind = match kind {
        "statement" => "statement.closed",
        "agreement" => "agreement.registered",
        "contribution" => {
            if value.pointer("/contribution/accepted").and_then(Value::as_bool) == Some(true) {
                "contribution.accepted"
            } else {
                "contribution.recorded"
            }
        }
        "dispute" => match value.pointer("/transition/state").and_then(Value::as_str)? {
            "open" => "dispute.opened",
            "countered" | "accepted" | "rejected" => "dispute.answered",
            "escalated" => "dispute.escalated",
            "decided" => "dispute.decided",
            _ => return None,
        },
        "journal_entry" if text("kind").as_deref() == Some("payment") => {
            let reference = text("reference")?;
            let own = revshare_store::payments::own_reference(&reference).to_owned();
            return Some(("payment.confirmed", json!({ "agreement": text("agreement")?, "reference": own })));
        }
        _ => return None,
    };
    Some((kind, value))
}

/// The caller an endpoint's party is, for deciding what it may be told.
fn caller_of_party(store: &mut dyn Store, endpoint: &WebhookEndpoint) -> Result<Option<Caller>, Problem> {
    let Some(party) = store.party(&endpoint.party)? else { return Ok(None) };
    let granted = crate::auth::granted(store, &party.id, party.role)?;
    Ok(Some(Caller {
        token: format!("webhook endpoint {}", endpoint.id),
        party: party.id,
        role: party.role,
        granted: std::sync::Arc::new(granted),
    }))
}

/// What the events of the state of things are read from, once a pass for every endpoint.
struct StateOfThings {
    /// Payments waiting for their payee, with their agreement's licensor and host.
    pending: Vec<(revshare_store::payments::PendingPayment, PartyId, PartyId)>,
    /// Disputes as they stand now.
    disputes: Vec<revshare_store::StoredDispute>,
}

impl StateOfThings {
    fn read(store: &mut dyn Store, now: Instant) -> Result<StateOfThings, Problem> {
        let mut pending = Vec::new();
        for p in store.pending_payments(None)? {
            if let Some((licensor, host)) = store.agreement_parties(&p.agreement_id)? {
                pending.push((p, licensor, host));
            }
        }
        let disputes = store.disputes(None)?.into_iter().map(|d| d.effective(now)).collect();
        Ok(StateOfThings { pending, disputes })
    }

    /// The events `caller` may read that `endpoint` subscribed to: payments waiting for their
    /// payee, disputes whose next answer is due within a day.
    fn events(&self, endpoint: &WebhookEndpoint, caller: &Caller, now: Instant) -> Vec<(String, &'static str, Value)> {
        let wants = |kind: &str| endpoint.events.iter().any(|e| e == kind);
        let mut events = Vec::new();
        if wants("payment.recorded") {
            for (p, _, _) in
                self.pending.iter().filter(|(p, licensor, host)| crate::auth::may_read(caller, &p.agreement_id, licensor, host))
            {
                let data = json!({
                    "agreement": p.agreement_id.as_str(), "reference": p.reference, "from": p.from.as_str(),
                    "amount": p.currency.format(p.amount_minor), "currency": p.currency.code(),
                });
                events.push((format!("evt_payment_{}_{}", p.agreement_id, p.reference), "payment.recorded", data));
            }
        }
        if wants("dispute.deadline_near") {
            for stored in self.disputes.iter().filter(|d| crate::disputes::may_read_dispute(caller, d)) {
                let Some(by) = stored.dispute.respond_by(&stored.terms) else { continue };
                let left = by.secs() - now.secs();
                if left <= 0 || left > DEADLINE_NEAR_SECS {
                    continue;
                }
                let (id, step) = (stored.dispute.id, stored.dispute.history.len());
                let state = stored.dispute.history.last().map(|s| s.state.as_str()).unwrap_or_default();
                let data = json!({
                    "dispute": id, "agreement": stored.dispute.subject.agreement.as_str(), "state": state, "respond_by": by.to_string(),
                });
                events.push((format!("evt_dispute_{id}_{step}_deadline"), "dispute.deadline_near", data));
            }
        }
        events
    }
}

/// The delivery of an event: its body, as every attempt sends it.
fn delivery(id: String, kind: &str, data: Value, now: Instant) -> Result<NewDelivery, Problem> {
    let event = WebhookEvent { id, kind: kind.to_owned(), created: now.to_string(), data };
    let payload = serde_json::to_vec(&event).map_err(|e| Problem::internal("an event cannot be written", &e))?;
    Ok(NewDelivery { event_id: event.id, event_type: event.kind, payload })
}

/// Offers each endpoint the events of the state of things it may read.
fn offer_state(store: &mut dyn Store, shared: &Shared) -> Result<(), Problem> {
    let now = shared.now();
    let endpoints = store.webhooks(None)?;
    let of_state = ["payment.recorded", "dispute.deadline_near", "preview.threshold_crossed"];
    if !endpoints.iter().any(|e| e.events.iter().any(|kind| of_state.contains(&kind.as_str()))) {
        return Ok(());
    }
    let state = StateOfThings::read(store, now)?;
    let mut previews = Previews::default();
    for endpoint in endpoints {
        let Some(caller) = caller_of_party(store, &endpoint)? else { continue };
        let mut events = state.events(&endpoint, &caller, now);
        events.extend(previews.crossed(store, &endpoint, &caller, Period::of(now))?);
        if !events.is_empty() {
            let deliveries = events.into_iter().map(|(id, kind, data)| delivery(id, kind, data, now)).collect::<Result<Vec<_>, _>>()?;
            store.offer_webhook_deliveries(endpoint.id, &deliveries, now)?;
        }
    }
    Ok(())
}

/// The open month's previews, each computed once a pass whatever the number of endpoints.
#[derive(Default)]
struct Previews(BTreeMap<revshare_core::ids::AgreementId, Option<(revshare_core::money::Currency, i128)>>);

impl Previews {
    /// `preview.threshold_crossed` for the agreements `caller` may read whose open month's net
    /// payable reached `endpoint`'s threshold.
    fn crossed(
        &mut self,
        store: &mut dyn Store,
        endpoint: &WebhookEndpoint,
        caller: &Caller,
        period: revshare_core::time::Period,
    ) -> Result<Vec<(String, &'static str, Value)>, Problem> {
        let Some(threshold) =
            endpoint.preview_threshold.as_deref().filter(|_| endpoint.events.iter().any(|e| e == "preview.threshold_crossed"))
        else {
            return Ok(Vec::new());
        };
        let mut events = Vec::new();
        for agreement in store.agreements()?.iter().filter(|a| crate::auth::may_read_agreement(caller, a)) {
            let id = agreement.id().clone();
            if !self.0.contains_key(&id) {
                // A month the agreement does not cover, or cannot preview, has nothing to cross.
                let net = store.preview(&id, period).ok().map(|statement| (statement.currency, statement.totals.net_payable));
                self.0.insert(id.clone(), net);
            }
            let Some(Some((currency, net))) = self.0.get(&id) else { continue };
            let Ok(bound) = currency.parse_amount(threshold, "the threshold") else { continue };
            if *net >= bound {
                let data = json!({
                    "agreement": id.as_str(), "period": period.to_string(), "net_payable": currency.format(*net),
                    "threshold": currency.format(bound), "currency": currency.code(),
                });
                events.push((format!("evt_preview_{id}_{period}_{}", currency.format(bound)), "preview.threshold_crossed", data));
            }
        }
        Ok(events)
    }
}

/// Queues, for each endpoint behind the log, the events of the leaves after its position.
fn queue_new(store: &mut dyn Store, shared: &Shared) -> Result<u64, Problem> {
    let size = store.log_size()?;
    let mut queued = 0;
    for endpoint in store.webhooks(None)?.into_iter().filter(|e| e.next_leaf < size) {
        let to = size.min(endpoint.next_leaf + LEAVES_PER_PASS);
        let mut deliveries = Vec::new();
        if let Some(caller) = caller_of_party(store, &endpoint)? {
            let now = shared.now();
            for index in endpoint.next_leaf..to {
                let leaf = store.log_leaf(index)?;
                let Some((kind, value)) = read_event(&leaf.event) else { continue };
                let Some((event_type, data)) = event_of(&kind, value) else { continue };
                if !endpoint.events.iter().any(|e| e == event_type) || !may_read_leaf(store, &caller, index, &leaf.event)? {
                    continue;
                }
                deliveries.push(delivery(format!("evt_{index}"), event_type, data, now)?);
            }
        }
        queued += deliveries.len() as u64;
        store.queue_webhook_deliveries(endpoint.id, endpoint.next_leaf, to, &deliveries, shared.now())?;
    }
    Ok(queued)
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", revshare_core::canonical::hex(&mac.finalize().into_bytes()))
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The wait after `attempts` failed attempts.
fn backoff(base: std::time::Duration, attempts: u32) -> std::time::Duration {
    base.saturating_mul(4u32.saturating_pow(attempts.saturating_sub(1))).min(MAX_BACKOFF)
}

/// Sends one delivery and says how it went.
async fn send(
    client: &reqwest::Client,
    endpoint: &WebhookEndpoint,
    delivery: &WebhookDelivery,
    retry_base: std::time::Duration,
    at: Instant,
) -> Attempt {
    let now_ms = unix_ms();
    let header = signature(&endpoint.secret, now_ms.div_euclid(1000), &delivery.payload);
    let sent = client
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("revshare-signature", header)
        .header("revshare-event-id", &delivery.event_id)
        .header("revshare-event-type", &delivery.event_type)
        .body(delivery.payload.clone())
        .send()
        .await;
    let (status, error) = match sent {
        Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
        Ok(response) => (Some(response.status().as_u16()), Some(format!("the receiver answered {}", response.status()))),
        Err(e) => (None, Some(format!("the receiver could not be reached: {}", revshare_core::text::printable(&e.to_string(), 300)))),
    };
    let delivered = error.is_none();
    let attempts = delivery.attempts + 1;
    let next_attempt_ms = (!delivered && attempts < MAX_ATTEMPTS)
        .then(|| now_ms.saturating_add(i64::try_from(backoff(retry_base, attempts).as_millis()).unwrap_or(i64::MAX)));
    Attempt { at, status, error, delivered, next_attempt_ms }
}

/// Deliveries being sent to each endpoint at most at once: a receiver is not flooded.
const SENDS_PER_ENDPOINT: usize = 8;

/// Each endpoint's turns to be sent to, kept across passes.
#[derive(Default)]
struct Turns(std::sync::Mutex<BTreeMap<u64, std::sync::Arc<tokio::sync::Semaphore>>>);

impl Turns {
    fn of(&self, endpoint: u64) -> std::sync::Arc<tokio::sync::Semaphore> {
        let mut turns = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::sync::Arc::clone(turns.entry(endpoint).or_insert_with(|| std::sync::Arc::new(tokio::sync::Semaphore::new(SENDS_PER_ENDPOINT))))
    }
}

/// One delivery pass: queue what the log added, then start sending what is due. Each delivery is
/// sent and its attempt recorded by a task of its own, so a slow receiver holds up neither the
/// next pass nor another endpoint; a delivery being sent is held in the store meanwhile.
async fn pass(state: &AppState, client: &reqwest::Client, turns: &std::sync::Arc<Turns>, look_at_state: bool) -> Result<(), Problem> {
    let (endpoints, size) = state.run(|store, _| Ok((store.webhooks(None)?, store.log_size()?))).await?;
    let behind = endpoints.iter().any(|e| e.next_leaf < size);
    if look_at_state && !endpoints.is_empty() {
        state.write(offer_state).await?;
    }
    if behind {
        let queued = state.write(queue_new).await?;
        if queued > 0 {
            tracing::debug!(queued, "webhook deliveries queued");
        }
    }
    let now_ms = unix_ms();
    let hold_ms = now_ms.saturating_add(i64::try_from(SEND_TIMEOUT.as_millis() * 3).unwrap_or(i64::MAX));
    let due = state.write(move |store, _| Ok(store.take_due_deliveries(now_ms, hold_ms, DELIVERIES_PER_PASS)?)).await?;
    if due.is_empty() {
        return Ok(());
    }
    // The endpoints read above, read again only for one subscribed since.
    let mut endpoints: BTreeMap<u64, WebhookEndpoint> = endpoints.into_iter().map(|e| (e.id, e)).collect();
    if due.iter().any(|d| !endpoints.contains_key(&d.endpoint)) {
        endpoints = state.run(|store, _| Ok(store.webhooks(None)?)).await?.into_iter().map(|e| (e.id, e)).collect();
    }
    let at = state.0.now();
    let retry_base = state.webhooks().retry_base;
    for delivery in due {
        let Some(endpoint) = endpoints.get(&delivery.endpoint).cloned() else { continue };
        let (client, state, turn) = (client.clone(), state.clone(), turns.of(endpoint.id));
        tokio::spawn(async move {
            let attempt = {
                let _turn = turn.acquire_owned().await;
                send(&client, &endpoint, &delivery, retry_base, at).await
            };
            match &attempt.error {
                None => tracing::info!(endpoint = delivery.endpoint, event = %delivery.event_id, "webhook delivered"),
                Some(error) => tracing::info!(endpoint = delivery.endpoint, event = %delivery.event_id, %error, "webhook delivery failed"),
            }
            let recorded =
                state.write(move |store, _| Ok(store.record_delivery_attempt(delivery.endpoint, &delivery.event_id, &attempt)?)).await;
            if let Err(problem) = recorded {
                tracing::warn!(detail = %problem.detail, "a webhook attempt could not be recorded; it is tried again when its hold ends");
            }
        });
    }
    Ok(())
}

/// The delivery passes of `serve`, every [`WebhookConfig::pass_every`]; a failed pass is logged
/// and the next one goes on.
pub(crate) async fn passes(state: AppState) {
    let client = match reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(SEND_TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(%e, "no HTTP client for webhooks: nothing will be delivered");
            return;
        }
    };
    let mut every = tokio::time::interval(state.webhooks().pass_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let turns = std::sync::Arc::new(Turns::default());
    let mut n: u32 = 0;
    loop {
        every.tick().await;
        if let Err(problem) = pass(&state, &client, &turns, n.is_multiple_of(STATE_EVERY_PASSES)).await {
            tracing::warn!(detail = %problem.detail, "the webhook pass failed");
        }
        n = n.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_hosts_are_targets() {
        let allowed = vec!["relay.internal:8443".to_owned(), "hooks.example".to_owned(), "loopback".to_owned()];
        for ok in
            ["http://127.0.0.1:9000/x", "http://localhost/x", "http://[::1]:80/", "http://relay.internal:8443/in", "http://hooks.example/a"]
        {
            assert_eq!(check_target(ok, &allowed), Ok(()), "{ok}");
        }
        for (refused, because) in [
            ("http://10.0.0.8/x", "--webhook-allow"),
            ("http://relay.internal:9999/in", "--webhook-allow"),
            ("https://127.0.0.1/x", "http://"),
            ("http://user:pw@127.0.0.1/x", "user name"),
            ("not a url", "not a URL"),
        ] {
            let error = check_target(refused, &allowed).expect_err(refused);
            assert!(error.contains(because), "{refused}: {error}");
        }
        // By default nothing, loopback included: the machine's own services are not targets.
        assert!(check_target("http://127.0.0.1:5432/", &[]).is_err());
        assert!(check_target("http://127.0.0.1:5432/", &["hooks.example".to_owned()]).is_err());
    }

    #[test]
    fn signatures_are_stripes_scheme_over_the_timestamp_and_body() {
        // The expected value is Python's `hmac.new(secret, b"<t>.<body>", hashlib.sha256)`.
        let header = signature("whsec_test", 1_796_662_138, br#"{"id":"evt_7"}"#);
        assert_eq!(header, "t=1796662138,v1=609d00e510387fed793567f8f1aa99561cf3a5c83399048bd493595a1d8353be");
        assert_ne!(header, signature("whsec_test", 1_796_662_139, br#"{"id":"evt_7"}"#), "the timestamp is signed");
    }

    #[test]
    fn retries_back_off_fourfold_up_to_six_hours() {
        let base = std::time::Duration::from_secs(1);
        let waits: Vec<u64> = (1..=MAX_ATTEMPTS).map(|n| backoff(base, n).as_secs()).collect();
        assert_eq!(&waits[..6], &[1, 4, 16, 64, 256, 1024]);
        assert_eq!(waits.last(), Some(&(6 * 3600)));
    }

    #[test]
    fn log_leaves_become_events_by_kind_and_step() {
        let dispute = |state: &str| json!({"type": "dispute", "dispute": 1, "agreement": "a", "transition": {"state": state}});
        let kinds: Vec<Option<&str>> = ["open", "countered", "accepted", "rejected", "escalated", "decided"]
            .iter()
            .map(|s| event_of("dispute", dispute(s)).map(|(k, _)| k))
            .collect();
        assert_eq!(
            kinds,
            [
                Some("dispute.opened"),
                Some("dispute.answered"),
                Some("dispute.answered"),
                Some("dispute.answered"),
                Some("dispute.escalated"),
                Some("dispute.decided")
            ]
        );
        let payment =
            json!({"type": "journal_entry", "kind": "payment", "agreement": "a", "reference": "payment:a:wire-1", "postings": "sha256:00"});
        assert_eq!(event_of("journal_entry", payment), Some(("payment.confirmed", json!({"agreement": "a", "reference": "wire-1"}))));
        let statement_entry = json!({"type": "journal_entry", "kind": "statement", "agreement": "a", "reference": "x"});
        assert_eq!(event_of("journal_entry", statement_entry), None, "a statement's entry is told as statement.closed");
        assert_eq!(event_of("usage_batch", json!({"type": "usage_batch"})), None, "batches are answered by receipts");
        let accepted = json!({"type": "contribution", "agreement": "a", "contribution": {"accepted": true}});
        assert_eq!(event_of("contribution", accepted).map(|(k, _)| k), Some("contribution.accepted"));
    }
}
