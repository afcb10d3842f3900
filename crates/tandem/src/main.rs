//! `tandem`: the daemon and its CLI.
//!
//! Modules, and how their arrows go (each imports only modules further right):
//! `cli` → `daemon` → {`control`, `metrics`} → `status` → the subsystems {`carp_thread`,
//! `config_sync`, `state_sync`, `firewall_apply`, `certs_apply`, `dhcp_apply`, `dns_apply`, `hooks`,
//! `checks`} → the leaves {`config`, `lock`, `deadline`, `random`}. `status` only takes the
//! subsystems' status types; `metrics`
//! (the Prometheus and status page listener) only takes `status`; no subsystem imports
//! `daemon`, `cli`, `control`, `metrics`, `status` or another subsystem. (README, "Layout",
//! says the same.)

mod carp_thread;
mod certs_apply;
mod checks;
mod cli;
mod config;
mod config_sync;
mod control;
mod daemon;
mod deadline;
mod dhcp_apply;
mod dns_apply;
mod firewall_apply;
mod hooks;
mod lock;
mod logging;
mod metrics;
mod random;
mod state_sync;
mod status;
mod wg_apply;
mod words;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = <cli::Cli as clap::Parser>::parse();
    logging::init();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tandem: {e:#}");
            ExitCode::FAILURE
        }
    }
}
