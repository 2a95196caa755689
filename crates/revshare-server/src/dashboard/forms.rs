//! The dashboard's forms. Each is checked ([`session::check_form`]) before anything else is
//! read, then turned into the JSON body of the API route that does the same thing and handed to
//! that route's handler with the session's caller: one set of rules for both. Success redirects
//! (303) to the page that shows the result; a refusal is shown with the API's status and words.

use std::collections::HashMap;

use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};

use super::session::{self, SESSION_COOKIE, SIGNIN_COOKIE};
use super::{Layout, Signed, error_page, signed_in, signin_form};
use crate::AppState;
use crate::auth::{TOKEN_PREFIX, caller_of, hash};
use crate::problem::Problem;

/// The most a form may send.
const MAX_FORM_BYTES: usize = 64 << 10;

type Form = HashMap<String, String>;

/// The form's fields (`application/x-www-form-urlencoded`), read under [`MAX_FORM_BYTES`].
async fn read_form(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Form, Problem> {
    let bytes = crate::body::read(headers, body, MAX_FORM_BYTES, state.body_idle()).await?;
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&bytes).map_err(|e| Problem::bad_request(format!("the form cannot be read: {e}")))?;
    Ok(pairs.into_iter().collect())
}

/// The signed-in caller and its form, once the form's CSRF token and origin are checked.
async fn signed_form(state: &AppState, headers: &HeaderMap, body: Body) -> Result<(Signed, Form), Response> {
    let signed = signed_in(state, headers).await?;
    let layout = || Some(Layout::of(&signed, "", None));
    let form = match read_form(state, headers, body).await {
        Ok(form) => form,
        Err(problem) => return Err(error_page(layout(), &problem)),
    };
    if let Err(problem) = session::check_form(headers, form.get("csrf").map(String::as_str), &signed.csrf) {
        return Err(error_page(layout(), &problem));
    }
    Ok((signed, form))
}

/// A form field, trimmed; empty counts as absent.
fn field<'f>(form: &'f Form, name: &str) -> Option<&'f str> {
    form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Headers for handing a JSON body to an API handler.
fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers
}

fn json_body(value: &Value) -> Body {
    Body::from(value.to_string())
}

/// Where to go after a form: `to` on success, the refusal's page otherwise.
fn after<T>(signed: &Signed, result: Result<T, Problem>, to: impl FnOnce(T) -> String) -> Response {
    match result {
        Ok(done) => Redirect::to(&to(done)).into_response(),
        Err(problem) => error_page(Some(Layout::of(signed, "", None)), &problem),
    }
}

/// Signs in: the sign-in form's CSRF token checked against its cookie, then the token against the
/// store (failures limited per client address, as the API's are); a session cookie on success.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    connect: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = match read_form(&state, &headers, body).await {
        Ok(form) => form,
        Err(problem) => return error_page(None, &problem),
    };
    let expected = session::cookie(&headers, SIGNIN_COOKIE).unwrap_or_default();
    if let Err(problem) = session::check_form(&headers, form.get("csrf").map(String::as_str), expected) {
        return signin_form(problem.status, Some(&problem.detail));
    }
    let address = connect.map_or_else(|| "unknown".to_owned(), |Extension(ConnectInfo(a))| a.ip().to_string());
    let now = std::time::Instant::now();
    if let Err(wait) = state.failures().check(&address, now) {
        return error_page(None, &Problem::too_many_failures(wait));
    }
    let token = field(&form, "token").unwrap_or_default();
    let refused = |detail: &str| {
        let _ = state.failures().take(&address, now);
        signin_form(StatusCode::UNAUTHORIZED, Some(detail))
    };
    if !token.starts_with(TOKEN_PREFIX) {
        return refused("that is not a revshare token: tokens start with `rs_` (from `revshare token create`)");
    }
    let token_hash = hash(token);
    match caller_of(&state, token_hash).await {
        Ok(_) => {}
        Err(problem) if problem.status == StatusCode::UNAUTHORIZED => return refused(&problem.detail),
        Err(problem) => return error_page(None, &problem),
    }
    let id = match state.sessions().open(token_hash, now) {
        Ok(id) => id,
        Err(problem) => return error_page(None, &problem),
    };
    let cookies = session::set_cookie(SESSION_COOKIE, &id, Some(session::SESSION_LIFETIME))
        .and_then(|session| Ok((session, session::set_cookie(SIGNIN_COOKIE, "", None)?)));
    match cookies {
        Ok((session, cleared)) => {
            let mut response = Redirect::to("/").into_response();
            response.headers_mut().append(header::SET_COOKIE, session);
            response.headers_mut().append(header::SET_COOKIE, cleared);
            response
        }
        Err(problem) => error_page(None, &problem),
    }
}

/// Signs out: the session ends and its cookie is cleared.
pub(crate) async fn sign_out(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (signed, _) = match signed_form(&state, &headers, body).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    state.sessions().close(&signed.session);
    let mut response = Redirect::to("/signin").into_response();
    match session::set_cookie(SESSION_COOKIE, "", None) {
        Ok(cleared) => {
            response.headers_mut().append(header::SET_COOKIE, cleared);
            response
        }
        Err(problem) => error_page(None, &problem),
    }
}

/// Records a payment (`POST /v1/payments`).
pub(crate) async fn record_payment(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (signed, form) = match signed_form(&state, &headers, body).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let body = json!({
        "agreement": field(&form, "agreement").unwrap_or_default(),
        "amount": field(&form, "amount").unwrap_or_default(),
        "reference": field(&form, "reference").unwrap_or_default(),
        "from": field(&form, "from").unwrap_or_default(),
    });
    let result = crate::routes::post_payment(State(state), Extension(signed.caller.clone()), json_headers(), json_body(&body)).await;
    after(&signed, result, |_| "/payments?done=payment-recorded".to_owned())
}

/// Confirms a pending payment (`POST /v1/payments/confirmations`).
pub(crate) async fn confirm_payment(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (signed, form) = match signed_form(&state, &headers, body).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let body = json!({
        "agreement": field(&form, "agreement").unwrap_or_default(),
        "reference": field(&form, "reference").unwrap_or_default(),
    });
    let result = crate::routes::confirm_payment(State(state), Extension(signed.caller.clone()), json_headers(), json_body(&body)).await;
    after(&signed, result, |_| "/payments?done=payment-confirmed".to_owned())
}

/// Opens a dispute of a statement or one of its lines (`POST /v1/disputes`).
pub(crate) async fn open_dispute(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (signed, form) = match signed_form(&state, &headers, body).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let number = |name: &str| -> Result<Option<u64>, Problem> {
        field(&form, name)
            .map(|text| text.parse::<u64>().map_err(|_| Problem::bad_request(format!("`{name}` must be a whole number, not `{text}`"))))
            .transpose()
    };
    let (sequence, line) = match (number("sequence"), number("line")) {
        (Ok(sequence), Ok(line)) => (sequence, line),
        (Err(problem), _) | (_, Err(problem)) => return error_page(Some(Layout::of(&signed, "", None)), &problem),
    };
    let body = json!({
        "agreement": field(&form, "agreement").unwrap_or_default(),
        "period": field(&form, "period").unwrap_or_default(),
        "sequence": sequence,
        "line": line,
        "amount": field(&form, "amount").unwrap_or_default(),
        "reason": field(&form, "reason").unwrap_or_default(),
    });
    let result = crate::disputes::open_dispute(State(state), Extension(signed.caller.clone()), json_headers(), json_body(&body)).await;
    after(&signed, result, |(_, _, axum::Json(view))| format!("/disputes/{}?done=dispute-opened", view.id))
}

/// Answers, escalates or decides a dispute (`POST /v1/disputes/{id}/transitions`).
pub(crate) async fn move_dispute(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>, body: Body) -> Response {
    let (signed, form) = match signed_form(&state, &headers, body).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let body = json!({
        "action": field(&form, "action").unwrap_or_default(),
        "reason": field(&form, "reason").unwrap_or_default(),
        "amount": field(&form, "amount"),
        "arbiter": field(&form, "arbiter"),
    });
    let result =
        crate::disputes::move_dispute(State(state), Extension(signed.caller.clone()), Path(id), json_headers(), json_body(&body)).await;
    after(&signed, result, |axum::Json(view)| format!("/disputes/{}?done=dispute-moved", view.id))
}

/// Records the caller's own contribution (`POST /v1/contributions`).
pub(crate) async fn submit_contribution(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (signed, form) = match signed_form(&state, &headers, body).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let mut contribution = json!({
        "id": field(&form, "id").unwrap_or_default(),
        "party": signed.caller.party.as_str(),
        "kind": field(&form, "kind").unwrap_or_default(),
        "date": field(&form, "date").unwrap_or_default(),
        "description": field(&form, "description").unwrap_or_default(),
    });
    if let (Some(evidence), Some(map)) = (field(&form, "evidence"), contribution.as_object_mut()) {
        map.insert("evidence".to_owned(), Value::from(evidence));
    }
    let body = json!({ "agreement": field(&form, "agreement").unwrap_or_default(), "contribution": contribution });
    let result =
        crate::contributions::post_contribution(State(state), Extension(signed.caller.clone()), json_headers(), json_body(&body)).await;
    after(&signed, result, |_| "/contributions?done=contribution-submitted".to_owned())
}

/// Accepts the other party's contribution (`POST /v1/contributions/acceptances`).
pub(crate) async fn accept_contribution(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (signed, form) = match signed_form(&state, &headers, body).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let body = json!({
        "agreement": field(&form, "agreement").unwrap_or_default(),
        "id": field(&form, "id").unwrap_or_default(),
    });
    let result =
        crate::contributions::accept_contribution(State(state), Extension(signed.caller.clone()), json_headers(), json_body(&body)).await;
    after(&signed, result, |_| "/contributions?done=contribution-accepted".to_owned())
}
