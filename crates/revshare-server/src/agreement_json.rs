//! Agreements sent as JSON (`POST /v1/agreements` with `application/json`): the same structure
//! as the SPEC §2 TOML file, converted here to TOML text that then takes the one path every
//! agreement takes (`parse_agreement`, `Store::add_agreement`). So there is one parser and one
//! set of rules, and what is stored, served back and put in bundles is always TOML: the
//! conversion, with a first comment line saying it was one.
//!
//! The body is read with the core's JSON reader, which keeps each number's exact text. A number
//! with a fraction or an exponent is refused as the TOML parser refuses a float (decimals are
//! strings: "write it as a string"), and `null` is refused (TOML has none: leave the key out);
//! an integer is written as the TOML integer of the same text. Objects become tables, arrays of
//! objects arrays of tables (`[[exclusivity]]`), other arrays and objects inside them inline
//! arrays and inline tables. Keys keep their order.
//!
//! Every problem names its field as a path (`pricing.rates.search[1]`, `exclusivity[0].uplift`)
//! and its line and column in the JSON body. The TOML parser's problems are mapped back: each
//! line of the generated TOML remembers the field it was written for and where that field is in
//! the body (an array element is located at its array).

use revshare_core::agreement::line_column;
use revshare_core::json::{JsonValue, Member, parse_object};

use crate::problem::ProblemItem;

/// The first line of a converted agreement.
const HEADER: &str = "# registered as application/json (POST /v1/agreements); this TOML is its conversion";

/// What one line of the generated TOML was written for.
#[derive(Debug)]
struct Origin {
    /// The field the line holds (empty for the first line, the whole object).
    field: String,
    /// The table the line is in, or opens (a header line).
    table: String,
    /// The byte offset in the JSON body of the field's value.
    offset: usize,
}

/// An agreement converted to TOML, remembering where each line came from.
#[derive(Debug)]
pub(crate) struct Converted {
    pub toml: String,
    origins: Vec<Origin>,
}

impl Converted {
    /// The field and the place in `body` of a problem at `toml_offset` of the TOML text.
    /// A missing key is reported at the table that misses it; its field is the key in that table.
    pub(crate) fn locate(&self, body: &str, toml_offset: usize, message: &str) -> ProblemItem {
        let (toml_line, _) = line_column(&self.toml, toml_offset);
        let origin = self.origins.get(toml_line.saturating_sub(1)).or(self.origins.first());
        let (field, offset) = match origin {
            Some(origin) => {
                let missing = message.strip_prefix("missing key `").and_then(|rest| rest.split_once('`')).map(|(key, _)| key);
                let field = match missing {
                    Some(key) => join(&origin.table, key),
                    None => origin.field.clone(),
                };
                (field, origin.offset)
            }
            None => (String::new(), 0),
        };
        let (line, column) = line_column(body, offset);
        ProblemItem {
            line: u64::try_from(line).ok(),
            column: u64::try_from(column).ok(),
            field: (!field.is_empty()).then_some(field),
            message: message.to_owned(),
            ..ProblemItem::default()
        }
    }
}

/// Converts a JSON agreement to TOML text; every problem of the JSON itself otherwise.
pub(crate) fn to_toml(body: &str) -> Result<Converted, Vec<ProblemItem>> {
    let members = parse_object(body.as_bytes()).map_err(|e| {
        let (line, column) = line_column(body, e.offset);
        vec![ProblemItem {
            line: u64::try_from(line).ok(),
            column: u64::try_from(column).ok(),
            message: format!("{} (an agreement is one JSON object with the keys of the SPEC §2 TOML file)", e.message),
            ..ProblemItem::default()
        }]
    })?;
    let start = body.len() - body.trim_start().len();
    let mut emitter = Emitter { body, toml: String::new(), origins: Vec::new(), problems: Vec::new() };
    emitter.line(HEADER.to_owned(), "", "", start);
    emitter.table(&members, "", "");
    if emitter.problems.is_empty() { Ok(Converted { toml: emitter.toml, origins: emitter.origins }) } else { Err(emitter.problems) }
}

fn join(table: &str, key: &str) -> String {
    if table.is_empty() { key.to_owned() } else { format!("{table}.{key}") }
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when it can be, quoted otherwise.
fn key(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        text.to_owned()
    } else {
        quote(text)
    }
}

/// Whether a value is written as `[table]` sections rather than inline.
fn is_table_array(value: &JsonValue<'_>) -> bool {
    matches!(value, JsonValue::Array(items) if !items.is_empty() && items.iter().all(|i| matches!(i, JsonValue::Object(_))))
}

struct Emitter<'a> {
    body: &'a str,
    toml: String,
    origins: Vec<Origin>,
    problems: Vec<ProblemItem>,
}

impl Emitter<'_> {
    fn line(&mut self, text: String, field: &str, table: &str, offset: usize) {
        self.toml.push_str(&text);
        self.toml.push('\n');
        self.origins.push(Origin { field: field.to_owned(), table: table.to_owned(), offset });
    }

    fn problem(&mut self, field: &str, offset: usize, message: String) {
        let (line, column) = line_column(self.body, offset);
        self.problems.push(ProblemItem {
            line: u64::try_from(line).ok(),
            column: u64::try_from(column).ok(),
            field: Some(field.to_owned()),
            message,
            ..ProblemItem::default()
        });
    }

    /// The members of the table at `path` (`header`: its TOML name): plain keys first, then
    /// sub-tables and arrays of tables, as TOML requires.
    fn table(&mut self, members: &[Member<'_>], path: &str, header: &str) {
        for member in members.iter().filter(|m| !matches!(m.value, JsonValue::Object(_)) && !is_table_array(&m.value)) {
            let field = join(path, &member.key);
            let value = self.inline(&member.value, &field, member.value_offset);
            self.line(format!("{} = {value}", key(&member.key)), &field, path, member.value_offset);
        }
        for member in members {
            let field = join(path, &member.key);
            let name = if header.is_empty() { key(&member.key) } else { format!("{header}.{}", key(&member.key)) };
            match &member.value {
                JsonValue::Object(inner) => {
                    self.line(String::new(), &field, &field, member.value_offset);
                    self.line(format!("[{name}]"), &field, &field, member.value_offset);
                    self.table(inner, &field, &name);
                }
                JsonValue::Array(items) if is_table_array(&member.value) => {
                    for (i, item) in items.iter().enumerate() {
                        let element = format!("{field}[{i}]");
                        if let JsonValue::Object(inner) = item {
                            self.line(String::new(), &element, &element, member.value_offset);
                            self.line(format!("[[{name}]]"), &element, &element, member.value_offset);
                            self.table(inner, &element, &name);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// A value written on one line; `field` names it in problems.
    fn inline(&mut self, value: &JsonValue<'_>, field: &str, offset: usize) -> String {
        match value {
            JsonValue::String(text) => quote(text),
            JsonValue::Number(text) => {
                if text.contains(['.', 'e', 'E']) {
                    self.problem(
                        field,
                        offset,
                        format!(
                            "`{field}` is the JSON number {text}, with a fraction or an exponent: write it as a string: \"{text}\" \
                             (binary floats are never used for money or rates)"
                        ),
                    );
                }
                (*text).to_owned()
            }
            JsonValue::Bool(b) => b.to_string(),
            JsonValue::Null => {
                self.problem(field, offset, format!("`{field}` is null: an agreement has no null values; leave the key out"));
                String::new()
            }
            JsonValue::Array(items) => {
                let items: Vec<String> =
                    items.iter().enumerate().map(|(i, item)| self.inline(item, &format!("{field}[{i}]"), offset)).collect();
                format!("[{}]", items.join(", "))
            }
            JsonValue::Object(members) => {
                let members: Vec<String> = members
                    .iter()
                    .map(|m| format!("{} = {}", key(&m.key), self.inline(&m.value, &join(field, &m.key), m.value_offset)))
                    .collect();
                if members.is_empty() { "{}".to_owned() } else { format!("{{ {} }}", members.join(", ")) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use revshare_core::agreement::parse_agreement;

    use super::*;

    const EXAMPLE: &str = r#"{
  "id": "meridian-northwind",
  "version": 1,
  "licensor": "meridian",
  "host": "northwind",
  "currency": "USD",
  "effective_from": "2026-01-01",
  "models": ["m-8b", "m-70b"],
  "minimum": "500.00",
  "dispute_window_days": 30,
  "pricing": {
    "basis": "revenue_share",
    "tier_metric": "tokens",
    "tier_mode": "graduated",
    "tier_bounds": ["1000000000"],
    "rates": {"search": ["0.22", "0.20"], "default": ["0.20", "0.18"]}
  },
  "exclusivity": [{"use_case": "search", "regions": ["eu"], "from": "2026-10-15", "to": "2027-01-01", "uplift": "0.25"}],
  "contributions": {"pool": "0.02", "points": {"maintenance": 1, "update": 2}}
}"#;

    #[test]
    fn the_json_form_converts_to_an_agreement_that_parses() {
        let converted = to_toml(EXAMPLE).unwrap_or_else(|p| panic!("{p:?}"));
        let agreement =
            parse_agreement("agreement.toml", &converted.toml).unwrap_or_else(|e| panic!("{}\n{}", e.render_plain(), converted.toml));
        assert_eq!(agreement.id().as_str(), "meridian-northwind");
        assert!(converted.toml.starts_with(HEADER), "{}", converted.toml);
        assert!(converted.toml.contains("[[exclusivity]]\n"), "{}", converted.toml);
        assert!(
            converted.toml.contains("\n[contributions]\npool = \"0.02\"\n\n[contributions.points]\nmaintenance = 1\n"),
            "{}",
            converted.toml
        );
    }

    #[test]
    fn fractions_exponents_and_nulls_are_refused_naming_the_field() {
        let text = EXAMPLE
            .replace("\"0.22\"", "0.22")
            .replace("\"uplift\": \"0.25\"", "\"uplift\": 25e-2")
            .replace("\"minimum\": \"500.00\"", "\"minimum\": null");
        let problems = to_toml(&text).expect_err("refused");
        let fields: Vec<_> = problems.iter().map(|p| p.field.clone().unwrap_or_default()).collect();
        assert_eq!(fields, ["minimum", "pricing.rates.search[0]", "exclusivity[0].uplift"], "{problems:?}");
        assert!(problems[1].message.contains("write it as a string: \"0.22\""), "{problems:?}");
        assert_eq!(problems[0].line, Some(9), "the line in the JSON body: {problems:?}");
    }

    #[test]
    fn the_parsers_problems_are_mapped_to_fields() {
        let text = EXAMPLE
            .replace("\"basis\": \"revenue_share\",", "")
            .replace("\"dispute_window_days\": 30", "\"dispute_window_days\": 30, \"colour\": \"red\"");
        let converted = to_toml(&text).unwrap_or_else(|p| panic!("{p:?}"));
        let errors = parse_agreement("agreement.toml", &converted.toml).expect_err("invalid");
        let items: Vec<ProblemItem> = errors.problems.iter().map(|p| converted.locate(&text, p.span.offset(), &p.message)).collect();
        let fields: Vec<_> = items.iter().map(|p| p.field.clone().unwrap_or_default()).collect();
        assert!(fields.contains(&"colour".to_owned()), "{items:?}");
        assert!(fields.contains(&"pricing.basis".to_owned()), "{items:?}");
        assert!(items.iter().all(|p| p.line.is_some()), "{items:?}");
    }

    #[test]
    fn keys_and_strings_are_quoted_as_toml_needs() {
        assert_eq!(key("a b"), "\"a b\"");
        assert_eq!(key("tier_mode"), "tier_mode");
        assert_eq!(quote("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
