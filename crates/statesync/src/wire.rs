//! The replication wire protocol: one UDP datagram is a plaintext header, a sealed body and a
//! 16-byte Poly1305 tag (see [`crate::seal`]).
//!
//! ```text
//! header (28 bytes, authenticated as associated data, all integers big-endian)
//!   0  magic     2  "TS" (0x54 0x53)
//!   2  version   1  1
//!   3  kind      1  1 = stream (sequenced state records), 2 = control
//!   4  key id    4  names the pre-shared key (derived from it; wrong key = foreign cluster)
//!   8  node      4  sender node id (non-zero)
//!  12  epoch     8  sender's boot id (random per daemon start)
//!  20  seq       8  datagram sequence number within the epoch (1, 2, ...; nonce + replay)
//! body (encrypted)
//!   stream: stream seq u64, then records      control: records
//! tag  16
//! ```
//!
//! A record is `type u8, length u16, body[length]`. Unknown types are skipped by length (and
//! counted by the engine); a malformed body is skipped the same way. The encoding is canonical:
//! [`Record::parse`] accepts only what [`Record::emit`] produces, so decode → encode round-trips
//! byte for byte (the fuzz tests check this).
//!
//! Parsing follows smoltcp: [`Packet`] wraps a buffer after one length check and its accessors
//! cannot panic; [`Header`] and [`Record`] are the high-level representations.
//!
//! The module is split by concern; everything public is re-exported here:
//! - `header`: [`NodeId`], [`Kind`], [`Packet`], [`Header`];
//! - `record`: [`Record`], its type numbers ([`rtype`]) and the conn flags ([`cflag`]);
//! - `encode`: [`Record::emit`], [`emit_conn_record`], [`emit_delete`] and record sizes;
//! - `decode`: [`Record::parse`], [`Records`], [`split_stream`];
//! - `error`: [`DecodeError`], [`EncodeError`].

mod decode;
mod encode;
mod error;
mod header;
mod record;

pub use decode::{split_stream, Records};
pub use encode::{conn_record_len, delete_record_len, emit_conn_record, emit_delete};
pub use error::{DecodeError, EncodeError};
pub use header::{Header, Kind, NodeId, Packet};
pub use record::{cflag, rtype, Record};

pub const MAGIC: [u8; 2] = *b"TS";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 28;
pub const TAG_LEN: usize = 16;
/// Header plus tag: what every datagram carries besides its body.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The stream sequence number that starts a stream body.
pub const STREAM_SEQ_LEN: usize = 8;
/// Record header: type and length.
pub const RECORD_HEADER_LEN: usize = 3;
/// Longest helper name we send (the kernel's `NF_CT_HELPER_NAME_LEN` is 16).
pub const MAX_HELPER_LEN: usize = 32;
/// Longest label bitmap we send (the kernel's is 16 bytes).
pub const MAX_LABELS_LEN: usize = 32;
/// The largest record this module can produce (an IPv6 conn with every optional field).
pub const MAX_RECORD_LEN: usize = RECORD_HEADER_LEN
    + 2
    + 3 * MAX_TUPLE_LEN
    + 4 * 3
    + 2
    + 5
    + 24
    + 1
    + MAX_HELPER_LEN
    + 1
    + MAX_LABELS_LEN;
const MAX_TUPLE_LEN: usize = 1 + 32 + 5;

#[cfg(test)]
mod tests;
