//! What the daemon and the engine exchange: the [`Input`]s it feeds, the [`Action`]s it
//! carries out, the [`Alarm`]s it reports and the [`TimerKind`] `poll_timeout` names. Kept apart
//! from the machinery so that the contract (serde forms included: traces are recorded and
//! replayed as JSONL) reads in one place.

use crate::model::{Conn, ConnKey};
use crate::wire::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// A conntrack event from this node's kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalEvent {
    New(Conn),
    /// May carry only what changed (see [`Conn::merge_from`]).
    Update(Conn),
    Destroy(Conn),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Input {
    Local(LocalEvent),
    /// The daemon is about to send a dump request to the kernel; conns that events touch from
    /// now on are newer than what the dump will say about them.
    DumpStarted,
    /// The complete dump. New conns, changed conns and conns refreshed by traffic are
    /// announced; nothing is deleted (entries the kernel no longer has age out of the table).
    LocalSnapshot(Vec<Conn>),
    /// The kernel's table was flushed (`conntrack -F`): forget everything, and tell peers to
    /// drop what this node announced.
    LocalFlush,
    /// A UDP payload received on the sync socket.
    Datagram {
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    /// A configured peer became reachable (sync link up): say hello now.
    PeerUp(SocketAddr),
    /// A configured peer became unreachable.
    PeerDown(SocketAddr),
    /// The operator asks for a new bulk sync.
    Resync,
    /// A planned hand-over to `handover_to` (0: whichever backup wins) is near: send what is
    /// pending, then ask every live peer to confirm it holds all of it
    /// ([`Action::BarrierDone`] when all have).
    Barrier {
        nonce: u64,
        handover_to: NodeId,
    },
    /// Whether this node forwards new connections (master of a VIP, or about to become one):
    /// the daemon says so before it adds a VIP and whenever that changes. A replicator starts
    /// with `false` (a starting node is demoted until its bulk sync completes). A node that
    /// forwards never leaves the NEW events ([`Action::NewEvents`]).
    Forwarding(bool),
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dest {
    /// Every peer: the multicast group, or each configured unicast peer.
    All,
    /// One peer, at the address its datagrams come from.
    Peer(SocketAddr),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alarm {
    /// The bulk sync did not complete after every retry (`bulk_retries`). Raised once: not
    /// again until a bulk sync completes or [`Input::Resync`] starts over. Not ready stays not
    /// ready, but the engine does not give up: it keeps asking with a growing wait
    /// ([`Config::bulk_backoff`](super::Config::bulk_backoff), up to `bulk_backoff_max`), and
    /// at once when a peer comes alive (first heard, restarted, heard again after it was
    /// silent or down, [`Input::PeerUp`]); [`Action::ReadyChanged`]`(true)` follows when a
    /// complete table arrives. The daemon may stop demoting on this alarm (as pfsync does),
    /// there may be no peer at all.
    BulkFailed { attempts: u32 },
    /// Stream seqs `first..=last` from `peer` could not be repaired; a bulk sync from that
    /// peer was requested.
    GapUnrepairable { peer: NodeId, first: u64, last: u64 },
}

impl fmt::Display for Alarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Alarm::BulkFailed { attempts } => {
                write!(
                    f,
                    "bulk sync failed after {attempts} attempts; retrying with backoff"
                )
            }
            Alarm::GapUnrepairable { peer, first, last } => {
                write!(
                    f,
                    "lost updates {first}..={last} from {peer}; bulk sync requested"
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Send {
        to: Dest,
        bytes: Vec<u8>,
    },
    /// Create or update these conns in the kernel (one batched netlink write), in order:
    /// masters come before their related conns.
    Install(Vec<Conn>),
    /// Delete these conns from the kernel.
    Remove(Vec<ConnKey>),
    /// Ready (a bulk sync completed: this node holds a complete table): CARP may stop
    /// demoting this node. `false` after [`Input::Resync`] until the new bulk completes.
    ReadyChanged(bool),
    Alarm(Alarm),
    /// Please dump the kernel's table: [`Input::DumpStarted`], then [`Input::LocalSnapshot`].
    RequestDump,
    /// A datagram that must leave only after the kernel writes queued before it are done
    /// (a barrier's confirmation says the states are in the kernel).
    SendAfterKernel {
        to: Dest,
        bytes: Vec<u8>,
    },
    /// Every peer that was alive when [`Input::Barrier`] `nonce` came confirmed it.
    BarrierDone {
        nonce: u64,
        confirmed: Vec<NodeId>,
    },
    /// Peer `from` is about to hand its VIPs to `to` (which may be this node; 0: whichever
    /// backup wins). Said once per barrier, before it is confirmed.
    HandoverRequested {
        from: NodeId,
        to: NodeId,
    },
    /// Leave (`false`) or join again (`true`) the kernel's NEW conntrack events (keep UPDATE
    /// and DESTROY). The kernel builds a NEW event for every create only while someone listens
    /// to that group, our own installs included: that halves the rate of a bulk install. So a
    /// node that does not forward ([`Input::Forwarding`]) leaves the group while a bulk sync is
    /// received ([`Config::quiet_bulk`](super::Config::quiet_bulk)). `NewEvents(true)` is
    /// always followed at once by [`Action::RequestDump`]: the conns this node's kernel created
    /// meanwhile (a backup forwards few, if any) are learned from that dump, so nothing is lost,
    /// only announced up to one bulk's duration later. Carry it out before the actions after it.
    NewEvents(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimerKind {
    Flush,
    BulkSend,
    Heartbeat,
    Repair,
    /// An unanswered probe goes again (datagrams wait for the peer's epoch to be confirmed).
    Probe,
    BulkTimeout,
    /// The wait after a failed bulk sync is over: ask again.
    BulkRetry,
    Sweep,
    Dump,
    /// Our barrier goes again to the peers that have not confirmed it.
    Barrier,
}
