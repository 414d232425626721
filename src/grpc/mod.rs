//! Envoy's gRPC ext_authz protocol: `envoy.service.auth.v3.Authorization/Check` over h2c
//! (prior knowledge, any `:authority`), plus `grpc.health.v1.Health`, on
//! `server.grpc_address` (shared/reference/ext-authz.md §2).
//!
//! The adapter parses and renders ([`convert`]); `authz::check` decides, as for the HTTP
//! adapter. A denial is an RPC **OK** with a non-zero `status.code` and a `denied_response`;
//! only an infrastructure failure is an RPC error (UNAVAILABLE), because Envoy turns RPC errors
//! into its failure mode — under `failure_mode_allow` a denial sent as an error would be an
//! allow. The one exception is a failure on a login route (`/oauth2/callback` with the IdP
//! down, …): it is the page a browser must see, so it goes out as a `denied_response` carrying
//! its 502/503 (a denial, never an allow). The v2 service is not registered: its path gets UNIMPLEMENTED (checklist 26).

pub mod convert;
pub mod limit;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse,
};
use http::Method;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;

use crate::app::App;
use crate::authz::decision::Outcome;
use crate::authz::{self};
use crate::login;

/// The `Authorization` service over the shared [`App`].
pub struct AuthzService {
    app: Arc<App>,
}

impl AuthzService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

#[tonic::async_trait]
impl Authorization for AuthzService {
    /// One check: a CheckRequest with nothing to decide on (no `attributes.request.http`, as in
    /// Istio's TCP check, or an empty message) is denied with 7 / HTTP 403, never allowed.
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let request = request.into_inner();
        let input = match convert::to_input(request) {
            Ok(input) => input,
            Err(m) => {
                tracing::info!(
                    reason = m.as_str(),
                    "grpc check without an http request: denied"
                );
                return convert::render(Outcome::Reply(m.reply()), false).map(Response::new);
            }
        };
        let head = input.method == Method::HEAD;
        // A login route's failure is a page for the browser (a denial carrying its 502/503);
        // an ordinary check's failure is an RPC error, for Envoy's failure mode to decide.
        let page = login::own_route(&self.app.config.server.proxy_prefix, &input)
            .is_some_and(login::Route::answers_page);
        match authz::check(&self.app, &input).await {
            Ok(Outcome::Reply(r)) if page && r.status().is_server_error() => {
                Ok(Response::new(convert::denied(r, head)))
            }
            Ok(outcome) => convert::render(outcome, head).map(Response::new),
            Err(e) if page => Ok(Response::new(convert::denied(
                self.app.error_reply(&e, &input),
                head,
            ))),
            Err(e) => {
                tracing::error!(request_id = %input.request_id, error = %e, "request failed");
                Err(Status::new(e.grpc_code(), e.title()))
            }
        }
    }
}

/// The name under which `grpc.health.v1.Health` reports readiness (the ext_authz service).
pub const SERVICE_NAME: &str = "envoy.service.auth.v3.Authorization";

/// Serve the gRPC listener until `shutdown` resolves, then let in-flight checks finish.
/// Health: the overall service `""` is SERVING while the process runs (liveness);
/// [`SERVICE_NAME`] is NOT_SERVING until the identity provider is discovered (readiness, the
/// same condition as the admin listener's `/readyz`).
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
        .await;
    let ready = tokio::spawn(report_ready(reporter, app.clone()));
    let authz = AuthorizationServer::new(AuthzService::new(app.clone()))
        .max_decoding_message_size(app.config.server.grpc_max_message_bytes);
    let limits = &app.config.server;
    let served = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .add_service(health)
        .add_service(authz)
        .serve_with_incoming_shutdown(
            limit::LimitedIncoming::new(listener, limits.max_connections),
            shutdown,
        )
        .await;
    ready.abort();
    served
}

/// Flip [`SERVICE_NAME`] to SERVING once discovery has completed.
async fn report_ready(reporter: tonic_health::server::HealthReporter, app: Arc<App>) {
    while !app.oidc.is_ready() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    reporter
        .set_service_status(SERVICE_NAME, ServingStatus::Serving)
        .await;
}
