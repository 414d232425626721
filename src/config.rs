//! Configuration: the only user of figment. Layers, later wins: built-in defaults → file (TOML
//! or YAML) → `OAUTH2_PROXY_*` env (for keys both tools have) → `PORTCULLIS_<SECTION>__<KEY>`
//! env → `--set key=value` flags. The raw layer is then validated into a typed [`Config`]
//! before any port binds; every failure names the key it is about.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml, Yaml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

mod bearer;
mod observability;
mod session;

pub use bearer::{BearerConfig, BearerIssuer, RawBearer, RawBearerIssuer, ALGORITHMS};
pub use observability::{LogConfig, RawLog, RawTracing, TracingConfig, OTLP_BUILT_IN};
pub use session::{
    redacted_url, AdminConfig, RawAdmin, RawRedis, RawSession, RedisConfig, RedisTopology,
    SessionConfig, StoreKind,
};

use crate::redirect::AllowedDomain;
use crate::session::cookie::CookieKey;

/// A secret string; `Debug` and `Display` never show it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself; call only where it is sent to its destination.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A configuration problem: the key it is about and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub oidc: OidcConfig,
    pub cookie: CookieConfig,
    pub authz: AuthzConfig,
    pub headers: HeadersConfig,
    pub pages: PagesConfig,
    pub log: LogConfig,
    pub tracing: TracingConfig,
    pub compat: CompatConfig,
    /// Things worth telling the operator at start-up (ignored oauth2-proxy options, …).
    pub warnings: Vec<String>,
    pub bearer: BearerConfig,
    pub forward: ForwardConfig,
    pub session: SessionConfig,
    pub admin: AdminConfig,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub http_address: SocketAddr,
    /// gRPC ext_authz (`envoy.service.auth.v3.Authorization/Check`) and `grpc.health.v1`.
    pub grpc_address: SocketAddr,
    /// Largest CheckRequest accepted on the gRPC listener, in bytes (Envoy may forward bodies).
    pub grpc_max_message_bytes: usize,
    pub admin_address: SocketAddr,
    /// Starts with "/", no trailing "/".
    pub proxy_prefix: String,
    /// Empty, or starts with "/".
    pub path_prefix: String,
    /// Peers whose forwarded headers (`X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri`) are read
    /// on the forward-auth endpoints. Empty (the default): nobody's.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Largest request head (request line and headers) on the check listeners; more is 431.
    pub max_header_bytes: usize,
    /// Largest request body a check may carry (Envoy's `with_request_body`); more is 413.
    pub max_body_bytes: usize,
    /// Open connections per check listener; beyond it, 503 (HTTP) or a closed connection (gRPC).
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per connection (HTTP h2c and gRPC listeners).
    pub max_concurrent_streams: u32,
}

/// Forward auth for nginx `auth_request`, Caddy `forward_auth` and Traefik `forwardAuth`.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// Status of an allow on `<proxy_prefix>/auth`: 202 (oauth2-proxy's) or 200.
    pub auth_status: http::StatusCode,
    /// Every path of the check listener is a forward-auth check (Traefik's `address` without a
    /// path), not only `<proxy_prefix>/forward`.
    pub catch_all: bool,
}

#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Exactly as configured: the ID token's `iss` must equal it character for character.
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_url: Option<Url>,
    pub scopes: Vec<String>,
    pub user_claim: String,
    pub email_claim: String,
    pub groups_claim: String,
    pub extra_auth_params: Vec<(String, String)>,
    pub http_timeout: Duration,
    /// Accept a login whose `email_verified` claim is false.
    pub allow_unverified_email: bool,
}

#[derive(Clone)]
pub struct CookieConfig {
    pub name: String,
    pub key: CookieKey,
    pub previous_keys: Vec<CookieKey>,
    pub expire: Duration,
    pub csrf_expire: Duration,
    pub max_pending_logins: usize,
    pub domain: Option<String>,
    pub path: String,
    pub secure: bool,
    pub same_site: cookie::SameSite,
    /// Refresh the tokens when they have at most this long left.
    pub refresh: Duration,
    /// Also refresh this long after the last refresh (or the login); `None`: only by expiry.
    pub refresh_interval: Option<Duration>,
    /// Keep the IdP's refresh token in the session (and so refresh at all).
    pub store_refresh_token: bool,
    /// A session whose tokens expired and cannot be refreshed lives on until `expire`.
    pub keep_after_token_expiry: bool,
}

impl fmt::Debug for CookieConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieConfig")
            .field("name", &self.name)
            .field("key", &"[redacted]")
            .field("previous_keys", &self.previous_keys.len())
            .field("expire", &self.expire)
            .field("csrf_expire", &self.csrf_expire)
            .field("max_pending_logins", &self.max_pending_logins)
            .field("domain", &self.domain)
            .field("path", &self.path)
            .field("secure", &self.secure)
            .field("same_site", &self.same_site)
            .field("refresh", &self.refresh)
            .field("refresh_interval", &self.refresh_interval)
            .field("store_refresh_token", &self.store_refresh_token)
            .field("keep_after_token_expiry", &self.keep_after_token_expiry)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct AuthzConfig {
    pub email_domains: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub redirect_domains: Vec<AllowedDomain>,
    pub rules: Vec<crate::authz::rules::Rule>,
}

#[derive(Debug, Clone)]
pub struct HeadersConfig {
    pub set_xauthrequest: bool,
    pub pass_access_token: bool,
    pub set_authorization_header: bool,
}

#[derive(Debug, Clone)]
pub struct PagesConfig {
    pub templates_dir: Option<PathBuf>,
    pub provider_name: String,
    pub footer: String,
    pub signed_in_page: bool,
    /// The application's or organisation's name, shown above every page and in `<title>`.
    pub title: String,
    pub logo: Option<Logo>,
    pub accent_color: crate::theme::Rgb,
    pub login_mode: LoginMode,
}

/// A logo image: a `data:image/…` URI, or an https URL whose origin the CSP then allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logo {
    pub src: String,
    /// `https://host[:port]` for a URL logo; `None` for a `data:` URI.
    pub origin: Option<String>,
}

/// What an unauthenticated browser gets on a protected page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMode {
    /// 302 straight to the identity provider.
    Redirect,
    /// The sign-in page (status 401); its button starts the login.
    Page,
}

#[derive(Debug, Clone)]
pub struct CompatConfig {
    /// Behave like Istio's sample ext-authz server (`x-ext-authz: allow`).
    pub istio_sample: bool,
    /// The sample's `-allow_service_account`: over gRPC, a request without `x-ext-authz`
    /// from a peer whose principal ends with `/sa/<this>` is allowed.
    pub istio_sample_allow_service_account: String,
}

// ---------------------------------------------------------------------------------------------
// The raw layer: what figment deserializes. Unknown keys are errors.

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub oidc: RawOidc,
    pub cookie: RawCookie,
    pub authz: RawAuthz,
    pub headers: RawHeaders,
    pub pages: RawPages,
    pub log: RawLog,
    pub tracing: RawTracing,
    pub compat: RawCompat,
    pub bearer: RawBearer,
    pub session: RawSession,
    pub admin: RawAdmin,
    pub forward: RawForward,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawForward {
    pub auth_status: u16,
    pub catch_all: bool,
}

impl Default for RawForward {
    fn default() -> Self {
        Self {
            auth_status: 202,
            catch_all: false,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCompat {
    pub istio_sample: bool,
    pub istio_sample_allow_service_account: String,
}

impl Default for RawCompat {
    fn default() -> Self {
        Self {
            istio_sample: false,
            istio_sample_allow_service_account: "a".into(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub http_address: String,
    pub grpc_address: String,
    pub grpc_max_message_bytes: u64,
    pub admin_address: String,
    pub proxy_prefix: String,
    pub path_prefix: String,
    #[serde(deserialize_with = "comma_list")]
    pub trusted_proxies: Vec<String>,
    pub max_header_bytes: u64,
    pub max_body_bytes: u64,
    pub max_connections: u64,
    pub max_concurrent_streams: u64,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            http_address: "0.0.0.0:4180".into(),
            grpc_address: "0.0.0.0:4181".into(),
            grpc_max_message_bytes: DEFAULT_GRPC_MAX_MESSAGE_BYTES,
            admin_address: "0.0.0.0:4182".into(),
            proxy_prefix: "/oauth2".into(),
            path_prefix: String::new(),
            trusted_proxies: Vec::new(),
            max_header_bytes: 256 * 1024,
            max_body_bytes: 1024 * 1024,
            max_connections: 10_000,
            max_concurrent_streams: 100,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOidc {
    pub issuer_url: String,
    #[serde(deserialize_with = "lenient_string")]
    pub client_id: String,
    #[serde(deserialize_with = "lenient_string")]
    pub client_secret: String,
    pub client_secret_file: String,
    pub redirect_url: String,
    #[serde(deserialize_with = "word_list")]
    pub scopes: Vec<String>,
    pub user_claim: String,
    pub email_claim: String,
    pub groups_claim: String,
    pub extra_auth_params: BTreeMap<String, String>,
    pub http_timeout: String,
    pub allow_unverified_email: bool,
}

impl Default for RawOidc {
    fn default() -> Self {
        Self {
            issuer_url: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            client_secret_file: String::new(),
            redirect_url: String::new(),
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            user_claim: "sub".into(),
            email_claim: "email".into(),
            groups_claim: "groups".into(),
            extra_auth_params: BTreeMap::new(),
            http_timeout: "5s".into(),
            allow_unverified_email: false,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCookie {
    pub name: String,
    #[serde(deserialize_with = "lenient_string")]
    pub secret: String,
    pub secret_file: String,
    #[serde(deserialize_with = "comma_list")]
    pub previous_secrets: Vec<String>,
    pub expire: String,
    pub csrf_expire: String,
    pub max_pending_logins: usize,
    pub domain: String,
    pub path: String,
    pub secure: bool,
    pub same_site: String,
    pub refresh: String,
    pub refresh_interval: String,
    pub store_refresh_token: bool,
    pub keep_after_token_expiry: bool,
}

impl Default for RawCookie {
    fn default() -> Self {
        Self {
            name: "_portcullis".into(),
            secret: String::new(),
            secret_file: String::new(),
            previous_secrets: Vec::new(),
            expire: "168h".into(),
            csrf_expire: "15m".into(),
            max_pending_logins: 5,
            domain: String::new(),
            path: "/".into(),
            secure: true,
            same_site: "lax".into(),
            refresh: "1m".into(),
            refresh_interval: "0s".into(),
            store_refresh_token: true,
            keep_after_token_expiry: false,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuthz {
    #[serde(deserialize_with = "comma_list")]
    pub email_domains: Vec<String>,
    #[serde(deserialize_with = "comma_list")]
    pub allowed_groups: Vec<String>,
    #[serde(deserialize_with = "comma_list")]
    pub redirect_domains: Vec<String>,
    pub rules: Vec<crate::authz::rules::RawRule>,
}

impl Default for RawAuthz {
    fn default() -> Self {
        Self {
            email_domains: vec!["*".into()],
            allowed_groups: Vec::new(),
            redirect_domains: Vec::new(),
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHeaders {
    pub set_xauthrequest: bool,
    pub pass_access_token: bool,
    pub set_authorization_header: bool,
}

impl Default for RawHeaders {
    fn default() -> Self {
        Self {
            set_xauthrequest: true,
            pass_access_token: false,
            set_authorization_header: false,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPages {
    pub templates_dir: String,
    pub provider_name: String,
    pub footer: String,
    pub signed_in_page: bool,
    pub title: String,
    pub logo: String,
    pub accent_color: String,
    pub login_mode: String,
}

impl Default for RawPages {
    fn default() -> Self {
        Self {
            templates_dir: String::new(),
            provider_name: "OpenID Connect".into(),
            footer: String::new(),
            signed_in_page: false,
            title: String::new(),
            logo: String::new(),
            accent_color: crate::theme::DEFAULT_ACCENT.into(),
            login_mode: "redirect".into(),
        }
    }
}

/// Accepts a string, number or boolean (env values such as a numeric client id arrive typed).
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(match Lenient::deserialize(d)? {
        Lenient::S(s) => s,
        Lenient::I(i) => i.to_string(),
        Lenient::U(u) => u.to_string(),
        Lenient::F(f) => f.to_string(),
        Lenient::B(b) => b.to_string(),
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<String>),
    One(String),
}

/// A list, or one string split on commas (how env vars and oauth2-proxy give lists).
pub(crate) fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(s) => split_list(&s, &[',']),
    })
}

/// A list, or one string split on commas or whitespace (oauth2-proxy's `scope` is space-separated).
fn word_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(s) => split_list(&s, &[',', ' ', '\t']),
    })
}

fn split_list(s: &str, seps: &[char]) -> Vec<String> {
    s.split(|c| seps.contains(&c))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Where configuration comes from, besides the environment.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// An oauth2-proxy TOML configuration, translated underneath `file`.
    pub oauth2_proxy_file: Option<PathBuf>,
    /// `key=value` overrides, e.g. `server.http_address=127.0.0.1:4180`.
    pub sets: Vec<String>,
    /// Whether to read `PORTCULLIS_*` / `OAUTH2_PROXY_*` from the process environment.
    pub use_env: bool,
}

impl Config {
    /// Load every layer and validate.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let (base, warnings) = match &sources.oauth2_proxy_file {
            Some(path) => oauth2_proxy_layer(path)?,
            None => (Figment::new(), Vec::new()),
        };
        let mut warnings = warnings;
        if sources.use_env {
            // OAUTH2_PROXY_* names we do not read get the verdict their file option would.
            warnings.extend(
                crate::compat::check_env(std::env::vars())
                    .map_err(|e| ConfigError::new(&e.option, e.message))?,
            );
        }
        let raw = Self::load_raw(sources, base)?;
        let mut config = Self::validate(raw)?;
        config.warnings.extend(warnings);
        Ok(config)
    }

    /// Load every layer on top of `base` (used by `portcullis dev` to supply its own defaults).
    pub fn load_raw(sources: &Sources, base: Figment) -> Result<RawConfig, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(RawConfig::default())).merge(base);
        if let Some(path) = &sources.file {
            if !path.is_file() {
                return Err(ConfigError::new(
                    "--config",
                    format!("file {} does not exist or is not a file", path.display()),
                ));
            }
            fig = match path.extension().and_then(|e| e.to_str()) {
                Some("yaml") | Some("yml") => fig.merge(Yaml::file_exact(path)),
                _ => fig.merge(Toml::file_exact(path)),
            };
        }
        if sources.use_env {
            // The environment goes through the same figment parser (see `trips_figment_escape`):
            // refuse such a variable by name instead of panicking inside figment.
            for (name, value) in std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            {
                if (name.starts_with("PORTCULLIS_") || name.starts_with("OAUTH2_PROXY_"))
                    && trips_figment_escape(&value)
                {
                    return Err(ConfigError::new(
                        &name,
                        "a value with both a backslash and non-ASCII characters cannot be read from the environment; put it in the configuration file",
                    ));
                }
            }
            fig = fig
                .merge(Env::prefixed("OAUTH2_PROXY_").filter_map(|k| {
                    crate::compat::env_key(&k.as_str().to_ascii_lowercase()).map(Into::into)
                }))
                // Only SECTION__KEY names: PORTCULLIS_CONFIG (the --config flag) and the
                // PORTCULLIS_SERVICE_HOST / _PORT_* variables Kubernetes injects for a Service
                // named portcullis are not configuration keys.
                .merge(
                    Env::prefixed("PORTCULLIS_")
                        .filter(|k| k.as_str().contains("__"))
                        .split("__"),
                );
        }
        for set in &sources.sets {
            let (key, value) = set.split_once('=').ok_or_else(|| {
                ConfigError::new("--set", format!("expected key=value, got {set:?}"))
            })?;
            // figment's value parser panics on a backslash escape after a non-ASCII character
            // (figment 0.10.19 value/escape.rs slices by char index; found by
            // fuzz/fuzz_targets/config.rs): such a value is taken as the plain string it is.
            let value: figment::value::Value = if trips_figment_escape(value) {
                figment::value::Value::from(value.to_string())
            } else {
                value
                    .parse()
                    .unwrap_or_else(|_| figment::value::Value::from(value.to_string()))
            };
            fig = fig.merge((key.trim(), value));
        }
        fig.extract::<RawConfig>().map_err(figment_error)
    }

    /// Turn the raw layer into a typed configuration, checking every key.
    pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        let server = validate_server(raw.server)?;
        let oidc = validate_oidc(raw.oidc)?;
        let login_issuer = BearerIssuer {
            issuer: oidc.issuer_url.clone(),
            jwks_uri: None,
            audiences: vec![oidc.client_id.clone()],
            algorithms: Vec::new(),
            user_claim: oidc.user_claim.clone(),
            email_claim: oidc.email_claim.clone(),
            groups_claim: oidc.groups_claim.clone(),
        };
        let bearer = bearer::validate_bearer(raw.bearer, Some(login_issuer))?;
        let cookie = validate_cookie(raw.cookie)?;
        let session = session::validate_session(raw.session)?;
        let admin = session::validate_admin(raw.admin)?;
        let istio_sample = raw.compat.istio_sample;
        let istio_sample_allow_service_account = raw.compat.istio_sample_allow_service_account;
        let mut raw_authz = raw.authz;
        if istio_sample {
            if !raw_authz.rules.is_empty() {
                return Err(ConfigError::new(
                    "compat.istio_sample",
                    "the Istio sample preset is its own rule; remove authz.rules or the preset",
                ));
            }
            raw_authz.rules = vec![crate::authz::sample::rule()];
        }
        let authz = validate_authz(raw_authz)?;
        let headers = HeadersConfig {
            set_xauthrequest: raw.headers.set_xauthrequest,
            pass_access_token: raw.headers.pass_access_token,
            set_authorization_header: raw.headers.set_authorization_header,
        };
        let pages = validate_pages(raw.pages)?;
        let forward = validate_forward(raw.forward)?;
        let warnings = forward_warnings(&server, &forward);
        let log = observability::validate_log(raw.log)?;
        let tracing = observability::validate_tracing(raw.tracing)?;
        Ok(Config {
            server,
            oidc,
            cookie,
            authz,
            headers,
            pages,
            log,
            tracing,
            compat: CompatConfig {
                istio_sample,
                istio_sample_allow_service_account,
            },
            warnings,
            bearer,
            forward,
            session,
            admin,
        })
    }
}

fn validate_pages(raw: RawPages) -> Result<PagesConfig, ConfigError> {
    let accent_color = crate::theme::Rgb::parse_hex(raw.accent_color.trim()).ok_or_else(|| {
        ConfigError::new(
            "pages.accent_color",
            format!(
                "expected a CSS hex colour such as \"#1e4fd6\" or \"#fc0\", got {:?}",
                raw.accent_color
            ),
        )
    })?;
    let login_mode = match raw.login_mode.as_str() {
        "redirect" => LoginMode::Redirect,
        "page" => LoginMode::Page,
        other => {
            return Err(ConfigError::new(
                "pages.login_mode",
                format!("expected \"redirect\" or \"page\", got {other:?}"),
            ))
        }
    };
    let logo = match non_empty(raw.logo) {
        None => None,
        Some(s) => Some(validate_logo(&s).map_err(|m| ConfigError::new("pages.logo", m))?),
    };
    Ok(PagesConfig {
        templates_dir: non_empty(raw.templates_dir).map(PathBuf::from),
        provider_name: raw.provider_name,
        footer: raw.footer,
        signed_in_page: raw.signed_in_page,
        title: raw.title.trim().to_string(),
        logo,
        accent_color,
        login_mode,
    })
}

/// Longest logo accepted (a `data:` URI is inlined into every page).
const MAX_LOGO_LEN: usize = 64 * 1024;

/// A logo is a `data:image/{png,jpeg,gif,webp,svg+xml}` URI or an `https://` URL: nothing the
/// gateway would intercept (a path on the protected app would itself need a login), nothing
/// that downgrades the page to plain http.
fn validate_logo(s: &str) -> Result<Logo, String> {
    if s.len() > MAX_LOGO_LEN {
        return Err(format!(
            "longer than {MAX_LOGO_LEN} bytes; use a smaller image or an https URL"
        ));
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '<' | '>'))
    {
        return Err("must not contain whitespace, quotes or angle brackets".into());
    }
    if let Some(rest) = s.strip_prefix("data:") {
        let media = rest.split([';', ',']).next().unwrap_or_default();
        const IMAGES: [&str; 5] = [
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
            "image/svg+xml",
        ];
        if !IMAGES.contains(&media.to_ascii_lowercase().as_str()) || !rest.contains(',') {
            return Err(format!(
                "a data: URI must be an image ({}), e.g. data:image/png;base64,…",
                IMAGES.join(", ")
            ));
        }
        return Ok(Logo {
            src: s.to_string(),
            origin: None,
        });
    }
    let url = Url::parse(s).map_err(|e| format!("not a data: URI or https URL: {e}"))?;
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err("expected a data:image/… URI or an https:// URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials".into());
    }
    Ok(Logo {
        src: url.to_string(),
        origin: Some(url.origin().ascii_serialization()),
    })
}

/// A figment layer from an oauth2-proxy configuration file, and its warnings.
fn oauth2_proxy_layer(path: &Path) -> Result<(Figment, Vec<String>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "--oauth2-proxy-config",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let translated = crate::compat::translate(&text)
        .map_err(|e| ConfigError::new(&format!("--oauth2-proxy-config {}", e.option), e.message))?;
    let mut fig = Figment::new();
    for (key, value) in translated.sets {
        fig = fig.merge(Serialized::default(&key, value));
    }
    Ok((fig, translated.warnings))
}

/// One line out of figment's error, naming the key.
/// Whether figment's value parser would panic on `value`: a backslash escape after a
/// non-ASCII character.
fn trips_figment_escape(value: &str) -> bool {
    value.contains('\\') && !value.is_ascii()
}

fn figment_error(err: figment::Error) -> ConfigError {
    let first = err.into_iter().next();
    match first {
        Some(e) => {
            // An empty key segment (`"" = 1` in TOML) is shown as `""`, so the message always
            // names something (found by fuzz/fuzz_targets/config.rs).
            let key = if e.path.is_empty() {
                "config".to_string()
            } else {
                e.path
                    .iter()
                    .map(|s| if s.is_empty() { "\"\"" } else { s.as_str() })
                    .collect::<Vec<_>>()
                    .join(".")
            };
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            // Parser messages span lines (with a source excerpt); keep one line.
            let kind = e.kind.to_string();
            let kind = kind.split_whitespace().collect::<Vec<_>>().join(" ");
            ConfigError::new(&key, format!("{kind}{source}"))
        }
        None => ConfigError::new("config", "unreadable configuration"),
    }
}

pub(crate) fn non_empty(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

pub(crate) fn parse_duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s.trim())
        .map_err(|e| ConfigError::new(key, format!("{e} (use e.g. \"168h\", \"15m\", \"30s\")")))
}

fn parse_addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.trim().parse().map_err(|_| {
        ConfigError::new(
            key,
            format!("expected an address like 0.0.0.0:4180, got {s:?}"),
        )
    })
}

fn validate_prefix(key: &str, s: &str, allow_empty: bool) -> Result<String, ConfigError> {
    let t = s.trim().trim_end_matches('/');
    if t.is_empty() {
        return if allow_empty {
            Ok(String::new())
        } else {
            Err(ConfigError::new(key, "must be a path such as /oauth2"))
        };
    }
    if !t.starts_with('/') || t.contains(['?', '#', ' ']) || t.chars().any(char::is_control) {
        return Err(ConfigError::new(
            key,
            format!("must be a path starting with \"/\" without query or spaces, got {s:?}"),
        ));
    }
    Ok(t.to_string())
}

/// 16 MiB: Envoy's `with_request_body` can forward large bodies; tonic's own default is 4 MiB.
const DEFAULT_GRPC_MAX_MESSAGE_BYTES: u64 = 16 * 1024 * 1024;
const MIN_GRPC_MAX_MESSAGE_BYTES: u64 = 64 * 1024;
const MAX_GRPC_MAX_MESSAGE_BYTES: u64 = 1024 * 1024 * 1024;

fn validate_server(raw: RawServer) -> Result<ServerConfig, ConfigError> {
    let max = raw.grpc_max_message_bytes;
    if !(MIN_GRPC_MAX_MESSAGE_BYTES..=MAX_GRPC_MAX_MESSAGE_BYTES).contains(&max) {
        return Err(ConfigError::new(
            "server.grpc_max_message_bytes",
            format!(
                "must be between {MIN_GRPC_MAX_MESSAGE_BYTES} and {MAX_GRPC_MAX_MESSAGE_BYTES} bytes, got {max}"
            ),
        ));
    }
    Ok(ServerConfig {
        http_address: parse_addr("server.http_address", &raw.http_address)?,
        grpc_address: parse_addr("server.grpc_address", &raw.grpc_address)?,
        grpc_max_message_bytes: usize::try_from(max).map_err(|_| {
            ConfigError::new(
                "server.grpc_max_message_bytes",
                "too large for this platform",
            )
        })?,
        admin_address: parse_addr("server.admin_address", &raw.admin_address)?,
        proxy_prefix: validate_prefix("server.proxy_prefix", &raw.proxy_prefix, false)?,
        path_prefix: validate_prefix("server.path_prefix", &raw.path_prefix, true)?,
        trusted_proxies: raw
            .trusted_proxies
            .iter()
            .map(|s| parse_cidr(s))
            .collect::<Result<_, _>>()?,
        max_header_bytes: in_range(
            "server.max_header_bytes",
            raw.max_header_bytes,
            16 * 1024,
            16 * 1024 * 1024,
        )?,
        max_body_bytes: in_range("server.max_body_bytes", raw.max_body_bytes, 0, 1 << 30)?,
        max_connections: in_range("server.max_connections", raw.max_connections, 1, 1_000_000)?,
        max_concurrent_streams: in_range(
            "server.max_concurrent_streams",
            raw.max_concurrent_streams,
            1,
            1_000_000,
        )?,
    })
}

/// `10.0.0.0/8`, `fd00::/8`, or a bare address (one host). Host bits must be zero, so a typo
/// such as `10.1.2.3/8` is refused rather than silently widened.
fn parse_cidr(s: &str) -> Result<ipnet::IpNet, ConfigError> {
    let key = "server.trusted_proxies";
    let t = s.trim();
    let net = match t.parse::<ipnet::IpNet>() {
        Ok(n) => n,
        Err(_) => {
            t.parse::<std::net::IpAddr>()
                .map(ipnet::IpNet::from)
                .map_err(|_| {
                    ConfigError::new(
                key,
                format!("expected an address or CIDR such as 10.0.0.0/8 or 127.0.0.1, got {s:?}"),
            )
                })?
        }
    };
    if net.trunc() != net {
        return Err(ConfigError::new(
            key,
            format!("{s:?} has host bits set; did you mean {}?", net.trunc()),
        ));
    }
    Ok(net)
}

/// `forward.catch_all` says every check comes from a forward-auth proxy; with nobody trusted,
/// what the proxy says about the original request is never read.
fn forward_warnings(server: &ServerConfig, forward: &ForwardConfig) -> Vec<String> {
    if forward.catch_all && server.trusted_proxies.is_empty() {
        vec!["forward.catch_all is on but server.trusted_proxies is empty: X-Forwarded-Uri and the other forwarded headers are ignored, so rules see the check request's own path; add your proxy's address".into()]
    } else {
        Vec::new()
    }
}

fn validate_forward(raw: RawForward) -> Result<ForwardConfig, ConfigError> {
    let auth_status = match raw.auth_status {
        200 => http::StatusCode::OK,
        202 => http::StatusCode::ACCEPTED,
        other => {
            return Err(ConfigError::new(
                "forward.auth_status",
                format!("must be 202 (oauth2-proxy's) or 200, got {other}"),
            ))
        }
    };
    Ok(ForwardConfig {
        auth_status,
        catch_all: raw.catch_all,
    })
}

/// `value` if it lies in `min..=max`, converted; else an error naming `key` and the range.
fn in_range<T: TryFrom<u64>>(key: &str, value: u64, min: u64, max: u64) -> Result<T, ConfigError> {
    if !(min..=max).contains(&value) {
        return Err(ConfigError::new(
            key,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    T::try_from(value).map_err(|_| ConfigError::new(key, "too large for this platform"))
}

/// Read a secret given inline or as a file; exactly one must be set when `required`.
pub(crate) fn read_secret(
    key: &str,
    inline: &str,
    file_key: &str,
    file: &str,
) -> Result<Option<String>, ConfigError> {
    match (non_empty(inline.to_string()), non_empty(file.to_string())) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            key,
            format!("set either {key} or {file_key}, not both"),
        )),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(path)) => {
            let content = std::fs::read_to_string(Path::new(&path))
                .map_err(|e| ConfigError::new(file_key, format!("cannot read {path}: {e}")))?;
            non_empty(content)
                .map(Some)
                .ok_or_else(|| ConfigError::new(file_key, format!("{path} is empty")))
        }
        (None, None) => Ok(None),
    }
}

fn validate_oidc(raw: RawOidc) -> Result<OidcConfig, ConfigError> {
    let issuer = non_empty(raw.issuer_url)
        .ok_or_else(|| ConfigError::new("oidc.issuer_url", "is required"))?;
    if !Url::parse(&issuer)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
    {
        return Err(ConfigError::new(
            "oidc.issuer_url",
            format!("expected an http(s) URL, got {issuer:?}"),
        ));
    }
    let issuer_url = issuer;
    let client_id = non_empty(raw.client_id)
        .ok_or_else(|| ConfigError::new("oidc.client_id", "is required"))?;
    let client_secret = read_secret(
        "oidc.client_secret",
        &raw.client_secret,
        "oidc.client_secret_file",
        &raw.client_secret_file,
    )?
    .ok_or_else(|| {
        ConfigError::new(
            "oidc.client_secret",
            "is required (or set oidc.client_secret_file)",
        )
    })?;
    let redirect_url = match non_empty(raw.redirect_url) {
        None => None,
        Some(s) => Some(
            Url::parse(&s)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .ok_or_else(|| {
                    ConfigError::new(
                        "oidc.redirect_url",
                        format!("expected an absolute http(s) URL, got {s:?}"),
                    )
                })?,
        ),
    };
    if !raw.scopes.iter().any(|s| s == "openid") {
        return Err(ConfigError::new("oidc.scopes", "must include \"openid\""));
    }
    for (key, v) in [
        ("oidc.user_claim", &raw.user_claim),
        ("oidc.email_claim", &raw.email_claim),
        ("oidc.groups_claim", &raw.groups_claim),
    ] {
        if v.trim().is_empty() {
            return Err(ConfigError::new(key, "must name a claim"));
        }
    }
    const RESERVED: &[&str] = &[
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    ];
    if let Some(k) = raw
        .extra_auth_params
        .keys()
        .find(|k| RESERVED.contains(&k.as_str()))
    {
        return Err(ConfigError::new(
            "oidc.extra_auth_params",
            format!("{k:?} is set by portcullis itself and cannot be overridden"),
        ));
    }
    Ok(OidcConfig {
        issuer_url,
        client_id,
        client_secret: Secret::new(client_secret),
        redirect_url,
        scopes: raw.scopes,
        user_claim: raw.user_claim.trim().to_string(),
        email_claim: raw.email_claim.trim().to_string(),
        groups_claim: raw.groups_claim.trim().to_string(),
        extra_auth_params: raw.extra_auth_params.into_iter().collect(),
        http_timeout: parse_duration("oidc.http_timeout", &raw.http_timeout)?,
        allow_unverified_email: raw.allow_unverified_email,
    })
}

fn validate_cookie(raw: RawCookie) -> Result<CookieConfig, ConfigError> {
    const HOW: &str = "generate one with: openssl rand -base64 32";
    let name = raw.name.trim().to_string();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(ConfigError::new(
            "cookie.name",
            format!(
                "use 1-64 letters, digits, '_', '-' or '.', got {:?}",
                raw.name
            ),
        ));
    }
    let secret = read_secret(
        "cookie.secret",
        &raw.secret,
        "cookie.secret_file",
        &raw.secret_file,
    )?
    .ok_or_else(|| ConfigError::new("cookie.secret", format!("is required; {HOW}")))?;
    let key = CookieKey::from_base64(&secret)
        .map_err(|e| ConfigError::new("cookie.secret", e.to_string()))?;
    let previous_keys = raw
        .previous_secrets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            CookieKey::from_base64(s).map_err(|e| {
                ConfigError::new(&format!("cookie.previous_secrets[{i}]"), e.to_string())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let expire = parse_duration("cookie.expire", &raw.expire)?;
    if expire.as_secs() < 60 {
        return Err(ConfigError::new("cookie.expire", "must be at least 1m"));
    }
    let csrf_expire = parse_duration("cookie.csrf_expire", &raw.csrf_expire)?;
    if csrf_expire.as_secs() < 10 {
        return Err(ConfigError::new(
            "cookie.csrf_expire",
            "must be at least 10s",
        ));
    }
    if !(1..=20).contains(&raw.max_pending_logins) {
        return Err(ConfigError::new(
            "cookie.max_pending_logins",
            "must be between 1 and 20",
        ));
    }
    let same_site = match raw.same_site.trim().to_ascii_lowercase().as_str() {
        "lax" | "" => cookie::SameSite::Lax,
        "strict" => cookie::SameSite::Strict,
        "none" => cookie::SameSite::None,
        other => {
            return Err(ConfigError::new(
                "cookie.same_site",
                format!("expected lax, strict or none, got {other:?}"),
            ))
        }
    };
    if same_site == cookie::SameSite::None && !raw.secure {
        return Err(ConfigError::new(
            "cookie.same_site",
            "\"none\" requires cookie.secure = true (browsers drop such cookies otherwise)",
        ));
    }
    let path = raw.path.trim().to_string();
    if !path.starts_with('/') || path.contains([';', ',', ' ']) {
        return Err(ConfigError::new(
            "cookie.path",
            format!("must start with \"/\", got {:?}", raw.path),
        ));
    }
    let refresh = parse_duration("cookie.refresh", &raw.refresh)?;
    if refresh > expire {
        return Err(ConfigError::new(
            "cookie.refresh",
            "must not be longer than cookie.expire",
        ));
    }
    let refresh_interval = parse_duration("cookie.refresh_interval", &raw.refresh_interval)?;
    if !refresh_interval.is_zero() && refresh_interval.as_secs() < 10 {
        return Err(ConfigError::new(
            "cookie.refresh_interval",
            "must be 0s (off) or at least 10s",
        ));
    }
    let domain = non_empty(raw.domain);
    if let Some(d) = &domain {
        if d.contains([';', ',', ' ', '/', ':']) {
            return Err(ConfigError::new(
                "cookie.domain",
                format!("expected a domain such as .example.com, got {d:?}"),
            ));
        }
    }
    Ok(CookieConfig {
        name,
        key,
        previous_keys,
        expire,
        csrf_expire,
        max_pending_logins: raw.max_pending_logins,
        domain,
        path,
        secure: raw.secure,
        same_site,
        refresh,
        refresh_interval: (!refresh_interval.is_zero()).then_some(refresh_interval),
        store_refresh_token: raw.store_refresh_token,
        keep_after_token_expiry: raw.keep_after_token_expiry,
    })
}

fn validate_authz(raw: RawAuthz) -> Result<AuthzConfig, ConfigError> {
    let mut email_domains = Vec::new();
    for d in raw.email_domains {
        let d = d.trim().to_ascii_lowercase();
        if d.is_empty() || d.contains(['@', ' ', '/']) {
            return Err(ConfigError::new(
                "authz.email_domains",
                format!("expected \"*\" or a domain such as example.com, got {d:?}"),
            ));
        }
        email_domains.push(d);
    }
    if email_domains.is_empty() {
        return Err(ConfigError::new(
            "authz.email_domains",
            "must not be empty (use [\"*\"] to allow every domain)",
        ));
    }
    let redirect_domains = raw
        .redirect_domains
        .iter()
        .map(|d| {
            AllowedDomain::parse(d)
                .map_err(|e| ConfigError::new("authz.redirect_domains", e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rules = crate::authz::rules::compile(&raw.rules).map_err(|e| {
        ConfigError::new(&format!("authz.rules[{}].{}", e.index, e.field), e.message)
    })?;
    Ok(AuthzConfig {
        rules,
        email_domains,
        allowed_groups: raw
            .allowed_groups
            .into_iter()
            .map(|g| g.trim().to_string())
            .filter(|g| !g.is_empty())
            .collect(),
        redirect_domains,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzz/fuzz_targets/config.rs: figment's value parser panicked on
    /// `--set key="ab﹃x\\n"` (a backslash escape after a non-ASCII character).
    #[test]
    fn a_set_value_with_an_escape_after_non_ascii_does_not_panic() {
        let sources = Sources {
            sets: vec!["pages.footer=\"ab﹃x\\n\"".into()],
            ..Sources::default()
        };
        let raw = Config::load_raw(&sources, Figment::new()).expect("taken as a string");
        assert_eq!(raw.pages.footer, "\"ab﹃x\\n\"");
        // The same escape in ASCII still goes through figment's parser.
        let sources = Sources {
            sets: vec!["pages.footer=\"ab\\tx\"".into()],
            ..Sources::default()
        };
        let raw = Config::load_raw(&sources, Figment::new()).expect("parsed");
        assert_eq!(raw.pages.footer, "ab\tx");
    }

    /// Found by fuzz/fuzz_targets/config.rs: `"" = 2` gave "invalid configuration: : unknown
    /// field", naming no key.
    #[test]
    fn an_empty_key_is_named_in_the_error() {
        use figment::providers::{Format, Toml};
        for doc in ["\"\" = 2", "[server]\n\"\" = 1"] {
            let err = Config::load_raw(&Sources::default(), Figment::from(Toml::string(doc)))
                .expect_err(doc);
            assert!(
                !err.key.is_empty() && err.key.contains("\"\""),
                "{doc}: {err}"
            );
            assert!(err.message.contains("unknown field"), "{doc}: {err}");
        }
    }

    const SECRET: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn sources(sets: &[&str]) -> Sources {
        Sources {
            file: None,
            oauth2_proxy_file: None,
            sets: sets.iter().map(|s| s.to_string()).collect(),
            use_env: false,
        }
    }

    fn minimal() -> Vec<&'static str> {
        vec![
            "oidc.issuer_url=https://idp.example.com",
            "oidc.client_id=app",
            "oidc.client_secret=s3cret",
            "cookie.secret=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ]
    }

    fn load(extra: &[&str]) -> Result<Config, ConfigError> {
        let mut s = minimal();
        s.extend_from_slice(extra);
        Config::load(&sources(&s))
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let c = load(&[]).expect("valid");
        assert_eq!(c.server.http_address.to_string(), "0.0.0.0:4180");
        assert_eq!(c.server.admin_address.to_string(), "0.0.0.0:4182");
        assert_eq!(c.server.grpc_address.to_string(), "0.0.0.0:4181");
        assert_eq!(c.server.grpc_max_message_bytes, 16 * 1024 * 1024);
        assert_eq!(c.server.proxy_prefix, "/oauth2");
        assert_eq!(c.server.path_prefix, "");
        assert_eq!(c.oidc.scopes, vec!["openid", "email", "profile"]);
        assert_eq!(c.cookie.name, "_portcullis");
        assert_eq!(c.cookie.expire, Duration::from_secs(168 * 3600));
        assert!(c.cookie.secure);
        assert_eq!(c.cookie.same_site, cookie::SameSite::Lax);
        assert_eq!(c.authz.email_domains, vec!["*"]);
        assert!(c.headers.set_xauthrequest);
        assert!(!c.headers.pass_access_token);
    }

    #[test]
    fn example_file_is_complete_and_valid_once_required_keys_are_set() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/portcullis.example.toml");
        let s = Sources {
            file: Some(path),
            oauth2_proxy_file: None,
            sets: minimal().iter().map(|s| s.to_string()).collect(),
            use_env: false,
        };
        let c = Config::load(&s).expect("example config loads");
        assert_eq!(c.server.proxy_prefix, "/oauth2");
    }

    #[test]
    fn every_bad_key_is_named() {
        let cases: &[(&str, &str)] = &[
            ("server.http_address=nope", "server.http_address"),
            ("server.grpc_address=nope", "server.grpc_address"),
            (
                "server.grpc_max_message_bytes=1024",
                "server.grpc_max_message_bytes",
            ),
            (
                "server.grpc_max_message_bytes=many",
                "server.grpc_max_message_bytes",
            ),
            ("server.proxy_prefix=oauth2", "server.proxy_prefix"),
            ("oidc.issuer_url=ftp://x", "oidc.issuer_url"),
            ("oidc.issuer_url=", "oidc.issuer_url"),
            ("oidc.client_id=", "oidc.client_id"),
            ("oidc.client_secret=", "oidc.client_secret"),
            ("oidc.scopes=email", "oidc.scopes"),
            ("oidc.redirect_url=/callback", "oidc.redirect_url"),
            ("oidc.http_timeout=soon", "oidc.http_timeout"),
            ("cookie.secret=c2hvcnQ=", "cookie.secret"),
            ("cookie.secret=%%%not-base64", "cookie.secret"),
            ("cookie.expire=forever", "cookie.expire"),
            ("cookie.refresh=soon", "cookie.refresh"),
            ("cookie.refresh=200h", "cookie.refresh"),
            ("cookie.refresh_interval=5s", "cookie.refresh_interval"),
            ("cookie.same_site=sometimes", "cookie.same_site"),
            ("cookie.name=bad name", "cookie.name"),
            ("cookie.max_pending_logins=0", "cookie.max_pending_logins"),
            ("authz.redirect_domains=http://x", "authz.redirect_domains"),
            ("authz.email_domains=a@b", "authz.email_domains"),
            ("log.format=xml", "log.format"),
            ("pages.accent_color=blue", "pages.accent_color"),
            ("pages.accent_color=#12345", "pages.accent_color"),
            ("pages.login_mode=popup", "pages.login_mode"),
            ("pages.logo=http://cdn.example.com/logo.png", "pages.logo"),
            ("pages.logo=/logo.png", "pages.logo"),
            ("pages.logo=data:text/html,<script>x</script>", "pages.logo"),
            ("pages.logo=javascript:alert(1)", "pages.logo"),
            (
                "pages.logo=https://user:pw@cdn.example.com/l.png",
                "pages.logo",
            ),
            ("server.nonsense=1", "server"),
            ("nonsense.key=1", "nonsense"),
        ];
        for (set, key) in cases {
            let err = load(&[set]).expect_err(set);
            assert!(
                err.key.starts_with(key) || err.message.contains(key),
                "{set}: expected key {key}, got {err}"
            );
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn pages_branding_is_validated_into_types() {
        let c = load(&[]).expect("defaults");
        assert_eq!(c.pages.login_mode, LoginMode::Redirect);
        assert_eq!(c.pages.accent_color.hex(), crate::theme::DEFAULT_ACCENT);
        assert_eq!(c.pages.logo, None);
        let c = load(&[
            "pages.login_mode=page",
            "pages.accent_color=#FC0",
            "pages.title=ACME Tools",
            "pages.logo=https://cdn.example.com:8443/a/logo.svg",
        ])
        .expect("valid");
        assert_eq!(c.pages.login_mode, LoginMode::Page);
        assert_eq!(c.pages.accent_color.hex(), "#ffcc00");
        assert_eq!(c.pages.title, "ACME Tools");
        let logo = c.pages.logo.expect("logo");
        assert_eq!(logo.origin.as_deref(), Some("https://cdn.example.com:8443"));
        let c = load(&["pages.logo=data:image/png;base64,iVBORw0KGgo="]).expect("data uri");
        assert_eq!(c.pages.logo.expect("logo").origin, None);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load(&["server.nonsense=1"]).expect_err("unknown");
        assert!(err.to_string().contains("nonsense"), "{err}");
    }

    #[test]
    fn secret_is_redacted_everywhere() {
        let c = load(&[]).expect("valid");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(!dbg.contains(SECRET), "{dbg}");
    }

    #[test]
    fn secrets_from_files() {
        let dir = std::env::temp_dir().join(format!("portcullis-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let f = dir.join("secret");
        std::fs::write(&f, "from-file\n").expect("write");
        let set = format!("oidc.client_secret_file={}", f.display());
        let s = Sources {
            file: None,
            oauth2_proxy_file: None,
            sets: vec![
                "oidc.issuer_url=https://idp.example.com".into(),
                "oidc.client_id=app".into(),
                format!("cookie.secret={SECRET}"),
                set.clone(),
            ],
            use_env: false,
        };
        let c = Config::load(&s).expect("valid");
        assert_eq!(c.oidc.client_secret.expose(), "from-file");
        let err = load(&[&set]).expect_err("both");
        assert_eq!(err.key, "oidc.client_secret");
        let err = load(&["cookie.secret_file=/nonexistent/x"]).expect_err("missing");
        assert_eq!(err.key, "cookie.secret");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn lists_accept_comma_strings_and_numbers_become_strings() {
        let c = load(&[
            "authz.allowed_groups=admins, devs",
            "oidc.scopes=openid email groups",
            "oidc.client_id=12345",
        ])
        .expect("valid");
        assert_eq!(c.authz.allowed_groups, vec!["admins", "devs"]);
        assert_eq!(c.oidc.scopes, vec!["openid", "email", "groups"]);
        assert_eq!(c.oidc.client_id, "12345");
    }

    #[test]
    fn yaml_files_load() {
        let dir = std::env::temp_dir().join(format!("portcullis-yaml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let f = dir.join("c.yaml");
        std::fs::write(
            &f,
            format!(
                "oidc:\n  issuer_url: https://idp.example.com\n  client_id: app\n  client_secret: x\ncookie:\n  secret: {SECRET}\n  secure: false\n"
            ),
        )
        .expect("write");
        let c = Config::load(&Sources {
            file: Some(f),
            oauth2_proxy_file: None,
            sets: vec![],
            use_env: false,
        })
        .expect("valid");
        assert!(!c.cookie.secure);
        std::fs::remove_dir_all(dir).ok();
    }

    /// Every key of the configuration struct, as `section.key` (or `section.sub.key` for a
    /// nested table such as `session.redis`).
    fn all_keys() -> Vec<String> {
        fn walk(prefix: &str, v: &serde_json::Value, keys: &mut Vec<String>) {
            for (k, v) in v.as_object().expect("object") {
                let full = format!("{prefix}.{k}");
                match v.as_object() {
                    Some(o) if !o.is_empty() => walk(&full, v, keys),
                    _ => keys.push(full),
                }
            }
        }
        let v = serde_json::to_value(RawConfig::default()).expect("serializes");
        let mut keys = Vec::new();
        for (section, fields) in v.as_object().expect("object") {
            walk(section, fields, &mut keys);
        }
        keys
    }

    #[test]
    fn docs_list_every_key() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let docs = std::fs::read_to_string(root.join("docs/configuration.md")).expect("docs");
        let example =
            std::fs::read_to_string(root.join("config/portcullis.example.toml")).expect("example");
        let keys = all_keys();
        assert!(keys.len() > 30, "{keys:?}");
        let mut missing = Vec::new();
        for full in &keys {
            let (section, key) = full.rsplit_once('.').expect("dotted");
            if !docs.contains(&format!("| `{full}` |")) {
                missing.push(format!("docs/configuration.md lacks {full}"));
            }
            let env = format!(
                "`PORTCULLIS_{}__{}`",
                section.to_uppercase().replace('.', "__"),
                key.to_uppercase()
            );
            if !docs.contains(&env) {
                missing.push(format!("docs/configuration.md lacks {env}"));
            }
            let body = example
                .split(&format!("[{section}]\n"))
                .nth(1)
                .map(|rest| rest.split("\n[").next().unwrap_or(rest))
                .unwrap_or("");
            let listed = body.lines().any(|l| {
                let l = l.trim_start_matches("# ");
                l.starts_with(&format!("{key} = "))
            });
            if !listed {
                missing.push(format!("config/portcullis.example.toml lacks {full}"));
            }
        }
        // And nothing documented that the struct does not have.
        for line in docs
            .lines()
            .filter(|l| l.starts_with("| `") && l.contains("` | `PORTCULLIS_"))
        {
            let documented = line
                .trim_start_matches("| `")
                .split('`')
                .next()
                .unwrap_or("");
            if !keys.iter().any(|k| k == documented) {
                missing.push(format!(
                    "docs/configuration.md documents unknown key {documented}"
                ));
            }
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    #[test]
    fn trusted_proxies_and_forward_keys() {
        let c = load_toml(
            "[server]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"fd00::/8\"]\n[forward]\nauth_status = 200\ncatch_all = true\n",
        )
        .expect("valid");
        let nets: Vec<String> = c
            .server
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]);
        assert_eq!(c.forward.auth_status, http::StatusCode::OK);
        assert!(c.forward.catch_all);
        let d = load_toml("").expect("defaults");
        assert!(
            d.server.trusted_proxies.is_empty(),
            "nobody is trusted by default"
        );
        assert_eq!(d.forward.auth_status, http::StatusCode::ACCEPTED);
        assert!(!d.forward.catch_all);
        assert!(d.warnings.is_empty());
        let w = load_toml("[forward]\ncatch_all = true\n").expect("valid");
        assert!(
            w.warnings
                .iter()
                .any(|w| w.contains("server.trusted_proxies")),
            "{:?}",
            w.warnings
        );
        for (toml, key) in [
            (
                "[server]\ntrusted_proxies = [\"10.1.2.3/8\"]\n",
                "server.trusted_proxies",
            ),
            (
                "[server]\ntrusted_proxies = [\"localhost\"]\n",
                "server.trusted_proxies",
            ),
            (
                "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
                "server.trusted_proxies",
            ),
            ("[forward]\nauth_status = 204\n", "forward.auth_status"),
        ] {
            assert_eq!(load_toml(toml).expect_err(toml).key, key, "{toml}");
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load(&Sources {
            file: Some("/nonexistent/portcullis.toml".into()),
            oauth2_proxy_file: None,
            sets: vec![],
            use_env: false,
        })
        .expect_err("missing");
        assert_eq!(err.key, "--config");
    }

    fn load_toml(toml: &str) -> Result<Config, ConfigError> {
        let raw = Config::load_raw(
            &sources(&minimal()),
            Figment::new().merge(Toml::string(toml)),
        )?;
        Config::validate(raw)
    }

    #[test]
    fn bearer_defaults_and_the_login_issuer() {
        let c = load(&[]).expect("valid");
        assert!(!c.bearer.enabled);
        assert!(!c.bearer.fallback_to_cookie);
        assert_eq!(c.bearer.leeway, Duration::from_secs(30));
        assert_eq!(c.bearer.refetch_interval, Duration::from_secs(30));
        assert_eq!(c.bearer.cache_size, 10_000);
        assert_eq!(c.bearer.issuers.len(), 1, "the login issuer");
        assert_eq!(c.bearer.issuers[0].issuer, "https://idp.example.com");
        assert_eq!(c.bearer.issuers[0].audiences, vec!["app"]);
        let c = load(&["bearer.accept_login_issuer=false"]).expect("valid");
        assert!(c.bearer.issuers.is_empty());
        let c = load_toml(
            "[bearer]\nenabled = true\n[[bearer.issuers]]\nissuer = \"https://b.example\"\naudiences = \"x,y\"\nalgorithms = [\"ES256\"]\ngroups_claim = \"roles\"\n",
        )
        .expect("valid");
        let b = &c.bearer.issuers[0];
        assert_eq!(b.audiences, vec!["x", "y"]);
        assert_eq!(b.groups_claim, "roles");
        assert_eq!(b.user_claim, "sub");
        assert!(b.jwks_uri.is_none());
    }

    #[test]
    fn every_bad_bearer_key_is_named() {
        let issuer = |extra: &str| {
            format!("[[bearer.issuers]]\nissuer = \"https://b.example\"\naudiences = [\"x\"]\n{extra}\n")
        };
        let cases: Vec<(String, &str)> = vec![
            (
                "[[bearer.issuers]]\naudiences = [\"x\"]".into(),
                "bearer.issuers[0].issuer",
            ),
            (
                "[[bearer.issuers]]\nissuer = \"ftp://x\"\naudiences = [\"x\"]".into(),
                "bearer.issuers[0].issuer",
            ),
            (
                "[[bearer.issuers]]\nissuer = \"https://b.example\"".into(),
                "bearer.issuers[0].audiences",
            ),
            (issuer("jwks_uri = \"/jwks\""), "bearer.issuers[0].jwks_uri"),
            (
                issuer("algorithms = [\"none\"]"),
                "bearer.issuers[0].algorithms",
            ),
            (
                issuer("algorithms = [\"HS256\"]"),
                "bearer.issuers[0].algorithms",
            ),
            (
                issuer("groups_claim = \" \""),
                "bearer.issuers[0].groups_claim",
            ),
            (issuer("nonsense = 1"), "bearer.issuers"),
            (
                format!("{}{}", issuer(""), issuer("")),
                "bearer.issuers[1].issuer",
            ),
            ("[bearer]\nleeway = \"1h\"".into(), "bearer.leeway"),
            ("[bearer]\nleeway = \"soon\"".into(), "bearer.leeway"),
            (
                "[bearer]\nrefetch_interval = \"0s\"".into(),
                "bearer.refetch_interval",
            ),
            (
                "[bearer]\nrefresh_interval = \"1s\"".into(),
                "bearer.refresh_interval",
            ),
            ("[bearer]\ncache_size = 0".into(), "bearer.cache_size"),
            (
                "[bearer]\njwks_max_bytes = 10".into(),
                "bearer.jwks_max_bytes",
            ),
            (
                "[bearer]\nenabled = true\naccept_login_issuer = false".into(),
                "bearer.issuers",
            ),
        ];
        for (toml, key) in &cases {
            let err = load_toml(toml).expect_err(toml);
            assert!(
                err.key.starts_with(key) || err.message.contains(key),
                "{toml}: expected key {key}, got {err}"
            );
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
    }
}
