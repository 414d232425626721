//! `TestApp`: the whole proxy on ephemeral loopback ports against the in-process development
//! issuer, plus a cookie-aware client that walks the login by hand.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use portcullis::app::{App, Listeners};
use portcullis::clock::Clock;
use portcullis::config::{Config, Sources};
use portcullis::dev_idp::{self, DevClient, DevIdp};
use portcullis::session::cookie::CookieKey;
use reqwest::header::HeaderMap;

pub const CLIENT_ID: &str = "test-client";
pub const CLIENT_SECRET: &str = "test-secret";

pub struct TestApp {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub idp: DevIdp,
    #[allow(dead_code)]
    pub app: Arc<App>,
    pub key: CookieKey,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The development issuer on a free loopback port, with the test client registered.
pub async fn test_idp() -> DevIdp {
    dev_idp::start(
        "127.0.0.1:0".parse().expect("addr"),
        DevClient {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
        },
        Clock::system(),
    )
    .await
    .expect("dev issuer")
}

/// An issuer address nobody answers on any more: discovery and every IdP call fail.
pub async fn stopped_idp() -> DevIdp {
    let mut idp = test_idp().await;
    idp.stop();
    idp
}

impl TestApp {
    /// Start with these `--set` overrides on top of a working test configuration.
    pub async fn start(sets: &[&str]) -> TestApp {
        Self::start_with_issuer(test_idp().await, sets, true).await
    }

    pub async fn start_with_issuer(idp: DevIdp, sets: &[&str], discover: bool) -> TestApp {
        Self::start_full(idp, sets, None, discover).await
    }

    /// Start with overrides and a TOML fragment (for what `--set` cannot say, such as
    /// `[[bearer.issuers]]` tables). Bearer keys are loaded before this returns.
    pub async fn start_full(
        idp: DevIdp,
        sets: &[&str],
        toml: Option<&str>,
        discover: bool,
    ) -> TestApp {
        Self::start_inner(idp, sets, toml, discover, Clock::system()).await
    }

    /// Start with a development issuer with `options`; the issuer and the proxy share `clock`
    /// (a fixed clock lets a test move time for both).
    pub async fn start_clocked(
        sets: &[&str],
        clock: Clock,
        options: dev_idp::DevOptions,
    ) -> TestApp {
        let idp = dev_idp::start_with(
            "127.0.0.1:0".parse().expect("addr"),
            DevClient {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
            },
            clock.clone(),
            options,
        )
        .await
        .expect("dev issuer");
        Self::start_inner(idp, sets, None, true, clock).await
    }

    /// Another replica next to `first`: the same issuer (its `idp` is a shared handle) and
    /// `clock`, with these overrides (pass the same `cookie.secret` to both).
    pub async fn start_replica(first: &TestApp, sets: &[&str], clock: Clock) -> TestApp {
        Self::start_inner(first.idp.shared(), sets, None, true, clock).await
    }

    async fn start_inner(
        idp: DevIdp,
        sets: &[&str],
        toml: Option<&str>,
        discover: bool,
        clock: Clock,
    ) -> TestApp {
        let key = CookieKey::generate();
        let mut all: Vec<String> = vec![
            "server.http_address=127.0.0.1:0".into(),
            "server.admin_address=127.0.0.1:0".into(),
            "server.grpc_address=127.0.0.1:0".into(),
            format!("oidc.issuer_url={}", idp.issuer),
            format!("oidc.client_id={CLIENT_ID}"),
            format!("oidc.client_secret={CLIENT_SECRET}"),
            format!("cookie.secret={}", key.to_base64()),
            "cookie.secure=false".into(),
            "authz.redirect_domains=127.0.0.1:*".into(),
            "oidc.http_timeout=2s".into(),
        ];
        all.extend(sets.iter().map(|s| s.to_string()));
        let file = toml.map(|t| {
            let path = std::env::temp_dir().join(format!(
                "portcullis-test-{}-{}.toml",
                std::process::id(),
                portcullis::session::random_id()
            ));
            std::fs::write(&path, t).expect("write test config");
            path
        });
        let config = Config::load(&Sources {
            file: file.clone(),
            oauth2_proxy_file: None,
            sets: all,
            use_env: false,
        })
        .expect("test config");
        if let Some(f) = file {
            let _ = std::fs::remove_file(f);
        }
        let app = Arc::new(App::new(config, clock).expect("app"));
        if let Some(b) = &app.bearers {
            b.load_all().await;
            b.spawn_refresh();
        }
        if discover {
            app.oidc.discover().await.expect("discovery");
        } else {
            tokio::spawn(app.oidc.clone().discover_until_ready());
        }
        let listeners = Listeners::bind(&app.config).await.expect("bind");
        let http = listeners.http_addr().expect("addr");
        let admin = listeners.admin_addr().expect("addr");
        let grpc = listeners.grpc_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(listeners.serve(app.clone(), async {
            let _ = rx.await;
        }));
        TestApp {
            http,
            grpc,
            admin,
            idp,
            app,
            key,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// Stop serving and wait until the listeners are closed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("join").expect("served cleanly");
        }
    }
}

/// A browser-like client: a cookie jar keyed by name (one host), no automatic redirects.
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: BTreeMap<String, String>,
}

pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            jar: BTreeMap::new(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// GET with a browser Accept header and the jar; applies Set-Cookie to the jar.
    pub async fn get(&mut self, url: &str) -> Answer {
        self.send(reqwest::Method::GET, url, &[("accept", "text/html")])
            .await
    }

    pub async fn send(
        &mut self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self.client.request(method, url);
        if !self.jar.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("body");
        let answer = Answer {
            status,
            headers,
            body,
        };
        for line in answer.set_cookies() {
            let c = cookie::Cookie::parse(line).expect("set-cookie parses");
            let expired = c.max_age().is_some_and(|m| m.is_zero()) || c.value().is_empty();
            if expired {
                self.jar.remove(c.name());
            } else {
                self.jar.insert(c.name().to_string(), c.value().to_string());
            }
        }
        answer
    }

    /// Sign in at the issuer for an authorization URL; returns the callback URL it sends the
    /// browser to (not yet visited).
    pub async fn authorize(&self, authorize: &str, name: &str, groups: &str) -> String {
        let idp = self
            .client
            .get(format!("{authorize}&login_hint={name}&dev_groups={groups}"))
            .send()
            .await
            .expect("authorize");
        assert_eq!(idp.status().as_u16(), 303, "issuer redirects back");
        idp.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("callback location")
            .to_string()
    }

    /// Walk the whole login from `url` as user `name` (groups via the dev issuer's
    /// `dev_groups`); returns the callback's answer.
    pub async fn login(&mut self, url: &str, name: &str, groups: &str) -> Answer {
        let start = self.get(url).await;
        assert_eq!(
            start.status, 302,
            "login starts with a redirect: {}",
            start.body
        );
        let authorize = start.header("location").expect("location").to_string();
        let callback = self.authorize(&authorize, name, groups).await;
        self.get(&callback).await
    }
}

/// A child process killed when the test ends, pass or fail.
pub struct Child(pub std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
