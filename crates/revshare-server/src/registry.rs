//! The registry over HTTP (SPEC §1): parties, models and hosts' model aliases, as `revshare party
//! add`, `model add` and `model alias` register them (`Store::add_party`, `add_model`,
//! `add_alias`), and reading one party or model back.
//!
//! Who may do what: a licensor registers the parties it deals with (hosts, auditors, arbiters;
//! a new licensor is the operator's, with `revshare party add`, as tokens are) and its own models
//! (`owner` is the token's party; `derived_from` one of its models); a host registers aliases for
//! itself only, and models derived from a model it may name (SPEC §11: the model belongs to the
//! base model's licensor, and only this host's records may name it); auditors and arbiters read
//! only. Any token reads a model a licensor registered (records name them; they are not secret);
//! a model a host registered is read by that host, its licensor and the operator, and is not
//! found for anyone else. A party is read by itself, by its
//! counterparties (a licensor and a host with an agreement between them), by auditors and by
//! arbiters; for anyone else it is not found, exactly as a party that does not exist. Its keys are
//! shown to itself only. Registering what is registered with the same values is a no-op (the
//! store's rule), so a setup script may run again; the same id with other values is 409, naming
//! what is stored only to a caller that may read that party.
//!
//! Bodies are read field by field so that every problem names its field: an unknown field, a
//! missing one, a wrong type and an invalid id are all listed at once (400), before the store is
//! called. A refusal changes nothing.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use revshare_core::ids::{ModelId, PartyId};
use revshare_store::{Model, Party, Role, Store, StoreError};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{Caller, may_read_party};
use crate::page::created;
use crate::problem::{Problem, ProblemDetails, ProblemItem};

/// A party (SPEC §1) and its registered public keys.
#[derive(Serialize, ToSchema)]
pub struct PartyView {
    #[schema(example = "northwind")]
    pub id: String,
    #[schema(example = "Northwind Cloud")]
    pub name: String,
    /// `licensor`, `host`, `auditor` or `arbiter`.
    #[schema(example = "host")]
    pub role: String,
    /// Its Ed25519 verifier keys (`revshare party key`), in the order registered.
    pub keys: Vec<String>,
}

/// A model (SPEC §1).
#[derive(Serialize, ToSchema)]
pub struct ModelView {
    #[schema(example = "m-70b-chat")]
    pub id: String,
    /// The licensor that owns it.
    #[schema(example = "meridian")]
    pub owner: String,
    /// The model it is a fine-tune or distillation of.
    #[schema(example = "m-70b")]
    pub derived_from: Option<String>,
}

/// A host's own id for a licensed model.
#[derive(Serialize, ToSchema)]
pub struct AliasView {
    #[schema(example = "northwind")]
    pub host: String,
    #[schema(example = "nw-llama-70b")]
    pub host_model: String,
    #[schema(example = "m-70b")]
    pub model: String,
}

/// The role the operator may register a party with.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code, reason = "documents the body; it is read field by field")]
pub enum RegisteredRole {
    Licensor,
    Host,
    Auditor,
    Arbiter,
}

/// A party to register (`revshare party add`).
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the body; it is read field by field")]
pub struct PartyBody {
    /// `[a-z0-9][a-z0-9_-]{0,62}`.
    #[schema(example = "northwind")]
    id: String,
    /// 1 to 200 characters, no control characters.
    #[schema(example = "Northwind Cloud")]
    name: String,
    role: RegisteredRole,
}

/// A model to register (`revshare model add`).
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the body; it is read field by field")]
pub struct ModelBody {
    /// `[a-z0-9][a-z0-9_.-]{0,62}`.
    #[schema(example = "m-70b-chat")]
    id: String,
    /// A licensor's token: itself (the default), no other. A host's token: the base model's
    /// licensor (the default), no other.
    #[schema(example = "meridian")]
    owner: Option<String>,
    /// A registered model it is a fine-tune or distillation of; required from a host.
    #[schema(example = "m-70b")]
    derived_from: Option<String>,
}

/// An alias to register (`revshare model alias`): the host's own model id for a licensed model.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the body; it is read field by field")]
pub struct AliasBody {
    /// The token's party (the default); no other.
    #[schema(example = "northwind")]
    host: Option<String>,
    /// The id the host reports usage under.
    #[schema(example = "nw-llama-70b")]
    host_model: String,
    /// The registered (licensed) model it is.
    #[schema(example = "m-70b")]
    model: String,
}

/// A JSON object body read field by field, collecting a problem per field at fault.
struct Fields {
    map: Map<String, Value>,
    problems: Vec<ProblemItem>,
}

impl Fields {
    async fn read(state: &AppState, headers: &HeaderMap, request_body: Body, allowed: &[&str]) -> Result<Fields, Problem> {
        let value: Value = crate::extract::json_body(state, headers, request_body).await?;
        let Value::Object(map) = value else {
            return Err(Problem::bad_request(format!("the body must be a JSON object with the fields {}", allowed.join(", "))));
        };
        let mut fields = Fields { map, problems: Vec::new() };
        let unknown: Vec<String> = fields.map.keys().filter(|k| !allowed.contains(&k.as_str())).cloned().collect();
        for name in unknown {
            fields.fault(&name, format!("unknown field `{name}`; the fields are {}", allowed.join(", ")));
        }
        Ok(fields)
    }

    fn fault(&mut self, field: &str, message: String) {
        self.problems.push(ProblemItem { field: Some(field.to_owned()), message, ..ProblemItem::default() });
    }

    /// A string field; `None` (and a problem when `required`) when absent or null.
    fn text(&mut self, name: &str, required: bool, example: &str) -> Option<String> {
        match self.map.get(name) {
            Some(Value::String(text)) => Some(text.clone()),
            None | Some(Value::Null) => {
                if required {
                    self.fault(name, format!("`{name}` is missing; for example \"{name}\": \"{example}\""));
                }
                None
            }
            Some(other) => {
                let found = match other {
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::Array(_) => "an array",
                    _ => "an object",
                };
                self.fault(name, format!("`{name}` must be a string, not {found}; for example \"{name}\": \"{example}\""));
                None
            }
        }
    }

    /// A parsed field: its parse error becomes the field's problem.
    fn parse<T, E: std::fmt::Display>(&mut self, name: &str, text: Option<String>, parse: impl FnOnce(&str) -> Result<T, E>) -> Option<T> {
        let text = text?;
        match parse(&text) {
            Ok(value) => Some(value),
            Err(e) => {
                self.fault(name, format!("`{name}` is not valid: {e}"));
                None
            }
        }
    }

    /// 400 listing every field at fault, if any.
    fn check(self) -> Result<(), Problem> {
        if self.problems.is_empty() {
            return Ok(());
        }
        let detail = format!("{} field(s) of the body are not valid; nothing was stored", self.problems.len());
        Err(Problem::bad_request(detail).with_errors(self.problems))
    }
}

/// A problem about one field: its message is the detail, and the field is named.
fn about(problem: Problem, field: &str) -> Problem {
    let item = ProblemItem { field: Some(field.to_owned()), message: problem.detail.clone(), ..ProblemItem::default() };
    problem.with_errors(vec![item])
}

/// A store refusal of a registration, naming the field it is about.
fn refused(error: StoreError, field_of: impl FnOnce(&StoreError) -> Option<&'static str>) -> Problem {
    let field = field_of(&error);
    let problem = Problem::from(error);
    match field {
        Some(field) if !problem.status.is_server_error() => about(problem, field),
        _ => problem,
    }
}

/// A party as `caller` sees it: its keys are its own to see (SPEC §9), empty for anyone else.
fn party_view(store: &mut dyn Store, party: Party, caller: &Caller) -> Result<PartyView, Problem> {
    let keys = if caller.party == party.id {
        store.keys()?.into_iter().filter(|k| k.party.as_deref() == Some(party.id.as_str())).map(|k| k.key.to_text()).collect()
    } else {
        Vec::new()
    };
    Ok(PartyView { id: party.id.to_string(), name: party.name, role: party.role.as_str().to_owned(), keys })
}

fn model_view(model: Model) -> ModelView {
    ModelView { id: model.id.to_string(), owner: model.owner.to_string(), derived_from: model.derived_from.map(|d| d.to_string()) }
}

/// Registers a party, as `revshare party add` does. Only the operator (SPEC §1); the same party
/// again is a no-op.
#[utoipa::path(
    post,
    path = "/parties",
    tag = "registry",
    request_body(content = PartyBody, content_type = "application/json"),
    responses((status = 415, description = "the body is not sent as application/json", body = ProblemDetails, content_type = "application/problem+json"), 
        (status = 201, description = "registered (or already registered with these values); `Location` is the party", body = PartyView, headers(("Location" = String, description = "`/v1/parties/{party}`"))),
        (status = 400, description = "fields that are missing, unknown or not valid: each named", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not an operator token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "the id is registered with other values", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_party(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, Problem> {
    caller.require(Role::Operator, "register a party")?;
    let mut fields = Fields::read(&state, &headers, request_body, &["id", "name", "role"]).await?;
    let id = fields.text("id", true, "northwind");
    let id = fields.parse("id", id, PartyId::parse);
    let name = fields.text("name", true, "Northwind Cloud");
    let role = fields.text("role", true, "host");
    let role = fields.parse("role", role, |text| match Role::parse(text) {
        Ok(Role::Operator) | Err(_) => Err(format!("`{text}` is not a party's role; use licensor, host, auditor or arbiter")),
        Ok(role) => Ok(role),
    });
    fields.check()?;
    let (Some(id), Some(name), Some(role)) = (id, name, role) else {
        return Err(Problem::internal("a checked party body lost a field", &"no field was reported"));
    };
    let party = Party { id, name, role };
    let view = state
        .write(move |store, _| {
            store.add_party(&party).map_err(|e| {
                refused(e, |e| match e {
                    StoreError::BadName { .. } => Some("name"),
                    StoreError::PartyExists { .. } | StoreError::OperatorIsNoParty => Some("id"),
                    _ => None,
                })
            })?;
            party_view(store, party, &caller)
        })
        .await?;
    tracing::info!(party = %view.id, role = %view.role, "party registered by the operator");
    Ok(created(&format!("/v1/parties/{}", view.id), Json(view)))
}

/// A party: to itself, its counterparties (the licensors a host has agreements with, the hosts a
/// licensor has agreements with), auditors and arbiters; its keys to itself only. Any other is
/// not found, exactly as a party that does not exist.
#[utoipa::path(
    get,
    path = "/parties/{party}",
    tag = "registry",
    params(("party" = String, Path, description = "the party id")),
    responses(
        (status = 200, description = "the party", body = PartyView),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such party that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_party(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(party): Path<String>,
) -> Result<Json<PartyView>, Problem> {
    let id = PartyId::parse(&party).map_err(|e| Problem::bad_request(format!("`{party}` is not a party id: {e}")))?;
    let view = state
        .run(move |store, _| match store.party(&id)? {
            Some(party) if may_read_party(store, &caller, &party)? => party_view(store, party, &caller),
            _ => Err(Problem::not_found(format!("there is no party {id} that this token can read"))),
        })
        .await?;
    Ok(Json(view))
}

/// Registers one of the licensor's models, or a host's model derived from one, as `revshare model
/// add` does; the same model again is a no-op.
#[utoipa::path(
    post,
    path = "/models",
    tag = "registry",
    request_body(content = ModelBody, content_type = "application/json"),
    responses((status = 415, description = "the body is not sent as application/json", body = ProblemDetails, content_type = "application/problem+json"), 
        (status = 201, description = "registered (or already registered with these values); `Location` is the model", body = ModelView, headers(("Location" = String, description = "`/v1/models/{model}`"))),
        (status = 400, description = "fields that are missing, unknown or not valid: each named", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not a licensor or host token, or a licensor naming another owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "the id is registered with other values", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "`derived_from` is not a model this token may name, is missing from a host, or belongs to another licensor", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_model(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, Problem> {
    // A host registers a model derived from one it may name (SPEC §11): the model is then its own.
    let registering_host = match caller.role {
        Role::Licensor => None,
        Role::Host => Some(caller.party.clone()),
        _ => {
            return Err(Problem::forbidden(format!(
                "only a licensor, or a host for a model derived from a registered one, may register a model; this token acts for {} {}",
                caller.role, caller.party
            )));
        }
    };
    let mut fields = Fields::read(&state, &headers, request_body, &["id", "owner", "derived_from"]).await?;
    let id = fields.text("id", true, "m-70b-chat");
    let id = fields.parse("id", id, ModelId::parse);
    let owner = fields.text("owner", false, caller.party.as_str());
    let owner = fields.parse("owner", owner, PartyId::parse);
    let base = fields.text("derived_from", registering_host.is_some(), "m-70b");
    let base = fields.parse("derived_from", base, ModelId::parse);
    fields.check()?;
    let Some(id) = id else {
        return Err(Problem::internal("a checked model body lost a field", &"no field was reported"));
    };
    if let Some(owner) = owner.as_ref().filter(|owner| registering_host.is_none() && **owner != caller.party) {
        let problem =
            Problem::forbidden(format!("model {id} would be {owner}'s; a token of {} registers only its own models", caller.party));
        return Err(about(problem, "owner"));
    }
    let view = state
        .write(move |store, _| {
            let refuse = |e: StoreError| {
                refused(e, |e| match e {
                    StoreError::ModelExists { .. } => Some("id"),
                    StoreError::UnknownModel { .. } | StoreError::HostModelNotDerived { .. } => Some("derived_from"),
                    StoreError::UnknownParty { .. } | StoreError::WrongRole { .. } | StoreError::DerivedOwner { .. } => Some("owner"),
                    _ => None,
                })
            };
            // A host's derived model belongs to its base model's licensor, unless the body names
            // another owner (which the store refuses, naming the right one).
            let owner = match (&registering_host, owner, &base) {
                (None, _, _) => caller.party.clone(),
                (Some(_), Some(owner), _) => owner,
                (Some(host), None, Some(base_id)) => match store.model(base_id)?.filter(|m| m.named_by(host.as_str())) {
                    Some(found) => found.owner,
                    None => {
                        let purpose = format!("the model {id} derives from");
                        return Err(refuse(StoreError::UnknownModel { id: base_id.to_string(), purpose }));
                    }
                },
                (Some(_), None, None) => return Err(refuse(StoreError::HostModelNotDerived { id: id.to_string() })),
            };
            let model = Model { id, owner, derived_from: base, registered_by: registering_host };
            store.add_model(&model).map_err(refuse)?;
            Ok(model_view(model))
        })
        .await?;
    tracing::info!(model = %view.id, owner = %view.owner, "model registered");
    Ok(created(&format!("/v1/models/{}", view.id), Json(view)))
}

/// A model: any token may read it.
#[utoipa::path(
    get,
    path = "/models/{model}",
    tag = "registry",
    params(("model" = String, Path, description = "the model id")),
    responses(
        (status = 200, description = "the model, its owner and aliases", body = ModelView),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such model that this token may read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_model(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(model): Path<String>,
) -> Result<Json<ModelView>, Problem> {
    let id = ModelId::parse(&model).map_err(|e| Problem::bad_request(format!("`{model}` is not a model id: {e}")))?;
    // A model a host registered is that host's, its licensor's and the operator's: to anyone
    // else, not found.
    let found = state
        .run(move |store, _| {
            store
                .model(&id)?
                .filter(|m| caller.role == Role::Operator || m.named_by(caller.party.as_str()))
                .ok_or_else(|| Problem::not_found(format!("there is no model {id}")))
        })
        .await?;
    Ok(Json(model_view(found)))
}

/// Registers the host's own id for a licensed model, as `revshare model alias` does: its usage
/// may then name the model by that id. Only a host, for itself; an alias never changes.
#[utoipa::path(
    post,
    path = "/aliases",
    tag = "registry",
    request_body(content = AliasBody, content_type = "application/json"),
    responses((status = 415, description = "the body is not sent as application/json", body = ProblemDetails, content_type = "application/problem+json"), 
        (status = 200, description = "registered (or already registered with this target)", body = AliasView),
        (status = 400, description = "fields that are missing, unknown or not valid: each named", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not a host token, or another host", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "the host's id already maps to another model", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "`model` is not a registered model", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_alias(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<AliasView>, Problem> {
    caller.require(Role::Host, "register a model alias")?;
    let mut fields = Fields::read(&state, &headers, request_body, &["host", "host_model", "model"]).await?;
    let host = fields.text("host", false, caller.party.as_str());
    let host = fields.parse("host", host, PartyId::parse);
    let host_model = fields.text("host_model", true, "nw-llama-70b");
    let host_model = fields.parse("host_model", host_model, ModelId::parse);
    let model = fields.text("model", true, "m-70b");
    let model = fields.parse("model", model, ModelId::parse);
    fields.check()?;
    let (Some(host_model), Some(model)) = (host_model, model) else {
        return Err(Problem::internal("a checked alias body lost a field", &"no field was reported"));
    };
    if let Some(host) = host.as_ref().filter(|host| **host != caller.party) {
        let problem =
            Problem::forbidden(format!("the alias would be host {host}'s; a token of {} registers only its own aliases", caller.party));
        return Err(about(problem, "host"));
    }
    let host = caller.party.clone();
    let view = state
        .write(move |store, _| {
            store.add_alias(&host, &host_model, &model).map_err(|e| {
                refused(e, |e| match e {
                    StoreError::AliasExists { .. } => Some("host_model"),
                    StoreError::UnknownModel { .. } => Some("model"),
                    StoreError::UnknownParty { .. } | StoreError::WrongRole { .. } => Some("host"),
                    _ => None,
                })
            })?;
            Ok(AliasView { host: host.to_string(), host_model: host_model.to_string(), model: model.to_string() })
        })
        .await?;
    tracing::info!(host = %view.host, host_model = %view.host_model, model = %view.model, "model alias registered");
    Ok(Json(view))
}
