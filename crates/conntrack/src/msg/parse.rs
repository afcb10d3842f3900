//! Netlink framing: walking the messages of one datagram from the kernel and telling them
//! apart (conntrack entries, errors and ACKs with their extended-ack text, end of dump).

use super::attr::{align4, ne16, ne32, Attrs};
use super::decode::decode_conn;
use super::error::{err, CtDecodeError, DecodeProblem};
use super::uapi::*;
use crate::model::Conn;

/// What a parsed netlink message is.
#[derive(Debug)]
pub enum Message {
    /// A conntrack entry: `IPCTNL_MSG_CT_NEW` (dump entry, NEW or UPDATE event) or
    /// `IPCTNL_MSG_CT_DELETE` (DESTROY event).
    Conn {
        /// `IPCTNL_MSG_CT_*`.
        msg: u8,
        /// nlmsg_flags (NEW events carry NLM_F_CREATE|NLM_F_EXCL).
        flags: u16,
        /// nlmsg_seq: the request's sequence number (0 for events).
        seq: u32,
        /// nlmsg_pid: for events, the port id of the socket whose request caused it (0 when
        /// packets did).
        portid: u32,
        /// The entry.
        conn: Box<Conn>,
    },
    /// NLMSG_ERROR: `errno` 0 is an ACK.
    Error {
        /// The sequence number of the request it answers.
        seq: u32,
        /// The errno, positive (0: ACK).
        errno: i32,
        /// The kernel's extended-ack text (`NLMSGERR_ATTR_MSG`), if any.
        message: Option<String>,
    },
    /// NLMSG_DONE of a dump.
    Done {
        /// The dump request's sequence number.
        seq: u32,
    },
    /// Anything else (other subsystems, NOOP, a conntrack message we could not decode: see
    /// [`Message::Bad`]).
    Other,
    /// A conntrack message whose body did not decode.
    Bad {
        /// nlmsg_seq.
        seq: u32,
        /// What was wrong.
        error: CtDecodeError,
    },
}

/// Walks the netlink messages of one datagram. A header that does not fit stops the walk with
/// an error; a body that does not decode yields [`Message::Bad`] and the walk goes on.
pub fn parse_datagram(mut buf: &[u8], mut each: impl FnMut(Message)) -> Result<(), CtDecodeError> {
    while !buf.is_empty() {
        if buf.len() < NLMSG_HDRLEN {
            return Err(err(
                "nlmsghdr",
                DecodeProblem::TooShort {
                    len: buf.len(),
                    need: NLMSG_HDRLEN,
                },
            ));
        }
        let len = ne32(&buf[0..4]) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(err(
                "nlmsghdr",
                DecodeProblem::BadLength {
                    len,
                    avail: buf.len(),
                },
            ));
        }
        let ty = ne16(&buf[4..6]);
        let flags = ne16(&buf[6..8]);
        let seq = ne32(&buf[8..12]);
        let pid = ne32(&buf[12..16]);
        let body = &buf[NLMSG_HDRLEN..len];
        each(parse_one(ty, flags, seq, pid, body));
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(())
}

fn parse_one(ty: u16, flags: u16, seq: u32, portid: u32, body: &[u8]) -> Message {
    match ty {
        NLMSG_ERROR => parse_error(flags, seq, body),
        NLMSG_DONE => Message::Done { seq },
        NLMSG_NOOP | NLMSG_OVERRUN => Message::Other,
        _ if ty >> 8 == NFNL_SUBSYS_CTNETLINK => {
            let msg = (ty & 0xff) as u8;
            if msg != IPCTNL_MSG_CT_NEW && msg != IPCTNL_MSG_CT_DELETE {
                return Message::Other;
            }
            match decode_conn(body) {
                Ok(conn) => Message::Conn {
                    msg,
                    flags,
                    seq,
                    portid,
                    conn: Box::new(conn),
                },
                Err(error) => Message::Bad { seq, error },
            }
        }
        _ => Message::Other,
    }
}

fn parse_error(flags: u16, seq: u32, body: &[u8]) -> Message {
    // struct nlmsgerr { int error; struct nlmsghdr msg; } then, if NLM_F_ACK_TLVS, attributes.
    if body.len() < 4 + NLMSG_HDRLEN {
        let errno = if body.len() >= 4 {
            errno_of(&body[0..4])
        } else {
            0
        };
        return Message::Error {
            seq,
            errno,
            message: None,
        };
    }
    let errno = errno_of(&body[0..4]);
    // The error names the request by its own header's sequence number.
    let req_seq = ne32(&body[12..16]);
    let seq = if req_seq != 0 { req_seq } else { seq };
    let mut message = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        let orig_len = ne32(&body[4..8]) as usize;
        let skip = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            align4(orig_len)
        };
        if let Some(tlvs) = body.get(4 + skip..) {
            for (ty, p) in Attrs::new(tlvs, "nlmsgerr attributes").flatten() {
                if ty == NLMSGERR_ATTR_MSG {
                    let s = p.split(|b| *b == 0).next().unwrap_or_default();
                    message = Some(String::from_utf8_lossy(s).into_owned());
                }
            }
        }
    }
    Message::Error {
        seq,
        errno,
        message,
    }
}

/// `nlmsgerr.error` is a negative errno; i32::MIN (never sent) saturates rather than
/// overflowing.
fn errno_of(b: &[u8]) -> i32 {
    i32::from_ne_bytes([b[0], b[1], b[2], b[3]]).saturating_neg()
}
