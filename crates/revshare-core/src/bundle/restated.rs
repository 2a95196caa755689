//! `restated/<period>/`: each restatement adjustment against the two statements of the restated
//! month it compares. `before.json` is the month's statement as it stood when this one's month
//! closed, `after.json` the restatement finalised with it; both are logged before the
//! statement, under consecutive sequence numbers of their month, so nothing came between them.
//! The adjustment must be exactly [`restatement`]`(before, after)`. That `after.json` is right
//! about its own records is its own bundle's to prove (`revshare statement export --sequence`).

use serde_json::Value;

use crate::canonical;
use crate::statement::{AdjustmentKind, Statement, restatement};

use super::log::{Leaf, Leaves};
use super::{RESTATED_DIR, RestatedMonth, Run, str_member};

impl Run {
    /// Checks every restatement adjustment of `statement` against the bundle's restated months,
    /// and that the bundle holds no restated month or statement leaf that none of them uses.
    pub(super) fn restatements(&mut self, statement: &Value, restated: &[RestatedMonth], leaves: &Leaves) {
        let Some(main) = &leaves.statement else { return };
        let agreement = statement.get("agreement").and_then(|a| str_member(a, "id"));
        let mut used_months = vec![false; restated.len()];
        let mut used_leaves = vec![false; leaves.earlier_statements.len()];
        let items = statement.get("adjustments").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for (i, item) in items.iter().enumerate().filter(|(_, a)| str_member(a, "kind") == Some(AdjustmentKind::Restatement.as_str())) {
            let period = str_member(item, "reference").unwrap_or_default();
            let what = format!("statement.json adjustments[{i}] ({period})");
            let Some(at) = restated.iter().position(|m| m.period == period) else {
                self.find(what, format!("the statements it compares, in {RESTATED_DIR}/{period}/before.json and after.json"), "none");
                continue;
            };
            used_months[at] = true;
            let month = &restated[at];
            let mut leaf_of = |run: &mut Run, file: &str, bytes: &[u8]| {
                let digest = canonical::digest(bytes);
                let found = leaves.earlier_statements.iter().position(|l| {
                    l.index < main.index
                        && l.str("digest") == Some(digest.as_str())
                        && l.str("period") == Some(period)
                        && l.str("agreement") == agreement
                });
                if let Some(n) = found {
                    used_leaves[n] = true;
                } else {
                    let expected = format!("a statement of {} {period} logged before the statement", agreement.unwrap_or("?"));
                    run.find(format!("{RESTATED_DIR}/{period}/{file}"), expected, format!("{digest}, in no statement leaf of log.json"));
                }
                found.map(|n| &leaves.earlier_statements[n])
            };
            let (before_leaf, after_leaf) = (leaf_of(self, "before.json", &month.before), leaf_of(self, "after.json", &month.after));
            let (Some(before_leaf), Some(after_leaf)) = (before_leaf, after_leaf) else { continue };
            if !self.consecutive(period, before_leaf, after_leaf) {
                continue;
            }
            let decode = |run: &mut Run, file: &str, bytes: &[u8]| match Statement::from_canonical(bytes) {
                Ok(s) => Some(s),
                Err(e) => {
                    let member = if e.path.is_empty() { String::new() } else { format!(" {}", e.path) };
                    run.find(format!("{RESTATED_DIR}/{period}/{file}{member}"), e.expected, e.found);
                    None
                }
            };
            let (Some(before), Some(after)) = (decode(self, "before.json", &month.before), decode(self, "after.json", &month.after)) else {
                continue;
            };
            let expected = match restatement(&before, &after) {
                Ok(Some(adjustment)) => adjustment,
                Ok(None) => {
                    self.find(what, format!("no adjustment: {period}'s usage does not change between the two statements"), "one");
                    continue;
                }
                Err(e) => {
                    self.find(what, "a restatement in range", e.to_string());
                    continue;
                }
            };
            let written = [
                ("reference", Value::from(expected.reference.as_str())),
                ("description", Value::from(expected.description.as_str())),
                ("amount", Value::from(after.currency.format(expected.amount))),
            ];
            let mut good = true;
            for (member, value) in written {
                let found = item.get(member).unwrap_or(&Value::Null);
                if *found != value {
                    let expected = format!("{} (restated/{period}: after.json's usage less before.json's)", super::show(&value));
                    self.find(format!("{what} {member}"), expected, super::show(found));
                    good = false;
                }
            }
            if good {
                self.checked.restatements += 1;
            }
        }
        for (month, _) in restated.iter().zip(&used_months).filter(|(_, used)| !**used) {
            let found = format!("{RESTATED_DIR}/{}/", month.period);
            self.find(RESTATED_DIR, "only the months the statement's restatement adjustments name", found);
        }
        for (leaf, _) in leaves.earlier_statements.iter().zip(&used_leaves).filter(|(_, used)| !**used) {
            self.find(
                leaf.what("statement"),
                format!("the statement's leaf ({}), or one of a restated month's statements", main.index),
                "a statement leaf the bundle does not use",
            );
        }
    }

    /// Whether `after` is the restatement logged next after `before`, of the same month and
    /// agreement, before the bundle's statement; a finding if not.
    fn consecutive(&mut self, period: &str, before: &Leaf, after: &Leaf) -> bool {
        let sequence = |leaf: &Leaf| leaf.value.get("sequence").and_then(Value::as_u64);
        let next = sequence(before).and_then(|s| s.checked_add(1));
        let right = after.str("kind") == Some("restatement") && next.is_some() && sequence(after) == next && before.index < after.index;
        if !right {
            let expected = format!(
                "the restatement of {period} logged next after {} (sequence {})",
                before.what("statement"),
                next.map_or_else(|| "?".to_owned(), |n| n.to_string())
            );
            let found = format!(
                "a {} statement, sequence {}",
                after.str("kind").unwrap_or("?"),
                sequence(after).map_or_else(|| "?".to_owned(), |n| n.to_string())
            );
            self.find(format!("{RESTATED_DIR}/{period}/after.json ({})", after.what("statement")), expected, found);
        }
        right
    }
}
