//! The dashboard: `revshare serve` answers people at `/` with pages rendered on the server
//! (askama templates compiled into the binary, no script, nothing from another site), for the
//! finance and partnership teams, hosts' billing engineers and auditors.
//!
//! | page | what |
//! |---|---|
//! | `GET /signin`, `POST /signin`, `POST /signout` | a bearer token exchanged for a session cookie ([`session`]) |
//! | `GET /` | overview: who owes whom, outstanding, this month so far against last month, what waits for the user |
//! | `GET /statements`, `GET /statements/{agreement}/{period}` | statements with their money; one statement as a document (numbered lines, tiers, totals, flags, adjustments, charts), its bundle |
//! | `GET /usage` | daily requests, tokens and revenue of an agreement over a range of months, from the daily rollups |
//! | `GET /disputes`, `GET /disputes/{id}` | disputes, their history, deadlines and the steps the user may take |
//! | `GET /payments`, `GET /contributions` | payments (record, confirm) and contributions (submit, accept) |
//!
//! The boundary: every read and write goes through the API's own handlers (`routes`, `disputes`,
//! `contributions`, `export`) with the session's caller, or through the same store calls and
//! entitlement checks (`auth::may_read`, `extract::readable`), so a page shows exactly what the
//! caller's token may read through the API, and a form does exactly what the API does. A refusal
//! is shown as the API words it, with the same status. Untrusted text reaches the page only
//! through askama's HTML escaping.

mod chart;
mod forms;
mod pages;
pub(crate) mod session;

use askama::Template;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::AppState;
use crate::auth::Caller;
use crate::problem::Problem;
use session::SESSION_COOKIE;

/// The dashboard's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/signin", get(signin_page).post(forms::sign_in))
        .route("/signout", post(forms::sign_out))
        .route("/statements", get(pages::statements))
        .route("/statements/{agreement}/{period}", get(pages::statement))
        .route("/statements/{agreement}/{period}/bundle", get(pages::bundle))
        .route("/usage", get(pages::usage))
        .route("/disputes", get(pages::disputes).post(forms::open_dispute))
        .route("/disputes/{id}", get(pages::dispute).post(forms::move_dispute))
        .route("/payments", get(pages::payments).post(forms::record_payment))
        .route("/payments/confirm", post(forms::confirm_payment))
        .route("/contributions", get(pages::contributions).post(forms::submit_contribution))
        .route("/contributions/accept", post(forms::accept_contribution))
        .route("/assets/dashboard.css", get(stylesheet))
        .layer(axum::middleware::from_fn(page_headers))
}

/// What every page has beyond the API's headers: a content security policy that runs no script,
/// loads nothing from elsewhere and is framed by no one.
async fn page_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../templates/dashboard.css"))
}

/// A signed-in user: the session's caller and the token its forms carry.
pub(crate) struct Signed {
    pub caller: Caller,
    pub csrf: String,
    pub session: String,
}

/// The signed-in caller, or the answer to give instead: to the sign-in page without a session,
/// or the API's refusal (a revoked token, the rate limit).
pub(crate) async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Signed, Response> {
    let to_signin = || Redirect::to("/signin").into_response();
    let id = session::cookie(headers, SESSION_COOKIE).ok_or_else(to_signin)?;
    let found = state.sessions().find(id, std::time::Instant::now()).ok_or_else(to_signin)?;
    let caller = match crate::auth::caller_of(state, found.token_hash).await {
        Ok(caller) => caller,
        Err(problem) if problem.status == StatusCode::UNAUTHORIZED => {
            state.sessions().close(id);
            return Err(to_signin());
        }
        Err(problem) => return Err(error_page(None, &problem)),
    };
    if let Err(wait) = state.limiter().take(&caller.token, std::time::Instant::now()) {
        return Err(error_page(None, &Problem::too_many_requests(&caller.token, wait)));
    }
    Ok(Signed { caller, csrf: found.csrf, session: id.to_owned() })
}

/// What the page frame shows: who is signed in, where they are, a notice.
pub(crate) struct Layout {
    pub party: String,
    pub role: &'static str,
    pub csrf: String,
    /// The page, for the navigation's `aria-current`.
    pub here: &'static str,
    pub notice: Option<&'static str>,
}

impl Layout {
    pub fn of(signed: &Signed, here: &'static str, notice: Option<&'static str>) -> Layout {
        Layout { party: signed.caller.party.to_string(), role: signed.caller.role.as_str(), csrf: signed.csrf.clone(), here, notice }
    }
}

/// The notices a form's redirect may ask for (`?done=`): fixed texts, so nothing from the query
/// string is shown.
pub(crate) fn notice(done: Option<&String>) -> Option<&'static str> {
    Some(match done?.as_str() {
        "payment-recorded" => "The payment is recorded.",
        "payment-confirmed" => "The payment is confirmed and posted to the journal.",
        "dispute-opened" => "The dispute is opened and logged.",
        "dispute-moved" => "The step is recorded and logged.",
        "contribution-submitted" => "The contribution is recorded; the other party accepts it.",
        "contribution-accepted" => "The contribution is accepted.",
        _ => return None,
    })
}

/// A rendered page, or the error page when the template fails.
pub(crate) fn html<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(body) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
        Err(e) => error_page(None, &Problem::internal("a page cannot be rendered", &e)),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Option<Layout>,
    status: u16,
    title: &'a str,
    detail: &'a str,
}

/// A refusal or failure as a page, with its status; the detail is the API's own wording.
pub(crate) fn error_page(layout: Option<Layout>, problem: &Problem) -> Response {
    let page = ErrorPage { layout, status: problem.status.as_u16(), title: problem.title, detail: &problem.detail };
    let body = page.render().unwrap_or_else(|_| "the error page cannot be rendered".to_owned());
    (problem.status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage<'a> {
    layout: Option<Layout>,
    csrf: &'a str,
    error: Option<&'a str>,
}

/// The sign-in form, with a fresh CSRF cookie.
async fn signin_page() -> Response {
    signin_form(StatusCode::OK, None)
}

/// The sign-in form (again, with `error`), and the cookie its token is checked against.
pub(crate) fn signin_form(status: StatusCode, error: Option<&str>) -> Response {
    let token = match session::random_text() {
        Ok(token) => token,
        Err(problem) => return error_page(None, &problem),
    };
    let cookie = match session::signin_cookie(&token) {
        Ok(cookie) => cookie,
        Err(problem) => return error_page(None, &problem),
    };
    let mut response = html(&SigninPage { layout: None, csrf: &token, error });
    *response.status_mut() = status;
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}
