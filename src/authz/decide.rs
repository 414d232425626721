//! The pure decision: no I/O, no clock; `now` and the facts come in as parameters.

use crate::authz::decision::{Decision, DenyReason};
use crate::authz::input::CheckInput;
use crate::authz::policy::Policy;
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

/// Decide one check from the request, the session found in it (already decrypted), the bearer
/// token's verification, the policy and the time. A bearer token, when present, decides alone:
/// a valid one is authorized like a session, an invalid one is refused with 401 (never a login
/// redirect) unless the policy lets it fall back to the cookie.
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
    match bearer {
        BearerFact::Verified(t) => {
            return match policy.authorize(&t.email, &t.groups) {
                Ok(()) => Decision::Allow,
                Err(reason) => Decision::Deny(reason),
            }
        }
        BearerFact::Invalid(e) if !policy.bearer_fallback_to_cookie() => {
            return Decision::BearerInvalid(*e)
        }
        BearerFact::Invalid(_) | BearerFact::Absent => {}
    }
    match session.filter(|s| s.is_valid_at(now)) {
        Some(s) => match policy.authorize(&s.email, &s.groups) {
            Ok(()) => Decision::Allow,
            Err(reason) => Decision::Deny(reason),
        },
        None => Decision::Login {
            // The original target is relative; it still goes through the validator so that a
            // path such as `//evil.com` can never become a redirect elsewhere.
            return_to: redirect::validate(&input.path_and_query(), &[])
                .unwrap_or_else(ReturnTo::root),
            api: input.is_api(),
        },
    }
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
}
