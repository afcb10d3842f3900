//! Quiet bulk installs: a node that does not forward new connections leaves the kernel's NEW
//! conntrack events while it installs a bulk sync, and joins them again (with a dump) after.
//!
//! Why: ctnetlink builds a NEW event for every create, our own installs included, but only
//! while the NEW group has a listener; a listener halves the kernel's create rate (bench/
//! README.md, "State sync"). UPDATE and DESTROY stay subscribed (a create builds no event for
//! them).
//!
//! Why it is safe: the window is the bulk transfer (`Receiving`), on a node that is neither
//! master nor about to be ([`Input::Forwarding`](super::Input::Forwarding)). The only events
//! missed are NEWs of conns this node's kernel creates itself meanwhile: a backup forwards no
//! VIP traffic, so these are few (traffic to or from its own addresses). Their UPDATE and
//! DESTROY events still arrive (an UPDATE of a conn the table lacks is news and is announced
//! as such), and when the window closes the engine asks for [`Action::NewEvents`]`(true)` and
//! then a dump, in that order: every conn that exists at the dump is learned from it, every
//! conn created after the join reports its NEW. A conn created and gone inside the window was
//! never worth sending. The window closes when the bulk completes, fails or is retried, or as
//! soon as the daemon says the node forwards (it does so before it adds a VIP), whichever
//! comes first.

use super::api::Action;
use super::bulk::BulkRx;
use super::Replicator;

impl Replicator {
    /// Whether NEW events are off now ([`Action::NewEvents`]`(false)` was the last said).
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// [`Input::Forwarding`](super::Input::Forwarding).
    pub(super) fn on_forwarding(&mut self, forwarding: bool) {
        self.forwarding = forwarding;
        self.update_quiet();
    }

    /// Leaves or joins the NEW events as the bulk phase and forwarding now require.
    pub(super) fn update_quiet(&mut self) {
        let want = self.cfg.quiet_bulk
            && !self.forwarding
            && matches!(self.bulk, BulkRx::Receiving { .. });
        if want == self.quiet {
            return;
        }
        self.quiet = want;
        if want {
            self.counters.quiet_bulks += 1;
            self.actions.push_back(Action::NewEvents(false));
        } else {
            self.actions.push_back(Action::NewEvents(true));
            self.actions.push_back(Action::RequestDump);
        }
    }
}
