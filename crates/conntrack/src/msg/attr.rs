//! Netlink attributes: walking the TLVs of a container ([`Attrs`]) and reading fixed-size
//! payloads, each read checked against the payload's length (a short one is a
//! [`DecodeProblem::TooShort`] naming the attribute, never a panic).

use super::error::{err, CtDecodeError, DecodeProblem};
use super::uapi::NLA_TYPE_MASK;

/// Iterates the attributes of a container; stops (with one error) at a malformed header.
pub(super) struct Attrs<'a> {
    rest: &'a [u8],
    ctx: &'static str,
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(buf: &'a [u8], ctx: &'static str) -> Attrs<'a> {
        Attrs { rest: buf, ctx }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), CtDecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let avail = self.rest.len();
        if avail < 4 {
            self.rest = &[];
            return Some(Err(err(
                self.ctx,
                DecodeProblem::TooShort {
                    len: avail,
                    need: 4,
                },
            )));
        }
        let len = ne16(&self.rest[0..2]) as usize;
        if len < 4 || len > avail {
            self.rest = &[];
            return Some(Err(err(self.ctx, DecodeProblem::BadLength { len, avail })));
        }
        let ty = ne16(&self.rest[2..4]) & NLA_TYPE_MASK;
        let payload = &self.rest[4..len];
        self.rest = &self.rest[align4(len).min(avail)..];
        Some(Ok((ty, payload)))
    }
}

pub(super) fn need<const N: usize>(attr: &'static str, p: &[u8]) -> Result<[u8; N], CtDecodeError> {
    p.get(..N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(err(
            attr,
            DecodeProblem::TooShort {
                len: p.len(),
                need: N,
            },
        ))
}

pub(super) fn get_u8(attr: &'static str, p: &[u8]) -> Result<u8, CtDecodeError> {
    Ok(need::<1>(attr, p)?[0])
}

pub(super) fn get_be16(attr: &'static str, p: &[u8]) -> Result<u16, CtDecodeError> {
    Ok(u16::from_be_bytes(need::<2>(attr, p)?))
}

pub(super) fn get_be32(attr: &'static str, p: &[u8]) -> Result<u32, CtDecodeError> {
    Ok(u32::from_be_bytes(need::<4>(attr, p)?))
}

pub(super) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

pub(super) fn ne16(b: &[u8]) -> u16 {
    u16::from_ne_bytes([b[0], b[1]])
}

pub(super) fn ne32(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}
