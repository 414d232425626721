//! Entry point: parse the command line, load and validate the configuration before any port
//! binds (exit 64 naming the key when invalid), then run.

use std::process::ExitCode;

use clap::Parser;
use portcullis::cli::{Cli, Command};
use portcullis::config::Config;

/// EX_USAGE from sysexits.h: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

/// mimalloc (built without transparent huge pages) instead of glibc's malloc: 7–12 % fewer
/// instructions per check at the same RSS (bench/README.md, "Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before anything can touch jsonwebtoken: its signature checks on ring.
    portcullis::token::crypto::install();
    let cli = Cli::parse();
    let (args, check_only) = match cli.command {
        Some(Command::Dev(dev)) => return finish(portcullis::app::run_dev(dev)),
        Some(Command::CheckConfig(args)) => (args, true),
        Some(Command::Serve(args)) => (args, false),
        None => (cli.serve, false),
    };
    let config = match Config::load(&args.sources()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = portcullis::pages::Pages::new(
        config.pages.templates_dir.as_deref(),
        portcullis::pages::Branding::from(&config.pages),
    ) {
        eprintln!("portcullis: invalid configuration: pages.templates_dir: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if check_only {
        for w in &config.warnings {
            eprintln!("portcullis: warning: {w}");
        }
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    // `serve` logs the warnings through its subscriber (a JSON line with log.format = "json").
    finish(portcullis::app::run(config))
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::FAILURE
        }
    }
}
