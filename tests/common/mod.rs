//! Test support: an in-process server on ephemeral ports, and a tiny SIP user agent over a real
//! UDP socket.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use switchboard::config::Config;
use switchboard::server::Server;
use switchboard::sip::message::{Framing, Message, Response, parse};
use switchboard::sip::transport::Transport;
use tokio::net::UdpSocket;

/// Upper bound for any single wait in a test: a failure guard, never a synchronisation.
pub const GUARD: Duration = Duration::from_secs(10);

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
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::default();
        config.data_dir = dir.path().to_path_buf();
        config.sip.listen = vec!["udp:127.0.0.1:0".into(), "tcp:127.0.0.1:0".into()];
        config.http.listen = "127.0.0.1:0".parse().expect("addr");
        config.rtp.ports = "40000-49999".into();
        edit(&mut config);
        let settings = config.validate().expect("valid test config");
        let server = switchboard::server::start(settings).await.expect("server starts");
        TestServer {
            sip_udp: server.sip_addr(Transport::Udp).expect("udp listener"),
            sip_tcp: server.sip_addr(Transport::Tcp).expect("tcp listener"),
            http: server.http,
            server: Some(server),
            dir,
        }
    }

    /// Adds an extension.
    pub async fn add_user(&self, ext: &str, password: &str) {
        let server = self.server.as_ref().expect("running");
        server.store.add_user(ext, None, password, "switchboard").await.expect("add user");
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
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
        let text = text.replace("{addr}", &self.addr().to_string()).replace('\n', "\r\n");
        self.send(text.as_bytes()).await;
    }

    /// The next SIP message from anyone, within the guard time.
    pub async fn recv(&self) -> Message {
        let mut buf = vec![0u8; 65_536];
        let (n, _) = tokio::time::timeout(GUARD, self.sock.recv_from(&mut buf))
            .await
            .expect("a message within the guard time")
            .expect("recv");
        parse(&buf[..n], Framing::Datagram).expect("server sends valid SIP").0
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
