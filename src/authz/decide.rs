//! The pure decision: no I/O, no clock; `now` and the facts come in as parameters.

use std::collections::BTreeMap;

use crate::authz::decision::{Decision, DenyReason};
use crate::authz::input::CheckInput;
use crate::authz::path;
use crate::authz::policy::Policy;
use crate::authz::rules::{self, Action};
use crate::redirect::{self, ReturnTo};
use crate::session::Session;
use crate::token::bearer::{BearerError, Verified};

/// What the request's `Authorization: Bearer` credential turned out to be.
#[derive(Debug, Clone)]
pub enum BearerFact {
    /// None sent, bearer support off, or an opaque token configured to be ignored.
    Absent,
    /// A JWT that passed verification.
    Verified(Verified),
    /// A credential that failed verification.
    Invalid(BearerError),
}

/// Who the request is, from a verified bearer token or a valid session.
struct Who<'a> {
    email: &'a str,
    groups: &'a [String],
    claims: &'a BTreeMap<String, serde_json::Value>,
}

static NO_CLAIMS: BTreeMap<String, serde_json::Value> = BTreeMap::new();

/// Decide one check from the request, the session found in it (already decrypted), the bearer
/// token's verification, the policy and the time. Order: gateway agreement, path canonical
/// form, an invalid bearer token (401, never a login redirect, unless the policy falls back to
/// the cookie), then the first matching rule (or the global rules) for whoever the request is —
/// a verified bearer token stands in for a session — then the check's query constraints.
pub fn decide(
    input: &CheckInput,
    session: Option<&Session>,
    bearer: &BearerFact,
    policy: &Policy,
    now: i64,
) -> Decision {
    if !input.path_prefix_ok {
        return Decision::Deny(DenyReason::PathPrefixMissing);
    }
    if let Some(reason) = input.unreadable {
        return Decision::Deny(reason);
    }
    let Ok(canonical) = path::canonical(&input.path) else {
        return Decision::Deny(DenyReason::AmbiguousPath);
    };
    if input.smuggled_identity_header().is_some() {
        return Decision::Deny(DenyReason::SmuggledHeader);
    }
    let session = session.filter(|s| s.is_valid_at(now));
    let who = match bearer {
        BearerFact::Verified(t) => Some(Who {
            email: &t.email,
            groups: &t.groups,
            claims: &NO_CLAIMS,
        }),
        BearerFact::Invalid(e) if !policy.bearer_fallback_to_cookie() => {
            return Decision::BearerInvalid(*e)
        }
        BearerFact::Invalid(_) | BearerFact::Absent => session.map(|s| Who {
            email: &s.email,
            groups: &s.groups,
            claims: &s.claims,
        }),
    };
    let rule = rules::first_match(&policy.rules, &input.host, &canonical, &input.method);
    let login = || Decision::Login {
        // The original target is relative; it still goes through the validator so that a
        // path such as `//evil.com` can never become a redirect elsewhere.
        return_to: redirect::validate(&input.path_and_query(), &[]).unwrap_or_else(ReturnTo::root),
        api: !input.login_redirect || rule.and_then(|r| r.api).unwrap_or_else(|| input.is_api()),
    };
    let decision = match rule.map(|r| (r.index, &r.action)) {
        Some((i, Action::Deny)) => Decision::Deny(DenyReason::RuleDeny(i)),
        Some((i, Action::Header { name, value })) => {
            if input.header(name.as_str()) == Some(value.as_str()) {
                if who.is_some() {
                    Decision::Allow
                } else {
                    Decision::AllowAnonymous
                }
            } else {
                Decision::Deny(DenyReason::RuleHeader(i))
            }
        }
        Some((_, Action::Public)) => {
            if who.is_some() {
                Decision::Allow
            } else {
                Decision::AllowAnonymous
            }
        }
        Some((_, Action::Authenticated)) => match who {
            Some(_) => Decision::Allow,
            None => login(),
        },
        Some((i, Action::Require(req))) => match &who {
            Some(w) if req.met_by(w.email, w.groups, w.claims, Policy::email_in) => Decision::Allow,
            Some(_) => Decision::Deny(DenyReason::RuleRequire(i)),
            None => login(),
        },
        None => match &who {
            Some(w) => match policy.authorize(w.email, w.groups) {
                Ok(()) => Decision::Allow,
                Err(reason) => Decision::Deny(reason),
            },
            None => login(),
        },
    };
    match (decision, &who) {
        (Decision::Allow, Some(w)) if !query_constraints_met(input, w) => {
            Decision::Deny(DenyReason::QueryConstraint)
        }
        (d, _) => d,
    }
}

/// oauth2-proxy's `/oauth2/auth?allowed_groups=…&allowed_emails=…&allowed_email_domains=…`:
/// comma lists in the check request's own query (`constraint_query`: never a forwarded URI's),
/// ANDed with everything else. They can only narrow access.
fn query_constraints_met(input: &CheckInput, s: &Who<'_>) -> bool {
    let list = |name: &str| -> Option<Vec<String>> {
        input.constraint_param(name).map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        })
    };
    if let Some(groups) = list("allowed_groups") {
        if !s.groups.iter().any(|g| groups.contains(g)) {
            return false;
        }
    }
    if let Some(emails) = list("allowed_emails") {
        if !emails.iter().any(|e| e.eq_ignore_ascii_case(s.email)) {
            return false;
        }
    }
    if let Some(domains) = list("allowed_email_domains") {
        if !Policy::email_in(s.email, &domains) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthzConfig;
    use http::{HeaderMap, HeaderValue, Method};

    const NOW: i64 = 1_800_000_000;

    fn session(email: &str, groups: &[&str], expires_at: i64) -> Session {
        Session {
            id: "sid".into(),
            user: "alice".into(),
            email: email.into(),
            preferred_username: "alice".into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            id_token: None,
            access_token: None,
            created_at: NOW - 10,
            expires_at,
            claims: Default::default(),
            subject: String::new(),
            sid: None,
            refresh_token: None,
            tokens_expire_at: None,
            refreshed_at: 0,
        }
    }

    fn input(target: &str, accept: &str) -> CheckInput {
        let mut h = HeaderMap::new();
        h.insert("accept", HeaderValue::from_str(accept).expect("v"));
        CheckInput::new(Method::GET, "app.example.com", target, h, "r".into())
    }

    fn policy(domains: &[&str], groups: &[&str]) -> Policy {
        Policy::new(&AuthzConfig {
            email_domains: domains.iter().map(|s| s.to_string()).collect(),
            allowed_groups: groups.iter().map(|s| s.to_string()).collect(),
            redirect_domains: vec![],
            rules: vec![],
        })
    }

    #[test]
    fn decision_table() {
        let valid = session("a@example.com", &["devs"], NOW + 100);
        let expired = session("a@example.com", &["devs"], NOW);
        let login = |rt: &str, api| Decision::Login {
            return_to: redirect::validate(rt, &[]).expect("valid"),
            api,
        };
        let open = policy(&["*"], &[]);
        let other_domain = policy(&["other.com"], &[]);
        let admins = policy(&["*"], &["admins"]);
        let devs = policy(&["example.com"], &["devs"]);
        let cases: Vec<(&str, CheckInput, Option<&Session>, &Policy, Decision)> = vec![
            (
                "valid session",
                input("/x", "text/html"),
                Some(&valid),
                &open,
                Decision::Allow,
            ),
            (
                "no session, browser",
                input("/x?y=1", "text/html"),
                None,
                &open,
                login("/x?y=1", false),
            ),
            (
                "no session, api",
                input("/x", "application/json"),
                None,
                &open,
                login("/x", true),
            ),
            (
                "expired session",
                input("/x", "text/html"),
                Some(&expired),
                &open,
                login("/x", false),
            ),
            (
                "wrong domain",
                input("/x", "text/html"),
                Some(&valid),
                &other_domain,
                Decision::Deny(DenyReason::EmailDomain),
            ),
            (
                "wrong group",
                input("/x", "text/html"),
                Some(&valid),
                &admins,
                Decision::Deny(DenyReason::Group),
            ),
            (
                "right group",
                input("/x", "text/html"),
                Some(&valid),
                &devs,
                Decision::Allow,
            ),
            (
                "protocol-relative target falls back to /",
                input("//evil.com/x", "text/html"),
                None,
                &open,
                login("/", false),
            ),
        ];
        for (name, input, s, p, want) in cases {
            assert_eq!(
                decide(&input, s, &BearerFact::Absent, p, NOW),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn missing_path_prefix_denies_even_with_a_session() {
        let mut i = input("/x", "text/html");
        i.path_prefix_ok = false;
        let s = session("a@example.com", &[], NOW + 100);
        assert_eq!(
            decide(&i, Some(&s), &BearerFact::Absent, &policy(&["*"], &[]), NOW),
            Decision::Deny(DenyReason::PathPrefixMissing)
        );
    }

    fn token(email: &str, groups: &[&str]) -> BearerFact {
        BearerFact::Verified(std::sync::Arc::new(crate::token::bearer::VerifiedToken {
            issuer: "https://idp".into(),
            user: "svc".into(),
            email: email.into(),
            preferred_username: "svc".into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            expires_at: NOW + 60,
        }))
    }

    #[test]
    fn bearer_decision_table() {
        let valid = session("a@example.com", &["devs"], NOW + 100);
        let open = policy(&["*"], &[]);
        let admins = policy(&["*"], &["admins"]);
        let domain = policy(&["example.com"], &[]);
        let fallback = policy(&["*"], &[]).with_bearer_fallback(true);
        let bad = BearerFact::Invalid(BearerError::Expired);
        let api = || input("/x", "application/json");
        let cases: Vec<(&str, BearerFact, Option<&Session>, &Policy, Decision)> = vec![
            ("valid token", token("", &[]), None, &open, Decision::Allow),
            (
                "token groups decide",
                token("", &["devs"]),
                None,
                &admins,
                Decision::Deny(DenyReason::Group),
            ),
            (
                "token groups pass",
                token("", &["admins"]),
                None,
                &admins,
                Decision::Allow,
            ),
            (
                "token email domain",
                token("x@other.com", &[]),
                Some(&valid),
                &domain,
                Decision::Deny(DenyReason::EmailDomain),
            ),
            (
                "invalid token never redirects",
                bad.clone(),
                None,
                &open,
                Decision::BearerInvalid(BearerError::Expired),
            ),
            (
                "invalid token ignores a valid cookie",
                bad.clone(),
                Some(&valid),
                &open,
                Decision::BearerInvalid(BearerError::Expired),
            ),
            (
                "fallback uses the cookie",
                bad.clone(),
                Some(&valid),
                &fallback,
                Decision::Allow,
            ),
            (
                "fallback without cookie logs in",
                bad.clone(),
                None,
                &fallback,
                Decision::Login {
                    return_to: redirect::validate("/x", &[]).expect("v"),
                    api: true,
                },
            ),
        ];
        for (name, b, s, p, want) in cases {
            assert_eq!(decide(&api(), s, &b, p, NOW), want, "{name}");
        }
    }

    fn rule_policy(toml_rules: &str) -> Policy {
        #[derive(serde::Deserialize)]
        struct Wrap {
            rules: Vec<crate::authz::rules::RawRule>,
        }
        let w: Wrap = toml::from_str(toml_rules).expect("rules parse");
        Policy::new(&AuthzConfig {
            email_domains: vec!["*".into()],
            allowed_groups: vec![],
            redirect_domains: vec![],
            rules: crate::authz::rules::compile(&w.rules).expect("rules compile"),
        })
    }

    fn req(method: &str, target: &str, headers: &[(&str, &str)]) -> CheckInput {
        let mut h = HeaderMap::new();
        h.insert("accept", HeaderValue::from_static("text/html"));
        for (k, v) in headers {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("n"),
                HeaderValue::from_str(v).expect("v"),
            );
        }
        CheckInput::new(
            Method::from_bytes(method.as_bytes()).expect("m"),
            "app.example.com",
            target,
            h,
            "r".into(),
        )
    }

    #[test]
    fn rules_table() {
        let policy = rule_policy(
            r#"
            [[rules]]
            paths = ["/public/*", "/healthz"]
            action = "public"
            [[rules]]
            paths = ["/admin/*"]
            action = "require"
            groups = ["admins"]
            [[rules]]
            paths = ["/eng/*"]
            action = "require"
            claims = { dept = ["eng"] }
            [[rules]]
            paths = ["/blocked"]
            action = "deny"
            [[rules]]
            paths = ["/headers"]
            action = "header"
            header = { name = "x-ext-authz", value = "allow" }
            [[rules]]
            paths = ["/api/*"]
            action = "authenticated"
            api = true
            [[rules]]
            paths = ["/form"]
            methods = ["POST"]
            action = "deny"
            "#,
        );
        let mut admin = session("a@example.com", &["admins"], NOW + 100);
        admin.claims.insert("dept".into(), serde_json::json!("ops"));
        let mut dev = session("d@example.com", &["devs"], NOW + 100);
        dev.claims
            .insert("dept".into(), serde_json::json!(["eng", "qa"]));
        let login = |rt: &str, api| Decision::Login {
            return_to: redirect::validate(rt, &[]).expect("valid"),
            api,
        };
        let cases: Vec<(&str, CheckInput, Option<&Session>, Decision)> = vec![
            (
                "public, no session",
                req("GET", "/public/x", &[]),
                None,
                Decision::AllowAnonymous,
            ),
            (
                "public, session",
                req("GET", "/healthz", &[]),
                Some(&dev),
                Decision::Allow,
            ),
            (
                "admin, admin",
                req("GET", "/admin/panel", &[]),
                Some(&admin),
                Decision::Allow,
            ),
            (
                "admin, dev",
                req("GET", "/admin", &[]),
                Some(&dev),
                Decision::Deny(DenyReason::RuleRequire(1)),
            ),
            (
                "admin, nobody",
                req("GET", "/admin/x", &[]),
                None,
                login("/admin/x", false),
            ),
            (
                "dot-dot into admin",
                req("GET", "/public/../admin/x", &[]),
                Some(&dev),
                Decision::Deny(DenyReason::RuleRequire(1)),
            ),
            (
                "double slash into admin",
                req("GET", "//admin", &[]),
                Some(&dev),
                Decision::Deny(DenyReason::RuleRequire(1)),
            ),
            (
                "params on admin",
                req("GET", "/admin;x", &[]),
                Some(&dev),
                Decision::Deny(DenyReason::RuleRequire(1)),
            ),
            (
                "encoded slash",
                req("GET", "/public%2f..%2fadmin", &[]),
                Some(&admin),
                Decision::Deny(DenyReason::AmbiguousPath),
            ),
            (
                "encoded dots",
                req("GET", "/public/%2e%2e/admin", &[]),
                None,
                Decision::Deny(DenyReason::AmbiguousPath),
            ),
            (
                "NUL",
                req("GET", "/admin%00", &[]),
                Some(&admin),
                Decision::Deny(DenyReason::AmbiguousPath),
            ),
            (
                "case-sensitive: /ADMIN is not /admin",
                req("GET", "/ADMIN", &[]),
                Some(&dev),
                Decision::Allow,
            ),
            (
                "claims array",
                req("GET", "/eng/x", &[]),
                Some(&dev),
                Decision::Allow,
            ),
            (
                "claims miss",
                req("GET", "/eng/x", &[]),
                Some(&admin),
                Decision::Deny(DenyReason::RuleRequire(2)),
            ),
            (
                "deny",
                req("GET", "/blocked", &[]),
                Some(&admin),
                Decision::Deny(DenyReason::RuleDeny(3)),
            ),
            (
                "header allow",
                req("GET", "/headers", &[("x-ext-authz", "allow")]),
                None,
                Decision::AllowAnonymous,
            ),
            (
                "header wrong case value",
                req("GET", "/headers", &[("x-ext-authz", "Allow")]),
                None,
                Decision::Deny(DenyReason::RuleHeader(4)),
            ),
            (
                "header missing",
                req("GET", "/headers", &[]),
                Some(&admin),
                Decision::Deny(DenyReason::RuleHeader(4)),
            ),
            (
                "api rule gives 401 to browsers",
                req("GET", "/api/x", &[]),
                None,
                login("/api/x", true),
            ),
            (
                "method-specific deny",
                req("POST", "/form", &[]),
                Some(&admin),
                Decision::Deny(DenyReason::RuleDeny(6)),
            ),
            (
                "method-specific, other method",
                req("GET", "/form", &[]),
                Some(&admin),
                Decision::Allow,
            ),
            (
                "no rule: global",
                req("GET", "/other", &[]),
                None,
                login("/other", false),
            ),
            (
                "query: allowed_groups ok",
                req("GET", "/other?allowed_groups=devs,x", &[]),
                Some(&dev),
                Decision::Allow,
            ),
            (
                "query: allowed_groups miss",
                req("GET", "/other?allowed_groups=admins", &[]),
                Some(&dev),
                Decision::Deny(DenyReason::QueryConstraint),
            ),
            (
                "query: allowed_emails",
                req("GET", "/other?allowed_emails=D@example.com", &[]),
                Some(&dev),
                Decision::Allow,
            ),
            (
                "query: allowed_email_domains miss",
                req("GET", "/other?allowed_email_domains=corp.com", &[]),
                Some(&dev),
                Decision::Deny(DenyReason::QueryConstraint),
            ),
        ];
        for (name, input, s, want) in cases {
            assert_eq!(
                decide(&input, s, &BearerFact::Absent, &policy, NOW),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn forward_auth_inputs() {
        let valid = session("a@example.com", &["devs"], NOW + 100);
        let open = policy(&["*"], &[]);
        let decide_ =
            |i: &CheckInput, s: Option<&Session>| decide(i, s, &BearerFact::Absent, &open, NOW);
        // Underscore variants of identity headers are refused before any rule, with or
        // without a session; the exact names (any case) are the gateway's to overwrite.
        for name in [
            "x_auth_request_user",
            "X_Auth_Request_Email",
            "x-auth_request-groups",
            "x_auth_request_preferred_username",
            "x-auth-request-access_token",
        ] {
            let mut i = input("/x", "text/html");
            i.headers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_static("admin"),
            );
            assert_eq!(
                decide_(&i, Some(&valid)),
                Decision::Deny(DenyReason::SmuggledHeader),
                "{name}"
            );
            assert_eq!(
                decide_(&i, None),
                Decision::Deny(DenyReason::SmuggledHeader),
                "{name}"
            );
        }
        let mut i = input("/x", "text/html");
        i.headers
            .insert("x-auth-request-user", HeaderValue::from_static("admin"));
        i.headers
            .insert("x_request_id", HeaderValue::from_static("fine"));
        assert_eq!(decide_(&i, Some(&valid)), Decision::Allow);

        // Query constraints come from the check request's own query, not the original URI's.
        let mut i = input("/x?allowed_groups=admins", "text/html");
        i.constraint_query = None;
        assert_eq!(decide_(&i, Some(&valid)), Decision::Allow);
        let mut i = input("/x", "text/html");
        i.constraint_query = Some("allowed_groups=admins".into());
        assert_eq!(
            decide_(&i, Some(&valid)),
            Decision::Deny(DenyReason::QueryConstraint)
        );

        // nginx's /auth never redirects: a browser without a session is a 401 (api) login.
        let mut i = input("/x", "text/html");
        i.login_redirect = false;
        assert!(matches!(
            decide_(&i, None),
            Decision::Login { api: true, .. }
        ));

        // An unreadable forwarded header is a denial whatever the session.
        let mut i = input("/x", "text/html");
        i.unreadable = Some(DenyReason::BadForwardedHeader);
        assert_eq!(
            decide_(&i, Some(&valid)),
            Decision::Deny(DenyReason::BadForwardedHeader)
        );
    }
}
