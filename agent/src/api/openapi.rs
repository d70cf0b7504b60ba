//! `GET /openapi.json`: the OpenAPI 3 document, generated from the handlers' annotations.
//!
//! The annotations describe what each handler answers. What the middleware answers for any
//! operation is added here, once, by `CommonResponses`: 401 and 429 on every operation
//! that needs a key, 403 on the admin operations (off without `--admin-key`), and 503 (at
//! the concurrency limit) and 504 (over the request timeout) everywhere. `.ci/schemathesis`
//! holds the document to that against the real agent.

use axum::{Json, Router, routing::get};
use edgeroute_protocol::{osrm::ErrorResponse, plans as plan_types, vroom};
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::{
        ContentBuilder, OneOfBuilder, Ref, RefOr, Required, Response, ResponseBuilder,
        path::Operation,
        request_body::RequestBodyBuilder,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use super::{AppState, admin, health, nearest, optimize, plans, route, status, table, trip};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "edgeroute agent", description = "OSRM-compatible routing at the edge"),
    paths(
        route::route,
        table::table,
        nearest::nearest,
        trip::trip,
        health::healthz,
        health::readyz,
        health::metrics,
        status::status,
        admin::upload,
        admin::rollback,
        admin::versions,
        optimize::optimize,
        plans::one,
        plans::list,
    ),
    components(schemas(
        ErrorResponse,
        vroom::Input,
        vroom::Output,
        vroom::OptimizeResponse,
        plan_types::Plan,
        plan_types::PlanList,
    )),
    modifiers(&BearerAuth, &CommonResponses),
    tags(
        (name = "osrm", description = "OSRM v1 route, table and nearest services"),
        (name = "ops", description = "Health, readiness, metrics and status"),
        (name = "admin", description = "Graph management (admin key)"),
        (name = "vroom", description = "VROOM-compatible optimisation and stored plans"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Adds the answers of the middleware to every operation (see the module docs), and
/// describes `/optimize`'s answers, whose VROOM shapes its annotation does not name.
struct CommonResponses;

/// A JSON response whose body is the named schema.
fn json(description: &str, schema: RefOr<utoipa::openapi::schema::Schema>) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
        .into()
}

fn schema_ref<T: ToSchema>() -> RefOr<utoipa::openapi::schema::Schema> {
    Ref::from_schema_name(T::name()).into()
}

/// An OSRM-style error (`{code, message}`), as the middleware and the OSRM handlers answer.
fn error(description: &str) -> RefOr<Response> {
    json(description, schema_ref::<ErrorResponse>())
}

/// The middleware's answers that `operation` may give.
fn add_common(path: &str, operation: &mut Operation) {
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let mut common = vec![
        (
            "503",
            error("Overloaded: the agent is at its concurrency limit (`Retry-After`)"),
        ),
        (
            "504",
            error("Timeout: the request took longer than the request timeout"),
        ),
    ];
    if secured {
        common.push((
            "401",
            error("Unauthorized: missing or unknown key (`WWW-Authenticate: Bearer`)"),
        ));
        common.push((
            "429",
            error("TooManyRequests: the key's rate limit is spent (`Retry-After`)"),
        ));
    }
    if path.starts_with("/admin") {
        common.push((
            "403",
            error("Forbidden: the admin API is off (the agent has no `--admin-key`)"),
        ));
    }
    let responses = &mut operation.responses.responses;
    for (status, response) in common {
        responses.entry(status.to_owned()).or_insert(response);
    }
}

/// `/optimize` takes and answers VROOM's shapes, except for what the middleware answers.
fn describe_optimize(operation: &mut Operation) {
    operation.request_body = Some(
        RequestBodyBuilder::new()
            .description(Some("VROOM input (the documented subset)"))
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(schema_ref::<vroom::Input>()))
                    .build(),
            )
            .required(Some(Required::True))
            .build(),
    );
    let responses = &mut operation.responses.responses;
    let vroom_error = |description: &str| json(description, schema_ref::<vroom::Output>());
    responses.insert(
        "200".to_owned(),
        json(
            "VROOM output plus `plan_id`; `Location: /plans/{id}`",
            schema_ref::<vroom::OptimizeResponse>(),
        ),
    );
    for (status, description) in [
        ("400", "`code: 2` input error or `code: 3` routing error"),
        ("413", "`code: 2`: body over `--max-optimize-body-bytes`"),
        (
            "415",
            "`code: 2`: the body is not declared `application/json`",
        ),
    ] {
        responses.insert(status.to_owned(), vroom_error(description));
    }
    // Not ready or outbox full from the handler (VROOM shape), or shed by the middleware
    // (OSRM shape).
    let either = OneOfBuilder::new()
        .item(schema_ref::<vroom::Output>())
        .item(schema_ref::<ErrorResponse>())
        .build();
    responses.insert(
        "503".to_owned(),
        json(
            "No graph loaded yet, the sync outbox is full, or the agent is at its concurrency limit",
            RefOr::T(utoipa::openapi::schema::Schema::OneOf(either)),
        ),
    );
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            if path == "/optimize"
                && let Some(post) = item.post.as_mut()
            {
                describe_optimize(post);
            }
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_common(path, operation);
            }
        }
    }
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi))
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_documented() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/route/{version}/{profile}/{coordinates}",
            "/table/{version}/{profile}/{coordinates}",
            "/nearest/{version}/{profile}/{coordinates}",
            "/healthz",
            "/readyz",
            "/metrics",
            "/v1/status",
            "/admin/graph",
            "/admin/graph/rollback",
        ] {
            assert!(
                paths.contains_key(p),
                "{p} missing from the OpenAPI document"
            );
        }
        assert!(doc["components"]["schemas"]["RouteResponse"].is_object());
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    }

    #[test]
    fn middleware_answers_and_vroom_shapes_are_documented() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut secured = 0;
        for (path, item) in paths {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                let mut expected = vec!["503", "504"];
                if operation["security"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty())
                {
                    secured += 1;
                    expected.extend(["401", "429"]);
                }
                for status in expected {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} does not document {status}"
                    );
                }
            }
        }
        assert!(secured >= 10, "{secured} secured operations");
        let schema_of = |path: &str, method: &str, status: &str| {
            doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
                ["$ref"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        assert!(schema_of("/optimize", "post", "200").ends_with("/OptimizeResponse"));
        assert!(schema_of("/optimize", "post", "400").ends_with("/Output"));
        assert!(schema_of("/plans", "get", "200").ends_with("/PlanList"));
        assert!(schema_of("/plans/{id}", "get", "200").ends_with("/Plan"));
        assert!(schema_of("/admin/graph", "put", "403").ends_with("/ErrorResponse"));
        assert!(doc["components"]["schemas"]["Input"].is_object());
    }
}
