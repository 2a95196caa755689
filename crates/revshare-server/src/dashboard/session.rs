//! Signing in to the dashboard: a bearer token is exchanged for a session cookie, and every form
//! carries the session's CSRF token.
//!
//! - A session id is 32 random bytes (base64url) in an `HttpOnly`, `SameSite=Strict` cookie
//!   scoped to `/`; the server keeps only its SHA-256, with the hash of the token it was opened
//!   with, its CSRF token and when it ends ([`SESSION_LIFETIME`] after sign-in). Each request
//!   finds its caller again from that token hash, so a revoked token ends its sessions at once.
//! - Sessions live in the server's memory: a restart signs everyone out, which loses nothing
//!   (the token signs in again). At most [`MAX_SESSIONS`] are kept; ended ones are dropped first.
//! - Every form that changes something carries `csrf`, compared in constant time with the
//!   session's (synchronizer token); a post without it, with another, or whose `Origin` names
//!   another site is refused with 403 before anything is read. The sign-in form, before any
//!   session, is protected the same way by a short-lived `rs_signin` cookie (double submit).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::problem::Problem;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "rs_session";
/// The sign-in form's cookie (its CSRF token, before a session exists).
pub(crate) const SIGNIN_COOKIE: &str = "rs_signin";
/// How long a session lasts after sign-in.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How long a sign-in form may be left open.
const SIGNIN_LIFETIME: Duration = Duration::from_secs(3600);
/// The most sessions kept at once.
pub(crate) const MAX_SESSIONS: usize = 10_000;

/// One signed-in browser.
#[derive(Clone)]
pub(crate) struct Session {
    /// The SHA-256 of the bearer token it was opened with.
    pub token_hash: [u8; 32],
    /// The token every form of the session carries.
    pub csrf: String,
    ends: Instant,
}

/// The sessions open, by the SHA-256 of their id.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

/// 32 random bytes as unpadded base64url.
pub(crate) fn random_text() -> Result<String, Problem> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Problem::internal("the operating system's random source failed", &e))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Opens a session for the token with this hash; returns the session id (the cookie's value).
    pub fn open(&self, token_hash: [u8; 32], now: Instant) -> Result<String, Problem> {
        let id = random_text()?;
        let session = Session { token_hash, csrf: random_text()?, ends: now + SESSION_LIFETIME };
        let mut open = self.0.lock().map_err(|_| Problem::internal("the sessions failed", &"a thread panicked holding them"))?;
        if open.len() >= MAX_SESSIONS {
            open.retain(|_, s| s.ends > now);
        }
        if open.len() >= MAX_SESSIONS {
            // The oldest goes: it ends first.
            if let Some(oldest) = open.iter().min_by_key(|(_, s)| s.ends).map(|(k, _)| *k) {
                open.remove(&oldest);
            }
        }
        open.insert(digest(&id), session);
        Ok(id)
    }

    /// The session of this id, if it is open.
    pub fn find(&self, id: &str, now: Instant) -> Option<Session> {
        let mut open = self.0.lock().ok()?;
        let key = digest(id);
        match open.get(&key) {
            Some(session) if session.ends > now => Some(session.clone()),
            Some(_) => {
                open.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        if let Ok(mut open) = self.0.lock() {
            open.remove(&digest(id));
        }
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, for the whole site, for `lifetime` (none:
/// deleted).
pub(crate) fn set_cookie(name: &str, value: &str, lifetime: Option<Duration>) -> Result<HeaderValue, Problem> {
    let max_age = lifetime.map_or(0, |d| d.as_secs());
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"))
        .map_err(|e| Problem::internal("a cookie cannot be written", &e))
}

/// The sign-in form's cookie, for as long as the form may be left open.
pub(crate) fn signin_cookie(value: &str) -> Result<HeaderValue, Problem> {
    set_cookie(SIGNIN_COOKIE, value, Some(SIGNIN_LIFETIME))
}

/// Refuses a form post unless its `csrf` field is `expected` and its `Origin`, when sent, is this
/// site (the `Host` it was sent to).
pub(crate) fn check_form(headers: &HeaderMap, sent: Option<&str>, expected: &str) -> Result<(), Problem> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        let origin = origin.to_str().unwrap_or_default();
        let same =
            origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).is_some_and(|o| !host.is_empty() && o == host);
        if !same {
            return Err(Problem::forbidden("this form was sent from another site; open the dashboard and send it from there"));
        }
    }
    match sent {
        Some(sent) if !expected.is_empty() && bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        _ => Err(Problem::forbidden("the form's security token is missing or out of date; reload the page and send it again")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_and_close() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let id = sessions.open([7; 32], now).expect("opens");
        assert_eq!(sessions.find(&id, now).map(|s| s.token_hash), Some([7; 32]));
        assert!(sessions.find("not-a-session", now).is_none());
        assert!(sessions.find(&id, now + SESSION_LIFETIME).is_none(), "a session ends");
        let again = sessions.open([8; 32], now).expect("opens");
        sessions.close(&again);
        assert!(sessions.find(&again, now).is_none(), "signing out closes it");
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; rs_session=abc"));
        headers.append(header::COOKIE, HeaderValue::from_static("rs_signin=xyz"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, SIGNIN_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "b"), None);
    }

    #[test]
    fn forms_need_their_token_and_this_site() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(check_form(&headers, Some("t"), "t").is_ok());
        assert!(check_form(&headers, None, "t").is_err(), "no token");
        assert!(check_form(&headers, Some("u"), "t").is_err(), "another token");
        assert!(check_form(&headers, Some(""), "").is_err(), "an empty expected token matches nothing");
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(check_form(&headers, Some("t"), "t").is_ok(), "the same site");
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(check_form(&headers, Some("t"), "t").is_err(), "another site");
    }
}
