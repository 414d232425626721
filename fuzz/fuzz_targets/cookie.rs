//! The session cookie codec with chunking: seal → split → Set-Cookie → Cookie header → join →
//! open, with the browser's cookies mangled in between, plus raw attacker-chosen cookies.
//!
//! Invariants:
//! * an untouched round trip gives back exactly the session, and re-encoding what was decoded
//!   gives cookies that decode to the same session again;
//! * after any mangling (a flipped byte, a truncated, dropped, swapped or duplicated chunk,
//!   stray cookies) the result is either nothing or exactly the original session — never a
//!   different one;
//! * arbitrary cookie text (no key) never opens;
//! * a payload split under any cookie name joins back to itself, in at most `MAX_CHUNKS`
//!   cookies that each fit the browser budget.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use portcullis::authz::input::CheckInput;
use portcullis::session::cookie::{CookieCodec, CookieKey, MAX_CHUNKS};
use portcullis::session::{Session, SessionCookies};
use portcullis_fuzz::cookie_pairs;

#[derive(Debug, Arbitrary)]
enum Input {
    RoundTrip {
        user: String,
        email: String,
        groups: Vec<String>,
        id_token: Option<String>,
        claims: Vec<(String, String)>,
        ttl: u32,
        mangle: Vec<Mangle>,
    },
    /// A `Cookie` header as an attacker would send it.
    RawHeader(Vec<u8>),
    /// `CookieCodec::open` straight on a value, under a name.
    RawValue { name: String, value: String },
    /// Split/join under any cookie name with any payload.
    Split { name: String, payload: String },
}

#[derive(Debug, Arbitrary)]
enum Mangle {
    Flip {
        chunk: u8,
        pos: u16,
        xor: u8,
    },
    Truncate {
        chunk: u8,
        len: u16,
    },
    Drop {
        chunk: u8,
    },
    Swap {
        a: u8,
        b: u8,
    },
    Duplicate {
        chunk: u8,
    },
    Stray {
        name: String,
        value: String,
        front: bool,
    },
}

struct Env {
    sessions: SessionCookies,
    codec: CookieCodec,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let config = portcullis_fuzz::config(&[], "http://127.0.0.1:9/");
        let key = CookieKey::from_base64(portcullis_fuzz::COOKIE_KEY).unwrap();
        Env {
            sessions: SessionCookies::new(&config.cookie, &config.server.proxy_prefix),
            codec: CookieCodec::new(&key, &[]),
        }
    })
}

fn input_with(cookie_header: &[u8]) -> CheckInput {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(cookie_header) {
        headers.insert(http::header::COOKIE, v);
    }
    CheckInput::new(
        Method::GET,
        "app.example.com",
        "/",
        headers,
        String::new().into(),
    )
}

fn header_of(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

const NOW: i64 = 1_800_000_000;

fuzz_target!(|input: Input| {
    let env = env();
    match input {
        Input::RoundTrip {
            user,
            email,
            groups,
            id_token,
            claims,
            ttl,
            mangle,
        } => {
            let session = Session {
                id: "fuzz".into(),
                user,
                email,
                preferred_username: String::new(),
                groups,
                id_token,
                access_token: None,
                created_at: NOW,
                expires_at: NOW + 1 + i64::from(ttl),
                claims: claims
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect::<BTreeMap<_, _>>(),
                ..Session::anonymous()
            };
            let empty = input_with(b"");
            let Ok(lines) = env.sessions.save(&session, &empty) else {
                return; // too large for cookies: refused, not truncated
            };
            let pairs = cookie_pairs(&lines);
            assert!(
                !pairs.is_empty() && pairs.len() <= MAX_CHUNKS,
                "{} cookies",
                pairs.len()
            );
            for line in &lines {
                assert!(
                    line.len() <= 4096,
                    "Set-Cookie line of {} bytes",
                    line.len()
                );
            }
            let header = header_of(&pairs);
            let loaded = env.sessions.load(&input_with(header.as_bytes()), NOW);
            assert_eq!(loaded.as_deref(), Some(&session), "untouched round trip");

            // Re-encode what was decoded, with the old cookies still in the request.
            let again = env
                .sessions
                .save(loaded.as_ref().unwrap(), &input_with(header.as_bytes()))
                .expect("a session that fitted once fits again");
            let header2 = portcullis_fuzz::cookie_header(&again);
            let reloaded = env.sessions.load(&input_with(header2.as_bytes()), NOW);
            assert_eq!(reloaded.as_deref(), Some(&session), "re-encoded round trip");

            // Mangle the cookies the browser sends back.
            let mut jar = pairs.clone();
            for m in &mangle {
                let n = jar.len().max(1);
                match m {
                    Mangle::Flip { chunk, pos, xor } => {
                        if let Some((_, v)) = jar.get_mut(usize::from(*chunk) % n) {
                            let mut bytes = v.clone().into_bytes();
                            if !bytes.is_empty() {
                                let i = usize::from(*pos) % bytes.len();
                                bytes[i] ^= xor;
                            }
                            *v = String::from_utf8_lossy(&bytes).into_owned();
                        }
                    }
                    Mangle::Truncate { chunk, len } => {
                        if let Some((_, v)) = jar.get_mut(usize::from(*chunk) % n) {
                            let mut cut = usize::from(*len).min(v.len());
                            while !v.is_char_boundary(cut) {
                                cut -= 1;
                            }
                            v.truncate(cut);
                        }
                    }
                    Mangle::Drop { chunk } => {
                        if !jar.is_empty() {
                            jar.remove(usize::from(*chunk) % n);
                        }
                    }
                    Mangle::Swap { a, b } => {
                        if !jar.is_empty() {
                            let (a, b) = (usize::from(*a) % n, usize::from(*b) % n);
                            let va = jar[a].1.clone();
                            jar[a].1 = jar[b].1.clone();
                            jar[b].1 = va;
                        }
                    }
                    Mangle::Duplicate { chunk } => {
                        if let Some(c) = jar.get(usize::from(*chunk) % n).cloned() {
                            jar.push(c);
                        }
                    }
                    Mangle::Stray { name, value, front } => {
                        let c = (name.clone(), value.clone());
                        if *front {
                            jar.insert(0, c);
                        } else {
                            jar.push(c);
                        }
                    }
                }
            }
            let mangled = env
                .sessions
                .load(&input_with(header_of(&jar).as_bytes()), NOW);
            if let Some(s) = mangled.as_deref() {
                assert_eq!(
                    s, &session,
                    "a mangled cookie opened to a different session"
                );
            }
            if jar == pairs {
                assert_eq!(mangled.as_deref(), Some(&session));
            }
        }
        Input::RawHeader(bytes) => {
            let input = input_with(&bytes);
            assert!(
                env.sessions.load(&input, NOW).is_none(),
                "a cookie header made up without the key opened"
            );
            // Clearing and pending-login handling must cope with whatever came in.
            let _ = env.sessions.clear(&input);
        }
        Input::RawValue { name, value } => {
            assert!(env.codec.open::<Session>(&name, &value).is_none());
            assert!(env.codec.open::<serde_json::Value>(&name, &value).is_none());
        }
        Input::Split { name, payload } => {
            let Ok(sealed) = env.codec.seal(&name, &payload) else {
                return;
            };
            let Ok(parts) = env.codec.split(&name, sealed.clone()) else {
                return;
            };
            assert!(!parts.is_empty() && parts.len() <= MAX_CHUNKS);
            for (n, v) in &parts {
                assert!(n.len() + 1 + v.len() <= 4000, "cookie {n} over budget");
            }
            let map: BTreeMap<&str, &str> = parts
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let joined = env.codec.join(&name, |n| map.get(n).copied());
            assert_eq!(joined.as_deref(), Some(sealed.as_str()), "split/join");
            let opened: Option<String> = env.codec.open(&name, &sealed);
            assert_eq!(opened.as_deref(), Some(payload.as_str()));
        }
    }
});
