//! Our 2xx answers waiting for their ACK (SANS-IO): a UAS core retransmits its 2xx to an
//! INVITE itself, the transaction being gone (RFC 3261 §13.3.1.4, RFC 6026 §7.1): first after
//! T1, doubling up to T2, until the ACK arrives; after 64·T1 without it, the session is to be
//! ended. Only over unreliable transports: over TCP the transport delivers it or fails.
//!
//! In: [`Unacked::start`], [`Unacked::ack`], [`Unacked::handle_timeout`]. Out:
//! [`Unacked::poll_output`], [`Unacked::poll_timeout`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::sip::message::Response;
use crate::sip::transport::Peer;

/// T1, the RTT estimate (RFC 3261 §17.1.1.1): the first retransmission interval.
pub const T1: Duration = Duration::from_millis(500);
/// T2 caps the retransmission interval (§13.3.1.4).
pub const T2: Duration = Duration::from_secs(4);
/// Without an ACK for this long the 2xx is given up (§13.3.1.4: 64·T1).
pub const GIVE_UP: Duration = Duration::from_secs(32);

/// What to do next for the unacknowledged answers of side `S`.
#[derive(Debug, Clone, PartialEq)]
pub enum UnackedOutput<S> {
    /// Send this 2xx again.
    Retransmit { to: Peer, resp: Response },
    /// No ACK came in time: end the call (§13.3.1.4).
    GaveUp { side: S },
}

#[derive(Debug)]
struct Pending<S> {
    side: S,
    resp: Response,
    peer: Peer,
    /// Timer G-style retransmission interval: T1, doubling, capped at T2.
    interval: Duration,
    retransmit_at: Instant,
    /// Timer H-style give-up.
    give_up_at: Instant,
}

/// Every 2xx of a call still waiting for its ACK, by side.
#[derive(Debug)]
pub struct Unacked<S> {
    pending: Vec<Pending<S>>,
    out: VecDeque<UnackedOutput<S>>,
}

impl<S> Default for Unacked<S> {
    fn default() -> Self {
        Unacked {
            pending: Vec::new(),
            out: VecDeque::new(),
        }
    }
}

impl<S: Copy + PartialEq> Unacked<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A 2xx was just sent to `side` at `peer` (nothing to do over a reliable transport).
    pub fn start(&mut self, now: Instant, side: S, resp: Response, peer: Peer) {
        if peer.transport.is_reliable() {
            return;
        }
        self.pending.retain(|p| p.side != side);
        self.pending.push(Pending {
            side,
            resp,
            peer,
            interval: T1,
            retransmit_at: now + T1,
            give_up_at: now + GIVE_UP,
        });
    }

    /// The ACK from `side` arrived.
    pub fn ack(&mut self, side: S) {
        self.pending.retain(|p| p.side != side);
    }

    /// Forgets every pending answer (the call is ending).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    #[cfg(test)]
    pub fn is_waiting(&self, side: S) -> bool {
        self.pending.iter().any(|p| p.side == side)
    }

    /// Retransmits what is due and gives up what is overdue.
    pub fn handle_timeout(&mut self, now: Instant) {
        let out = &mut self.out;
        self.pending.retain_mut(|p| {
            if now >= p.give_up_at {
                out.push_back(UnackedOutput::GaveUp { side: p.side });
                return false;
            }
            if now >= p.retransmit_at {
                out.push_back(UnackedOutput::Retransmit {
                    to: p.peer,
                    resp: p.resp.clone(),
                });
                p.interval = (p.interval * 2).min(T2);
                p.retransmit_at = now + p.interval;
            }
            true
        });
    }

    /// When [`Self::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending
            .iter()
            .map(|p| p.retransmit_at.min(p.give_up_at))
            .min()
    }

    pub fn poll_output(&mut self) -> Option<UnackedOutput<S>> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::StatusCode;
    use crate::sip::transport::Transport;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Side {
        Caller,
    }

    fn peer(transport: Transport) -> Peer {
        Peer {
            transport,
            addr: "192.0.2.7:5060".parse().expect("addr"),
        }
    }

    fn ok() -> Response {
        Response {
            status: StatusCode::OK,
            reason: "OK".into(),
            headers: Default::default(),
            body: Default::default(),
        }
    }

    /// Runs the table to `until`, firing each timer at its deadline; the instants at which it
    /// retransmitted, as offsets from `t0`, and whether it gave up.
    fn run(u: &mut Unacked<Side>, t0: Instant, until: Duration) -> (Vec<Duration>, bool) {
        let (mut sent, mut gave_up) = (Vec::new(), false);
        while let Some(at) = u.poll_timeout().filter(|at| *at <= t0 + until) {
            u.handle_timeout(at);
            while let Some(out) = u.poll_output() {
                match out {
                    UnackedOutput::Retransmit { .. } => sent.push(at - t0),
                    UnackedOutput::GaveUp { .. } => gave_up = true,
                }
            }
        }
        (sent, gave_up)
    }

    #[test]
    fn the_2xx_is_retransmitted_at_t1_doubling_to_t2_until_the_ack() {
        let (mut u, t0) = (Unacked::new(), Instant::now());
        u.start(t0, Side::Caller, ok(), peer(Transport::Udp));
        let (sent, gave_up) = run(&mut u, t0, Duration::from_secs(12));
        let ms = |v: u64| Duration::from_millis(v);
        assert_eq!(sent, [ms(500), ms(1500), ms(3500), ms(7500), ms(11500)]);
        assert!(!gave_up);
        u.ack(Side::Caller);
        assert_eq!(u.poll_timeout(), None, "the ACK stops it");
    }

    #[test]
    fn without_an_ack_the_answer_is_given_up_after_64_t1() {
        let (mut u, t0) = (Unacked::new(), Instant::now());
        u.start(t0, Side::Caller, ok(), peer(Transport::Udp));
        let (sent, gave_up) = run(&mut u, t0, GIVE_UP);
        assert!(gave_up);
        assert!(sent.iter().all(|at| *at < GIVE_UP));
        assert_eq!(
            sent.len(),
            10,
            "at 0.5, 1.5, 3.5, then every 4 s up to 31.5 s"
        );
        assert!(!u.is_waiting(Side::Caller));
    }

    #[test]
    fn over_tcp_the_transport_carries_the_2xx() {
        let (mut u, t0) = (Unacked::new(), Instant::now());
        u.start(t0, Side::Caller, ok(), peer(Transport::Tcp));
        assert_eq!(u.poll_timeout(), None);
    }
}
