//! `Accept: text/csv`: the lists and documents a finance team opens in a spreadsheet (statements,
//! a statement's lines, balances, disputes, a dispute's history, contributions) answered as CSV
//! (`revshare_core::spreadsheet`: RFC 4180, a header row, the JSON members as columns, the same
//! values as text), exactly what the CLI writes with `--format csv`. Without the header, JSON.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::problem::Problem;

/// Whether the caller asked for CSV: `text/csv` among the media types it accepts.
pub(crate) fn wanted(headers: &HeaderMap) -> bool {
    accepts(headers, "text/csv")
}

/// Whether `media` is among the media types the caller names in `Accept` (not with `q=0`).
pub(crate) fn accepts(headers: &HeaderMap, wanted: &str) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|media| {
        let mut parts = media.split(';').map(str::trim);
        let named = parts.next().is_some_and(|m| m.eq_ignore_ascii_case(wanted));
        // `q=0` is "not acceptable".
        named && !parts.any(|p| p.replace(' ', "").eq_ignore_ascii_case("q=0"))
    })
}

/// CSV bytes as an answer.
pub(crate) fn answer(bytes: std::io::Result<Vec<u8>>) -> Result<Response, Problem> {
    let bytes = bytes.map_err(|e| Problem::internal("a CSV answer cannot be written", &e))?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8; header=present"))], bytes).into_response())
}

/// `items` as CSV rows of `columns` (members of their JSON, `a.b` for nested ones).
pub(crate) fn rows<T: Serialize>(columns: &[&str], items: &[T]) -> Result<Response, Problem> {
    let values = items
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Problem::internal("a CSV answer cannot be written", &e))?;
    answer(revshare_core::spreadsheet::csv(columns, values))
}

/// JSON, or CSV of `columns` of `items` when the caller asked for it.
pub(crate) fn json_or_rows<T: Serialize, I: Serialize>(
    headers: &HeaderMap,
    json: &T,
    columns: &[&str],
    items: &[I],
) -> Result<Response, Problem> {
    if wanted(headers) { rows(columns, items) } else { Ok(axum::Json(json).into_response()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_is_chosen_by_the_accept_header() {
        let with = |accept: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
            wanted(&headers)
        };
        assert!(with("text/csv"));
        assert!(with("application/json;q=0.5, TEXT/CSV"));
        assert!(!with("text/csv;q=0"), "not acceptable");
        assert!(!with("application/json"));
        assert!(!with("*/*"), "JSON is the default");
        assert!(!wanted(&HeaderMap::new()));
    }
}
