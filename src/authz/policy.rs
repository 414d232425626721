//! Who may pass once signed in: email domains and groups (`authz.*`).

use crate::authz::decision::DenyReason;
use crate::authz::rules::Rule;
use crate::config::AuthzConfig;

/// The access rules, compiled from `authz.*`.
#[derive(Debug, Clone)]
pub struct Policy {
    email_domains: Vec<String>,
    allowed_groups: Vec<String>,
    /// Per-route rules, first match decides; requests matching none get the global rules above.
    pub rules: Vec<Rule>,
    /// Claims the rules need from a login.
    pub claim_names: Vec<String>,
    bearer_fallback_to_cookie: bool,
}

impl Policy {
    pub fn new(cfg: &AuthzConfig) -> Self {
        Self {
            email_domains: cfg.email_domains.clone(),
            allowed_groups: cfg.allowed_groups.clone(),
            claim_names: crate::authz::rules::claim_names(&cfg.rules),
            rules: cfg.rules.clone(),
            bearer_fallback_to_cookie: false,
        }
    }

    /// `bearer.fallback_to_cookie`: an invalid bearer token falls through to the session.
    pub fn with_bearer_fallback(mut self, on: bool) -> Self {
        self.bearer_fallback_to_cookie = on;
        self
    }

    pub fn bearer_fallback_to_cookie(&self) -> bool {
        self.bearer_fallback_to_cookie
    }

    /// Whether `email` is in one of `domains` (same matching as `authz.email_domains`).
    pub fn email_in(email: &str, domains: &[String]) -> bool {
        email_allowed(email, domains)
    }

    /// Whether an identity with this email and these groups may pass.
    pub fn authorize(&self, email: &str, groups: &[String]) -> Result<(), DenyReason> {
        if !email_allowed(email, &self.email_domains) {
            return Err(DenyReason::EmailDomain);
        }
        if !self.allowed_groups.is_empty()
            && !groups.iter().any(|g| self.allowed_groups.contains(g))
        {
            return Err(DenyReason::Group);
        }
        Ok(())
    }
}

/// `*` allows any email (even none). `example.com` allows exactly `user@example.com`;
/// `.example.com` or `*.example.com` allows `example.com` and any subdomain. Case-insensitive;
/// the email must hold exactly one `@`.
fn email_allowed(email: &str, domains: &[String]) -> bool {
    if domains.iter().any(|d| d == "*") {
        return true;
    }
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if local.is_empty() || domain.is_empty() {
        return false;
    }
    let domain = domain.to_ascii_lowercase();
    domains.iter().any(|d| {
        let d = d.to_ascii_lowercase();
        match d.strip_prefix("*.").or_else(|| d.strip_prefix('.')) {
            Some(apex) => {
                domain == apex
                    || domain
                        .strip_suffix(apex)
                        .is_some_and(|rest| rest.ends_with('.'))
            }
            None => domain == d,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(domains: &[&str], groups: &[&str]) -> Policy {
        Policy {
            email_domains: domains.iter().map(|s| s.to_string()).collect(),
            allowed_groups: groups.iter().map(|s| s.to_string()).collect(),
            rules: Vec::new(),
            claim_names: Vec::new(),
            bearer_fallback_to_cookie: false,
        }
    }

    #[test]
    fn email_domain_table() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["*"], "a@x.com", true),
            (&["*"], "", true),
            (&["example.com"], "a@example.com", true),
            (&["example.com"], "A@EXAMPLE.COM", true),
            (&["example.com"], "a@sub.example.com", false),
            (&["example.com"], "a@evilexample.com", false),
            (&["example.com"], "a@example.com.evil.com", false),
            (&["example.com"], "a@b@example.com", false),
            (&["example.com"], "example.com", false),
            (&["example.com"], "@example.com", false),
            (&["example.com"], "", false),
            (&[".example.com"], "a@example.com", true),
            (&[".example.com"], "a@sub.example.com", true),
            (&[".example.com"], "a@evilexample.com", false),
            (&["*.example.com"], "a@deep.sub.example.com", true),
            (&["a.com", "b.com"], "x@b.com", true),
        ];
        for (domains, email, ok) in cases {
            assert_eq!(
                policy(domains, &[]).authorize(email, &[]).is_ok(),
                *ok,
                "{domains:?} {email}"
            );
        }
    }

    #[test]
    fn groups_table() {
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(policy(&["*"], &[]).authorize("a@b", &[]), Ok(()));
        assert_eq!(
            policy(&["*"], &["admins"]).authorize("a@b", &g(&["devs", "admins"])),
            Ok(())
        );
        assert_eq!(
            policy(&["*"], &["admins"]).authorize("a@b", &g(&["devs"])),
            Err(DenyReason::Group)
        );
        assert_eq!(
            policy(&["*"], &["admins"]).authorize("a@b", &[]),
            Err(DenyReason::Group)
        );
        assert_eq!(
            policy(&["*"], &["Admins"]).authorize("a@b", &g(&["admins"])),
            Err(DenyReason::Group),
            "group names are case-sensitive"
        );
        assert_eq!(
            policy(&["x.com"], &["admins"]).authorize("a@y.com", &g(&["admins"])),
            Err(DenyReason::EmailDomain)
        );
    }
}
