//! `spillway`: run the daemon, check a config, or drive the control API.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use spillway::{config::Config, ctl};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "spillway",
    version,
    about = "XDP-accelerated authoritative DNS that sells and steers spare CDN capacity"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run in the foreground: XDP, control API. SIGTERM/SIGINT stop it cleanly.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a config file; print every problem with its line. Exit 1 if any.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Command-line client of the control API.
    Ctl(ctl::CtlArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} zones, {} proxies, {} customers)",
                    config.display(),
                    c.server.zones.len(),
                    c.proxies.len(),
                    c.customers.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => {
            let result = Config::load(&config).map_err(anyhow::Error::from).and_then(|c| {
                let rt = tokio::runtime::Runtime::new()?;
                rt.block_on(spillway::daemon::run(c)).map_err(anyhow::Error::from)
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("spillway: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Ctl(args) => {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("spillway ctl: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(ctl::run(args)) {
                Ok(serde_json::Value::String(text)) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Ok(v) => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("spillway ctl: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
