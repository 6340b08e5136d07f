//! Transport integration tests over real sockets on 127.0.0.1, with a toy parser standing in
//! for `sip::message::parse` (same contract: `Incomplete` on a stream waits for bytes).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::sip::message::{Headers, Method, Request, Salvage, StatusCode, Uri};

/// A bound on how long any single step may take before the test is declared hung.
const STEP: Duration = Duration::from_secs(5);

/// Toy parser: `METHOD rest\r\n` + `Content-Length: N\r\n` lines + `\r\n` + body. A start line
/// beginning `BADREQ` is an invalid request with salvage, `BADRESP` an invalid response.
fn toy_parse(buf: &[u8], framing: Framing) -> Result<(Message, usize), ParseError> {
    let invalid = |is_request: bool| {
        ParseError::Invalid(Box::new(Invalid {
            reason: "toy says bad".into(),
            status: StatusCode::BAD_REQUEST,
            is_request,
            salvage: is_request.then(Salvage::default),
        }))
    };
    if buf.starts_with(b"BADREQ") {
        return Err(invalid(true));
    }
    if buf.starts_with(b"BADRESP") {
        return Err(invalid(false));
    }
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return match framing {
            Framing::Stream => Err(ParseError::Incomplete),
            Framing::Datagram => Err(invalid(true)),
        };
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| invalid(true))?;
    let mut lines = head.split("\r\n");
    let method = lines
        .next()
        .and_then(|l| l.split(' ').next())
        .ok_or_else(|| invalid(true))?;
    let mut headers = Headers::default();
    let mut len = None;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| invalid(true))?;
        if name.eq_ignore_ascii_case("Content-Length") {
            len = Some(value.trim().parse::<usize>().map_err(|_| invalid(true))?);
        }
        headers.push(name, value.trim());
    }
    let body_start = head_end + 4;
    let len = match (len, framing) {
        (Some(n), _) => n,
        (None, Framing::Datagram) => buf.len() - body_start,
        (None, Framing::Stream) => return Err(invalid(true)),
    };
    if buf.len() < body_start + len {
        return match framing {
            Framing::Stream => Err(ParseError::Incomplete),
            Framing::Datagram => Err(invalid(true)),
        };
    }
    let mut req = Request::new(
        Method::from_token(method),
        Uri::Other {
            scheme: "sip".into(),
            rest: "x".into(),
        },
    );
    req.headers = headers;
    req.body = Bytes::copy_from_slice(&buf[body_start..body_start + len]);
    Ok((Message::Request(req), body_start + len))
}

fn wire(method: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} sip:x SIP/2.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

struct Harness {
    set: TransportSet,
    rx: mpsc::Receiver<Inbound>,
    shutdown: CancellationToken,
}

async fn start(listens: &str, config: TransportConfig) -> Harness {
    let listens: Vec<Listen> = listens
        .split(',')
        .map(|s| s.parse().expect("test listen address"))
        .collect();
    let (tx, rx) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let set = TransportSet::bind_with(&listens, tx, shutdown.clone(), config)
        .await
        .expect("bind on loopback");
    Harness { set, rx, shutdown }
}

fn toy_config() -> TransportConfig {
    TransportConfig {
        parser: toy_parse,
        ..TransportConfig::default()
    }
}

impl Harness {
    fn addr(&self, t: Transport) -> SocketAddr {
        self.set.via_sent_by(t).expect("bound transport")
    }

    async fn next(&mut self) -> Inbound {
        tokio::time::timeout(STEP, self.rx.recv())
            .await
            .expect("inbound in time")
            .expect("open")
    }

    async fn next_request(&mut self) -> (Inbound, Request) {
        let inbound = self.next().await;
        match &inbound.event {
            InboundEvent::Message(Message::Request(r)) => {
                let r = r.clone();
                (inbound, r)
            }
            other => panic!("expected a request, got {other:?}"),
        }
    }
}

async fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(STEP, s.read_exact(&mut buf))
        .await
        .expect("read in time")
        .expect("read");
    buf
}

async fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut buf))
        .await
        .expect("EOF in time")
        .expect("read");
    buf
}

#[test]
fn listen_parses_and_prints_ipv4_and_ipv6() {
    let l: Listen = "udp:127.0.0.1:5060".parse().expect("v4");
    assert_eq!(
        l,
        Listen {
            transport: Transport::Udp,
            addr: "127.0.0.1:5060".parse().expect("a")
        }
    );
    let l: Listen = "TCP:[::1]:5070".parse().expect("v6");
    assert_eq!(l.transport, Transport::Tcp);
    assert_eq!(l.to_string(), "tcp:[::1]:5070");
    assert!("sctp:127.0.0.1:5060".parse::<Listen>().is_err());
    assert!("udp:127.0.0.1".parse::<Listen>().is_err());
    assert!("udp".parse::<Listen>().is_err());
}

#[test]
fn listen_deserialises_from_a_string() {
    #[derive(serde::Deserialize)]
    struct C {
        listen: Vec<Listen>,
    }
    let c: C = toml::from_str(r#"listen = ["udp:0.0.0.0:5060", "tcp:[::]:5060"]"#).expect("toml");
    assert_eq!(c.listen[1].to_string(), "tcp:[::]:5060");
    assert!(toml::from_str::<C>(r#"listen = ["bogus"]"#).is_err());
}

#[tokio::test]
async fn udp_message_is_delivered_with_the_sender_as_peer() {
    let mut h = start("udp:127.0.0.1:0", toy_config()).await;
    let server = h.addr(Transport::Udp);
    assert_ne!(server.port(), 0, "local_addrs reports the ephemeral port");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    client
        .send_to(b"\r\n\r\n", server)
        .await
        .expect("keep-alive");
    client
        .send_to(&wire("OPTIONS", "hi"), server)
        .await
        .expect("send");
    let (inbound, req) = h.next_request().await;
    assert_eq!(
        inbound.peer,
        Peer {
            transport: Transport::Udp,
            addr: client.local_addr().expect("addr")
        }
    );
    assert_eq!(inbound.local, server);
    assert_eq!(req.method, Method::Options);
    assert_eq!(
        &req.body[..],
        b"hi",
        "the keep-alive before it was dropped silently"
    );
}

#[tokio::test]
async fn udp_garbage_is_reported_malformed() {
    let mut h = start("udp:127.0.0.1:0", toy_config()).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    client
        .send_to(b"BADREQ nonsense", h.addr(Transport::Udp))
        .await
        .expect("send");
    let inbound = h.next().await;
    assert!(matches!(inbound.event, InboundEvent::Malformed(ref i) if i.is_request));
}

#[tokio::test]
async fn udp_send_leaves_from_the_listening_socket() {
    let h = start("udp:127.0.0.1:0", toy_config()).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    let to = Peer {
        transport: Transport::Udp,
        addr: client.local_addr().expect("addr"),
    };
    h.set
        .send(to, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"))
        .await
        .expect("send");
    let mut buf = [0u8; 100];
    let (n, from) = tokio::time::timeout(STEP, client.recv_from(&mut buf))
        .await
        .expect("in time")
        .expect("recv");
    assert_eq!(&buf[..n], b"SIP/2.0 200 OK\r\n\r\n");
    assert_eq!(from, h.addr(Transport::Udp));
}

#[tokio::test]
async fn udp_send_to_a_family_we_do_not_listen_on_fails() {
    let h = start("udp:127.0.0.1:0", toy_config()).await;
    let to = Peer {
        transport: Transport::Udp,
        addr: "[::1]:5060".parse().expect("v6"),
    };
    let err = h
        .set
        .send(to, Bytes::from_static(b"x"))
        .await
        .expect_err("no v6 socket");
    assert!(matches!(err, TransportError::NoSocket { .. }));
}

#[tokio::test]
async fn tcp_message_written_one_byte_at_a_time_arrives_once() {
    let mut h = start("tcp:127.0.0.1:0", toy_config()).await;
    let mut c = TcpStream::connect(h.addr(Transport::Tcp))
        .await
        .expect("connect");
    c.set_nodelay(true).expect("nodelay");
    for b in wire("INVITE", "v=0") {
        c.write_all(&[b]).await.expect("write");
    }
    c.write_all(&wire("BYE", "")).await.expect("write");
    let (inbound, req) = h.next_request().await;
    assert_eq!(
        inbound.peer,
        Peer {
            transport: Transport::Tcp,
            addr: c.local_addr().expect("addr")
        }
    );
    assert_eq!((req.method, &req.body[..]), (Method::Invite, &b"v=0"[..]));
    let (_, next) = h.next_request().await;
    assert_eq!(
        next.method,
        Method::Bye,
        "the INVITE was delivered exactly once"
    );
}

#[tokio::test]
async fn tcp_two_messages_in_one_write_arrive_as_two() {
    let mut h = start("tcp:127.0.0.1:0", toy_config()).await;
    let mut c = TcpStream::connect(h.addr(Transport::Tcp))
        .await
        .expect("connect");
    let mut both = wire("REGISTER", "one");
    both.extend(wire("OPTIONS", "two"));
    c.write_all(&both).await.expect("write");
    let (_, a) = h.next_request().await;
    let (_, b) = h.next_request().await;
    assert_eq!((a.method, &a.body[..]), (Method::Register, &b"one"[..]));
    assert_eq!((b.method, &b.body[..]), (Method::Options, &b"two"[..]));
}

#[tokio::test]
async fn tcp_crlfcrlf_ping_gets_a_crlf_pong() {
    let mut h = start("tcp:127.0.0.1:0", toy_config()).await;
    let mut c = TcpStream::connect(h.addr(Transport::Tcp))
        .await
        .expect("connect");
    c.write_all(b"\r\n\r\n").await.expect("ping");
    assert_eq!(read_exact(&mut c, 2).await, b"\r\n");
    c.write_all(&wire("OPTIONS", "")).await.expect("write");
    let (_, req) = h.next_request().await;
    assert_eq!(
        req.method,
        Method::Options,
        "the connection is still usable after a ping"
    );
}

#[tokio::test]
async fn tcp_malformed_response_closes_the_connection() {
    let mut h = start("tcp:127.0.0.1:0", toy_config()).await;
    let mut c = TcpStream::connect(h.addr(Transport::Tcp))
        .await
        .expect("connect");
    c.write_all(b"BADRESP 200 OK\r\n\r\n").await.expect("write");
    let inbound = h.next().await;
    assert!(matches!(inbound.event, InboundEvent::Malformed(ref i) if !i.is_request));
    assert_eq!(read_to_eof(&mut c).await, b"");
}

#[tokio::test]
async fn tcp_malformed_request_gets_its_answer_then_the_connection_closes() {
    let mut h = start("tcp:127.0.0.1:0", toy_config()).await;
    let mut c = TcpStream::connect(h.addr(Transport::Tcp))
        .await
        .expect("connect");
    c.write_all(b"BADREQ sip:x SIP/2.0\r\n\r\n")
        .await
        .expect("write");
    let inbound = h.next().await;
    assert!(matches!(inbound.event, InboundEvent::Malformed(ref i) if i.is_request));
    h.set
        .send(
            inbound.peer,
            Bytes::from_static(b"SIP/2.0 400 Bad Request\r\n\r\n"),
        )
        .await
        .expect("send");
    assert_eq!(
        read_to_eof(&mut c).await,
        b"SIP/2.0 400 Bad Request\r\n\r\n"
    );
}

#[tokio::test]
async fn tcp_send_to_a_peer_reuses_its_inbound_connection() {
    let mut h = start("tcp:127.0.0.1:0", toy_config()).await;
    let mut c = TcpStream::connect(h.addr(Transport::Tcp))
        .await
        .expect("connect");
    c.write_all(&wire("INVITE", "")).await.expect("write");
    let (inbound, _) = h.next_request().await;
    h.set
        .send(inbound.peer, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"))
        .await
        .expect("send");
    assert_eq!(read_exact(&mut c, 18).await, b"SIP/2.0 200 OK\r\n\r\n");
    assert_eq!(h.set.connection_count(), 1);
}

#[tokio::test]
async fn tcp_send_to_a_new_peer_connects_and_reuses_that_connection() {
    let mut h = start("tcp:127.0.0.1:0", toy_config()).await;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("peer listener");
    let to = Peer {
        transport: Transport::Tcp,
        addr: listener.local_addr().expect("addr"),
    };
    h.set
        .send(to, Bytes::from(wire("OPTIONS", "1")))
        .await
        .expect("send");
    let (mut s, _) = tokio::time::timeout(STEP, listener.accept())
        .await
        .expect("in time")
        .expect("accept");
    assert_eq!(
        read_exact(&mut s, wire("OPTIONS", "1").len()).await,
        wire("OPTIONS", "1")
    );

    h.set
        .send(to, Bytes::from(wire("OPTIONS", "2")))
        .await
        .expect("send again");
    assert_eq!(
        read_exact(&mut s, wire("OPTIONS", "2").len()).await,
        wire("OPTIONS", "2")
    );
    assert_eq!(
        h.set.connection_count(),
        1,
        "the second send reused the connection"
    );

    s.write_all(&wire("NOTIFY", ""))
        .await
        .expect("peer writes back");
    let (inbound, req) = h.next_request().await;
    assert_eq!((inbound.peer, req.method), (to, Method::Notify));
}

#[tokio::test]
async fn tcp_send_to_a_closed_port_reports_a_connect_error() {
    let h = start("tcp:127.0.0.1:0", toy_config()).await;
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    let to = Peer {
        transport: Transport::Tcp,
        addr,
    };
    let err = h
        .set
        .send(to, Bytes::from_static(b"x"))
        .await
        .expect_err("refused");
    assert!(matches!(err, TransportError::Connect { .. }), "{err}");
    assert_eq!(h.set.connection_count(), 0);
}

#[tokio::test]
async fn tcp_connections_over_the_limit_are_refused() {
    let mut h = start(
        "tcp:127.0.0.1:0",
        TransportConfig {
            max_connections: 1,
            ..toy_config()
        },
    )
    .await;
    let mut first = TcpStream::connect(h.addr(Transport::Tcp))
        .await
        .expect("connect");
    first.write_all(&wire("OPTIONS", "")).await.expect("write");
    h.next_request().await;
    let mut second = TcpStream::connect(h.addr(Transport::Tcp))
        .await
        .expect("kernel accepts");
    assert_eq!(read_to_eof(&mut second).await, b"");
}

#[tokio::test(start_paused = true)]
async fn idle_tcp_connection_is_closed_after_the_idle_timeout() {
    let mut h = start("tcp:127.0.0.1:0", toy_config()).await;
    let mut c = TcpStream::connect(h.addr(Transport::Tcp))
        .await
        .expect("connect");
    c.write_all(&wire("OPTIONS", "")).await.expect("write");
    h.rx.recv().await.expect("delivered");
    let before = tokio::time::Instant::now();
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).await.expect("EOF");
    assert!(
        before.elapsed() >= IDLE_TIMEOUT,
        "closed only after {:?}",
        before.elapsed()
    );
    assert_eq!(h.set.connection_count(), 0);
}

#[tokio::test]
async fn shutdown_ends_every_task_including_open_connections() {
    let mut h = start("udp:127.0.0.1:0,tcp:127.0.0.1:0", toy_config()).await;
    let mut c = TcpStream::connect(h.addr(Transport::Tcp))
        .await
        .expect("connect");
    c.write_all(&wire("OPTIONS", "")).await.expect("write");
    h.next_request().await;
    h.shutdown.cancel();
    tokio::time::timeout(STEP, h.set.closed())
        .await
        .expect("every task ended");
    assert_eq!(read_to_eof(&mut c).await, b"");
    let to = Peer {
        transport: Transport::Udp,
        addr: c.local_addr().expect("addr"),
    };
    assert!(matches!(
        h.set.send(to, Bytes::new()).await,
        Err(TransportError::Shutdown)
    ));
}

#[tokio::test]
async fn ipv6_udp_and_tcp_bind_and_deliver() {
    let Ok(probe) = std::net::UdpSocket::bind("[::1]:0") else {
        return; // no IPv6 loopback in this environment
    };
    drop(probe);
    let mut h = start("udp:[::1]:0,tcp:[::1]:0", toy_config()).await;
    let client = UdpSocket::bind("[::1]:0").await.expect("client");
    client
        .send_to(&wire("OPTIONS", ""), h.addr(Transport::Udp))
        .await
        .expect("send");
    let (inbound, _) = h.next_request().await;
    assert!(inbound.peer.addr.is_ipv6());
    let listens = h.set.local_addrs();
    assert_eq!(listens.len(), 2);
    assert!(
        listens
            .iter()
            .all(|l| l.addr.is_ipv6() && l.addr.port() != 0)
    );
}
