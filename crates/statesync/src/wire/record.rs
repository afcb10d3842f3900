//! The records a body carries: their type numbers ([`rtype`]), the high-level [`Record`], and
//! the layout shared by encoder and decoder (the conn flags in [`cflag`], the tuple's L4 kinds).
//! Encoding is in `encode`, decoding in `decode`.

use super::header::NodeId;
use crate::model::{Conn, ConnKey};
use serde::{Deserialize, Serialize};

/// Record type numbers.
pub mod rtype {
    pub const INSERT: u8 = 0x01;
    pub const UPDATE: u8 = 0x02;
    pub const DELETE: u8 = 0x03;
    pub const CLEAR: u8 = 0x04;
    pub const BULK_START: u8 = 0x05;
    pub const BULK_STATE: u8 = 0x06;
    pub const BULK_END: u8 = 0x07;
    pub const HEARTBEAT: u8 = 0x10;
    pub const NACK: u8 = 0x11;
    pub const GONE: u8 = 0x12;
    pub const BULK_REQUEST: u8 = 0x13;
    pub const PROBE: u8 = 0x14;
    pub const PROBE_REPLY: u8 = 0x15;
    pub const BARRIER: u8 = 0x16;
    pub const BARRIER_ACK: u8 = 0x17;
}

/// One record. State records travel in stream datagrams, the others in control datagrams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Record {
    /// A connection the sender announces for the first time (full snapshot, timeout relative).
    Insert(Conn),
    /// A newer snapshot of a connection.
    Update(Conn),
    /// The connection is gone.
    Delete(ConnKey),
    /// Forget every connection the sender announced (its table was flushed).
    Clear,
    /// A bulk transfer for `requester`'s request begins.
    BulkStart { requester: NodeId, request: u32 },
    /// One connection of a bulk transfer.
    BulkState(Conn),
    /// The bulk transfer is complete: `count` bulk states were sent.
    BulkEnd {
        requester: NodeId,
        request: u32,
        count: u64,
    },
    /// Liveness: the sender's last stream seq (so a lost tail is noticed) and readiness.
    Heartbeat {
        last_stream: u64,
        ready: bool,
        states: u32,
    },
    /// Please retransmit stream seqs `first..=last` of `epoch`.
    Nack {
        target: NodeId,
        epoch: u64,
        first: u64,
        last: u64,
    },
    /// The stream seqs you asked for before `first_available` are no longer kept.
    Gone {
        target: NodeId,
        epoch: u64,
        first_available: u64,
    },
    /// Send me your table (`target` 0: whoever hears this): all of it, or with `own_only`
    /// only the conns you announced yourself (a resync after your stream broke).
    BulkRequest {
        target: NodeId,
        request: u32,
        own_only: bool,
    },
    /// Prove that your current epoch is live: echo `nonce`.
    Probe { target: NodeId, nonce: u64 },
    /// The echo, sealed in the replier's current epoch, with its last stream seq.
    ProbeReply {
        target: NodeId,
        nonce: u64,
        last_stream: u64,
    },
    /// The sender is about to hand its VIPs to `handover_to` (0: to whichever backup wins):
    /// tell me (BARRIER-ACK with `nonce`) once you hold every state of my stream up to
    /// `last_stream` in your kernel. Nodes other than the one named stand back meanwhile.
    Barrier {
        nonce: u64,
        last_stream: u64,
        handover_to: NodeId,
    },
    /// The answer to `target`'s BARRIER `nonce`.
    BarrierAck { target: NodeId, nonce: u64 },
    /// A record type this version does not know (skipped).
    Unknown { ty: u8 },
}

impl Record {
    pub fn type_number(&self) -> u8 {
        use rtype::*;
        match self {
            Record::Insert(_) => INSERT,
            Record::Update(_) => UPDATE,
            Record::Delete(_) => DELETE,
            Record::Clear => CLEAR,
            Record::BulkStart { .. } => BULK_START,
            Record::BulkState(_) => BULK_STATE,
            Record::BulkEnd { .. } => BULK_END,
            Record::Heartbeat { .. } => HEARTBEAT,
            Record::Nack { .. } => NACK,
            Record::Gone { .. } => GONE,
            Record::BulkRequest { .. } => BULK_REQUEST,
            Record::Probe { .. } => PROBE,
            Record::ProbeReply { .. } => PROBE_REPLY,
            Record::Barrier { .. } => BARRIER,
            Record::BarrierAck { .. } => BARRIER_ACK,
            Record::Unknown { ty } => *ty,
        }
    }

    /// True for records that belong in stream datagrams.
    pub fn is_state(&self) -> bool {
        matches!(
            self,
            Record::Insert(_)
                | Record::Update(_)
                | Record::Delete(_)
                | Record::Clear
                | Record::BulkStart { .. }
                | Record::BulkState(_)
                | Record::BulkEnd { .. }
        )
    }
}

/// Conn flags: which fields follow.
pub mod cflag {
    /// The reply tuple is present (absent: it is the inverted original, i.e. no NAT).
    pub const REPLY: u16 = 1 << 0;
    pub const TIMEOUT: u16 = 1 << 1;
    pub const MARK: u16 = 1 << 2;
    pub const ZONE: u16 = 1 << 3;
    pub const TCP: u16 = 1 << 4;
    pub const SEQ_ADJ_ORIG: u16 = 1 << 5;
    pub const SEQ_ADJ_REPLY: u16 = 1 << 6;
    pub const HELPER: u16 = 1 << 7;
    pub const LABELS: u16 = 1 << 8;
    pub const MASTER: u16 = 1 << 9;
    pub const ALL: u16 = (1 << 10) - 1;
}

// A tuple's L4 kind (bits 4-5 of its flags byte; see `encode::put_tuple`).
pub(super) const L4_PORTS: u8 = 0;
pub(super) const L4_ICMP: u8 = 1;
pub(super) const L4_ICMPV6: u8 = 2;
pub(super) const L4_OTHER: u8 = 3;
