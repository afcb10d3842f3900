//! The engine's configuration and its validation: every interval, size and limit the other
//! modules read from `cfg`, with the defaults the daemon runs with.

use crate::seal::SealKey;
use crate::wire::{NodeId, MAX_RECORD_LEN, OVERHEAD, STREAM_SEQ_LEN};
use std::time::Duration;

/// The smallest datagram size the engine accepts as its MTU.
pub const MIN_MTU: usize = 512;
/// The largest (a UDP payload over IPv4).
pub const MAX_MTU: usize = 65_507;

/// Engine configuration. [`Config::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's id: non-zero and unique in the cluster.
    pub node: NodeId,
    /// This daemon start's boot id: random, never reused (it is part of every nonce).
    pub epoch: u64,
    pub key: SealKey,
    /// Largest datagram (UDP payload) we send, overhead included. Default 1400.
    pub mtu: usize,
    /// How long a changed conn may wait to be collapsed with later changes. Default 20 ms.
    pub flush_delay: Duration,
    /// Default 1 s.
    pub heartbeat_interval: Duration,
    /// A peer not heard from for this long is shown as not alive. Default 3.5 s.
    pub peer_timeout: Duration,
    /// Stream datagrams kept for retransmission. Default 4096.
    pub history: usize,
    /// Out-of-order stream datagrams held per peer while waiting for a repair. Default 1024.
    pub reorder_limit: usize,
    /// Wait before the first NACK of a gap (reordering is not loss). Default 5 ms.
    pub nack_delay: Duration,
    /// Wait between NACKs of the same gap. Default 50 ms.
    pub repair_timeout: Duration,
    /// NACKs sent for a gap before giving up and asking for a bulk sync. Default 5.
    pub repair_retries: u32,
    /// A bulk request or transfer that makes no progress for this long is retried. Default 3 s.
    pub bulk_timeout: Duration,
    /// Retries after the first bulk attempt before
    /// [`Alarm::BulkFailed`](super::Alarm::BulkFailed). Default 3.
    pub bulk_retries: u32,
    /// After those retries the engine keeps asking, one attempt at a time: the first this long
    /// after the failure, each later one twice as long after the previous failure, up to
    /// `bulk_backoff_max` (never less than `bulk_backoff`). A peer coming alive cuts the wait
    /// short. Default 10 s.
    pub bulk_backoff: Duration,
    /// Default 30 s.
    pub bulk_backoff_max: Duration,
    /// Stream datagrams (live and bulk) sent per `pace` at most. Default 16 per 1 ms.
    pub burst: u32,
    pub pace: Duration,
    /// A conn whose expiry moved later by more than max(this, timeout / 4) is re-announced
    /// (or re-installed) even if nothing else changed. Default 5 s.
    pub refresh_min: Duration,
    /// Table entries are forgotten this long after their timeout ran out. Default 30 s.
    pub expiry_grace: Duration,
    /// Default 10 s.
    pub sweep_interval: Duration,
    /// How often to ask the daemon for a dump
    /// ([`Action::RequestDump`](super::Action::RequestDump)) so that conns refreshed by
    /// traffic (the kernel sends no event for that) are re-announced before the peers' copies
    /// expire. `None`: only at start. Default 30 s.
    pub dump_interval: Option<Duration>,
    /// Least time between two probes of the same peer. Default 200 ms.
    pub probe_interval: Duration,
    /// Peers tracked at most (others are rejected). Default 32.
    pub max_peers: usize,
    /// Datagrams held per peer while its epoch is being confirmed. Default 256.
    pub max_held: usize,
    /// How long the kernel's echo of a superseded install is still recognised. Default 5 s.
    pub echo_window: Duration,
    /// Leave the kernel's NEW events while a bulk sync is installed on a node that does not
    /// forward ([`Action::NewEvents`](super::Action::NewEvents)), and dump once back. Default
    /// on.
    pub quiet_bulk: bool,
}

impl Config {
    pub fn new(node: NodeId, epoch: u64, key: SealKey) -> Config {
        Config {
            node,
            epoch,
            key,
            mtu: 1400,
            flush_delay: Duration::from_millis(20),
            heartbeat_interval: Duration::from_secs(1),
            peer_timeout: Duration::from_millis(3500),
            history: 4096,
            reorder_limit: 1024,
            nack_delay: Duration::from_millis(5),
            repair_timeout: Duration::from_millis(50),
            repair_retries: 5,
            bulk_timeout: Duration::from_secs(3),
            bulk_retries: 3,
            bulk_backoff: Duration::from_secs(10),
            bulk_backoff_max: Duration::from_secs(30),
            burst: 16,
            pace: Duration::from_millis(1),
            refresh_min: Duration::from_secs(5),
            expiry_grace: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(10),
            dump_interval: Some(Duration::from_secs(30)),
            probe_interval: Duration::from_millis(200),
            max_peers: 32,
            max_held: 256,
            echo_window: Duration::from_secs(5),
            quiet_bulk: true,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node.0 == 0 {
            return Err(ConfigError::ZeroNode);
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(ConfigError::Mtu(self.mtu));
        }
        let zero = [
            ("heartbeat_interval", self.heartbeat_interval),
            ("pace", self.pace),
            ("repair_timeout", self.repair_timeout),
            ("bulk_timeout", self.bulk_timeout),
            ("bulk_backoff", self.bulk_backoff),
            ("sweep_interval", self.sweep_interval),
            ("probe_interval", self.probe_interval),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::Zero(name));
        }
        if self.dump_interval.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::Zero("dump_interval"));
        }
        let counts = [
            ("history", self.history),
            ("burst", self.burst as usize),
            ("max_peers", self.max_peers),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(ConfigError::Zero(name));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("node id 0 is reserved")]
    ZeroNode,
    #[error("mtu {0} is outside {MIN_MTU}..={MAX_MTU}")]
    Mtu(usize),
    #[error("{0} must not be zero")]
    Zero(&'static str),
}

// Keep the constant referenced (the minimum MTU leaves room for the largest record).
const _: () = assert!(MIN_MTU >= OVERHEAD + STREAM_SEQ_LEN + MAX_RECORD_LEN);
