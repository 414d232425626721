//! Per-route rules (`[[authz.rules]]`): an ordered list, the first rule whose match fits
//! decides. Parsed and checked once at start-up; matching is pure.

use std::collections::BTreeMap;

use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One rule as written in the configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRule {
    pub hosts: Vec<String>,
    pub paths: Vec<String>,
    pub methods: Vec<String>,
    pub action: String,
    pub groups: Vec<String>,
    pub emails: Vec<String>,
    pub email_domains: Vec<String>,
    pub claims: BTreeMap<String, Value>,
    pub header: Option<RawHeaderMatch>,
    pub api: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderMatch {
    pub name: String,
    pub value: String,
}

/// A rule problem: the rule's index, the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub index: usize,
    pub field: &'static str,
    pub message: String,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub index: usize,
    hosts: Vec<HostPattern>,
    paths: Vec<PathPattern>,
    methods: Vec<Method>,
    pub action: Action,
    /// Unauthenticated requests get 401 instead of a login redirect.
    pub api: Option<bool>,
}

/// What a matching rule does.
#[derive(Debug, Clone)]
pub enum Action {
    /// No authentication needed (identity headers still sent: filled or empty).
    Public,
    /// Any signed-in user.
    Authenticated,
    /// A signed-in user meeting every listed constraint.
    Require(Requirements),
    /// Always refused.
    Deny,
    /// Allowed iff the request header `name` equals `value` exactly; no login involved.
    Header {
        name: http::HeaderName,
        value: String,
    },
}

/// Constraints of a `require` rule: each non-empty list must be met (any of its entries).
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    pub groups: Vec<String>,
    pub emails: Vec<String>,
    pub email_domains: Vec<String>,
    /// Claim name → allowed values.
    pub claims: BTreeMap<String, Vec<Value>>,
}

#[derive(Debug, Clone)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: any subdomain (not the apex).
    Suffix(String),
}

#[derive(Debug, Clone)]
enum PathPattern {
    Exact(String),
    /// `/admin/*`: `/admin` itself and everything under `/admin/`.
    Prefix(String),
    Regex(regex::Regex),
}

fn rule_err(index: usize, field: &'static str, message: impl Into<String>) -> RuleError {
    RuleError {
        index,
        field,
        message: message.into(),
    }
}

/// Compile and check every rule.
pub fn compile(raw: &[RawRule]) -> Result<Vec<Rule>, RuleError> {
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.len());
    for (index, r) in raw.iter().enumerate() {
        if let Some(catch_all) = rules
            .iter()
            .find(|p| p.hosts.is_empty() && p.paths.is_empty() && p.methods.is_empty())
        {
            return Err(rule_err(
                index,
                "paths",
                format!(
                    "unreachable: rule {} before it matches every request",
                    catch_all.index
                ),
            ));
        }
        rules.push(compile_one(index, r)?);
    }
    Ok(rules)
}

fn compile_one(index: usize, r: &RawRule) -> Result<Rule, RuleError> {
    let hosts = r
        .hosts
        .iter()
        .map(|h| {
            let h = h.trim().to_ascii_lowercase();
            if h.is_empty() || h.contains(['/', ' ', '@']) {
                return Err(rule_err(index, "hosts", format!("bad host pattern {h:?}")));
            }
            Ok(match h.strip_prefix("*.") {
                Some(rest) if !rest.is_empty() && !rest.contains('*') => {
                    HostPattern::Suffix(format!(".{rest}"))
                }
                Some(_) => return Err(rule_err(index, "hosts", format!("bad wildcard {h:?}"))),
                None if h.contains('*') => {
                    return Err(rule_err(
                        index,
                        "hosts",
                        format!("only a leading \"*.\" wildcard is allowed, got {h:?}"),
                    ))
                }
                None => HostPattern::Exact(h),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let paths = r
        .paths
        .iter()
        .map(|p| compile_path(index, p))
        .collect::<Result<Vec<_>, _>>()?;
    let methods = r
        .methods
        .iter()
        .map(|m| {
            let m = m.trim().to_ascii_uppercase();
            Method::from_bytes(m.as_bytes())
                .ok()
                .filter(|_| !m.is_empty())
                .ok_or_else(|| rule_err(index, "methods", format!("bad method {m:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let requirements_given = !(r.groups.is_empty()
        && r.emails.is_empty()
        && r.email_domains.is_empty()
        && r.claims.is_empty());
    let action = match r.action.trim() {
        "public" => Action::Public,
        "authenticated" => Action::Authenticated,
        "deny" => Action::Deny,
        "require" => {
            if !requirements_given {
                return Err(rule_err(
                    index,
                    "action",
                    "\"require\" needs groups, emails, email_domains or claims",
                ));
            }
            let mut claims = BTreeMap::new();
            for (name, v) in &r.claims {
                let values = match v {
                    Value::Array(a) if !a.is_empty() => a.clone(),
                    Value::String(_) | Value::Bool(_) | Value::Number(_) => vec![v.clone()],
                    _ => {
                        return Err(rule_err(
                            index,
                            "claims",
                            format!("claim {name:?}: expected a value or a non-empty list"),
                        ))
                    }
                };
                claims.insert(name.clone(), values);
            }
            Action::Require(Requirements {
                groups: r.groups.clone(),
                emails: r.emails.iter().map(|e| e.to_ascii_lowercase()).collect(),
                email_domains: r
                    .email_domains
                    .iter()
                    .map(|d| d.to_ascii_lowercase())
                    .collect(),
                claims,
            })
        }
        "header" => {
            let Some(h) = &r.header else {
                return Err(rule_err(
                    index,
                    "header",
                    "action \"header\" needs header = { name = \"...\", value = \"...\" }",
                ));
            };
            let name = http::HeaderName::from_bytes(h.name.trim().to_ascii_lowercase().as_bytes())
                .map_err(|_| rule_err(index, "header", format!("bad header name {:?}", h.name)))?;
            Action::Header {
                name,
                value: h.value.clone(),
            }
        }
        other => {
            return Err(rule_err(
                index,
                "action",
                format!("expected public, authenticated, require, deny or header, got {other:?}"),
            ))
        }
    };
    if requirements_given && !matches!(action, Action::Require(_)) {
        return Err(rule_err(
            index,
            "action",
            "groups, emails, email_domains and claims only apply to action \"require\"",
        ));
    }
    Ok(Rule {
        index,
        hosts,
        paths,
        methods,
        action,
        api: r.api,
    })
}

fn compile_path(index: usize, p: &str) -> Result<PathPattern, RuleError> {
    if let Some(re) = p.strip_prefix("re:") {
        if !(re.starts_with('^') && re.ends_with('$')) {
            return Err(rule_err(
                index,
                "paths",
                format!("regex {re:?} must be anchored with ^ and $"),
            ));
        }
        return regex::Regex::new(re)
            .map(PathPattern::Regex)
            .map_err(|e| rule_err(index, "paths", format!("bad regex {re:?}: {e}")));
    }
    if !p.starts_with('/') {
        return Err(rule_err(
            index,
            "paths",
            format!("{p:?}: paths start with \"/\" (or \"re:\" for a regex)"),
        ));
    }
    // Patterns are written in canonical form, or they could never match.
    let check = |s: &str| match crate::authz::path::canonical(s) {
        Ok(c) if c == s => Ok(()),
        _ => Err(rule_err(
            index,
            "paths",
            format!(
                "{p:?} is not a canonical path (no //, dot segments, ;params or encoded slashes)"
            ),
        )),
    };
    match p.strip_suffix("/*") {
        Some(prefix) => {
            let prefix = if prefix.is_empty() { "/" } else { prefix };
            check(prefix)?;
            Ok(PathPattern::Prefix(
                prefix.trim_end_matches('/').to_string(),
            ))
        }
        None if p.contains('*') => Err(rule_err(
            index,
            "paths",
            format!("{p:?}: \"*\" is only allowed as a final \"/*\""),
        )),
        None => {
            check(p)?;
            Ok(PathPattern::Exact(p.to_string()))
        }
    }
}

impl Rule {
    /// Whether the rule applies to this host (port ignored), canonical path and method.
    pub fn matches(&self, host: &str, path: &str, method: &Method) -> bool {
        let host = host_without_port(host);
        (self.hosts.is_empty()
            || self.hosts.iter().any(|h| match h {
                HostPattern::Exact(e) => host == *e,
                HostPattern::Suffix(s) => host.ends_with(s.as_str()) && host.len() > s.len(),
            }))
            && (self.paths.is_empty()
                || self.paths.iter().any(|p| match p {
                    PathPattern::Exact(e) => path == e,
                    PathPattern::Prefix(pre) => {
                        path == pre
                            || path
                                .strip_prefix(pre.as_str())
                                .is_some_and(|rest| rest.starts_with('/'))
                    }
                    PathPattern::Regex(re) => re.is_match(path),
                }))
            && (self.methods.is_empty() || self.methods.contains(method))
    }
}

/// The first rule that applies.
pub fn first_match<'a>(
    rules: &'a [Rule],
    host: &str,
    path: &str,
    method: &Method,
) -> Option<&'a Rule> {
    rules.iter().find(|r| r.matches(host, path, method))
}

/// Claim names `require` rules look at (so logins keep them in the session).
pub fn claim_names(rules: &[Rule]) -> Vec<String> {
    let mut names: Vec<String> = rules
        .iter()
        .filter_map(|r| match &r.action {
            Action::Require(req) => Some(req.claims.keys().cloned()),
            _ => None,
        })
        .flatten()
        .collect();
    names.sort();
    names.dedup();
    names
}

fn host_without_port(host: &str) -> String {
    let h = host.to_ascii_lowercase();
    if h.starts_with('[') {
        return h.split(']').next().map(|s| format!("{s}]")).unwrap_or(h);
    }
    match h.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_string(),
        _ => h,
    }
}

impl Requirements {
    /// Whether an identity meets every constraint. `email_ok` applies the email-domain rule.
    pub fn met_by(
        &self,
        email: &str,
        groups: &[String],
        claims: &BTreeMap<String, Value>,
        email_ok: impl Fn(&str, &[String]) -> bool,
    ) -> bool {
        (self.groups.is_empty() || groups.iter().any(|g| self.groups.contains(g)))
            && (self.emails.is_empty() || self.emails.contains(&email.to_ascii_lowercase()))
            && (self.email_domains.is_empty() || email_ok(email, &self.email_domains))
            && self.claims.iter().all(|(name, allowed)| {
                claims
                    .get(name)
                    .is_some_and(|have| claim_allowed(have, allowed))
            })
    }
}

/// A claim value passes when it equals an allowed value, or (for an array claim) when any of
/// its elements does.
fn claim_allowed(have: &Value, allowed: &[Value]) -> bool {
    match have {
        Value::Array(items) => items.iter().any(|i| allowed.contains(i)),
        v => allowed.contains(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(f: impl FnOnce(&mut RawRule)) -> RawRule {
        let mut r = RawRule {
            action: "authenticated".into(),
            ..RawRule::default()
        };
        f(&mut r);
        r
    }

    #[test]
    fn matching_table() {
        let rules = compile(&[
            rule(|r| {
                r.paths = vec!["/admin/*".into()];
                r.hosts = vec!["*.example.com".into()];
            }),
            rule(|r| r.paths = vec!["/exact".into()]),
            rule(|r| r.paths = vec!["re:^/v[0-9]+/admin$".into()]),
            rule(|r| {
                r.methods = vec!["post".into()];
                r.hosts = vec!["api.test".into()];
            }),
        ])
        .expect("compiles");
        let get = Method::GET;
        let post = Method::POST;
        let cases: &[(&str, &str, &Method, Option<usize>)] = &[
            ("app.example.com", "/admin", &get, Some(0)),
            ("app.example.com:8443", "/admin/x/y", &get, Some(0)),
            ("APP.EXAMPLE.COM", "/admin/", &get, Some(0)),
            ("example.com", "/admin", &get, None),
            ("evilexample.com", "/admin", &get, None),
            ("app.example.com", "/administrator", &get, None),
            ("any", "/exact", &get, Some(1)),
            ("any", "/exact/", &get, None),
            ("any", "/v2/admin", &get, Some(2)),
            ("any", "/v2/admin/x", &get, None),
            ("api.test", "/anything", &post, Some(3)),
            ("api.test", "/anything", &get, None),
        ];
        for (host, path, method, want) in cases {
            let got = first_match(&rules, host, path, method).map(|r| r.index);
            assert_eq!(got, *want, "{host} {method} {path}");
        }
    }

    #[test]
    fn errors_name_index_and_field() {
        let cases: Vec<(Vec<RawRule>, usize, &str)> = vec![
            (vec![rule(|r| r.action = "maybe".into())], 0, "action"),
            (vec![rule(|r| r.action = "require".into())], 0, "action"),
            (
                vec![rule(|r| r.paths = vec!["re:^/(unclosed$".into()])],
                0,
                "paths",
            ),
            (
                vec![rule(|r| r.paths = vec!["re:/unanchored".into()])],
                0,
                "paths",
            ),
            (vec![rule(|r| r.paths = vec!["admin".into()])], 0, "paths"),
            (vec![rule(|r| r.paths = vec!["/a/../b".into()])], 0, "paths"),
            (vec![rule(|r| r.paths = vec!["/a*b".into()])], 0, "paths"),
            (vec![rule(|r| r.hosts = vec!["a.*.com".into()])], 0, "hosts"),
            (
                vec![rule(|r| r.methods = vec!["GE T".into()])],
                0,
                "methods",
            ),
            (vec![rule(|r| r.action = "header".into())], 0, "header"),
            (vec![rule(|r| r.groups = vec!["x".into()])], 0, "action"),
            (
                vec![rule(|_| {}), rule(|r| r.paths = vec!["/x".into()])],
                1,
                "paths",
            ),
            (
                vec![rule(|r| {
                    r.action = "require".into();
                    r.claims.insert("dept".into(), json!({}));
                })],
                0,
                "claims",
            ),
        ];
        for (rules, index, field) in cases {
            let e = compile(&rules).expect_err(field);
            assert_eq!((e.index, e.field), (index, field), "{e:?}");
        }
    }

    #[test]
    fn requirements_table() {
        let req = |f: fn(&mut Requirements)| {
            let mut r = Requirements::default();
            f(&mut r);
            r
        };
        let domain_ok = |email: &str, domains: &[String]| {
            domains.iter().any(|d| email.ends_with(&format!("@{d}")))
        };
        let groups = vec!["devs".to_string()];
        let mut claims = BTreeMap::new();
        claims.insert("dept".into(), json!("eng"));
        claims.insert("roles".into(), json!(["reader", "writer"]));
        claims.insert("staff".into(), json!(true));
        claims.insert("level".into(), json!(3));
        let cases: Vec<(Requirements, bool)> = vec![
            (req(|r| r.groups = vec!["devs".into()]), true),
            (req(|r| r.groups = vec!["admins".into()]), false),
            (req(|r| r.emails = vec!["alice@example.com".into()]), true),
            (req(|r| r.emails = vec!["bob@example.com".into()]), false),
            (req(|r| r.email_domains = vec!["example.com".into()]), true),
            (req(|r| r.email_domains = vec!["other.com".into()]), false),
            (
                req(|r| {
                    r.claims
                        .insert("dept".into(), vec![json!("eng"), json!("ops")]);
                }),
                true,
            ),
            (
                req(|r| {
                    r.claims.insert("dept".into(), vec![json!("sales")]);
                }),
                false,
            ),
            (
                req(|r| {
                    r.claims.insert("roles".into(), vec![json!("writer")]);
                }),
                true,
            ),
            (
                req(|r| {
                    r.claims.insert("staff".into(), vec![json!(true)]);
                }),
                true,
            ),
            (
                req(|r| {
                    r.claims.insert("staff".into(), vec![json!("true")]);
                }),
                false,
            ),
            (
                req(|r| {
                    r.claims.insert("level".into(), vec![json!(3)]);
                }),
                true,
            ),
            (
                req(|r| {
                    r.claims.insert("missing".into(), vec![json!("x")]);
                }),
                false,
            ),
            (
                req(|r| {
                    r.groups = vec!["devs".into()];
                    r.emails = vec!["bob@example.com".into()];
                }),
                false,
            ),
        ];
        for (i, (r, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                r.met_by("Alice@example.com", &groups, &claims, domain_ok),
                want,
                "case {i}: {r:?}"
            );
        }
    }
}
