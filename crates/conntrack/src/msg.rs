//! ctnetlink messages, byte for byte: building requests and parsing what the kernel sends.
//!
//! Pure code (no I/O: `linux::conntrack` sends and receives the bytes), written against
//! `include/uapi/linux/netfilter/nfnetlink_conntrack.h` and
//! `net/netfilter/nf_conntrack_netlink.c`. Netlink and attribute headers are host byte
//! order; the conntrack attributes the kernel reads with `nla_get_be16/be32` (ports, status,
//! timeout, mark, zone, id, seq-adjust, NAT ports) are big-endian; addresses are network order.
//!
//! Attribute order in a create message follows libnetfilter_conntrack's `nfct_nlmsg_build`
//! (what `conntrack -I` sends), so the unit tests can compare with captured messages.
//!
//! The module is split by concern; everything public is re-exported here:
//! - `uapi`: the ABI numbers and kernel limits;
//! - `error`: decode and encode errors;
//! - `attr`: walking netlink attributes and reading their payloads;
//! - `parse`: netlink framing of a datagram from the kernel ([`parse_datagram`], [`Message`]);
//! - `decode`: a conntrack message body into an entry or a key ([`decode_conn`], [`decode_key`]);
//! - `buf`: [`MsgBuf`], writing messages and attributes;
//! - `build`: the requests ([`build_create`], [`build_update`], [`build_delete`], [`build_get`],
//!   [`build_dump`], [`build_flush`]).

mod attr;
mod buf;
mod build;
mod decode;
mod error;
mod parse;
mod uapi;

pub use buf::MsgBuf;
pub use build::{
    build_create, build_delete, build_dump, build_flush, build_get, build_update, BuildOpts,
};
pub use decode::{decode_conn, decode_key};
pub use error::{CtDecodeError, DecodeProblem, EncodeError};
pub use parse::{parse_datagram, Message};
pub use uapi::{
    IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_NEW, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_HDRLEN, NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_EXCL, NLM_F_MATCH, NLM_F_REQUEST, NLM_F_ROOT,
};

#[cfg(test)]
use attr::align4;
#[cfg(test)]
use decode::decode_conn_request;

#[cfg(test)]
mod tests;
