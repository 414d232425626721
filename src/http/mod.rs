//! HTTP adapters: the check listener (Envoy HTTP ext_authz, and direct browser visits to the
//! login routes) and the admin listener.

pub mod admin;
pub mod backchannel;
pub mod ext_authz;
pub mod serve;

use std::sync::Arc;

use crate::app::App;

/// The check listener: every method and path is a check (our own routes are recognised by the
/// core, not by the router), so routing can never answer 404/405 for a gateway's request. The
/// one exception is the IdP's back-channel logout POST, whose form body the check path never
/// reads; other methods on that path are checks too.
pub fn check_router(app: Arc<App>) -> axum::Router {
    let backchannel = format!("{}/backchannel_logout", app.config.server.proxy_prefix);
    axum::Router::new()
        .route(&backchannel, axum::routing::any(backchannel::handle))
        .fallback(ext_authz::check)
        .with_state(app)
}
