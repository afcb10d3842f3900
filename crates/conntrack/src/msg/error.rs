//! What can go wrong: decoding a message from the kernel ([`CtDecodeError`]: which attribute,
//! [`DecodeProblem`]: what was wrong with it) and turning a connection into a request
//! ([`EncodeError`]).

/// Why a message from the kernel could not be decoded: which attribute, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{attr}: {problem}")]
pub struct CtDecodeError {
    /// The attribute (or header) at fault, e.g. `"CTA_TUPLE_ORIG/CTA_TUPLE_IP/CTA_IP_V4_SRC"`.
    pub attr: &'static str,
    /// What was wrong with it.
    pub problem: DecodeProblem,
}

/// What was wrong with an attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeProblem {
    /// Shorter than its type needs.
    #[error("{len} bytes where {need} are needed")]
    TooShort {
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A length field that points outside its container.
    #[error("length {len} does not fit the {avail} bytes left")]
    BadLength {
        /// The length field.
        len: usize,
        /// Bytes left in the container.
        avail: usize,
    },
    /// A required attribute is absent.
    #[error("missing")]
    Missing,
    /// The tuple's addresses are of two families.
    #[error("source and destination addresses of different families")]
    MixedFamilies,
}

pub(super) fn err(attr: &'static str, problem: DecodeProblem) -> CtDecodeError {
    CtDecodeError { attr, problem }
}

/// Why a connection cannot be turned into a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A create needs `CTA_TIMEOUT` (the kernel refuses without it).
    #[error("a create needs a timeout (CTA_TIMEOUT is mandatory)")]
    NoTimeout,
    /// Addresses of two families in one connection.
    #[error("addresses of both IPv4 and IPv6 in one connection")]
    MixedFamilies,
    /// Original and reply tuples of different L4 protocols.
    #[error("original and reply tuples have different protocols ({orig} and {reply})")]
    ProtocolMismatch {
        /// Original tuple's protocol number.
        orig: u8,
        /// Reply tuple's protocol number.
        reply: u8,
    },
    /// Labels longer than 16 bytes or not a multiple of 4.
    #[error("labels of {0} bytes (must be a multiple of 4, at most 16)")]
    BadLabels(usize),
    /// A helper name longer than the kernel's 15 characters or containing NUL.
    #[error("helper name {0:?} is not a valid kernel helper name")]
    BadHelper(String),
}
