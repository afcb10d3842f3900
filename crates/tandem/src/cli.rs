//! The command line: `tandem run` starts the daemon; every other command either works on the
//! config file alone (`check`, `ruleset`) or asks the running daemon over its control socket.

use crate::config;
use crate::config_sync;
use crate::control::{self, Reply, Request};
use crate::daemon;
use crate::firewall_apply;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "High-availability cluster daemon for Linux firewalls",
    long_about = "High-availability cluster daemon for Linux firewalls: CARP virtual IPs, \
        config sync and connection state sync.\n\n\
        Every command reads the node's config file, /etc/tandem/tandem.toml unless --config \
        (or the environment variable TANDEM_CONFIG) names another. `tandem run` is the daemon \
        (under systemd: `systemctl start tandem`); the other commands check a config or ask the \
        running daemon over its control socket."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The config file when `--config` is not given (and `TANDEM_CONFIG` is not set).
pub const DEFAULT_CONFIG: &str = "/etc/tandem/tandem.toml";

/// The node's config file.
#[derive(clap::Args)]
struct ConfigFile {
    /// The node's config file.
    #[arg(long, short, env = "TANDEM_CONFIG", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
}

/// How a command finds the running daemon.
#[derive(clap::Args)]
struct Target {
    /// The node's config file: its `[node] control_socket` names the daemon's socket.
    #[arg(long, short, env = "TANDEM_CONFIG", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// The daemon's control socket, when the config file cannot tell (it is being edited).
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl Target {
    /// The socket: `--socket`, else the config's `[node] control_socket`, read with as little
    /// as possible so that a config half edited still works.
    fn socket(&self) -> anyhow::Result<PathBuf> {
        match &self.socket {
            Some(s) => Ok(s.clone()),
            None => config::control_socket(&self.config).map_err(anyhow::Error::msg),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Run {
        #[command(flatten)]
        config: ConfigFile,
        /// Write every input of the CARP engine to this JSONL trace (for replay in tests).
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// Ask the running daemon for every VIP's state.
    Status {
        #[command(flatten)]
        target: Target,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate a config without running anything.
    Check {
        #[command(flatten)]
        config: ConfigFile,
    },
    /// Ask the running daemon to re-read its config and apply it (as SIGHUP does).
    Reload {
        #[command(flatten)]
        target: Target,
    },
    /// Print the nftables ruleset (and routes) this config gives on this node, changing nothing.
    Ruleset {
        #[command(flatten)]
        config: ConfigFile,
    },
    /// Config sync: what runs and where it came from, rollback, push.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Maintenance mode: hand every VIP to the peers and stay a backup, across restarts and
    /// reboots, until `leave`.
    Maintenance {
        #[command(subcommand)]
        action: MaintenanceAction,
    },
    /// Hand this node's VIPs to the peers now (to PEER if named), after the peers confirm
    /// they hold every connection state. This node then stays a backup until it is master
    /// again (its peer fails, or hands the VIPs back).
    Switchover {
        #[command(flatten)]
        target: Target,
        /// The node that takes over (its [node] name; needs state sync). Without it, the
        /// best backup takes over.
        peer: Option<String>,
    },
    /// Write the manual pages (tandem.8, tandem-run.8, ...) into DIR (for packaging).
    #[command(hide = true)]
    Man { dir: PathBuf },
}

#[derive(Subcommand)]
enum MaintenanceAction {
    /// Hand every VIP to the peers and stay a backup, across restarts and reboots.
    Enter {
        #[command(flatten)]
        target: Target,
    },
    /// Back in service (with preempt, the VIPs this node is preferred for come back).
    Leave {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the running config (secrets hidden) and where each area came from.
    Show {
        #[command(flatten)]
        target: Target,
    },
    /// On a peer: run the synced areas of an earlier generation again (default: the previous).
    Rollback {
        #[command(flatten)]
        target: Target,
        /// The generation to go back to.
        #[arg(long)]
        to: Option<u64>,
    },
    /// On the primary: push the current generation to every peer now.
    Push {
        #[command(flatten)]
        target: Target,
        /// Overwrite local changes (drift) on the peers; they keep a backup.
        #[arg(long)]
        force: bool,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn call(socket: &Path, req: &Request) -> anyhow::Result<Reply> {
    runtime()?.block_on(control::call(socket, req))
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            config: ConfigFile { config },
            record,
        } => {
            // Paths in the config are relative to its folder, whatever the daemon's working
            // directory later: the file is named absolutely from here on.
            let config = std::path::absolute(&config)
                .with_context(|| format!("config {}", config.display()))?;
            // Whatever the daemon creates (the control socket, state files) is its own only.
            linux::access::private_umask();
            let (cfg, own) = config_sync::load_running(&config)?;
            match linux::sched::raise_open_files_limit() {
                Ok((before, after)) if after > before => {
                    tracing::info!("open files limit raised from {before} to {after}")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
            }
            // The daemon's own work (config sync's TLS, state sync, reloads) on two threads;
            // CARP has a thread of its own.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(async {
                let d = daemon::Daemon::start(cfg, own, daemon::Options { record }).await?;
                d.run().await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { target, json } => match call(&target.socket()?, &Request::Status)? {
            Reply::Status(s) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                } else {
                    print!("{}", crate::status::render(&s));
                }
                Ok(ExitCode::SUCCESS)
            }
            Reply::Error(e) => anyhow::bail!("daemon: {e}"),
            Reply::Done(m) => anyhow::bail!("unexpected reply: {m}"),
        },
        Command::Reload { target } => match call(&target.socket()?, &Request::Reload)? {
            Reply::Done(msg) => {
                println!("{msg}");
                Ok(ExitCode::SUCCESS)
            }
            Reply::Error(e) => {
                eprintln!("tandem: reload refused, the running config is unchanged:\n{e}");
                Ok(ExitCode::FAILURE)
            }
            Reply::Status(_) => anyhow::bail!("daemon answered reload with a status"),
        },
        Command::Config(cmd) => {
            let (target, req) = match cmd {
                ConfigCommand::Show { target } => (target, Request::ConfigShow),
                ConfigCommand::Rollback { target, to } => (target, Request::ConfigRollback { to }),
                ConfigCommand::Push { target, force } => (target, Request::ConfigPush { force }),
            };
            ask(&target, &req)
        }
        Command::Maintenance { action } => match action {
            MaintenanceAction::Enter { target } => {
                ask(&target, &Request::Maintenance { enter: true })
            }
            MaintenanceAction::Leave { target } => {
                ask(&target, &Request::Maintenance { enter: false })
            }
        },
        Command::Switchover { target, peer } => ask(&target, &Request::Switchover { peer }),
        Command::Ruleset { config } => ruleset(&config.config),
        Command::Check { config } => check(&config.config),
        Command::Man { dir } => {
            man(&dir)
                .with_context(|| format!("cannot write the manual pages to {}", dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Sends a request that answers with text; prints it (or the error, failing).
fn ask(target: &Target, req: &Request) -> anyhow::Result<ExitCode> {
    match call(&target.socket()?, req)? {
        Reply::Done(text) => {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            Ok(ExitCode::SUCCESS)
        }
        Reply::Error(e) => {
            eprintln!("tandem: {e}");
            Ok(ExitCode::FAILURE)
        }
        Reply::Status(_) => anyhow::bail!("unexpected status reply"),
    }
}

/// Prints what the node would apply; a node that does not manage its firewall says so.
fn ruleset(path: &Path) -> anyhow::Result<ExitCode> {
    // On a config sync peer: with the synced areas it runs.
    let (cfg, _) = config_sync::load_running(path)?;
    if !cfg.firewall.managed {
        println!(
            "# node {} does not manage its firewall: {} has no firewall areas and no [firewall] enabled = true, so tandem applies no ruleset and leaves nftables alone",
            cfg.node.name,
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rs = runtime()?.block_on(async {
        let netlink = linux::netlink::Netlink::new().await?;
        let own = firewall_apply::own_addresses(&cfg, &netlink).await;
        firewall::render(&cfg.areas, &firewall_apply::context(&cfg, &own))
            .map_err(|e| anyhow::Error::from(cfg.locate(e)))
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

/// Validates a config: the file, then (where its devices exist) the VIPs and the ruleset
/// against this node's real addresses.
fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = config::load(path)?;
    runtime()?.block_on(async {
        let netlink = linux::netlink::Netlink::new().await?;
        let own = firewall_apply::own_addresses(&cfg, &netlink).await;
        firewall_apply::prepare(&cfg, &own).map(|_| ())?;
        anyhow::Ok(())
    })?;
    for (logical, dev) in &cfg.interfaces {
        if !Path::new("/sys/class/net").join(dev).exists() {
            eprintln!("note: interface {logical:?}: device {dev} does not exist here (not checked against its addresses)");
        }
    }
    println!(
        "{}: OK (node {}, {} on {})",
        path.display(),
        cfg.node.name,
        crate::words::count(cfg.vips.len(), "VIP"),
        crate::words::count(cfg.interfaces.len(), "interface")
    );
    Ok(ExitCode::SUCCESS)
}

/// The manual pages, from the command line's own definition: tandem.8 and one page per
/// command (tandem-run.8, tandem-config-show.8, ...).
fn man(dir: &Path) -> anyhow::Result<()> {
    fn write(cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub.clone(), dir)?;
        }
        clap_mangen::Man::new(cmd)
            .section("8")
            .manual("System Administration")
            .source(format!("tandem {}", env!("CARGO_PKG_VERSION")))
            .generate_to(dir)?;
        Ok(())
    }
    std::fs::create_dir_all(dir)?;
    let mut cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    cmd.build();
    write(cmd, dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config_of(args: &[&str]) -> PathBuf {
        match Cli::try_parse_from(args).expect("parses").command {
            Command::Check { config } | Command::Ruleset { config } => config.config,
            Command::Run { config, .. } => config.config,
            Command::Status { target, .. } | Command::Reload { target } => target.config,
            _ => panic!("no config"),
        }
    }

    #[test]
    fn config_defaults_to_etc_tandem() {
        // Only when TANDEM_CONFIG is not set around the test run.
        if std::env::var_os("TANDEM_CONFIG").is_some() {
            return;
        }
        for cmd in [
            &["tandem", "check"][..],
            &["tandem", "run"],
            &["tandem", "ruleset"],
            &["tandem", "status"],
            &["tandem", "reload"],
        ] {
            assert_eq!(
                config_of(cmd),
                Path::new("/etc/tandem/tandem.toml"),
                "{cmd:?}"
            );
        }
        assert_eq!(
            config_of(&["tandem", "check", "-c", "x.toml"]),
            Path::new("x.toml")
        );
    }

    #[test]
    fn man_pages_are_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        man(dir.path()).expect("man");
        let page = std::fs::read_to_string(dir.path().join("tandem.8")).expect("tandem.8");
        assert!(page.contains(".TH tandem 8"), "{page}");
        assert!(page.contains("/etc/tandem/tandem.toml"), "{page}");
        assert!(dir.path().join("tandem-run.8").exists());
        assert!(dir.path().join("tandem-config-show.8").exists());
        assert!(!dir.path().join("tandem-man.8").exists());
    }
}
