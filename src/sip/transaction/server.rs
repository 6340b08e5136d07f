//! Server transactions: INVITE (RFC 3261 §17.2.1, RFC 6026 Accepted state) and non-INVITE
//! (§17.2.2), request matching (§17.2.3) and CANCEL matching (§9.2).

use std::time::{Duration, Instant};

use super::key::ServerKey;
use super::timer::{Armed, Timer};
use super::{Key, TransactionLayer, Tx, TxError, TxId, TxInput, TxKind, TxState, Wire, status_ok};
use crate::sip::message::{Method, Request, Response, StatusCode};
use crate::sip::transport::Peer;

impl TransactionLayer {
    pub(super) fn on_request(&mut self, now: Instant, req: Request, from: Peer) -> Option<TxInput> {
        let Some(key) = ServerKey::for_request(&req) else {
            tracing::debug!(method = %req.method, "request without a usable Via/CSeq dropped");
            return None;
        };
        if let Some(&id) = self.server_index.get(&key) {
            return self.server_match(now, id, req, from);
        }
        match req.method {
            Method::Ack => Some(TxInput::Ack { req, from }),
            Method::Cancel => {
                let invite_tx = self
                    .server_index
                    .get(&key.with_method(Method::Invite))
                    .copied();
                let tx = self.start_server(key, TxKind::NonInviteServer, from);
                Some(TxInput::Cancel {
                    tx,
                    req,
                    from,
                    invite_tx,
                })
            }
            Method::Invite => {
                let tx = self.start_server(key, TxKind::InviteServer, from);
                if self.auto_trying {
                    let trying = Response::from_request(&req, StatusCode::TRYING);
                    let trying = Wire::response(&trying);
                    if let Some(t) = self.txs.get_mut(&tx) {
                        t.wire = Some(trying.clone());
                    }
                    self.send(tx, from, trying);
                }
                Some(TxInput::Request { tx, req, from })
            }
            _ => {
                let tx = self.start_server(key, TxKind::NonInviteServer, from);
                Some(TxInput::Request { tx, req, from })
            }
        }
    }

    pub(super) fn on_respond(
        &mut self,
        now: Instant,
        id: TxId,
        resp: Response,
    ) -> Result<(), TxError> {
        status_ok(resp.status)?;
        let tx = self
            .txs
            .get_mut(&id)
            .ok_or(TxError::UnknownTransaction(id))?;
        let status = resp.status;
        let invalid = TxError::InvalidState {
            tx: id,
            state: tx.state,
            status: status.0,
        };
        let (peer, reliable) = (tx.peer, tx.reliable);
        match (tx.kind, tx.state) {
            (TxKind::InviteClient | TxKind::NonInviteClient, _) => {
                return Err(TxError::NotAServerTransaction(id));
            }
            (TxKind::InviteServer, TxState::Proceeding) => {
                let wire = Wire::response(&resp);
                // Accepted absorbs INVITE retransmissions (the TU re-sends its 2xx): only a
                // provisional or a non-2xx final is ever re-sent by the transaction.
                tx.wire = (!status.is_success()).then(|| wire.clone());
                self.send(id, peer, wire);
                if status.is_success() {
                    // RFC 6026 §8.5: Accepted; the TU retransmits its 2xx (§13.3.1.4).
                    self.set_state(id, TxState::Accepted);
                    self.arm(id, Timer::L, now, self.timers.sixty_four_t1());
                } else if status.is_final() {
                    self.set_state(id, TxState::Completed);
                    if !reliable {
                        self.arm_retransmit(id, Timer::G, now, self.timers.t1);
                    }
                    self.arm(id, Timer::H, now, self.timers.sixty_four_t1());
                }
            }
            // RFC 6026 §8.6: 2xx retransmissions from the TU pass through Accepted.
            (TxKind::InviteServer, TxState::Accepted) if status.is_success() => {
                self.send(id, peer, Wire::response(&resp));
            }
            (TxKind::NonInviteServer, TxState::Trying | TxState::Proceeding) => {
                let wire = Wire::response(&resp);
                tx.wire = Some(wire.clone());
                self.send(id, peer, wire);
                if status.is_provisional() {
                    self.set_state(id, TxState::Proceeding);
                } else {
                    self.set_state(id, TxState::Completed);
                    let wait = if reliable {
                        Duration::ZERO
                    } else {
                        self.timers.sixty_four_t1()
                    };
                    self.linger(id, Timer::J, now, wait);
                }
            }
            _ => return Err(invalid),
        }
        Ok(())
    }

    /// Timer G fired (§17.2.1): re-send the final response, doubling up to T2.
    pub(super) fn server_retransmit(&mut self, now: Instant, id: TxId) {
        let Some(tx) = self.txs.get(&id) else { return };
        if tx.state != TxState::Completed {
            return;
        }
        let next = tx.interval.saturating_mul(2).min(self.timers.t2);
        let Some(wire) = tx.wire.clone() else { return };
        let peer = tx.peer;
        self.send(id, peer, wire);
        self.arm_retransmit(id, Timer::G, now, next);
    }

    fn start_server(&mut self, key: ServerKey, kind: TxKind, from: Peer) -> TxId {
        let id = self.alloc_id();
        self.server_index.insert(key.clone(), id);
        let state = if kind == TxKind::InviteServer {
            TxState::Proceeding
        } else {
            TxState::Trying
        };
        self.txs.insert(
            id,
            Tx {
                kind,
                state,
                peer: from,
                reliable: from.transport.is_reliable(),
                key: Key::Server(key),
                armed: Armed::default(),
                interval: self.timers.t1,
                wire: None,
                invite: None,
            },
        );
        tracing::trace!(tx = %id, ?kind, "server transaction started");
        id
    }

    /// A request that matched server transaction `id`: a retransmission, or an ACK for an
    /// INVITE server transaction.
    fn server_match(
        &mut self,
        now: Instant,
        id: TxId,
        req: Request,
        from: Peer,
    ) -> Option<TxInput> {
        let tx = self.txs.get(&id)?;
        let (kind, state, peer, reliable) = (tx.kind, tx.state, tx.peer, tx.reliable);
        let last = tx.wire.clone();
        let again = match (kind, state, req.method == Method::Ack) {
            (TxKind::InviteServer, TxState::Completed, true) => {
                // §17.2.1: ACK for our non-2xx final → Confirmed, absorb ACK retransmits;
                // nothing is re-sent from now on.
                self.set_state(id, TxState::Confirmed);
                if let Some(t) = self.txs.get_mut(&id) {
                    t.wire = None;
                }
                self.disarm(id, &[Timer::G, Timer::H]);
                let wait = if reliable {
                    Duration::ZERO
                } else {
                    self.timers.t4
                };
                self.linger(id, Timer::I, now, wait);
                return None;
            }
            // RFC 6026 §8.7: an ACK matching an Accepted transaction goes to the TU.
            (TxKind::InviteServer, TxState::Accepted, true) => {
                return Some(TxInput::Ack { req, from });
            }
            (_, _, true) => None,
            // Retransmitted INVITE: re-send the last provisional (if any) or the final.
            (TxKind::InviteServer, TxState::Proceeding | TxState::Completed, false)
            | (TxKind::NonInviteServer, TxState::Proceeding | TxState::Completed, false) => last,
            // Accepted and Confirmed absorb INVITE retransmissions; Trying absorbs requests.
            _ => None,
        };
        if let Some(wire) = again {
            self.send(id, peer, wire);
        }
        None
    }

    fn set_state(&mut self, id: TxId, state: TxState) {
        if let Some(tx) = self.txs.get_mut(&id) {
            tx.state = state;
        }
    }
}
