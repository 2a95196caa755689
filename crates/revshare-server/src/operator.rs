//! The operator's routes (SPEC §1, §9): tokens and auditors' grants. Parties are registered in
//! `registry.rs`, by the operator too.
//!
//! Only an operator token (`revshare token create --operator`) creates and revokes tokens and
//! grants; on the store, the CLI does the same (`token`, `grant`). A token is shown once, in the
//! answer that creates it. A grant and its revocation are leaves of the log; the grants of an
//! agreement are listed to both its parties, an auditor's own to it, and all to the operator.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use revshare_store::{Grant, Role, Store, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{Caller, new_token};
use crate::extract::{Params, agreement_id, json_body, params, party_id, readable};
use crate::problem::{Problem, ProblemDetails};

/// A token to create: for a registered party, in its registered role.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    #[schema(example = "northwind")]
    pub party: String,
}

/// A new token: its text is shown here once, and only its SHA-256 is kept.
#[derive(Serialize, ToSchema)]
pub struct NewToken {
    #[schema(example = "tok-1a2b3c4d5e6f")]
    pub id: String,
    pub token: String,
    pub party: String,
    pub role: String,
}

/// A token to revoke, by its id.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeTokenBody {
    #[schema(example = "tok-1a2b3c4d5e6f")]
    pub id: String,
}

/// A token as it now is.
#[derive(Serialize, ToSchema)]
pub struct TokenView {
    #[schema(example = "northwind-billing")]
    pub id: String,
    #[schema(example = "northwind")]
    pub party: String,
    #[schema(example = "host")]
    pub role: String,
    pub revoked: bool,
}

/// An auditor and an agreement: a grant to make or revoke.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    #[schema(example = "ledgerlight")]
    pub auditor: String,
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
}

/// A grant: the leaves of the log that made it and, once revoked, that revoked it.
#[derive(Serialize, ToSchema)]
pub struct GrantView {
    #[schema(example = "ledgerlight")]
    pub auditor: String,
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
    pub granted_leaf: u64,
    pub revoked_leaf: Option<u64>,
}

impl GrantView {
    fn of(grant: Grant) -> GrantView {
        GrantView {
            auditor: grant.auditor.to_string(),
            agreement: grant.agreement.to_string(),
            granted_leaf: grant.granted_leaf,
            revoked_leaf: grant.revoked_leaf,
        }
    }
}

/// Creates a token for a registered party, in its registered role, as `revshare token create` does.
#[utoipa::path(
    post,
    path = "/tokens",
    tag = "operator",
    request_body(content = TokenBody, content_type = "application/json"),
    responses(
        (status = 201, description = "created; the token is shown this once", body = NewToken),
        (status = 400, description = "invalid body", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not an operator token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "another content type", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "the party is not registered", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<(StatusCode, Json<NewToken>), Problem> {
    caller.require(Role::Operator, "create a token")?;
    let body: TokenBody = json_body(&state, &headers, request_body).await?;
    let party = party_id(&body.party, "party")?;
    let created = state
        .write(move |store, _| {
            let role = store
                .party(&party)?
                .ok_or_else(|| StoreError::UnknownParty { id: party.to_string(), purpose: "the party a token acts for".to_owned() })?
                .role;
            let (token, hash, id) = new_token().map_err(|e| Problem::internal("no token could be made", &e))?;
            store.add_token(&id, &party, role, &hash)?;
            Ok(NewToken { id, token, party: party.to_string(), role: role.as_str().to_owned() })
        })
        .await?;
    tracing::info!(token = %created.id, party = %created.party, "token created by the operator");
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revokes a token for good, as `revshare token revoke` does.
#[utoipa::path(
    post,
    path = "/tokens/revocations",
    tag = "operator",
    request_body(content = RevokeTokenBody, content_type = "application/json"),
    responses(
        (status = 200, description = "revoked (or revoked before)", body = TokenView),
        (status = 400, description = "invalid body", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not an operator token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "another content type", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<TokenView>, Problem> {
    caller.require(Role::Operator, "revoke a token")?;
    let body: RevokeTokenBody = json_body(&state, &headers, request_body).await?;
    let token = state.write(move |store, _| Ok(store.revoke_token(&body.id)?)).await?;
    tracing::info!(token = %token.id, "token revoked by the operator");
    Ok(Json(TokenView { id: token.id, party: token.party.to_string(), role: token.role.as_str().to_owned(), revoked: token.revoked }))
}

/// Grants a registered auditor reading an agreement (every version), as `revshare grant add`
/// does; logged. A grant in force is answered as it is.
#[utoipa::path(
    post,
    path = "/grants",
    tag = "operator",
    request_body(content = GrantBody, content_type = "application/json"),
    responses(
        (status = 201, description = "granted and logged (or in force already)", body = GrantView),
        (status = 400, description = "invalid body", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not an operator token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "another content type", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "the auditor is not a registered auditor", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_grant(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<(StatusCode, Json<GrantView>), Problem> {
    caller.require(Role::Operator, "grant an auditor an agreement")?;
    let body: GrantBody = json_body(&state, &headers, request_body).await?;
    let (auditor, agreement) = (party_id(&body.auditor, "auditor")?, agreement_id(&body.agreement)?);
    let grant = state.write(move |store, _| Ok(store.grant(&auditor, &agreement)?)).await?;
    tracing::info!(auditor = %grant.auditor, agreement = %grant.agreement, leaf = grant.granted_leaf, "grant made");
    Ok((StatusCode::CREATED, Json(GrantView::of(grant))))
}

/// Revokes an auditor's grant in force on an agreement, as `revshare grant revoke` does; logged.
#[utoipa::path(
    post,
    path = "/grants/revocations",
    tag = "operator",
    request_body(content = GrantBody, content_type = "application/json"),
    responses(
        (status = 200, description = "revoked and logged", body = GrantView),
        (status = 400, description = "invalid body", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not an operator token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no grant in force to that auditor on that agreement", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "another content type", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn revoke_grant(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<GrantView>, Problem> {
    caller.require(Role::Operator, "revoke a grant")?;
    let body: GrantBody = json_body(&state, &headers, request_body).await?;
    let (auditor, agreement) = (party_id(&body.auditor, "auditor")?, agreement_id(&body.agreement)?);
    let grant = state.write(move |store, _| Ok(store.revoke_grant(&auditor, &agreement)?)).await?;
    tracing::info!(auditor = %grant.auditor, agreement = %grant.agreement, "grant revoked");
    Ok(Json(GrantView::of(grant)))
}

/// The grants this token may see, in force and revoked: of the agreements it may read (both
/// parties see who may read theirs), its own (an auditor), or all (the operator); `agreement`
/// narrows them to one the token may read (the operator reads none, so it lists them all).
#[utoipa::path(
    get,
    path = "/grants",
    tag = "operator",
    params(("agreement" = Option<String>, Query, description = "only this agreement's grants")),
    responses(
        (status = 200, description = "the grants this token may see", body = Vec<GrantView>),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_grants(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Json<Vec<GrantView>>, Problem> {
    let params = params(query)?;
    let agreement = params.get("agreement").map(|a| agreement_id(a)).transpose()?;
    let views = state
        .run(move |store, _| {
            // The operator reads no agreement: it lists every grant, unfiltered.
            if let Some(id) = &agreement {
                readable(store, &caller, id)?;
            }
            let mut visible = Vec::new();
            for grant in store.grants(agreement.as_ref(), None)? {
                if may_see(store, &caller, &grant)? {
                    visible.push(GrantView::of(grant));
                }
            }
            Ok(visible)
        })
        .await?;
    Ok(Json(views))
}

/// Whether a caller sees a grant: the operator every one, an auditor its own, a party those of
/// the agreements it may read.
fn may_see(store: &mut dyn Store, caller: &Caller, grant: &Grant) -> Result<bool, Problem> {
    Ok(match caller.role {
        Role::Operator => true,
        Role::Auditor if grant.auditor == caller.party => true,
        _ => match readable(store, caller, &grant.agreement) {
            Ok(_) => true,
            Err(problem) if problem.status == StatusCode::NOT_FOUND => false,
            Err(problem) => return Err(problem),
        },
    })
}
