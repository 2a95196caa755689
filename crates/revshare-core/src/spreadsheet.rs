//! Lists and statements as CSV (RFC 4180, a header row) for spreadsheets, written the same way by
//! the CLI (`--format csv`) and the API (`Accept: text/csv`): the columns are members of the JSON
//! the same list or document is given as (`a.b` for a member of a member), the fields the same
//! values as text (`null` empty), so CSV read back equals the JSON. Text from a party that starts
//! like a formula is written so a spreadsheet will not run it ([`safe`]).

use serde_json::Value;

use crate::statement::Statement;

/// Text as a CSV field a spreadsheet will not run: another party's words that start like a
/// formula (`=`, `+`, `-`, `@`, a tab or a carriage return) get a leading `'`, as OWASP advises;
/// numbers (a negative amount) are left as they are.
pub fn safe(text: &str) -> String {
    let number = text.strip_prefix('-').is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) && !number { format!("'{text}") } else { text.to_owned() }
}

/// A member of `row` by its column name (`debtor.party`: `party` of `debtor`).
fn member<'v>(row: &'v Value, column: &str) -> &'v Value {
    column.split('.').fold(row, |value, name| &value[name])
}

/// `rows` (JSON objects) as CSV with `columns` as the header and the fields.
pub fn csv(columns: &[&str], rows: impl IntoIterator<Item = Value>) -> std::io::Result<Vec<u8>> {
    let mut out = ::csv::Writer::from_writer(Vec::new());
    out.write_record(columns)?;
    for row in rows {
        out.write_record(columns.iter().map(|c| match member(&row, c) {
            Value::Null => String::new(),
            Value::String(s) => safe(s),
            Value::Array(items) => items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), safe)).collect::<Vec<_>>().join(";"),
            other => other.to_string(),
        }))?;
    }
    out.into_inner().map_err(|e| std::io::Error::other(e.to_string()))
}

/// The columns of a statement's lines as CSV.
pub const LINE_COLUMNS: [&str; 16] = [
    "line",
    "model",
    "use_case",
    "region",
    "exclusive",
    "records",
    "requests",
    "input_tokens",
    "output_tokens",
    "revenue",
    "volume",
    "blended_rate",
    "uplift",
    "amount",
    "flags",
    "currency",
];

/// A statement's lines as CSV: each line's number (its index, as a dispute of one line names it)
/// and members as the statement writes them; flags joined with `;`; the currency on each row.
pub fn statement_lines(statement: &Statement) -> std::io::Result<Vec<u8>> {
    let value = statement.to_json().map_err(std::io::Error::other)?;
    let rows = value["lines"].as_array().into_iter().flatten().enumerate().map(|(n, line)| {
        let mut row = line.clone();
        row["line"] = Value::from(n);
        row["currency"] = Value::from(statement.currency.code());
        row
    });
    csv(&LINE_COLUMNS, rows)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_are_the_json_values_as_text() -> Result<(), Box<dyn std::error::Error>> {
        let rows = [
            json!({"a": "x,y", "b": {"c": 1}, "d": null, "e": ["p", "q"], "f": "=1+1", "g": "-12.50"}),
            json!({"a": "say \"hi\"", "b": {"c": -2}}),
        ];
        let text = String::from_utf8(csv(&["a", "b.c", "d", "e", "f", "g"], rows)?)?;
        assert_eq!(text, "a,b.c,d,e,f,g\n\"x,y\",1,,p;q,'=1+1,-12.50\n\"say \"\"hi\"\"\",-2,,,,\n");
        Ok(())
    }

    #[test]
    fn formula_like_text_is_defused_and_numbers_are_not() {
        assert_eq!(safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(safe("-1200.50"), "-1200.50");
        assert_eq!(safe("-x"), "'-x");
        assert_eq!(safe("plain"), "plain");
    }
}
