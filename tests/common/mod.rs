//! Test support: an in-process server on ephemeral ports, and a tiny SIP user agent over a real
//! UDP socket.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use switchboard::config::Config;
use switchboard::server::Server;
use switchboard::sip::message::{Framing, Message, Request, Response, parse};
use switchboard::sip::transport::Transport;
use tokio::net::UdpSocket;

/// Upper bound for any single wait in a test: a failure guard, never a synchronisation.
pub const GUARD: Duration = Duration::from_secs(10);

/// A block of 40 RTP ports of its own for each test server (30000-31999, below the kernel's
/// ephemeral range): parallel tests would otherwise all start at the same pair and collide.
fn next_rtp_block() -> String {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let block = NEXT.fetch_add(1, Ordering::Relaxed) % 50;
    let low = 30_000 + block * 40;
    format!("{low}-{}", low + 39)
}

/// A server running inside the test process.
pub struct TestServer {
    pub server: Option<Server>,
    pub sip_udp: SocketAddr,
    pub sip_tcp: SocketAddr,
    pub http: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server on 127.0.0.1 ephemeral ports with a fresh SQLite database.
    pub async fn start(edit: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_in(tempfile::tempdir().expect("temp dir"), edit).await
    }

    /// Starts a server on an existing data directory (a restart).
    pub async fn start_in(dir: tempfile::TempDir, edit: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.sip.listen = vec!["udp:127.0.0.1:0".into(), "tcp:127.0.0.1:0".into()];
        config.http.listen = "127.0.0.1:0".parse().expect("addr");
        config.rtp.ports = next_rtp_block();
        // Tests that end with a live call need not wait the production drain time.
        config.shutdown.drain_timeout_secs = 1;
        edit(&mut config);
        let settings = config.validate().expect("valid test config");
        let server = switchboard::server::start(settings)
            .await
            .expect("server starts");
        TestServer {
            sip_udp: server.sip_addr(Transport::Udp).expect("udp listener"),
            sip_tcp: server.sip_addr(Transport::Tcp).expect("tcp listener"),
            http: server.http,
            server: Some(server),
            dir,
        }
    }

    /// The running server's store.
    pub fn store(&self) -> &switchboard::store::Store {
        &self.server.as_ref().expect("running").store
    }

    /// A new API key with `scope` (named `test-<scope>`).
    pub async fn api_key(&self, scope: switchboard::store::Scope) -> String {
        self.store()
            .create_api_key(&format!("test-{scope}"), scope)
            .await
            .expect("create key")
            .1
    }

    /// Adds an extension.
    pub async fn add_user(&self, ext: &str, password: &str) {
        let server = self.server.as_ref().expect("running");
        server
            .store
            .add_user(
                ext,
                None,
                &switchboard::sip::auth::user_secrets(ext, "switchboard", password),
            )
            .await
            .expect("add user");
    }

    pub async fn stop(self) {
        self.stop_keep_dir().await;
    }

    /// Stops the server and hands back its data directory for inspection.
    pub async fn stop_keep_dir(mut self) -> tempfile::TempDir {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        self.dir
    }
}

/// A UDP user agent for tests.
pub struct Ua {
    pub sock: UdpSocket,
    pub server: SocketAddr,
}

impl Ua {
    pub async fn new(server: SocketAddr) -> Ua {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind ua");
        Ua { sock, server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    pub async fn send(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).await.expect("send");
    }

    /// Sends text with `\n` line ends turned into CRLF and `{addr}` replaced by our address.
    pub async fn send_text(&self, text: &str) {
        let text = text
            .replace("{addr}", &self.addr().to_string())
            .replace('\n', "\r\n");
        self.send(text.as_bytes()).await;
    }

    /// The next SIP message from anyone, within the guard time.
    pub async fn recv(&self) -> Message {
        let mut buf = vec![0u8; 65_536];
        let (n, _) = tokio::time::timeout(GUARD, self.sock.recv_from(&mut buf))
            .await
            .expect("a message within the guard time")
            .expect("recv");
        match parse(&buf[..n], Framing::Datagram) {
            Ok((m, _)) => m,
            Err(_) => Message::Response(lenient_response(&buf[..n])),
        }
    }

    /// The next response, skipping 100 Trying.
    pub async fn recv_final_or_ringing(&self) -> Response {
        loop {
            if let Message::Response(r) = self.recv().await
                && r.status.0 != 100
            {
                return r;
            }
        }
    }
}

/// A response whose headers echo a malformed request (a 400 copies the bad Via, §8.2.6.2):
/// keep the status line and the header lines as text.
fn lenient_response(bytes: &[u8]) -> Response {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    assert!(
        status_line.starts_with("SIP/2.0 "),
        "a response: {status_line:?}"
    );
    let code: u16 = status_line[8..11].parse().expect("status code");
    let mut headers = switchboard::sip::message::Headers::default();
    for l in lines.take_while(|l| !l.is_empty()) {
        if let Some((n, v)) = l.split_once(':') {
            headers.push(n.trim(), v.trim());
        }
    }
    Response {
        status: switchboard::sip::message::StatusCode(code),
        reason: status_line[11..].trim().to_owned(),
        headers,
        body: Default::default(),
    }
}

/// Pulls `name="value"` or `name=value` out of a challenge header value.
pub fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    let lower = challenge.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find(&format!("{name}=")) {
        let at = from + pos;
        let before = lower[..at].chars().last();
        if matches!(before, Some(' ' | ',' | '\t')) {
            let rest = &challenge[at + name.len() + 1..];
            return Some(if let Some(r) = rest.strip_prefix('"') {
                r.split('"').next().unwrap_or("").to_owned()
            } else {
                rest.split([',', ' ']).next().unwrap_or("").to_owned()
            });
        }
        from = at + 1;
    }
    None
}

/// An MD5 `Authorization` value answering `challenge` (qop=auth).
pub fn digest_md5(challenge: &str, user: &str, password: &str, method: &str, uri: &str) -> String {
    use switchboard::sip::auth::{Algorithm, ha1};
    let realm = challenge_param(challenge, "realm").expect("realm");
    let nonce = challenge_param(challenge, "nonce").expect("nonce");
    let opaque = challenge_param(challenge, "opaque");
    let h1 = ha1(Algorithm::Md5, user, &realm, password);
    let h2 = Algorithm::Md5.hash_hex(format!("{method}:{uri}").as_bytes());
    let cnonce = "0a4f113b";
    let nc = "00000001";
    let response =
        Algorithm::Md5.hash_hex(format!("{h1}:{nonce}:{nc}:{cnonce}:auth:{h2}").as_bytes());
    let mut v = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\""
    );
    if let Some(o) = opaque {
        v.push_str(&format!(", opaque=\"{o}\""));
    }
    v
}

/// The MD5 challenge among a response's challenge headers.
pub fn md5_challenge(resp: &Response, header: &str) -> String {
    resp.headers
        .get_all(header)
        .find(|c| {
            c.to_ascii_uppercase().contains("MD5") || !c.to_ascii_uppercase().contains("SHA-256")
        })
        .expect("an MD5 challenge")
        .to_owned()
}

impl Ua {
    /// REGISTER `ext` with this UA's address as contact, answering the challenge.
    pub async fn register(&self, ext: &str, password: &str, expires: u32) -> Response {
        let server = self.server;
        let uri = format!("sip:{}", server);
        let base = |cseq: u32, auth: Option<String>| {
            let mut m = format!(
                "REGISTER {uri} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKreg{ext}{cseq};rport\nMax-Forwards: 70\nFrom: <sip:{ext}@switchboard>;tag=r{ext}\nTo: <sip:{ext}@switchboard>\nCall-ID: reg-{ext}-{{addr}}\nCSeq: {cseq} REGISTER\nContact: <sip:{ext}@{{addr}}>\nExpires: {expires}\n"
            );
            if let Some(a) = auth {
                m.push_str(&format!("Authorization: {a}\n"));
            }
            m.push_str("Content-Length: 0\n\n");
            m
        };
        self.send_text(&base(1, None)).await;
        let challenge = self.recv_final_or_ringing().await;
        assert_eq!(challenge.status.0, 401, "REGISTER is challenged");
        let ch = md5_challenge(&challenge, "WWW-Authenticate");
        self.send_text(&base(
            2,
            Some(digest_md5(&ch, ext, password, "REGISTER", &uri)),
        ))
        .await;
        self.recv_final_or_ringing().await
    }
}

/// The RTP address an SDP body points at.
pub fn sdp_target(body: &[u8]) -> SocketAddr {
    let text = String::from_utf8_lossy(body);
    let ip = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))
        .expect("c= line")
        .trim()
        .to_owned();
    let port = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next())
        .expect("m= line")
        .to_owned();
    format!("{ip}:{port}").parse().expect("rtp address")
}

pub async fn recv_request(ua: &Ua) -> Request {
    loop {
        if let Message::Request(r) = ua.recv().await {
            return r;
        }
    }
}

/// A response to `req` from the callee UA, with To tag and Contact.
pub fn answer(
    req: &Request,
    code: u16,
    reason: &str,
    contact: SocketAddr,
    body: Option<String>,
) -> Vec<u8> {
    let mut m = format!("SIP/2.0 {code} {reason}\r\n");
    for v in req.headers.get_all("Via") {
        m.push_str(&format!("Via: {v}\r\n"));
    }
    for name in ["From", "Call-ID", "CSeq"] {
        m.push_str(&format!(
            "{name}: {}\r\n",
            req.headers.get(name).expect("header")
        ));
    }
    let to = req.headers.get("To").expect("To");
    if to.contains(";tag=") {
        m.push_str(&format!("To: {to}\r\n"));
    } else {
        m.push_str(&format!("To: {to};tag=callee\r\n"));
    }
    m.push_str(&format!("Contact: <sip:callee@{contact}>\r\n"));
    match body {
        Some(b) => {
            let b = b.replace('\n', "\r\n");
            m.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        }
        None => m.push_str("Content-Length: 0\r\n\r\n"),
    }
    m.into_bytes()
}

pub async fn expect_status(ua: &Ua, code: u16) -> Response {
    let r = ua.recv_final_or_ringing().await;
    assert_eq!(
        r.status.0, code,
        "expected {code}, got {} {}",
        r.status.0, r.reason
    );
    r
}

/// An INVITE from `from_ext` to `to_ext` carrying `sdp` (`\n` line ends, turned into CRLF);
/// `{addr}` stands for the sender's address.
pub fn invite_with_sdp(
    to_ext: &str,
    from_ext: &str,
    call_id: &str,
    cseq: u32,
    sdp: &str,
    auth: Option<&str>,
    server: SocketAddr,
) -> String {
    let mut m = format!(
        "INVITE sip:{to_ext}@{server} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKinv{call_id}{cseq};rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:{from_ext}@switchboard>;tag=a{call_id}\nTo: <sip:{to_ext}@switchboard>\nCall-ID: {call_id}\nCSeq: {cseq} INVITE\nContact: <sip:{from_ext}@{{addr}}>\nContent-Type: application/sdp\n"
    );
    if let Some(a) = auth {
        m.push_str(&format!("Proxy-Authorization: {a}\n"));
    }
    let body = sdp.replace('\n', "\r\n");
    m.push_str(&format!("Content-Length: {}\n\n", body.len()));
    m.replace('\n', "\r\n") + &body
}

/// Sends an INVITE carrying `sdp`, answers the 407 with digest credentials and sends it again.
pub async fn call_with_sdp(a: &Ua, to: &str, from: &str, pw: &str, call_id: &str, sdp: &str) {
    let server = a.server;
    a.send(
        invite_with_sdp(to, from, call_id, 1, sdp, None, server)
            .replace("{addr}", &a.addr().to_string())
            .as_bytes(),
    )
    .await;
    let challenge = a.recv_final_or_ringing().await;
    assert_eq!(challenge.status.0, 407, "INVITE is challenged with 407");
    a.send_text(&format!(
        "ACK sip:{to}@{server} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKinv{call_id}1;rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:{from}@switchboard>;tag=a{call_id}\nTo: {}\nCall-ID: {call_id}\nCSeq: 1 ACK\nContent-Length: 0\n\n",
        challenge.headers.get("To").expect("To")
    ))
    .await;
    let ch = md5_challenge(&challenge, "Proxy-Authenticate");
    let auth = digest_md5(&ch, from, pw, "INVITE", &format!("sip:{to}@{server}"));
    a.send(
        invite_with_sdp(to, from, call_id, 2, sdp, Some(&auth), server)
            .replace("{addr}", &a.addr().to_string())
            .as_bytes(),
    )
    .await;
}

/// A `/v1` client holding one API key.
pub struct ApiClient {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of the server whose HTTP listener is `http`.
    pub fn new(http: SocketAddr, key: &str) -> ApiClient {
        ApiClient {
            base: format!("http://{http}"),
            key: key.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// `http://ADDR`, the server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The API key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Sends a request with the key (and `body` as JSON): the status and the JSON body (Null
    /// when not JSON). Panics when no answer comes within [`GUARD`].
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = tokio::time::timeout(GUARD, req.send())
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer within {GUARD:?}"))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// A WebSocket on `/v1/events`.
pub type EventSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `GET /v1/events?{query}` of the server at `http`, upgraded to a WebSocket, `key` on the
/// handshake.
pub async fn connect_events(http: SocketAddr, key: &str, query: &str) -> EventSocket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{http}/v1/events?{query}")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("header"),
    );
    let (ws, resp) = tokio::time::timeout(GUARD, tokio_tungstenite::connect_async(req))
        .await
        .expect("WebSocket handshake in time")
        .expect("WebSocket upgrade");
    assert_eq!(resp.status(), 101);
    ws
}

/// The next event frame (pings skipped); a close or a non-event frame fails the test.
pub async fn next_event(ws: &mut EventSocket) -> switchboard::api::events::Event {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(GUARD, ws.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).expect("Event JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Checks `Switchboard-Signature: t=…,v1=…` the way the README tells receivers to: HMAC-SHA256
/// with `secret` over `t`, `.` and the raw body.
pub fn verify_signature(signature: &str, body: &[u8], secret: &str) -> bool {
    use hmac::{Hmac, Mac};
    let mut t = None;
    let mut v1 = None;
    for part in signature.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(expected) = hex::decode(v1) else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}
