//! Shared set-up and oracles for the fuzz targets in `fuzz_targets/`.
//!
//! The check targets (`http_check`, `grpc_check`) run the real `authz::check` against one `App`
//! per process, discovered against the in-process development issuer on a loopback port, with
//! a fixed rule set. Their invariants are stated with an oracle written independently of
//! `authz::path`: every way an application server behind the gateway could read the path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use percent_encoding::percent_decode_str;
use portcullis::app::App;
use portcullis::authz::decision::Outcome;
use portcullis::authz::input::CheckInput;
use portcullis::clock::Clock;
use portcullis::config::{Config, Sources};
use portcullis::dev_idp::{self, DevClient, DevIdp};
use portcullis::session::Session;

/// The rules every check target runs with: one of each action.
pub const RULES: &str = r#"
[[authz.rules]]
paths = ["/public/*"]
action = "public"

[[authz.rules]]
paths = ["/headers"]
action = "header"
header = { name = "x-ext-authz", value = "allow" }

[[authz.rules]]
paths = ["/internal/*"]
action = "deny"

[[authz.rules]]
paths = ["/admin/*"]
action = "require"
groups = ["admins"]

[[authz.rules]]
paths = ["/api/*"]
action = "authenticated"
api = true
"#;

/// A fixed cookie key, so a crash reproduces with the same cookies.
pub const COOKIE_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// One `App` with a discovered issuer, a runtime to drive checks, and a valid session cookie
/// for `bob` (group `devs`, not `admins`).
pub struct Env {
    pub rt: tokio::runtime::Runtime,
    pub app: Arc<App>,
    /// `name=value; name_0=…` ready for a `Cookie` header.
    pub session_cookie: String,
    pub session: Session,
    _idp: DevIdp,
}

/// A configuration for fuzzing: the given `--set` overrides over a working base.
pub fn config(sets: &[&str], issuer: &str) -> Config {
    let dir = std::env::temp_dir().join(format!("portcullis-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.toml");
    std::fs::write(&file, RULES).unwrap();
    let mut all: Vec<String> = vec![
        "server.http_address=127.0.0.1:0".into(),
        "server.admin_address=127.0.0.1:0".into(),
        "server.grpc_address=127.0.0.1:0".into(),
        format!("oidc.issuer_url={issuer}"),
        "oidc.client_id=fuzz-client".into(),
        "oidc.client_secret=fuzz-secret".into(),
        format!("cookie.secret={COOKIE_KEY}"),
        "cookie.secure=false".into(),
        "authz.redirect_domains=app.example.com,*.example.org".into(),
        "oidc.http_timeout=2s".into(),
    ];
    all.extend(sets.iter().map(|s| s.to_string()));
    let config = Config::load(&Sources {
        file: Some(file.clone()),
        oauth2_proxy_file: None,
        sets: all,
        use_env: false,
    })
    .expect("fuzz config");
    let _ = std::fs::remove_dir_all(dir);
    config
}

impl Env {
    pub fn new(sets: &[&str]) -> Env {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (idp, app) = rt.block_on(async {
            let idp = dev_idp::start(
                "127.0.0.1:0".parse().unwrap(),
                DevClient {
                    client_id: "fuzz-client".into(),
                    client_secret: "fuzz-secret".into(),
                },
                Clock::system(),
            )
            .await
            .expect("dev issuer");
            let app = Arc::new(App::new(config(sets, &idp.issuer), Clock::system()).unwrap());
            app.oidc.discover().await.expect("discovery");
            (idp, app)
        });
        let now = app.clock.now();
        let session = Session {
            id: "fuzz-session".into(),
            user: "bob".into(),
            email: "bob@example.com".into(),
            preferred_username: "bob".into(),
            groups: vec!["devs".into()],
            id_token: None,
            access_token: None,
            created_at: now,
            expires_at: now + 86_400,
            claims: Default::default(),
            ..Session::anonymous()
        };
        let empty = CheckInput::new(
            Method::GET,
            "app.example.com",
            "/",
            HeaderMap::new(),
            String::new().into(),
        );
        let lines = rt.block_on(app.sessions.save(&session, &empty)).unwrap();
        let session_cookie = cookie_header(&lines);
        Env {
            rt,
            app,
            session_cookie,
            session,
            _idp: idp,
        }
    }

    pub fn check(&self, input: &CheckInput) -> Result<Outcome, portcullis::error::Error> {
        self.rt.block_on(portcullis::authz::check(&self.app, input))
    }
}

/// `Set-Cookie` lines → the `Cookie` header a browser would send back (expired ones dropped).
pub fn cookie_header(set_cookies: &[String]) -> String {
    set_cookies
        .iter()
        .filter(|l| !l.contains("Max-Age=0"))
        .filter_map(|l| l.split(';').next())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `Set-Cookie` lines → `(name, value)` pairs (expired ones dropped).
pub fn cookie_pairs(set_cookies: &[String]) -> Vec<(String, String)> {
    set_cookies
        .iter()
        .filter(|l| !l.contains("Max-Age=0"))
        .filter_map(|l| l.split(';').next())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every reading of `path` (no query) that some server behind the gateway could act on:
/// percent-decoded 0..=3 times, `\` as `/` or not, `;params` dropped or not, `//` merged, dot
/// segments resolved; plus the WHATWG (browser) reading.
pub fn readings(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = path.to_string();
    for _ in 0..4 {
        for backslash in [false, true] {
            for params in [false, true] {
                out.push(normalize(&cur, backslash, params));
            }
        }
        let next = percent_decode_str(&cur).decode_utf8_lossy().into_owned();
        if next == cur {
            break;
        }
        cur = next;
    }
    // A request-target is never a network-path reference: `//x` is a path here, not a host.
    if let Ok(u) = url::Url::parse(&format!(
        "http://h.invalid/{}",
        path.trim_start_matches('/')
    )) {
        let p = percent_decode_str(u.path())
            .decode_utf8_lossy()
            .into_owned();
        out.push(normalize(&p, true, true));
    }
    out
}

/// The readings of [`readings`] that drop `;params`.
pub fn readings_without_params(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = path.to_string();
    for _ in 0..4 {
        for backslash in [false, true] {
            out.push(normalize(&cur, backslash, true));
        }
        let next = percent_decode_str(&cur).decode_utf8_lossy().into_owned();
        if next == cur {
            break;
        }
        cur = next;
    }
    out
}

fn normalize(path: &str, backslash: bool, params: bool) -> String {
    let p = if backslash {
        path.replace('\\', "/")
    } else {
        path.to_string()
    };
    let p = p.split(['?', '#']).next().unwrap_or("").to_string();
    let mut segs: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        let seg = if params {
            seg.split(';').next().unwrap_or("")
        } else {
            seg
        };
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    format!("/{}", segs.join("/"))
}

/// Whether `reading` is `/<area>` or below it.
pub fn under(reading: &str, area: &str) -> bool {
    reading == area
        || reading
            .strip_prefix(area)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// What an answer to a check reveals, for the invariants.
pub struct Answer {
    pub allowed: bool,
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// The invariants every check answer must hold, whatever the adapter.
///
/// * An allow is exactly one of: a public path, the header rule with its header, or the
///   valid (`devs`) session outside `/admin` and `/internal` — judged on *every* reading of
///   the path, so a path that portcullis canonicalises one way and an application reads
///   another cannot get past a rule.
/// * An allow without a session carries an empty `x-auth-request-user` (a spoofed one from the
///   client is overwritten), and with the session it names bob.
/// * No answer is a 500.
pub fn assert_invariants(
    path: &str,
    has_session: bool,
    header_rule_ok: bool,
    answer: &Answer,
    what: &str,
) {
    assert_ne!(answer.status, 500, "internal error for {what}");
    if !answer.allowed {
        return;
    }
    let readings = readings(path);
    for r in &readings {
        assert!(
            !under(r, "/internal"),
            "allowed a path under a deny rule: {path:?} read as {r:?} ({what})"
        );
        assert!(
            !under(r, "/admin"),
            "allowed a non-admin under /admin: {path:?} read as {r:?} ({what})"
        );
    }
    let user = answer.header("x-auth-request-user").unwrap_or(b"");
    if !has_session {
        // `;params` are dropped by design (README "Per-route rules"): a server that keeps them
        // reads `/public;x` as a path of its own, outside every rule, which is not a way into a
        // protected area (that is checked above on every reading, params kept or not).
        let anonymous_ok = readings_without_params(path)
            .iter()
            .all(|r| under(r, "/public") || (r == "/headers" && header_rule_ok));
        assert!(
            anonymous_ok,
            "allowed without a session: {path:?} readings {readings:?} ({what})"
        );
        assert_eq!(
            user,
            b"",
            "anonymous allow carries a user ({what}): {:?}",
            String::from_utf8_lossy(user)
        );
    } else {
        assert!(
            user == b"bob" || user == b"",
            "allow names someone else: {:?} ({what})",
            String::from_utf8_lossy(user)
        );
    }
}

/// Header names the structured targets pick from (the ones portcullis reads, and spoofable
/// identity headers).
pub const HEADER_NAMES: &[&str] = &[
    "host",
    "cookie",
    "authorization",
    "accept",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-uri",
    "x-ext-authz",
    "x-requested-with",
    "sec-fetch-mode",
    "traceparent",
    "x-request-id",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-envoy-auth-headers-to-remove",
    ":authority",
    ":path",
    ":method",
    ":scheme",
];

/// Path pieces the structured targets assemble paths from.
#[derive(Debug, arbitrary::Arbitrary)]
pub enum Piece {
    Slash,
    Admin,
    Public,
    Internal,
    Headers,
    Api,
    OAuth2,
    Start,
    Callback,
    UserInfo,
    SignOut,
    Dot,
    DotDot,
    Semicolon,
    Backslash,
    Hash,
    Question,
    Escape(u8),
    EscapeLower(u8),
    DoubleEscape(u8),
    Raw(String),
}

/// Concatenate pieces into a path (it may lack the leading `/`, on purpose).
pub fn assemble(pieces: &[Piece]) -> String {
    let mut s = String::new();
    for p in pieces {
        match p {
            Piece::Slash => s.push('/'),
            Piece::Admin => s.push_str("admin"),
            Piece::Public => s.push_str("public"),
            Piece::Internal => s.push_str("internal"),
            Piece::Headers => s.push_str("headers"),
            Piece::Api => s.push_str("api"),
            Piece::OAuth2 => s.push_str("oauth2"),
            Piece::Start => s.push_str("start?rd="),
            Piece::Callback => s.push_str("callback?state=x&code=y"),
            Piece::UserInfo => s.push_str("userinfo"),
            Piece::SignOut => s.push_str("sign_out?rd="),
            Piece::Dot => s.push('.'),
            Piece::DotDot => s.push_str(".."),
            Piece::Semicolon => s.push(';'),
            Piece::Backslash => s.push('\\'),
            Piece::Hash => s.push('#'),
            Piece::Question => s.push('?'),
            Piece::Escape(b) => s.push_str(&format!("%{b:02X}")),
            Piece::EscapeLower(b) => s.push_str(&format!("%{b:02x}")),
            Piece::DoubleEscape(b) => s.push_str(&format!("%25{b:02X}")),
            Piece::Raw(r) => s.push_str(r),
        }
    }
    s
}

/// Build a `HeaderMap` from fuzzed pairs, skipping names and values `http` refuses.
pub fn header_map(pairs: &[(u8, Vec<u8>)], raw: &[(String, Vec<u8>)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (i, v) in pairs {
        let name = HEADER_NAMES[usize::from(*i) % HEADER_NAMES.len()];
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            map.append(n, v);
        }
    }
    for (n, v) in raw {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            map.append(n, v);
        }
    }
    map
}
