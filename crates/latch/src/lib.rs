//! `latch`: the token service and its administration.
//!
//! [`main`] is the command line: it parses it, loads the configuration, and hands over to
//! `serve` or an administration command. [`server::run`] runs the services on listeners bound
//! beforehand, as `latch serve` does after catching the signals; the end-to-end tests call it
//! to run the services in their own process. Exit codes, for scripts: 0 success, 1 failure, 2
//! usage, 3 not found, 4 already exists, 5 not authenticated or not allowed, 6 an audit export
//! does not verify, 78 configuration error.

use std::process::ExitCode;

mod audit;
pub mod cli;
mod commands;
pub mod config;
mod face_models;
pub mod logging;
mod open_files;
mod output;
mod serve;
pub mod server;
mod store;
mod tls;

use clap::Parser;

pub use output::CliError;

/// Exit codes.
pub(crate) mod exit {
    pub(crate) const FAILURE: u8 = 1;
    pub(crate) const NOT_FOUND: u8 = 3;
    pub(crate) const ALREADY_EXISTS: u8 = 4;
    pub(crate) const DENIED: u8 = 5;
    pub(crate) const CONFIG: u8 = 78;
}

/// The `latch` command: parses the command line, loads the configuration, and runs the
/// command.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let overrides = cli.overrides();
    let config = match config::Config::load(cli.global.config.as_deref(), overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("latch: configuration error: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let serving = matches!(cli.command, cli::Command::Serve(_));
    if let Err(e) = logging::init(&config, serving) {
        eprintln!("latch: configuration error: {e}");
        return ExitCode::from(exit::CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("latch: cannot start the runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let format = cli.global.output();
    let remote = commands::Remote::from_flags(&cli.global);
    let result = runtime.block_on(async move {
        match cli.command {
            cli::Command::Serve(args) => serve::run(config, args).await,
            cli::Command::Tls(command) => tls::run(&config, command, &latch_core::SystemClock),
            cli::Command::Store(command) => store::run(&config, command).await,
            cli::Command::FaceModels(command) => face_models::run(&config, command, format).await,
            other => commands::run(config, other, format, remote).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::error(format, &e);
            ExitCode::from(e.exit_code())
        }
    }
}
