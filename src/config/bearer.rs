//! `[bearer]`: JWT bearer tokens from API clients and other services (issue 4). Raw layer and
//! validation; every failure names its key, e.g. `bearer.issuers[1].audiences`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::{comma_list, non_empty, parse_duration, ConfigError};

/// Algorithms a bearer issuer may use. `none` and the HS* family are never accepted: these
/// tokens are verified with an issuer's public keys.
pub const ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// The validated `[bearer]` section.
#[derive(Debug, Clone)]
pub struct BearerConfig {
    pub enabled: bool,
    /// Accept the login provider's own tokens (`oidc.issuer_url`, audience `oidc.client_id`).
    pub accept_login_issuer: bool,
    /// An invalid bearer token falls through to the cookie session instead of a 401.
    pub fallback_to_cookie: bool,
    /// A bearer token that is not JWT-shaped (no `.`) is ignored instead of refused.
    pub ignore_opaque_tokens: bool,
    pub issuers: Vec<BearerIssuer>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// At most one JWKS refetch per issuer per this interval on an unknown `kid`.
    pub refetch_interval: Duration,
    /// Background refresh of every key set (a shorter `Cache-Control: max-age` wins).
    pub refresh_interval: Duration,
    /// How many verified tokens are remembered.
    pub cache_size: usize,
    /// Upper bound on a JWKS or discovery response.
    pub jwks_max_bytes: usize,
}

/// One trusted issuer of bearer tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerIssuer {
    /// Exactly as configured: `iss` must equal it character for character.
    pub issuer: String,
    /// `None`: discovered from `<issuer>/.well-known/openid-configuration`.
    pub jwks_uri: Option<Url>,
    pub audiences: Vec<String>,
    /// Empty: whatever each key allows (by its type and `alg`).
    pub algorithms: Vec<String>,
    pub user_claim: String,
    pub email_claim: String,
    pub groups_claim: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBearer {
    pub enabled: bool,
    pub accept_login_issuer: bool,
    pub fallback_to_cookie: bool,
    pub ignore_opaque_tokens: bool,
    pub issuers: Vec<RawBearerIssuer>,
    pub leeway: String,
    pub refetch_interval: String,
    pub refresh_interval: String,
    pub cache_size: usize,
    pub jwks_max_bytes: usize,
}

impl Default for RawBearer {
    fn default() -> Self {
        Self {
            enabled: false,
            accept_login_issuer: true,
            fallback_to_cookie: false,
            ignore_opaque_tokens: false,
            issuers: Vec::new(),
            leeway: "30s".into(),
            refetch_interval: "30s".into(),
            refresh_interval: "10m".into(),
            cache_size: 10_000,
            jwks_max_bytes: 512 * 1024,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBearerIssuer {
    pub issuer: String,
    pub jwks_uri: String,
    #[serde(deserialize_with = "comma_list")]
    pub audiences: Vec<String>,
    #[serde(deserialize_with = "comma_list")]
    pub algorithms: Vec<String>,
    pub user_claim: String,
    pub email_claim: String,
    pub groups_claim: String,
}

impl Default for RawBearerIssuer {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            jwks_uri: String::new(),
            audiences: Vec::new(),
            algorithms: Vec::new(),
            user_claim: "sub".into(),
            email_claim: "email".into(),
            groups_claim: "groups".into(),
        }
    }
}

fn http_url(s: &str) -> bool {
    Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// Validate `[bearer]`. `login` is the login provider's issuer, client id and claim names, used
/// when `accept_login_issuer` is on.
pub fn validate_bearer(
    raw: RawBearer,
    login: Option<BearerIssuer>,
) -> Result<BearerConfig, ConfigError> {
    let mut issuers = Vec::with_capacity(raw.issuers.len() + 1);
    for (i, r) in raw.issuers.into_iter().enumerate() {
        issuers.push(validate_issuer(i, r)?);
    }
    if let Some(login) = login.filter(|_| raw.accept_login_issuer) {
        if !issuers.iter().any(|i| i.issuer == login.issuer) {
            issuers.push(login);
        }
    }
    for (i, a) in issuers.iter().enumerate() {
        if issuers[..i].iter().any(|b| b.issuer == a.issuer) {
            return Err(ConfigError::new(
                &format!("bearer.issuers[{i}].issuer"),
                format!("{:?} is listed twice", a.issuer),
            ));
        }
    }
    if raw.enabled && issuers.is_empty() {
        return Err(ConfigError::new(
            "bearer.issuers",
            "bearer.enabled needs at least one issuer (or bearer.accept_login_issuer)",
        ));
    }
    let leeway = parse_duration("bearer.leeway", &raw.leeway)?;
    if leeway > Duration::from_secs(300) {
        return Err(ConfigError::new("bearer.leeway", "must be at most 5m"));
    }
    let refetch_interval = parse_duration("bearer.refetch_interval", &raw.refetch_interval)?;
    if refetch_interval < Duration::from_secs(1) {
        return Err(ConfigError::new(
            "bearer.refetch_interval",
            "must be at least 1s (it is what stops unknown-kid floods)",
        ));
    }
    let refresh_interval = parse_duration("bearer.refresh_interval", &raw.refresh_interval)?;
    if refresh_interval < Duration::from_secs(10) {
        return Err(ConfigError::new(
            "bearer.refresh_interval",
            "must be at least 10s",
        ));
    }
    if !(1..=1_000_000).contains(&raw.cache_size) {
        return Err(ConfigError::new(
            "bearer.cache_size",
            "must be between 1 and 1000000",
        ));
    }
    if !(1024..=16 * 1024 * 1024).contains(&raw.jwks_max_bytes) {
        return Err(ConfigError::new(
            "bearer.jwks_max_bytes",
            "must be between 1024 and 16777216",
        ));
    }
    Ok(BearerConfig {
        enabled: raw.enabled,
        accept_login_issuer: raw.accept_login_issuer,
        fallback_to_cookie: raw.fallback_to_cookie,
        ignore_opaque_tokens: raw.ignore_opaque_tokens,
        issuers,
        leeway,
        refetch_interval,
        refresh_interval,
        cache_size: raw.cache_size,
        jwks_max_bytes: raw.jwks_max_bytes,
    })
}

fn validate_issuer(i: usize, r: RawBearerIssuer) -> Result<BearerIssuer, ConfigError> {
    let key = |k: &str| format!("bearer.issuers[{i}].{k}");
    let issuer =
        non_empty(r.issuer).ok_or_else(|| ConfigError::new(&key("issuer"), "is required"))?;
    if !http_url(&issuer) {
        return Err(ConfigError::new(
            &key("issuer"),
            format!("expected an http(s) URL, got {issuer:?}"),
        ));
    }
    let jwks_uri = match non_empty(r.jwks_uri) {
        None => None,
        Some(s) => Some(
            Url::parse(&s)
                .ok()
                .filter(|u| http_url(u.as_str()))
                .ok_or_else(|| {
                    ConfigError::new(
                        &key("jwks_uri"),
                        format!("expected an http(s) URL, got {s:?}"),
                    )
                })?,
        ),
    };
    let audiences: Vec<String> = r
        .audiences
        .iter()
        .filter_map(|a| non_empty(a.clone()))
        .collect();
    if audiences.is_empty() {
        return Err(ConfigError::new(
            &key("audiences"),
            "at least one audience is required (the `aud` a token must carry)",
        ));
    }
    for a in &r.algorithms {
        if !ALGORITHMS.contains(&a.as_str()) {
            return Err(ConfigError::new(
                &key("algorithms"),
                format!(
                    "{a:?} is not accepted; use some of {}",
                    ALGORITHMS.join(", ")
                ),
            ));
        }
    }
    for (k, v) in [
        ("user_claim", &r.user_claim),
        ("email_claim", &r.email_claim),
        ("groups_claim", &r.groups_claim),
    ] {
        if v.trim().is_empty() {
            return Err(ConfigError::new(&key(k), "must name a claim"));
        }
    }
    Ok(BearerIssuer {
        issuer,
        jwks_uri,
        audiences,
        algorithms: r.algorithms,
        user_claim: r.user_claim.trim().to_string(),
        email_claim: r.email_claim.trim().to_string(),
        groups_claim: r.groups_claim.trim().to_string(),
    })
}
