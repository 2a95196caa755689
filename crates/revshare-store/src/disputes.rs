//! Disputes (SPEC §8), kept as their transitions.
//!
//! The rules are the core's (`revshare_core::dispute`): this module loads what they need — the
//! disputed statement, the agreement version it applied, when it was finalised, the dispute's
//! history — asks them, and appends what they accept, each transition with its log leaf, in the
//! caller's transaction. Nothing stored about a dispute is ever changed (triggers refuse it);
//! its state is its last transition.
//!
//! Deadlines pass without anyone acting, so the escalations they make are applied lazily and
//! deterministically: [`escalate_due`] appends those due by a given time for every dispute, each
//! dated at its deadline ([`Dispute::due`]); the edges call it before they read or move
//! disputes and before they close a month. Whoever applies an escalation, and whenever, it is
//! the same transition; an answer given after its deadline is refused as late.

use revshare_core::dispute::{self, Actor, ActorRole, Dispute, State, Subject, Terms, Transition};
use revshare_core::ids::{AgreementId, PartyId};
use revshare_core::time::{Instant, Period};
use revshare_core::transparency;

use crate::agreements;
use crate::error::StoreError;
use crate::log;
use crate::registry::{self, Role};
use crate::sql::{Columns, Param, Sql, first, rows, unsigned};
use crate::statements::{self, Carried};

/// A stored dispute with the terms of the agreement version its statement applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDispute {
    pub dispute: Dispute,
    pub terms: Terms,
    /// Where its adjustment went, once a statement carries it.
    pub carried: Option<Carried>,
}

impl StoredDispute {
    /// The JSON view: [`Dispute::to_json`], and `carried_by`: the statement (`period`,
    /// `sequence`) and the index in its `adjustments` of the line that carries its adjustment.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = self.dispute.to_json(&self.terms);
        if let Some(members) = value.as_object_mut() {
            let carried =
                self.carried.as_ref().map(|c| serde_json::json!({"period": c.period.to_string(), "sequence": c.sequence, "line": c.line}));
            members.insert("carried_by".to_owned(), carried.unwrap_or(serde_json::Value::Null));
        }
        value
    }

    /// The dispute as it stands at `now`, with an escalation due by then shown though not yet
    /// logged ([`Dispute::effective`]): what reads show.
    pub fn effective(self, now: Instant) -> StoredDispute {
        StoredDispute { dispute: self.dispute.effective(&self.terms, now), ..self }
    }
}

fn int(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt { what: what.to_owned(), detail: format!("{value} is beyond range") })
}

fn read_subject(row: &dyn Columns) -> Result<(u64, Subject, u32), StoreError> {
    let id: u64 = unsigned(row.int(0)?, || "dispute id".to_owned())?;
    let corrupt = |detail: String| StoreError::Corrupt { what: format!("dispute {id}"), detail };
    let agreement = AgreementId::parse(&row.text(1)?).map_err(|e| corrupt(e.to_string()))?;
    let period = Period::parse(&row.text(2)?).map_err(|e| corrupt(e.to_string()))?;
    let sequence = unsigned(row.int(3)?, || format!("sequence of dispute {id}"))?;
    let line = row.opt_int(5)?.map(|l| u32::try_from(l).map_err(|_| corrupt(format!("line {l}")))).transpose()?;
    let version = unsigned(row.int(6)?, || format!("agreement version of dispute {id}"))?;
    Ok((id, Subject { agreement, period, sequence, digest: row.text(4)?, line }, version))
}

fn read_transition(id: u64, row: &dyn Columns) -> Result<Transition, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt { what: format!("a transition of dispute {id}"), detail };
    let state = row.text(0)?;
    let role = row.text(2)?;
    let evidence = row.text(7)?;
    let arbiter = row.opt_text(8)?.map(|a| PartyId::parse(&a).map_err(|e| corrupt(format!("arbiter `{a}`: {e}")))).transpose()?;
    Ok(Transition {
        state: State::parse(&state).ok_or_else(|| corrupt(format!("`{state}` is not a state")))?,
        actor: Actor { party: row.text(1)?, role: ActorRole::parse(&role).ok_or_else(|| corrupt(format!("`{role}` is not a role")))? },
        at: Instant::from_parts(row.int(3)?, unsigned(row.int(4)?, || format!("time of a transition of dispute {id}"))?),
        reason: row.text(5)?,
        amount: row.opt_int(6)?.map(i128::from),
        evidence: serde_json::from_str(&evidence).map_err(|e| corrupt(format!("evidence `{evidence}`: {e}")))?,
        arbiter,
    })
}

/// The query of dispute subjects (with the agreement version of their statement), and `$tail`.
macro_rules! subjects {
    ($tail:literal) => {
        concat!(
            "SELECT d.id, d.agreement_id, d.period, d.seq, d.digest, d.line, s.agreement_version FROM disputes d \
             JOIN statements s ON s.agreement_id = d.agreement_id AND s.period = d.period AND s.seq = d.seq ",
            $tail
        )
    };
}

fn load(sql: &mut impl Sql, (id, subject, version): (u64, Subject, u32)) -> Result<StoredDispute, StoreError> {
    let agreement = agreements::require(sql, subject.agreement.as_str(), Some(version))?;
    let history = rows(
        sql,
        "SELECT state, party, role, at_secs, at_nanos, reason, amount, evidence, arbiter FROM dispute_transitions WHERE dispute_id = $1 ORDER BY n",
        &[Param::Int(int(id, "dispute id")?)],
        |row| read_transition(id, row),
    )?;
    Ok(StoredDispute { dispute: Dispute { id, subject, history }, terms: Terms::of(&agreement), carried: None })
}

/// One dispute.
pub(crate) fn one(sql: &mut impl Sql, id: u64) -> Result<Option<StoredDispute>, StoreError> {
    // An id beyond what a store keeps is one that does not exist.
    let Ok(key) = i64::try_from(id) else { return Ok(None) };
    match first(sql, subjects!("WHERE d.id = $1"), &[Param::Int(key)], read_subject)? {
        Some(found) => Ok(Some(load(sql, found)?)),
        None => Ok(None),
    }
}

/// The agreement of dispute `id`, with its licensor and host.
pub(crate) fn parties(sql: &mut impl Sql, id: u64) -> Result<Option<(AgreementId, PartyId, PartyId)>, StoreError> {
    let Ok(key) = i64::try_from(id) else { return Ok(None) };
    first(
        sql,
        "SELECT d.agreement_id, a.licensor, a.host FROM disputes d JOIN agreements a ON a.id = d.agreement_id AND a.version = 1 WHERE d.id = $1",
        &[Param::Int(key)],
        |row| {
            let corrupt = |detail: String| StoreError::Corrupt { what: format!("dispute {id}"), detail };
            Ok((
                AgreementId::parse(&row.text(0)?).map_err(|e| corrupt(e.to_string()))?,
                PartyId::parse(&row.text(1)?).map_err(|e| corrupt(e.to_string()))?,
                PartyId::parse(&row.text(2)?).map_err(|e| corrupt(e.to_string()))?,
            ))
        },
    )
}

/// Every dispute, or those of one agreement, by id.
pub(crate) fn list(sql: &mut impl Sql, agreement: Option<&str>) -> Result<Vec<StoredDispute>, StoreError> {
    let subjects = match agreement {
        Some(id) => rows(sql, subjects!("WHERE d.agreement_id = $1 ORDER BY d.id"), &[Param::Text(id)], read_subject)?,
        None => rows(sql, subjects!("ORDER BY d.id"), &[], read_subject)?,
    };
    subjects.into_iter().map(|s| load(sql, s)).collect()
}

/// `disputes` (of `agreement`, or of any) with where each one's adjustment went, read from the
/// original statements once. Only reads need it: a dispute being moved or escalated is not
/// carried yet, and a close reads the statements itself.
pub(crate) fn with_carried(
    sql: &mut impl Sql,
    agreement: Option<&str>,
    mut disputes: Vec<StoredDispute>,
) -> Result<Vec<StoredDispute>, StoreError> {
    let carried = statements::carried_disputes(&statements::list(sql, agreement)?)?;
    for stored in &mut disputes {
        stored.carried = carried.get(&stored.dispute.reference()).cloned();
    }
    Ok(disputes)
}

/// Appends a checked transition and its log leaf.
fn append(sql: &mut impl Sql, stored: &mut StoredDispute, t: Transition) -> Result<(), StoreError> {
    let d = &stored.dispute;
    let leaf = transparency::dispute_event(d.id, &d.subject, &t, stored.terms.currency);
    let leaf = log::record(sql, "dispute", dispute::reference(d.id), leaf)?;
    let amount =
        t.amount.map(|a| i64::try_from(a).map_err(|_| StoreError::Corrupt { what: "a dispute amount".to_owned(), detail: a.to_string() }));
    let evidence = serde_json::to_string(&t.evidence)
        .map_err(|e| StoreError::Corrupt { what: "dispute evidence".to_owned(), detail: e.to_string() })?;
    let n = i64::try_from(d.history.len()).unwrap_or(i64::MAX);
    sql.execute(
        "INSERT INTO dispute_transitions (dispute_id, n, state, party, role, at_secs, at_nanos, reason, amount, evidence, leaf, arbiter) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            Param::Int(int(d.id, "dispute id")?),
            Param::Int(n),
            Param::Text(t.state.as_str()),
            Param::Text(&t.actor.party),
            Param::Text(t.actor.role.as_str()),
            Param::Int(t.at.secs()),
            Param::Int(i64::from(t.at.nanos())),
            Param::Text(&t.reason),
            Param::OptInt(amount.transpose()?),
            Param::Text(&evidence),
            Param::Int(int(leaf, "log leaf")?),
            Param::OptText(t.arbiter.as_ref().map(PartyId::as_str)),
        ],
    )?;
    stored.dispute.history.push(t);
    Ok(())
}

/// Opens a dispute of a statement (the latest of its period unless `sequence` says).
pub(crate) fn open(
    sql: &mut impl Sql,
    agreement: &AgreementId,
    period: Period,
    sequence: Option<u32>,
    line: Option<u32>,
    opening: Transition,
) -> Result<StoredDispute, StoreError> {
    let month = period.to_string();
    let statement = match sequence {
        Some(n) => statements::by_sequence(sql, agreement.as_str(), &month, n)?,
        None => statements::latest(sql, agreement.as_str(), &month)?,
    }
    .ok_or_else(|| StoreError::NoStatement { agreement: agreement.to_string(), period: month.clone(), sequence })?;
    let terms = Terms::of(&agreements::require(sql, agreement.as_str(), Some(statement.head.agreement_version))?);
    let lines = statement.statement()?.lines.len();
    let subject =
        Subject { agreement: agreement.clone(), period, sequence: statement.head.sequence, digest: statement.head.digest.clone(), line };
    // Statements finalised before their time was kept: the window runs from the month's end.
    let finalised_at = statement.head.finalised_at.unwrap_or_else(|| period.end_exclusive());
    dispute::check_open(&terms, &subject, finalised_at, lines, &opening)?;
    let next = first(sql, "SELECT COALESCE(MAX(id), 0) + 1 FROM disputes", &[], |row| row.int(0))?.unwrap_or(1);
    sql.execute(
        "INSERT INTO disputes (id, agreement_id, period, seq, digest, line) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            Param::Int(next),
            Param::Text(agreement.as_str()),
            Param::Text(&month),
            Param::Int(i64::from(statement.head.sequence)),
            Param::Text(&statement.head.digest),
            Param::OptInt(line.map(i64::from)),
        ],
    )?;
    let id = unsigned(next, || "dispute id".to_owned())?;
    let mut stored = StoredDispute { dispute: Dispute { id, subject, history: Vec::new() }, terms, carried: None };
    append(sql, &mut stored, opening)?;
    Ok(stored)
}

/// Applies a transition a party asks for. (One made after a deadline passed is refused as late,
/// so no escalation is ever due before a transition that is accepted.)
pub(crate) fn transition(sql: &mut impl Sql, id: u64, t: Transition) -> Result<StoredDispute, StoreError> {
    let mut stored = one(sql, id)?.ok_or(StoreError::UnknownDispute { id })?;
    // The arbiter a side names must be one, or no one could decide once both sides name it.
    if let Some(arbiter) = &t.arbiter
        && registry::party(sql, arbiter.as_str())?.is_none_or(|party| party.role != Role::Arbiter)
    {
        return Err(StoreError::NotAnArbiter { id: arbiter.to_string() });
    }
    // A transition that follows only once the escalation due by its time is logged (an arbiter
    // deciding an overdue dispute) logs that escalation first, in the same transaction; any other
    // is checked as the dispute stands, so a late answer is refused as late.
    if let Err(refused) = stored.dispute.check(&stored.terms, &t) {
        let due = stored.dispute.due(&stored.terms, t.at).ok_or(refused.clone())?;
        let escalated = stored.dispute.effective(&stored.terms, t.at);
        escalated.check(&stored.terms, &t).map_err(|_| refused)?;
        append(sql, &mut stored, due)?;
    }
    append(sql, &mut stored, t)?;
    Ok(stored)
}

/// Applies every escalation due by `now`; returns how many. Only disputes awaiting an answer
/// (whose last transition is `open` or `countered`) are read.
pub(crate) fn escalate_due(sql: &mut impl Sql, now: Instant) -> Result<u64, StoreError> {
    let awaiting = rows(
        sql,
        "SELECT t.dispute_id FROM dispute_transitions t WHERE t.state IN ('open', 'countered') \
         AND t.n = (SELECT MAX(u.n) FROM dispute_transitions u WHERE u.dispute_id = t.dispute_id) ORDER BY t.dispute_id",
        &[],
        |row| unsigned::<u64>(row.int(0)?, || "dispute id".to_owned()),
    )?;
    let mut applied = 0;
    for id in awaiting {
        let mut stored = one(sql, id)?.ok_or(StoreError::UnknownDispute { id })?;
        if let Some(due) = stored.dispute.due(&stored.terms, now) {
            append(sql, &mut stored, due)?;
            applied += 1;
        }
    }
    Ok(applied)
}
