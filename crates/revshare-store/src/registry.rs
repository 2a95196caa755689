//! Parties, models and host model aliases.
//!
//! Registering something that is already registered with exactly the same values is a no-op
//! (scripts can re-run their setup); the same id with anything different is refused, naming what
//! is stored. Nothing registered is ever changed or removed: records and agreements point at it.
//!
//! An alias maps a host's own name for a model (`nw-llama-70b`) to the licensed model id
//! (`m-70b`); it belongs to that host only. Resolution follows the host's alias first, then the
//! registered models, so a host can keep reporting under its own names.

use revshare_core::dispute::ActorRole;
use std::collections::HashMap;
use std::fmt;

use revshare_core::ids::{ModelId, PartyId};
use revshare_core::licence::Lineage;

use crate::error::StoreError;
use crate::sql::{Columns, Param, Sql, first, rows};

/// What a party does; or, for a token, the deployment's operator (SPEC §1), who is not a party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Licensor,
    Host,
    Auditor,
    Arbiter,
    Operator,
}

/// The id an operator token acts as, which no party may take.
pub const OPERATOR: &str = "operator";

impl Role {
    pub fn parse(text: &str) -> Result<Role, StoreError> {
        match text {
            "licensor" => Ok(Role::Licensor),
            "host" => Ok(Role::Host),
            "auditor" => Ok(Role::Auditor),
            "arbiter" => Ok(Role::Arbiter),
            "operator" => Ok(Role::Operator),
            _ => Err(StoreError::BadRole(text.to_owned())),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Licensor => "licensor",
            Role::Host => "host",
            Role::Auditor => "auditor",
            Role::Arbiter => "arbiter",
            Role::Operator => "operator",
        }
    }

    /// The role with its article, as a sentence names it: `a host`, `an auditor`, `the operator`.
    pub fn with_article(&self) -> &'static str {
        match self {
            Role::Licensor => "a licensor",
            Role::Host => "a host",
            Role::Auditor => "an auditor",
            Role::Arbiter => "an arbiter",
            Role::Operator => "the operator",
        }
    }

    /// The capacity a party of this role acts on disputes in; an auditor or the operator does not act.
    pub fn dispute_role(&self) -> Option<ActorRole> {
        match self {
            Role::Licensor => Some(ActorRole::Licensor),
            Role::Host => Some(ActorRole::Host),
            Role::Arbiter => Some(ActorRole::Arbiter),
            Role::Auditor | Role::Operator => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A licensor, host, auditor or arbiter (SPEC §1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    pub id: PartyId,
    pub name: String,
    pub role: Role,
}

/// A model, owned by a licensor, possibly derived from another model (SPEC §1). A derived model
/// belongs to its base model's licensor; a host may register one (SPEC §11), and then only that
/// host's records may name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    pub id: ModelId,
    pub owner: PartyId,
    pub derived_from: Option<ModelId>,
    /// The host that registered it; `None` when its licensor did.
    pub registered_by: Option<PartyId>,
}

impl Model {
    /// Whether `party`'s records and requests may name the model: a model a host registered is
    /// that host's (and its licensor's); any other model is everyone's to name.
    pub fn named_by(&self, party: &str) -> bool {
        self.registered_by.as_ref().is_none_or(|host| host.as_str() == party) || self.owner.as_str() == party
    }
}

fn corrupt(what: String, detail: impl fmt::Display) -> StoreError {
    StoreError::Corrupt { what, detail: detail.to_string() }
}

fn read_party(row: &dyn Columns) -> Result<Party, StoreError> {
    let id = row.text(0)?;
    let what = || format!("party `{id}`");
    Ok(Party {
        id: PartyId::parse(&id).map_err(|e| corrupt(what(), e))?,
        name: row.text(1)?,
        role: Role::parse(&row.text(2)?).map_err(|e| corrupt(what(), e))?,
    })
}

fn read_model(row: &dyn Columns) -> Result<Model, StoreError> {
    let id = row.text(0)?;
    let what = || format!("model `{id}`");
    Ok(Model {
        id: ModelId::parse(&id).map_err(|e| corrupt(what(), e))?,
        owner: PartyId::parse(&row.text(1)?).map_err(|e| corrupt(what(), e))?,
        derived_from: row.opt_text(2)?.map(|d| ModelId::parse(&d)).transpose().map_err(|e| corrupt(what(), e))?,
        registered_by: row.opt_text(3)?.map(|h| PartyId::parse(&h)).transpose().map_err(|e| corrupt(what(), e))?,
    })
}

/// Every registered party, by id.
pub(crate) fn parties(sql: &mut impl Sql) -> Result<Vec<Party>, StoreError> {
    rows(sql, "SELECT id, name, role FROM parties ORDER BY id", &[], read_party)
}

/// Every registered model, by id.
pub(crate) fn models(sql: &mut impl Sql) -> Result<Vec<Model>, StoreError> {
    rows(sql, "SELECT id, owner, derived_from, registered_by FROM models ORDER BY id", &[], read_model)
}

/// Which registered model derives from which (SPEC §11): what settlement prices derived models by.
pub(crate) fn lineage(sql: &mut impl Sql) -> Result<Lineage, StoreError> {
    let pairs = rows(sql, "SELECT id, derived_from FROM models WHERE derived_from IS NOT NULL ORDER BY id", &[], |row| {
        let id = row.text(0)?;
        let parse = |text: &str| ModelId::parse(text).map_err(|e| corrupt(format!("model `{id}`"), e));
        Ok((parse(&id)?, parse(&row.text(1)?)?))
    })?;
    Lineage::new(pairs).map_err(|e| corrupt("the registered models".to_owned(), e))
}

pub(crate) fn party(sql: &mut impl Sql, id: &str) -> Result<Option<Party>, StoreError> {
    first(sql, "SELECT id, name, role FROM parties WHERE id = $1", &[Param::Text(id)], read_party)
}

/// The party `id`, which must have `role`; `purpose` says what it is needed as, for the message.
pub(crate) fn require_role(sql: &mut impl Sql, id: &str, role: Role, purpose: &str) -> Result<Party, StoreError> {
    match party(sql, id)? {
        None => Err(StoreError::UnknownParty { id: id.to_owned(), purpose: purpose.to_owned() }),
        Some(p) if p.role != role => {
            Err(StoreError::WrongRole { id: id.to_owned(), found: p.role, expected: role, purpose: purpose.to_owned() })
        }
        Some(p) => Ok(p),
    }
}

pub(crate) fn add_party(sql: &mut impl Sql, party: &Party) -> Result<(), StoreError> {
    if party.role == Role::Operator || party.id.as_str() == OPERATOR {
        return Err(StoreError::OperatorIsNoParty);
    }
    let name = &party.name;
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(StoreError::BadName { id: party.id.to_string() });
    }
    match self::party(sql, party.id.as_str())? {
        Some(existing) if existing == *party => Ok(()),
        Some(existing) => {
            Err(StoreError::PartyExists { id: party.id.to_string(), existing: format!("{} \"{}\"", existing.role, existing.name) })
        }
        None => {
            sql.execute(
                "INSERT INTO parties (id, name, role) VALUES ($1, $2, $3)",
                &[Param::Text(party.id.as_str()), Param::Text(name), Param::Text(party.role.as_str())],
            )?;
            Ok(())
        }
    }
}

pub(crate) fn model(sql: &mut impl Sql, id: &str) -> Result<Option<Model>, StoreError> {
    first(sql, "SELECT id, owner, derived_from, registered_by FROM models WHERE id = $1", &[Param::Text(id)], read_model)
}

/// Registers a model (SPEC §1, §11): its owner is a licensor; a derived model's base must be
/// registered (and, for a host, one its records may name), and it belongs to the base's owner.
/// Since a base exists before what derives from it, and a model's base never changes, no chain of
/// derivations can come back to where it started.
pub(crate) fn add_model(sql: &mut impl Sql, new: &Model) -> Result<(), StoreError> {
    require_role(sql, new.owner.as_str(), Role::Licensor, &format!("the owner of model {}", new.id))?;
    if let Some(host) = &new.registered_by {
        require_role(sql, host.as_str(), Role::Host, &format!("the host registering model {}", new.id))?;
        if new.derived_from.is_none() {
            return Err(StoreError::HostModelNotDerived { id: new.id.to_string() });
        }
    }
    // What is registered is not changed: the same again is a no-op, anything else a conflict.
    match model(sql, new.id.as_str())? {
        Some(existing) if existing == *new => return Ok(()),
        // Another host's model: its id is taken, and nothing more is said about it.
        Some(existing) if new.registered_by.as_ref().is_some_and(|host| !existing.named_by(host.as_str())) => {
            return Err(StoreError::ModelExists { id: new.id.to_string(), existing: "by another party".to_owned() });
        }
        Some(existing) => {
            return Err(StoreError::ModelExists {
                id: new.id.to_string(),
                existing: format!(
                    "owned by `{}`{}",
                    existing.owner,
                    existing.derived_from.map(|d| format!(", derived from `{d}`")).unwrap_or_default()
                ),
            });
        }
        None => {}
    }
    if let Some(base_id) = &new.derived_from {
        let unknown = || StoreError::UnknownModel { id: base_id.to_string(), purpose: format!("the model {} derives from", new.id) };
        let base = model(sql, base_id.as_str())?.ok_or_else(unknown)?;
        // Another host's model is, to this host, not registered.
        if new.registered_by.as_ref().is_some_and(|host| !base.named_by(host.as_str())) {
            return Err(unknown());
        }
        if base.owner != new.owner {
            return Err(StoreError::DerivedOwner {
                id: new.id.to_string(),
                base: base.id.to_string(),
                base_owner: base.owner.to_string(),
                owner: new.owner.to_string(),
            });
        }
    }
    sql.execute(
        "INSERT INTO models (id, owner, derived_from, registered_by) VALUES ($1, $2, $3, $4)",
        &[
            Param::Text(new.id.as_str()),
            Param::Text(new.owner.as_str()),
            Param::OptText(new.derived_from.as_ref().map(ModelId::as_str)),
            Param::OptText(new.registered_by.as_ref().map(PartyId::as_str)),
        ],
    )?;
    Ok(())
}

fn alias(sql: &mut impl Sql, host: &str, host_model: &str) -> Result<Option<String>, StoreError> {
    first(
        sql,
        "SELECT model FROM model_aliases WHERE host = $1 AND host_model = $2",
        &[Param::Text(host), Param::Text(host_model)],
        |row| row.text(0),
    )
}

pub(crate) fn add_alias(sql: &mut impl Sql, host: &PartyId, host_model: &ModelId, target: &ModelId) -> Result<(), StoreError> {
    require_role(sql, host.as_str(), Role::Host, "the host of an alias")?;
    if !model(sql, target.as_str())?.is_some_and(|m| m.named_by(host.as_str())) {
        return Err(StoreError::UnknownModel { id: target.to_string(), purpose: format!("the target of alias {host_model}") });
    }
    match alias(sql, host.as_str(), host_model.as_str())? {
        Some(existing) if existing == target.as_str() => Ok(()),
        Some(existing) => Err(StoreError::AliasExists { host: host.to_string(), host_model: host_model.to_string(), existing }),
        None => {
            sql.execute(
                "INSERT INTO model_aliases (host, host_model, model) VALUES ($1, $2, $3)",
                &[Param::Text(host.as_str()), Param::Text(host_model.as_str()), Param::Text(target.as_str())],
            )?;
            Ok(())
        }
    }
}

/// The licensed model a host means by `name`: its alias if it has one, else the model itself.
pub(crate) fn resolve(sql: &mut impl Sql, host: &str, name: &str) -> Result<Option<Model>, StoreError> {
    Resolver::default().resolve(sql, host, name)
}

/// [`resolve`] for many (host, name) pairs, reading each host's aliases and each model once: a
/// batch meets a few hosts and models in many combinations, and on PostgreSQL each read is a
/// round trip.
#[derive(Default)]
pub(crate) struct Resolver {
    aliases: HashMap<String, HashMap<String, String>>,
    models: HashMap<String, Option<Model>>,
}

impl Resolver {
    pub(crate) fn resolve(&mut self, sql: &mut impl Sql, host: &str, name: &str) -> Result<Option<Model>, StoreError> {
        if !self.aliases.contains_key(host) {
            let of_host = rows(sql, "SELECT host_model, model FROM model_aliases WHERE host = $1", &[Param::Text(host)], |row| {
                Ok((row.text(0)?, row.text(1)?))
            })?;
            self.aliases.insert(host.to_owned(), of_host.into_iter().collect());
        }
        let target = self.aliases.get(host).and_then(|of_host| of_host.get(name)).cloned();
        let id = target.as_deref().unwrap_or(name);
        let found = match self.models.get(id) {
            Some(found) => found.clone(),
            None => {
                let found = model(sql, id)?;
                self.models.insert(id.to_owned(), found.clone());
                found
            }
        };
        match (found, target) {
            // A model another host registered is, to this host, not registered.
            (Some(m), _) if !m.named_by(host) => Ok(None),
            (Some(m), _) => Ok(Some(m)),
            (None, Some(target)) => {
                Err(corrupt(format!("alias `{name}` of host `{host}`"), format_args!("its target `{target}` is not a model")))
            }
            (None, None) => Ok(None),
        }
    }
}
