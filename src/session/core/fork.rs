//! The fork set (SANS-IO): the INVITEs a call has sent to reach a callee, one per contact,
//! and what becomes of each (RFC 3261 §16.7 as a B2BUA applies it to its own forks, §9.1 for
//! CANCEL).
//!
//! A fork may be CANCELled only once something provisional came back (§9.1: a CANCEL before
//! any response may overtake its INVITE); until then the wish is kept and the CANCEL goes out
//! with the first provisional. A CANCELled fork that never sends its final response is given
//! up after [`CANCEL_GRACE`] (64·T1, the lifetime of an INVITE client transaction), and its
//! transaction is abandoned. The set decides nothing about the call: which 2xx wins and which
//! failure is the best are the call's (see [`crate::domain::better_failure`]).
//!
//! In: [`ForkSet::add`], [`ForkSet::on_provisional`], [`ForkSet::on_final`],
//! [`ForkSet::cancel_all`], [`ForkSet::handle_timeout`]. Out: [`ForkSet::poll_command`]
//! and [`ForkSet::poll_timeout`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::sip::message::{Method, Request};
use crate::sip::transaction::Branch;
use crate::sip::transport::Peer;

/// How long after CANCEL we wait for a fork's final response before giving up on it (64·T1,
/// RFC 3261 §17.1.1.2 Timer B).
pub const CANCEL_GRACE: Duration = Duration::from_secs(32);

/// Names the dial (or the placed call) a fork belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DialId(pub u64);

/// One forked INVITE.
#[derive(Debug, Clone)]
pub struct Fork {
    pub dial: DialId,
    /// The extension (or URI) it rings.
    pub target: String,
    pub branch: Branch,
    pub invite: Request,
    pub peer: Peer,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Sent; nothing back yet.
    Calling,
    /// A provisional came back: a CANCEL may go out.
    Proceeding,
    /// CANCEL wanted before any provisional: sent with the first one; given up at the time.
    CancelWanted { give_up: Instant },
    /// CANCEL sent; given up at the time if no final response comes.
    Cancelled { give_up: Instant },
    /// A final response came, or the fork was given up.
    Done,
}

/// What the driver must do for the fork set.
#[derive(Debug, Clone, PartialEq)]
pub enum ForkCommand {
    /// Send CANCEL for this fork ([`cancel_request`] builds it).
    Cancel { index: usize },
    /// These forks never answered their CANCEL: abandon their client transactions.
    Abandon { branches: Vec<Branch> },
}

/// Every fork a call sent, in order.
#[derive(Debug, Default)]
pub struct ForkSet {
    forks: Vec<Fork>,
    commands: VecDeque<ForkCommand>,
}

impl ForkSet {
    pub fn new() -> ForkSet {
        ForkSet::default()
    }

    /// A fork just sent; returns its index.
    pub fn add(
        &mut self,
        dial: DialId,
        target: String,
        branch: Branch,
        invite: Request,
        peer: Peer,
    ) -> usize {
        self.forks.push(Fork {
            dial,
            target,
            branch,
            invite,
            peer,
            state: State::Calling,
        });
        self.forks.len() - 1
    }

    /// The fork whose INVITE carried `branch`.
    pub fn find(&self, branch: &Branch) -> Option<usize> {
        self.forks.iter().position(|f| f.branch == *branch)
    }

    pub fn get(&self, index: usize) -> Option<&Fork> {
        self.forks.get(index)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Fork> {
        self.forks.iter()
    }

    /// A provisional response (100 included, §9.1) on fork `index`: a wished-for CANCEL goes
    /// out now. True when the fork is still wanted (not being cancelled, not done).
    pub fn on_provisional(&mut self, index: usize) -> bool {
        let Some(fork) = self.forks.get_mut(index) else {
            return false;
        };
        match fork.state {
            State::Calling => {
                fork.state = State::Proceeding;
                true
            }
            State::Proceeding => true,
            State::CancelWanted { give_up } => {
                fork.state = State::Cancelled { give_up };
                self.commands.push_back(ForkCommand::Cancel { index });
                false
            }
            State::Cancelled { .. } | State::Done => false,
        }
    }

    /// A final response on fork `index`. False when the fork was already done (a 2xx
    /// retransmission, a late answer after it was given up).
    pub fn on_final(&mut self, index: usize) -> bool {
        match self.forks.get_mut(index) {
            Some(fork) if fork.state != State::Done => {
                fork.state = State::Done;
                true
            }
            _ => false,
        }
    }

    /// Whether fork `index` has had its final response (or was given up).
    pub fn is_done(&self, index: usize) -> bool {
        self.forks.get(index).is_none_or(|f| f.state == State::Done)
    }

    /// Whether fork `index` is being (or was) CANCELled.
    #[cfg(test)]
    pub fn is_cancelled(&self, index: usize) -> bool {
        self.forks.get(index).is_some_and(|f| {
            matches!(
                f.state,
                State::Cancelled { .. } | State::CancelWanted { .. }
            )
        })
    }

    /// Every fork has had its final response (or was given up).
    pub fn all_done(&self) -> bool {
        self.forks.iter().all(|f| f.state == State::Done)
    }

    /// Every fork of `dial` has had its final response.
    pub fn dial_done(&self, dial: DialId) -> bool {
        self.forks
            .iter()
            .filter(|f| f.dial == dial)
            .all(|f| f.state == State::Done)
    }

    /// Some fork of `dial` still waits for its final response.
    pub fn dial_waiting(&self, dial: DialId) -> bool {
        !self.dial_done(dial)
    }

    /// CANCELs every fork still ringing (now, or with its first provisional).
    pub fn cancel_all(&mut self, now: Instant) {
        let give_up = now + CANCEL_GRACE;
        for (index, fork) in self.forks.iter_mut().enumerate() {
            match fork.state {
                State::Calling => fork.state = State::CancelWanted { give_up },
                State::Proceeding => {
                    fork.state = State::Cancelled { give_up };
                    self.commands.push_back(ForkCommand::Cancel { index });
                }
                State::CancelWanted { .. } | State::Cancelled { .. } | State::Done => {}
            }
        }
    }

    /// Gives up the CANCELled forks whose final response is overdue.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut abandoned = Vec::new();
        for fork in &mut self.forks {
            if let State::CancelWanted { give_up } | State::Cancelled { give_up } = fork.state
                && now >= give_up
            {
                fork.state = State::Done;
                abandoned.push(fork.branch.clone());
            }
        }
        if !abandoned.is_empty() {
            self.commands.push_back(ForkCommand::Abandon {
                branches: abandoned,
            });
        }
    }

    /// When [`Self::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.forks
            .iter()
            .filter_map(|f| match f.state {
                State::CancelWanted { give_up } | State::Cancelled { give_up } => Some(give_up),
                _ => None,
            })
            .min()
    }

    pub fn poll_command(&mut self) -> Option<ForkCommand> {
        self.commands.pop_front()
    }
}

/// CANCEL for a forked INVITE (RFC 3261 §9.1): the same Request-URI, Call-ID, From, To,
/// CSeq number and top Via (so it shares the INVITE's branch).
pub fn cancel_request(invite: &Request) -> Request {
    let mut cancel = Request::new(Method::Cancel, invite.uri.clone());
    for name in ["Via", "Route", "From", "To", "Call-ID"] {
        for v in invite.headers.get_all(name) {
            cancel.headers.push(name, v.to_owned());
        }
    }
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
    cancel.headers.push("Max-Forwards", "70");
    cancel.headers.push("CSeq", format!("{seq} CANCEL"));
    cancel.headers.push("Content-Length", "0");
    cancel
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse_uri;
    use crate::sip::transport::Transport;

    fn invite(branch: &str) -> Request {
        let uri = parse_uri("sip:2001@192.0.2.10:5062").expect("uri");
        let mut req = Request::new(Method::Invite, uri);
        let h = &mut req.headers;
        h.push("Via", format!("SIP/2.0/UDP 192.0.2.1:5060;branch={branch}"));
        h.push("From", "<sip:1001@example.com>;tag=a1");
        h.push("To", "<sip:2001@example.com>");
        h.push("Call-ID", "fork-test");
        h.push("CSeq", "1 INVITE");
        req
    }

    fn set_of(n: usize) -> ForkSet {
        let mut set = ForkSet::new();
        let peer = Peer {
            transport: Transport::Udp,
            addr: "192.0.2.10:5062".parse().expect("addr"),
        };
        for i in 0..n {
            let branch = format!("z9hG4bK{i}");
            set.add(
                DialId(1),
                "2001".into(),
                Branch::new(branch.clone()),
                invite(&branch),
                peer,
            );
        }
        set
    }

    fn commands(set: &mut ForkSet) -> Vec<ForkCommand> {
        std::iter::from_fn(|| set.poll_command()).collect()
    }

    #[test]
    fn a_fork_that_rang_is_cancelled_at_once() {
        let (mut set, t0) = (set_of(1), Instant::now());
        assert!(set.on_provisional(0));
        set.cancel_all(t0);
        assert_eq!(commands(&mut set), [ForkCommand::Cancel { index: 0 }]);
        assert!(set.is_cancelled(0));
    }

    #[test]
    fn a_cancel_before_any_provisional_waits_for_the_first_one() {
        let (mut set, t0) = (set_of(1), Instant::now());
        set.cancel_all(t0);
        assert_eq!(
            commands(&mut set),
            [],
            "§9.1: no CANCEL before a provisional"
        );
        assert!(!set.on_provisional(0), "the fork is no longer wanted");
        assert_eq!(commands(&mut set), [ForkCommand::Cancel { index: 0 }]);
        assert!(!set.on_provisional(0));
        assert_eq!(commands(&mut set), [], "one CANCEL per fork");
    }

    #[test]
    fn a_cancelled_fork_that_never_answers_is_abandoned_after_64_t1() {
        let (mut set, t0) = (set_of(2), Instant::now());
        set.on_provisional(0);
        set.on_provisional(1);
        set.cancel_all(t0);
        commands(&mut set);
        assert!(set.on_final(1), "fork 1 answers its CANCEL with 487");
        assert_eq!(set.poll_timeout(), Some(t0 + CANCEL_GRACE));
        set.handle_timeout(t0 + CANCEL_GRACE - Duration::from_millis(1));
        assert_eq!(commands(&mut set), []);
        set.handle_timeout(t0 + CANCEL_GRACE);
        assert_eq!(
            commands(&mut set),
            [ForkCommand::Abandon {
                branches: vec![Branch::new("z9hG4bK0")]
            }]
        );
        assert!(set.all_done());
        assert_eq!(set.poll_timeout(), None);
    }

    #[test]
    fn a_200_crossing_the_cancel_finishes_the_fork_once() {
        let (mut set, t0) = (set_of(1), Instant::now());
        set.on_provisional(0);
        set.cancel_all(t0);
        commands(&mut set);
        assert!(set.on_final(0), "the 200 that crossed our CANCEL is news");
        assert!(!set.on_final(0), "its retransmission is not");
        assert_eq!(set.poll_timeout(), None, "nothing left to give up");
    }

    #[test]
    fn a_dial_is_done_when_each_of_its_forks_is() {
        let mut set = set_of(2);
        assert!(set.dial_waiting(DialId(1)));
        set.on_final(0);
        assert!(!set.dial_done(DialId(1)));
        set.on_final(1);
        assert!(set.dial_done(DialId(1)));
    }

    #[test]
    fn cancel_copies_the_invites_identity_and_top_via() {
        let inv = invite("z9hG4bKabc");
        let cancel = cancel_request(&inv);
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!(cancel.uri, inv.uri);
        for name in ["Via", "From", "To", "Call-ID"] {
            assert_eq!(cancel.headers.get(name), inv.headers.get(name), "{name}");
        }
        assert_eq!(cancel.headers.get("CSeq"), Some("1 CANCEL"));
    }
}
