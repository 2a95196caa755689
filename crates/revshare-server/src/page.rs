//! The answers' common shapes: a create's `201 Created` with the `Location` of what it made
//! ([`created`]), and the lists' one shape, `{"items": […], "next_cursor": …}`, paged by `limit`
//! and `cursor`.
//!
//! Each list orders its items by a key of its own (an agreement's id, a dispute's number, …; the
//! route documents it) and a page is the first `limit` items whose key is after the cursor's. The
//! cursor is the last item's key, opaque to the caller (base64url), so a page is the same whatever
//! was added before it: nothing is skipped or listed twice while items are added, as a keyset
//! query gives it. A cursor only says where to start: the items after it are still only those the
//! caller may read, so a made-up cursor shows nothing a real one would not. The next page's URL is
//! also in a `Link: <…>; rel="next"` header (RFC 8288), which a CSV answer has too.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use utoipa::ToSchema;

use crate::extract::{Params, only, params};
use crate::problem::Problem;

/// Items on a page when the request names no `limit`.
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// The most items a page holds.
pub(crate) const MAX_LIMIT: usize = 1000;

/// A page of a list.
#[derive(Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    /// In the list's order, at most `limit`.
    pub items: Vec<T>,
    /// Pass it as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `limit` and `cursor`, the parameters every list takes, as the OpenAPI document shows them
/// (`params(PageParams, …)`); [`Paging::read`] reads them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "documents the parameters; `Paging::read` reads them")]
pub(crate) struct PageParams {
    /// Items on a page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// Where a page starts and how long it is.
pub(crate) struct Paging {
    limit: usize,
    /// The key of the last item of the previous page.
    after: Option<String>,
}

impl Paging {
    /// A list's query: its filters (`filters` names them; any other parameter but `limit` and
    /// `cursor` is 400) and where the page starts.
    pub(crate) fn read(query: Params, filters: &[&str]) -> Result<(HashMap<String, String>, Paging), Problem> {
        let params = params(query)?;
        let takes: Vec<&str> = filters.iter().copied().chain(["limit", "cursor"]).collect();
        only(&params, &takes)?;
        let paging = Paging::of(&params)?;
        Ok((params, paging))
    }

    /// `limit` (1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`]) and `cursor` of a query, or 400.
    fn of(params: &HashMap<String, String>) -> Result<Paging, Problem> {
        let limit = match params.get("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => text.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                Problem::bad_request(format!(
                    "`limit` must be a whole number from 1 to {MAX_LIMIT}, not `{}`",
                    revshare_core::text::printable(text, 40)
                ))
            })?,
        };
        let after = params.get("cursor").map(|text| decode(text)).transpose()?;
        Ok(Paging { limit, after })
    }

    /// The cursor's key as a number, for a list whose keys are [`number_key`]s and which the
    /// store pages itself; 400 for a cursor of another list.
    pub(crate) fn after_number(&self) -> Result<Option<u64>, Problem> {
        self.after.as_deref().map(|key| key.parse::<u64>().map_err(|_| stale_cursor())).transpose()
    }

    /// The cursor's key as the parts [`key_of`] joined, for a list the store pages itself by a
    /// key of `parts` parts; 400 for a cursor of another list.
    pub(crate) fn after_parts(&self, parts: usize) -> Result<Option<Vec<&str>>, Problem> {
        self.after
            .as_deref()
            .map(|key| {
                let split: Vec<&str> = key.split('\u{0}').collect();
                if split.len() == parts { Ok(split) } else { Err(stale_cursor()) }
            })
            .transpose()
    }

    /// How many items a page holds.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The page of `items` a keyset query of the store read: up to [`Self::limit`] + 1 items after
    /// the cursor, in `key` order (one more than the page says there is a next page).
    pub(crate) fn page_read<T: ToSchema>(&self, items: Vec<T>, key: impl Fn(&T) -> String) -> Page<T> {
        self.page_keyed(items.into_iter().map(|item| (key(&item), item)).collect())
    }

    /// [`Self::page_read`] of items read with their keys, for a list ordered by a key its items
    /// do not show.
    pub(crate) fn page_keyed<T: ToSchema>(&self, mut keyed: Vec<(String, T)>) -> Page<T> {
        let more = keyed.len() > self.limit;
        keyed.truncate(self.limit);
        let next_cursor = if more { keyed.last().map(|(key, _)| encode(key)) } else { None };
        Page { items: keyed.into_iter().map(|(_, item)| item).collect(), next_cursor }
    }

    /// The page of `items` (in any order) after the cursor, ordered by `key`.
    pub(crate) fn page<T: ToSchema>(&self, items: Vec<T>, key: impl Fn(&T) -> String) -> Page<T> {
        let mut keyed: Vec<(String, T)> = items.into_iter().map(|item| (key(&item), item)).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let start = self.after.as_ref().map_or(0, |after| keyed.partition_point(|(k, _)| k <= after));
        let read = keyed.into_iter().skip(start).take(self.limit + 1).map(|(_, item)| item).collect();
        self.page_read(read, key)
    }
}

/// A cursor that decodes but is not one of the list's.
pub(crate) fn stale_cursor() -> Problem {
    Problem::bad_request("`cursor` is not one of this list's: pass its `next_cursor` unchanged")
}

fn encode(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{key}"))
}

fn decode(cursor: &str) -> Result<String, Problem> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("v1:").map(str::to_owned))
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "`cursor` `{}` is not one this server gave: pass a page's `next_cursor` unchanged, or leave it out for the first page",
                revshare_core::text::printable(cursor, 60)
            ))
        })
}

/// `201 Created`, with where the created thing is read in `Location`.
pub(crate) fn created(location: &str, body: impl IntoResponse) -> Response {
    let mut response = (axum::http::StatusCode::CREATED, body).into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A string key that orders numbers as numbers.
pub(crate) fn number_key(n: u64) -> String {
    format!("{n:020}")
}

/// Several parts as one key, ordered part by part (no part holds a NUL).
pub(crate) fn key_of(parts: &[&str]) -> String {
    parts.join("\u{0}")
}

/// The page as JSON, or as CSV of `columns` when the caller asks for `text/csv`; with a `Link` to
/// the next page when there is one.
pub(crate) fn answer<T: Serialize + ToSchema>(
    headers: &HeaderMap,
    uri: &Uri,
    page: &Page<T>,
    columns: &[&str],
) -> Result<Response, Problem> {
    let mut response = crate::csv_answer::json_or_rows(headers, page, columns, &page.items)?;
    if let Some(cursor) = &page.next_cursor {
        let mut query: Vec<(String, String)> = serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
        query.retain(|(name, _)| name != "cursor");
        query.push(("cursor".to_owned(), cursor.clone()));
        let query = serde_urlencoded::to_string(&query).map_err(|e| Problem::internal("the next page's link cannot be written", &e))?;
        let link = format!("<{}?{query}>; rel=\"next\"", uri.path());
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, ToSchema, Debug, PartialEq)]
    struct Item(u64);

    fn paging(query: &[(&str, &str)]) -> Result<Paging, Problem> {
        Paging::of(&query.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn pages_follow_one_another_without_gaps_or_repeats() {
        let items = || (1..=7).rev().map(Item).collect::<Vec<_>>();
        let key = |i: &Item| number_key(i.0);
        let first = paging(&[("limit", "3")]).expect("paging").page(items(), key);
        assert_eq!(first.items, vec![Item(1), Item(2), Item(3)]);
        let cursor = first.next_cursor.expect("more");
        let second = paging(&[("limit", "3"), ("cursor", &cursor)]).expect("paging").page(items(), key);
        assert_eq!(second.items, vec![Item(4), Item(5), Item(6)]);
        // An item added before the cursor does not shift the next page.
        let mut grown = items();
        grown.push(Item(0));
        let again = paging(&[("limit", "3"), ("cursor", &cursor)]).expect("paging").page(grown, key);
        assert_eq!(again.items, second.items);
        let last = paging(&[("limit", "3"), ("cursor", &second.next_cursor.expect("more"))]).expect("paging").page(items(), key);
        assert_eq!((last.items, last.next_cursor), (vec![Item(7)], None), "the last page says so");
        let exact = paging(&[("limit", "7")]).expect("paging").page(items(), key);
        assert_eq!(exact.next_cursor, None, "a page that ends the list has no cursor");
    }

    #[test]
    fn bad_limits_and_cursors_are_refused_with_what_is_right() {
        for limit in ["0", "1001", "-1", "ten"] {
            let problem = paging(&[("limit", limit)]).err().expect("refused");
            assert!(problem.detail.contains("from 1 to 1000"), "{}", problem.detail);
        }
        for cursor in ["!!", "djI6eA", "bm90LWEtY3Vyc29y"] {
            let problem = paging(&[("cursor", cursor)]).err().expect("refused");
            assert!(problem.detail.contains("next_cursor"), "{}", problem.detail);
        }
    }
}
