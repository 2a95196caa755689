//! `Idempotency-Key` on every POST, as Stripe's API has it: a request retried with the key of one
//! already answered gets that first answer (status, headers, body, and `Idempotent-Replayed:
//! true`) and changes nothing; the same key with another request (method, path, query or body)
//! is 409, and so is a second request while the first with its key is still being answered. A key
//! belongs to the party whose token sent it (the store keeps answers per party), so no party can
//! replay, block or detect another's.
//!
//! The first answer is kept after the handler's own commit and before it is sent; a server that
//! stops in between has made the change without keeping the answer, and the retry runs again:
//! every POST is safe to repeat on its own (a batch's records come back as duplicates, a payment's
//! reference or a dispute's claim is refused as already recorded). Answers that say nothing
//! final — 5xx (the store was down), 429 — are not kept, so the retry is answered afresh.

use std::collections::HashSet;
use std::sync::Mutex;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use revshare_core::ids::PartyId;
use revshare_store::KeptAnswer;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::auth::Caller;
use crate::problem::Problem;

/// The request header.
pub(crate) const HEADER: &str = "idempotency-key";

/// The answer's headers a replay repeats.
const KEPT_HEADERS: [HeaderName; 3] = [header::CONTENT_TYPE, header::LOCATION, header::RETRY_AFTER];

/// The (party, key) pairs whose first request is being answered now.
#[derive(Default)]
pub(crate) struct InFlight(Mutex<HashSet<(PartyId, String)>>);

/// Holds a (party, key) pair in flight until dropped.
struct Claim<'a> {
    in_flight: &'a InFlight,
    pair: (PartyId, String),
}

impl InFlight {
    fn claim(&self, party: &PartyId, key: &str) -> Option<Claim<'_>> {
        let pair = (party.clone(), key.to_owned());
        let newly = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(pair.clone());
        // Made only when the pair is newly held (and after the lock is let go): dropping a
        // claim lets its pair go.
        if newly { Some(Claim { in_flight: self, pair }) } else { None }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.in_flight.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.pair);
    }
}

fn conflict(detail: &str) -> Response {
    Problem::new(StatusCode::CONFLICT, "idempotency-conflict", "the Idempotency-Key is taken", detail).into_response()
}

/// Whether a key is one: 1 to 255 visible ASCII characters.
fn valid(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The middleware on `/v1` (inside authentication: the caller is known).
pub(crate) async fn replay(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(value) = request.headers().get(HEADER).filter(|_| request.method() == Method::POST) else {
        return next.run(request).await;
    };
    let Some(key) = value.to_str().ok().filter(|k| valid(k)).map(str::to_owned) else {
        return Problem::bad_request("the Idempotency-Key header is 1 to 255 visible ASCII characters (a UUID, say)").into_response();
    };
    let Some(party) = request.extensions().get::<Caller>().map(|c| c.party.clone()) else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let bytes = match crate::body::read(&parts.headers, body, state.max_body_bytes(), state.body_idle()).await {
        Ok(bytes) => bytes,
        Err(problem) => return problem.into_response(),
    };
    let mut hasher = Sha256::new();
    for piece in [parts.method.as_str().as_bytes(), parts.uri.path().as_bytes(), parts.uri.query().unwrap_or("").as_bytes()] {
        hasher.update(u64::try_from(piece.len()).unwrap_or(u64::MAX).to_be_bytes());
        hasher.update(piece);
    }
    hasher.update(&bytes);
    let digest: [u8; 32] = hasher.finalize().into();

    let Some(_claim) = state.in_flight().claim(&party, &key) else {
        return conflict("a request with this Idempotency-Key is still being answered; retry when it is, with the same key");
    };
    let (who, named) = (party.clone(), key.clone());
    match state.run(move |store, _| Ok(store.kept_answer(&who, &named)?)).await {
        Err(problem) => return problem.into_response(),
        Ok(Some(kept)) if kept.request_digest == digest => return replayed(kept),
        Ok(Some(_)) => {
            return conflict(
                "this Idempotency-Key was sent with another request (method, path, query or body); a key names one request: \
                 send a new key for a new request",
            );
        }
        Ok(None) => {}
    }
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return response;
    }
    let (mut answer, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, state.max_body_bytes()).await {
        Ok(body) => body,
        Err(e) => return Problem::internal("an answer cannot be read to keep it", &e).into_response(),
    };
    let headers = KEPT_HEADERS
        .iter()
        .filter_map(|name| answer.headers.get(name).and_then(|v| v.to_str().ok()).map(|v| (name.as_str().to_owned(), v.to_owned())))
        .collect();
    let kept = KeptAnswer { request_digest: digest, status: status.as_u16(), headers, body: body.to_vec() };
    if let Err(problem) = state.write(move |store, shared| Ok(store.keep_answer(&party, &key, &kept, shared.now())?)).await {
        // The change is made; only its replay is lost (a retry is answered afresh, see above).
        tracing::warn!(detail = %problem.detail, "an idempotent answer could not be kept");
    }
    answer.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(answer, Body::from(body))
}

/// The kept answer, sent again.
fn replayed(kept: KeptAnswer) -> Response {
    let mut response = Response::new(Body::from(kept.body));
    *response.status_mut() = StatusCode::from_u16(kept.status).unwrap_or(StatusCode::OK);
    for (name, value) in kept.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_visible_ascii_up_to_255() {
        assert!(valid("3f1c8c6e-0b5e-4c1a-9a8e-2b1d7a9f0c11"));
        assert!(!valid(""));
        assert!(!valid("two words"));
        assert!(!valid(&"k".repeat(256)));
    }

    #[test]
    fn a_pair_is_held_until_its_claim_is_dropped() {
        let in_flight = InFlight::default();
        let party = PartyId::parse("northwind").expect("an id");
        let claim = in_flight.claim(&party, "k");
        assert!(claim.is_some());
        assert!(in_flight.claim(&party, "k").is_none(), "the same pair twice");
        assert!(in_flight.claim(&PartyId::parse("southwind").expect("an id"), "k").is_some(), "another party's key is its own");
        drop(claim);
        assert!(in_flight.claim(&party, "k").is_some());
    }
}
