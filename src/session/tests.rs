//! The call actor driven in virtual time (`tokio::time::pause`): SIP goes in as the
//! endpoint's `TuEvent`s and comes out as its `Command`s, records as `StoreCmd`s, with no SIP
//! socket and no database on the call's path (the registrar's user and its contacts are
//! loaded before time is paused). Each test is named by the behaviour it pins.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::service::SessionService;
use super::{CallContext, CallRegistry, MediaContext};
use crate::domain::CallId;
use crate::media::engine::PipelineConfig;
use crate::media::engine::conference::Rooms;
use crate::media::ports::PortPool;
use crate::sip::endpoint::{Command, EndpointHandle, IncomingInvite, Local, TuEvent};
use crate::sip::message::{Framing, Message, Method, Request, Response, StatusCode, parse};
use crate::sip::registrar::{Registrar, RegistrarSettings};
use crate::sip::transaction::{Branch, Timers, TransactionLayer, TxId, TxInput};
use crate::sip::transport::{Peer, Transport};
use crate::store::{Store, StoreCmd};

/// The caller: a trusted trunk (not challenged).
const CALLER: &str = "127.0.0.1:5070";

struct Harness {
    calls: CallRegistry,
    commands: mpsc::UnboundedReceiver<Command>,
    records: mpsc::Receiver<StoreCmd>,
    /// Turns the caller's INVITE into a server transaction, as the endpoint would.
    txl: TransactionLayer,
    _data: tempfile::TempDir,
}

fn udp(addr: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr.parse::<SocketAddr>().expect("address"),
    }
}

fn message(text: &str) -> Message {
    let text = text.replace('\n', "\r\n");
    parse(text.as_bytes(), Framing::Datagram)
        .expect("a valid SIP message")
        .0
}

/// A server with extension 2001 registered at each of `contacts`, time paused.
async fn harness(contacts: &[&str]) -> Harness {
    let phones: Vec<(&str, &str)> = contacts.iter().map(|c| ("2001", *c)).collect();
    harness_with(&phones).await
}

/// A server with each `(extension, contact)` registered, time paused.
async fn harness_with(phones: &[(&str, &str)]) -> Harness {
    let data = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&format!("sqlite://{}/t.db", data.path().display()))
        .await
        .expect("store");
    let mut extensions: Vec<&str> = phones.iter().map(|(ext, _)| *ext).collect();
    extensions.dedup();
    for ext in &extensions {
        let secrets = crate::sip::auth::user_secrets(ext, "switchboard", "pw");
        store.add_user(ext, None, &secrets).await.expect("user");
    }
    let registrar = Registrar::new(
        RegistrarSettings {
            realm: "switchboard".into(),
            nonce_secret: b"test".to_vec(),
            nonce_ttl: Duration::from_secs(300),
            trusted: vec!["127.0.0.1/32".parse().expect("cidr")],
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            failures_before_throttle: 5,
            throttle_window: Duration::from_secs(60),
            algorithms: vec![crate::sip::auth::Algorithm::Md5],
        },
        store.clone(),
    )
    .await
    .expect("registrar");
    for (i, (ext, contact)) in phones.iter().enumerate() {
        let Message::Request(register) = message(&format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\n\
             Via: SIP/2.0/UDP {contact};branch=z9hG4bKreg{i}\n\
             From: <sip:{ext}@127.0.0.1>;tag=r{i}\n\
             To: <sip:{ext}@127.0.0.1>\n\
             Call-ID: reg-{i}\n\
             CSeq: 1 REGISTER\n\
             Contact: <sip:{ext}@{contact}>\n\
             Expires: 3600\n\
             Content-Length: 0\n\n"
        )) else {
            panic!("a request");
        };
        let ok = registrar.handle_register(&register, udp(contact)).await;
        assert_eq!(ok.status, StatusCode::OK, "REGISTER from {contact}");
    }
    // The users are cached now: the call never waits for the database.
    for ext in &extensions {
        let ext = crate::domain::Extension::new(*ext);
        assert!(registrar.user(&ext).await.is_some());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plan = crate::ivr::parse::load(
        &root.join("dialplans"),
        &crate::ivr::parse::CheckOptions {
            media_dir: root.join("media"),
        },
    )
    .expect("the shipped plan");
    let (writer, records) = crate::store::WriterHandle::detached();
    let ctx = CallContext {
        registrar: Arc::new(registrar),
        writer: writer.clone(),
        sessions: SessionService::new(writer),
        ports: PortPool::new(43000, 44998).expect("ports"),
        media_ip: "127.0.0.1".parse().expect("ip"),
        rtp_bind_ip: "127.0.0.1".parse().expect("ip"),
        no_answer_timeout: Duration::from_secs(60),
        media: MediaContext {
            pipeline: PipelineConfig {
                jitter: Default::default(),
                tone_region: Default::default(),
                music_on_hold: None,
                inband_dtmf: false,
            },
            record_calls: false,
            recording: Default::default(),
            data_dir: data.path().to_owned(),
            transcoding: false,
            conference_prefix: "*8".into(),
            rooms: Rooms::default(),
            prompts: Arc::new(crate::media::player::PromptCache::new(root.join("media"))),
        },
        plan: crate::ivr::reload::PlanHandle::fixed(plan),
        texts: None,
        acd: None,
    };
    let local = Arc::new(Local {
        domain: "127.0.0.1".into(),
        public_ip: "127.0.0.1".parse().expect("ip"),
        sent_by: [(Transport::Udp, "127.0.0.1:5060".parse().expect("addr"))].into(),
        branch_prefix: "z9hG4bKsbtest".into(),
        server_header: "switchboard-test".into(),
        force_rport: true,
    });
    let (endpoint, commands) = EndpointHandle::detached(local);
    tokio::time::pause();
    Harness {
        calls: CallRegistry::new(ctx, endpoint),
        commands,
        records,
        txl: TransactionLayer::new(Timers::default()),
        _data: data,
    }
}

const OFFER: &str = "v=0\n\
o=caller 1 1 IN IP4 127.0.0.1\n\
s=-\n\
c=IN IP4 127.0.0.1\n\
t=0 0\n\
m=audio 31000 RTP/AVP 0 101\n\
a=rtpmap:0 PCMU/8000\n\
a=rtpmap:101 telephone-event/8000\n\
a=fmtp:101 0-16\n";

fn answer_sdp(port: u16) -> String {
    format!(
        "v=0\no=callee 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n\
         m=audio {port} RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\n"
    )
}

/// The call under test as the endpoint sees it: the caller's INVITE transaction, and where
/// the endpoint sends what concerns the call (the callee's responses included: the forks'
/// owner is the same channel).
struct Caller {
    tx: TxId,
    events: mpsc::UnboundedSender<TuEvent>,
}

impl Caller {
    fn send(&self, event: TuEvent) {
        self.events.send(event).expect("the call is alive");
    }
}

impl Harness {
    /// The caller INVITEs extension 2001.
    fn invite(&mut self) -> Caller {
        let body = OFFER.replace('\n', "\r\n");
        let text = format!(
            "INVITE sip:2001@127.0.0.1:5060 SIP/2.0\n\
             Via: SIP/2.0/UDP {CALLER};branch=z9hG4bKcaller\n\
             Max-Forwards: 70\n\
             From: <sip:+15550001@127.0.0.1>;tag=caller\n\
             To: <sip:2001@127.0.0.1>\n\
             Call-ID: call-under-test\n\
             CSeq: 1 INVITE\n\
             Contact: <sip:+15550001@{CALLER}>\n\
             Content-Type: application/sdp\n\
             Content-Length: {}\n\n",
            body.len()
        );
        let mut raw = text.replace('\n', "\r\n");
        raw.push_str(&body);
        let msg = parse(raw.as_bytes(), Framing::Datagram).expect("INVITE").0;
        let Some(TxInput::Request { tx, req, from }) =
            self.txl
                .handle_message(crate::clock::now(), msg, udp(CALLER))
        else {
            panic!("a new server transaction");
        };
        let (owner, events) = mpsc::unbounded_channel();
        self.calls.spawn(IncomingInvite {
            tx,
            req,
            from,
            owner: owner.clone(),
            events,
        });
        Caller { tx, events: owner }
    }

    /// The next command the call gives the endpoint (virtual time runs while it waits).
    async fn next(&mut self) -> Command {
        tokio::time::timeout(Duration::from_secs(120), self.commands.recv())
            .await
            .expect("a command within 120 s of virtual time")
            .expect("the call is alive")
    }

    /// Commands up to the first request of `method` sent in a transaction; that request.
    async fn request(&mut self, method: Method) -> (Request, Peer) {
        let (req, to, _, _) = self.request_after(method).await;
        (req, to)
    }

    /// The first request of `method` sent in a transaction, the channel its responses go to
    /// (a placed call's own), and every command before it.
    async fn request_after(
        &mut self,
        method: Method,
    ) -> (Request, Peer, mpsc::UnboundedSender<TuEvent>, Vec<Command>) {
        let mut before = Vec::new();
        loop {
            match self.next().await {
                Command::SendRequest { req, to, owner } if req.method == method => {
                    return (req, to, owner, before);
                }
                other => before.push(other),
            }
        }
    }

    /// Commands up to the first response on the caller's transaction; its status.
    async fn response_to_caller(&mut self, caller: &Caller) -> Response {
        loop {
            if let Command::Respond { tx, resp } = self.next().await
                && tx == caller.tx
            {
                return resp;
            }
        }
    }

    /// Like [`Self::request`], with the channel its responses go to (a placed call's own).
    async fn request_with_owner(
        &mut self,
        method: Method,
    ) -> (Request, Peer, mpsc::UnboundedSender<TuEvent>) {
        let (req, to, owner, _) = self.request_after(method).await;
        (req, to, owner)
    }

    /// The `data` of the next event of type `kind` the call writes.
    async fn event(&mut self, kind: &str) -> serde_json::Value {
        loop {
            let cmd = tokio::time::timeout(Duration::from_secs(120), self.records.recv())
                .await
                .expect("a record within 120 s of virtual time")
                .expect("the writer is open");
            if let StoreCmd::Event { kind: k, data, .. } = cmd
                && k == kind
            {
                return data;
            }
        }
    }

    /// The call record's hang-up cause, once written.
    async fn ended_cause(&mut self) -> String {
        loop {
            let cmd = tokio::time::timeout(Duration::from_secs(120), self.records.recv())
                .await
                .expect("a record within 120 s of virtual time")
                .expect("the writer is open");
            if let StoreCmd::CallEnded { hangup_cause, .. } = cmd {
                return hangup_cause;
            }
        }
    }
}

/// The head of an in-dialog request from the callee (2001 at 127.0.0.1:6001) on the dialog
/// of fork `fork` (an INVITE carries a Contact).
fn from_callee(fork: &Request, method: &str, cseq: u32, branch: &str) -> String {
    let our_b_tag = tag_of(fork.headers.get("From").expect("From"));
    let b_call_id = fork.headers.get("Call-ID").expect("Call-ID");
    let contact = if method == "INVITE" {
        "Contact: <sip:2001@127.0.0.1:6001>\n"
    } else {
        ""
    };
    format!(
        "{method} sip:switchboard@127.0.0.1:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:6001;branch={branch}\n\
         Max-Forwards: 70\n\
         From: <sip:2001@127.0.0.1>;tag=callee\n\
         To: <sip:+15550001@127.0.0.1>;tag={our_b_tag}\n\
         Call-ID: {b_call_id}\n\
         CSeq: {cseq} {method}\n\
         {contact}"
    )
}

/// A response from the callee on fork `invite`.
fn reply(invite: &Request, status: u16, to_tag: &str, sdp: Option<String>) -> TuEvent {
    let h = &invite.headers;
    let mut text = format!(
        "SIP/2.0 {status} Whatever\nVia: {}\nFrom: {}\nTo: {};tag={to_tag}\nCall-ID: {}\nCSeq: {}\nContact: <sip:2001@127.0.0.1:6000>\n",
        h.get("Via").expect("Via"),
        h.get("From").expect("From"),
        h.get("To").expect("To"),
        h.get("Call-ID").expect("Call-ID"),
        h.get("CSeq").expect("CSeq"),
    );
    let body = sdp.map(|s| s.replace('\n', "\r\n")).unwrap_or_default();
    if !body.is_empty() {
        text.push_str("Content-Type: application/sdp\n");
    }
    text.push_str(&format!("Content-Length: {}\n\n", body.len()));
    let mut raw = text.replace('\n', "\r\n");
    raw.push_str(&body);
    let Message::Response(resp) = parse(raw.as_bytes(), Framing::Datagram)
        .expect("a response")
        .0
    else {
        panic!("a response");
    };
    TuEvent::Response {
        branch: branch_of(invite),
        resp: Box::new(resp),
    }
}

/// Whether an ACK was sent among `commands`.
fn acked(commands: &[Command]) -> bool {
    commands.iter().any(|c| {
        matches!(c, Command::SendRaw { msg: Message::Request(ack), .. } if ack.method == Method::Ack)
    })
}

fn branch_of(req: &Request) -> Branch {
    Branch::new(
        req.headers
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_owned))
            .expect("branch"),
    )
}

#[tokio::test]
async fn forking_with_mixed_responses_relays_the_best_failure_once_every_fork_failed() {
    let mut h = harness(&["127.0.0.1:6001", "127.0.0.1:6002"]).await;
    let caller = h.invite();
    let (first, to_first) = h.request(Method::Invite).await;
    let (second, to_second) = h.request(Method::Invite).await;
    assert_ne!(to_first.addr, to_second.addr, "one fork per contact");
    assert_eq!(
        first.headers.get("Call-ID"),
        second.headers.get("Call-ID"),
        "forks of one dial share the callee-side Call-ID"
    );
    caller.send(reply(&first, 180, "a", None));
    assert_eq!(h.response_to_caller(&caller).await.status.0, 180);
    caller.send(reply(&first, 404, "a", None));
    caller.send(reply(&second, 486, "b", None));
    let last = h.response_to_caller(&caller).await;
    assert_eq!(last.status.0, 486, "busy beats not found (RFC 3261 §16.7)");
    assert_eq!(h.ended_cause().await, "busy");
}

#[tokio::test]
async fn a_6xx_from_one_fork_cancels_the_others_and_ends_the_search() {
    let mut h = harness(&["127.0.0.1:6001", "127.0.0.1:6002"]).await;
    let caller = h.invite();
    let (first, _) = h.request(Method::Invite).await;
    let (second, _) = h.request(Method::Invite).await;
    caller.send(reply(&second, 180, "b", None));
    caller.send(reply(&first, 603, "a", None));
    let (cancel, _) = h.request(Method::Cancel).await;
    assert_eq!(
        branch_of(&cancel),
        branch_of(&second),
        "the ringing fork is CANCELled"
    );
    let last = h.response_to_caller(&caller).await;
    assert_eq!(last.status.0, 603);
    assert_eq!(h.ended_cause().await, "declined");
}

#[tokio::test]
async fn a_200_crossing_the_callers_cancel_is_acked_and_hung_up() {
    let mut h = harness(&["127.0.0.1:6001"]).await;
    let caller = h.invite();
    let (fork, _) = h.request(Method::Invite).await;
    caller.send(reply(&fork, 180, "a", None));
    assert_eq!(h.response_to_caller(&caller).await.status.0, 180);
    caller.send(TuEvent::Cancelled);
    assert_eq!(h.response_to_caller(&caller).await.status.0, 487);
    let (cancel, _) = h.request(Method::Cancel).await;
    assert_eq!(branch_of(&cancel), branch_of(&fork));
    // The callee answered before our CANCEL reached it.
    caller.send(reply(&fork, 200, "a", Some(answer_sdp(32000))));
    let (_, _, _, before_bye) = h.request_after(Method::Bye).await;
    assert!(
        acked(&before_bye),
        "the unwanted 2xx is ACKed before its BYE (RFC 3261 §13.2.2.4)"
    );
    assert_eq!(h.ended_cause().await, "caller_cancel");
}

#[tokio::test]
async fn an_answer_never_acked_is_retransmitted_then_the_call_is_hung_up() {
    let mut h = harness(&["127.0.0.1:6001"]).await;
    let caller = h.invite();
    let (fork, _) = h.request(Method::Invite).await;
    caller.send(reply(&fork, 200, "a", Some(answer_sdp(32000))));
    let ok = h.response_to_caller(&caller).await;
    assert_eq!(ok.status.0, 200);
    let start = crate::clock::tokio_now();
    let mut retransmitted = Vec::new();
    loop {
        match h.next().await {
            Command::SendRaw {
                msg: Message::Response(r),
                ..
            } if r.status.0 == 200 => {
                retransmitted.push(crate::clock::tokio_now() - start);
            }
            Command::SendRequest { req, .. } if req.method == Method::Bye => break,
            _ => {}
        }
    }
    // Deadlines are kept to the millisecond tick of tokio's timer.
    let first = retransmitted.first().copied().unwrap_or_default();
    assert!(
        (Duration::from_millis(500)..=Duration::from_millis(502)).contains(&first),
        "first retransmission after T1, not {first:?}"
    );
    assert_eq!(retransmitted.len(), 10, "T1 doubling to T2 for 64·T1");
    assert_eq!(h.ended_cause().await, "ack_timeout");
}

#[tokio::test]
async fn nobody_answering_within_the_no_answer_timeout_ends_the_call_no_answer() {
    let mut h = harness(&["127.0.0.1:6001"]).await;
    let caller = h.invite();
    let (fork, _) = h.request(Method::Invite).await;
    caller.send(reply(&fork, 180, "a", None));
    assert_eq!(h.response_to_caller(&caller).await.status.0, 180);
    let rang_at = crate::clock::tokio_now();
    let (cancel, _) = h.request(Method::Cancel).await;
    let waited = crate::clock::tokio_now() - rang_at;
    assert!(
        waited >= Duration::from_secs(20),
        "the dial rang {waited:?} before its CANCEL"
    );
    assert_eq!(branch_of(&cancel), branch_of(&fork));
    caller.send(reply(&fork, 487, "a", None));
    let last = h.response_to_caller(&caller).await;
    assert!(
        matches!(last.status.0, 480 | 487 | 408),
        "the caller learns nobody answered: {}",
        last.status.0
    );
}

/// A call's inbox buffers inputs in blocks of 32: one input's size is memory held for every
/// live call.
#[test]
fn a_call_input_is_small() {
    let size = std::mem::size_of::<super::CallInput>();
    assert!(size <= 128, "CallInput is {size} bytes");
}

/// A request with `body` (SDP) as raw bytes.
fn raw_request(text: &str, body: Option<&str>) -> Message {
    let body = body.map(|b| b.replace('\n', "\r\n")).unwrap_or_default();
    let mut raw = text.replace('\n', "\r\n");
    if !body.is_empty() {
        raw.push_str("Content-Type: application/sdp\r\n");
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    raw.push_str(&body);
    parse(raw.as_bytes(), Framing::Datagram)
        .expect("a request")
        .0
}

impl Harness {
    /// An in-dialog request from the party at `from`, as the endpoint hands it to the call:
    /// its server transaction (an ACK has none) and the event.
    fn in_dialog(&mut self, text: &str, body: Option<&str>, from: &str) -> (Option<TxId>, TuEvent) {
        let msg = raw_request(text, body);
        match self.txl.handle_message(crate::clock::now(), msg, udp(from)) {
            Some(TxInput::Request { tx, req, from }) => (
                Some(tx),
                TuEvent::Request {
                    tx,
                    req: Box::new(req),
                    from,
                },
            ),
            Some(TxInput::Ack { req, from }) => (
                None,
                TuEvent::Ack {
                    req: Box::new(req),
                    from,
                },
            ),
            other => panic!("an in-dialog request, not {other:?}"),
        }
    }

    /// Commands up to the first response on transaction `tx`.
    async fn response_on(&mut self, want: TxId) -> Response {
        loop {
            if let Command::Respond { tx, resp } = self.next().await
                && tx == want
            {
                return resp;
            }
        }
    }
}

/// The tag of a From or To value.
fn tag_of(header: &str) -> String {
    header
        .split(";tag=")
        .nth(1)
        .map(|t| t.split(';').next().unwrap_or(t).to_owned())
        .expect("a tag")
}

/// An answered call: the callee (tag `callee`) answered the fork, the caller ACKed our 200.
/// Returns the fork's INVITE and our 200 to the caller.
async fn answered_call(h: &mut Harness, caller: &Caller) -> (Request, Response) {
    let (fork, _) = h.request(Method::Invite).await;
    caller.send(reply(&fork, 200, "callee", Some(answer_sdp(32000))));
    let ok = h.response_to_caller(caller).await;
    assert_eq!(ok.status.0, 200);
    let our_tag = tag_of(ok.headers.get("To").expect("To"));
    let (_, ack) = h.in_dialog(
        &format!(
            "ACK sip:switchboard@127.0.0.1:5060 SIP/2.0\n\
             Via: SIP/2.0/UDP {CALLER};branch=z9hG4bKack1\n\
             Max-Forwards: 70\n\
             From: <sip:+15550001@127.0.0.1>;tag=caller\n\
             To: <sip:2001@127.0.0.1>;tag={our_tag}\n\
             Call-ID: call-under-test\n\
             CSeq: 1 ACK\n"
        ),
        None,
        CALLER,
    );
    caller.send(ack);
    (fork, ok)
}

#[tokio::test]
async fn a_second_fork_answering_after_the_first_is_acked_and_hung_up() {
    let mut h = harness(&["127.0.0.1:6001", "127.0.0.1:6002"]).await;
    let caller = h.invite();
    let (first, _) = h.request(Method::Invite).await;
    let (second, _) = h.request(Method::Invite).await;
    caller.send(reply(&first, 200, "winner", Some(answer_sdp(32000))));
    assert_eq!(h.response_to_caller(&caller).await.status.0, 200);
    caller.send(reply(&second, 200, "loser", Some(answer_sdp(32002))));
    let (bye, _) = h.request(Method::Bye).await;
    let to = bye.headers.get("To").expect("To");
    assert_eq!(
        tag_of(to),
        "loser",
        "only the losing fork's dialog is ended"
    );
}

#[tokio::test]
async fn a_reinvite_while_another_is_relayed_is_answered_491() {
    let mut h = harness(&["127.0.0.1:6001"]).await;
    let caller = h.invite();
    let (fork, ok) = answered_call(&mut h, &caller).await;
    let our_a_tag = tag_of(ok.headers.get("To").expect("To"));
    // The callee puts the caller on hold: relayed to the caller.
    let (_, hold) = h.in_dialog(
        &from_callee(&fork, "INVITE", 2, "z9hG4bKhold"),
        Some(&answer_sdp(32000).replace("t=0 0\n", "t=0 0\na=sendonly\n")),
        "127.0.0.1:6001",
    );
    caller.send(hold);
    let (relayed, to) = h.request(Method::Invite).await;
    assert_eq!(to.addr.to_string(), CALLER, "relayed to the caller");
    assert!(
        String::from_utf8_lossy(&relayed.body).contains("a=sendonly"),
        "the hold is passed on"
    );
    // Meanwhile the caller sends its own re-INVITE: glare (RFC 3261 §14.2).
    let (tx, glare) = h.in_dialog(
        &format!(
            "INVITE sip:switchboard@127.0.0.1:5060 SIP/2.0\n\
             Via: SIP/2.0/UDP {CALLER};branch=z9hG4bKglare\n\
             Max-Forwards: 70\n\
             From: <sip:+15550001@127.0.0.1>;tag=caller\n\
             To: <sip:2001@127.0.0.1>;tag={our_a_tag}\n\
             Call-ID: call-under-test\n\
             CSeq: 2 INVITE\n\
             Contact: <sip:+15550001@{CALLER}>\n"
        ),
        Some(OFFER),
        CALLER,
    );
    caller.send(glare);
    let pending = h.response_on(tx.expect("a transaction")).await;
    assert_eq!(pending.status.0, 491, "Request Pending");
}

#[tokio::test]
async fn hold_and_resume_from_the_callee_are_relayed_and_reported() {
    let mut h = harness(&["127.0.0.1:6001"]).await;
    let caller = h.invite();
    let (fork, _) = answered_call(&mut h, &caller).await;
    for (cseq, direction, held) in [(2, "sendonly", true), (3, "sendrecv", false)] {
        let (tx, reinvite) = h.in_dialog(
            &from_callee(&fork, "INVITE", cseq, &format!("z9hG4bKre{cseq}")),
            Some(&answer_sdp(32000).replace("t=0 0\n", &format!("t=0 0\na={direction}\n"))),
            "127.0.0.1:6001",
        );
        caller.send(reinvite);
        let (relayed, to) = h.request(Method::Invite).await;
        assert_eq!(to.addr.to_string(), CALLER);
        let relayed_sdp = String::from_utf8_lossy(&relayed.body).into_owned();
        assert!(
            relayed_sdp.contains(&format!("a={direction}")),
            "{relayed_sdp}"
        );
        let answer = if held { "recvonly" } else { "sendrecv" };
        let sdp = OFFER.replace("t=0 0\n", &format!("t=0 0\na={answer}\n"));
        caller.send(reply(&relayed, 200, "caller", Some(sdp)));
        let ok = h.response_on(tx.expect("a transaction")).await;
        assert_eq!(ok.status.0, 200, "the callee's re-INVITE is answered");
        assert_eq!(
            h.event("call.held").await,
            serde_json::json!({"held": held, "leg": "caller", "by": "callee"}),
            "{direction}"
        );
    }
}

#[tokio::test]
async fn a_blind_transfer_hangs_up_the_callee_and_rings_the_new_extension() {
    let mut h = harness_with(&[("2001", "127.0.0.1:6001"), ("2002", "127.0.0.1:6002")]).await;
    let caller = h.invite();
    let (fork, _) = answered_call(&mut h, &caller).await;
    let calls = h.calls.list().await;
    let [call] = calls.as_slice() else {
        panic!("one live call: {calls:?}");
    };
    let transfer = {
        let registry = h.calls.clone();
        let id = call.id;
        tokio::spawn(async move {
            registry
                .transfer(
                    id,
                    super::TransferTarget::Extension(crate::domain::Extension::new("2002")),
                )
                .await
        })
    };
    let (bye, to) = h.request(Method::Bye).await;
    assert_eq!(
        to.addr.to_string(),
        "127.0.0.1:6001",
        "the callee is hung up"
    );
    assert_eq!(bye.headers.get("Call-ID"), fork.headers.get("Call-ID"));
    let (invite, to) = h.request(Method::Invite).await;
    assert_eq!(
        to.addr.to_string(),
        "127.0.0.1:6002",
        "the new extension rings"
    );
    assert!(invite.uri.to_string().contains("2002"), "{}", invite.uri);
    assert!(matches!(
        transfer.await.expect("joined"),
        Ok(super::ControlReply::Done)
    ));
    assert_eq!(
        h.event("call.transferred").await,
        serde_json::json!({"to": "2002", "kind": "blind"})
    );
}

#[tokio::test]
async fn a_placed_call_rings_every_phone_and_the_first_answer_wins() {
    let mut h = harness(&["127.0.0.1:6001", "127.0.0.1:6002"]).await;
    let placed = {
        let registry = h.calls.clone();
        tokio::spawn(async move {
            registry
                .originate(super::OriginateRequest {
                    from: "5000".into(),
                    to: "2001".into(),
                    flow: None,
                    connect_to: None,
                    webhook: None,
                    ring_timeout: Duration::from_secs(30),
                    caller_id: None,
                    headers: Vec::new(),
                    consult_for: None,
                    session: None,
                    acd_contact: None,
                })
                .await
        })
    };
    let (first, _, owner) = h.request_with_owner(Method::Invite).await;
    let (second, _, _) = h.request_with_owner(Method::Invite).await;
    placed.await.expect("joined").expect("placed");
    owner
        .send(reply(&second, 180, "b", None))
        .expect("the call is alive");
    owner
        .send(reply(&first, 200, "a", Some(answer_sdp(32000))))
        .expect("the call is alive");
    let (cancel, _, _, before_cancel) = h.request_after(Method::Cancel).await;
    assert!(acked(&before_cancel), "the answer is ACKed");
    assert_eq!(
        branch_of(&cancel),
        branch_of(&second),
        "the other phone stops ringing"
    );
    assert_eq!(h.event("call.answered").await, serde_json::json!({}));
}

#[tokio::test]
async fn an_attended_transfer_consults_then_completes_and_hangs_up_the_transferor() {
    let mut h = harness_with(&[("2001", "127.0.0.1:6001"), ("2002", "127.0.0.1:6002")]).await;
    let caller = h.invite();
    let (id, invite, owner, consultation, fork) = consulting(&mut h, &caller).await;
    owner
        .send(reply(&invite, 200, "c", Some(answer_sdp(32004))))
        .expect("the consultation call is alive");
    assert_eq!(
        h.event("call.consultation").await,
        serde_json::json!({"state": "answered", "consultation_call_id": consultation.to_string()})
    );
    let complete = {
        let registry = h.calls.clone();
        tokio::spawn(async move {
            registry
                .control(id, super::ControlCommand::CompleteTransfer)
                .await
        })
    };
    let (bye, to) = h.request(Method::Bye).await;
    assert_eq!(
        to.addr.to_string(),
        "127.0.0.1:6001",
        "the transferor is hung up"
    );
    assert_eq!(bye.headers.get("Call-ID"), fork.headers.get("Call-ID"));
    assert!(matches!(
        complete.await.expect("joined"),
        Ok(super::ControlReply::Done)
    ));
    assert_eq!(
        h.event("call.transferred").await,
        serde_json::json!({
            "kind": "attended",
            "to": "2002",
            "consultation_call_id": consultation.to_string()
        })
    );
}

/// An answered call (caller → 2001) with an attended transfer to 2002 started: the
/// consultation INVITE (ringing, not answered), the channel its responses go to, the
/// consultation call's id and the callee's fork.
async fn consulting(
    h: &mut Harness,
    caller: &Caller,
) -> (
    CallId,
    Request,
    mpsc::UnboundedSender<TuEvent>,
    CallId,
    Request,
) {
    let (fork, _) = answered_call(h, caller).await;
    let calls = h.calls.list().await;
    let [call] = calls.as_slice() else {
        panic!("one live call: {calls:?}");
    };
    let id = call.id;
    let consult = {
        let registry = h.calls.clone();
        tokio::spawn(async move { registry.attended_transfer(id, "2002".into()).await })
    };
    let (invite, to, owner) = h.request_with_owner(Method::Invite).await;
    assert_eq!(to.addr.to_string(), "127.0.0.1:6002");
    let consultation = consult.await.expect("joined").expect("consultation placed");
    assert_eq!(
        h.event("call.consultation").await,
        serde_json::json!({
            "state": "started",
            "consultation_call_id": consultation.to_string(),
            "to": "2002"
        }),
        "the consultation rings"
    );
    (id, invite, owner, consultation, fork)
}

#[tokio::test]
async fn a_blonde_transfer_puts_the_caller_through_when_the_consultation_answers() {
    let mut h = harness_with(&[("2001", "127.0.0.1:6001"), ("2002", "127.0.0.1:6002")]).await;
    let caller = h.invite();
    let (_, invite, owner, consultation, fork) = consulting(&mut h, &caller).await;
    // The transferor hangs up while 2002 still rings.
    let (tx, bye) = h.in_dialog(
        &from_callee(&fork, "BYE", 2, "z9hG4bKbye"),
        None,
        "127.0.0.1:6001",
    );
    caller.send(bye);
    let ok = h.response_on(tx.expect("a transaction")).await;
    assert_eq!(ok.status.0, 200, "the transferor's BYE is answered");
    owner
        .send(reply(&invite, 200, "c", Some(answer_sdp(32004))))
        .expect("the consultation call is alive");
    assert_eq!(
        h.event("call.transferred").await,
        serde_json::json!({
            "kind": "attended",
            "to": "2002",
            "consultation_call_id": consultation.to_string()
        }),
        "the caller goes straight to 2002"
    );
    let calls = h.calls.list().await;
    assert_eq!(
        calls.len(),
        2,
        "caller and consultation are bridged: {calls:?}"
    );
    assert!(
        calls.iter().all(|c| c.state == "bridged"),
        "both calls talk: {calls:?}"
    );
}

#[tokio::test]
async fn cancelling_a_consultation_cancels_its_ringing_and_gives_the_caller_back_the_callee() {
    let mut h = harness_with(&[("2001", "127.0.0.1:6001"), ("2002", "127.0.0.1:6002")]).await;
    let caller = h.invite();
    let (id, invite, owner, consultation, _) = consulting(&mut h, &caller).await;
    owner
        .send(reply(&invite, 180, "c", None))
        .expect("the consultation call is alive");
    let cancel = {
        let registry = h.calls.clone();
        tokio::spawn(async move {
            registry
                .control(id, super::ControlCommand::CancelTransfer)
                .await
        })
    };
    assert!(matches!(
        cancel.await.expect("joined"),
        Ok(super::ControlReply::Done)
    ));
    let (cancelled, to) = h.request(Method::Cancel).await;
    assert_eq!(to.addr.to_string(), "127.0.0.1:6002", "2002 stops ringing");
    assert_eq!(branch_of(&cancelled), branch_of(&invite));
    assert_eq!(
        h.event("call.consultation").await,
        serde_json::json!({"state": "cancelled", "consultation_call_id": consultation.to_string()})
    );
    assert_eq!(
        h.event("call.held").await,
        serde_json::json!({"held": false, "leg": "caller", "by": "transfer"}),
        "the caller is taken off hold"
    );
    let calls = h.calls.list().await;
    let call = calls.iter().find(|c| c.id == id).expect("the call goes on");
    assert_eq!(call.state, "bridged", "caller and callee talk again");
}
