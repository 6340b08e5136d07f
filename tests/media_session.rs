//! The media session (`media::engine::MediaSession`) over real UDP sockets on 127.0.0.1, with
//! both legs on PCMU so packets are relayed without decoding: forwarding both ways from the
//! session's symmetric address with the payload intact and the payload type mapped, latching,
//! NAT, RTCP terminated per leg, the port pool's lifecycle, garbage handling and the per-leg
//! statistics of the stop report.
//!
//! Receives are guarded by a timeout, never slept on. The tests run on tokio's
//! current-thread runtime: the session task only runs while the test awaits, so commands sent
//! before a packet are always applied before that packet is read (the task drains its
//! commands before its sockets).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use switchboard::media::codec::CodecKind;
use switchboard::media::engine::{MediaCommand, MediaEvent, MediaSession, PipelineConfig};
use switchboard::media::negotiate::LegMedia;
use switchboard::media::ports::{Leg, PortError, PortPool};
use switchboard::media::rtp::RtpPacket;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const GUARD: Duration = Duration::from_secs(5);
/// RTCP: 5 s × 0.5–1.5 between reports, half that before the first (RFC 3550 §6.3.1).
const RTCP_GUARD: Duration = Duration::from_secs(8);
/// The payload types of PCMU on each leg: static 0 for A, a dynamic number B's SDP chose.
const PT_A: u8 = 0;
const PT_B: u8 = 100;
/// The parties' own SSRCs.
const SSRC_A: u32 = 0x1111_1111;
const SSRC_B: u32 = 0x2222_2222;

/// Each test gets its own slice of ports so parallel tests never share a pool range. The
/// slices sit below the kernel's ephemeral range (32768+), so the test parties' own sockets
/// never take a pool port.
fn pool(pairs: u16) -> PortPool {
    static NEXT: AtomicU16 = AtomicU16::new(24000);
    let low = NEXT.fetch_add(pairs * 2 + 16, Ordering::Relaxed);
    PortPool::new(low, low + pairs * 2 - 1).expect("valid test range")
}

fn open(pool: &PortPool) -> Result<MediaSession, PortError> {
    // The events are not looked at; the receiver is dropped (sends to it are ignored).
    let (events, _) = mpsc::unbounded_channel::<MediaEvent>();
    MediaSession::open(pool, LOCALHOST, 2, PipelineConfig::default(), events)
}

fn pcmu(payload_type: u8) -> Option<LegMedia> {
    Some(LegMedia {
        codec: CodecKind::Pcmu,
        payload_type,
        telephone_event: None,
    })
}

/// Both legs on PCMU: the session relays without decoding.
fn set_pcmu(session: &MediaSession) {
    session.command(MediaCommand::SetMedia {
        leg: Leg::A,
        media: pcmu(PT_A),
    });
    session.command(MediaCommand::SetMedia {
        leg: Leg::B,
        media: pcmu(PT_B),
    });
}

/// One party: an RTP socket on an even port with its RTCP socket on the next one (so the
/// session's RTCP reports, sent to RTP + 1, land on a socket of this party).
struct Party {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl Party {
    async fn new() -> Party {
        loop {
            let rtp = UdpSocket::bind((LOCALHOST, 0))
                .await
                .expect("bind test party");
            let port = addr(&rtp).port();
            if port % 2 == 1 || port == u16::MAX {
                continue;
            }
            if let Ok(rtcp) = UdpSocket::bind((LOCALHOST, port + 1)).await {
                return Party { rtp, rtcp };
            }
        }
    }

    fn addr(&self) -> SocketAddr {
        addr(&self.rtp)
    }
}

fn addr(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().expect("bound socket has an address")
}

fn rtcp_addr(session: &MediaSession, leg: Leg) -> SocketAddr {
    SocketAddr::new(LOCALHOST, session.local_port(leg) + 1)
}

fn rtp(pt: u8, ssrc: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
    let ts = u32::from(seq) * 160;
    let mut packet = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    packet[2..4].copy_from_slice(&seq.to_be_bytes());
    packet[4..8].copy_from_slice(&ts.to_be_bytes());
    packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

fn from_a(seq: u16, payload: &[u8]) -> Vec<u8> {
    rtp(PT_A, SSRC_A, seq, payload)
}

fn from_b(seq: u16, payload: &[u8]) -> Vec<u8> {
    rtp(PT_B, SSRC_B, seq, payload)
}

async fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    recv_within(socket, GUARD).await
}

async fn recv_within(socket: &UdpSocket, guard: Duration) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (len, from) = timeout(guard, socket.recv_from(&mut buf))
        .await
        .expect("datagram arrives before the guard timeout")
        .expect("recv_from");
    buf.truncate(len);
    (buf, from)
}

/// A relayed packet as its receiver sees it.
#[derive(Debug)]
struct Got {
    pt: u8,
    ssrc: u32,
    seq: u16,
    ts: u32,
    payload: Vec<u8>,
}

async fn recv_rtp(socket: &UdpSocket) -> (Got, SocketAddr) {
    let (bytes, from) = recv(socket).await;
    let p = RtpPacket::parse(&bytes).expect("the session sends valid RTP");
    let got = Got {
        pt: p.payload_type(),
        ssrc: p.ssrc().0,
        seq: p.sequence(),
        ts: p.timestamp(),
        payload: p.payload().to_vec(),
    };
    (got, from)
}

/// Both parties known from SDP, both legs on PCMU.
struct Call {
    session: MediaSession,
    a: Party,
    b: Party,
    at_a: SocketAddr,
    at_b: SocketAddr,
}

async fn call(pool: &PortPool) -> Call {
    let session = open(pool).expect("media session opens");
    let (a, b) = (Party::new().await, Party::new().await);
    session.set_remote(Leg::A, a.addr(), None);
    session.set_remote(Leg::B, b.addr(), None);
    set_pcmu(&session);
    let (at_a, at_b) = (session.local_addr(Leg::A), session.local_addr(Leg::B));
    Call {
        session,
        a,
        b,
        at_a,
        at_b,
    }
}

#[tokio::test]
async fn packets_flow_both_ways_intact_from_the_symmetric_address_with_the_payload_type_mapped() {
    let pool = pool(2);
    let c = call(&pool).await;
    c.a.rtp
        .send_to(&from_a(1, b"hello from A"), c.at_a)
        .await
        .unwrap();
    let (got, from) = recv_rtp(&c.b.rtp).await;
    assert_eq!(got.payload, b"hello from A");
    assert_eq!(got.pt, PT_B, "B gets the payload type of its own SDP");
    assert_ne!(got.ssrc, SSRC_A, "B's stream is the session's, not A's");
    assert_eq!(
        from, c.at_b,
        "B sees the session's B port, the one advertised to it"
    );

    c.b.rtp
        .send_to(&from_b(7, b"and back from B"), c.at_b)
        .await
        .unwrap();
    let (got, from) = recv_rtp(&c.a.rtp).await;
    assert_eq!(got.payload, b"and back from B");
    assert_eq!(got.pt, PT_A);
    assert_ne!(got.ssrc, SSRC_B);
    assert_eq!(from, c.at_a);

    let report = c.session.stop().await;
    let [a, b] = report
        .pipeline
        .legs
        .map(|l| l.expect("both legs had media"));
    assert_eq!((a.packets_received, a.packets_sent), (1, 1));
    assert_eq!((b.packets_received, b.packets_sent), (1, 1));
    assert_eq!(a.octets_received, b"hello from A".len() as u64);
    assert_eq!(b.octets_sent, b"hello from A".len() as u64);
    assert_eq!(report.pipeline.codecs, [Some(CodecKind::Pcmu); 2]);
}

#[tokio::test]
async fn a_second_source_is_dropped_once_the_first_latched() {
    let pool = pool(2);
    let c = call(&pool).await;
    let intruder = Party::new().await;
    c.a.rtp.send_to(&from_a(1, b"first"), c.at_a).await.unwrap();
    assert_eq!(recv_rtp(&c.b.rtp).await.0.payload, b"first");
    intruder
        .rtp
        .send_to(&rtp(PT_A, 0x6666_6666, 2, b"intruder"), c.at_a)
        .await
        .unwrap();
    c.a.rtp
        .send_to(&from_a(2, b"second"), c.at_a)
        .await
        .unwrap();
    assert_eq!(
        recv_rtp(&c.b.rtp).await.0.payload,
        b"second",
        "the intruder's packet never reaches B"
    );
    let report = c.session.stop().await;
    let a = report.pipeline.legs[0].as_ref().expect("leg A had media");
    assert_eq!(
        a.packets_received, 2,
        "the intruder was dropped before the pipeline"
    );
}

#[tokio::test]
async fn a_natted_first_source_receives_the_return_traffic() {
    let pool = pool(2);
    let session = open(&pool).unwrap();
    let (sdp_a, natted_a, b) = (Party::new().await, Party::new().await, Party::new().await);
    session.set_remote(Leg::A, sdp_a.addr(), None);
    session.set_remote(Leg::B, b.addr(), None);
    set_pcmu(&session);
    natted_a
        .rtp
        .send_to(&from_a(1, b"from behind NAT"), session.local_addr(Leg::A))
        .await
        .unwrap();
    assert_eq!(
        recv_rtp(&b.rtp).await.0.payload,
        b"from behind NAT",
        "unlatched traffic is forwarded"
    );
    b.rtp
        .send_to(&from_b(1, b"reply"), session.local_addr(Leg::B))
        .await
        .unwrap();
    let (got, from) = recv_rtp(&natted_a.rtp).await;
    assert_eq!(got.payload, b"reply");
    assert_eq!(from, session.local_addr(Leg::A));
    session.stop().await;
}

/// The first RTCP datagram a party gets from the session: it must be the session's own
/// report (SR or RR from the SSRC of the stream the session sends this party) and carry
/// nothing of the other party's report.
async fn own_report(party: &Party, session_ssrc: u32, foreign: &[u8], other_ssrc: u32) {
    let (report, _) = recv_within(&party.rtcp, RTCP_GUARD).await;
    assert_ne!(report, foreign, "RTCP is not relayed");
    assert_eq!(report[0] >> 6, 2, "RTCP version 2");
    assert!(
        matches!(report[1], 200 | 201),
        "a compound report starts with an SR or RR, got type {}",
        report[1]
    );
    assert_eq!(
        u32::from_be_bytes([report[4], report[5], report[6], report[7]]),
        session_ssrc,
        "sent by the leg's own RTP session"
    );
    assert!(
        !report
            .windows(4)
            .any(|w| w == other_ssrc.to_be_bytes().as_slice()),
        "the other party's SSRC appears nowhere in this leg's report"
    );
}

#[tokio::test]
async fn rtcp_is_terminated_per_leg_and_each_leg_gets_its_own_reports() {
    let pool = pool(2);
    let c = call(&pool).await;
    // Media both ways, so each leg's session knows its party and has sent RTP.
    c.a.rtp.send_to(&from_a(1, b"a"), c.at_a).await.unwrap();
    let (to_b, _) = recv_rtp(&c.b.rtp).await;
    c.b.rtp.send_to(&from_b(1, b"b"), c.at_b).await.unwrap();
    let (to_a, _) = recv_rtp(&c.a.rtp).await;

    let sr_from_a = [
        0x80, 200, 0, 6, 0x11, 0x11, 0x11, 0x11, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 1, 0,
        0, 0, 1,
    ];
    let rr_from_b = [0x80, 201, 0, 1, 0x22, 0x22, 0x22, 0x22];
    c.a.rtcp
        .send_to(&sr_from_a, rtcp_addr(&c.session, Leg::A))
        .await
        .unwrap();
    c.b.rtcp
        .send_to(&rr_from_b, rtcp_addr(&c.session, Leg::B))
        .await
        .unwrap();

    tokio::join!(
        own_report(&c.b, to_b.ssrc, &sr_from_a, SSRC_A),
        own_report(&c.a, to_a.ssrc, &rr_from_b, SSRC_B),
    );
    c.session.stop().await;
}

#[tokio::test]
async fn re_invite_moves_the_destination_while_running() {
    let pool = pool(2);
    let c = call(&pool).await;
    c.a.rtp
        .send_to(&from_a(1, b"before"), c.at_a)
        .await
        .unwrap();
    assert_eq!(recv_rtp(&c.b.rtp).await.0.payload, b"before");
    let moved_b = Party::new().await;
    c.session.set_remote(Leg::B, moved_b.addr(), None);
    c.a.rtp.send_to(&from_a(2, b"after"), c.at_a).await.unwrap();
    assert_eq!(recv_rtp(&moved_b.rtp).await.0.payload, b"after");
    c.session.stop().await;
}

#[tokio::test]
async fn garbage_datagrams_are_dropped_without_stopping_the_forwarding() {
    let pool = pool(2);
    let c = call(&pool).await;
    let garbage: [&[u8]; 5] = [
        b"xx",
        &[0u8; 40],
        &[],
        // Version 2 but 15 CSRCs announced in a 12-byte packet: passes the socket check,
        // fails the RTP parse.
        &[0x8f, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4],
        // Valid RTP of a payload type A never negotiated.
        &rtp(18, SSRC_A, 1, b"G.729?"),
    ];
    for g in garbage {
        c.a.rtp.send_to(g, c.at_a).await.unwrap();
    }
    // Too short for RTCP; then an RR whose length field runs past the datagram.
    c.a.rtcp
        .send_to(b"rtcp?", rtcp_addr(&c.session, Leg::A))
        .await
        .unwrap();
    c.a.rtcp
        .send_to(
            &[0x80, 201, 0, 7, 1, 2, 3, 4],
            rtcp_addr(&c.session, Leg::A),
        )
        .await
        .unwrap();
    c.a.rtp.send_to(&from_a(2, b"valid"), c.at_a).await.unwrap();
    let (got, _) = recv_rtp(&c.b.rtp).await;
    assert_eq!(
        got.payload, b"valid",
        "garbage never reaches B, valid RTP does"
    );
    c.b.rtp.send_to(&from_b(1, b"still"), c.at_b).await.unwrap();
    assert_eq!(recv_rtp(&c.a.rtp).await.0.payload, b"still");
    let report = c.session.stop().await;
    let a = report.pipeline.legs[0].as_ref().expect("leg A had media");
    assert_eq!(
        a.packets_received, 2,
        "the valid packet and the unknown payload type were parsed"
    );
    assert_eq!(a.packets_sent, 1);
}

#[tokio::test]
async fn ports_return_to_the_pool_when_a_session_stops() {
    let pool = pool(2);
    assert_eq!(pool.capacity(), 2);
    let first = open(&pool).unwrap();
    assert_eq!(pool.available(), 0, "a two-leg session takes two pairs");
    assert!(matches!(open(&pool), Err(PortError::Exhausted)));
    first.stop().await;
    assert_eq!(pool.available(), 2, "a stopped session freed its ports");
    let second = open(&pool).expect("freed ports bind again");
    second.stop().await;
    assert_eq!(pool.available(), 2);
}

#[tokio::test]
async fn a_port_taken_by_another_process_is_skipped() {
    let pool = pool(3);
    let (low, _) = pool.range();
    let first_even = low + low % 2;
    let _squatter =
        std::net::UdpSocket::bind((LOCALHOST, first_even)).expect("squat the first pair");
    let session = open(&pool).expect("binding skips the taken pair");
    assert_ne!(session.local_port(Leg::A), first_even);
    assert_ne!(session.local_port(Leg::B), first_even);
    session.stop().await;
}

#[test]
fn opening_outside_a_runtime_is_an_error() {
    let pool = pool(2);
    assert!(matches!(open(&pool), Err(PortError::NoRuntime)));
    assert_eq!(pool.available(), 2, "nothing was allocated");
}

#[tokio::test]
async fn without_sdp_the_latched_source_is_the_destination() {
    let pool = pool(2);
    let session = open(&pool).unwrap();
    let (a, b) = (Party::new().await, Party::new().await);
    session.set_remote(Leg::A, a.addr(), None);
    set_pcmu(&session);
    let (at_a, at_b) = (session.local_addr(Leg::A), session.local_addr(Leg::B));
    a.rtp.send_to(&from_a(1, b"to nobody"), at_a).await.unwrap();
    // B has sent no SDP yet (early media): its first packet latches it and reaches A.
    b.rtp
        .send_to(&from_b(1, b"early from B"), at_b)
        .await
        .unwrap();
    assert_eq!(recv_rtp(&a.rtp).await.0.payload, b"early from B");
    a.rtp.send_to(&from_a(2, b"to B"), at_a).await.unwrap();
    let (got, from) = recv_rtp(&b.rtp).await;
    assert_eq!(
        got.payload, b"to B",
        "A's first packet was dropped, not queued"
    );
    assert_eq!(from, at_b);
    session.stop().await;
}

/// Correctness under a steady stream (not a timing benchmark): windows of packets both ways,
/// every one delivered intact and in order as one continuous restamped stream, counts exact.
#[tokio::test]
async fn a_steady_stream_both_ways_is_relayed_without_loss() {
    const WINDOWS: u16 = 20;
    const WINDOW: u16 = 50;
    let pool = pool(2);
    let c = call(&pool).await;
    let payload = [0xd5u8; 160];
    let mut last: [Option<(u16, u32)>; 2] = [None, None];
    for w in 0..WINDOWS {
        for i in 0..WINDOW {
            let seq = w * WINDOW + i;
            c.a.rtp
                .send_to(&from_a(seq, &payload), c.at_a)
                .await
                .unwrap();
            c.b.rtp
                .send_to(&from_b(seq, &payload), c.at_b)
                .await
                .unwrap();
        }
        for _ in 0..WINDOW {
            for (i, party) in [&c.b, &c.a].into_iter().enumerate() {
                let (got, _) = recv_rtp(&party.rtp).await;
                assert_eq!(got.payload, payload);
                if let Some((seq, ts)) = last[i] {
                    assert_eq!(got.seq, seq.wrapping_add(1), "in order, no gap");
                    assert_eq!(got.ts, ts.wrapping_add(160));
                }
                last[i] = Some((got.seq, got.ts));
            }
        }
    }
    let report = c.session.stop().await;
    let total = u64::from(WINDOWS * WINDOW);
    for leg in report.pipeline.legs {
        let leg = leg.expect("both legs had media");
        assert_eq!((leg.packets_received, leg.packets_sent), (total, total));
        assert_eq!(leg.octets_sent, total * 160);
        assert_eq!(leg.packets_lost, 0);
    }
}
