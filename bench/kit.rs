//! Fixtures for the load scripts (bench/bearer.sh, bench/redis.sh, bench/sessions100k.sh):
//!
//!     bench_kit serve ADDR                 a bearer issuer and OpenID provider stub on ADDR:
//!                                          discovery + the JWKS of the bench keys (RS256, ES256)
//!     bench_kit tokens ISS ALG N FILE [P]  N distinct bearer JWTs (sub = P0 … P{N-1}, P
//!                                          defaults to svc-) from issuer ISS signed with the
//!                                          RS256 or ES256 bench key, one a line, valid 2 days
//!     bench_kit cookies CONFIG N FILE      N distinct sessions saved the way portcullis saves
//!                                          them under the configuration file CONFIG (same
//!                                          cookie key and store), one `cookie:` value a line
//!
//! The keys are tests/data/keys (bench/bearer_setup.rs). Nothing here is measured.

#![allow(clippy::unwrap_used)]

#[path = "bearer_setup.rs"]
mod bearer_setup;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use axum::routing::get;
use axum::Json;
use http::{HeaderMap, HeaderValue, Method};
use portcullis::authz::input::CheckInput;
use portcullis::clock::Clock;
use portcullis::config::{Config, Sources};
use portcullis::session::{random_id, Session};
use serde_json::json;

/// Pools of tokens are kept between runs (bench/bearer.sh regenerates them after a day).
const TOKEN_LIFETIME: i64 = 2 * 86_400;

fn arg(args: &[String], i: usize, what: &str) -> anyhow::Result<String> {
    args.get(i)
        .cloned()
        .with_context(|| format!("missing {what}"))
}

async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let iss = format!("http://{addr}");
    let keys: Vec<_> = bearer_setup::keys().into_iter().take(2).collect();
    let jwks = bearer_setup::jwks_of(&keys);
    let discovery = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    });
    let router = axum::Router::new()
        .route("/jwks", get(move || async move { Json(jwks) }))
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { Json(discovery) }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router).await?;
    Ok(())
}

fn tokens(iss: &str, alg: &str, n: usize, out: PathBuf, sub: &str) -> anyhow::Result<()> {
    let keys = bearer_setup::keys();
    let key = match alg {
        "RS256" => &keys[0],
        "ES256" => &keys[1],
        _ => bail!("ALG: RS256 or ES256"),
    };
    let now = Clock::system().now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunks: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| {
                            let mut c = bearer_setup::claims(iss, &format!("{sub}{i}"), now);
                            c["exp"] = json!(now + TOKEN_LIFETIME);
                            key.sign(&c)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut f = std::io::BufWriter::new(std::fs::File::create(&out)?);
    for line in chunks.iter().flatten() {
        if line.is_empty() {
            bail!("signing failed");
        }
        writeln!(f, "{line}")?;
    }
    f.flush()?;
    Ok(())
}

async fn cookies(config: PathBuf, n: usize, out: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&Sources {
        file: Some(config),
        oauth2_proxy_file: None,
        sets: vec![],
        use_env: false,
    })?;
    let app = portcullis::app::App::new(config, Clock::system())?;
    let now = Clock::system().now();
    let empty = CheckInput::new(Method::GET, "app", "/", HeaderMap::new(), "b".into());
    let mut f = std::io::BufWriter::new(std::fs::File::create(&out)?);
    for i in 0..n {
        let user = format!("user{i}");
        let s = Session {
            id: random_id(),
            user: user.clone(),
            email: format!("{user}@example.com"),
            preferred_username: user.clone(),
            groups: vec!["devs".into()],
            // About what a real ID token weighs (the login cookie of bench/check.sh is 1.4 KB).
            id_token: Some("x".repeat(900)),
            created_at: now,
            expires_at: now + 3600,
            subject: user,
            ..Session::anonymous()
        };
        let lines = app.sessions.save(&s, &empty).await?;
        let cookie: Vec<&str> = lines.iter().filter_map(|l| l.split(';').next()).collect();
        HeaderValue::from_str(&cookie.join("; "))?;
        writeln!(f, "{}", cookie.join("; "))?;
    }
    f.flush()?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    portcullis::token::crypto::install();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(arg(&args, 2, "ADDR")?.parse()?).await,
        Some("tokens") => tokens(
            &arg(&args, 2, "ISS")?,
            &arg(&args, 3, "ALG")?,
            arg(&args, 4, "N")?.parse()?,
            arg(&args, 5, "FILE")?.into(),
            args.get(6).map_or("svc-", String::as_str),
        ),
        Some("cookies") => {
            cookies(
                arg(&args, 2, "CONFIG")?.into(),
                arg(&args, 3, "N")?.parse()?,
                arg(&args, 4, "FILE")?.into(),
            )
            .await
        }
        _ => bail!(
            "usage: bench_kit serve ADDR | tokens ISS ALG N FILE [SUB] | cookies CONFIG N FILE"
        ),
    }
}
