//! `tandem`: the daemon and its CLI. The binary owns config loading, the event loop that ties
//! the engines to the kernel, and the control API the CLI talks to.

mod config;
mod configsync;
mod control;
mod daemon;
mod record;
mod ruleset;
mod state_sync;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "High-availability cluster daemon for Linux firewalls"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Write every input of the CARP engine to this JSONL trace (for replay in tests).
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// Ask the running daemon for every VIP's state.
    Status {
        #[arg(long, short)]
        config: PathBuf,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate a config without running anything.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Ask the running daemon to re-read its config and apply it (as SIGHUP does).
    Reload {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the nftables ruleset (and routes) this config gives on this node, changing nothing.
    Ruleset {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Config sync: what runs and where it came from, rollback, push.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the running config (secrets hidden) and where each area came from.
    Show {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// On a peer: run the synced areas of an earlier generation again (default: the previous).
    Rollback {
        #[arg(long, short)]
        config: PathBuf,
        /// The generation to go back to.
        #[arg(long)]
        to: Option<u64>,
    },
    /// On the primary: push the current generation to every peer now.
    Push {
        #[arg(long, short)]
        config: PathBuf,
        /// Overwrite local changes (drift) on the peers; they keep a backup.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tandem: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config(cmd) => {
            let (config, req) = match cmd {
                ConfigCommand::Show { config } => (config, control::Request::ConfigShow),
                ConfigCommand::Rollback { config, to } => {
                    (config, control::Request::ConfigRollback { to })
                }
                ConfigCommand::Push { config, force } => {
                    (config, control::Request::ConfigPush { force })
                }
            };
            let cfg = config::load(&config)?;
            let reply = runtime()?.block_on(control::call(&cfg.node.control_socket, &req))?;
            match reply {
                control::Reply::Done(text) => {
                    print!("{text}");
                    if !text.ends_with('\n') {
                        println!();
                    }
                    Ok(ExitCode::SUCCESS)
                }
                control::Reply::Error(e) => {
                    eprintln!("tandem: {e}");
                    Ok(ExitCode::FAILURE)
                }
                control::Reply::Status(_) => anyhow::bail!("unexpected status reply"),
            }
        }
        Command::Run { config, record } => {
            let cfg = configsync::load_running(&config)?;
            runtime()?.block_on(async {
                let d = daemon::Daemon::start(cfg, record.as_deref()).await?;
                d.run().await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { config, json } => {
            let cfg = config::load(&config)?;
            let reply = runtime()?.block_on(control::call(
                &cfg.node.control_socket,
                &control::Request::Status,
            ))?;
            match reply {
                control::Reply::Status(s) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&s)?);
                    } else {
                        print!("{}", control::render(&s));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                control::Reply::Error(e) => anyhow::bail!("daemon: {e}"),
                control::Reply::Done(m) => anyhow::bail!("unexpected reply: {m}"),
            }
        }
        Command::Reload { config } => {
            let cfg = config::load(&config)?;
            let reply = runtime()?.block_on(control::call(
                &cfg.node.control_socket,
                &control::Request::Reload,
            ))?;
            match reply {
                control::Reply::Done(msg) => {
                    println!("{msg}");
                    Ok(ExitCode::SUCCESS)
                }
                control::Reply::Error(e) => {
                    eprintln!("tandem: reload refused, the running config is unchanged:\n{e}");
                    Ok(ExitCode::FAILURE)
                }
                control::Reply::Status(_) => anyhow::bail!("daemon answered reload with a status"),
            }
        }
        Command::Ruleset { config } => {
            // On a config sync peer: with the synced areas it runs.
            let cfg = configsync::load_running(&config)?;
            let rs = runtime()?.block_on(async {
                let netlink = linux::netlink::Netlink::new().await?;
                let ctx = ruleset::context(&cfg, &netlink).await;
                firewall::render(&cfg.areas, &ctx).map_err(|e| anyhow::Error::from(cfg.locate(e)))
            })?;
            print!("{}", rs.nft);
            for r in &rs.routes {
                println!(
                    "# route {} via {} dev {} ({})",
                    r.destination, r.gateway, r.device, r.gateway_name
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let cfg = config::load(&config)?;
            if cfg.firewall.managed {
                // The areas refer to this node's addresses ("lan:address", NAT targets), so
                // they are checked against what the kernel has here.
                runtime()?.block_on(async {
                    let netlink = linux::netlink::Netlink::new().await?;
                    let ctx = ruleset::context(&cfg, &netlink).await;
                    firewall::validate(&cfg.areas, &ctx)
                        .map_err(|e| anyhow::Error::from(cfg.locate(e)))
                })?;
            }
            for (logical, dev) in daemon::missing_devices(&cfg) {
                eprintln!("note: interface {logical:?}: device {dev} does not exist here");
            }
            println!(
                "{}: OK (node {}, {} VIPs on {} interfaces)",
                config.display(),
                cfg.node.name,
                cfg.vips.len(),
                cfg.interfaces.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
