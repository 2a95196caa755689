//! `statement.json` against its leaf, `agreement.toml` against the agreement leaf, and the
//! recomputed statement compared member by member with the one in the bundle.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::agreement::{Agreement, parse_agreement};
use crate::canonical;

use super::log::{Leaf, Leaves};
use super::{Run, kind_of, show, str_member};

pub(super) struct StatementFile {
    /// `sha256:` of statement.json's bytes.
    pub(super) digest: String,
    pub(super) value: Option<Value>,
}

impl Run {
    pub(super) fn statement(&mut self, bytes: &[u8], leaves: &Leaves) -> StatementFile {
        let digest = canonical::digest(bytes);
        if let Some(leaf) = &leaves.statement {
            let logged = leaf.str("digest").unwrap_or("");
            if logged != digest {
                self.find("statement.json", format!("digest {logged} (log.json leaf {})", leaf.index), &digest);
            }
        }
        let value = match serde_json::from_slice::<Value>(bytes) {
            Ok(value @ Value::Object(_)) => Some(value),
            Ok(other) => {
                self.find("statement.json", "a statement (a JSON object)", kind_of(&other));
                None
            }
            Err(e) => {
                self.find("statement.json", "a statement (a JSON object)", format!("not valid JSON: {e}"));
                None
            }
        };
        if let Some(value) = &value {
            // (statement.json member path, the leaf, the leaf's member it must equal)
            let checks: [(&[&str], Option<&Leaf>, &str); 4] = [
                (&["agreement", "id"], leaves.statement.as_ref(), "agreement"),
                (&["period"], leaves.statement.as_ref(), "period"),
                (&["agreement", "id"], leaves.agreement.as_ref(), "id"),
                (&["agreement", "version"], leaves.agreement.as_ref(), "version"),
            ];
            for (path, leaf, member) in checks {
                let Some(leaf) = leaf else { continue };
                let logged = leaf.value.get(member).unwrap_or(&Value::Null);
                let found = path.iter().try_fold(value, |v, key| v.get(*key)).unwrap_or(&Value::Null);
                if logged != found {
                    let kind = leaf.str("type").unwrap_or("");
                    self.find(format!("statement.json {}", path.join(".")), format!("{} ({})", show(logged), leaf.what(kind)), show(found));
                }
            }
        }
        StatementFile { digest, value }
    }
}

impl Run {
    pub(super) fn agreement(&mut self, text: &str, leaves: &Leaves, statement: Option<&Value>) -> Option<Agreement> {
        let agreement = match parse_agreement("agreement.toml", text) {
            Ok(agreement) => agreement,
            Err(e) => {
                let problems = e.render_plain().lines().filter(|l| !l.starts_with("  help:")).collect::<Vec<_>>().join("; ");
                self.find("agreement.toml", "a valid agreement (SPEC §2)", problems);
                return None;
            }
        };
        let digest = agreement.digest();
        if let Some(leaf) = &leaves.agreement {
            let logged = leaf.str("digest").unwrap_or("");
            if logged != digest {
                self.find("agreement.toml", format!("digest {logged} ({})", leaf.what("agreement")), &digest);
            }
            let source = crate::canonical::digest(text.as_bytes());
            let logged = leaf.str("source").unwrap_or("");
            if logged != source {
                self.find("agreement.toml", format!("text digest {logged} ({}): the text as registered", leaf.what("agreement")), &source);
            }
            let members = [
                ("id", Value::from(agreement.id().as_str())),
                ("version", Value::from(agreement.version())),
                ("licensor", Value::from(agreement.licensor().as_str())),
                ("host", Value::from(agreement.host().as_str())),
            ];
            for (member, value) in members {
                let logged = leaf.value.get(member).unwrap_or(&Value::Null);
                if *logged != value {
                    self.find(format!("{} {member}", leaf.what("agreement")), format!("{} (agreement.toml)", show(&value)), show(logged));
                }
            }
        }
        if let Some(found) = statement.and_then(|s| s.get("agreement")).and_then(|a| a.get("digest"))
            && found.as_str() != Some(digest.as_str())
        {
            self.find("statement.json agreement.digest", format!("{digest} (agreement.toml)"), show(found));
        }
        Some(agreement)
    }
}

/// Reports every member where the recomputed statement and statement.json differ. Lines are
/// matched by (model, use_case, region, exclusive) and named by their place in statement.json.
pub(super) fn diff_statement(run: &mut Run, recomputed: &Value, found: &Value) {
    let (Value::Object(expected), Value::Object(found)) = (recomputed, found) else { return };
    for key in member_names(expected, found) {
        match (expected.get(&key), found.get(&key)) {
            (Some(Value::Array(a)), Some(Value::Array(b))) if key == "lines" => diff_lines(run, a, b),
            (a, b) => diff_value(run, &key, a, b),
        }
    }
}

/// The member names of two objects, each once, sorted.
pub(super) fn member_names(a: &Map<String, Value>, b: &Map<String, Value>) -> Vec<String> {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names.into_iter().cloned().collect()
}

pub(super) fn diff_value(run: &mut Run, path: &str, expected: Option<&Value>, found: Option<&Value>) {
    let recomputed =
        |v: Option<&Value>| v.map_or_else(|| "no such member (recomputed)".to_owned(), |v| format!("{} (recomputed)", show(v)));
    let stated = |v: Option<&Value>| v.map_or_else(|| "no such member (statement)".to_owned(), |v| format!("{} (statement)", show(v)));
    match (expected, found) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for key in member_names(a, b) {
                diff_value(run, &format!("{path}.{key}"), a.get(&key), b.get(&key));
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() && a.iter().chain(b).all(Value::is_object) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_value(run, &format!("{path}[{i}]"), Some(x), Some(y));
            }
        }
        (a, b) if a != b => run.find(path, recomputed(a), stated(b)),
        _ => {}
    }
}

/// `(m-70b customer_service us)`, `(m-70b search eu exclusive)`.
pub(super) fn line_label(line: &Value) -> String {
    let part = |key: &str| str_member(line, key).unwrap_or("?").to_owned();
    let exclusive = if line.get("exclusive") == Some(&Value::Bool(true)) { " exclusive" } else { "" };
    format!("({} {} {}{exclusive})", part("model"), part("use_case"), part("region"))
}

pub(super) fn line_summary(line: &Value) -> String {
    let member = |key: &str| line.get(key).map_or_else(|| "?".to_owned(), show);
    format!("a line of {} records, amount {}", member("records"), member("amount"))
}

pub(super) fn diff_lines(run: &mut Run, expected: &[Value], found: &[Value]) {
    let by_label = |lines: &[Value]| -> BTreeMap<String, usize> { lines.iter().enumerate().map(|(i, l)| (line_label(l), i)).collect() };
    let (want, have) = (by_label(expected), by_label(found));
    for (label, &i) in &have {
        let name = format!("line {} {label}", i + 1);
        match want.get(label) {
            Some(&j) => {
                if let (Some(Value::Object(a)), Some(Value::Object(b))) = (expected.get(j), found.get(i)) {
                    for key in member_names(a, b) {
                        diff_value(run, &format!("{name} {key}"), a.get(&key), b.get(&key));
                    }
                }
            }
            None => {
                run.find(name, "no such line (recomputed)", format!("{} (statement)", found.get(i).map_or_else(String::new, line_summary)))
            }
        }
    }
    for (label, &j) in &want {
        if !have.contains_key(label) {
            let summary = expected.get(j).map_or_else(String::new, line_summary);
            run.find(format!("line {label}"), format!("{summary} (recomputed)"), "no such line (statement)");
        }
    }
    if want.len() == have.len() && want.keys().eq(have.keys()) && want.values().ne(have.values()) {
        run.find("lines", "lines in (model, use_case, region, exclusive) order (recomputed)", "another order (statement)");
    }
}
