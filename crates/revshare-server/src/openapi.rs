//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! types they answer with (the same types serialise the answers, so the two cannot disagree).
//! It is served at `/openapi.json`; `docs/openapi.json` is a committed copy that a test compares
//! with the generated one.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::{ProblemDetails, ProblemItem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "revshare",
        description = "Revenue-share settlement between a model licensor and its hosts: usage ingestion, statements, balances and the transparency log. Every /v1 call needs `Authorization: Bearer rs_…`; errors are RFC 9457 problem details."
    ),
    modifiers(&BearerToken),
    components(schemas(ProblemDetails, ProblemItem))
)]
pub(crate) struct ApiDoc;

/// The `bearer` security scheme: a token from `revshare token create`.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("rs_ token").build()),
        );
    }
}

/// Documents `Idempotency-Key` (`idempotency.rs`) on every POST of `/v1`: the header, and the 409
/// a key used with another request is answered. Applied to the document once its routes are in.
pub(crate) fn document_idempotency_keys(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{Content, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder, Type};
    const CONFLICT: &str = "the Idempotency-Key was sent with another request, or its first request is still being answered";
    let posts = openapi.paths.paths.iter_mut().filter(|(path, _)| path.starts_with("/v1/")).filter_map(|(_, item)| item.post.as_mut());
    for post in posts {
        let key = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "1 to 255 visible ASCII characters (a UUID, say): the same key with the same request replays the first answer \
                 (with `Idempotent-Replayed: true`) and changes nothing; with another request it is 409",
            ))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(255))))
            .build();
        post.parameters.get_or_insert_with(Vec::new).push(key.into());
        match post.responses.responses.get_mut("409") {
            // A route that answers 409 of its own keeps its description, extended.
            Some(RefOr::T(own)) => own.description = format!("{}; or {CONFLICT}", own.description),
            _ => {
                let conflict = ResponseBuilder::new()
                    .description(CONFLICT)
                    .content("application/problem+json", Content::new(Some(Ref::from_schema_name("ProblemDetails"))))
                    .build();
                post.responses.responses.insert("409".to_owned(), conflict.into());
            }
        }
    }
}

/// What each create's answer links to (OpenAPI links: `operationId` and its parameters from the
/// answer's body): where the created thing is read, and the list it is in. Clients and
/// schemathesis's stateful phase follow them (create → read → list).
/// A link: the create's path, the link's name, the operation it leads to, and each of that
/// operation's parameters with the member of the answer it takes.
type CreateLink = (&'static str, &'static str, &'static str, &'static [(&'static str, &'static str)]);

const LINKS: [CreateLink; 14] = [
    ("/v1/agreements", "GetAgreement", "get_agreement", &[("agreement", "$response.body#/id")]),
    ("/v1/agreements", "ListAgreements", "list_agreements", &[]),
    ("/v1/close", "GetStatement", "get_statement", &[("agreement", "$response.body#/agreement"), ("period", "$response.body#/period")]),
    ("/v1/close", "ListStatements", "list_statements", &[("agreement", "$response.body#/agreement")]),
    ("/v1/disputes", "GetDispute", "get_dispute", &[("id", "$response.body#/id")]),
    ("/v1/disputes", "ListDisputes", "list_disputes", &[("agreement", "$response.body#/agreement")]),
    (
        "/v1/payments",
        "GetPayment",
        "get_payment",
        &[("agreement", "$response.body#/agreement"), ("reference", "$response.body#/reference")],
    ),
    ("/v1/payments", "ListPayments", "list_payments", &[("agreement", "$response.body#/agreement")]),
    (
        "/v1/contributions",
        "GetContribution",
        "get_contribution",
        &[("agreement", "$response.body#/agreement"), ("contribution", "$response.body#/id")],
    ),
    ("/v1/contributions", "ListContributions", "list_contributions", &[("agreement", "$response.body#/agreement")]),
    ("/v1/webhooks", "GetWebhook", "get_webhook", &[("id", "$response.body#/id")]),
    ("/v1/webhooks", "ListDeliveries", "list_deliveries", &[("id", "$response.body#/id")]),
    ("/v1/models", "GetModel", "get_model", &[("model", "$response.body#/id")]),
    ("/v1/parties", "GetParty", "get_party", &[("party", "$response.body#/id")]),
];

/// Adds [`LINKS`] to the 201 answers of the creates.
pub(crate) fn document_links(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::link::LinkBuilder;
    for (path, name, operation, parameters) in LINKS {
        let Some(post) = openapi.paths.paths.get_mut(path).and_then(|item| item.post.as_mut()) else { continue };
        let Some(RefOr::T(created)) = post.responses.responses.get_mut("201") else { continue };
        let link = parameters.iter().fold(LinkBuilder::new().operation_id(operation), |link, (name, value)| link.parameter(*name, *value));
        created.links.insert(name.to_owned(), RefOr::T(link.build()));
    }
}
