//! Resource limits of the check listeners (`server.max_*`): exceeding one gets 431, 413 or
//! 503 (or a closed gRPC connection), the listener keeps serving, and requests within the
//! limits are answered as usual.

use std::time::Duration;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TestApp;

/// Send one raw HTTP/1.1 request on `conn` and read the status line's code (the head only).
async fn raw_status(conn: &mut TcpStream, request: &str) -> Option<u16> {
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    text.split_whitespace().nth(1)?.parse().ok()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: app.example.com\r\naccept: application/json\r\n\r\n")
}

#[tokio::test]
async fn oversized_headers_get_431_over_http1_and_h2() {
    let t = TestApp::start(&["server.max_header_bytes=16384"]).await;
    let big = "a".repeat(20_000);
    let h1 = reqwest::Client::new();
    let r = h1
        .get(t.url("/x"))
        .header("x-big", &big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(t.url("/x")).header("x-big", &big).send().await;
    match r {
        Ok(r) => assert_eq!(r.status(), 431),
        // h2 may refuse the stream outright (RST_STREAM) instead of answering it.
        Err(e) => assert!(e.is_request(), "{e:?}"),
    }
    // Within the limit: answered as usual, on both protocols.
    for c in [&h1, &h2] {
        let r = c
            .get(t.url("/x"))
            .header("accept", "application/json")
            .header("x-fine", "a".repeat(8_000))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    t.stop().await;
}

/// A raw request head of exactly `size` bytes (padded with an `x-pad` field).
fn head_of(size: usize) -> String {
    let fixed =
        "GET /x HTTP/1.1\r\nhost: app.example.com\r\naccept: application/json\r\nx-pad: \r\n\r\n";
    let head = format!(
        "GET /x HTTP/1.1\r\nhost: app.example.com\r\naccept: application/json\r\nx-pad: {}\r\n\r\n",
        "p".repeat(size - fixed.len())
    );
    assert_eq!(head.len(), size);
    head
}

/// hyper checks its buffer limit only while a head is incomplete; a head sent in one write
/// may arrive whole and must still be measured. The limit is exact: at it, answered; one byte
/// over, 431.
#[tokio::test]
async fn the_header_limit_is_exact_for_heads_that_arrive_whole() {
    let limit = 16_384;
    let t = TestApp::start(&["server.max_header_bytes=16384"]).await;
    for (size, status) in [
        (limit, 401),
        (limit + 1, 431),
        (limit + 100, 431),
        (limit + 2_000, 431),
        (limit - 1, 401),
    ] {
        let mut conn = TcpStream::connect(t.http).await.unwrap();
        assert_eq!(
            raw_status(&mut conn, &head_of(size)).await,
            Some(status),
            "a {size}-byte head"
        );
    }
    t.stop().await;
}

#[tokio::test]
async fn oversized_body_gets_413_declared_or_streamed() {
    let t = TestApp::start(&["server.max_body_bytes=1024"]).await;
    let c = reqwest::Client::new();
    let r = c
        .post(t.url("/x"))
        .header("accept", "application/json")
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("1024 bytes"));
    // Chunked, no content-length: counted as it arrives.
    let mut conn = TcpStream::connect(t.http).await.unwrap();
    let chunk = format!("200\r\n{}\r\n", "y".repeat(512));
    let req = format!(
        "POST /x HTTP/1.1\r\nhost: app.example.com\r\naccept: application/json\r\ntransfer-encoding: chunked\r\n\r\n{}0\r\n\r\n",
        chunk.repeat(8)
    );
    assert_eq!(raw_status(&mut conn, &req).await, Some(413));
    // Within the limit: the check is answered as usual.
    let r = c
        .post(t.url("/x"))
        .header("accept", "application/json")
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    t.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_get_503_and_the_listener_recovers() {
    let t = TestApp::start(&["server.max_connections=2"]).await;
    let mut a = TcpStream::connect(t.http).await.unwrap();
    let mut b = TcpStream::connect(t.http).await.unwrap();
    assert_eq!(raw_status(&mut a, &get("/x")).await, Some(401));
    assert_eq!(raw_status(&mut b, &get("/x")).await, Some(401));
    let mut c = TcpStream::connect(t.http).await.unwrap();
    assert_eq!(raw_status(&mut c, &get("/x")).await, Some(503));
    // The open ones keep working.
    assert_eq!(raw_status(&mut a, &get("/x")).await, Some(401));
    drop(b);
    // Once one closes, a new connection is served normally.
    let mut ok = false;
    for _ in 0..50 {
        let mut d = TcpStream::connect(t.http).await.unwrap();
        if raw_status(&mut d, &get("/x")).await == Some(401) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "a slot freed by a closed connection is reused");
    drop(a);
    t.stop().await;
}

#[tokio::test]
async fn h2_streams_over_the_limit_are_queued_not_failed() {
    let t = TestApp::start(&["server.max_concurrent_streams=2"]).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let all = (0..40).map(|i| {
        let h2 = h2.clone();
        let url = t.url(&format!("/x{i}"));
        async move {
            h2.get(url)
                .header("accept", "application/json")
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    let mut set = tokio::task::JoinSet::new();
    for f in all {
        set.spawn(f);
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(r.unwrap().unwrap(), 401);
    }
    t.stop().await;
}

fn grpc_check() -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/x".into(),
                    host: "app.example.com".into(),
                    headers: [("accept".to_string(), "application/json".to_string())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn grpc_connections_over_the_limit_are_closed_and_the_listener_recovers() {
    let t = TestApp::start(&["server.max_connections=1"]).await;
    let url = format!("http://{}", t.grpc);
    let mut first = AuthorizationClient::connect(url.clone()).await.unwrap();
    let r = first.check(grpc_check()).await.unwrap().into_inner();
    assert_eq!(r.status.map(|s| s.code), Some(16));
    let second = async {
        let mut c = AuthorizationClient::connect(url.clone()).await?;
        c.check(grpc_check())
            .await
            .map_err(Box::<dyn std::error::Error>::from)?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    assert!(
        second.await.is_err(),
        "a second connection over the limit is refused"
    );
    // The first keeps working; once it is gone a new client is served.
    assert!(first.check(grpc_check()).await.is_ok());
    drop(first);
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(mut c) = AuthorizationClient::connect(url.clone()).await {
            if c.check(grpc_check()).await.is_ok() {
                ok = true;
                break;
            }
        }
    }
    assert!(ok, "a slot freed by a closed connection is reused");
    t.stop().await;
}
