//! The path canonicaliser (`authz::path::canonical`).
//!
//! Invariants: canonical(canonical(p)) == canonical(p); the result starts with `/`, has no
//! empty (but a trailing one), `.` or `..` segment, no `\`, `#`, `?`, `;` or control character, and no escape of
//! `/`, `\` or `.`; every other reading of the input (`portcullis_fuzz::readings`) that is
//! free of escapes agrees with it; nothing longer than `MAX_PATH` is accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::authz::path::{canonical, MAX_PATH};
use portcullis_fuzz::{assemble, Piece};

#[derive(Debug, arbitrary::Arbitrary)]
enum Input {
    Raw(String),
    Pieces(Vec<Piece>),
}

fuzz_target!(|input: Input| {
    let path = match input {
        Input::Raw(s) => s,
        Input::Pieces(p) => assemble(&p),
    };
    // The canonicaliser is given a path without its query.
    let path = path.split('?').next().unwrap_or("").to_string();
    let Ok(c) = canonical(&path) else {
        return;
    };
    assert!(path.len() <= MAX_PATH);
    assert!(c.starts_with('/'), "{path:?} -> {c:?}");
    assert_eq!(
        canonical(&c).as_deref(),
        Ok(c.as_str()),
        "not idempotent: {path:?} -> {c:?}"
    );
    // A trailing slash is kept on purpose (`/admin/` and `/admin` may differ); no other empty
    // segment survives.
    let body = if c.len() > 1 {
        c.strip_suffix('/').unwrap_or(&c)
    } else {
        &c
    };
    if body != "/" {
        for seg in body[1..].split('/') {
            assert!(!matches!(seg, "" | "." | ".."), "{path:?} -> {c:?}");
        }
    }
    assert!(
        !c.chars()
            .any(|ch| matches!(ch, '\\' | '#' | ';') || ch.is_control()),
        "{path:?} -> {c:?}"
    );
    let lower = c.to_ascii_lowercase();
    for bad in ["%2f", "%5c", "%2e", "%00", "%3f", "%23", "%3b"] {
        assert!(!lower.contains(bad), "{path:?} -> {c:?} keeps {bad}");
    }
    // With no escapes left anywhere, every server reads the same path.
    if path
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'%' && b != b';')
    {
        for r in portcullis_fuzz::readings(&path) {
            assert_eq!(
                r, body,
                "{path:?}: canonical {c:?}, another server reads {r:?}"
            );
        }
    }
});
