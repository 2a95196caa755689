//! Bearer tokens and who a request comes from (SPEC §9).
//!
//! A token is `rs_` followed by 32 random bytes in unpadded base64url: 256 bits, so it needs no
//! slow hash; the store keeps its SHA-256 only ([`hash`]). A request's token is hashed, the row
//! with that hash is fetched, and the stored hash is compared with the computed one in constant
//! time (`subtle`), so the comparison itself tells a timing observer nothing. A missing, malformed,
//! unknown or revoked token is refused with 401 saying which of those it was; nothing else about
//! the stored tokens is revealed. The token's id is derived from its hash (`tok-` and 12 hex
//! digits), so it can be printed, logged and revoked without the token itself.
//!
//! What a caller may see is [`may_read`]: a host its own agreements, a licensor its own, an
//! auditor the ones the operator granted it (read when its token is, so a request sees one set
//! of grants), an arbiter and the operator none (an arbiter reads the disputes escalated to it:
//! `disputes.rs`); a log leaf's content is [`may_read_leaf`]. Only a host writes usage, and only
//! its own; the other writes (agreements, closes, countersignatures, payments, the operator's
//! registrations and grants) are checked by their handlers.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use revshare_core::ids::{AgreementId, PartyId};
use revshare_core::transparency::read_event;
use revshare_store::{Party, Role, Store, StoreError};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::AppState;
use crate::problem::Problem;

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "rs_";

/// A new token's text from 32 random bytes.
pub fn encode(random: &[u8; 32]) -> String {
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(random))
}

/// A new token from the operating system's random source: its text (shown once), the hash the
/// store keeps, and its id.
pub fn new_token() -> Result<(String, [u8; 32], String), String> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| format!("the operating system's random source failed: {e}"))?;
    let token = encode(&random);
    let hash = hash(&token);
    let id = id_of(&hash);
    Ok((token, hash, id))
}

/// The SHA-256 of a token's text: what the store keeps.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The id a token is stored, listed and revoked under, derived from its hash.
pub fn id_of(hash: &[u8; 32]) -> String {
    let hex: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("tok-{hex}")
}

/// Who is calling: the token's party and role, and for an auditor the agreements granted to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub token: String,
    pub party: PartyId,
    pub role: Role,
    pub granted: std::sync::Arc<std::collections::BTreeSet<AgreementId>>,
}

impl Caller {
    /// Refuses the call unless the caller has `role`; `action` says what was refused.
    pub fn require(&self, role: Role, action: &str) -> Result<(), Problem> {
        if self.role == role {
            Ok(())
        } else {
            Err(Problem::forbidden(format!("only {} may {action}; this token acts for {} {}", role.with_article(), self.role, self.party)))
        }
    }
}

/// Whether a caller may read what belongs to agreement `id` between `licensor` and `host`.
pub fn may_read(caller: &Caller, id: &AgreementId, licensor: &PartyId, host: &PartyId) -> bool {
    match caller.role {
        Role::Auditor => caller.granted.contains(id),
        Role::Arbiter | Role::Operator => false,
        Role::Host => host == &caller.party,
        Role::Licensor => licensor == &caller.party,
    }
}

/// Whether a caller may read `agreement` (any version).
pub fn may_read_agreement(caller: &Caller, agreement: &revshare_core::agreement::Agreement) -> bool {
    may_read(caller, agreement.id(), agreement.licensor(), agreement.host())
}

/// Whether a caller may read a party's record (SPEC §9: no answer discloses a party the caller is
/// not entitled to): its own; for a host, the licensors it has an agreement with; for a licensor,
/// the hosts it has an agreement with; for an auditor, the parties of the agreements granted to
/// it; for the operator, who registers them, every party; for an arbiter, none but itself. A
/// party's keys are shown to itself only (`registry.rs`).
pub(crate) fn may_read_party(store: &mut dyn Store, caller: &Caller, party: &Party) -> Result<bool, Problem> {
    if caller.party == party.id && caller.role == party.role {
        return Ok(true);
    }
    Ok(match (caller.role, party.role) {
        (Role::Operator, _) => true,
        (Role::Auditor, Role::Licensor | Role::Host) => {
            let mut parties_of = Vec::new();
            for id in caller.granted.iter() {
                match store.agreement(id, None) {
                    Ok(agreement) => parties_of.push([agreement.licensor().clone(), agreement.host().clone()]),
                    Err(StoreError::UnknownAgreement { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            parties_of.iter().any(|parties| parties.contains(&party.id))
        }
        (Role::Host, Role::Licensor) => store.agreements_of_licensor(&party.id)?.iter().any(|a| a.host() == &caller.party),
        (Role::Licensor, Role::Host) => store.agreements_of_licensor(&caller.party)?.iter().any(|a| a.host() == &party.id),
        _ => false,
    })
}

/// Whether a log leaf's event is the caller's to read (SPEC §9): the deployment's keys are
/// everyone's, a party's key is its own; a usage batch is theirs who may read an agreement
/// between a host and a licensor it stored records for (its event names no one: its digest is
/// over salted commitments, so a licensor of part of a mixed batch learns nothing of the rest);
/// an agreement's events (its versions, statements, contributions, dispute transitions, journal
/// entries, grants) are theirs who may read the agreement ([`may_read`]), and a grant is also its
/// auditor's. Anything else, or a leaf that does not read as one of these, is no one's.
pub(crate) fn may_read_leaf(store: &mut dyn Store, caller: &Caller, index: u64, event: &[u8]) -> Result<bool, Problem> {
    let Some((kind, value)) = read_event(event) else { return Ok(false) };
    let text = |key: &str| value.get(key).and_then(Value::as_str);
    Ok(match kind.as_str() {
        "key" => text("party").is_none_or(|party| party == caller.party.as_str() && caller.role != Role::Operator),
        "usage_batch" => {
            for (host, licensor) in store.batch_parties(index)? {
                let (Ok(host), Ok(licensor)) = (PartyId::parse(&host), PartyId::parse(&licensor)) else { continue };
                let readable = match caller.role {
                    Role::Host => host == caller.party,
                    Role::Licensor => licensor == caller.party,
                    Role::Auditor => {
                        store.agreements_of_licensor(&licensor)?.iter().any(|a| a.host() == &host && may_read_agreement(caller, a))
                    }
                    Role::Arbiter | Role::Operator => false,
                };
                if readable {
                    return Ok(true);
                }
            }
            false
        }
        "agreement" => match (text("id").map(AgreementId::parse), text("licensor").map(PartyId::parse), text("host").map(PartyId::parse)) {
            (Some(Ok(id)), Some(Ok(licensor)), Some(Ok(host))) => may_read(caller, &id, &licensor, &host),
            _ => false,
        },
        "grant" if caller.role == Role::Auditor && text("auditor") == Some(caller.party.as_str()) => true,
        "statement" | "contribution" | "dispute" | "journal_entry" | "grant" => {
            let Some(Ok(id)) = text("agreement").map(AgreementId::parse) else { return Ok(false) };
            match store.agreement(&id, None) {
                Ok(agreement) => may_read_agreement(caller, &agreement),
                Err(StoreError::UnknownAgreement { .. }) => false,
                Err(e) => return Err(e.into()),
            }
        }
        _ => false,
    })
}

/// The agreements granted to `party` and in force, if it is an auditor (nobody else is granted any).
pub(crate) fn granted(store: &mut dyn Store, party: &PartyId, role: Role) -> Result<std::collections::BTreeSet<AgreementId>, Problem> {
    if role != Role::Auditor {
        return Ok(std::collections::BTreeSet::new());
    }
    Ok(store.grants(None, Some(party))?.into_iter().filter(|g| g.revoked_leaf.is_none()).map(|g| g.agreement).collect())
}

/// The middleware in front of every `/v1` route: finds the caller, or answers 401.
pub(crate) async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    // Failed authentications are limited per client address, and checked before the store is
    // asked: guessing tokens, or replaying revoked ones, costs the server nothing past the limit.
    let address = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |info| info.0.ip().to_string());
    let now = std::time::Instant::now();
    if let Err(wait) = state.failures().check(&address, now) {
        return Problem::too_many_failures(wait).into_response();
    }
    match caller(&state, request.headers()).await {
        Ok(caller) => {
            if let Err(wait) = state.limiter().take(&caller.token, std::time::Instant::now()) {
                return Problem::too_many_requests(&caller.token, wait).into_response();
            }
            tracing::debug!(party = %caller.party, role = %caller.role, token = %caller.token, "authenticated");
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(problem) => {
            if problem.status == axum::http::StatusCode::UNAUTHORIZED {
                // Over the limit now or not, this answer stands; the next one waits.
                let _ = state.failures().take(&address, now);
            }
            problem.into_response()
        }
    }
}

async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, Problem> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        Problem::unauthorized(
            "the request has no Authorization header; send `Authorization: Bearer rs_…` with a token from `revshare token create`",
        )
    })?;
    let text = value.to_str().map_err(|_| Problem::unauthorized("the Authorization header is not ASCII text"))?;
    let token = match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(Problem::unauthorized("the Authorization header is not `Bearer <token>`")),
    };
    if !token.starts_with(TOKEN_PREFIX) {
        return Err(Problem::unauthorized(format!("the bearer token is not a revshare token (they start with `{TOKEN_PREFIX}`)")));
    }
    caller_of(state, hash(token)).await
}

/// The caller a token's hash stands for (a bearer token's, or a dashboard session's), or 401 for
/// an unknown or revoked token.
pub(crate) async fn caller_of(state: &AppState, computed: [u8; 32]) -> Result<Caller, Problem> {
    let stored = state.run(move |store, _| Ok(store.token_by_hash(&computed)?)).await?;
    match stored {
        Some(stored) if bool::from(stored.hash.ct_eq(&computed)) => {
            if stored.revoked {
                return Err(Problem::unauthorized(format!("token {} is revoked; ask for a new one", stored.id)));
            }
            let (party, role) = (stored.party.clone(), stored.role);
            let granted = state.run(move |store, _| granted(store, &party, role)).await?;
            Ok(Caller { token: stored.id, party: stored.party, role: stored.role, granted: std::sync::Arc::new(granted) })
        }
        _ => Err(Problem::unauthorized("the bearer token is not known here")),
    }
}
