//! HTTP adapters: the check listener (Envoy HTTP ext_authz, and direct browser visits to the
//! login routes) and the admin listener.

pub mod admin;
pub mod backchannel;
pub mod ext_authz;
pub mod forward;
pub mod serve;

use std::sync::Arc;

use crate::app::App;

/// The check listener: every method and path is a check (our own routes are recognised by the
/// core, not by the router), so routing can never answer 404/405 for a gateway's request.
/// `<proxy_prefix>/auth` and `<proxy_prefix>/forward` (every path with `forward.catch_all`) are
/// forward-auth checks; everything else is Envoy's HTTP ext_authz. The one exception is the
/// IdP's back-channel logout POST, whose form body the check path never reads; other methods on
/// that path are checks too.
pub fn check_router(app: Arc<App>) -> axum::Router {
    let backchannel = format!("{}/backchannel_logout", app.config.server.proxy_prefix);
    axum::Router::new()
        .route(&backchannel, axum::routing::any(backchannel::handle))
        .fallback(dispatch)
        .with_state(app)
}

async fn dispatch(
    state: axum::extract::State<Arc<App>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    match forward::mode_for(&state.0, request.uri().path()) {
        Some(mode) => forward::check(state, mode, request).await,
        None => ext_authz::check(state, request).await,
    }
}
