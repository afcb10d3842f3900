//! Building requests: create, update, delete, get, dump and flush, with the checks that keep
//! the kernel from refusing them. Attribute order in a create follows libnetfilter_conntrack's
//! `nfct_nlmsg_build` (what `conntrack -I` sends).

use super::buf::MsgBuf;
use super::error::EncodeError;
use super::uapi::*;
use crate::model::{status, tcp_flags, Conn, ConnKey, PortProto, Tuple, L4};

/// Status bits a peer's entry must not carry into `CTA_STATUS` of a create: the kernel refuses
/// a change of EXPECTED / CONFIRMED / DYING with EBUSY, ignores the rest (`IPS_UNCHANGEABLE_MASK`)
/// or they describe the other node (offload, template, NAT clash).
const STATUS_NOT_SENT: u32 = status::EXPECTED
    | status::CONFIRMED
    | status::DYING
    | status::SRC_NAT
    | status::DST_NAT
    | status::SRC_NAT_DONE
    | status::DST_NAT_DONE
    | status::SEQ_ADJUST
    | status::TEMPLATE
    | status::NAT_CLASH
    | status::OFFLOAD
    | status::HW_OFFLOAD;

fn family_of(t: &Tuple) -> u8 {
    if t.src.is_ipv6() {
        AF_INET6
    } else {
        AF_INET
    }
}

fn check_tuple(t: &Tuple, v6: bool) -> Result<(), EncodeError> {
    if t.src.is_ipv6() != v6 || t.dst.is_ipv6() != v6 {
        return Err(EncodeError::MixedFamilies);
    }
    Ok(())
}

fn check_conn(c: &Conn) -> Result<(), EncodeError> {
    let v6 = c.orig.src.is_ipv6();
    check_tuple(&c.orig, v6)?;
    check_tuple(&c.reply, v6)?;
    if let Some(m) = &c.master {
        check_tuple(m, v6)?;
    }
    let (o, r) = (c.orig.l4.proto_number(), c.reply.l4.proto_number());
    if o != r {
        return Err(EncodeError::ProtocolMismatch { orig: o, reply: r });
    }
    if let Some(l) = &c.labels {
        if l.len() % 4 != 0 || l.len() > LABELS_MAX {
            return Err(EncodeError::BadLabels(l.len()));
        }
    }
    if let Some(h) = &c.helper {
        if h.len() > HELPER_NAME_MAX || h.as_bytes().contains(&0) {
            return Err(EncodeError::BadHelper(h.clone()));
        }
    }
    Ok(())
}

/// Options of the request builders.
#[derive(Clone, Copy, Debug)]
pub struct BuildOpts {
    /// OR `IP_CT_TCP_FLAG_BE_LIBERAL` into both directions of TCP entries.
    pub tcp_be_liberal: bool,
}

/// A TCP conn's CTA_PROTOINFO (state, window scale and flags), with BE_LIBERAL added when the
/// options ask for it: TCP window edges are not in ctnetlink, so injected entries need it.
fn put_tcp_protoinfo(b: &mut MsgBuf, c: &Conn, opts: BuildOpts, full_mask: bool) {
    if let (
        Some(t),
        L4::Ports {
            proto: PortProto::Tcp,
            ..
        },
    ) = (&c.tcp, c.orig.l4)
    {
        let extra = if opts.tcp_be_liberal {
            tcp_flags::BE_LIBERAL
        } else {
            0
        };
        b.tcp(t, extra, full_mask);
    }
}

/// `IPCTNL_MSG_CT_NEW` with `NLM_F_CREATE|NLM_F_EXCL` (plus `extra_flags`): a new entry with
/// tuples, status, timeout, mark, protoinfo, NAT, seq-adjust, helper, zone, labels, master.
///
/// With NAT, the reply tuple sent is the *untranslated* one (`orig.inverted()`): the kernel
/// derives the translated reply tuple from `CTA_NAT_DST` / `CTA_NAT_SRC` itself, and only then
/// sets `IPS_SRC_NAT` / `IPS_DST_NAT`, which make it rewrite packets.
pub fn build_create(
    b: &mut MsgBuf,
    c: &Conn,
    seq: u32,
    extra_flags: u16,
    opts: BuildOpts,
) -> Result<(), EncodeError> {
    check_conn(c)?;
    let timeout = c.timeout.ok_or(EncodeError::NoTimeout)?;
    let nat = c.nat();
    let start = b.begin(
        IPCTNL_MSG_CT_NEW,
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | extra_flags,
        seq,
        family_of(&c.orig),
    );
    b.tuple(CTA_TUPLE_ORIG, &c.orig);
    if nat.is_none() {
        b.tuple(CTA_TUPLE_REPLY, &c.reply);
    } else {
        b.tuple(CTA_TUPLE_REPLY, &c.orig.inverted());
    }
    if let Some(m) = &c.master {
        b.tuple(CTA_TUPLE_MASTER, m);
    }
    // The kernel sets CONFIRMED before applying CTA_STATUS and refuses to see it cleared.
    let st = (c.status & !STATUS_NOT_SENT) | status::CONFIRMED;
    if st != status::CONFIRMED {
        b.put_be32(CTA_STATUS, st);
    }
    b.put_be32(CTA_TIMEOUT, timeout);
    if c.mark != 0 {
        b.put_be32(CTA_MARK, c.mark);
    }
    // The kernel zeroes the TCP state before applying a create's protoinfo: mask = flags is exact.
    put_tcp_protoinfo(b, c, opts, false);
    if let Some(r) = &nat.src {
        b.nat(CTA_NAT_SRC, r);
    }
    if let Some(r) = &nat.dst {
        b.nat(CTA_NAT_DST, r);
    }
    if let Some(s) = &c.seq_adj_orig {
        b.seqadj(CTA_SEQ_ADJ_ORIG, s);
    }
    if let Some(s) = &c.seq_adj_reply {
        b.seqadj(CTA_SEQ_ADJ_REPLY, s);
    }
    if let Some(h) = &c.helper {
        let n = b.nest(CTA_HELP);
        let mut name = h.as_bytes().to_vec();
        name.push(0);
        b.put(CTA_HELP_NAME, &name);
        b.nest_end(n);
    }
    if c.zone != 0 {
        b.put_be16(CTA_ZONE, c.zone);
    }
    if let Some(l) = &c.labels {
        if !l.is_empty() {
            b.put(CTA_LABELS, l);
        }
    }
    b.end(start);
    Ok(())
}

/// `IPCTNL_MSG_CT_NEW` without `NLM_F_CREATE`: changes an existing entry (timeout, status,
/// TCP protoinfo, mark, seq-adjust, labels). NAT, helper and master cannot change after
/// creation (the kernel answers EOPNOTSUPP), so they are not sent.
pub fn build_update(
    b: &mut MsgBuf,
    c: &Conn,
    seq: u32,
    extra_flags: u16,
    with_status: bool,
    opts: BuildOpts,
) -> Result<(), EncodeError> {
    check_conn(c)?;
    let start = b.begin(
        IPCTNL_MSG_CT_NEW,
        NLM_F_REQUEST | extra_flags,
        seq,
        family_of(&c.orig),
    );
    b.tuple(CTA_TUPLE_ORIG, &c.orig);
    if with_status {
        let st = (c.status & !STATUS_NOT_SENT)
            | status::CONFIRMED
            | (c.status & status::EXPECTED)
            | if c.master.is_some() {
                status::EXPECTED
            } else {
                0
            };
        b.put_be32(CTA_STATUS, st);
    }
    if let Some(t) = c.timeout {
        b.put_be32(CTA_TIMEOUT, t);
    }
    b.put_be32(CTA_MARK, c.mark);
    put_tcp_protoinfo(b, c, opts, true);
    if let Some(s) = &c.seq_adj_orig {
        b.seqadj(CTA_SEQ_ADJ_ORIG, s);
    }
    if let Some(s) = &c.seq_adj_reply {
        b.seqadj(CTA_SEQ_ADJ_REPLY, s);
    }
    if c.zone != 0 {
        b.put_be16(CTA_ZONE, c.zone);
    }
    if let Some(l) = &c.labels {
        if !l.is_empty() {
            b.put(CTA_LABELS, l);
        }
    }
    b.end(start);
    Ok(())
}

/// `IPCTNL_MSG_CT_DELETE` of one entry by original tuple and zone.
pub fn build_delete(
    b: &mut MsgBuf,
    k: &ConnKey,
    seq: u32,
    extra_flags: u16,
) -> Result<(), EncodeError> {
    check_tuple(&k.orig, k.orig.src.is_ipv6())?;
    let start = b.begin(
        IPCTNL_MSG_CT_DELETE,
        NLM_F_REQUEST | extra_flags,
        seq,
        family_of(&k.orig),
    );
    b.tuple(CTA_TUPLE_ORIG, &k.orig);
    if k.zone != 0 {
        b.put_be16(CTA_ZONE, k.zone);
    }
    b.end(start);
    Ok(())
}

/// `IPCTNL_MSG_CT_GET` of one entry.
pub fn build_get(b: &mut MsgBuf, k: &ConnKey, seq: u32) -> Result<(), EncodeError> {
    check_tuple(&k.orig, k.orig.src.is_ipv6())?;
    let start = b.begin(
        IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        family_of(&k.orig),
    );
    b.tuple(CTA_TUPLE_ORIG, &k.orig);
    if k.zone != 0 {
        b.put_be16(CTA_ZONE, k.zone);
    }
    b.end(start);
    Ok(())
}

/// `IPCTNL_MSG_CT_GET` with `NLM_F_DUMP` and family AF_UNSPEC: every entry, both families.
pub fn build_dump(b: &mut MsgBuf, seq: u32) {
    let start = b.begin(
        IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        AF_UNSPEC,
    );
    b.end(start);
}

/// `IPCTNL_MSG_CT_DELETE` without a tuple, AF_UNSPEC, version 0: flushes the table.
pub fn build_flush(b: &mut MsgBuf, seq: u32) {
    let start = b.begin(
        IPCTNL_MSG_CT_DELETE,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        AF_UNSPEC,
    );
    b.end(start);
}
