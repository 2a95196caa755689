//! Contributions (SPEC §5): maintenance, updates, improvements a party made to the licensed
//! models or their serving. Offline files carry the final state as `"accepted": true|false`.

use std::borrow::Cow;

use crate::agreement::parse_date_or_time;
use crate::ids::{PartyId, is_record_id, is_use_case};
use crate::json::{self, JsonValue};
use crate::time::{Instant, Period};
use crate::usage::RecordProblem;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contribution {
    pub id: String,
    pub party: PartyId,
    pub kind: String,
    /// The day (midnight UTC) or instant it was made; it counts in the month it falls in.
    pub date: Instant,
    pub description: String,
    pub evidence: Option<String>,
    pub accepted: bool,
}

impl Contribution {
    pub fn counts_in(&self, period: Period) -> bool {
        self.accepted && period.contains(self.date)
    }

    /// The JSON Lines form, which [`parse_contribution_line`] reads back as an equal contribution
    /// (the date is written as the instant it stands for).
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::json!({
            "id": self.id,
            "party": self.party.as_str(),
            "kind": self.kind,
            "date": self.date.to_string(),
            "description": self.description,
            "accepted": self.accepted,
        });
        if let (Some(evidence), Some(map)) = (&self.evidence, object.as_object_mut()) {
            map.insert("evidence".to_owned(), serde_json::Value::String(evidence.clone()));
        }
        object
    }
}

/// Parses one JSON Lines contribution.
pub fn parse_contribution_line(line: &[u8]) -> Result<Contribution, Vec<RecordProblem>> {
    let members = json::parse_object(line)
        .map_err(|e| vec![RecordProblem { offset: e.offset, field: None, message: format!("not valid JSON: {}", e.message) }])?;
    let mut problems = Vec::new();
    let mut problem = |offset: usize, field: &str, message: String| {
        problems.push(RecordProblem { offset, field: Some(field.to_owned()), message });
    };
    let (mut id, mut party, mut kind, mut date, mut description, mut evidence, mut accepted) = (None, None, None, None, None, None, None);
    let mut seen: Vec<String> = Vec::new();
    for m in members {
        let key = m.key.as_ref();
        if seen.iter().any(|s| s == key) {
            problem(m.key_offset, key, format!("field `{key}` appears twice"));
            continue;
        }
        seen.push(key.to_owned());
        let text: Option<Cow<'_, str>> = match &m.value {
            JsonValue::String(s) => Some(s.clone()),
            _ => None,
        };
        let at = m.value_offset;
        match (key, text) {
            ("id", Some(s)) if is_record_id(&s) => id = Some(s.into_owned()),
            ("party", Some(s)) => match PartyId::parse(&s) {
                Ok(p) => party = Some(p),
                Err(e) => problem(at, key, format!("field `party`: {e}")),
            },
            ("kind", Some(s)) if is_use_case(&s) => kind = Some(s.into_owned()),
            ("date", Some(s)) => match parse_date_or_time(&s) {
                Some(d) => date = Some(d),
                None => problem(at, key, format!("field `date` is \"{s}\"; it must be a date like \"2026-10-12\" or an RFC 3339 time")),
            },
            ("description", Some(s)) => description = Some(s.into_owned()),
            ("evidence", Some(s)) => evidence = Some(s.into_owned()),
            ("accepted", _) => match m.value {
                JsonValue::Bool(b) => accepted = Some(b),
                ref other => problem(at, key, format!("field `accepted` is {}; it must be true or false", other.kind())),
            },
            ("id", _) => problem(at, key, "field `id` must be a string of 1-128 of A-Z a-z 0-9 . _ : -".to_owned()),
            ("kind", _) => problem(at, key, "field `kind` must be a string like \"maintenance\" (a-z 0-9 _)".to_owned()),
            ("party" | "date" | "description" | "evidence", None) => {
                problem(at, key, format!("field `{key}` is {}; it must be a string", m.value.kind()))
            }
            _ => problem(
                m.key_offset,
                key,
                format!("unknown field `{key}`; a contribution has id, party, kind, date, description, evidence (optional) and accepted"),
            ),
        }
    }
    let missing = [
        ("id", id.is_none()),
        ("party", party.is_none()),
        ("kind", kind.is_none()),
        ("date", date.is_none()),
        ("description", description.is_none()),
        ("accepted", accepted.is_none()),
    ];
    for (name, absent) in missing {
        if absent && !seen.iter().any(|s| s == name) {
            problem(0, name, format!("missing field `{name}`"));
        }
    }
    match (id, party, kind, date, description, accepted) {
        (Some(id), Some(party), Some(kind), Some(date), Some(description), Some(accepted)) if problems.is_empty() => {
            Ok(Contribution { id, party, kind, date, description, evidence, accepted })
        }
        _ => Err(problems),
    }
}
