//! What a check with a valid session costs per session store, in process (no HTTP): the cookie
//! store, the cookie store with the Redis deny-list, and the Redis store. Starts its own
//! `redis-server` on a free loopback port (Debian package) and stops it at the end.
//!
//!     cargo run --release --example sessions
//!
//! For each store: a session is saved, then `authz::check` runs on the request carrying its
//! cookie, sequentially (latency of one check) and from 50 concurrent tasks (throughput).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method};
use portcullis::app::App;
use portcullis::authz::decision::Outcome;
use portcullis::authz::input::CheckInput;
use portcullis::clock::Clock;
use portcullis::config::{Config, Sources};
use portcullis::session::cookie::CookieKey;
use portcullis::session::{random_id, Session};

const SEQUENTIAL: u32 = 20_000;
const TASKS: u32 = 50;
const PER_TASK: u32 = 2_000;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn app(sets: &[String]) -> anyhow::Result<Arc<App>> {
    let mut all = vec![
        "oidc.issuer_url=http://127.0.0.1:1".to_string(),
        "oidc.client_id=bench".into(),
        "oidc.client_secret=bench".into(),
        format!("cookie.secret={}", CookieKey::generate().to_base64()),
        "cookie.secure=false".into(),
    ];
    all.extend(sets.iter().cloned());
    let config = Config::load(&Sources {
        file: None,
        oauth2_proxy_file: None,
        sets: all,
        use_env: false,
    })?;
    Ok(Arc::new(App::new(config, Clock::system())?))
}

async fn request_with_session(app: &App) -> anyhow::Result<CheckInput> {
    let now = Clock::system().now();
    let s = Session {
        id: random_id(),
        user: "alice".into(),
        email: "alice@example.com".into(),
        preferred_username: "alice".into(),
        groups: vec!["admins".into(), "devs".into()],
        id_token: Some("x".repeat(900)),
        access_token: None,
        created_at: now,
        expires_at: now + 3600,
        claims: Default::default(),
        subject: "alice".into(),
        sid: Some("idp-session".into()),
        ..Session::anonymous()
    };
    let empty = CheckInput::new(Method::GET, "app", "/", HeaderMap::new(), "b".into());
    let lines = app.sessions.save(&s, &empty).await?;
    let cookie: Vec<String> = lines
        .iter()
        .filter_map(|l| l.split(';').next().map(str::to_string))
        .collect();
    let mut h = HeaderMap::new();
    h.insert("cookie", HeaderValue::from_str(&cookie.join("; "))?);
    h.insert("accept", HeaderValue::from_static("application/json"));
    Ok(CheckInput::new(Method::GET, "app", "/", h, "b".into()))
}

async fn row(name: &str, app: Arc<App>) -> anyhow::Result<()> {
    let input = Arc::new(request_with_session(&app).await?);
    let one = |app: Arc<App>, input: Arc<CheckInput>| async move {
        match portcullis::authz::check(&app, &input).await {
            Ok(Outcome::Allow(_)) => Ok(()),
            other => Err(anyhow::anyhow!("not an allow: {:?}", other.is_ok())),
        }
    };
    for _ in 0..500 {
        one(app.clone(), input.clone()).await?;
    }
    let started = Instant::now();
    for _ in 0..SEQUENTIAL {
        one(app.clone(), input.clone()).await?;
    }
    let seq = started.elapsed() / SEQUENTIAL;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (app, input) = (app.clone(), input.clone());
        set.spawn(async move {
            for _ in 0..PER_TASK {
                one(app.clone(), input.clone()).await?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let rate = f64::from(TASKS * PER_TASK) / started.elapsed().as_secs_f64();
    println!(
        "| {name} | {:.1} µs | {:.0} checks/s |",
        seq.as_secs_f64() * 1e6,
        rate
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let port = free_port()?;
    let dir = std::env::temp_dir().join(format!("portcullis-bench-redis-{port}"));
    std::fs::create_dir_all(&dir)?;
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = format!("session.redis.url=redis://127.0.0.1:{port}/0");
    let result = async {
        println!("| store | one check (sequential) | 50 concurrent tasks |");
        println!("|---|---|---|");
        row("cookie", app(&[])?).await?;
        row("cookie + Redis deny-list", app(std::slice::from_ref(&url))?).await?;
        row("redis", app(&[url.clone(), "session.store=redis".into()])?).await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let _ = redis.kill();
    let _ = redis.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
