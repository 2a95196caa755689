//! The dashboard's pages: each reads what the signed-in caller may read (the API's handlers, or
//! the same store calls behind the same checks) and renders it.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use revshare_core::agreement::Agreement;
use revshare_core::ids::AgreementId;
use revshare_core::money::Currency;
use revshare_core::statement::Statement;
use revshare_core::text::grouped;
use revshare_core::time::Period;
use revshare_store::accounts::{self, PaymentRow, PaymentState, StatementRow};
use revshare_store::payments::Payer;
use revshare_store::{Grain, Role, Store, UsageRow};

use super::chart::{self, Chart, Point};
use super::{Layout, Signed, error_page, html, notice, signed_in};
use crate::AppState;
use crate::auth::{Caller, may_read_agreement};
use crate::disputes::DisputeView;
use crate::extract::{agreement_id, month_range, period_of, readable};
use crate::problem::Problem;
use crate::routes::{BalanceList, Debt, PendingPaymentView};

type Params = Query<HashMap<String, String>>;

/// Money as people read it: grouped by thousands, with its currency.
fn money(currency: Currency, minor: i128) -> String {
    format!("{} {}", grouped(&currency.format(minor)), currency)
}

/// The agreements the caller may read, latest versions, by id.
fn readable_agreements(store: &mut dyn Store, caller: &Caller) -> Result<Vec<Agreement>, Problem> {
    Ok(store.agreements()?.into_iter().filter(|a| may_read_agreement(caller, a)).collect())
}

/// Renders a page from what `read` returns, or the page of its refusal.
async fn page<T, F>(state: &AppState, headers: &HeaderMap, read: F) -> Response
where
    T: Template + Send + 'static,
    F: FnOnce(&mut dyn Store, &crate::Shared, Signed) -> Result<T, Problem> + Send + 'static,
{
    let signed = match signed_in(state, headers).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let layout = Layout::of(&signed, "", None);
    match state.run(move |store, shared| read(store, shared, signed)).await {
        Ok(page) => html(&page),
        Err(problem) => error_page(Some(layout), &problem),
    }
}

/// A CSV download (`?format=csv` on a page): `read` gives its file name and bytes.
async fn download<F>(state: &AppState, headers: &HeaderMap, read: F) -> Response
where
    F: FnOnce(&mut dyn Store, &crate::Shared, Signed) -> Result<(String, std::io::Result<Vec<u8>>), Problem> + Send + 'static,
{
    let signed = match signed_in(state, headers).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let layout = Layout::of(&signed, "", None);
    let answer = state.run(move |store, shared| read(store, shared, signed)).await.and_then(|(name, bytes)| {
        let mut answer = crate::csv_answer::answer(bytes)?;
        let disposition = axum::http::HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
            .map_err(|e| Problem::internal("a file name cannot be written", &e))?;
        answer.headers_mut().insert(axum::http::header::CONTENT_DISPOSITION, disposition);
        Ok(answer)
    });
    answer.unwrap_or_else(|problem| error_page(Some(layout), &problem))
}

/// Whether a page is asked for as CSV (`?format=csv`).
fn as_csv(query: &HashMap<String, String>) -> bool {
    query.get("format").is_some_and(|f| f == "csv")
}

// ---------------------------------------------------------------------------------------------
// Overview

/// One agreement's month so far against the month before.
pub(crate) struct MonthRow {
    agreement: String,
    period: String,
    records: String,
    gross: String,
    usage: String,
    last_usage: String,
    change: String,
}

/// A dispute that waits for the user, with its deadline.
pub(crate) struct Waiting {
    id: u64,
    agreement: String,
    period: String,
    state: String,
    respond_by: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub(crate) struct OverviewPage {
    layout: Option<Layout>,
    owed: Vec<Debt>,
    to_confirm: Vec<PendingPaymentView>,
    awaiting_confirmation: Vec<PendingPaymentView>,
    outstanding: Vec<(String, String)>,
    months: Vec<MonthRow>,
    previews: bool,
    waiting: Vec<Waiting>,
    chart: Option<Chart>,
}

/// `change` of `last`, in percent with one place, exactly rounded toward zero; `None` from zero.
fn percent_change(now: i128, last: i128) -> Option<String> {
    if last == 0 {
        return None;
    }
    let tenths = (now - last).checked_mul(1000)? / last.abs();
    let sign = if tenths > 0 {
        "+"
    } else if tenths < 0 {
        "−"
    } else {
        ""
    };
    Some(format!("{sign}{}.{}%", (tenths / 10).abs(), (tenths % 10).abs()))
}

/// Whether a dispute waits for the caller: the other side moved last, a rejection either side
/// may escalate, or an escalation for an arbiter.
fn waits_for(caller: &Caller, view: &DisputeView) -> bool {
    let last_role = view.history.last().map(|step| step.role.as_str()).unwrap_or_default();
    match (view.state.as_str(), caller.role) {
        ("open" | "countered", Role::Licensor | Role::Host) => last_role != caller.role.as_str(),
        ("rejected", Role::Licensor | Role::Host) => true,
        ("escalated", Role::Arbiter) => true,
        _ => false,
    }
}

pub(crate) async fn overview(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let signed = match signed_in(&state, &headers).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let layout = Layout::of(&signed, "overview", None);
    let caller = signed.caller.clone();
    // The API's own answers: balances and disputes, as this caller reads them.
    let balances = crate::routes::balances_of(&state, caller.clone()).await;
    let disputes = crate::disputes::disputes_of(&state, caller.clone(), None).await;
    let (BalanceList { mut balances, mut pending }, disputes) = match (balances, disputes) {
        (Ok(b), Ok(d)) => (b, d),
        (Err(problem), _) | (_, Err(problem)) => return error_page(Some(layout), &problem),
    };
    for debt in &mut balances {
        debt.amount = grouped(&debt.amount);
    }
    for payment in &mut pending {
        payment.amount = grouped(&payment.amount);
    }
    let my_side = match caller.role {
        Role::Host => Some("host"),
        Role::Licensor => Some("licensor"),
        _ => None,
    };
    let (awaiting_confirmation, to_confirm): (Vec<_>, Vec<_>) = pending.into_iter().partition(|p| Some(p.from.as_str()) == my_side);
    let waiting = disputes
        .iter()
        .filter(|d| waits_for(&caller, d))
        .map(|d| Waiting {
            id: d.id,
            agreement: d.agreement.clone(),
            period: d.period.clone(),
            state: d.state.clone(),
            respond_by: d.respond_by.clone().unwrap_or_default(),
        })
        .collect();
    let read = state
        .run(move |store, shared| {
            let agreements = readable_agreements(store, &caller)?;
            let rows: Vec<StatementRow> = accounts::statements(store, None)?
                .into_iter()
                .filter(|r| agreements.iter().any(|a| a.id() == &r.head.agreement_id))
                .collect();
            let mut outstanding: BTreeMap<String, (Currency, i128)> = BTreeMap::new();
            for row in &rows {
                if let Some((_, left)) = row.paid {
                    outstanding.entry(row.currency.to_string()).or_insert((row.currency, 0)).1 += left;
                }
            }
            let outstanding = outstanding.into_values().map(|(c, minor)| (c.to_string(), money(c, minor))).collect();
            // This month's usage so far (settled from its rollups, before the adjustments a close
            // carries), for the agreement's two parties, against last month's statement.
            let this = Period::of(shared.now());
            let previews = matches!(caller.role, Role::Licensor | Role::Host);
            let mut months = Vec::new();
            for agreement in agreements.iter().filter(|_| previews) {
                let Ok(running) = store.running_totals(agreement.id(), this) else { continue };
                let last_usage = match store.statement(agreement.id(), this.previous())? {
                    Some(last) => Some(last.statement()?.totals.usage_total),
                    None => None,
                };
                let currency = running.currency;
                let usage = running.totals.usage_total;
                months.push(MonthRow {
                    agreement: agreement.id().to_string(),
                    period: this.to_string(),
                    records: grouped(&running.inputs.records.to_string()),
                    gross: money(currency, running.totals.gross_revenue),
                    usage: money(currency, usage),
                    last_usage: last_usage.map_or_else(|| "—".to_owned(), |u| money(currency, u)),
                    change: last_usage.and_then(|u| percent_change(usage, u)).unwrap_or_else(|| "—".to_owned()),
                });
            }
            // Net payable per month (the latest statement of each), in the first currency.
            let chart = rows.first().map(|first| first.currency).map(|currency| {
                let mut by_month: BTreeMap<String, i128> = BTreeMap::new();
                let mut latest: BTreeMap<(&AgreementId, Period), &StatementRow> = BTreeMap::new();
                for row in rows.iter().filter(|r| r.currency == currency) {
                    latest.insert((&row.head.agreement_id, row.head.period), row);
                }
                for ((_, period), row) in latest {
                    *by_month.entry(period.to_string()).or_default() += row.net_payable;
                }
                let points = by_month
                    .into_iter()
                    .map(|(month, net)| Point {
                        label: month,
                        magnitude: net.unsigned_abs(),
                        value: money(currency, net),
                        negative: net < 0,
                    })
                    .collect();
                chart::bars(
                    "net-by-month",
                    &format!("Net payable by month ({currency})"),
                    "Net payable of the latest statement of each month, summed over your agreements; the table below has the figures.",
                    points,
                )
            });
            Ok((outstanding, months, previews, chart))
        })
        .await;
    match read {
        Ok((outstanding, months, previews, chart)) => html(&OverviewPage {
            layout: Some(layout),
            owed: balances,
            to_confirm,
            awaiting_confirmation,
            outstanding,
            months,
            previews,
            waiting,
            chart,
        }),
        Err(problem) => error_page(Some(layout), &problem),
    }
}

// ---------------------------------------------------------------------------------------------
// Statements

pub(crate) struct ListedStatement {
    agreement: String,
    period: String,
    sequence: u32,
    kind: &'static str,
    net_payable: String,
    paid: String,
    outstanding: String,
    countersigned: bool,
    closed_on: String,
}

impl ListedStatement {
    fn of(row: &StatementRow) -> ListedStatement {
        let s = &row.head;
        ListedStatement {
            agreement: s.agreement_id.to_string(),
            period: s.period.to_string(),
            sequence: s.sequence,
            kind: s.kind.as_str(),
            net_payable: money(row.currency, row.net_payable),
            paid: row.paid.map_or_else(String::new, |(paid, _)| money(row.currency, paid)),
            outstanding: row.paid.map_or_else(|| "carried by a later statement".to_owned(), |(_, left)| money(row.currency, left)),
            countersigned: row.countersigned,
            closed_on: row.closed_on.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "statements.html")]
pub(crate) struct StatementsPage {
    layout: Option<Layout>,
    statements: Vec<ListedStatement>,
}

pub(crate) async fn statements(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if as_csv(&query) {
        return download(&state, &headers, |store, _, signed| {
            let agreements = readable_agreements(store, &signed.caller)?;
            let rows: Vec<serde_json::Value> = accounts::statements(store, None)?
                .iter()
                .filter(|r| agreements.iter().any(|a| a.id() == &r.head.agreement_id))
                .map(StatementRow::to_json)
                .collect();
            Ok(("statements.csv".to_owned(), revshare_core::spreadsheet::csv(&StatementRow::COLUMNS, rows)))
        })
        .await;
    }
    page(&state, &headers, |store, _, signed| {
        let agreements = readable_agreements(store, &signed.caller)?;
        let mut rows: Vec<ListedStatement> = accounts::statements(store, None)?
            .iter()
            .filter(|r| agreements.iter().any(|a| a.id() == &r.head.agreement_id))
            .map(ListedStatement::of)
            .collect();
        // Newest month first.
        rows.sort_by(|a, b| b.period.cmp(&a.period).then(a.agreement.cmp(&b.agreement)).then(b.sequence.cmp(&a.sequence)));
        Ok(StatementsPage { layout: Some(Layout::of(&signed, "statements", None)), statements: rows })
    })
    .await
}

pub(crate) struct LineRow {
    number: usize,
    model: String,
    use_case: String,
    region: String,
    exclusive: bool,
    records: String,
    revenue: String,
    volume: String,
    rate: String,
    amount: String,
    flags: String,
}

pub(crate) struct AdjustmentRow {
    kind: &'static str,
    reference: String,
    /// The dispute it comes from, for a link.
    dispute: Option<String>,
    description: String,
    amount: String,
}

#[derive(Template)]
#[template(path = "statement.html")]
pub(crate) struct StatementPage {
    layout: Option<Layout>,
    agreement: String,
    period: String,
    sequence: u32,
    kind: &'static str,
    version: u32,
    licensor: String,
    host: String,
    currency: String,
    closed_on: String,
    due_by: String,
    countersigned: bool,
    paid: String,
    outstanding: String,
    digest: String,
    usage_digest: String,
    records: String,
    tier_summary: String,
    tiers: Vec<[String; 4]>,
    lines: Vec<LineRow>,
    adjustments: Vec<AdjustmentRow>,
    totals: Vec<(&'static str, String)>,
    net_payable: String,
    flags: Vec<String>,
    charts: Vec<Chart>,
    may_dispute: bool,
}

/// The amounts of a statement's lines summed by one of their names, largest first.
fn amounts_by(statement: &Statement, name: fn(&revshare_core::statement::Line) -> &str) -> Vec<Point> {
    let mut sums: BTreeMap<&str, i128> = BTreeMap::new();
    for line in &statement.lines {
        *sums.entry(name(line)).or_default() += line.amount;
    }
    let mut sums: Vec<(&str, i128)> = sums.into_iter().collect();
    sums.sort_by(|a, b| b.1.unsigned_abs().cmp(&a.1.unsigned_abs()).then(a.0.cmp(b.0)));
    sums.into_iter()
        .map(|(label, amount)| Point {
            label: label.to_owned(),
            magnitude: amount.unsigned_abs(),
            value: money(statement.currency, amount),
            negative: amount < 0,
        })
        .collect()
}

pub(crate) async fn statement(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((agreement, period)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if as_csv(&query) {
        return download(&state, &headers, move |store, _, signed| {
            let id = agreement_id(&agreement)?;
            let period = period_of(&period)?;
            readable(store, &signed.caller, &id)?;
            let stored =
                store.statement(&id, period)?.ok_or_else(|| Problem::not_found(format!("agreement {id} has no statement for {period}")))?;
            Ok((format!("{id}-{period}-lines.csv"), revshare_core::spreadsheet::statement_lines(&stored.statement()?)))
        })
        .await;
    }
    page(&state, &headers, move |store, _, signed| {
        let id = agreement_id(&agreement)?;
        let period = period_of(&period)?;
        let terms = readable(store, &signed.caller, &id)?;
        let row = accounts::statements(store, Some(&id))?
            .into_iter()
            .rfind(|r| r.head.period == period)
            .ok_or_else(|| Problem::not_found(format!("agreement {id} has no statement for {period}")))?;
        let s: Statement = store
            .statement(&id, period)?
            .ok_or_else(|| Problem::not_found(format!("agreement {id} has no statement for {period}")))?
            .statement()?;
        let c = s.currency;
        let t = &s.totals;
        let due_by = row
            .head
            .finalised_at
            .map(|at| at.plus_days(terms.dispute_window_days()).to_string().get(..10).unwrap_or_default().to_owned())
            .unwrap_or_default();
        let charts = vec![
            chart::bars(
                "by-use-case",
                "Amount by use case",
                "What each use case adds to the usage total.",
                amounts_by(&s, |l| &l.use_case),
            ),
            chart::bars("by-model", "Amount by model", "What each model adds to the usage total.", amounts_by(&s, |l| &l.model)),
            chart::bars("by-region", "Amount by region", "What each region adds to the usage total.", amounts_by(&s, |l| &l.region)),
        ];
        let page = StatementPage {
            layout: Some(Layout::of(&signed, "statements", None)),
            agreement: id.to_string(),
            period: period.to_string(),
            sequence: row.head.sequence,
            kind: row.head.kind.as_str(),
            version: row.head.agreement_version,
            licensor: terms.licensor().to_string(),
            host: terms.host().to_string(),
            currency: c.to_string(),
            closed_on: row.closed_on.clone().unwrap_or_default(),
            due_by,
            countersigned: row.countersigned,
            paid: row.paid.map_or_else(String::new, |(paid, _)| money(c, paid)),
            outstanding: row.paid.map_or_else(|| "carried by a later statement".to_owned(), |(_, left)| money(c, left)),
            digest: row.head.digest.clone(),
            usage_digest: s.inputs.usage_digest.clone(),
            records: grouped(&s.inputs.records.to_string()),
            tier_summary: format!("{}, {}, V = {}", s.tiers.metric.name(), s.tiers.mode.name(), grouped(&s.tiers.volume)),
            tiers: s
                .tiers
                .tiers
                .iter()
                .map(|t| {
                    [grouped(&t.from), t.to.as_deref().map_or_else(|| "∞".to_owned(), grouped), grouped(&t.volume), t.fraction.clone()]
                })
                .collect(),
            lines: s
                .lines
                .iter()
                .enumerate()
                .map(|(number, l)| LineRow {
                    number,
                    // A derived model's line names the agreement's model it was priced under.
                    model: l.derived_from.as_ref().map_or_else(|| l.model.clone(), |base| format!("{} (of {base})", l.model)),
                    use_case: l.use_case.clone(),
                    region: l.region.clone(),
                    exclusive: l.exclusive,
                    records: grouped(&l.records.to_string()),
                    revenue: money(c, l.revenue),
                    volume: grouped(&l.volume),
                    rate: l.blended_rate.clone(),
                    amount: money(c, l.amount),
                    flags: l.flags.join(", "),
                })
                .collect(),
            adjustments: s
                .adjustments
                .iter()
                .map(|a| AdjustmentRow {
                    kind: a.kind.as_str(),
                    reference: a.reference.clone(),
                    dispute: a.reference.strip_prefix("dispute:").map(str::to_owned),
                    description: a.description.clone(),
                    amount: money(c, a.amount),
                })
                .collect(),
            totals: vec![
                ("Gross revenue", money(c, t.gross_revenue)),
                ("Usage subtotal", money(c, t.usage_subtotal)),
                ("Minimum true-up", money(c, t.minimum_true_up)),
                ("Cap reduction", money(c, t.cap_reduction)),
                ("Usage total", money(c, t.usage_total)),
                ("Contribution pool", money(c, t.contribution_pool)),
                ("Host credit", money(c, t.host_credit)),
                ("Adjustments", money(c, t.adjustments)),
            ],
            net_payable: money(c, t.net_payable),
            flags: s.flags.clone(),
            charts,
            may_dispute: matches!(signed.caller.role, Role::Licensor | Role::Host),
        };
        Ok(page)
    })
    .await
}

/// The statement's bundle, as the API's bundle route answers it, for the signed-in caller.
pub(crate) async fn bundle(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(path): Path<(String, String)>,
    query: Result<Params, axum::extract::rejection::QueryRejection>,
) -> Response {
    let signed = match signed_in(&state, &headers).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let layout = Layout::of(&signed, "statements", None);
    match crate::export::get_bundle(State(state), Extension(signed.caller), Path(path), axum::http::HeaderMap::new(), query).await {
        Ok(response) => response,
        Err(problem) => error_page(Some(layout), &problem),
    }
}

// ---------------------------------------------------------------------------------------------
// Usage over time

pub(crate) struct DayRow {
    day: String,
    records: String,
    requests: String,
    tokens: String,
    revenue: String,
}

pub(crate) struct Breakdown {
    title: &'static str,
    rows: Vec<[String; 4]>,
}

#[derive(Template)]
#[template(path = "usage.html")]
pub(crate) struct UsagePage {
    layout: Option<Layout>,
    agreements: Vec<String>,
    agreement: String,
    from: String,
    to: String,
    currency: String,
    days: Vec<DayRow>,
    charts: Vec<Chart>,
    breakdowns: Vec<Breakdown>,
}

/// Sums of a set of daily rows: records, requests, tokens, revenue at `scale` places.
#[derive(Default, Clone, Copy)]
struct Totals {
    records: u64,
    requests: u128,
    tokens: u128,
    revenue: u128,
}

impl Totals {
    fn add(&mut self, d: &UsageRow, scale: u8) -> Result<(), Problem> {
        let overflow = || Problem::internal("usage sums overflow", &"a range too large to sum in 128 bits");
        self.records = self.records.checked_add(d.records).ok_or_else(overflow)?;
        self.requests = self.requests.checked_add(d.requests).ok_or_else(overflow)?;
        self.tokens = self.tokens.checked_add(d.input_tokens).and_then(|t| t.checked_add(d.output_tokens)).ok_or_else(overflow)?;
        self.revenue = self.revenue.checked_add(d.revenue_at(scale).ok_or_else(overflow)?).ok_or_else(overflow)?;
        Ok(())
    }
}

/// Revenue summed at `scale` places, as people read it.
fn revenue_text(revenue: u128, scale: u8) -> String {
    grouped(&revshare_core::money::format_unsigned_scaled(revenue, u32::from(scale)))
}

pub(crate) async fn usage(State(state): State<AppState>, headers: HeaderMap, Query(query): Query<HashMap<String, String>>) -> Response {
    if as_csv(&query) {
        return download(&state, &headers, move |store, shared, signed| {
            let id = match query.get("agreement").filter(|a| !a.is_empty()) {
                Some(text) => agreement_id(text)?,
                None => readable_agreements(store, &signed.caller)?
                    .first()
                    .map(|a| a.id().clone())
                    .ok_or_else(|| Problem::not_found("there is no agreement whose usage this token can read"))?,
            };
            let terms = readable(store, &signed.caller, &id)?;
            let (from, to) = month_range(&query, Period::of(shared.now()))?;
            let rows: Vec<serde_json::Value> =
                store.usage(&id, from, to, Grain::Day)?.iter().map(|d| d.to_json(terms.currency())).collect();
            Ok((format!("{id}-usage-{from}-{to}.csv"), revshare_core::spreadsheet::csv(&UsageRow::COLUMNS, rows)))
        })
        .await;
    }
    page(&state, &headers, move |store, shared, signed| {
        let agreements = readable_agreements(store, &signed.caller)?;
        let ids: Vec<String> = agreements.iter().map(|a| a.id().to_string()).collect();
        let layout = Some(Layout::of(&signed, "usage", None));
        let chosen = match query.get("agreement").filter(|a| !a.is_empty()) {
            Some(text) => agreement_id(text)?,
            None => match agreements.first() {
                Some(first) => first.id().clone(),
                None => {
                    return Ok(UsagePage {
                        layout,
                        agreements: ids,
                        agreement: String::new(),
                        from: String::new(),
                        to: String::new(),
                        currency: String::new(),
                        days: Vec::new(),
                        charts: Vec::new(),
                        breakdowns: Vec::new(),
                    });
                }
            },
        };
        let terms = readable(store, &signed.caller, &chosen)?;
        let (from, to) = month_range(&query, Period::of(shared.now()))?;
        // Each day's totals (a few hundred rows for a year), and the range per model, use case
        // and region from the monthly rows: never the tens of thousands of rows per day and name.
        let days = store.usage(&chosen, from, to, Grain::DayTotal)?;
        let months = store.usage(&chosen, from, to, Grain::Month)?;
        let scale = days.iter().chain(&months).map(|d| d.scale).max().unwrap_or(0).max(terms.currency().minor_units());
        let mut by_day: BTreeMap<&str, Totals> = BTreeMap::new();
        for d in &days {
            by_day.entry(&d.date).or_default().add(d, scale)?;
        }
        let mut by_name: [BTreeMap<&str, Totals>; 3] = Default::default();
        for m in &months {
            by_name[0].entry(&m.model).or_default().add(m, scale)?;
            by_name[1].entry(&m.use_case).or_default().add(m, scale)?;
            by_name[2].entry(&m.region).or_default().add(m, scale)?;
        }
        let series = |what: fn(&Totals) -> u128, text: &dyn Fn(u128) -> String| -> Vec<Point> {
            by_day
                .iter()
                .map(|(day, t)| Point { label: (*day).to_owned(), magnitude: what(t), value: text(what(t)), negative: false })
                .collect()
        };
        let count = |n: u128| grouped(&n.to_string());
        let currency = terms.currency();
        let charts = vec![
            chart::columns(
                "requests",
                "Requests per day",
                "Requests per day over the range; the table below has each day's figures.",
                series(|t| t.requests, &count),
            ),
            chart::columns("tokens", "Tokens per day", "Input and output tokens per day over the range.", series(|t| t.tokens, &count)),
            chart::columns(
                "revenue",
                &format!("Revenue per day ({currency})"),
                "Revenue the host reported per day over the range.",
                series(|t| t.revenue, &|r| revenue_text(r, scale)),
            ),
        ];
        let breakdowns = ["By model", "By use case", "By region"]
            .into_iter()
            .zip(&by_name)
            .map(|(title, sums)| Breakdown {
                title,
                rows: sums
                    .iter()
                    .map(|(name, t)| [(*name).to_owned(), count(t.requests), count(t.tokens), revenue_text(t.revenue, scale)])
                    .collect(),
            })
            .collect();
        let days = by_day
            .iter()
            .map(|(day, t)| DayRow {
                day: (*day).to_owned(),
                records: grouped(&t.records.to_string()),
                requests: count(t.requests),
                tokens: count(t.tokens),
                revenue: revenue_text(t.revenue, scale),
            })
            .collect();
        Ok(UsagePage {
            layout,
            agreements: ids,
            agreement: chosen.to_string(),
            from: from.to_string(),
            to: to.to_string(),
            currency: currency.to_string(),
            days,
            charts,
            breakdowns,
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Disputes

#[derive(Template)]
#[template(path = "disputes.html")]
pub(crate) struct DisputesPage {
    layout: Option<Layout>,
    disputes: Vec<DisputeView>,
}

pub(crate) async fn disputes(State(state): State<AppState>, headers: HeaderMap, Query(query): Query<HashMap<String, String>>) -> Response {
    let signed = match signed_in(&state, &headers).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let layout = Layout::of(&signed, "disputes", notice(query.get("done")));
    match crate::disputes::disputes_of(&state, signed.caller, None).await {
        Ok(mut disputes) => {
            disputes.reverse();
            html(&DisputesPage { layout: Some(layout), disputes })
        }
        Err(problem) => error_page(Some(layout), &problem),
    }
}

#[derive(Template)]
#[template(path = "dispute.html")]
pub(crate) struct DisputePage {
    layout: Option<Layout>,
    dispute: DisputeView,
    /// The steps the user may take now, as the core will judge them: `accept`, `reject`,
    /// `counter`, `escalate`, `decide`.
    actions: Vec<&'static str>,
}

/// The steps offered to the caller on a dispute in its state (the core refuses any other).
fn actions(caller: &Caller, view: &DisputeView) -> Vec<&'static str> {
    match (view.state.as_str(), caller.role) {
        ("open" | "countered", Role::Licensor | Role::Host) if waits_for(caller, view) => {
            if view.state == "open" {
                vec!["accept", "reject", "counter"]
            } else {
                vec!["accept", "reject"]
            }
        }
        ("rejected" | "escalated", Role::Licensor | Role::Host) => vec!["escalate"],
        ("escalated", Role::Arbiter) => vec!["decide"],
        _ => Vec::new(),
    }
}

pub(crate) async fn dispute(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let signed = match signed_in(&state, &headers).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let layout = Layout::of(&signed, "disputes", notice(query.get("done")));
    match crate::disputes::dispute_of(&state, signed.caller.clone(), &id).await {
        Ok(dispute) => {
            let actions = actions(&signed.caller, &dispute);
            html(&DisputePage { layout: Some(layout), dispute, actions })
        }
        Err(problem) => error_page(Some(layout), &problem),
    }
}

// ---------------------------------------------------------------------------------------------
// Payments

pub(crate) struct PaymentRowView {
    agreement: String,
    reference: String,
    from: &'static str,
    amount: String,
    state: &'static str,
    /// Whether the caller is the payee of this pending payment.
    confirm: bool,
}

#[derive(Template)]
#[template(path = "payments.html")]
pub(crate) struct PaymentsPage {
    layout: Option<Layout>,
    payments: Vec<PaymentRowView>,
    /// The agreements the caller is a party to: the record form's choices.
    agreements: Vec<String>,
    my_side: &'static str,
}

pub(crate) async fn payments(State(state): State<AppState>, headers: HeaderMap, Query(query): Query<HashMap<String, String>>) -> Response {
    if as_csv(&query) {
        return download(&state, &headers, |store, _, signed| {
            let agreements = readable_agreements(store, &signed.caller)?;
            let rows: Vec<serde_json::Value> = accounts::payments(store, None)?
                .iter()
                .filter(|p| agreements.iter().any(|a| a.id() == &p.agreement))
                .map(PaymentRow::to_json)
                .collect();
            Ok(("payments.csv".to_owned(), revshare_core::spreadsheet::csv(&PaymentRow::COLUMNS, rows)))
        })
        .await;
    }
    page(&state, &headers, move |store, _, signed| {
        let agreements = readable_agreements(store, &signed.caller)?;
        let my_side = match signed.caller.role {
            Role::Host => "host",
            Role::Licensor => "licensor",
            _ => "",
        };
        let payments = accounts::payments(store, None)?
            .into_iter()
            .filter(|p| agreements.iter().any(|a| a.id() == &p.agreement))
            .map(|p| PaymentRowView {
                agreement: p.agreement.to_string(),
                reference: p.reference.clone(),
                from: p.from.as_str(),
                amount: money(p.currency, p.amount_minor),
                state: p.state.as_str(),
                confirm: p.state == PaymentState::Pending
                    && !my_side.is_empty()
                    && my_side
                        != match p.from {
                            Payer::Host => "host",
                            Payer::Licensor => "licensor",
                        },
            })
            .collect();
        let parties: Vec<String> = if my_side.is_empty() { Vec::new() } else { agreements.iter().map(|a| a.id().to_string()).collect() };
        Ok(PaymentsPage {
            layout: Some(Layout::of(&signed, "payments", notice(query.get("done")))),
            payments,
            agreements: parties,
            my_side,
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Contributions

pub(crate) struct ContributionRow {
    agreement: String,
    id: String,
    party: String,
    kind: String,
    date: String,
    description: String,
    accepted: bool,
    /// Whether the caller may accept it: the other party's, not yet accepted.
    accept: bool,
}

#[derive(Template)]
#[template(path = "contributions.html")]
pub(crate) struct ContributionsPage {
    layout: Option<Layout>,
    contributions: Vec<ContributionRow>,
    /// The agreements the caller is a party to, with the kinds each lists: the submit form's choices.
    agreements: Vec<(String, Vec<String>)>,
}

pub(crate) async fn contributions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    page(&state, &headers, move |store, _, signed| {
        let agreements = readable_agreements(store, &signed.caller)?;
        let party = matches!(signed.caller.role, Role::Licensor | Role::Host);
        let mut contributions = Vec::new();
        for agreement in &agreements {
            for c in store.contributions(agreement.id())? {
                contributions.push(ContributionRow {
                    agreement: agreement.id().to_string(),
                    accept: party && !c.accepted && c.party != signed.caller.party,
                    id: c.id.clone(),
                    party: c.party.to_string(),
                    kind: c.kind.clone(),
                    date: c.date.to_string(),
                    description: c.description.clone(),
                    accepted: c.accepted,
                });
            }
        }
        let choices = if party {
            agreements.iter().map(|a| (a.id().to_string(), a.contribution_kinds().map(str::to_owned).collect())).collect()
        } else {
            Vec::new()
        };
        Ok(ContributionsPage {
            layout: Some(Layout::of(&signed, "contributions", notice(query.get("done")))),
            contributions,
            agreements: choices,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_exact_tenths_of_a_percent() {
        assert_eq!(percent_change(1_100, 1_000).as_deref(), Some("+10.0%"));
        assert_eq!(percent_change(999, 1_000).as_deref(), Some("−0.1%"));
        assert_eq!(percent_change(1_000, 1_000).as_deref(), Some("0.0%"));
        assert_eq!(percent_change(-500, -1_000).as_deref(), Some("+50.0%"), "a smaller credit is a rise");
        assert_eq!(percent_change(5, 0), None, "no change from nothing");
    }
}
