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
    /// Run in the foreground: XDP, userspace DNS, controller, market, control API.
    /// SIGTERM/SIGINT stop it; the pinned XDP program keeps answering (fail-static).
    Run {
        #[arg(long)]
        config: PathBuf,
        /// On a clean stop, remove the XDP program, its links and pins.
        #[arg(long)]
        detach_on_exit: bool,
    },
    /// Remove the XDP program from every interface, and its links and pins.
    Detach {
        /// Read `server.bpffs_dir` from this config.
        #[arg(long, conflicts_with = "bpffs_dir")]
        config: Option<PathBuf>,
        /// The pin directory (default /sys/fs/bpf/spillway).
        #[arg(long)]
        bpffs_dir: Option<PathBuf>,
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
                if let Some(cluster) = &c.cluster {
                    // A cluster's host cannot start without etcd: check says so too.
                    let reached = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())
                        .and_then(|rt| rt.block_on(spillway::cluster::connect(cluster)).map_err(|e| e.to_string()));
                    match reached {
                        Ok((_, revision)) => println!(
                            "{}: cluster role {}, etcd answers (revision {revision})",
                            config.display(),
                            cluster.role.as_str()
                        ),
                        Err(e) => {
                            eprintln!("{}: cluster.etcd_endpoints: {e}", config.display());
                            return ExitCode::FAILURE;
                        }
                    }
                }
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
        Command::Detach { config, bpffs_dir } => {
            let dir = match (config, bpffs_dir) {
                (Some(path), _) => match Config::load(&path) {
                    Ok(c) => c.server.bpffs_dir,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                },
                (None, Some(dir)) => dir,
                (None, None) => PathBuf::from(spillway::dataplane::pins::DEFAULT_BPFFS_DIR),
            };
            match spillway::dataplane::pins::detach(&dir) {
                Ok(removed) if removed.is_empty() => {
                    println!("{}: nothing pinned", dir.display());
                    ExitCode::SUCCESS
                }
                Ok(removed) => {
                    for r in removed {
                        println!("removed {r}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("spillway detach: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config, detach_on_exit } => {
            let opts = spillway::daemon::RunOptions { detach_on_exit };
            let result = Config::load(&config).map_err(anyhow::Error::from).and_then(|c| {
                let rt = spillway::daemon::background_runtime(c.server.background_cpus.clone())?;
                rt.block_on(spillway::daemon::run(c, opts)).map_err(anyhow::Error::from)
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
