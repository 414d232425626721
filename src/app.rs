//! Shared state and the process: build keys, OIDC client, pages and policy; bind listeners;
//! serve until SIGTERM / Ctrl-C, then drain.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http::StatusCode;
use tokio::net::TcpListener;
use url::Url;

use crate::authz::decision::{Body, DenyReason, Reply};
use crate::authz::input::CheckInput;
use crate::authz::policy::Policy;
use crate::clock::Clock;
use crate::config::{Config, Sources};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::oidc::backchannel::LogoutKeys;
use crate::oidc::refresh::Refresher;
use crate::oidc::Oidc;
use crate::pages::{Branding, ErrorPage, Pages};
use crate::redirect::{self, ReturnTo};
use crate::session::Sessions;
use crate::telemetry::LogUsers;
use crate::token::Bearers;

/// Everything a request needs, built once at start-up.
pub struct App {
    pub config: Config,
    pub clock: Clock,
    pub sessions: Sessions,
    pub oidc: Arc<Oidc>,
    pub pages: Pages,
    pub policy: Policy,
    pub metrics: Arc<Metrics>,
    /// Bearer JWT verification; `None` unless `bearer.enabled`.
    pub bearers: Option<Arc<Bearers>>,
    /// How users appear in logs (`log.include_user`).
    pub log_users: LogUsers,
    /// Single flight of token refreshes; with the Redis store, across replicas too (a Redis
    /// lock, `Sessions::refresh_lock`).
    pub refresher: Refresher,
    /// The login issuer's keys for back-channel logout tokens; `None` without Redis (there is
    /// nothing to revoke server-side then).
    pub logout_keys: Option<LogoutKeys>,
}

impl App {
    /// Build the state. Discovery is not run here (see [`Oidc::discover_until_ready`]).
    pub fn new(config: Config, clock: Clock) -> anyhow::Result<Self> {
        let pages = Pages::new(
            config.pages.templates_dir.as_deref(),
            Branding::from(&config.pages),
        )
        .context("pages.templates_dir")?;
        let bearers = if config.bearer.enabled {
            Some(Arc::new(
                Bearers::new(&config.bearer, config.oidc.http_timeout)
                    .context("building the JWKS client")?,
            ))
        } else {
            None
        };
        let sessions = Sessions::new(&config, clock.clone())
            .map_err(|e| anyhow::anyhow!(e))
            .context("session.redis")?;
        let mut metrics = Metrics::new();
        // The cookie layer's counters: the whole store with cookie sessions, the ticket cookie
        // in front of the Redis records otherwise.
        metrics.register_sessions("cookie", sessions.cookies().stats.clone());
        if let Some(b) = &bearers {
            metrics.register_bearer(b.stats.clone());
        }
        let metrics = Arc::new(metrics);
        let oidc = Arc::new(Oidc::new(config.oidc.clone(), metrics.clone())?);
        let logout_keys = if sessions.can_revoke() {
            Some(LogoutKeys::new(
                &config.oidc.issuer_url,
                &config.oidc.client_id,
                config.oidc.http_timeout,
            )?)
        } else {
            None
        };
        // A refresh is a token call and maybe a userinfo call, each bounded by http_timeout.
        // With the Redis store, a Redis lock makes it one refresh across replicas.
        let refresh_wait = config.oidc.http_timeout * 2 + Duration::from_secs(1);
        let refresher = Refresher::new(refresh_wait, sessions.refresh_lock(refresh_wait));
        Ok(Self {
            log_users: LogUsers::new(config.log.include_user, &config.cookie.key),
            refresher,
            logout_keys,
            sessions,
            policy: Policy::new(&config.authz)
                .with_bearer_fallback(config.bearer.fallback_to_cookie),
            bearers,
            oidc,
            pages,
            metrics,
            clock,
            config,
        })
    }

    /// Load every bearer issuer's keys in the background and keep them fresh (no-op when
    /// bearer tokens are off). Start-up never waits for it; readiness reports issuers whose
    /// keys have not loaded.
    pub fn start_bearer_keys(&self) {
        if let Some(b) = &self.bearers {
            let b = b.clone();
            tokio::spawn(async move {
                b.load_all().await;
                b.spawn_refresh();
            });
        }
    }

    /// The scheme assumed when the gateway does not say: https when cookies are Secure.
    pub fn default_scheme(&self) -> &'static str {
        if self.config.cookie.secure {
            "https"
        } else {
            "http"
        }
    }

    /// The callback URL for this request: `oidc.redirect_url`, or scheme + the check's Host +
    /// proxy prefix + `/callback`. A Host that cannot form a URL gets a 400 page.
    pub fn redirect_url(&self, input: &CheckInput) -> Result<Url, Box<Reply>> {
        if let Some(u) = &self.config.oidc.redirect_url {
            return Ok(u.clone());
        }
        let host = &input.host;
        let sane = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        let url = sane
            .then(|| {
                callback_url(&format!(
                    "{}{}/callback",
                    input.origin(self.default_scheme()),
                    self.config.server.proxy_prefix
                ))
            })
            .flatten();
        url.ok_or_else(|| {
            Box::new(self.error_page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The request's Host cannot be used for signing in.",
                input,
            ))
        })
    }

    /// Validate an untrusted return URL against `authz.redirect_domains`; refused → `/`.
    pub fn return_to(&self, raw: Option<&str>) -> ReturnTo {
        raw.and_then(|r| redirect::validate(r, &self.config.authz.redirect_domains))
            .unwrap_or_else(ReturnTo::root)
    }

    /// An HTML error page with this status; "Try again" returns to the page asked for (or `/`
    /// when that was one of our own routes).
    pub fn error_page(
        &self,
        status: StatusCode,
        title: &str,
        message: &str,
        input: &CheckInput,
    ) -> Reply {
        let return_to = redirect::validate(&input.path_and_query(), &[])
            .filter(|r| crate::login::route(&self.config.server.proxy_prefix, r.as_str()).is_none())
            .unwrap_or_else(ReturnTo::root);
        self.error_page_to(status, title, message, input, &return_to)
    }

    /// An HTML error page whose "Try again" restarts the login towards `return_to`.
    pub fn error_page_to(
        &self,
        status: StatusCode,
        title: &str,
        message: &str,
        input: &CheckInput,
        return_to: &ReturnTo,
    ) -> Reply {
        self.render_error(status, title, message, input, return_to, false)
    }

    /// The page for a signed-in user the policy refuses: "Try again" and "Use a
    /// different account" (the IdP is asked to show its login form) both lead to `return_to`.
    pub fn denied_page(
        &self,
        reason: DenyReason,
        input: &CheckInput,
        return_to: &ReturnTo,
    ) -> Reply {
        let switch = matches!(reason, DenyReason::Group | DenyReason::EmailDomain);
        let mut reply = self.render_error(
            reason.status(),
            "Access denied",
            reason.message(),
            input,
            return_to,
            switch,
        );
        reply.reason = Some(reason.as_str());
        reply
    }

    fn render_error(
        &self,
        status: StatusCode,
        title: &str,
        message: &str,
        input: &CheckInput,
        return_to: &ReturnTo,
        switch_account: bool,
    ) -> Reply {
        let html = self.pages.error(&ErrorPage {
            status: status.as_u16(),
            title,
            message,
            proxy_prefix: &self.config.server.proxy_prefix,
            redirect: return_to.as_str(),
            footer: &self.config.pages.footer,
            request_id: input.request_id.as_str(),
            switch_account,
        });
        self.page_reply(status, html)
    }

    /// One of our HTML pages, with the pages' Content-Security-Policy.
    pub fn page_reply(&self, status: StatusCode, html: String) -> Reply {
        Reply::page(status, html, self.pages.csp())
    }

    /// The reply for an infrastructure failure: 5xx, logged once here.
    pub fn error_reply(&self, err: &Error, input: &CheckInput) -> Reply {
        tracing::error!(request_id = %input.request_id, error = %err, "request failed");
        let status = err.status();
        if input.is_api() {
            return Reply::new(
                status,
                Body::json(&serde_json::json!({
                    "error": "unavailable",
                    "message": err.title(),
                    "request_id": input.request_id.as_str(),
                })),
            );
        }
        self.error_page(
            status,
            err.title(),
            "Please try again in a moment. If this keeps happening, give the request id below to your administrator.",
            input,
        )
    }
}

/// `portcullis serve`: run until a shutdown signal, then flush the spans not yet exported.
pub fn run(config: Config) -> anyhow::Result<()> {
    let rt = runtime()?;
    let telemetry = crate::telemetry::init(&config.log, &config.tracing, rt.handle())
        .context("tracing.otlp_endpoint")?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let result = rt.block_on(async move {
        let app = Arc::new(App::new(config, Clock::system())?);
        let listeners = Listeners::bind(&app.config).await?;
        tokio::spawn(app.oidc.clone().discover_until_ready());
        app.start_bearer_keys();
        listeners.serve(app, shutdown_signal()).await
    });
    // The runtime's workers still run here: the exporter's last requests ride on them.
    telemetry.shutdown();
    result
}

/// `portcullis dev`: the proxy plus the embedded development issuer, on loopback.
pub fn run_dev(args: crate::cli::DevArgs) -> anyhow::Result<()> {
    runtime()?.block_on(crate::dev_idp::run_dev(args))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The bound listeners (check + login over HTTP, gRPC ext_authz, admin).
pub struct Listeners {
    pub http: TcpListener,
    pub grpc: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            http: bind(config.server.http_address, "server.http_address").await?,
            grpc: bind(config.server.grpc_address, "server.grpc_address").await?,
            admin: bind(config.server.admin_address, "server.admin_address").await?,
        })
    }

    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// Serve every listener until `shutdown` resolves, then finish in-flight requests.
    pub async fn serve(
        self,
        app: Arc<App>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(
            http = %self.http.local_addr()?,
            grpc = %self.grpc.local_addr()?,
            admin = %self.admin.local_addr()?,
            "portcullis listening"
        );
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        let http = crate::http::serve::serve(
            self.http,
            crate::http::check_router(app.clone()),
            crate::http::serve::Limits::from_config(&app.config.server),
            wait(rx.clone()),
        );
        let grpc = crate::grpc::serve(self.grpc, app.clone(), wait(rx.clone()));
        let admin = axum::serve(self.admin, crate::http::admin::router(app))
            .with_graceful_shutdown(wait(rx));
        let (a, g, b) = tokio::join!(http, grpc, admin.into_future());
        a.context("check listener")?;
        g.context("grpc listener")?;
        b.context("admin listener")?;
        tracing::info!("portcullis stopped");
        Ok(())
    }
}

async fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {key} {addr}"))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}

/// Load the configuration for `dev` on top of dev defaults (used by `dev_idp::run_dev`).
pub fn dev_config(
    sources: &Sources,
    base: figment::Figment,
) -> Result<Config, crate::config::ConfigError> {
    Config::validate(Config::load_raw(sources, base)?)
}

/// `Url::parse(text)`, remembered per thread for the last few distinct callback URLs: the same
/// few hosts start logins over and over, and parsing one (host, IDNA) was about a tenth of a
/// login redirect's instructions (bench/README.md). Parsing is a pure function of the text, so
/// a remembered answer is the answer; long texts are not remembered.
fn callback_url(text: &str) -> Option<Url> {
    const KEEP: usize = 8;
    const MAX_LEN: usize = 512;
    thread_local! {
        static PARSED: std::cell::RefCell<Vec<(String, Url)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    PARSED.with(|cell| {
        let mut parsed = cell.borrow_mut();
        if let Some((_, url)) = parsed.iter().find(|(t, _)| t == text) {
            return Some(url.clone());
        }
        let url = Url::parse(text).ok()?;
        if text.len() <= MAX_LEN {
            if parsed.len() == KEEP {
                parsed.remove(0);
            }
            parsed.push((text.to_string(), url.clone()));
        }
        Some(url)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls_are_parsed_and_remembered_alike() {
        for round in 0..3 {
            for i in 0..12 {
                let text = format!("https://app{i}.example.com:8443/oauth2/callback");
                let url = callback_url(&text).expect("parses");
                assert_eq!(url, Url::parse(&text).expect("parses"), "round {round}");
            }
        }
        assert_eq!(callback_url("http://[::1/oauth2/callback"), None);
        let long = format!("https://{}.example.com/oauth2/callback", "a".repeat(600));
        assert_eq!(callback_url(&long), Url::parse(&long).ok());
    }
}
