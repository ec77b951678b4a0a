//! The OpenAPI side every service shares: `GET /openapi.json` (documented
//! once, here), turning a service's documented route list into its router,
//! and the refusals most routes document alike.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use rollcall_proto::ErrorBody;
use utoipa::IntoResponses;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// The served document, as JSON text (an extension [`router`] adds).
#[derive(Debug, Clone)]
pub struct Document(Arc<str>);

/// This document
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1, generated from the routes",
        content_type = "application/json")))]
pub async fn document(Extension(Document(text)): Extension<Document>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        text.to_string(),
    )
        .into_response()
}

/// The whole document a service serves: its route list's, with `more` (the
/// SDK's routes) merged in.
pub fn whole<S: Clone + Send + Sync + 'static>(
    api: OpenApiRouter<S>,
    more: Option<OpenApi>,
) -> OpenApi {
    merged(api.into_openapi(), more)
}

/// The schemas the shared response sets below refer to (`IntoResponses`
/// types do not add them themselves).
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(ErrorBody, rollcall_proto::ErrorDetail)))]
struct Shared;

fn merged(doc: OpenApi, more: Option<OpenApi>) -> OpenApi {
    let doc = doc.merge_from(<Shared as utoipa::OpenApi>::openapi());
    match more {
        Some(more) => doc.merge_from(more),
        None => doc,
    }
}

/// The router for a service's documented route list (which lists
/// [`document`]): JSON fallbacks, and the document served at
/// `/openapi.json`.
pub fn router<S: Clone + Send + Sync + 'static>(
    api: OpenApiRouter<S>,
    more: Option<OpenApi>,
) -> Router<S> {
    let (router, doc) = api.split_for_parts();
    let text = merged(doc, more)
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    crate::with_fallbacks(router).layer(Extension(Document(text.into())))
}

/// What a write answers when it is refused: nothing was stored. (A 404
/// only where the route names a thing; a 401 only with `--token`; 429 only
/// on the registry.)
#[derive(Debug, IntoResponses)]
pub enum WriteRefused {
    /// Nothing has that name, ID or URL.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Too many writes from this client; `Retry-After` says when to retry.
    #[response(status = 429)]
    TooManyWrites(ErrorBody),
    /// The service runs with a token and the request has none, or a wrong one.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// A browser sent it from another site, or (registry) it names an address
    /// that is not the caller's.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// The `Host` names a host this service does not answer for.
    #[response(status = 421)]
    UnknownHost(ErrorBody),
    /// The body or a field is invalid; the error says which.
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// The body is over the route's limit.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The store cannot take it now (or the service is stopping); try again.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// A query parameter is invalid; the error names it and lists the known
/// ones.
#[derive(Debug, IntoResponses)]
#[response(status = 400)]
pub struct BadQuery(pub ErrorBody);

/// Nothing has that name or URL.
#[derive(Debug, IntoResponses)]
#[response(status = 404)]
pub struct NotFound(pub ErrorBody);
