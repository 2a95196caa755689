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
