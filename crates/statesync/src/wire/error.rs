//! The wire errors: what a datagram or record that does not decode is ([`DecodeError`]), and
//! why a record cannot be encoded ([`EncodeError`]).

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram too short: {0} bytes")]
    TooShort(usize),
    #[error("bad magic")]
    BadMagic,
    #[error("unsupported version {0}")]
    BadVersion(u8),
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("record truncated")]
    Truncated,
    #[error("malformed record (type {ty}): {what}")]
    Malformed { ty: u8, what: &'static str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{0} too long to send")]
    TooLong(&'static str),
    #[error("no room left in the datagram")]
    Full,
}
