//! The problem answers every operation shares, added to the API document in one place so
//! that no route has to remember them and the document never omits a status the
//! middleware or the extractors can answer.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Content, OpenApi as OpenApiDoc, Ref, RefOr, Response};
use utoipa::{PartialSchema, ToSchema};

use crate::base::wire::error::{FieldError, Problem};

/// Adds the common problem responses to every operation according to what it has; responses
/// an operation declares itself are kept as they are.
///
/// - every operation: 503 (the request time limit, or the database is busy);
/// - every operation under `/api/v1/`: 429 (the rate limits cover all but the ops routes);
/// - an operation needing credentials (it does not opt out with `security(())`): 401, 403;
/// - a request body: 400 (unreadable), 408 (did not arrive in time), 413, 415, 422;
/// - query or path parameters: 400 (a parameter that does not parse, named in `errors[]`);
/// - path parameters: 404 (no such resource, or not visible to the caller).
pub struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ];
            for op in operations.into_iter().flatten() {
                add_common(path, op);
            }
        }
        let schemas = &mut openapi
            .components
            .get_or_insert_with(Default::default)
            .schemas;
        // Handlers that declare a problem answer bring these already; an API whose handlers
        // declare none still needs them for the references added above.
        for (name, schema) in [
            (Problem::name(), Problem::schema()),
            (FieldError::name(), FieldError::schema()),
        ] {
            schemas.entry(name.into_owned()).or_insert(schema);
        }
    }
}

fn add_common(path: &str, op: &mut Operation) {
    let mut statuses = vec![503];
    if path.starts_with("/api/v1/") {
        statuses.push(429);
    }
    if needs_credentials(op) {
        statuses.extend([401, 403]);
    }
    if op.request_body.is_some() {
        statuses.extend([400, 408, 413, 415, 422]);
    }
    let params: Vec<ParameterIn> = op
        .parameters
        .iter()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(p) => Some(p.parameter_in.clone()),
            RefOr::Ref(_) => None,
        })
        .collect();
    if params
        .iter()
        .any(|p| matches!(p, ParameterIn::Query | ParameterIn::Path))
    {
        statuses.push(400);
    }
    if params.iter().any(|p| matches!(p, ParameterIn::Path)) {
        statuses.push(404);
    }
    for status in statuses {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| problem(description(status)));
    }
}

/// Whether the operation inherits the document's `bearer` requirement or names its own; an
/// empty requirement (`security(())`) makes it public.
fn needs_credentials(op: &Operation) -> bool {
    match &op.security {
        None => true,
        Some(reqs) => !reqs.iter().any(|r| *r == SecurityRequirement::default()),
    }
}

fn description(status: u16) -> &'static str {
    match status {
        400 => {
            "Malformed request: unreadable body, or a query or path parameter that does not parse (named in `errors[]`)"
        }
        401 => "Missing, malformed, expired or unknown credentials",
        403 => "The caller's role or tenant may not do this",
        404 => "No such resource, or not visible to the caller",
        408 => "The request body did not arrive in time",
        413 => "Request body too large",
        415 => "Wrong `Content-Type`",
        422 => "A well-formed body that is invalid; every problem is named in `errors[]`",
        429 => "Rate limit exceeded; retry after `Retry-After` seconds",
        _ => "The request timed out, or a dependency is unavailable",
    }
}

fn problem(description: &str) -> RefOr<Response> {
    let mut resp = Response::new(description);
    resp.content.insert(
        "application/problem+json".to_string(),
        Content::new(Some(Ref::from_schema_name(Problem::name()))).into(),
    );
    RefOr::T(resp)
}
