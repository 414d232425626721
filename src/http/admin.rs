//! The admin listener: `/healthz` (process up) and `/readyz` (provider discovered, keys
//! loaded). Never mounted on the check listener: a 200 there would be an allow.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use http::StatusCode;

use crate::app::App;

pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(app)
}

async fn metrics(State(app): State<Arc<App>>) -> impl axum::response::IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
}

async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, String) {
    if !app.oidc.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: identity provider discovery has not completed\n".into(),
        );
    }
    let missing = app
        .bearers
        .as_ref()
        .map(|b| b.not_ready())
        .unwrap_or_default();
    let degraded = app
        .bearers
        .as_ref()
        .map(|b| b.degraded())
        .unwrap_or_default();
    if missing.is_empty() && !degraded.is_empty() {
        // Still serving: tokens verify with the last good keys. Taking the replica out of
        // rotation would not help (every replica sees the same JWKS endpoint).
        (
            StatusCode::OK,
            format!(
                "ready (degraded: JWKS fetch failing for {}; verifying with the last good keys)\n",
                degraded.join(", ")
            ),
        )
    } else if missing.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: keys of bearer issuer(s) not loaded: {}\n",
                missing.join(", ")
            ),
        )
    }
}
