//! The licence rules of SPEC §11 that settlement applies. [`Lineage`]: which models derive from
//! which (SPEC §1, `derived_from`), so that an agreement covering a base model covers its
//! fine-tunes and distillations at any depth.
//!
//! A lineage is data, like the records: the store builds it from its registry, a file gives it to
//! `revshare settle --models`, and a bundle carries the part its statement used (`models.json`),
//! in one format — a JSON array of `{"id": …, "derived_from": …}`, what `revshare model list
//! --format json` prints.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ids::ModelId;

/// Which model each derived model derives from (child → parent). Every chain ends at a base
/// model: [`Lineage::new`] refuses a cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lineage {
    parents: BTreeMap<ModelId, ModelId>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineageError {
    #[error("model {model} derives from itself ({path}); a chain of derivations must end at a base model")]
    Cycle { model: String, path: String },
    #[error("model {model} is given twice, derived from {first} and from {second}; a model derives from one model")]
    TwoParents { model: String, first: String, second: String },
    #[error("{at}: {problem}; expected {expected}")]
    Format { at: String, problem: String, expected: &'static str },
}

const SHAPE: &str =
    "a JSON array of {\"id\": \"<model>\", \"derived_from\": \"<model>\" or null}, as `revshare model list --format json` prints";

impl Lineage {
    /// The lineage of `(model, parent)` pairs; a pair given twice is one pair.
    pub fn new(pairs: impl IntoIterator<Item = (ModelId, ModelId)>) -> Result<Lineage, LineageError> {
        let mut parents: BTreeMap<ModelId, ModelId> = BTreeMap::new();
        for (model, parent) in pairs {
            match parents.get(&model) {
                Some(first) if *first != parent => {
                    return Err(LineageError::TwoParents {
                        model: model.to_string(),
                        first: first.to_string(),
                        second: parent.to_string(),
                    });
                }
                _ => {
                    parents.insert(model, parent);
                }
            }
        }
        let lineage = Lineage { parents };
        for model in lineage.parents.keys() {
            let mut path = vec![model.as_str()];
            let mut at = model;
            while let Some(parent) = lineage.parents.get(at) {
                path.push(parent.as_str());
                if parent == model {
                    return Err(LineageError::Cycle { model: model.to_string(), path: path.join(" → ") });
                }
                // A chain longer than the map revisits a model: a cycle not through `model`,
                // which the walk from that model reports.
                if path.len() > lineage.parents.len() + 1 {
                    break;
                }
                at = parent;
            }
        }
        Ok(lineage)
    }

    /// The first model of `covered` that `model` derives from, walking up from its parent; `None`
    /// for a model that derives from none of them (or from nothing).
    pub fn base_among<'a>(&self, model: &str, covered: &'a [ModelId]) -> Option<&'a ModelId> {
        let mut at = self.parents.iter().find(|(m, _)| m.as_str() == model).map(|(_, p)| p)?;
        // `new` refused cycles, so the walk ends; the bound only keeps that obvious.
        for _ in 0..self.parents.len() {
            if let Some(base) = covered.iter().find(|c| *c == at) {
                return Some(base);
            }
            at = self.parents.get(at)?;
        }
        None
    }

    /// The part of the lineage that the chains of `models` walk through.
    pub fn chains_of<'m>(&self, models: impl IntoIterator<Item = &'m str>) -> Lineage {
        let mut parents = BTreeMap::new();
        for model in models {
            let mut at = self.parents.iter().find(|(m, _)| m.as_str() == model);
            while let Some((child, parent)) = at {
                if parents.insert(child.clone(), parent.clone()).is_some() {
                    break;
                }
                at = self.parents.get_key_value(parent);
            }
        }
        Lineage { parents }
    }

    /// The JSON array, by model id.
    pub fn to_json(&self) -> Value {
        Value::Array(self.parents.iter().map(|(m, p)| serde_json::json!({"id": m.as_str(), "derived_from": p.as_str()})).collect())
    }

    /// Reads [`SHAPE`]: models without `derived_from` (or with null) are base models and add
    /// nothing; `owner` and `registered_by` may be present (the list's form) and are not used.
    pub fn from_json(name: &str, bytes: &[u8]) -> Result<Lineage, LineageError> {
        let format = |at: String, problem: String| LineageError::Format { at, problem, expected: SHAPE };
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format(format!("{name}:{}:{}", e.line(), e.column()), e.to_string()))?;
        let Value::Array(items) = value else { return Err(format(name.to_owned(), "not a JSON array".to_owned())) };
        let mut pairs = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = |member: &str| format!("{name} item {i}{member}");
            let Value::Object(map) = item else { return Err(format(at(""), "not an object".to_owned())) };
            if let Some(other) = map.keys().find(|k| !["id", "derived_from", "owner", "registered_by"].contains(&k.as_str())) {
                return Err(format(at(&format!(" member `{other}`")), "not a member of a model".to_owned()));
            }
            let id = |member: &str| -> Result<Option<ModelId>, LineageError> {
                match map.get(member) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(text)) => {
                        ModelId::parse(text).map(Some).map_err(|e| format(at(&format!(" member `{member}`")), e.to_string()))
                    }
                    Some(_) => Err(format(at(&format!(" member `{member}`")), "not a string".to_owned())),
                }
            };
            let Some(model) = id("id")? else { return Err(format(at(""), "no `id`".to_owned())) };
            if let Some(parent) = id("derived_from")? {
                pairs.push((model, parent));
            }
        }
        Lineage::new(pairs)
    }
}
