//! The binary's command line: exit codes and messages users and CI scripts rely on.

use std::process::Command;

const SECRET: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn portcullis(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .expect("runs")
}

fn config_file(name: &str, body: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write");
    p
}

fn valid_toml() -> String {
    format!(
        "[oidc]\nissuer_url = \"https://idp.example.com\"\nclient_id = \"app\"\nclient_secret = \"s\"\n[cookie]\nsecret = \"{SECRET}\"\n"
    )
}

#[test]
fn check_config_accepts_a_valid_file() {
    let p = config_file("ok.toml", &valid_toml());
    let out = portcullis(&["check-config", "--config", p.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn check_config_names_the_bad_key_and_exits_64() {
    let cases = [
        (
            valid_toml().replace(SECRET, "dG9vc2hvcnQ="),
            "cookie.secret",
        ),
        (
            valid_toml().replace("https://idp.example.com", "nope"),
            "oidc.issuer_url",
        ),
        (format!("{}\n[server]\nbogus = 1\n", valid_toml()), "bogus"),
        (
            format!("{}\n[server]\nhttp_address = \"x\"\n", valid_toml()),
            "server.http_address",
        ),
        ("not = [valid toml".to_string(), "config"),
    ];
    for (i, (body, key)) in cases.iter().enumerate() {
        let p = config_file(&format!("bad{i}.toml"), body);
        let out = portcullis(&["check-config", "--config", p.to_str().expect("utf8")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{key}: {err}");
        assert!(err.contains(key), "stderr names {key}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!err.contains(SECRET));
    }
}

#[test]
fn serve_with_invalid_config_exits_64_before_binding() {
    let p = config_file(
        "serve-bad.toml",
        &valid_toml().replace("client_id = \"app\"", ""),
    );
    let out = portcullis(&["serve", "--config", p.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("oidc.client_id"));
}

#[test]
fn a_cookie_secret_error_says_how_to_generate_one() {
    let p = config_file("short.toml", &valid_toml().replace(SECRET, "c2hvcnQ="));
    let out = portcullis(&["check-config", "--config", p.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("openssl rand -base64 32"), "{err}");
}

#[test]
fn version_and_help() {
    let out = portcullis(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = portcullis(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "check-config", "dev"] {
        assert!(help.contains(word), "{help}");
    }
}
