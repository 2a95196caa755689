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
