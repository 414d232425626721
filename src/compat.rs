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

/// oauth2-proxy options that mean the same here, as (its name, our key). The one table for
/// both places oauth2-proxy takes options: its configuration file (`--oauth2-proxy-config`)
/// and its environment variables (`OAUTH2_PROXY_<NAME>`, see [`env_key`]). Values pass through
/// as they are: our lists accept oauth2-proxy's comma- or space-separated strings.
pub const SAME: &[(&str, &str)] = &[
    ("oidc_issuer_url", "oidc.issuer_url"),
    // An empty list trusts everybody in oauth2-proxy and nobody here: only a list carries over.
    ("trusted_proxy_ip", "server.trusted_proxies"),
    ("client_id", "oidc.client_id"),
    ("client_secret", "oidc.client_secret"),
    ("client_secret_file", "oidc.client_secret_file"),
    ("redirect_url", "oidc.redirect_url"),
    ("scope", "oidc.scopes"),
    ("oidc_email_claim", "oidc.email_claim"),
    ("oidc_groups_claim", "oidc.groups_claim"),
    ("cookie_name", "cookie.name"),
    ("cookie_secret", "cookie.secret"),
    ("cookie_secret_file", "cookie.secret_file"),
    ("cookie_domain", "cookie.domain"),
    ("cookie_domains", "cookie.domain"),
    ("cookie_path", "cookie.path"),
    ("cookie_expire", "cookie.expire"),
    ("cookie_refresh", "cookie.refresh_interval"),
    ("cookie_secure", "cookie.secure"),
    ("cookie_samesite", "cookie.same_site"),
    ("email_domains", "authz.email_domains"),
    ("email_domain", "authz.email_domains"),
    ("allowed_groups", "authz.allowed_groups"),
    ("allowed_group", "authz.allowed_groups"),
    ("whitelist_domains", "authz.redirect_domains"),
    ("whitelist_domain", "authz.redirect_domains"),
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
    ("session_store_type", "session.store"),
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

/// The file-only cases beside [`SAME`]: in a file, `cookie_domains` is a list (the first
/// domain is used, more are warned about), and `insecure_oidc_allow_unverified_email` is read
/// from a file only (it never had an environment name here).
const FILE_ONLY: &[&str] = &[
    "cookie_domain",
    "cookie_domains",
    "insecure_oidc_allow_unverified_email",
];

/// Our key for the environment variable `OAUTH2_PROXY_<name>` (`name` lowercased), if any.
pub fn env_key(name: &str) -> Option<&'static str> {
    SAME.iter()
        .find(|(from, _)| *from == name)
        .map(|(_, to)| *to)
}

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
        if FILE_ONLY.contains(&option) {
            translate_special(option, &json, &mut out)?;
            continue;
        }
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

/// The verdict on `OAUTH2_PROXY_*` environment variables that are not read as configuration
/// (all but [`SAME`]'s names): the same as for the option in a file — an error for a restriction
/// portcullis cannot enforce, a provider other than OIDC or disabled TLS verification, else one
/// warning each. Kubernetes' service-link variables of a Service named oauth2-proxy
/// (`OAUTH2_PROXY_SERVICE_HOST`, `OAUTH2_PROXY_PORT_4180_TCP`, …) are not options.
pub fn check_env(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>, CompatError> {
    const RESTRICTS: &str = "restricts who may sign in, and portcullis cannot enforce it; express it with authz.email_domains / authz.allowed_groups (groups claim) before switching";
    let mut warnings = Vec::new();
    for (var, raw) in vars {
        let Some(name) = var.strip_prefix("OAUTH2_PROXY_") else {
            continue;
        };
        let option = name.to_ascii_lowercase();
        let service_link = option == "port"
            || option.starts_with("port_")
            || option == "service_host"
            || option.starts_with("service_port");
        if service_link || env_key(&option).is_some() {
            continue;
        }
        let value = match raw.trim() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            other => Value::String(other.to_string()),
        };
        if RESTRICTIONS.contains(&option.as_str()) && !is_empty(&value) {
            return Err(err(&var, RESTRICTS));
        }
        if FILE_ONLY.contains(&option.as_str()) {
            warnings.push(format!(
                "environment variable {var} is ignored: this option is read from an oauth2-proxy config file only"
            ));
            continue;
        }
        let mut out = Translated::default();
        translate_special(&option, &value, &mut out).map_err(|e| err(&var, e.message))?;
        let from = format!("oauth2-proxy option {option}");
        warnings.extend(
            out.warnings
                .into_iter()
                .map(|w| w.replace(&from, &format!("environment variable {var}"))),
        );
    }
    Ok(warnings)
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
        "insecure_oidc_allow_unverified_email" => {
            out.sets
                .push(("oidc.allow_unverified_email".into(), v.clone()));
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

    #[test]
    fn trusted_proxy_ip_carries_over() {
        let t = translate("reverse_proxy = true\ntrusted_proxy_ip = [\"10.0.0.0/8\"]\n")
            .expect("translates");
        assert_eq!(
            get(&t, "server.trusted_proxies"),
            Some(&serde_json::json!(["10.0.0.0/8"]))
        );
    }

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
        // Passed as written; `oidc.scopes` splits oauth2-proxy's space-separated string.
        assert_eq!(
            get(&t, "oidc.scopes"),
            Some(&Value::from("openid email profile groups"))
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

    /// The `OAUTH2_PROXY_*` names read from the environment, pinned: merging the file's and
    /// the environment's tables into [`SAME`] must not add or drop any.
    const ENV_NAMES: &[(&str, &str)] = &[
        ("client_id", "oidc.client_id"),
        ("client_secret", "oidc.client_secret"),
        ("client_secret_file", "oidc.client_secret_file"),
        ("oidc_issuer_url", "oidc.issuer_url"),
        ("redirect_url", "oidc.redirect_url"),
        ("scope", "oidc.scopes"),
        ("oidc_email_claim", "oidc.email_claim"),
        ("oidc_groups_claim", "oidc.groups_claim"),
        ("cookie_name", "cookie.name"),
        ("cookie_secret", "cookie.secret"),
        ("cookie_secret_file", "cookie.secret_file"),
        ("cookie_domain", "cookie.domain"),
        ("cookie_domains", "cookie.domain"),
        ("cookie_path", "cookie.path"),
        ("cookie_expire", "cookie.expire"),
        ("cookie_refresh", "cookie.refresh_interval"),
        ("cookie_secure", "cookie.secure"),
        ("cookie_samesite", "cookie.same_site"),
        ("email_domains", "authz.email_domains"),
        ("email_domain", "authz.email_domains"),
        ("allowed_groups", "authz.allowed_groups"),
        ("allowed_group", "authz.allowed_groups"),
        ("whitelist_domains", "authz.redirect_domains"),
        ("whitelist_domain", "authz.redirect_domains"),
        ("http_address", "server.http_address"),
        ("proxy_prefix", "server.proxy_prefix"),
        ("trusted_proxy_ip", "server.trusted_proxies"),
        ("set_xauthrequest", "headers.set_xauthrequest"),
        ("pass_access_token", "headers.pass_access_token"),
        (
            "set_authorization_header",
            "headers.set_authorization_header",
        ),
        ("custom_templates_dir", "pages.templates_dir"),
        ("provider_display_name", "pages.provider_name"),
        ("footer", "pages.footer"),
        ("session_store_type", "session.store"),
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

    #[test]
    fn environment_names_are_exactly_the_pinned_ones() {
        let accepted: std::collections::BTreeMap<_, _> = SAME.iter().copied().collect();
        let pinned: std::collections::BTreeMap<_, _> = ENV_NAMES.iter().copied().collect();
        assert_eq!(accepted, pinned);
        for (name, key) in ENV_NAMES {
            assert_eq!(env_key(name), Some(*key), "{name}");
        }
        for name in [
            "insecure_oidc_allow_unverified_email",
            "provider",
            "upstreams",
            "reverse_proxy",
            "skip_provider_button",
            "github_org",
        ] {
            assert_eq!(
                env_key(name),
                None,
                "{name} is not read from the environment"
            );
        }
    }

    #[test]
    fn the_docs_list_every_environment_name() {
        let docs = include_str!("../docs/configuration.md");
        for (name, key) in SAME {
            let row = format!("| `OAUTH2_PROXY_{}` | `{key}` |", name.to_uppercase());
            assert!(docs.contains(&row), "docs/configuration.md lacks {row}");
        }
        let rows = docs
            .lines()
            .filter(|l| l.starts_with("| `OAUTH2_PROXY_"))
            .count();
        assert_eq!(rows, SAME.len(), "docs list names the code does not read");
    }

    #[test]
    fn file_only_cases() {
        let t = translate(
            "cookie_domains = [\".a.example\", \".b.example\"]\ninsecure_oidc_allow_unverified_email = true\nemail_domain = \"example.com\"\n",
        )
        .expect("translates");
        assert_eq!(get(&t, "cookie.domain"), Some(&Value::from(".a.example")));
        assert_eq!(
            get(&t, "oidc.allow_unverified_email"),
            Some(&Value::from(true))
        );
        assert_eq!(
            get(&t, "authz.email_domains"),
            Some(&Value::from("example.com"))
        );
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        assert!(t.warnings[0].contains("only the first domain"));
    }

    fn env(vars: &[(&str, &str)]) -> Result<Vec<String>, CompatError> {
        check_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn environment_restrictions_are_errors_and_the_rest_warns() {
        for (var, value) in [
            ("OAUTH2_PROXY_GITHUB_ORG", "acme"),
            ("OAUTH2_PROXY_AUTHENTICATED_EMAILS_FILE", "/etc/emails"),
            ("OAUTH2_PROXY_PROVIDER", "github"),
            ("OAUTH2_PROXY_SSL_INSECURE_SKIP_VERIFY", "true"),
        ] {
            let e = env(&[(var, value)]).expect_err(var);
            assert_eq!(e.option, var);
        }
        let w = env(&[
            ("OAUTH2_PROXY_CLIENT_ID", "read as configuration"),
            ("OAUTH2_PROXY_PROVIDER", "oidc"),
            ("OAUTH2_PROXY_UPSTREAMS", "static://200"),
            ("OAUTH2_PROXY_SKIP_PROVIDER_BUTTON", "true"),
            ("OAUTH2_PROXY_SERVICE_HOST", "10.0.0.1"),
            ("OAUTH2_PROXY_SERVICE_PORT_HTTP", "4180"),
            ("OAUTH2_PROXY_PORT", "tcp://10.0.0.1:4180"),
            ("OAUTH2_PROXY_PORT_4180_TCP_ADDR", "10.0.0.1"),
            ("PORTCULLIS_X", "not ours"),
        ])
        .expect("nothing refused");
        assert!(w.is_empty(), "{w:?}");
        let w = env(&[
            ("OAUTH2_PROXY_REVERSE_PROXY", "true"),
            ("OAUTH2_PROXY_INSECURE_OIDC_ALLOW_UNVERIFIED_EMAIL", "true"),
            ("OAUTH2_PROXY_BANNER", "hi"),
        ])
        .expect("warnings only");
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].starts_with("environment variable OAUTH2_PROXY_REVERSE_PROXY is ignored"));
        assert!(w[1].contains("config file only"));
        assert!(w[2].contains("OAUTH2_PROXY_BANNER"));
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
