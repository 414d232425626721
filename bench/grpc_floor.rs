//! The floor for gRPC check benchmarks: an `envoy.service.auth.v3.Authorization` server that
//! allows every request with the same identity headers portcullis sends, and does nothing
//! else (tonic over h2c, like portcullis's gRPC listener).
//!
//!   cargo run --release --example grpc_floor -- 127.0.0.1:4198

use std::net::SocketAddr;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use tonic::{Request, Response, Status};

struct Allow;

fn header(name: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.into(),
            value: value.into(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: true,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Authorization for Allow {
    async fn check(&self, _: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let ok = OkHttpResponse {
            headers: vec![
                header("x-auth-request-user", "alice"),
                header("x-auth-request-email", "alice@example.com"),
                header("x-auth-request-preferred-username", "alice"),
                header("x-auth-request-groups", ""),
            ],
            headers_to_remove: vec!["x-auth-request-access-token".into()],
            ..Default::default()
        };
        Ok(Response::new(CheckResponse {
            status: Some(rpc::Status::default()),
            http_response: Some(HttpResponse::OkResponse(ok)),
            ..Default::default()
        }))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4198".into())
        .parse()?;
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(Allow))
        .serve(addr)
        .await?;
    Ok(())
}
