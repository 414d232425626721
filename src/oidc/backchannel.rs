//! OpenID Connect Back-Channel Logout 1.0: the IdP POSTs a `logout_token` (a JWT it signs) to
//! `<proxy_prefix>/backchannel_logout`; we verify it and end the sessions it names.
//!
//! Checks (spec §2.6): signature with the issuer's JWKS (`token::jwks`, the bearer verifier's
//! key handling), `iss` exactly `oidc.issuer_url`, `aud` containing `oidc.client_id`, `iat`
//! present and recent, `exp` (when present) not passed, the `events` claim holding the
//! back-channel logout event, no `nonce`, and `sid` or `sub` present. A `jti` is accepted once
//! (replay cache in Redis). Answers (§2.8): 200 on success, 400 with a JSON error otherwise,
//! both `Cache-Control: no-store`; 503 when Redis fails (the IdP may retry).
//!
//! Sessions are found by `sid` when the token carries one, else by `sub`; the session store
//! indexes both at login. Without Redis there is nothing to revoke server-side: the route is
//! not offered (404).

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::app::App;
use crate::authz::decision::{Body, Reply};
use crate::config::BearerIssuer;
use crate::error::Error;
use crate::session::Target;
use crate::token::bearer::{self, BearerError};
use crate::token::jwks::{Fetcher, IssuerKeys};
use crate::token::BearerStats;

/// The event member a logout token's `events` claim must hold.
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How old (by `iat`) a logout token may be; the replay cache remembers a `jti` longer.
const MAX_AGE: i64 = 300;
/// Clock skew allowed on `iat` and `exp`.
const LEEWAY: i64 = 60;

/// The login issuer's keys, for logout tokens.
pub struct LogoutKeys {
    keys: IssuerKeys,
    fetcher: Fetcher,
}

impl LogoutKeys {
    pub fn new(issuer: &str, client_id: &str, http_timeout: Duration) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(http_timeout)
            .connect_timeout(http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Internal(format!("http client: {e}")))?;
        Ok(Self {
            keys: IssuerKeys::new(BearerIssuer {
                issuer: issuer.to_string(),
                jwks_uri: None,
                audiences: vec![client_id.to_string()],
                algorithms: Vec::new(),
                user_claim: "sub".into(),
                email_claim: "email".into(),
                groups_claim: "groups".into(),
            }),
            fetcher: Fetcher {
                http,
                max_bytes: 512 * 1024,
                refetch_interval: Duration::from_secs(30),
                refresh_interval: Duration::from_secs(600),
                stats: Arc::new(BearerStats::default()),
            },
        })
    }

    /// Verify the signature, `iss` and `aud`, fetching keys on first use and on an unknown
    /// `kid` (rate-limited). `Err` when the keys cannot be loaded at all.
    async fn verify(&self, token: &str) -> Result<Result<Map<String, Value>, BearerError>, Error> {
        if !self.keys.is_loaded() {
            if let Err(e) = self.keys.refresh(&self.fetcher).await {
                return Err(Error::ProviderNotReady(format!(
                    "issuer keys for back-channel logout: {e}"
                )));
            }
        }
        let seen = self.keys.generation();
        let required = ["iss", "aud", "iat"];
        let mut r =
            bearer::verify_signature(token, &self.keys.config, &self.keys.snapshot(), &required);
        if r == Err(BearerError::UnknownKey)
            && self.keys.refetch_for_unknown_kid(seen, &self.fetcher).await
        {
            r = bearer::verify_signature(
                token,
                &self.keys.config,
                &self.keys.snapshot(),
                &required,
            );
        }
        Ok(r)
    }
}

/// Who a verified logout token logs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutClaims {
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub jti: String,
    pub iat: i64,
}

/// The content checks of §2.6 on claims whose signature, `iss` and `aud` passed. Pure.
pub fn check_claims(claims: &Map<String, Value>, now: i64) -> Result<LogoutClaims, &'static str> {
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or("iat is missing")?;
    if iat > now + LEEWAY {
        return Err("iat is in the future");
    }
    if iat < now - MAX_AGE {
        return Err("logout token is too old");
    }
    if let Some(exp) = claims.get("exp") {
        let exp = exp.as_i64().ok_or("exp is not a number")?;
        if exp + LEEWAY <= now {
            return Err("logout token expired");
        }
    }
    let event = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|e| e.get(EVENT))
        .ok_or("events claim lacks the back-channel logout event")?;
    if !event.is_object() {
        return Err("the back-channel logout event must be a JSON object");
    }
    if claims.contains_key("nonce") {
        return Err("a logout token must not contain a nonce");
    }
    let text = |k: &str| -> Result<Option<String>, &'static str> {
        match claims.get(k) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err("sub and sid must be non-empty strings"),
        }
    };
    let sub = text("sub")?;
    let sid = text("sid")?;
    if sub.is_none() && sid.is_none() {
        return Err("logout token has neither sid nor sub");
    }
    let jti = text("jti")
        .map_err(|_| "jti must be a non-empty string")?
        .ok_or("jti is missing")?;
    Ok(LogoutClaims { sub, sid, jti, iat })
}

/// The answer to a logout request: 200, or an error status with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub error: Option<&'static str>,
}

impl Answer {
    /// The JSON error body (§2.8), or an empty body for a 200.
    pub fn body(&self) -> Body {
        match self.error {
            Some(why) => Body::json(&json!({
                "error": "invalid_request",
                "error_description": why,
            })),
            None => Body::text(""),
        }
    }

    /// As a reply to a check (the route reached through a gateway). Never a 200 there: without
    /// the form body there is no token, so this is always an error.
    pub fn into_reply(self) -> Reply {
        let body = self.body();
        Reply::new(self.status, body)
    }
}

/// Answer one back-channel logout request (`logout_token` from the form body).
pub async fn logout(app: &App, logout_token: Option<&str>) -> Result<Answer, Error> {
    let Some(keys) = app.logout_keys.as_ref() else {
        return Ok(answer(
            StatusCode::NOT_FOUND,
            Some("back-channel logout needs a Redis session store or deny-list (session.redis.*)"),
        ));
    };
    let Some(token) = logout_token.filter(|t| !t.is_empty()) else {
        return Ok(bad("logout_token is missing"));
    };
    if token.len() > bearer::MAX_TOKEN_BYTES {
        return Ok(bad("logout_token is too large"));
    }
    // §2.6 step 1 (a JWE would have to be decrypted first): we accept signed tokens only.
    let claims = match keys.verify(token).await? {
        Ok(c) => c,
        Err(e) => return Ok(bad(e.as_str())),
    };
    let now = app.clock.now();
    let c = match check_claims(&claims, now) {
        Ok(c) => c,
        Err(why) => return Ok(bad(why)),
    };
    let ttl = Duration::from_secs(u64::try_from(MAX_AGE + 2 * LEEWAY).unwrap_or(600));
    if !app
        .sessions
        .first_use(&app.config.oidc.issuer_url, &c.jti, ttl)
        .await?
    {
        return Ok(bad("logout token was already used"));
    }
    let target = match (&c.sid, &c.sub) {
        (Some(sid), _) => Target::IdpSession(sid.clone()),
        (None, Some(sub)) => Target::Subject(sub.clone()),
        (None, None) => return Ok(bad("logout token has neither sid nor sub")),
    };
    let revoked = app.sessions.revoke(&target).await?;
    tracing::info!(
        by = if c.sid.is_some() { "sid" } else { "sub" },
        revoked = ?revoked,
        "back-channel logout"
    );
    Ok(answer(StatusCode::OK, None))
}

fn bad(why: &'static str) -> Answer {
    tracing::info!(reason = why, "back-channel logout token refused");
    answer(StatusCode::BAD_REQUEST, Some(why))
}

fn answer(status: StatusCode, error: Option<&'static str>) -> Answer {
    Answer { status, error }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn claims(f: impl FnOnce(&mut Map<String, Value>)) -> Map<String, Value> {
        let mut m = json!({
            "iss": "https://idp",
            "aud": "app",
            "iat": NOW - 5,
            "exp": NOW + 120,
            "jti": "j1",
            "sid": "s1",
            "sub": "alice",
            "events": { EVENT: {} },
        })
        .as_object()
        .cloned()
        .expect("object");
        f(&mut m);
        m
    }

    #[test]
    fn a_valid_token_names_sid_and_sub() {
        let c = check_claims(&claims(|_| {}), NOW).expect("valid");
        assert_eq!(c.sid.as_deref(), Some("s1"));
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert_eq!(c.jti, "j1");
        let only_sub = check_claims(
            &claims(|m| {
                m.remove("sid");
            }),
            NOW,
        )
        .expect("sub only");
        assert!(only_sub.sid.is_none());
    }

    #[test]
    fn every_rule_refuses() {
        let cases: Vec<(Map<String, Value>, &str)> = vec![
            (
                claims(|m| {
                    m.remove("iat");
                }),
                "iat is missing",
            ),
            (
                claims(|m| {
                    m.insert("iat".into(), json!(NOW + 600));
                }),
                "iat is in the future",
            ),
            (
                claims(|m| {
                    m.insert("iat".into(), json!(NOW - 3600));
                }),
                "logout token is too old",
            ),
            (
                claims(|m| {
                    m.insert("exp".into(), json!(NOW - 120));
                }),
                "logout token expired",
            ),
            (
                claims(|m| {
                    m.remove("events");
                }),
                "events claim lacks the back-channel logout event",
            ),
            (
                claims(|m| {
                    m.insert("events".into(), json!({"http://other/event": {}}));
                }),
                "events claim lacks the back-channel logout event",
            ),
            (
                claims(|m| {
                    m.insert("events".into(), json!({ EVENT: "yes" }));
                }),
                "the back-channel logout event must be a JSON object",
            ),
            (
                claims(|m| {
                    m.insert("nonce".into(), json!("n"));
                }),
                "a logout token must not contain a nonce",
            ),
            (
                claims(|m| {
                    m.remove("sid");
                    m.remove("sub");
                }),
                "logout token has neither sid nor sub",
            ),
            (
                claims(|m| {
                    m.insert("sub".into(), json!(42));
                }),
                "sub and sid must be non-empty strings",
            ),
            (
                claims(|m| {
                    m.remove("jti");
                }),
                "jti is missing",
            ),
        ];
        for (c, want) in cases {
            assert_eq!(check_claims(&c, NOW), Err(want));
        }
    }
}
