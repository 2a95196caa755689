//! What every route takes from a request before it does anything: query parameters, ids and
//! periods from the path, a JSON body (its media type checked, its size limited), and whether the
//! caller may read the agreement named. Shared by the route modules (`routes`, `disputes`,
//! `export`, `registry`), which depend on it and never on each other for these.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, StatusCode, header};
use revshare_core::agreement::Agreement;
use revshare_core::ids::{AgreementId, PartyId};
use revshare_core::time::Period;
use revshare_store::Store;

use crate::AppState;
use crate::auth::{Caller, may_read};
use crate::body;
use crate::problem::{Problem, ProblemItem};

/// The query string as read, or why it could not be.
pub(crate) type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The query parameters, or 400.
pub(crate) fn params(query: Params) -> Result<HashMap<String, String>, Problem> {
    query.map(|Query(map)| map).map_err(|e| Problem::bad_request(format!("the query string cannot be read: {e}")))
}

/// 400 for a parameter the route does not take (a misspelt filter would otherwise be ignored),
/// naming the ones it takes.
pub(crate) fn only(params: &HashMap<String, String>, takes: &[&str]) -> Result<(), Problem> {
    let mut unknown: Vec<&str> = params.keys().map(String::as_str).filter(|name| !takes.contains(name)).collect();
    unknown.sort_unstable();
    match unknown.first() {
        None => Ok(()),
        Some(name) => Err(Problem::bad_request(format!(
            "this route takes no parameter `{}`; it takes {}",
            revshare_core::text::printable(name, 40),
            takes.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The months a usage range asks for: `from` and `to` (`YYYY-MM`), by default the month before
/// `now`'s to `now`'s; at most 12 months.
pub(crate) fn month_range(params: &HashMap<String, String>, now: Period) -> Result<(Period, Period), Problem> {
    let to = params.get("to").filter(|t| !t.is_empty()).map(|t| period_of(t)).transpose()?.unwrap_or(now);
    let from = params.get("from").filter(|t| !t.is_empty()).map(|t| period_of(t)).transpose()?.unwrap_or_else(|| to.previous());
    if from > to {
        return Err(Problem::bad_request(format!("the range starts ({from}) after it ends ({to}); choose `from` up to `to`")));
    }
    if (to.year() - from.year()) * 12 + i32::try_from(to.month()).unwrap_or(0) - i32::try_from(from.month()).unwrap_or(0) >= 12 {
        return Err(Problem::bad_request(format!("{from} to {to} is more than 12 months; choose a shorter range")));
    }
    Ok((from, to))
}

/// A list's `from` and `to` months (`YYYY-MM`, both optional, both included).
#[derive(Clone, Copy)]
pub(crate) struct Months {
    from: Option<Period>,
    to: Option<Period>,
}

impl Months {
    pub(crate) fn of(params: &HashMap<String, String>) -> Result<Months, Problem> {
        let month = |name: &str| {
            params.get(name).map(|text| Period::parse(text).map_err(|e| Problem::bad_request(format!("`{name}`: {e}")))).transpose()
        };
        let (from, to) = (month("from")?, month("to")?);
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(Problem::bad_request(format!("the range starts ({from}) after it ends ({to}); choose `from` up to `to`")));
        }
        Ok(Months { from, to })
    }

    /// The first and the last month, where given.
    pub(crate) fn range(&self) -> (Option<Period>, Option<Period>) {
        (self.from, self.to)
    }

    pub(crate) fn contains(&self, period: Period) -> bool {
        self.from.is_none_or(|from| period >= from) && self.to.is_none_or(|to| period <= to)
    }
}

/// A parameter that takes one of a few words, if given; 400 naming them otherwise.
pub(crate) fn choice<'p>(params: &'p HashMap<String, String>, name: &str, words: &[&str]) -> Result<Option<&'p str>, Problem> {
    match params.get(name) {
        None => Ok(None),
        Some(text) if words.contains(&text.as_str()) => Ok(Some(text)),
        Some(text) => Err(Problem::bad_request(format!(
            "`{name}` is one of {}, not `{}`",
            words.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", "),
            revshare_core::text::printable(text, 40)
        ))),
    }
}

/// The agreements a list shows to `caller`: the one it names, if the caller may read it (404
/// otherwise, as for one that does not exist), or every agreement the caller may read.
pub(crate) fn visible_agreements(
    store: &mut dyn Store,
    caller: &Caller,
    named: Option<&AgreementId>,
) -> Result<std::collections::BTreeSet<AgreementId>, Problem> {
    match named {
        Some(id) => {
            readable(store, caller, id)?;
            Ok(std::iter::once(id.clone()).collect())
        }
        None => Ok(store
            .agreement_index()?
            .into_iter()
            .filter(|(id, licensor, host)| may_read(caller, id, licensor, host))
            .map(|(id, _, _)| id)
            .collect()),
    }
}

/// A non-negative integer parameter; `None` when absent.
pub(crate) fn number(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, Problem> {
    params
        .get(name)
        .map(|text| text.parse::<u64>().map_err(|_| Problem::bad_request(format!("`{name}` must be a non-negative integer, not `{text}`"))))
        .transpose()
}

/// A non-negative integer parameter that must be there.
pub(crate) fn required(params: &HashMap<String, String>, name: &str) -> Result<u64, Problem> {
    number(params, name)?.ok_or_else(|| Problem::bad_request(format!("the query needs `{name}`")))
}

/// An agreement id from the path or body, or 400.
pub(crate) fn agreement_id(text: &str) -> Result<AgreementId, Problem> {
    AgreementId::parse(text).map_err(|e| Problem::bad_request(format!("`{text}` is not an agreement id: {e}")))
}

/// A party id from the body's `field`, or 400.
pub(crate) fn party_id(text: &str, field: &str) -> Result<PartyId, Problem> {
    PartyId::parse(text).map_err(|e| Problem::bad_request(format!("`{field}`: {e}")))
}

/// The agreement, if the caller may read it: unknown and someone else's are the same 404, and
/// take the same work to answer: who may read it is decided from its parties, read alone, before
/// its terms are read (and parsed) for a caller who may.
pub(crate) fn readable(store: &mut dyn Store, caller: &Caller, id: &AgreementId) -> Result<Agreement, Problem> {
    match store.agreement_parties(id)? {
        Some((licensor, host)) if may_read(caller, id, &licensor, &host) => Ok(store.agreement(id, None)?),
        _ => Err(Problem::not_found(format!("there is no agreement {id} that this token can read"))),
    }
}

/// A JSON request body of type `T`: 415 unless it is sent as JSON ([`json_bytes`]), 400 with
/// the line and column when it does not parse as `T`.
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    request_body: Body,
) -> Result<T, Problem> {
    let bytes = json_bytes(state, headers, request_body).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Problem::bad_request("the body is not the JSON object this route takes").with_errors(vec![ProblemItem {
            line: u64::try_from(e.line()).ok(),
            column: u64::try_from(e.column()).ok(),
            message: e.to_string(),
            ..ProblemItem::default()
        }])
    })
}

/// The body of a route that takes JSON, read under the size limit, once its `Content-Type` says
/// JSON (`application/json`, or a `+json` type, parameters aside); anything else, or none, is 415
/// before the body is read.
pub(crate) async fn json_bytes(state: &AppState, headers: &HeaderMap, request_body: Body) -> Result<axum::body::Bytes, Problem> {
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let media = content_type.as_deref().and_then(|t| t.split(';').next()).map(str::trim).unwrap_or_default().to_ascii_lowercase();
    if media != "application/json" && !(media.starts_with("application/") && media.ends_with("+json")) {
        let sent = content_type.map_or_else(|| "no Content-Type".to_owned(), |t| format!("`{}`", revshare_core::text::printable(&t, 100)));
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "unsupported media type",
            format!("this route takes a JSON body sent as `Content-Type: application/json`, not {sent}"),
        ));
    }
    body::read(headers, request_body, state.max_body_bytes(), state.body_idle()).await
}

pub(crate) fn period_of(text: &str) -> Result<Period, Problem> {
    Period::parse(text).map_err(|e| Problem::bad_request(e.to_string()))
}
