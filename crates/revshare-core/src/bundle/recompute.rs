//! The aliases, contributions, dispute adjustments and the recomputation of the statement from
//! the records, exactly as `settle` does.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::agreement::Agreement;
use crate::contribution::{Contribution, parse_contribution_line};
use crate::dispute::{Dispute, State, Subject, Terms, transition_from_json};
use crate::ids::is_model_id;
use crate::licence::Lineage;
use crate::money::Currency;
use crate::rollup::Rollup;
use crate::settle::{SettlementInput, settle};
use crate::statement::{Adjustment, AdjustmentKind};
use crate::time::{Instant, Period};
use crate::transparency::RECORD_SALT_BYTES;
use crate::usage_set::UsageSet;

use super::batches::BatchDigests;
use super::log::{Leaf, Leaves};
use super::records::{PartContext, PartOutcome, RecordKey, count_lines, order_expected, read_part, split_parts};
use super::statement::{StatementFile, diff_statement};
use super::{Bundle, MAX_FINDINGS_PER_CATEGORY, Run, SALTS_FILE, kind_of, problems_text, shorten, show, str_member};

/// A small map keyed by text, hashed fast (its keys are few: hosts, and their model ids).
pub(super) type TextMap<V> = HashMap<String, V, foldhash::quality::FixedState>;
/// One host's aliases: host's model id → licensed model id.
pub(super) type ModelAliases = TextMap<String>;
/// Every host's aliases.
pub(super) type Aliases = TextMap<ModelAliases>;

pub(super) const ALIASES_SHAPE: &str = r#"a JSON object {"<host>": {"<host's model id>": "<licensed model id>"}}"#;

/// What the recomputation takes from the bundle besides its records: the hosts' aliases, the
/// derived models' lineage and the agreement's contributions.
pub(super) struct Recompute<'a> {
    pub(super) aliases: &'a Aliases,
    pub(super) lineage: &'a Lineage,
    pub(super) contributions: &'a [Contribution],
}

impl Run {
    /// `models.json`: the lineage the statement's derived lines were priced by; a problem is a
    /// finding, and the recomputation then goes on without it.
    pub(super) fn lineage(&mut self, bytes: &[u8]) -> Lineage {
        Lineage::from_json("models.json", bytes).unwrap_or_else(|e| {
            self.find("models.json", "the lineage of the statement's derived models", e.to_string());
            Lineage::default()
        })
    }

    pub(super) fn aliases(&mut self, bytes: &[u8]) -> Aliases {
        let mut aliases = Aliases::default();
        let members = match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(members)) => members,
            Ok(other) => {
                self.find("aliases.json", ALIASES_SHAPE, kind_of(&other));
                return aliases;
            }
            Err(e) => {
                self.find("aliases.json", ALIASES_SHAPE, format!("not valid JSON: {e}"));
                return aliases;
            }
        };
        for (host, map) in members {
            let Value::Object(map) = map else {
                self.find(format!("aliases.json {host}"), "an object of host model id → licensed model id", kind_of(&map));
                continue;
            };
            let mut entries = ModelAliases::default();
            for (reported, licensed) in map {
                match licensed {
                    Value::String(licensed) if is_model_id(&licensed) => {
                        entries.insert(reported, licensed);
                    }
                    other => self.find(
                        format!("aliases.json {host} {reported}"),
                        "a licensed model id like \"m-70b\"",
                        shorten(&show(&other), 80),
                    ),
                }
            }
            aliases.insert(host, entries);
        }
        aliases
    }

    /// The contributions of the statement's agreement as of the statement: the last state of each
    /// one among the contribution leaves logged before the statement leaf.
    pub(super) fn contributions(&mut self, leaves: &Leaves) -> Vec<Contribution> {
        let Some(statement) = &leaves.statement else { return Vec::new() };
        let agreement = statement.str("agreement");
        let mut ordered: Vec<&Leaf> =
            leaves.contributions.iter().filter(|l| l.index < statement.index && l.str("agreement") == agreement).collect();
        ordered.sort_by_key(|l| l.index);
        let mut latest: BTreeMap<String, Contribution> = BTreeMap::new();
        for leaf in ordered {
            let what = leaf.what("contribution");
            let Some(value) = leaf.value.get("contribution") else {
                self.find(what, "a `contribution` member", "none");
                continue;
            };
            let line = serde_json::to_vec(value).unwrap_or_default();
            match parse_contribution_line(&line) {
                Ok(c) => {
                    latest.insert(c.id.clone(), c);
                }
                Err(problems) => self.find(what, "a contribution (SPEC §5)", problems_text(&problems)),
            }
        }
        self.checked.contributions = u64::try_from(latest.len()).unwrap_or(u64::MAX);
        latest.into_values().collect()
    }

    /// A dispute adjustment must be what the dispute's transitions, logged before the statement,
    /// resolve to under the rules (`crate::dispute`): every step after the opening allowed, the
    /// last an acceptance or a decision, and its amount the one carried. (Whether the opening was
    /// within the window needs the disputed statement's finalisation time, which the bundle does
    /// not hold; the deployment checked it when it logged the opening.)
    pub(super) fn disputes(&mut self, statement: &Value, leaves: &Leaves, agreement: &Agreement) {
        let Some(statement_leaf) = leaves.statement.as_ref().map(|l| l.index) else { return };
        let terms = Terms::of(agreement);
        let items = statement.get("adjustments").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for (i, item) in items.iter().enumerate().filter(|(_, a)| str_member(a, "kind") == Some(AdjustmentKind::Dispute.as_str())) {
            let reference = str_member(item, "reference").unwrap_or_default();
            let what = format!("statement.json adjustments[{i}] ({reference})");
            let Some(id) = crate::dispute::id_of_reference(reference) else {
                self.find(what, "a reference `dispute:<id>`", reference);
                continue;
            };
            let Some(carried) = str_member(item, "amount").and_then(|a| terms.currency.read(a)) else { continue };
            let mut logged: Vec<&Leaf> = leaves
                .disputes
                .iter()
                .filter(|l| l.index < statement_leaf && l.value.get("dispute").and_then(Value::as_u64) == Some(id))
                .collect();
            logged.sort_by_key(|l| l.index);
            let Some(first) = logged.first() else {
                self.find(what, format!("the transitions of dispute {id} in log.json, logged before the statement"), "none");
                continue;
            };
            let subject = Subject {
                agreement: agreement.id().clone(),
                period: Period::parse(first.str("period").unwrap_or_default()).unwrap_or(Period::of(Instant::from_parts(0, 0))),
                sequence: first.value.get("sequence").and_then(Value::as_u64).and_then(|s| u32::try_from(s).ok()).unwrap_or(0),
                digest: first.str("statement").unwrap_or_default().to_owned(),
                line: first.value.get("line").and_then(Value::as_u64).and_then(|l| u32::try_from(l).ok()),
            };
            let mut dispute = Dispute { id, subject, history: Vec::new() };
            let mut good = true;
            for leaf in &logged {
                let leaf_what = leaf.what("dispute");
                if leaf.str("agreement") != Some(agreement.id().as_str()) {
                    self.find(leaf_what, format!("a dispute of agreement {}", agreement.id()), leaf.str("agreement").unwrap_or("none"));
                    good = false;
                    break;
                }
                let Some(transition) = leaf.value.get("transition").and_then(|t| transition_from_json(t, terms.currency)) else {
                    self.find(
                        leaf_what,
                        "a transition {state, party, role, at, reason, amount, evidence}",
                        shorten(&leaf.value.to_string(), 160),
                    );
                    good = false;
                    break;
                };
                let allowed = if dispute.history.is_empty() {
                    (transition.state == State::Open).then_some(()).ok_or_else(|| "a first transition that is not `open`".to_owned())
                } else {
                    dispute.check(&terms, &transition).map_err(|e| e.to_string())
                };
                if let Err(e) = allowed {
                    self.find(leaf_what, format!("a step of dispute {id} that the rules allow"), e);
                    good = false;
                    break;
                }
                dispute.history.push(transition);
            }
            if !good {
                continue;
            }
            match dispute.resolution() {
                Some(amount) if amount == carried => self.checked.disputes += 1,
                resolved => self.find(
                    what,
                    match resolved {
                        Some(amount) => {
                            format!("{} {}, what dispute {id} resolved to", terms.currency.format(amount), terms.currency.code())
                        }
                        None => format!("no adjustment: dispute {id} is {} in the log", dispute.state()),
                    },
                    format!("{} {}", terms.currency.format(carried), terms.currency.code()),
                ),
            }
        }
    }

    /// Reads the statement's adjustments back, for the recomputation (each is checked on its own:
    /// [`Self::disputes`], [`Self::restatements`]).
    pub(super) fn adjustments(&mut self, statement: &Value, currency: Currency) -> Option<Vec<Adjustment>> {
        let Some(items) = statement.get("adjustments").and_then(Value::as_array) else {
            self.find("statement.json adjustments", "an array of adjustments", statement.get("adjustments").map_or("none", kind_of));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut good = true;
        for (i, item) in items.iter().enumerate() {
            let text = |key: &str| str_member(item, key).map(str::to_owned);
            let amount = str_member(item, "amount").and_then(|a| currency.read(a));
            let kind = str_member(item, "kind").and_then(AdjustmentKind::parse);
            match (kind, text("reference"), text("description"), amount) {
                (Some(kind), Some(reference), Some(description), Some(amount)) => {
                    out.push(Adjustment { kind, reference, description, amount })
                }
                _ => {
                    let expected = format!(
                        r#"{{"kind": "restatement" or "dispute", "reference", "description": strings, "amount": money in {} with exactly {} decimals}}"#,
                        currency.code(),
                        currency.minor_units()
                    );
                    self.find(format!("statement.json adjustments[{i}]"), expected, shorten(&item.to_string(), 160));
                    good = false;
                }
            }
        }
        good.then_some(out)
    }

    pub(super) fn records_and_recompute(
        &mut self,
        bundle: &Bundle,
        batches: &BatchDigests,
        given: &Recompute<'_>,
        agreement: Option<&Agreement>,
        statement: &StatementFile,
    ) {
        let Recompute { aliases, lineage, contributions } = *given;
        let period = statement.value.as_ref().map(|s| match str_member(s, "period").map(Period::parse) {
            Some(Ok(period)) => Some(period),
            other => {
                let found = other.map_or("none".to_owned(), |_| show(s.get("period").unwrap_or(&Value::Null)));
                self.find("statement.json period", "a period like \"2026-10\"", found);
                None
            }
        });
        let settling = match (agreement, period.flatten()) {
            (Some(agreement), Some(period)) => Some((agreement, period)),
            _ => None,
        };
        let (rollup, counted) = self.records(&bundle.records, &PartContext { batches, salts: &bundle.salts, aliases, settling });

        let (Some((agreement, period)), Some(value)) = (settling, statement.value.as_ref()) else { return };
        let Some(adjustments) = self.adjustments(value, agreement.currency()) else { return };

        let input =
            SettlementInput { agreement, period, rollup: &rollup, usage_digest: counted.digest(), contributions, adjustments, lineage };
        let recomputed = match settle(&input) {
            Ok(recomputed) => recomputed,
            Err(e) => {
                self.find("statement.json", "a statement recomputed from the bundle's records", format!("settlement failed: {e}"));
                return;
            }
        };
        match recomputed.to_canonical() {
            Ok(bytes) if bytes == bundle.statement => self.checked.recomputed = true,
            Ok(_) => {
                let before = self.findings.len();
                if let Ok(json) = recomputed.to_json() {
                    diff_statement(self, &json, value);
                }
                if self.findings.len() == before {
                    self.find("statement.json", "the statement's RFC 8785 canonical bytes", "the same members written differently");
                }
            }
            Err(e) => self.find("statement.json", "a statement recomputed from the bundle's records", format!("it cannot be encoded: {e}")),
        }
    }

    /// Reads records.jsonl in parts, each on its own scoped thread, and merges the parts in
    /// order: the findings (with their line numbers), the order across part boundaries, the
    /// rollups and the counted digests. The parts are cut at line ends every [`PART_BYTES`]
    /// bytes, whatever the machine, and the merged result does not depend on the cut.
    pub(super) fn records<'a>(&mut self, bytes: &'a [u8], cx: &PartContext<'a>) -> (Rollup, UsageSet) {
        let parts = split_parts(bytes);
        // Where each part starts, in lines: its records' salts start there in records.salts.
        let counts: Vec<u64> = if parts.len() == 1 {
            parts.iter().map(|part| count_lines(part)).collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = parts.iter().map(|part| scope.spawn(move || count_lines(part))).collect();
                handles.into_iter().zip(&parts).map(|(handle, part)| handle.join().unwrap_or_else(|_| count_lines(part))).collect()
            })
        };
        let lines: u64 = counts.iter().sum();
        let salts = u64::try_from(cx.salts.len()).unwrap_or(u64::MAX);
        let wanted = lines.saturating_mul(u64::try_from(RECORD_SALT_BYTES).unwrap_or(u64::MAX));
        if salts != wanted {
            let expected = format!("{RECORD_SALT_BYTES} bytes per record of records.jsonl: {wanted} bytes for {lines} records");
            self.find(SALTS_FILE, expected, format!("{salts} bytes"));
        }
        let starts: Vec<u64> = counts.iter().scan(0u64, |before, n| Some(std::mem::replace(before, *before + n))).collect();
        let outcomes: Vec<Option<PartOutcome<'a>>> = if parts.len() == 1 {
            parts.iter().zip(&starts).map(|(part, &before)| Some(read_part(part, before, cx))).collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> =
                    parts.iter().zip(&starts).map(|(part, &before)| scope.spawn(move || read_part(part, before, cx))).collect();
                handles.into_iter().map(|handle| handle.join().ok()).collect()
            })
        };
        let mut rollup = Rollup::new();
        let mut counted = UsageSet::new();
        let mut lines_before = 0u64;
        let mut last: Option<RecordKey<'a>> = None;
        for outcome in outcomes {
            let Some(mut outcome) = outcome else {
                self.find("records.jsonl", "every record read", format!("a part after line {lines_before} could not be read"));
                continue;
            };
            // The order across the cut: the part's first record must follow the last one before.
            let broken = match (&last, &outcome.first) {
                (Some((host, id)), Some((line, (first_host, first_id))))
                    if (first_host.as_bytes(), first_id.as_bytes()) <= (host.as_bytes(), id.as_bytes()) =>
                {
                    Some((*line, order_expected(host, id), format!("({first_host}, {first_id})")))
                }
                _ => None,
            };
            if let Some((line, expected, found)) = broken {
                outcome.problems += 1;
                outcome.flag(line);
                outcome.findings.push((line, expected, found));
                outcome.findings.sort_by_key(|(line, ..)| *line);
                outcome.findings.truncate(MAX_FINDINGS_PER_CATEGORY);
            }
            self.checked.records += outcome.good();
            let hidden = outcome.problems - outcome.findings.len();
            for (line, expected, found) in outcome.findings {
                self.record(lines_before + line, expected, found);
            }
            self.hidden("records.jsonl", hidden);
            if let Err(e) = rollup.merge(&outcome.rollup) {
                self.find("records.jsonl", "sums that fit", e.to_string());
            }
            counted.union(&outcome.counted);
            lines_before += outcome.lines;
            if outcome.last.is_some() {
                last = outcome.last;
            }
        }
        (rollup, counted)
    }
}
