//! Webhook endpoints and their outbox (schema 18).
//!
//! A party subscribes an endpoint (a URL) to event types. Events are read from the log, which
//! every change writes in the change's own transaction, so nothing that happened can be missed:
//! each endpoint keeps `next_leaf`, the first leaf not yet looked at, and the server's delivery
//! pass turns the leaves after it into deliveries ([`queue`]), advancing `next_leaf` in the same
//! transaction. Events of the state of things (a payment waiting for its payee, a deadline near)
//! are offered by the pass as it finds them ([`offer`]), each under an id of its own, so finding
//! one again queues nothing. A delivery is a row until it is delivered or given up: it survives a restart, and
//! is tried again from its `next_attempt_ms`. The store decides nothing about who may see an
//! event; the server does, by the rule of the log (`may_read_leaf`).

use revshare_core::ids::PartyId;
use revshare_core::time::Instant;

use crate::error::StoreError;
use crate::sql::{Columns, Param, Sql, first, rows, unsigned};

/// A subscribed endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: u64,
    pub party: PartyId,
    pub url: String,
    /// The event types it receives.
    pub events: Vec<String>,
    /// The signing secret, shown to its party once, when the endpoint is made.
    pub secret: String,
    /// When it was made (seconds since the epoch).
    pub created_secs: i64,
    /// The first log leaf not yet looked at for it.
    pub next_leaf: u64,
    /// Removed by its party: nothing more is queued or delivered.
    pub disabled: bool,
    /// The open month's net payable (a decimal, in each agreement's currency) from which
    /// `preview.threshold_crossed` is sent.
    pub preview_threshold: Option<String>,
}

/// An endpoint to subscribe.
#[derive(Clone, Copy, Debug)]
pub struct NewEndpoint<'a> {
    pub party: &'a PartyId,
    pub url: &'a str,
    pub events: &'a [String],
    /// The signing secret.
    pub secret: &'a str,
    pub preview_threshold: Option<&'a str>,
}

/// An event to deliver to an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    /// The same for every endpoint that receives the event: the receiver's key for deduplication.
    pub event_id: String,
    pub event_type: String,
    /// The body sent, byte for byte the same on every attempt.
    pub payload: Vec<u8>,
}

/// A delivery and how its attempts went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub endpoint: u64,
    pub event_id: String,
    pub event_type: String,
    pub payload: Vec<u8>,
    pub created_secs: i64,
    pub attempts: u32,
    /// When it is tried next (milliseconds since the epoch); none once delivered or given up.
    pub next_attempt_ms: Option<i64>,
    pub delivered_secs: Option<i64>,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// How one attempt went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub at: Instant,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// A 2xx answer.
    pub delivered: bool,
    /// When to try again; none when delivered or given up.
    pub next_attempt_ms: Option<i64>,
}

fn endpoint(row: &dyn Columns) -> Result<WebhookEndpoint, StoreError> {
    let id = unsigned(row.int(0)?, || "a webhook endpoint's id".to_owned())?;
    let what = || format!("webhook endpoint {id}");
    let party = row.text(1)?;
    Ok(WebhookEndpoint {
        id,
        party: PartyId::parse(&party).map_err(|e| StoreError::Corrupt { what: what(), detail: e.to_string() })?,
        url: row.text(2)?,
        events: row.text(3)?.split(' ').filter(|e| !e.is_empty()).map(str::to_owned).collect(),
        secret: row.text(4)?,
        created_secs: row.int(5)?,
        next_leaf: unsigned(row.int(6)?, what)?,
        disabled: row.flag(7)?,
        preview_threshold: row.opt_text(8)?,
    })
}

fn delivery(row: &dyn Columns) -> Result<WebhookDelivery, StoreError> {
    let endpoint = unsigned(row.int(0)?, || "a delivery's endpoint".to_owned())?;
    let event_id = row.text(1)?;
    let what = || format!("the delivery of {event_id} to webhook endpoint {endpoint}");
    Ok(WebhookDelivery {
        endpoint,
        event_type: row.text(2)?,
        payload: row.bytes(3)?,
        created_secs: row.int(4)?,
        attempts: unsigned(row.int(5)?, what)?,
        next_attempt_ms: row.opt_int(6)?,
        delivered_secs: row.opt_int(7)?,
        last_status: row.opt_int(8)?.map(|s| unsigned(s, what)).transpose()?,
        last_error: row.opt_text(9)?,
        event_id,
    })
}

fn int(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Log(format!("{n} is out of range")))
}

/// Subscribes `party`'s endpoint from the current end of the log on.
pub(crate) fn add(sql: &mut impl Sql, endpoint: &NewEndpoint<'_>, at: Instant) -> Result<WebhookEndpoint, StoreError> {
    let NewEndpoint { party, url, events, secret, preview_threshold } = *endpoint;
    let next_leaf = crate::log::size(sql)?;
    let id = first(sql, "SELECT COALESCE(MAX(id), 0) + 1 FROM webhook_endpoints", &[], |row| row.int(0))?.unwrap_or(1);
    sql.execute(
        "INSERT INTO webhook_endpoints (id, party, url, events, secret, created_secs, next_leaf, disabled, preview_threshold) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $8)",
        &[
            Param::Int(id),
            Param::Text(party.as_str()),
            Param::Text(url),
            Param::Text(&events.join(" ")),
            Param::Text(secret),
            Param::Int(at.secs()),
            Param::Int(int(next_leaf)?),
            Param::OptText(preview_threshold),
        ],
    )?;
    by_id(sql, unsigned(id, || "a new webhook endpoint's id".to_owned())?)?
        .ok_or_else(|| StoreError::Corrupt { what: "a new webhook endpoint".to_owned(), detail: "it cannot be read back".to_owned() })
}

pub(crate) fn by_id(sql: &mut impl Sql, id: u64) -> Result<Option<WebhookEndpoint>, StoreError> {
    first(
        sql,
        "SELECT id, party, url, events, secret, created_secs, next_leaf, disabled, preview_threshold FROM webhook_endpoints WHERE id = $1",
        &[Param::Int(int(id)?)],
        endpoint,
    )
}

/// `party`'s endpoints, removed ones too; every party's that is not removed without `party`.
pub(crate) fn list(sql: &mut impl Sql, party: Option<&PartyId>) -> Result<Vec<WebhookEndpoint>, StoreError> {
    match party {
        Some(party) => rows(
            sql,
            "SELECT id, party, url, events, secret, created_secs, next_leaf, disabled, preview_threshold FROM webhook_endpoints WHERE party = $1 ORDER BY id",
            &[Param::Text(party.as_str())],
            endpoint,
        ),
        None => rows(
            sql,
            "SELECT id, party, url, events, secret, created_secs, next_leaf, disabled, preview_threshold FROM webhook_endpoints WHERE NOT disabled ORDER BY id",
            &[],
            endpoint,
        ),
    }
}

/// Removes `party`'s endpoint `id`: nothing more is queued or delivered to it. `None` when the
/// party has no such endpoint.
pub(crate) fn disable(sql: &mut impl Sql, party: &PartyId, id: u64) -> Result<Option<WebhookEndpoint>, StoreError> {
    sql.execute(
        "UPDATE webhook_endpoints SET disabled = TRUE WHERE id = $1 AND party = $2",
        &[Param::Int(int(id)?), Param::Text(party.as_str())],
    )?;
    sql.execute(
        "UPDATE webhook_deliveries SET next_attempt_ms = NULL WHERE endpoint = $1 AND delivered_secs IS NULL",
        &[Param::Int(int(id)?)],
    )?;
    Ok(by_id(sql, id)?.filter(|e| &e.party == party))
}

/// Queues `deliveries` for endpoint `id`, due at once, and moves its `next_leaf` from `from` to
/// `to`; nothing when another pass moved it first (false).
pub(crate) fn queue(sql: &mut impl Sql, id: u64, from: u64, to: u64, deliveries: &[NewDelivery], at: Instant) -> Result<bool, StoreError> {
    let moved = sql.execute(
        "UPDATE webhook_endpoints SET next_leaf = $1 WHERE id = $2 AND next_leaf = $3 AND NOT disabled",
        &[Param::Int(int(to)?), Param::Int(int(id)?), Param::Int(int(from)?)],
    )?;
    if moved == 0 {
        return Ok(false);
    }
    offer(sql, id, deliveries, at)?;
    Ok(true)
}

/// Queues `deliveries` for endpoint `id`, due at once; one queued before (the same event id) is
/// left as it is.
pub(crate) fn offer(sql: &mut impl Sql, id: u64, deliveries: &[NewDelivery], at: Instant) -> Result<(), StoreError> {
    let due = at.secs().saturating_mul(1000);
    for d in deliveries {
        sql.execute(
            "INSERT INTO webhook_deliveries (endpoint, event_id, event_type, payload, created_secs, attempts, next_attempt_ms) \
             VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT (endpoint, event_id) DO NOTHING",
            &[
                Param::Int(int(id)?),
                Param::Text(&d.event_id),
                Param::Text(&d.event_type),
                Param::Bytes(&d.payload),
                Param::Int(at.secs()),
                Param::Int(due),
            ],
        )?;
    }
    Ok(())
}

/// Up to `limit` deliveries due at `now_ms`, oldest first, each put off to `hold_ms` so that no
/// other pass takes it while it is being tried.
pub(crate) fn take_due(sql: &mut impl Sql, now_ms: i64, hold_ms: i64, limit: u32) -> Result<Vec<WebhookDelivery>, StoreError> {
    let due = rows(
        sql,
        "SELECT endpoint, event_id, event_type, payload, created_secs, attempts, next_attempt_ms, delivered_secs, last_status, last_error FROM webhook_deliveries \
         WHERE next_attempt_ms IS NOT NULL AND next_attempt_ms <= $1 ORDER BY next_attempt_ms, endpoint, event_id LIMIT $2",
        &[Param::Int(now_ms), Param::Int(i64::from(limit))],
        delivery,
    )?;
    for d in &due {
        sql.execute(
            "UPDATE webhook_deliveries SET next_attempt_ms = $1 WHERE endpoint = $2 AND event_id = $3",
            &[Param::Int(hold_ms), Param::Int(int(d.endpoint)?), Param::Text(&d.event_id)],
        )?;
    }
    Ok(due)
}

/// Records how an attempt went.
pub(crate) fn attempted(sql: &mut impl Sql, endpoint: u64, event_id: &str, attempt: &Attempt) -> Result<(), StoreError> {
    sql.execute(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_ms = $1, delivered_secs = $2, last_status = $3, last_error = $4 \
         WHERE endpoint = $5 AND event_id = $6",
        &[
            Param::OptInt(attempt.next_attempt_ms),
            Param::OptInt(attempt.delivered.then(|| attempt.at.secs())),
            Param::OptInt(attempt.status.map(i64::from)),
            Param::OptText(attempt.error.as_deref()),
            Param::Int(int(endpoint)?),
            Param::Text(event_id),
        ],
    )?;
    Ok(())
}

/// Endpoint `id`'s deliveries, oldest first.
pub(crate) fn deliveries(sql: &mut impl Sql, id: u64) -> Result<Vec<WebhookDelivery>, StoreError> {
    rows(
        sql,
        "SELECT endpoint, event_id, event_type, payload, created_secs, attempts, next_attempt_ms, delivered_secs, last_status, last_error FROM webhook_deliveries WHERE endpoint = $1 ORDER BY created_secs, event_id",
        &[Param::Int(int(id)?)],
        delivery,
    )
}
