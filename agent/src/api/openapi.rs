//! `GET /openapi.json`: the OpenAPI 3 document, generated from the handlers' annotations.

use axum::{Json, Router, routing::get};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
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
    modifiers(&BearerAuth),
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
}
