//! The numbers of the netlink, nfnetlink and ctnetlink ABI (`linux/netlink.h`,
//! `linux/netfilter/nfnetlink.h`, `linux/netfilter/nfnetlink_conntrack.h`) and the kernel's
//! limits on what a conntrack entry may carry. The public ones are re-exported as
//! `conntrack::msg::*`.

// --- netlink (linux/netlink.h) ---
/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Message type: nothing.
pub const NLMSG_NOOP: u16 = 1;
/// Message type: an error, or an ACK (error 0).
pub const NLMSG_ERROR: u16 = 2;
/// Message type: end of a dump.
pub const NLMSG_DONE: u16 = 3;
/// Message type: data lost.
pub const NLMSG_OVERRUN: u16 = 4;
/// A request.
pub const NLM_F_REQUEST: u16 = 0x1;
/// Ask for an ACK.
pub const NLM_F_ACK: u16 = 0x4;
/// In a GET: the whole table.
pub const NLM_F_ROOT: u16 = 0x100;
/// In a GET: all entries that match.
pub const NLM_F_MATCH: u16 = 0x200;
/// In a GET: a dump.
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
/// In a NEW: fail if the entry exists (on a NEW event: the entry is new).
pub const NLM_F_EXCL: u16 = 0x200;
/// In a NEW: create the entry if it does not exist (on a NEW event: the entry is new).
pub const NLM_F_CREATE: u16 = 0x400;
/// In an NLMSG_ERROR: the original message was capped to its header.
pub const NLM_F_CAPPED: u16 = 0x100;
/// In an NLMSG_ERROR: extended-ack TLVs follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;
pub(super) const NLMSGERR_ATTR_MSG: u16 = 1;
pub(super) const NLA_F_NESTED: u16 = 0x8000;
pub(super) const NLA_TYPE_MASK: u16 = 0x3fff;

// --- nfnetlink ---
pub(super) const NFNL_SUBSYS_CTNETLINK: u16 = 1;
pub(super) const NFGENMSG_LEN: usize = 4;
/// A new or changed entry (request, dump entry, NEW or UPDATE event).
pub const IPCTNL_MSG_CT_NEW: u8 = 0;
/// Read one entry or dump the table.
pub const IPCTNL_MSG_CT_GET: u8 = 1;
/// Delete an entry or flush the table (request), or a DESTROY event.
pub const IPCTNL_MSG_CT_DELETE: u8 = 2;
pub(super) const AF_UNSPEC: u8 = 0;
pub(super) const AF_INET: u8 = 2;
pub(super) const AF_INET6: u8 = 10;

// --- enum ctattr_type ---
pub(super) const CTA_TUPLE_ORIG: u16 = 1;
pub(super) const CTA_TUPLE_REPLY: u16 = 2;
pub(super) const CTA_STATUS: u16 = 3;
pub(super) const CTA_PROTOINFO: u16 = 4;
pub(super) const CTA_HELP: u16 = 5;
pub(super) const CTA_NAT_SRC: u16 = 6;
pub(super) const CTA_TIMEOUT: u16 = 7;
pub(super) const CTA_MARK: u16 = 8;
pub(super) const CTA_ID: u16 = 12;
pub(super) const CTA_NAT_DST: u16 = 13;
pub(super) const CTA_TUPLE_MASTER: u16 = 14;
pub(super) const CTA_SEQ_ADJ_ORIG: u16 = 15;
pub(super) const CTA_SEQ_ADJ_REPLY: u16 = 16;
pub(super) const CTA_ZONE: u16 = 18;
pub(super) const CTA_LABELS: u16 = 22;
// --- enum ctattr_tuple ---
pub(super) const CTA_TUPLE_IP: u16 = 1;
pub(super) const CTA_TUPLE_PROTO: u16 = 2;
pub(super) const CTA_TUPLE_ZONE: u16 = 3;
// --- enum ctattr_ip ---
pub(super) const CTA_IP_V4_SRC: u16 = 1;
pub(super) const CTA_IP_V4_DST: u16 = 2;
pub(super) const CTA_IP_V6_SRC: u16 = 3;
pub(super) const CTA_IP_V6_DST: u16 = 4;
// --- enum ctattr_l4proto ---
pub(super) const CTA_PROTO_NUM: u16 = 1;
pub(super) const CTA_PROTO_SRC_PORT: u16 = 2;
pub(super) const CTA_PROTO_DST_PORT: u16 = 3;
pub(super) const CTA_PROTO_ICMP_ID: u16 = 4;
pub(super) const CTA_PROTO_ICMP_TYPE: u16 = 5;
pub(super) const CTA_PROTO_ICMP_CODE: u16 = 6;
pub(super) const CTA_PROTO_ICMPV6_ID: u16 = 7;
pub(super) const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
pub(super) const CTA_PROTO_ICMPV6_CODE: u16 = 9;
// --- enum ctattr_protoinfo / ctattr_protoinfo_tcp ---
pub(super) const CTA_PROTOINFO_TCP: u16 = 1;
pub(super) const CTA_PROTOINFO_TCP_STATE: u16 = 1;
pub(super) const CTA_PROTOINFO_TCP_WSCALE_ORIGINAL: u16 = 2;
pub(super) const CTA_PROTOINFO_TCP_WSCALE_REPLY: u16 = 3;
pub(super) const CTA_PROTOINFO_TCP_FLAGS_ORIGINAL: u16 = 4;
pub(super) const CTA_PROTOINFO_TCP_FLAGS_REPLY: u16 = 5;
// --- enum ctattr_nat / ctattr_protonat ---
pub(super) const CTA_NAT_V4_MINIP: u16 = 1;
pub(super) const CTA_NAT_V4_MAXIP: u16 = 2;
pub(super) const CTA_NAT_PROTO: u16 = 3;
pub(super) const CTA_NAT_V6_MINIP: u16 = 4;
pub(super) const CTA_NAT_V6_MAXIP: u16 = 5;
pub(super) const CTA_PROTONAT_PORT_MIN: u16 = 1;
pub(super) const CTA_PROTONAT_PORT_MAX: u16 = 2;
// --- enum ctattr_seqadj ---
pub(super) const CTA_SEQADJ_CORRECTION_POS: u16 = 1;
pub(super) const CTA_SEQADJ_OFFSET_BEFORE: u16 = 2;
pub(super) const CTA_SEQADJ_OFFSET_AFTER: u16 = 3;
// --- enum ctattr_help ---
pub(super) const CTA_HELP_NAME: u16 = 1;

/// The most the kernel stores in `CTA_LABELS` (`NF_CT_LABELS_MAX_SIZE`).
pub(super) const LABELS_MAX: usize = 16;
/// `NF_CT_HELPER_NAME_LEN` minus the NUL.
pub(super) const HELPER_NAME_MAX: usize = 15;
