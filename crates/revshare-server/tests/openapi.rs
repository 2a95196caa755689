//! The committed OpenAPI document (`docs/openapi.json`) is what the code generates: a change of
//! a route, parameter or answer type that is not committed there fails here. To accept a change,
//! regenerate it: `REVSHARE_WRITE_OPENAPI=1 cargo test -p revshare-server --test openapi`.

use std::path::Path;

#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let generated = format!("{}\n", revshare_server::openapi().to_pretty_json().expect("the document serialises"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("REVSHARE_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the generated document; if the change is meant, run \
         `REVSHARE_WRITE_OPENAPI=1 cargo test -p revshare-server --test openapi` and commit it"
    );
}

#[test]
fn the_document_is_openapi_3_1_and_covers_every_route() {
    let document: serde_json::Value = serde_json::from_str(&revshare_server::openapi().to_json().expect("JSON")).expect("a JSON document");
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", document["openapi"]);
    let paths: Vec<&str> = document["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
    for route in [
        "/healthz",
        "/v1/usage",
        "/v1/agreements/{agreement}",
        "/v1/statements",
        "/v1/statements/{agreement}/{period}",
        "/v1/balances",
        "/v1/log/checkpoint",
        "/v1/log/inclusion",
        "/v1/log/consistency",
        "/v1/statements/{agreement}/{period}/signatures",
        "/v1/agreements",
        "/v1/close",
        "/v1/payments",
        "/v1/statements/{agreement}/{period}/bundle",
        "/v1/parties",
        "/v1/parties/{party}",
        "/v1/models",
        "/v1/models/{model}",
        "/v1/aliases",
        "/v1/usage/summary",
    ] {
        assert!(paths.contains(&route), "{route} is documented: {paths:?}");
    }
    assert_eq!(document["paths"]["/v1/usage"]["post"]["security"], serde_json::json!([{ "bearer": [] }]));
    assert!(document["components"]["schemas"]["ProblemDetails"]["properties"]["type"].is_object(), "problem details have `type`");
}

/// OpenAPI 3.1 requires a `description` on every response (`openapi-spec-validator`, which
/// `.ci/run` runs on the committed document, says so too; generators refuse the document).
#[test]
fn every_response_is_described() {
    let document: serde_json::Value = serde_json::from_str(&revshare_server::openapi().to_json().expect("JSON")).expect("a JSON document");
    let mut bare = Vec::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                if response["description"].as_str().is_none_or(str::is_empty) {
                    bare.push(format!("{method} {path} {status}"));
                }
            }
        }
    }
    assert!(bare.is_empty(), "responses without a description: {bare:?}");
}

/// Whether a schema, or one of its members, items or alternatives (following references, a page's
/// items' members at most), shows an example.
fn shows_example(document: &serde_json::Value, schema: &serde_json::Value, depth: usize) -> bool {
    if depth > 8 {
        return false;
    }
    if schema.get("example").is_some() || schema.get("examples").is_some() {
        return true;
    }
    if let Some(name) = schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        return shows_example(document, &document["components"]["schemas"][name], depth + 1);
    }
    let members = schema["properties"].as_object().into_iter().flat_map(|m| m.values());
    let alternatives = ["allOf", "oneOf", "anyOf"].into_iter().flat_map(|k| schema[k].as_array().into_iter().flatten());
    members.chain(alternatives).chain(std::iter::once(&schema["items"])).any(|s| shows_example(document, s, depth + 1))
}

/// Every successful JSON answer shows what it looks like: an integrator reads the example before
/// the schema.
#[test]
fn every_json_answer_has_an_example() {
    let document: serde_json::Value = serde_json::from_str(&revshare_server::openapi().to_json().expect("JSON")).expect("a JSON document");
    let mut bare = Vec::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            for (status, response) in operation["responses"].as_object().into_iter().flatten().filter(|(s, _)| s.starts_with('2')) {
                for (media, content) in response["content"].as_object().into_iter().flatten().filter(|(m, _)| m.contains("json")) {
                    if content.get("example").is_none() && !shows_example(&document, &content["schema"], 0) {
                        bare.push(format!("{method} {path} {status} {media}"));
                    }
                }
            }
        }
    }
    assert!(bare.is_empty(), "JSON answers without an example: {bare:?}");
}

/// Every link of a create's answer names an operation of the document, only parameters that
/// operation takes, and members the answer has: a renamed route or field cannot leave a link
/// that goes nowhere.
#[test]
fn links_lead_to_operations_with_the_answers_members() {
    let document: serde_json::Value = serde_json::from_str(&revshare_server::openapi().to_json().expect("JSON")).expect("a JSON document");
    let operations: Vec<&serde_json::Value> =
        document["paths"].as_object().expect("paths").values().flat_map(|item| item.as_object().expect("operations").values()).collect();
    let schema_of = |reference: &str| &document["components"]["schemas"][reference.trim_start_matches("#/components/schemas/")];
    let mut links = 0;
    for (path, item) in document["paths"].as_object().expect("paths") {
        let created = &item["post"]["responses"]["201"];
        let body = schema_of(created["content"]["application/json"]["schema"]["$ref"].as_str().unwrap_or_default());
        for (name, link) in created["links"].as_object().into_iter().flatten() {
            links += 1;
            let target = link["operationId"].as_str().expect("an operationId");
            let operation =
                operations.iter().find(|op| op["operationId"] == target).unwrap_or_else(|| panic!("{path} {name}: no operation {target}"));
            let takes: Vec<&str> = operation["parameters"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
            for (parameter, value) in link["parameters"].as_object().into_iter().flatten() {
                assert!(takes.contains(&parameter.as_str()), "{path} {name}: {target} takes no `{parameter}`");
                let member = value.as_str().and_then(|v| v.strip_prefix("$response.body#/")).expect("a body pointer");
                assert!(body["properties"][member].is_object(), "{path} {name}: the answer has no `{member}`: {body}");
            }
        }
    }
    assert!(links >= 14, "the creates' links are in the document ({links})");
}
