//! The OpenID Connect relying party, built on the `openidconnect` crate. Its generic parameters
//! are fixed here and nowhere else. Discovery runs in the background with retries so that an
//! IdP outage at start-up makes `/readyz` fail (and checks answer 503) instead of the process
//! exiting.

pub mod backchannel;
pub mod callback;
pub mod logout;
pub mod refresh;
pub mod single_flight;
pub mod start;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreClaimName, CoreClaimType, CoreClientAuthMethod,
    CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AdditionalProviderMetadata, ClientId, ClientSecret, EmptyExtraTokenFields,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, StandardErrorResponse,
    StandardTokenResponse,
};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::OidcConfig;
use crate::error::Error;
use crate::metrics::Metrics;

/// Claims beyond the standard ones (groups, custom user claims), kept as JSON values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExtraClaims(pub HashMap<String, serde_json::Value>);
impl AdditionalClaims for ExtraClaims {}

/// Discovery fields the `Core*` metadata type leaves out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraProviderMetadata {
    /// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 §2.1).
    pub end_session_endpoint: Option<Url>,
}
impl AdditionalProviderMetadata for ExtraProviderMetadata {}

pub type ProviderMetadata = openidconnect::ProviderMetadata<
    ExtraProviderMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

pub type IdTokenFields = openidconnect::IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
pub type TokenResponse = StandardTokenResponse<IdTokenFields, CoreTokenType>;
pub type IdToken = openidconnect::IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
pub type IdTokenClaims = openidconnect::IdTokenClaims<ExtraClaims, CoreGenderClaim>;
pub type UserInfoClaims = openidconnect::UserInfoClaims<ExtraClaims, CoreGenderClaim>;

pub type Client = openidconnect::Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A discovered provider: the client and the extra endpoints we use.
pub struct Provider {
    pub client: Client,
    pub end_session_endpoint: Option<Url>,
}

/// The relying party: configuration, HTTP client and the provider once discovered.
pub struct Oidc {
    pub cfg: OidcConfig,
    pub http: openidconnect::reqwest::Client,
    pub metrics: Arc<Metrics>,
    provider: RwLock<Option<Arc<Provider>>>,
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
}

/// Keys are re-fetched on an unknown signing key at most this often.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

impl Oidc {
    pub fn new(cfg: OidcConfig, metrics: Arc<Metrics>) -> Result<Self, Error> {
        let http = openidconnect::reqwest::Client::builder()
            // Following redirects from the IdP's endpoints would open an SSRF path.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(cfg.http_timeout)
            .build()
            .map_err(|e| Error::Internal(format!("building http client: {e}")))?;
        Ok(Self {
            cfg,
            http,
            metrics,
            provider: RwLock::new(None),
            last_refresh: tokio::sync::Mutex::new(None),
        })
    }

    /// The discovered provider, or 503 while discovery has not succeeded.
    pub fn provider(&self) -> Result<Arc<Provider>, Error> {
        self.provider
            .read()
            .map_err(|_| Error::Internal("provider lock poisoned".into()))?
            .clone()
            .ok_or_else(|| Error::ProviderNotReady("discovery has not completed".into()))
    }

    pub fn is_ready(&self) -> bool {
        self.provider.read().map(|p| p.is_some()).unwrap_or(false)
    }

    /// Fetch the discovery document and the JWKS, and install the provider.
    pub async fn discover(&self) -> Result<(), Error> {
        let issuer = IssuerUrl::new(self.cfg.issuer_url.clone())
            .map_err(|e| Error::ProviderNotReady(format!("issuer url: {e}")))?;
        let started = Instant::now();
        let discovered = ProviderMetadata::discover_async(issuer, &self.http).await;
        self.metrics.idp(
            "discovery",
            if discovered.is_ok() { "ok" } else { "error" },
            started.elapsed(),
        );
        let metadata = discovered
            .map_err(|e| Error::ProviderNotReady(format!("discovery failed: {}", chain(&e))))?;
        let end_session_endpoint = metadata.additional_metadata().end_session_endpoint.clone();
        let client = Client::from_provider_metadata(
            metadata,
            ClientId::new(self.cfg.client_id.clone()),
            Some(ClientSecret::new(
                self.cfg.client_secret.expose().to_string(),
            )),
        );
        let provider = Arc::new(Provider {
            client,
            end_session_endpoint,
        });
        *self
            .provider
            .write()
            .map_err(|_| Error::Internal("provider lock poisoned".into()))? = Some(provider);
        Ok(())
    }

    /// Re-run discovery (new signing keys), at most once per `MIN_REFRESH_INTERVAL`. Returns
    /// whether a refresh happened.
    pub async fn refresh_keys(&self) -> bool {
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        match self.discover().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "refreshing provider keys failed");
                false
            }
        }
    }

    /// Retry discovery until it succeeds, backing off up to 30 s between attempts.
    pub async fn discover_until_ready(self: Arc<Self>) {
        let mut delay = Duration::from_millis(250);
        loop {
            match self.discover().await {
                Ok(()) => {
                    tracing::info!(issuer = %self.cfg.issuer_url, "provider discovered");
                    return;
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.cfg.issuer_url, error = %e, retry_in_ms = delay.as_millis() as u64, "provider discovery failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// An error and its sources on one line (no secrets: these are transport and parse errors).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Claims from the ID token and, when present, the userinfo response — looked up by name.
pub struct Claims<'a> {
    pub id_token: &'a IdTokenClaims,
    pub userinfo: Option<&'a UserInfoClaims>,
}

impl Claims<'_> {
    /// A claim as text: standard claims by their names, anything else from the extra claims.
    /// Userinfo wins over the ID token where both have a value.
    pub fn text(&self, name: &str) -> Option<String> {
        if let Some(u) = self.userinfo {
            if let Some(v) = standard_text(name, u.standard_claims())
                .or_else(|| extra_text(&u.additional_claims().0, name))
            {
                return Some(v);
            }
        }
        let t = self.id_token;
        let standard = match name {
            "sub" => Some(t.subject().to_string()),
            "email" => t.email().map(|e| e.to_string()),
            "preferred_username" => t.preferred_username().map(|u| u.to_string()),
            "name" => t.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
            _ => None,
        };
        standard.or_else(|| extra_text(&t.additional_claims().0, name))
    }

    /// A claim as JSON (for `require` rules): userinfo first, then the ID token.
    pub fn json(&self, name: &str) -> Option<serde_json::Value> {
        if let Some(v) = self
            .userinfo
            .and_then(|u| u.additional_claims().0.get(name).cloned())
            .or_else(|| self.id_token.additional_claims().0.get(name).cloned())
        {
            return Some(v);
        }
        self.text(name).map(serde_json::Value::String)
    }

    /// The `email_verified` claim, userinfo first (some IdPs send it as a string).
    pub fn email_verified(&self) -> Option<bool> {
        let from_extra = |m: &HashMap<String, serde_json::Value>| match m.get("email_verified") {
            Some(serde_json::Value::Bool(b)) => Some(*b),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        self.userinfo
            .and_then(|u| {
                u.standard_claims()
                    .email_verified()
                    .or_else(|| from_extra(&u.additional_claims().0))
            })
            .or_else(|| self.id_token.email_verified())
            .or_else(|| from_extra(&self.id_token.additional_claims().0))
    }

    /// A claim as a list (arrays of strings, or one string).
    pub fn list(&self, name: &str) -> Vec<String> {
        let from = |m: &HashMap<String, serde_json::Value>| -> Option<Vec<String>> {
            match m.get(name)? {
                serde_json::Value::Array(a) => Some(
                    a.iter()
                        .filter_map(|v| match v {
                            serde_json::Value::String(s) => Some(s.clone()),
                            serde_json::Value::Number(n) => Some(n.to_string()),
                            _ => None,
                        })
                        .collect(),
                ),
                serde_json::Value::String(s) => Some(vec![s.clone()]),
                _ => None,
            }
        };
        self.userinfo
            .and_then(|u| from(&u.additional_claims().0))
            .or_else(|| from(&self.id_token.additional_claims().0))
            .unwrap_or_default()
    }
}

fn standard_text(name: &str, c: &openidconnect::StandardClaims<CoreGenderClaim>) -> Option<String> {
    match name {
        "sub" => Some(c.subject().to_string()),
        "email" => c.email().map(|e| e.to_string()),
        "preferred_username" => c.preferred_username().map(|u| u.to_string()),
        "name" => c.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
        _ => None,
    }
}

fn extra_text(m: &HashMap<String, serde_json::Value>, name: &str) -> Option<String> {
    match m.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
