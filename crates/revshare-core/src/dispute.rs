//! Disputes (SPEC §8): the rules of the process, as a pure function of a dispute's history.
//!
//! A dispute questions one finalised statement (or one of its lines) and claims an amount. Its
//! state is never stored as such: it is the last of its [`Transition`]s, each recording who,
//! when, why, an amount where one belongs and evidence. The store appends transitions after
//! [`Dispute::check`] (or [`check_open`]) accepts them, and logs each one; this module decides.
//!
//! ```text
//! open ──accept──▶ accepted            (by the other side: the claimed amount)
//!   │──reject──▶ rejected ──escalate──▶ escalated ──decide──▶ decided   (by an arbiter)
//!   │──counter─▶ countered ──accept──▶ accepted   (by the opener: the offered amount)
//!   │                     └──reject──▶ rejected
//!   └─(not answered within the response time)──▶ escalated           (by the deployment)
//! ```
//!
//! Choices where SPEC §8 is silent (docs/DECISIONS.md):
//! - **Direction.** An amount is never negative. What the host owes moves toward the side that
//!   opened: a licensor's claim is owed by the host (+), a host's claim is credited to it (−).
//! - **Deadlines.** The window runs from the statement's finalisation (`dispute_window_days`). An
//!   open dispute and a counter-offer must be answered within `dispute_response_days` (default
//!   14) of the transition that asked; otherwise the dispute escalates by itself, at the deadline
//!   itself (so whoever applies it, the transition is the same). A rejection may be escalated by
//!   either side within the same response time; after that it stands.
//! - **Amounts.** A counter-offer is more than zero and less than the claim; an arbiter decides
//!   between zero and the claim. An accepted or decided amount becomes an adjustment line
//!   ([`Dispute::adjustment`]) of the next statement closed for the agreement.

use std::fmt;

use serde_json::{Value, json};

use crate::agreement::Agreement;
use crate::ids::{AgreementId, PartyId};
use crate::money::Currency;
use crate::statement::{Adjustment, AdjustmentKind};
use crate::time::{Instant, Period};

/// The most evidence items a transition carries, and the longest each may be.
pub const MAX_EVIDENCE: usize = 20;
pub const MAX_EVIDENCE_CHARS: usize = 1_000;
/// The longest reason.
pub const MAX_REASON_CHARS: usize = 4_000;

/// The state a dispute is in: the state its last transition entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Open,
    Countered,
    Accepted,
    Rejected,
    Escalated,
    Decided,
}

impl State {
    pub const ALL: [State; 6] = [State::Open, State::Countered, State::Accepted, State::Rejected, State::Escalated, State::Decided];

    pub fn as_str(&self) -> &'static str {
        match self {
            State::Open => "open",
            State::Countered => "countered",
            State::Accepted => "accepted",
            State::Rejected => "rejected",
            State::Escalated => "escalated",
            State::Decided => "decided",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// What a party does to enter this state, as the CLI and API name it.
    pub fn action(&self) -> &'static str {
        match self {
            State::Open => "open",
            State::Countered => "counter",
            State::Accepted => "accept",
            State::Rejected => "reject",
            State::Escalated => "escalate",
            State::Decided => "decide",
        }
    }

    /// The state an action enters.
    pub fn of_action(action: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.action() == action)
    }

    /// The states a dispute in this state may move to.
    fn next(&self) -> &'static [State] {
        match self {
            State::Open => &[State::Accepted, State::Rejected, State::Countered, State::Escalated],
            State::Countered => &[State::Accepted, State::Rejected, State::Escalated],
            State::Rejected => &[State::Escalated],
            State::Escalated => &[State::Decided],
            State::Accepted | State::Decided => &[],
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// In what capacity someone acts on a dispute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActorRole {
    Licensor,
    Host,
    Arbiter,
    /// The deployment itself: only for an escalation when a deadline passed.
    Deployment,
}

impl ActorRole {
    pub fn as_str(&self) -> &'static str {
        match self {
            ActorRole::Licensor => "licensor",
            ActorRole::Host => "host",
            ActorRole::Arbiter => "arbiter",
            ActorRole::Deployment => "deployment",
        }
    }

    pub fn parse(text: &str) -> Option<ActorRole> {
        [ActorRole::Licensor, ActorRole::Host, ActorRole::Arbiter, ActorRole::Deployment].into_iter().find(|r| r.as_str() == text)
    }

    fn other(&self) -> ActorRole {
        match self {
            ActorRole::Licensor => ActorRole::Host,
            _ => ActorRole::Licensor,
        }
    }
}

impl fmt::Display for ActorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who acted: a party in a role, or the deployment (party `deployment`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub party: String,
    pub role: ActorRole,
}

impl Actor {
    pub fn deployment() -> Actor {
        Actor { party: "deployment".to_owned(), role: ActorRole::Deployment }
    }
}

/// One step of a dispute: the state entered, who, when, why, an amount (the claim when opened,
/// the offer when countered, the amount accepted or decided) and evidence (links or digests).
///
/// An escalation by the licensor or the host may name an `arbiter` that side accepts for the
/// dispute; once both sides name the same one, it decides the dispute beside the arbiters the
/// agreement names (SPEC §9). An escalated dispute is escalated again only to name one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub state: State,
    pub actor: Actor,
    pub at: Instant,
    pub reason: String,
    pub amount: Option<i128>,
    pub evidence: Vec<String>,
    pub arbiter: Option<PartyId>,
}

/// What a dispute questions: a finalised statement, or one of its lines (its index in `lines`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub agreement: AgreementId,
    pub period: Period,
    pub sequence: u32,
    /// The statement's `sha256:` digest.
    pub digest: String,
    pub line: Option<u32>,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "statement {} {} #{}", self.agreement, self.period, self.sequence)?;
        match self.line {
            Some(line) => write!(f, " line {line}"),
            None => Ok(()),
        }
    }
}

/// The terms of the agreement version a statement applied that the process needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terms {
    pub licensor: PartyId,
    pub host: PartyId,
    pub currency: Currency,
    pub window_days: u32,
    pub response_days: u32,
    /// Who decides an escalated dispute: the arbiters the agreement names.
    pub arbiters: Vec<PartyId>,
}

impl Terms {
    pub fn of(agreement: &Agreement) -> Terms {
        Terms {
            licensor: agreement.licensor().clone(),
            host: agreement.host().clone(),
            currency: agreement.currency(),
            window_days: agreement.dispute_window_days(),
            response_days: agreement.dispute_response_days(),
            arbiters: agreement.arbiters().to_vec(),
        }
    }

    /// Whether `party` is one of the arbiters who decide this agreement's escalated disputes.
    pub fn is_arbiter(&self, party: &str) -> bool {
        self.arbiters.iter().any(|a| a.as_str() == party)
    }

    fn party(&self, role: ActorRole) -> Option<&PartyId> {
        match role {
            ActorRole::Licensor => Some(&self.licensor),
            ActorRole::Host => Some(&self.host),
            ActorRole::Arbiter | ActorRole::Deployment => None,
        }
    }
}

/// A dispute: its id, subject and history (the first transition opens it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispute {
    pub id: u64,
    pub subject: Subject,
    pub history: Vec<Transition>,
}

/// Why a transition is refused. Each says what is wrong and what would be right.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DisputeError {
    #[error("{actor} ({role}) cannot {action} a dispute of {subject}: {who}")]
    NotAllowed { actor: String, role: ActorRole, action: &'static str, subject: String, who: String },
    #[error("dispute {id} is {state}, so it cannot be {to}; {next}")]
    Transition { id: u64, state: State, to: State, next: String },
    #[error("{subject} can no longer be disputed: its dispute window of {days} days closed at {closed}")]
    WindowClosed { subject: String, days: u32, closed: Instant },
    #[error("dispute {id} had to be {what} by {deadline}; it {after}")]
    Late { id: u64, what: &'static str, deadline: Instant, after: String },
    #[error("{subject} has {lines} lines, so there is no line {line}; lines are numbered from 0")]
    NoSuchLine { subject: String, line: u32, lines: usize },
    #[error("`{field}` {problem}; {rule}")]
    Field { field: &'static str, problem: String, rule: String },
    #[error("a transition at {at} comes before the last one of dispute {id}, at {last}")]
    OutOfOrder { id: u64, at: Instant, last: Instant },
}

/// `a` or `an` before a state's name.
fn article(state: State) -> &'static str {
    if matches!(state, State::Open | State::Accepted | State::Escalated) { "an" } else { "a" }
}

/// When a statement's dispute window closes: `window_days` after it was finalised.
pub fn window_closes(finalised_at: Instant, terms: &Terms) -> Instant {
    finalised_at.plus_days(terms.window_days)
}

fn field(field: &'static str, problem: impl Into<String>, rule: impl Into<String>) -> DisputeError {
    DisputeError::Field { field, problem: problem.into(), rule: rule.into() }
}

/// The rules every transition's own fields follow: a reason, bounded evidence, an amount exactly
/// where one belongs.
fn check_fields(t: &Transition, amount_rule: Option<(i128, i128, &str)>, currency: Currency) -> Result<(), DisputeError> {
    let reason = t.reason.trim();
    if reason.is_empty() {
        return Err(field("reason", "is empty", "say why, in a sentence or more"));
    }
    if t.reason.chars().count() > MAX_REASON_CHARS {
        return Err(field("reason", format!("has {} characters", t.reason.chars().count()), format!("write at most {MAX_REASON_CHARS}")));
    }
    if t.evidence.len() > MAX_EVIDENCE {
        return Err(field("evidence", format!("has {} items", t.evidence.len()), format!("give at most {MAX_EVIDENCE} links or digests")));
    }
    for item in &t.evidence {
        let chars = item.chars().count();
        if chars == 0 || chars > MAX_EVIDENCE_CHARS || item.chars().any(char::is_control) {
            return Err(field(
                "evidence",
                format!("holds `{}`", item.chars().take(60).collect::<String>()),
                format!("each item is a link or a digest of 1 to {MAX_EVIDENCE_CHARS} characters without control characters"),
            ));
        }
    }
    match (amount_rule, t.amount) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(field("amount", "is given", format!("{} takes no amount", t.state.action()))),
        (Some((_, _, rule)), None) => Err(field("amount", "is missing", rule.to_owned())),
        (Some((low, high, rule)), Some(amount)) if amount < low || amount > high => {
            Err(field("amount", format!("is {}", currency.format(amount)), rule.to_owned()))
        }
        (Some(_), Some(_)) => Ok(()),
    }
}

/// The largest amount a dispute may claim: what an `i64` of minor units holds (stores keep it so).
pub const MAX_CLAIM_MINOR: i128 = 9_223_372_036_854_775_807;

/// Checks the transition that opens a dispute of a statement finalised at `finalised_at` with
/// `lines` lines.
pub fn check_open(terms: &Terms, subject: &Subject, finalised_at: Instant, lines: usize, t: &Transition) -> Result<(), DisputeError> {
    if t.state != State::Open {
        return Err(field("state", format!("is {}", t.state), "a dispute is opened in state open"));
    }
    let party = terms.party(t.actor.role);
    if party.is_none_or(|p| p.as_str() != t.actor.party) {
        return Err(DisputeError::NotAllowed {
            actor: t.actor.party.clone(),
            role: t.actor.role,
            action: "open",
            subject: subject.to_string(),
            who: format!("only its licensor {} or its host {} may", terms.licensor, terms.host),
        });
    }
    let closes = window_closes(finalised_at, terms);
    if t.at >= closes {
        return Err(DisputeError::WindowClosed { subject: subject.to_string(), days: terms.window_days, closed: closes });
    }
    if let Some(line) = subject.line
        && usize::try_from(line).map_or(true, |l| l >= lines)
    {
        return Err(DisputeError::NoSuchLine { subject: subject.to_string(), line, lines });
    }
    let rule = format!("claim more than 0 and at most {}", terms.currency.format(MAX_CLAIM_MINOR));
    check_fields(t, Some((1, MAX_CLAIM_MINOR, &rule)), terms.currency)
}

impl Dispute {
    fn last(&self) -> Option<&Transition> {
        self.history.last()
    }

    /// The state: that of the last transition.
    pub fn state(&self) -> State {
        self.last().map_or(State::Open, |t| t.state)
    }

    /// The side that opened it.
    pub fn opener(&self) -> ActorRole {
        self.history.first().map_or(ActorRole::Host, |t| t.actor.role)
    }

    /// The amount claimed when it was opened.
    pub fn claimed(&self) -> i128 {
        self.history.first().and_then(|t| t.amount).unwrap_or(0)
    }

    /// What accepting it now would settle: the offer when countered, else the claim.
    pub fn on_the_table(&self) -> i128 {
        match self.last() {
            Some(t) if t.state == State::Countered => t.amount.unwrap_or(0),
            _ => self.claimed(),
        }
    }

    /// Until when the last transition may be answered: an open dispute or a counter-offer by the
    /// other side, a rejection by an escalation. `None` once nothing is awaited.
    pub fn respond_by(&self, terms: &Terms) -> Option<Instant> {
        let last = self.last()?;
        matches!(last.state, State::Open | State::Countered | State::Rejected).then(|| last.at.plus_days(terms.response_days))
    }

    /// The escalation that a passed deadline makes by itself, if one is due at `now`: an open
    /// dispute or a counter-offer not answered in time. It is dated at the deadline.
    pub fn due(&self, terms: &Terms, now: Instant) -> Option<Transition> {
        let deadline = self.respond_by(terms)?;
        let state = self.state();
        (matches!(state, State::Open | State::Countered) && now >= deadline).then(|| Transition {
            state: State::Escalated,
            actor: Actor::deployment(),
            at: deadline,
            reason: format!(
                "{} not answered within {} days",
                if state == State::Open { "the dispute" } else { "the counter-offer" },
                terms.response_days
            ),
            amount: None,
            evidence: Vec::new(),
            arbiter: None,
        })
    }

    /// The dispute as it stands at `now`: with the escalation [`Dispute::due`] by then, if any,
    /// as the writer will log it. What a read shows, so that reading never has to write.
    pub fn effective(&self, terms: &Terms, now: Instant) -> Dispute {
        let mut dispute = self.clone();
        if let Some(due) = self.due(terms, now) {
            dispute.history.push(due);
        }
        dispute
    }

    /// The arbiter a side's latest escalation naming one names.
    fn named_by(&self, side: ActorRole) -> Option<&PartyId> {
        self.history.iter().rev().filter(|t| t.actor.role == side).find_map(|t| t.arbiter.as_ref())
    }

    /// The arbiter both sides accepted for this dispute: the one the licensor's and the host's
    /// latest escalations name, when they name the same.
    pub fn accepted_arbiter(&self) -> Option<&PartyId> {
        match (self.named_by(ActorRole::Licensor), self.named_by(ActorRole::Host)) {
            (Some(licensors), Some(hosts)) if licensors == hosts => Some(licensors),
            _ => None,
        }
    }

    /// Whether `party` decides this dispute once it is escalated: an arbiter the agreement
    /// names, or the one both sides accepted for it.
    pub fn may_decide(&self, terms: &Terms, party: &str) -> bool {
        terms.is_arbiter(party) || self.accepted_arbiter().is_some_and(|a| a.as_str() == party)
    }

    /// Who decides, in words: for a refusal.
    fn deciders(&self, terms: &Terms) -> String {
        let mut names: Vec<&str> = terms.arbiters.iter().map(PartyId::as_str).collect();
        names.extend(self.accepted_arbiter().map(PartyId::as_str).filter(|a| !terms.is_arbiter(a)));
        let rule = "only an arbiter the agreement names, or one both sides accepted for the dispute, decides an escalated dispute";
        if names.is_empty() { format!("{rule}, and there is none yet") } else { format!("{rule} ({})", names.join(", ")) }
    }

    /// Checks the arbiter an escalation names: never a side of the agreement, and named once by
    /// each side until both sides name the same.
    fn check_arbiter(&self, terms: &Terms, t: &Transition, arbiter: &PartyId) -> Result<(), DisputeError> {
        let named = || format!("names {arbiter}");
        if !matches!(t.actor.role, ActorRole::Licensor | ActorRole::Host) {
            return Err(field("arbiter", named(), "only the licensor or the host names the arbiter it accepts for a dispute"));
        }
        if *arbiter == terms.licensor || *arbiter == terms.host {
            return Err(field("arbiter", named(), "an arbiter is neither side of the agreement"));
        }
        if let Some(accepted) = self.accepted_arbiter() {
            return Err(field("arbiter", named(), format!("both sides already accepted {accepted} for dispute {}", self.id)));
        }
        if self.named_by(t.actor.role) == Some(arbiter) {
            return Err(field("arbiter", named(), "this side named it already; the other side accepts it by naming it too"));
        }
        Ok(())
    }

    /// Checks a transition a party asks for. (Escalations [`Dispute::due`] are applied first.)
    pub fn check(&self, terms: &Terms, t: &Transition) -> Result<(), DisputeError> {
        let state = self.state();
        if let Some(arbiter) = &t.arbiter {
            if t.state != State::Escalated {
                return Err(field("arbiter", format!("names {arbiter}"), "only an escalation names an arbiter"));
            }
            self.check_arbiter(terms, t, arbiter)?;
        }
        // An escalated dispute is escalated again by a side only to name the arbiter it accepts.
        let naming = state == State::Escalated && t.state == State::Escalated && t.actor.role != ActorRole::Deployment;
        if naming && t.arbiter.is_none() {
            return Err(field(
                "arbiter",
                "is missing",
                "an escalated dispute is escalated again only to name the arbiter a side accepts for it",
            ));
        }
        if !naming && !state.next().contains(&t.state) {
            let next = match state.next() {
                [] => format!("it is resolved: nothing follows {state}"),
                next => {
                    format!("{} {state} dispute can be {}", article(state), next.iter().map(State::as_str).collect::<Vec<_>>().join(" or "))
                }
            };
            return Err(DisputeError::Transition { id: self.id, state, to: t.state, next });
        }
        if let Some(last) = self.last()
            && t.at < last.at
        {
            return Err(DisputeError::OutOfOrder { id: self.id, at: t.at, last: last.at });
        }
        let opener = self.opener();
        // Who may, and the rule in words.
        let (may, who): (&[ActorRole], String) = match (state, t.state) {
            (State::Escalated, State::Escalated) => (
                &[ActorRole::Licensor, ActorRole::Host],
                "only the licensor or the host names the arbiter it accepts for an escalated dispute".to_owned(),
            ),
            (State::Open | State::Countered, State::Escalated) => (
                &[ActorRole::Deployment],
                format!(
                    "{} {state} dispute escalates by itself when it is not answered within {} days",
                    article(state),
                    terms.response_days
                ),
            ),
            (State::Open, _) => (&[opener.other()], format!("only the {} answers a dispute the {opener} opened", opener.other())),
            (State::Countered, _) => (&[opener], format!("only the {opener}, who opened it, answers a counter-offer")),
            (State::Rejected, _) => {
                (&[ActorRole::Licensor, ActorRole::Host], "only the licensor or the host escalates a rejected dispute".to_owned())
            }
            (State::Escalated | State::Accepted | State::Decided, _) => (&[ActorRole::Arbiter], self.deciders(terms)),
        };
        let party_ok = match t.actor.role {
            ActorRole::Licensor | ActorRole::Host => terms.party(t.actor.role).is_some_and(|p| p.as_str() == t.actor.party),
            ActorRole::Arbiter => self.may_decide(terms, &t.actor.party),
            ActorRole::Deployment => self.due(terms, t.at).as_ref() == Some(t),
        };
        if !may.contains(&t.actor.role) || !party_ok {
            return Err(DisputeError::NotAllowed {
                actor: t.actor.party.clone(),
                role: t.actor.role,
                action: t.state.action(),
                subject: self.subject.to_string(),
                who,
            });
        }
        if t.actor.role != ActorRole::Deployment
            && let Some(deadline) = self.respond_by(terms)
            && t.at >= deadline
        {
            let what = if state == State::Rejected { "escalated" } else { "answered" };
            let after =
                if state == State::Rejected { "stands as rejected".to_owned() } else { "escalated by itself at that time".to_owned() };
            return Err(DisputeError::Late { id: self.id, what, deadline, after });
        }
        let claimed = self.claimed();
        let offered = self.history.iter().rev().find(|h| h.state == State::Countered).and_then(|h| h.amount).unwrap_or(0);
        let counter_rule = format!("offer more than 0 and less than the {} claimed", terms.currency.format(claimed));
        let accept_rule = format!("accepting takes the {} claimed", terms.currency.format(claimed));
        let decide_rule = format!("decide an amount from 0 to the {} claimed", terms.currency.format(claimed));
        let rule = match (state, t.state) {
            (_, State::Countered) => Some((1, claimed - 1, counter_rule.as_str())),
            (State::Open, State::Accepted) => Some((claimed, claimed, accept_rule.as_str())),
            (State::Countered, State::Accepted) => {
                let rule = format!("accepting takes the {} offered", terms.currency.format(offered));
                return check_fields(t, Some((offered, offered, &rule)), terms.currency);
            }
            (_, State::Decided) => Some((0, claimed, decide_rule.as_str())),
            _ => None,
        };
        check_fields(t, rule, terms.currency)
    }

    /// What the dispute changes in what the host owes, once accepted or decided: the amount,
    /// owed by the host when the licensor opened it and credited to it when the host did.
    /// `None` while unresolved, when rejected, or when decided at zero.
    pub fn resolution(&self) -> Option<i128> {
        let last = self.last()?;
        let amount = match last.state {
            State::Accepted | State::Decided => last.amount?,
            _ => return None,
        };
        if amount == 0 {
            return None;
        }
        Some(if self.opener() == ActorRole::Licensor { amount } else { -amount })
    }

    /// The reference its adjustment line carries: [`reference`] of its id.
    pub fn reference(&self) -> String {
        reference(self.id)
    }

    /// The adjustment line of the next statement, once resolved with an amount.
    pub fn adjustment(&self) -> Option<Adjustment> {
        let amount = self.resolution()?;
        Some(Adjustment {
            kind: AdjustmentKind::Dispute,
            reference: self.reference(),
            description: format!("dispute {} of {} by the {}, {}", self.id, self.subject, self.opener(), self.state()),
            amount,
        })
    }

    /// The JSON view (CLI `--format json`, the API): the subject, state, amounts and history.
    pub fn to_json(&self, terms: &Terms) -> Value {
        let money = |minor: i128| terms.currency.format(minor);
        json!({
            "id": self.id,
            "agreement": self.subject.agreement.as_str(),
            "period": self.subject.period.to_string(),
            "sequence": self.subject.sequence,
            "statement_digest": self.subject.digest,
            "line": self.subject.line,
            "currency": terms.currency.code(),
            "opened_by": self.opener().as_str(),
            "claimed": money(self.claimed()),
            "state": self.state().as_str(),
            "respond_by": self.respond_by(terms).map(|t| t.to_string()),
            "adjustment": self.resolution().map(money),
            "arbiter": self.accepted_arbiter().map(PartyId::as_str),
            "history": self.history.iter().map(|t| transition_json(t, terms.currency)).collect::<Vec<_>>(),
        })
    }
}

/// What a party asks for, as the CLI and the API take it: an amount as text in the agreement's
/// currency, and none for an acceptance, which takes the amount on the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub state: State,
    pub actor: Actor,
    pub reason: String,
    pub amount: Option<String>,
    pub evidence: Vec<String>,
    /// For an escalation: the arbiter this side accepts for the dispute.
    pub arbiter: Option<PartyId>,
}

impl Request {
    /// The transition asked for at `at`, of `dispute` (`None` to open one).
    pub fn transition(self, at: Instant, currency: Currency, dispute: Option<&Dispute>) -> Result<Transition, DisputeError> {
        let amount = match (&self.amount, self.state, dispute) {
            (Some(text), _, _) => Some(currency.parse_amount(text, "the amount").map_err(|e| field("amount", "cannot be read", e))?),
            (None, State::Accepted, Some(d)) => Some(d.on_the_table()),
            (None, _, _) => None,
        };
        Ok(Transition {
            state: self.state,
            actor: self.actor,
            at,
            reason: self.reason,
            amount,
            evidence: self.evidence,
            arbiter: self.arbiter,
        })
    }
}

/// Reads [`transition_json`]'s form back; `None` if any member is missing or not valid.
pub fn transition_from_json(value: &Value, currency: Currency) -> Option<Transition> {
    let text = |key: &str| value.get(key).and_then(Value::as_str);
    let amount = match value.get("amount")? {
        Value::Null => None,
        Value::String(a) => Some(currency.parse_amount(a, "the amount").ok()?),
        _ => return None,
    };
    let evidence = value.get("evidence")?.as_array()?.iter().map(|e| e.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>()?;
    let arbiter = match value.get("arbiter") {
        None => None,
        Some(named) => Some(PartyId::parse(named.as_str()?).ok()?),
    };
    Some(Transition {
        state: State::parse(text("state")?)?,
        actor: Actor { party: text("party")?.to_owned(), role: ActorRole::parse(text("role")?)? },
        at: Instant::parse_rfc3339(text("at")?).ok()?,
        reason: text("reason")?.to_owned(),
        amount,
        evidence,
        arbiter,
    })
}

/// `dispute:<id>`: what a dispute's adjustment line refers to it by, and the subject its log
/// leaves are found by (so a bundle finds a carried dispute's leaves from the adjustment).
pub fn reference(id: u64) -> String {
    format!("dispute:{id}")
}

/// The dispute id a [`reference`] names.
pub fn id_of_reference(reference: &str) -> Option<u64> {
    reference.strip_prefix("dispute:")?.parse().ok()
}

/// A transition as JSON: in [`Dispute::to_json`] and in its log leaf. `arbiter` is a member only
/// when one is named, so the leaves of steps that name none keep their bytes.
pub fn transition_json(t: &Transition, currency: Currency) -> Value {
    let mut value = json!({
        "state": t.state.as_str(),
        "party": t.actor.party,
        "role": t.actor.role.as_str(),
        "at": t.at.to_string(),
        "reason": t.reason,
        "amount": t.amount.map(|a| currency.format(a)),
        "evidence": t.evidence,
    });
    if let (Some(arbiter), Some(members)) = (&t.arbiter, value.as_object_mut()) {
        members.insert("arbiter".to_owned(), Value::from(arbiter.as_str()));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> Terms {
        Terms {
            licensor: PartyId::parse("lic").unwrap_or_else(|_| unreachable!()),
            host: PartyId::parse("host").unwrap_or_else(|_| unreachable!()),
            currency: Currency::parse("USD").unwrap_or_else(|_| unreachable!()),
            window_days: 30,
            response_days: 14,
            arbiters: vec![PartyId::parse("arb").unwrap_or_else(|_| unreachable!())],
        }
    }

    fn at(day: u32) -> Instant {
        Instant::from_date(2026, 11, day).unwrap_or_else(|| unreachable!())
    }

    fn step(state: State, party: &str, role: ActorRole, day: u32, amount: Option<i128>) -> Transition {
        Transition {
            state,
            actor: Actor { party: party.to_owned(), role },
            at: at(day),
            reason: "because".to_owned(),
            amount,
            evidence: vec![],
            arbiter: None,
        }
    }

    fn opened(by: ActorRole, claim: i128) -> Dispute {
        let party = if by == ActorRole::Host { "host" } else { "lic" };
        Dispute {
            id: 7,
            subject: Subject {
                agreement: AgreementId::parse("a1").unwrap_or_else(|_| unreachable!()),
                period: Period::parse("2026-10").unwrap_or_else(|_| unreachable!()),
                sequence: 1,
                digest: "sha256:00".to_owned(),
                line: None,
            },
            history: vec![step(State::Open, party, by, 2, Some(claim))],
        }
    }

    #[test]
    fn the_other_side_answers_and_the_amount_moves_toward_the_opener() {
        let t = terms();
        let mut d = opened(ActorRole::Host, 10_000);
        assert!(d.check(&t, &step(State::Accepted, "host", ActorRole::Host, 3, Some(10_000))).is_err(), "the opener cannot accept");
        let accept = step(State::Accepted, "lic", ActorRole::Licensor, 3, Some(10_000));
        assert_eq!(d.check(&t, &accept), Ok(()));
        d.history.push(accept);
        assert_eq!(d.resolution(), Some(-10_000), "a host's claim is a credit");
        let mut d = opened(ActorRole::Licensor, 500);
        d.history.push(step(State::Countered, "host", ActorRole::Host, 3, Some(200)));
        assert!(d.check(&t, &step(State::Accepted, "lic", ActorRole::Licensor, 4, Some(500))).is_err(), "the offer, not the claim");
        let accept = step(State::Accepted, "lic", ActorRole::Licensor, 4, Some(200));
        assert_eq!(d.check(&t, &accept), Ok(()));
        d.history.push(accept);
        assert_eq!(d.resolution(), Some(200));
    }

    #[test]
    fn unanswered_disputes_escalate_at_their_deadline_and_late_answers_are_refused() {
        let t = terms();
        let d = opened(ActorRole::Host, 100);
        assert_eq!(d.due(&t, at(15)), None);
        let due = d.due(&t, at(20)).unwrap_or_else(|| unreachable!());
        assert_eq!((due.state, due.at), (State::Escalated, at(16)));
        assert_eq!(d.check(&t, &due), Ok(()));
        let late = d.check(&t, &step(State::Accepted, "lic", ActorRole::Licensor, 17, Some(100)));
        assert!(matches!(late, Err(DisputeError::Late { .. })), "{late:?}");
        let early = Transition { at: at(10), ..due };
        assert!(d.check(&t, &early).is_err(), "the deployment escalates only at the deadline");
    }

    #[test]
    fn transitions_read_back_from_their_json() {
        let t = terms();
        let mut step = step(State::Countered, "lic", ActorRole::Licensor, 3, Some(1_234));
        step.evidence = vec!["sha256:ab".to_owned()];
        assert_eq!(transition_from_json(&transition_json(&step, t.currency), t.currency), Some(step.clone()));
        let mut value = transition_json(&step, t.currency);
        value["amount"] = Value::from(12.34);
        assert_eq!(transition_from_json(&value, t.currency), None, "an amount is a string");
    }

    #[test]
    fn the_effective_dispute_shows_an_escalation_due_without_changing_the_dispute() {
        let t = terms();
        let d = opened(ActorRole::Host, 1_000);
        // Opened on the 2nd, 14 days to answer: due on the 16th.
        assert_eq!(d.effective(&t, at(15)), d, "nothing due yet");
        let seen = d.effective(&t, at(20));
        assert_eq!((seen.state(), d.state()), (State::Escalated, State::Open));
        assert_eq!(seen.history.last().map(|e| e.at), Some(at(16)), "dated at the deadline");
        assert_eq!(seen.effective(&t, at(25)), seen, "an escalated dispute waits for its arbiter");
    }

    #[test]
    fn arbiters_decide_within_the_claim_and_nothing_follows_a_decision() {
        let t = terms();
        let mut d = opened(ActorRole::Licensor, 1_000);
        d.history.push(step(State::Rejected, "host", ActorRole::Host, 3, None));
        assert!(d.check(&t, &step(State::Decided, "arb", ActorRole::Arbiter, 4, Some(10))).is_err(), "escalate first");
        d.history.push(step(State::Escalated, "lic", ActorRole::Licensor, 4, None));
        let too_much = d.check(&t, &step(State::Decided, "arb", ActorRole::Arbiter, 5, Some(1_001)));
        assert_eq!(too_much.map_err(|e| e.to_string()), Err("`amount` is 10.01; decide an amount from 0 to the 10.00 claimed".to_owned()));
        assert!(d.check(&t, &step(State::Decided, "lic", ActorRole::Licensor, 5, Some(10))).is_err());
        // An arbiter the agreement does not name decides nothing; nor does anyone when it names none.
        let stranger = d.check(&t, &step(State::Decided, "arb-2", ActorRole::Arbiter, 5, Some(10))).map_err(|e| e.to_string());
        assert!(stranger.is_err_and(|e| e.ends_with(
            "only an arbiter the agreement names, or one both sides accepted for the dispute, decides an escalated dispute (arb)"
        )));
        let unnamed = Terms { arbiters: Vec::new(), ..t.clone() };
        assert!(d.check(&unnamed, &step(State::Decided, "arb", ActorRole::Arbiter, 5, Some(10))).is_err());
        d.history.push(step(State::Decided, "arb", ActorRole::Arbiter, 5, Some(0)));
        assert_eq!(d.resolution(), None, "decided at zero: no adjustment");
        let after = d.check(&t, &step(State::Escalated, "lic", ActorRole::Licensor, 6, None)).map_err(|e| e.to_string());
        assert_eq!(after, Err("dispute 7 is decided, so it cannot be escalated; it is resolved: nothing follows decided".to_owned()));
    }

    #[test]
    fn an_arbiter_both_sides_name_decides_the_dispute() {
        let t = Terms { arbiters: Vec::new(), ..terms() };
        let named = |state, party: &str, role, day, arbiter: &str| Transition {
            arbiter: Some(PartyId::parse(arbiter).unwrap_or_else(|_| unreachable!())),
            ..step(state, party, role, day, None)
        };
        let mut d = opened(ActorRole::Host, 1_000);
        d.history.push(step(State::Rejected, "lic", ActorRole::Licensor, 3, None));
        let refused = |d: &Dispute, step: &Transition| d.check(&t, step).map_err(|e| e.to_string()).err().unwrap_or_default();
        assert_eq!(
            refused(&d, &named(State::Rejected, "lic", ActorRole::Licensor, 4, "judge")),
            "`arbiter` names judge; only an escalation names an arbiter"
        );
        assert!(
            refused(&d, &named(State::Escalated, "host", ActorRole::Host, 4, "lic"))
                .ends_with("an arbiter is neither side of the agreement")
        );
        let escalation = named(State::Escalated, "host", ActorRole::Host, 4, "judge");
        assert_eq!(d.check(&t, &escalation), Ok(()));
        d.history.push(escalation);
        assert_eq!(d.accepted_arbiter(), None, "one side's word is not enough");
        assert!(refused(&d, &step(State::Decided, "judge", ActorRole::Arbiter, 5, Some(10))).ends_with("and there is none yet"));
        assert!(
            refused(&d, &named(State::Escalated, "host", ActorRole::Host, 5, "judge"))
                .ends_with("this side named it already; the other side accepts it by naming it too")
        );
        assert!(refused(&d, &step(State::Escalated, "lic", ActorRole::Licensor, 5, None)).starts_with("`arbiter` is missing"));
        assert!(
            refused(&d, &named(State::Escalated, "host", ActorRole::Licensor, 5, "judge")).starts_with("host (licensor) cannot escalate")
        );
        // The licensor first proposes another; the host does not follow; then it names the host's.
        let other = named(State::Escalated, "lic", ActorRole::Licensor, 5, "sage");
        assert_eq!(d.check(&t, &other), Ok(()));
        d.history.push(other);
        assert_eq!(d.accepted_arbiter(), None);
        let agreed = named(State::Escalated, "lic", ActorRole::Licensor, 6, "judge");
        assert_eq!(d.check(&t, &agreed), Ok(()));
        d.history.push(agreed);
        assert_eq!(d.accepted_arbiter().map(PartyId::as_str), Some("judge"));
        assert_eq!(d.state(), State::Escalated);
        assert!(
            refused(&d, &named(State::Escalated, "host", ActorRole::Host, 7, "sage"))
                .ends_with("both sides already accepted judge for dispute 7")
        );
        assert!(refused(&d, &step(State::Decided, "sage", ActorRole::Arbiter, 7, Some(10))).ends_with("(judge)"));
        let decision = step(State::Decided, "judge", ActorRole::Arbiter, 7, Some(400));
        assert_eq!(d.check(&t, &decision), Ok(()));
        d.history.push(decision);
        assert_eq!((d.resolution(), d.to_json(&t)["arbiter"].as_str()), (Some(-400), Some("judge")));
        // The steps that name an arbiter carry it in their JSON, and read back.
        let json = transition_json(&d.history[2], t.currency);
        assert_eq!(json["arbiter"], "judge");
        assert_eq!(transition_from_json(&json, t.currency).as_ref(), Some(&d.history[2]));
        assert!(transition_json(&d.history[1], t.currency).get("arbiter").is_none(), "the leaves of other steps keep their bytes");
    }
}
