//! Configuration parsing and validation (`Config::load_raw` + `Config::validate`): a TOML
//! document (over a minimal working base) and `--set key=value` overrides.
//!
//! Invariants: never a panic; a refusal names a key and says what is wrong; an accepted
//! configuration builds its policy, cookie store and redirect allow-list without panicking.
#![no_main]

use arbitrary::Arbitrary;
use figment::providers::{Format, Toml};
use figment::Figment;
use libfuzzer_sys::fuzz_target;
use portcullis::authz::policy::Policy;
use portcullis::config::{Config, Sources};
use portcullis::session::SessionCookies;

const BASE: &str = r#"
[oidc]
issuer_url = "https://idp.example.com"
client_id = "c"
client_secret = "s"
[cookie]
secret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
"#;

#[derive(Debug, Arbitrary)]
struct Input {
    toml: String,
    sets: Vec<String>,
}

fuzz_target!(|input: Input| {
    let base = Figment::new()
        .merge(Toml::string(BASE))
        .merge(Toml::string(&input.toml));
    let sources = Sources {
        file: None,
        oauth2_proxy_file: None,
        sets: input.sets,
        use_env: false,
    };
    let result = Config::load_raw(&sources, base).and_then(Config::validate);
    match result {
        Err(e) => {
            assert!(!e.key.is_empty(), "an error without a key: {e}");
            assert!(!e.message.is_empty(), "an error without a message: {e}");
        }
        Ok(config) => {
            let _ = Policy::new(&config.authz);
            let _ = SessionCookies::new(&config.cookie, &config.server.proxy_prefix);
        }
    }
});
