//! A development-only OpenID issuer, started by `portcullis dev` (and by tests) on loopback.
//! It is a real issuer as far as the proxy can tell: discovery document, JWKS, authorization
//! endpoint (a form asking for a user name, or `login_hint=<name>` to skip it), token endpoint
//! with PKCE S256 and client authentication, RS256-signed ID tokens, userinfo and end_session.
//! With the `offline_access` scope it issues refresh tokens, rotated at every use; replaying a
//! used one revokes its whole family (reuse detection, as certified providers do). Tests can
//! shorten access tokens ([`DevOptions`]), count refresh-token grants and revoke refresh tokens.
//! It trusts whatever name is typed in, so it refuses to bind anything but loopback and nothing
//! in `portcullis serve` can start it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::extract::{Form, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Json;
use base64::Engine;
use http::{HeaderMap, StatusCode};
use openidconnect::core::{
    CoreGenderClaim, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
};
use openidconnect::{
    AccessToken, Audience, AuthorizationCode, EndUserEmail, EndUserUsername, IssuerUrl,
    JsonWebKeyId, Nonce, PrivateSigningKey, StandardClaims, SubjectIdentifier,
};
use serde::Deserialize;
use serde_json::json;
use sha2::Digest;
use tokio::net::TcpListener;
use url::Url;

use crate::authz::decision::html_escape;
use crate::clock::Clock;
use crate::oidc::{ExtraClaims, IdToken, IdTokenClaims};
use crate::session::random_id;

/// A running development issuer.
pub struct DevIdp {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub issuer: String,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    state: Arc<Idp>,
}

/// How the development issuer behaves (tests change these).
#[derive(Clone, Debug)]
pub struct DevOptions {
    /// Lifetime of access tokens (`expires_in`), seconds.
    pub access_token_ttl: i64,
    /// Lifetime of ID tokens, seconds.
    pub id_token_ttl: i64,
    /// Delay before answering a refresh-token grant (widens race windows in tests).
    pub refresh_delay: std::time::Duration,
}

impl Default for DevOptions {
    fn default() -> Self {
        Self {
            access_token_ttl: 3600,
            id_token_ttl: 3600,
            refresh_delay: std::time::Duration::ZERO,
        }
    }
}

impl DevIdp {
    /// Refresh-token grants answered so far (successful or not).
    pub fn refresh_calls(&self) -> usize {
        self.state
            .refresh_calls
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Revoke every refresh token issued to `user` (as an admin would at the IdP).
    pub fn revoke_refresh_tokens(&self, user: &str) {
        if let Ok(mut r) = self.state.refresh.lock() {
            r.retain(|_, g| g.user.name != user);
        }
    }

    /// Another handle on this running issuer (same state and counters) that does not stop it
    /// when dropped: for a second proxy replica in tests.
    pub fn shared(&self) -> DevIdp {
        DevIdp {
            issuer: self.issuer.clone(),
            addr: self.addr,
            stop: None,
            state: self.state.clone(),
        }
    }

    /// Stop serving.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for DevIdp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The one client the development issuer knows.
#[derive(Clone)]
pub struct DevClient {
    pub client_id: String,
    pub client_secret: String,
}

struct Grant {
    user: DevUser,
    client_id: String,
    redirect_uri: String,
    nonce: Option<String>,
    code_challenge: Option<String>,
    expires_at: i64,
    offline: bool,
}

/// A live refresh token: who it is for and the family it was rotated from.
struct RefreshGrant {
    user: DevUser,
    client_id: String,
    family: String,
}

#[derive(Clone)]
struct DevUser {
    name: String,
    groups: Vec<String>,
    email_verified: bool,
}

struct Idp {
    issuer: String,
    client: DevClient,
    key: CoreRsaPrivateSigningKey,
    jwks: serde_json::Value,
    codes: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, DevUser>>,
    /// Live refresh tokens.
    refresh: Mutex<HashMap<String, RefreshGrant>>,
    /// Rotated-away refresh tokens → their family (a replay revokes the family).
    used_refresh: Mutex<HashMap<String, String>>,
    refresh_calls: std::sync::atomic::AtomicUsize,
    options: DevOptions,
    clock: Clock,
}

/// Start the issuer on `bind` (must be a loopback address; port 0 picks one).
pub async fn start(bind: SocketAddr, client: DevClient, clock: Clock) -> anyhow::Result<DevIdp> {
    start_with(bind, client, clock, DevOptions::default()).await
}

/// [`start`] with options.
pub async fn start_with(
    bind: SocketAddr,
    client: DevClient,
    clock: Clock,
    options: DevOptions,
) -> anyhow::Result<DevIdp> {
    anyhow::ensure!(
        bind.ip().is_loopback(),
        "the development issuer only binds loopback addresses, not {bind}"
    );
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding the development issuer on {bind}"))?;
    let addr = listener.local_addr()?;
    let issuer = format!("http://{addr}");
    let key = tokio::task::spawn_blocking(generate_key).await??;
    let jwks = serde_json::to_value(CoreJsonWebKeySet::new(vec![key.as_verification_key()]))?;
    let idp = Arc::new(Idp {
        issuer: issuer.clone(),
        client,
        key,
        jwks,
        codes: Mutex::new(HashMap::new()),
        tokens: Mutex::new(HashMap::new()),
        refresh: Mutex::new(HashMap::new()),
        used_refresh: Mutex::new(HashMap::new()),
        refresh_calls: std::sync::atomic::AtomicUsize::new(0),
        options,
        clock,
    });
    let router = axum::Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(serve_jwks))
        .route("/authorize", get(authorize_get).post(authorize_post))
        .route("/token", axum::routing::post(token))
        .route("/userinfo", get(userinfo))
        .route("/logout", get(logout))
        .route("/revoke", axum::routing::post(revoke))
        .with_state(idp.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "development issuer stopped");
        }
    });
    Ok(DevIdp {
        issuer,
        addr,
        stop: Some(tx),
        state: idp,
    })
}

fn generate_key() -> anyhow::Result<CoreRsaPrivateSigningKey> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)?;
    let pem = key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)?;
    CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new(random_id())))
        .map_err(|e| anyhow::anyhow!("loading the generated key: {e}"))
}

async fn discovery(State(idp): State<Arc<Idp>>) -> Json<serde_json::Value> {
    let base = idp.issuer.as_str();
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/jwks"),
        "end_session_endpoint": format!("{base}/logout"),
        "revocation_endpoint": format!("{base}/revoke"),
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile", "groups", "offline_access"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "email", "email_verified", "preferred_username", "groups"],
    }))
}

async fn serve_jwks(State(idp): State<Arc<Idp>>) -> Json<serde_json::Value> {
    Json(idp.jwks.clone())
}

#[derive(Debug, Deserialize, Default)]
struct AuthorizeParams {
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    code_challenge: Option<String>,
    #[serde(default)]
    code_challenge_method: Option<String>,
    #[serde(default)]
    login_hint: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    /// Development extra: comma-separated groups for the signed-in user.
    #[serde(default)]
    dev_groups: Option<String>,
    /// Development extra: `dev_unverified=1` marks the user's email as not verified.
    #[serde(default)]
    dev_unverified: Option<String>,
    /// The name typed into the form.
    #[serde(default)]
    username: Option<String>,
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(format!(
            "<!doctype html><title>Bad request</title><p>{}</p>",
            html_escape(message)
        )),
    )
        .into_response()
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn loopback_url(u: &str) -> Option<Url> {
    let url = Url::parse(u).ok()?;
    let ok = matches!(url.scheme(), "http" | "https")
        && matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    ok.then_some(url)
}

async fn authorize_get(State(idp): State<Arc<Idp>>, Query(p): Query<AuthorizeParams>) -> Response {
    authorize(&idp, p)
}

async fn authorize_post(State(idp): State<Arc<Idp>>, Form(p): Form<AuthorizeParams>) -> Response {
    authorize(&idp, p)
}

fn authorize(idp: &Idp, p: AuthorizeParams) -> Response {
    if p.client_id != idp.client.client_id {
        return bad_request("unknown client_id");
    }
    if p.response_type != "code" {
        return bad_request("only response_type=code is supported");
    }
    let Some(mut redirect) = loopback_url(&p.redirect_uri) else {
        return bad_request("redirect_uri must be an http(s) URL on a loopback host");
    };
    if p.code_challenge.is_some() && p.code_challenge_method.as_deref() != Some("S256") {
        return bad_request("only code_challenge_method=S256 is supported");
    }
    let name = p
        .username
        .clone()
        .or_else(|| p.login_hint.clone())
        .filter(|n| !n.is_empty());
    let Some(name) = name else {
        return Html(login_form(&p)).into_response();
    };
    if !valid_name(&name) {
        return bad_request("user names use letters, digits, '.', '_' and '-' (at most 64)");
    }
    let groups = p
        .dev_groups
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    let code = random_id();
    let grant = Grant {
        user: DevUser {
            name,
            groups,
            email_verified: p.dev_unverified.is_none(),
        },
        client_id: p.client_id.clone(),
        redirect_uri: p.redirect_uri.clone(),
        nonce: p.nonce.clone(),
        code_challenge: p.code_challenge.clone(),
        expires_at: idp.clock.now() + 60,
        offline: p
            .scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .any(|s| s == "offline_access"),
    };
    if let Ok(mut codes) = idp.codes.lock() {
        codes.insert(code.clone(), grant);
    }
    {
        let mut q = redirect.query_pairs_mut();
        q.append_pair("code", &code);
        if let Some(s) = &p.state {
            q.append_pair("state", s);
        }
    }
    Redirect::to(redirect.as_str()).into_response()
}

fn login_form(p: &AuthorizeParams) -> String {
    let hidden: String = [
        ("response_type", Some(p.response_type.as_str())),
        ("client_id", Some(p.client_id.as_str())),
        ("redirect_uri", Some(p.redirect_uri.as_str())),
        ("state", p.state.as_deref()),
        ("scope", p.scope.as_deref()),
        ("nonce", p.nonce.as_deref()),
        ("code_challenge", p.code_challenge.as_deref()),
        ("code_challenge_method", p.code_challenge_method.as_deref()),
        ("dev_groups", p.dev_groups.as_deref()),
        ("dev_unverified", p.dev_unverified.as_deref()),
    ]
    .iter()
    .filter_map(|(k, v)| {
        v.map(|v| {
            format!(
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                html_escape(v)
            )
        })
    })
    .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>portcullis development issuer</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem;color:#1f2937}}
.warn{{background:#fef3c7;border:1px solid #f59e0b;padding:.75rem;border-radius:.5rem}}
label{{display:block;margin:1rem 0 .25rem;font-weight:600}}input[type=text]{{width:100%;padding:.5rem;font-size:1rem}}
button{{margin-top:1rem;padding:.6rem 1.2rem;font-size:1rem;background:#1d4ed8;color:#fff;border:0;border-radius:.4rem}}</style></head>
<body><h1>Development issuer</h1>
<p class="warn">For local development only: any name you type is trusted.</p>
<form method="post" action="/authorize">{hidden}
<label for="username">User name</label>
<input id="username" type="text" name="username" autocomplete="username" required pattern="[A-Za-z0-9._\-]{{1,64}}" autofocus>
<button type="submit">Sign in</button></form></body></html>"#
    )
}

#[derive(Debug, Deserialize)]
struct TokenParams {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    refresh_token: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    code_verifier: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

/// Client credentials from HTTP Basic (form-urlencoded parts, RFC 6749 §2.3.1) or the body.
fn client_credentials(headers: &HeaderMap, p: &TokenParams) -> Option<(String, String)> {
    if let Some(basic) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        let dec = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some((dec(id)?, dec(secret)?));
    }
    Some((p.client_id.clone()?, p.client_secret.clone()?))
}

async fn token(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    Form(p): Form<TokenParams>,
) -> Response {
    let Some((id, secret)) = client_credentials(&headers, &p) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if id != idp.client.client_id || secret != idp.client.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    match p.grant_type.as_str() {
        "authorization_code" => code_grant(&idp, &id, p),
        "refresh_token" => refresh_grant(&idp, &id, p).await,
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}

fn code_grant(idp: &Idp, id: &str, p: TokenParams) -> Response {
    let grant = idp.codes.lock().ok().and_then(|mut c| c.remove(&p.code));
    let now = idp.clock.now();
    let Some(grant) = grant
        .filter(|g| g.expires_at > now && g.client_id == id && g.redirect_uri == p.redirect_uri)
    else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    if let Some(challenge) = &grant.code_challenge {
        let Some(verifier) = &p.code_verifier else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        };
        let digest = sha2::Sha256::digest(verifier.as_bytes());
        let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        if computed != *challenge {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        }
    }
    let refresh = grant.offline.then(|| (random_id(), random_id()));
    issue(
        idp,
        &grant.user,
        &grant.client_id,
        grant.nonce.clone(),
        Some(&AuthorizationCode::new(p.code)),
        refresh,
    )
}

/// RFC 6749 §6 with rotation: the presented token is spent and a new one of the same family
/// comes back; presenting a spent token again revokes the family.
async fn refresh_grant(idp: &Idp, id: &str, p: TokenParams) -> Response {
    idp.refresh_calls
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if !idp.options.refresh_delay.is_zero() {
        tokio::time::sleep(idp.options.refresh_delay).await;
    }
    let live = idp
        .refresh
        .lock()
        .ok()
        .and_then(|mut r| r.remove(&p.refresh_token));
    let Some(grant) = live.filter(|g| g.client_id == id) else {
        let family = idp
            .used_refresh
            .lock()
            .ok()
            .and_then(|u| u.get(&p.refresh_token).cloned());
        if let (Some(family), Ok(mut r)) = (family, idp.refresh.lock()) {
            r.retain(|_, g| g.family != family);
        }
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    if let Ok(mut u) = idp.used_refresh.lock() {
        u.insert(p.refresh_token.clone(), grant.family.clone());
    }
    issue(
        idp,
        &grant.user,
        &grant.client_id,
        None,
        None,
        Some((random_id(), grant.family)),
    )
}

/// A token response: access token, ID token, and a refresh token `(token, family)` if given.
fn issue(
    idp: &Idp,
    user: &DevUser,
    client_id: &str,
    nonce: Option<String>,
    code: Option<&AuthorizationCode>,
    refresh: Option<(String, String)>,
) -> Response {
    let access = AccessToken::new(random_id());
    let id_token = match sign_id_token(idp, user, client_id, nonce, &access, code) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "development issuer could not sign");
            return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
        }
    };
    if let Ok(mut t) = idp.tokens.lock() {
        t.insert(access.secret().clone(), user.clone());
    }
    let mut body = json!({
        "access_token": access.secret(),
        "token_type": "Bearer",
        "expires_in": idp.options.access_token_ttl,
        "id_token": id_token,
        "scope": "openid email profile",
    });
    if let Some((token, family)) = refresh {
        if let Ok(mut r) = idp.refresh.lock() {
            r.insert(
                token.clone(),
                RefreshGrant {
                    user: user.clone(),
                    client_id: client_id.to_string(),
                    family,
                },
            );
        }
        body["refresh_token"] = json!(token);
    }
    Json(body).into_response()
}

fn sign_id_token(
    idp: &Idp,
    user: &DevUser,
    client_id: &str,
    nonce: Option<String>,
    access: &AccessToken,
    code: Option<&AuthorizationCode>,
) -> anyhow::Result<String> {
    let now = idp.clock.now_utc();
    let mut extra = HashMap::new();
    extra.insert("groups".to_string(), json!(user.groups));
    let claims: IdTokenClaims = IdTokenClaims::new(
        IssuerUrl::new(idp.issuer.clone())?,
        vec![Audience::new(client_id.to_string())],
        now + chrono::Duration::seconds(idp.options.id_token_ttl),
        now,
        StandardClaims::<CoreGenderClaim>::new(SubjectIdentifier::new(user.name.clone()))
            .set_email(Some(EndUserEmail::new(format!(
                "{}@example.com",
                user.name
            ))))
            .set_email_verified(Some(user.email_verified))
            .set_preferred_username(Some(EndUserUsername::new(user.name.clone()))),
        ExtraClaims(extra),
    )
    .set_nonce(nonce.map(Nonce::new));
    let token = IdToken::new(
        claims,
        &idp.key,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        Some(access),
        code,
    )?;
    Ok(token.to_string())
}

async fn userinfo(State(idp): State<Arc<Idp>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let user = idp.tokens.lock().ok().and_then(|t| t.get(token).cloned());
    match user {
        Some(u) => Json(json!({
            "sub": u.name,
            "email": format!("{}@example.com", u.name),
            "email_verified": u.email_verified,
            "preferred_username": u.name,
            "groups": u.groups,
        }))
        .into_response(),
        None => oauth_error(StatusCode::UNAUTHORIZED, "invalid_token"),
    }
}

#[derive(Debug, Deserialize)]
struct RevokeParams {
    #[serde(default)]
    token: String,
}

/// RFC 7009: revoke a refresh token (its whole family) or an access token. Always 200.
async fn revoke(State(idp): State<Arc<Idp>>, Form(p): Form<RevokeParams>) -> Response {
    if let Ok(mut r) = idp.refresh.lock() {
        if let Some(family) = r.get(&p.token).map(|g| g.family.clone()) {
            r.retain(|_, g| g.family != family);
        }
    }
    if let Ok(mut t) = idp.tokens.lock() {
        t.remove(&p.token);
    }
    StatusCode::OK.into_response()
}

#[derive(Debug, Deserialize)]
struct LogoutParams {
    post_logout_redirect_uri: Option<String>,
}

async fn logout(Query(p): Query<LogoutParams>) -> Response {
    match p.post_logout_redirect_uri.as_deref().and_then(loopback_url) {
        Some(u) => Redirect::to(u.as_str()).into_response(),
        None => Html(
            "<!doctype html><title>Signed out</title><p>You are signed out of the development issuer.</p>",
        )
        .into_response(),
    }
}

/// `portcullis dev`: the issuer and the proxy on loopback, wired to each other.
pub async fn run_dev(args: crate::cli::DevArgs) -> anyhow::Result<()> {
    use figment::providers::Serialized;
    let log = crate::config::LogConfig {
        level: "info".into(),
        json: false,
        include_user: true,
    };
    let _ = crate::telemetry::init(
        &log,
        &crate::config::TracingConfig::default(),
        &tokio::runtime::Handle::current(),
    );
    tracing::warn!("DEVELOPMENT MODE: the embedded issuer signs in anyone under any name. Never use `portcullis dev` for anything real.");
    let client = DevClient {
        client_id: "portcullis-dev".into(),
        client_secret: random_id(),
    };
    let loopback = std::net::Ipv4Addr::LOCALHOST;
    let idp = start(
        SocketAddr::from((loopback, args.idp_port)),
        client.clone(),
        Clock::system(),
    )
    .await?;
    let cookie_key = crate::session::cookie::CookieKey::generate();
    let base = figment::Figment::new()
        .merge(Serialized::default(
            "server.http_address",
            format!("127.0.0.1:{}", args.port),
        ))
        .merge(Serialized::default(
            "server.admin_address",
            format!("127.0.0.1:{}", args.admin_port),
        ))
        .merge(Serialized::default(
            "server.grpc_address",
            format!("127.0.0.1:{}", args.grpc_port),
        ))
        .merge(Serialized::default("oidc.issuer_url", &idp.issuer))
        .merge(Serialized::default("oidc.client_id", &client.client_id))
        .merge(Serialized::default(
            "oidc.client_secret",
            &client.client_secret,
        ))
        .merge(Serialized::default("cookie.secret", cookie_key.to_base64()))
        .merge(Serialized::default("cookie.secure", false))
        .merge(Serialized::default("pages.signed_in_page", true))
        .merge(Serialized::default(
            "authz.redirect_domains",
            vec!["127.0.0.1:*", "localhost:*"],
        ));
    let config = crate::app::dev_config(&crate::config::Sources::default(), base)?;
    let app = Arc::new(crate::app::App::new(config, Clock::system())?);
    let listeners = crate::app::Listeners::bind(&app.config).await?;
    app.oidc.discover().await?;
    let url = format!("http://{}/", listeners.http_addr()?);
    println!();
    println!("  portcullis dev is running.");
    println!("  Open {url} and sign in with any user name (e.g. alice).");
    println!("  Development issuer: {}", idp.issuer);
    println!("  gRPC ext_authz (h2c): {}", listeners.grpc_addr()?);
    println!("  Admin: http://{}/readyz", listeners.admin_addr()?);
    println!("  Stop with Ctrl-C.");
    println!();
    listeners.serve(app, crate::app::shutdown_signal()).await
}
