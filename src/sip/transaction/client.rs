//! Client transactions: INVITE (RFC 3261 §17.1.1, RFC 6026 Accepted state) and non-INVITE
//! (§17.1.2), response matching (§17.1.3) and the ACK for non-2xx finals (§17.1.1.3).

use std::time::Instant;

use super::key::{self, ClientKey};
use super::timer::{Armed, Timer};
use super::{
    Key, TransactionLayer, Tx, TxError, TxId, TxInput, TxKind, TxState, Wire, is_invite, status_ok,
};
use crate::sip::message::{Method, Request, Response};
use crate::sip::transport::Peer;

impl TransactionLayer {
    pub(super) fn start_client(
        &mut self,
        now: Instant,
        req: Request,
        to: Peer,
    ) -> Result<TxId, TxError> {
        if req.method == Method::Ack {
            return Err(TxError::AckHasNoTransaction);
        }
        let via = key::top_via(&req.headers).ok_or(TxError::InvalidHeader("Via"))?;
        let branch = via
            .branch
            .filter(|b| b.starts_with(key::MAGIC_COOKIE))
            .ok_or(TxError::MissingBranch)?;
        match key::cseq(&req.headers) {
            Some((_, m)) if m == req.method => {}
            _ => return Err(TxError::InvalidHeader("CSeq")),
        }
        let ckey = ClientKey {
            branch: branch.into(),
            method: req.method.clone(),
        };
        if self.client_index.contains_key(&ckey) {
            return Err(TxError::DuplicateTransaction);
        }

        let id = self.alloc_id();
        let invite = is_invite(&req.method);
        let reliable = to.transport.is_reliable();
        let wire = Wire::request(&req);
        self.client_index.insert(ckey.clone(), id);
        self.txs.insert(
            id,
            Tx {
                kind: if invite {
                    TxKind::InviteClient
                } else {
                    TxKind::NonInviteClient
                },
                state: if invite {
                    TxState::Calling
                } else {
                    TxState::Trying
                },
                peer: to,
                reliable,
                key: Key::Client(ckey),
                armed: Armed::default(),
                interval: self.timers.t1,
                wire: Some(wire.clone()),
                invite: invite.then(|| Box::new(req)),
            },
        );
        self.send(id, to, wire);
        let (retransmit, timeout) = if invite {
            (Timer::A, Timer::B)
        } else {
            (Timer::E, Timer::F)
        };
        if !reliable {
            self.arm_retransmit(id, retransmit, now, self.timers.t1);
        }
        self.arm(id, timeout, now, self.timers.sixty_four_t1());
        tracing::trace!(tx = %id, invite, "client transaction started");
        Ok(id)
    }

    pub(super) fn on_response(
        &mut self,
        now: Instant,
        resp: Response,
        from: Peer,
    ) -> Option<TxInput> {
        if status_ok(resp.status).is_err() {
            return None;
        }
        let id = ClientKey::for_response(&resp).and_then(|k| self.client_index.get(&k).copied());
        let Some(id) = id else {
            return Some(TxInput::StrayResponse { resp, from });
        };
        let tx = self.txs.get(&id)?;
        match tx.kind {
            TxKind::InviteClient => self.invite_client_response(now, id, resp),
            TxKind::NonInviteClient => self.non_invite_client_response(now, id, resp),
            TxKind::InviteServer | TxKind::NonInviteServer => None,
        }
    }

    /// Timer A (§17.1.1.2) or Timer E (§17.1.2.2) fired: re-send the request.
    pub(super) fn client_retransmit(&mut self, now: Instant, id: TxId, timer: Timer) {
        let Some(tx) = self.txs.get(&id) else { return };
        let next = match (timer, tx.state) {
            (Timer::A, TxState::Calling) => tx.interval.saturating_mul(2),
            (Timer::E, TxState::Trying) => tx.interval.saturating_mul(2).min(self.timers.t2),
            (Timer::E, TxState::Proceeding) => self.timers.t2,
            _ => return,
        };
        let Some(wire) = tx.wire.clone() else { return };
        let peer = tx.peer;
        self.send(id, peer, wire);
        self.arm_retransmit(id, timer, now, next);
    }

    fn invite_client_response(
        &mut self,
        now: Instant,
        id: TxId,
        resp: Response,
    ) -> Option<TxInput> {
        let tx = self.txs.get_mut(&id)?;
        let status = resp.status;
        match tx.state {
            TxState::Calling | TxState::Proceeding if status.is_provisional() => {
                tx.state = TxState::Proceeding;
                tx.armed.clear(Timer::A);
                tx.armed.clear(Timer::B);
            }
            TxState::Calling | TxState::Proceeding if status.is_success() => {
                // RFC 6026 Accepted re-sends nothing: the TU ACKs each 2xx.
                tx.state = TxState::Accepted;
                tx.wire = None;
                tx.invite = None;
                self.disarm(id, &[Timer::A, Timer::B]);
                self.arm(id, Timer::M, now, self.timers.sixty_four_t1());
            }
            TxState::Calling | TxState::Proceeding => {
                tx.state = TxState::Completed;
                // From now on only the ACK is re-sent (for each retransmitted final).
                let ack = match tx.invite.take() {
                    Some(invite) => Wire::request(&build_ack(&invite, &resp)),
                    None => return None,
                };
                tx.wire = Some(ack.clone());
                let (peer, reliable) = (tx.peer, tx.reliable);
                self.disarm(id, &[Timer::A, Timer::B]);
                self.send(id, peer, ack);
                let wait = if reliable {
                    std::time::Duration::ZERO
                } else {
                    self.timers.timer_d
                };
                self.linger(id, Timer::D, now, wait);
            }
            TxState::Completed if status.is_final() && !status.is_success() => {
                // A retransmitted final: the ACK was lost (§17.1.1.2).
                let (peer, ack) = (tx.peer, tx.wire.clone()?);
                self.send(id, peer, ack);
                return None;
            }
            // RFC 6026 §8.4: every 2xx goes up so that the TU ACKs it (forks included).
            TxState::Accepted if status.is_success() => {}
            _ => return None,
        }
        Some(TxInput::Response { tx: id, resp })
    }

    fn non_invite_client_response(
        &mut self,
        now: Instant,
        id: TxId,
        resp: Response,
    ) -> Option<TxInput> {
        let tx = self.txs.get_mut(&id)?;
        match tx.state {
            TxState::Trying | TxState::Proceeding if resp.status.is_provisional() => {
                tx.state = TxState::Proceeding;
            }
            TxState::Trying | TxState::Proceeding => {
                // Completed only absorbs retransmitted finals: nothing to re-send.
                tx.state = TxState::Completed;
                tx.wire = None;
                let reliable = tx.reliable;
                self.disarm(id, &[Timer::E, Timer::F]);
                let wait = if reliable {
                    std::time::Duration::ZERO
                } else {
                    self.timers.t4
                };
                self.linger(id, Timer::K, now, wait);
            }
            _ => return None,
        }
        Some(TxInput::Response { tx: id, resp })
    }
}

/// The ACK for a 300–699 final (§17.1.1.3): the INVITE's Request-URI, top Via, From, Call-ID
/// and Route set, its CSeq number with method ACK, and the To of the response.
pub(super) fn build_ack(invite: &Request, resp: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    if let Some(via) = key::top_via(&invite.headers) {
        ack.headers.push("Via", via.raw);
    }
    if let Some(from) = invite.headers.get("From") {
        ack.headers.push("From", from);
    }
    if let Some(to) = resp.headers.get("To").or_else(|| invite.headers.get("To")) {
        ack.headers.push("To", to);
    }
    if let Some(call_id) = invite.headers.get("Call-ID") {
        ack.headers.push("Call-ID", call_id);
    }
    if let Some((seq, _)) = key::cseq(&invite.headers) {
        ack.headers.push("CSeq", format!("{seq} ACK"));
    }
    for route in invite.headers.get_all("Route") {
        ack.headers.push("Route", route);
    }
    ack.headers.push("Max-Forwards", "70");
    ack.headers.push("Content-Length", "0");
    ack
}
