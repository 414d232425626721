//! The binary's command line: exit codes and messages users and CI scripts rely on.

use crate::support::{free_port, Child};
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

#[test]
fn environment_variables_configure_and_are_validated() {
    let base = [
        ("PORTCULLIS_OIDC__ISSUER_URL", "https://idp.example.com"),
        ("PORTCULLIS_OIDC__CLIENT_ID", "app"),
        ("PORTCULLIS_COOKIE__SECRET", SECRET),
    ];
    let run = |extra: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        c.arg("check-config").env_remove("PORTCULLIS_CONFIG");
        for (k, v) in base.iter().chain(extra) {
            c.env(k, v);
        }
        c.output().expect("runs")
    };
    // oauth2-proxy's name for the client secret is accepted.
    let ok = run(&[("OAUTH2_PROXY_CLIENT_SECRET", "s")]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let missing = run(&[]);
    assert_eq!(missing.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("oidc.client_secret"));
    let bad = run(&[
        ("PORTCULLIS_OIDC__CLIENT_SECRET", "s"),
        ("PORTCULLIS_SERVER__HTTP_ADDRESS", "nowhere"),
    ]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("server.http_address"));
    // oauth2-proxy variables that are not read: a restriction is an error naming it, the rest
    // a warning each (Kubernetes service links of an oauth2-proxy Service are not options).
    let restricted = run(&[
        ("OAUTH2_PROXY_CLIENT_SECRET", "s"),
        ("OAUTH2_PROXY_GITHUB_ORG", "acme"),
    ]);
    assert_eq!(restricted.status.code(), Some(64), "{restricted:?}");
    assert!(String::from_utf8_lossy(&restricted.stderr).contains("OAUTH2_PROXY_GITHUB_ORG"));
    let warned = run(&[
        ("OAUTH2_PROXY_CLIENT_SECRET", "s"),
        ("OAUTH2_PROXY_REVERSE_PROXY", "true"),
        ("OAUTH2_PROXY_SERVICE_HOST", "10.0.0.1"),
    ]);
    assert_eq!(warned.status.code(), Some(0), "{warned:?}");
    let stderr = String::from_utf8_lossy(&warned.stderr);
    assert_eq!(stderr.matches("warning").count(), 1, "{stderr}");
    assert!(stderr.contains("OAUTH2_PROXY_REVERSE_PROXY"), "{stderr}");
    let unknown = run(&[
        ("PORTCULLIS_OIDC__CLIENT_SECRET", "s"),
        ("PORTCULLIS_OIDC__CLIENT_SECERT", "typo"),
    ]);
    assert_eq!(unknown.status.code(), Some(64), "unknown keys are errors");
}

#[tokio::test]
async fn dev_mode_walks_the_whole_login_to_a_signed_in_page() {
    let (port, idp_port, admin_port, grpc_port) =
        (free_port(), free_port(), free_port(), free_port());
    let _child = Child(
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args([
                "dev",
                "--port",
                &port.to_string(),
                "--idp-port",
                &idp_port.to_string(),
                "--admin-port",
                &admin_port.to_string(),
                "--grpc-port",
                &grpc_port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn dev"),
    );
    let ready = format!("http://127.0.0.1:{admin_port}/readyz");
    let mut up = false;
    for _ in 0..100 {
        if reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "dev mode became ready");
    let mut b = crate::support::Browser::new();
    let home = format!("http://127.0.0.1:{port}/");
    // The issuer's form, then the form's POST, as a person would.
    let start = b.get(&home).await;
    assert_eq!(start.status, 302);
    let authorize = start.header("location").expect("location").to_string();
    assert!(authorize.starts_with(&format!("http://127.0.0.1:{idp_port}/authorize?")));
    let form = b.client.get(&authorize).send().await.expect("form");
    let html = form.text().await.expect("html");
    assert!(html.contains("name=\"username\""), "{html}");
    let query: Vec<(String, String)> = url::Url::parse(&authorize)
        .expect("url")
        .query_pairs()
        .into_owned()
        .chain([("username".to_string(), "alice".to_string())])
        .collect();
    let posted = b
        .client
        .post(format!("http://127.0.0.1:{idp_port}/authorize"))
        .form(&query)
        .send()
        .await
        .expect("post");
    let callback = posted.headers()["location"]
        .to_str()
        .expect("loc")
        .to_string();
    let cb = b.get(&callback).await;
    assert_eq!(cb.status, 302);
    let page = b.get(&home).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("alice"), "{}", page.body);
    assert!(page.body.contains("Signed in as"), "{}", page.body);
}

#[test]
fn rule_errors_name_the_rule_and_field() {
    let body = format!(
        "{}\n[[authz.rules]]\npaths = [\"/ok\"]\naction = \"public\"\n[[authz.rules]]\npaths = [\"re:^/(broken$\"]\naction = \"deny\"\n",
        valid_toml()
    );
    let p = config_file("rules.toml", &body);
    let out = portcullis(&["check-config", "--config", p.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("authz.rules[1].paths"), "{err}");
}

#[test]
fn non_key_environment_variables_are_not_configuration() {
    // PORTCULLIS_CONFIG names the file; Kubernetes injects PORTCULLIS_SERVICE_HOST and
    // PORTCULLIS_PORT_4180_TCP for a Service named portcullis. Neither is a key.
    let p = config_file("env-ok.toml", &valid_toml());
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("check-config")
        .env("PORTCULLIS_CONFIG", &p)
        .env("PORTCULLIS_SERVICE_HOST", "10.0.0.1")
        .env("PORTCULLIS_PORT_4180_TCP", "tcp://10.0.0.1:4180")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn an_otlp_endpoint_needs_a_binary_built_with_the_otlp_feature() {
    let p = config_file(
        "otlp.toml",
        &format!(
            "{}\n[tracing]\notlp_endpoint = \"http://127.0.0.1:4318\"\n",
            valid_toml()
        ),
    );
    let out = portcullis(&["check-config", "--config", p.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    if cfg!(feature = "otlp") {
        assert_eq!(out.status.code(), Some(0), "{err}");
    } else {
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(err.contains("tracing.otlp_endpoint"), "{err}");
        assert!(err.contains("--features otlp"), "{err}");
        // And `serve` stops before binding anything.
        let out = portcullis(&["serve", "--config", p.to_str().expect("utf8")]);
        assert_eq!(out.status.code(), Some(64));
    }
}
