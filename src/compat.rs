//! oauth2-proxy configuration files (`--oauth2-proxy-config FILE`): its TOML option names are
//! mapped onto ours. Options we do not need are ignored with a warning each; options whose
//! absence would let in people oauth2-proxy keeps out are an error, so a migration can never
//! silently weaken access control.

use serde_json::Value;

/// What an oauth2-proxy file becomes: `section.key` values for our configuration, and one
/// warning per option that has no effect here.
#[derive(Debug, Default, PartialEq)]
pub struct Translated {
    pub sets: Vec<(String, Value)>,
    pub warnings: Vec<String>,
}

/// Why an oauth2-proxy file cannot be used as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {message}")]
pub struct CompatError {
    pub option: String,
    pub message: String,
}

fn err(option: &str, message: impl Into<String>) -> CompatError {
    CompatError {
        option: option.to_string(),
        message: message.into(),
    }
}

/// Options with the same meaning here: oauth2-proxy name → our key.
const SAME: &[(&str, &str)] = &[
    ("oidc_issuer_url", "oidc.issuer_url"),
    ("client_id", "oidc.client_id"),
    ("client_secret", "oidc.client_secret"),
    ("client_secret_file", "oidc.client_secret_file"),
    ("redirect_url", "oidc.redirect_url"),
    ("oidc_email_claim", "oidc.email_claim"),
    ("oidc_groups_claim", "oidc.groups_claim"),
    ("cookie_name", "cookie.name"),
    ("cookie_secret", "cookie.secret"),
    ("cookie_secret_file", "cookie.secret_file"),
    ("cookie_path", "cookie.path"),
    ("cookie_expire", "cookie.expire"),
    ("cookie_secure", "cookie.secure"),
    ("email_domains", "authz.email_domains"),
    ("allowed_groups", "authz.allowed_groups"),
    ("whitelist_domains", "authz.redirect_domains"),
    ("http_address", "server.http_address"),
    ("proxy_prefix", "server.proxy_prefix"),
    ("set_xauthrequest", "headers.set_xauthrequest"),
    ("pass_access_token", "headers.pass_access_token"),
    (
        "set_authorization_header",
        "headers.set_authorization_header",
    ),
    ("custom_templates_dir", "pages.templates_dir"),
    ("provider_display_name", "pages.provider_name"),
    ("footer", "pages.footer"),
    (
        "insecure_oidc_allow_unverified_email",
        "oidc.allow_unverified_email",
    ),
    ("redis_connection_url", "session.redis.url"),
    (
        "redis_sentinel_master_name",
        "session.redis.sentinel_master",
    ),
    (
        "redis_sentinel_connection_urls",
        "session.redis.sentinel_urls",
    ),
    (
        "redis_cluster_connection_urls",
        "session.redis.cluster_urls",
    ),
    ("redis_ca_path", "session.redis.ca_file"),
];

/// Options that restrict who gets in and that portcullis cannot enforce: dropping them would
/// open the door wider than the oauth2-proxy setup did.
const RESTRICTIONS: &[&str] = &[
    "authenticated_emails_file",
    "htpasswd_file",
    "github_org",
    "github_team",
    "github_repo",
    "github_user",
    "gitlab_group",
    "gitlab_groups",
    "gitlab_projects",
    "google_group",
    "google_groups",
    "allowed_roles",
    "allowed_role",
    "keycloak_group",
    "keycloak_groups",
    "bitbucket_team",
    "bitbucket_repository",
    "entra_id_allowed_tenants",
    "azure_tenant",
];

/// Translate the text of an oauth2-proxy TOML configuration file.
pub fn translate(text: &str) -> Result<Translated, CompatError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| err("file", one_line(&e.to_string())))?;
    let mut out = Translated::default();
    for (option, value) in &table {
        let option = option.replace('-', "_");
        let option = option.as_str();
        let json = serde_json::to_value(value).map_err(|e| err(option, e.to_string()))?;
        if let Some((_, key)) = SAME.iter().find(|(from, _)| *from == option) {
            out.sets.push((key.to_string(), json));
            continue;
        }
        if RESTRICTIONS.contains(&option) && !is_empty(&json) {
            return Err(err(
                option,
                "restricts who may sign in, and portcullis cannot enforce it; express it with authz.email_domains / authz.allowed_groups (groups claim) before switching",
            ));
        }
        translate_special(option, &json, &mut out)?;
    }
    Ok(out)
}

fn translate_special(option: &str, v: &Value, out: &mut Translated) -> Result<(), CompatError> {
    let ignored = |out: &mut Translated, why: &str| {
        out.warnings
            .push(format!("oauth2-proxy option {option} is ignored: {why}"));
    };
    match option {
        "provider" => match v.as_str().unwrap_or_default() {
            "oidc" | "keycloak-oidc" | "" => {}
            other => {
                return Err(err(
                    option,
                    format!("provider {other:?} is not supported; portcullis speaks standard OpenID Connect: use provider \"oidc\" with oidc_issuer_url"),
                ))
            }
        },
        "scope" => {
            let scopes: Vec<Value> = v
                .as_str()
                .unwrap_or_default()
                .split_whitespace()
                .map(|s| Value::String(s.to_string()))
                .collect();
            out.sets.push(("oidc.scopes".into(), Value::Array(scopes)));
        }
        "cookie_samesite" => {
            let s = v.as_str().unwrap_or_default();
            if !s.is_empty() {
                out.sets
                    .push(("cookie.same_site".into(), Value::String(s.to_string())));
            }
        }
        "cookie_domains" | "cookie_domain" => {
            let domains: Vec<String> = match v {
                Value::Array(a) => a.iter().filter_map(|d| d.as_str().map(str::to_string)).collect(),
                Value::String(s) => vec![s.clone()],
                _ => vec![],
            };
            if let Some(first) = domains.first() {
                out.sets
                    .push(("cookie.domain".into(), Value::String(first.clone())));
            }
            if domains.len() > 1 {
                out.warnings.push(format!(
                    "oauth2-proxy option {option}: only the first domain ({}) is used",
                    domains[0]
                ));
            }
        }
        "upstreams" | "upstream" => {
            let all_static = match v {
                Value::Array(a) => a
                    .iter()
                    .all(|u| u.as_str().is_some_and(|u| u.starts_with("static://"))),
                Value::String(u) => u.starts_with("static://"),
                _ => false,
            };
            if !all_static {
                ignored(out, "portcullis answers the gateway's checks and does not proxy to upstreams");
            }
        }
        "cookie_httponly" => {
            if v.as_bool() == Some(false) {
                ignored(out, "portcullis cookies are always HttpOnly");
            }
        }
        "code_challenge_method" => {
            if v.as_str() != Some("S256") {
                ignored(out, "portcullis always uses PKCE with S256");
            }
        }
        "session_store_type" => {
            let s = v.as_str().unwrap_or_default();
            if !s.is_empty() {
                out.sets
                    .push(("session.store".into(), Value::String(s.to_string())));
            }
        }
        // Which of url / sentinel / cluster URLs is set says the same.
        "redis_use_sentinel" | "redis_use_cluster" | "redis_connection_idle_timeout" => {}
        "redis_password" | "redis_sentinel_password" if !is_empty(v) => {
            return Err(err(
                option,
                "put the Redis password in a file and set session.redis.password_file (or in the URL)",
            ));
        }
        "redis_insecure_skip_tls_verify" if v.as_bool() == Some(true) => {
            return Err(err(
                option,
                "not supported: portcullis verifies Redis's certificate (session.redis.ca_file for a private CA)",
            ));
        }
        "ssl_insecure_skip_verify" | "skip_oidc_discovery" if v.as_bool() == Some(true) => {
            return Err(err(
                option,
                "not supported: portcullis verifies the IdP's certificate and reads its discovery document",
            ));
        }
        "skip_provider_button" => {
            if v.as_bool() == Some(false) {
                ignored(out, "browsers without a session go straight to the identity provider");
            }
        }
        "reverse_proxy" | "pass_host_header" | "pass_user_headers" | "pass_basic_auth"
        | "request_logging" | "standard_logging" | "auth_logging" | "silence_ping_logging"
        | "ping_path" | "ready_path" | "force_https" | "cookie_csrf_per_request"
        | "cookie_csrf_expire" | "approval_prompt" | "show_debug_on_error"
        | "skip_auth_strip_headers" | "real_client_ip_header" | "metrics_address" => {
            ignored(out, "not needed in portcullis (see docs/migrating-from-oauth2-proxy.md)");
        }
        _ => ignored(out, "portcullis has no equivalent"),
    }
    Ok(())
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Istio + OIDC setup oauth2-proxy's docs describe, as users run it today.
    const ISTIO_SETUP: &str = r#"
provider = "oidc"
provider_display_name = "Corp SSO"
oidc_issuer_url = "https://sso.example.com/realms/corp"
client_id = "istio"
client_secret = "s3cret"
redirect_url = "https://app.example.com/oauth2/callback"
scope = "openid email profile groups"
http_address = "0.0.0.0:4180"
upstreams = ["static://200"]
reverse_proxy = true
skip_provider_button = true
set_xauthrequest = true
pass_access_token = true
email_domains = ["example.com"]
allowed_groups = ["admins"]
whitelist_domains = [".example.com"]
cookie_name = "_oauth2_proxy"
cookie_secret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
cookie_domains = [".example.com"]
cookie_secure = true
cookie_samesite = "lax"
cookie_expire = "168h0m0s"
"#;

    fn get<'a>(t: &'a Translated, key: &str) -> Option<&'a Value> {
        t.sets.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    #[test]
    fn the_istio_setup_translates() {
        let t = translate(ISTIO_SETUP).expect("translates");
        assert_eq!(
            get(&t, "oidc.issuer_url"),
            Some(&Value::from("https://sso.example.com/realms/corp"))
        );
        assert_eq!(
            get(&t, "oidc.scopes"),
            Some(&serde_json::json!(["openid", "email", "profile", "groups"]))
        );
        assert_eq!(get(&t, "cookie.domain"), Some(&Value::from(".example.com")));
        assert_eq!(
            get(&t, "authz.allowed_groups"),
            Some(&serde_json::json!(["admins"]))
        );
        assert_eq!(
            get(&t, "headers.pass_access_token"),
            Some(&Value::from(true))
        );
        // reverse_proxy is ignored with a warning; static upstreams and the button silently.
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        assert!(t.warnings[0].contains("reverse_proxy"));
    }

    #[test]
    fn restrictions_we_cannot_enforce_are_errors() {
        for opt in [
            "authenticated_emails_file = \"/etc/emails\"",
            "github_org = \"acme\"",
            "google_group = [\"admins@example.com\"]",
            "allowed_roles = [\"admin\"]",
            "provider = \"github\"",
            "ssl_insecure_skip_verify = true",
        ] {
            let base = ISTIO_SETUP.replace("provider = \"oidc\"\n", "");
            let e = translate(&format!("{base}\n{opt}\n")).expect_err(opt);
            assert!(opt.starts_with(&e.option), "{opt}: {e}");
        }
        // Empty restrictions restrict nothing.
        assert!(translate(&format!("{ISTIO_SETUP}\ngithub_org = \"\"\n")).is_ok());
    }

    #[test]
    fn unknown_options_warn_and_proxying_upstreams_warn() {
        let t = translate("upstreams = [\"http://127.0.0.1:8080/\"]\nbanner = \"hi\"\n")
            .expect("translates");
        assert_eq!(t.warnings.len(), 2, "{:?}", t.warnings);
        assert!(t.sets.is_empty());
    }

    #[test]
    fn redis_session_options_translate() {
        let t = translate(
            "session_store_type = \"redis\"\nredis_use_sentinel = true\n\
             redis_sentinel_master_name = \"mymaster\"\n\
             redis_sentinel_connection_urls = [\"redis://s1:26379\", \"redis://s2:26379\"]\n\
             redis_ca_path = \"/etc/ca.pem\"\n",
        )
        .expect("translates");
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        assert_eq!(get(&t, "session.store"), Some(&Value::from("redis")));
        assert_eq!(
            get(&t, "session.redis.sentinel_master"),
            Some(&Value::from("mymaster"))
        );
        assert_eq!(
            get(&t, "session.redis.sentinel_urls"),
            Some(&serde_json::json!(["redis://s1:26379", "redis://s2:26379"]))
        );
        assert_eq!(
            get(&t, "session.redis.ca_file"),
            Some(&Value::from("/etc/ca.pem"))
        );
        let e = translate("redis_password = \"pw\"\n").expect_err("inline password");
        assert_eq!(e.option, "redis_password");
        assert!(!e.message.contains("pw\""));
    }

    #[test]
    fn bad_toml_is_one_line() {
        let e = translate("provider = [oidc").expect_err("bad");
        assert_eq!(e.option, "file");
        assert!(!e.message.contains('\n'));
    }
}
