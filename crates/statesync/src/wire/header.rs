//! The datagram header: the sender's [`NodeId`], the body [`Kind`], the length-checked
//! [`Packet`] view over a received datagram (no accessor can panic) and the [`Header`]
//! representation that parses from and encodes to its 28 bytes.

use super::error::DecodeError;
use super::{HEADER_LEN, MAGIC, OVERHEAD, VERSION};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A node's id in the cluster (from its config; non-zero, unique per node).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node{}", self.0)
    }
}

/// What the header's kind byte says the body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Sequenced state records (insert, update, delete, clear, bulk); repaired when lost.
    Stream,
    /// Unsequenced control records (heartbeat, nack, bulk request, probe...).
    Control,
}

impl Kind {
    pub fn number(self) -> u8 {
        match self {
            Kind::Stream => 1,
            Kind::Control => 2,
        }
    }

    pub fn from_number(n: u8) -> Option<Kind> {
        match n {
            1 => Some(Kind::Stream),
            2 => Some(Kind::Control),
            _ => None,
        }
    }
}

/// A datagram buffer whose length has been checked to hold a header and a tag.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Packet<T>, DecodeError> {
        let len = buffer.as_ref().len();
        if len < OVERHEAD {
            return Err(DecodeError::TooShort(len));
        }
        Ok(Packet { buffer })
    }

    fn header(&self) -> &[u8; HEADER_LEN] {
        match self.buffer.as_ref().first_chunk::<HEADER_LEN>() {
            Some(h) => h,
            // new_checked guarantees the length; this arm is never taken.
            None => &[0; HEADER_LEN],
        }
    }

    pub fn magic(&self) -> [u8; 2] {
        let h = self.header();
        [h[0], h[1]]
    }
    pub fn version(&self) -> u8 {
        self.header()[2]
    }
    pub fn kind(&self) -> u8 {
        self.header()[3]
    }
    pub fn key_id(&self) -> u32 {
        be32(&self.header()[4..8])
    }
    pub fn node(&self) -> u32 {
        be32(&self.header()[8..12])
    }
    pub fn epoch(&self) -> u64 {
        be64(&self.header()[12..20])
    }
    pub fn seq(&self) -> u64 {
        be64(&self.header()[20..28])
    }
    /// The authenticated header bytes.
    pub fn header_bytes(&self) -> &[u8] {
        self.header()
    }
    /// The sealed body and tag.
    pub fn sealed(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
}

/// The datagram header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub kind: Kind,
    pub key_id: u32,
    pub node: NodeId,
    pub epoch: u64,
    pub seq: u64,
}

impl Header {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Header, DecodeError> {
        if p.magic() != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if p.version() != VERSION {
            return Err(DecodeError::BadVersion(p.version()));
        }
        let kind = Kind::from_number(p.kind()).ok_or(DecodeError::UnknownKind(p.kind()))?;
        Ok(Header {
            kind,
            key_id: p.key_id(),
            node: NodeId(p.node()),
            epoch: p.epoch(),
            seq: p.seq(),
        })
    }

    /// Parses the header of a whole datagram.
    pub fn decode(datagram: &[u8]) -> Result<Header, DecodeError> {
        Header::parse(&Packet::new_checked(datagram)?)
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&MAGIC);
        b[2] = VERSION;
        b[3] = self.kind.number();
        b[4..8].copy_from_slice(&self.key_id.to_be_bytes());
        b[8..12].copy_from_slice(&self.node.0.to_be_bytes());
        b[12..20].copy_from_slice(&self.epoch.to_be_bytes());
        b[20..28].copy_from_slice(&self.seq.to_be_bytes());
        b
    }
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b.get(..4).unwrap_or(&[0; 4]));
    u32::from_be_bytes(a)
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b.get(..8).unwrap_or(&[0; 8]));
    u64::from_be_bytes(a)
}
