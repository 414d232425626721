//! Command line: `serve` (the default), `check-config` and `dev`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Sources;

/// OIDC login proxy for Envoy ext_authz (HTTP and gRPC), nginx auth_request and forward auth.
#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options for `serve` when no subcommand is given.
    #[command(flatten)]
    pub serve: ConfigArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Serve(ConfigArgs),
    /// Validate the configuration and exit: 0 when valid, 64 (naming the key) when not.
    CheckConfig(ConfigArgs),
    /// Run the proxy on 127.0.0.1:4180 with an embedded development OpenID issuer.
    Dev(DevArgs),
}

#[derive(Debug, Clone, Args, Default)]
pub struct ConfigArgs {
    /// Configuration file (TOML, or YAML by extension .yaml/.yml).
    #[arg(short, long, env = "PORTCULLIS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// An oauth2-proxy TOML configuration file; its options are mapped onto ours (underneath
    /// --config, the environment and --set). Options without effect are warned about.
    #[arg(long, value_name = "FILE")]
    pub oauth2_proxy_config: Option<PathBuf>,
    /// Override one key, e.g. --set oidc.client_id=app (repeatable; wins over file and env).
    #[arg(short, long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Shorthand for --set server.http_address=ADDR.
    #[arg(long, value_name = "ADDR")]
    pub http_address: Option<String>,
    /// Shorthand for --set server.grpc_address=ADDR.
    #[arg(long, value_name = "ADDR")]
    pub grpc_address: Option<String>,
    /// Shorthand for --set server.admin_address=ADDR.
    #[arg(long, value_name = "ADDR")]
    pub admin_address: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Port of the proxy on 127.0.0.1.
    #[arg(long, default_value_t = 4180)]
    pub port: u16,
    /// Port of the development issuer on 127.0.0.1.
    #[arg(long, default_value_t = 4190)]
    pub idp_port: u16,
    /// Port of the admin listener on 127.0.0.1.
    #[arg(long, default_value_t = 4182)]
    pub admin_port: u16,
    /// Port of the gRPC ext_authz listener on 127.0.0.1.
    #[arg(long, default_value_t = 4181)]
    pub grpc_port: u16,
}

impl ConfigArgs {
    /// The configuration sources these flags name (the environment included).
    pub fn sources(&self) -> Sources {
        let mut sets = self.sets.clone();
        if let Some(a) = &self.http_address {
            sets.push(format!("server.http_address={a}"));
        }
        if let Some(a) = &self.grpc_address {
            sets.push(format!("server.grpc_address={a}"));
        }
        if let Some(a) = &self.admin_address {
            sets.push(format!("server.admin_address={a}"));
        }
        Sources {
            file: self.config.clone(),
            oauth2_proxy_file: self.oauth2_proxy_config.clone(),
            sets,
            use_env: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_is_the_default() {
        let cli = Cli::parse_from(["portcullis", "--config", "x.toml"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.config, Some(PathBuf::from("x.toml")));
    }

    #[test]
    fn flags_become_sets() {
        let cli = Cli::parse_from([
            "portcullis",
            "serve",
            "--set",
            "a.b=1",
            "--http-address",
            "127.0.0.1:1",
            "--grpc-address",
            "127.0.0.1:2",
        ]);
        let Some(Command::Serve(args)) = cli.command else {
            panic!("serve expected")
        };
        assert_eq!(
            args.sources().sets,
            vec![
                "a.b=1",
                "server.http_address=127.0.0.1:1",
                "server.grpc_address=127.0.0.1:2"
            ]
        );
    }
}
