//! The admin listener: `/healthz` (process up), `/readyz` (provider discovered, keys loaded,
//! Redis answering), `/metrics`, and the session revocation API. Never mounted on the check
//! listener: a 200 there would be an allow.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::session::{Revoked, Target};

pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/sessions/revoke", post(revoke))
        .with_state(app)
}

type JsonReply = (StatusCode, axum::Json<serde_json::Value>);

fn reply(status: StatusCode, body: serde_json::Value) -> JsonReply {
    (status, axum::Json(body))
}

/// Whether the request carries `Authorization: Bearer <admin.token>` (constant-time compare).
fn authorized(app: &App, headers: &HeaderMap) -> Option<bool> {
    let want = app.config.admin.token.as_ref()?;
    let got = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    Some(bool::from(got.as_bytes().ct_eq(want.expose().as_bytes())))
}

/// `POST /admin/sessions/revoke` with `{"session_id": "…"}` or `{"subject": "…"}` (the ID
/// token's `sub`). 404 when `admin.token` is unset; 401 without the token; 400 for a bad body;
/// 409 when the store cannot revoke (cookie store without Redis); 503 when Redis fails.
async fn revoke(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> JsonReply {
    match authorized(&app, &headers) {
        None => {
            return reply(
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "message": "the admin API is disabled (set admin.token)"}),
            )
        }
        Some(false) => return reply(StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"})),
        Some(true) => {}
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        session_id: Option<String>,
        subject: Option<String>,
    }
    let target = match serde_json::from_slice::<Body>(&body) {
        Ok(Body {
            session_id: Some(id),
            subject: None,
        }) if !id.is_empty() => Target::SessionId(id),
        Ok(Body {
            session_id: None,
            subject: Some(s),
        }) if !s.is_empty() => Target::Subject(s),
        _ => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_request", "message": "send a JSON object with exactly one of \"session_id\" or \"subject\""}),
            )
        }
    };
    match app.sessions.revoke(&target).await {
        Ok(Some(Revoked::Deleted(n))) => {
            tracing::info!(target = ?target_kind(&target), sessions = n, "sessions revoked by the admin API");
            reply(StatusCode::OK, json!({"revoked": n}))
        }
        Ok(Some(Revoked::DenyListed)) => {
            tracing::info!(target = ?target_kind(&target), "sessions deny-listed by the admin API");
            reply(StatusCode::OK, json!({"deny_listed": true}))
        }
        Ok(None) => reply(
            StatusCode::CONFLICT,
            json!({"error": "unsupported", "message": "the cookie store without Redis cannot revoke sessions; configure session.redis"}),
        ),
        Err(e) => {
            tracing::error!(error = %e, "session revocation failed");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "unavailable", "message": e.title()}),
            )
        }
    }
}

fn target_kind(t: &Target) -> &'static str {
    match t {
        Target::SessionId(_) => "session_id",
        Target::Subject(_) => "subject",
        Target::IdpSession(_) => "sid",
    }
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
    if let Some(redis) = app.sessions.redis() {
        if let Err(e) = redis.ping().await {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n"));
        }
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
