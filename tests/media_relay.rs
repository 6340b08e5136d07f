//! The RTP relay over real UDP sockets on 127.0.0.1: forwarding both ways, latching, RTCP,
//! port pool lifecycle and garbage handling. Receives are guarded by a timeout, never slept on.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use switchboard::media::relay::{Leg, PortPool, Relay, RelayError};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const GUARD: Duration = Duration::from_secs(5);

/// Each test gets its own slice of ports so parallel tests never share a pool range. The
/// slices sit below the kernel's ephemeral range (32768+), so the test parties' own sockets
/// never take a pool port.
fn pool(pairs: u16) -> PortPool {
    static NEXT: AtomicU16 = AtomicU16::new(24000);
    let low = NEXT.fetch_add(pairs * 2 + 16, Ordering::Relaxed);
    PortPool::new(low, low + pairs * 2 - 1).expect("valid test range")
}

async fn party() -> UdpSocket {
    UdpSocket::bind((LOCALHOST, 0))
        .await
        .expect("bind test party")
}

/// An RTP socket on an even port with its RTCP socket on the next one.
async fn party_pair() -> (UdpSocket, UdpSocket) {
    loop {
        let rtp = party().await;
        let port = rtp.local_addr().unwrap().port();
        if port % 2 == 1 || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind((LOCALHOST, port + 1)).await {
            return (rtp, rtcp);
        }
    }
}

fn addr(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().expect("bound socket has an address")
}

fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![
        0x80,
        0,
        (seq >> 8) as u8,
        seq as u8,
        0,
        0,
        0,
        160,
        0x12,
        0x34,
        0x56,
        0x78,
    ];
    packet.extend_from_slice(payload);
    packet
}

async fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (len, from) = timeout(GUARD, socket.recv_from(&mut buf))
        .await
        .expect("datagram arrives before the guard timeout")
        .expect("recv_from");
    buf.truncate(len);
    (buf, from)
}

struct Call {
    relay: Relay,
    a: UdpSocket,
    b: UdpSocket,
    relay_a: SocketAddr,
    relay_b: SocketAddr,
}

async fn call(pool: &PortPool) -> Call {
    let mut relay = Relay::new(pool, LOCALHOST).expect("relay binds");
    let (a, b) = (party().await, party().await);
    relay.set_remote(Leg::A, addr(&a));
    relay.set_remote(Leg::B, addr(&b));
    relay.start().expect("relay starts");
    let (relay_a, relay_b) = (relay.local_addr(Leg::A), relay.local_addr(Leg::B));
    Call {
        relay,
        a,
        b,
        relay_a,
        relay_b,
    }
}

#[tokio::test]
async fn packets_flow_both_ways_intact_from_the_symmetric_address() {
    let pool = pool(2);
    let c = call(&pool).await;
    let out = rtp(1, b"hello from A");
    c.a.send_to(&out, c.relay_a).await.unwrap();
    let (got, from) = recv(&c.b).await;
    assert_eq!(got, out);
    assert_eq!(
        from, c.relay_b,
        "B sees the relay's B port, the one advertised to it"
    );

    let back = rtp(7, b"and back from B");
    c.b.send_to(&back, c.relay_b).await.unwrap();
    let (got, from) = recv(&c.a).await;
    assert_eq!(got, back);
    assert_eq!(from, c.relay_a);

    let stats = c.relay.stop().await;
    assert_eq!(stats.a_to_b.rtp_packets, 1);
    assert_eq!(stats.a_to_b.rtp_bytes, out.len() as u64);
    assert_eq!(stats.b_to_a.rtp_packets, 1);
    assert_eq!(stats.b_to_a.rtp_bytes, back.len() as u64);
    assert_eq!(stats.dropped.total(), 0);
}

#[tokio::test]
async fn a_second_source_is_dropped_once_the_first_latched() {
    let pool = pool(2);
    let c = call(&pool).await;
    let intruder = party().await;
    c.a.send_to(&rtp(1, b"first"), c.relay_a).await.unwrap();
    assert_eq!(recv(&c.b).await.0, rtp(1, b"first"));
    intruder
        .send_to(&rtp(2, b"intruder"), c.relay_a)
        .await
        .unwrap();
    c.a.send_to(&rtp(3, b"second"), c.relay_a).await.unwrap();
    assert_eq!(
        recv(&c.b).await.0,
        rtp(3, b"second"),
        "the intruder's packet never reaches B"
    );
    let stats = c.relay.stats();
    assert_eq!(stats.dropped.foreign_source, 1);
    assert_eq!(stats.a_to_b.rtp_packets, 2);
    c.relay.stop().await;
}

#[tokio::test]
async fn a_natted_first_source_receives_the_return_traffic() {
    let pool = pool(2);
    let mut relay = Relay::new(&pool, LOCALHOST).unwrap();
    let (sdp_a, natted_a, b) = (party().await, party().await, party().await);
    relay.set_remote(Leg::A, addr(&sdp_a));
    relay.set_remote(Leg::B, addr(&b));
    relay.start().unwrap();
    natted_a
        .send_to(&rtp(1, b"from behind NAT"), relay.local_addr(Leg::A))
        .await
        .unwrap();
    assert_eq!(
        recv(&b).await.0,
        rtp(1, b"from behind NAT"),
        "unlatched traffic is forwarded"
    );
    b.send_to(&rtp(1, b"reply"), relay.local_addr(Leg::B))
        .await
        .unwrap();
    let (got, from) = recv(&natted_a).await;
    assert_eq!(got, rtp(1, b"reply"));
    assert_eq!(from, relay.local_addr(Leg::A));
    relay.stop().await;
}

#[tokio::test]
async fn rtcp_is_relayed_between_the_rtcp_ports() {
    let pool = pool(2);
    let mut relay = Relay::new(&pool, LOCALHOST).unwrap();
    let (a_rtp, a_rtcp) = party_pair().await;
    let (b_rtp, b_rtcp) = party_pair().await;
    relay.set_remote(Leg::A, addr(&a_rtp));
    relay.set_remote(Leg::B, addr(&b_rtp));
    relay.start().unwrap();
    let relay_a_rtcp = SocketAddr::new(LOCALHOST, relay.local_port(Leg::A) + 1);
    let relay_b_rtcp = SocketAddr::new(LOCALHOST, relay.local_port(Leg::B) + 1);
    let sender_report = [0x80, 200, 0, 6, 0x12, 0x34, 0x56, 0x78, 1, 2, 3, 4];
    a_rtcp.send_to(&sender_report, relay_a_rtcp).await.unwrap();
    let (got, from) = recv(&b_rtcp).await;
    assert_eq!(got, sender_report);
    assert_eq!(from, relay_b_rtcp);
    let receiver_report = [0x80, 201, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    b_rtcp
        .send_to(&receiver_report, relay_b_rtcp)
        .await
        .unwrap();
    assert_eq!(recv(&a_rtcp).await.0, receiver_report);
    let stats = relay.stop().await;
    assert_eq!(stats.a_to_b.rtcp_packets, 1);
    assert_eq!(stats.b_to_a.rtcp_packets, 1);
    assert_eq!(stats.a_to_b.rtp_packets, 0);
}

#[tokio::test]
async fn explicit_rtcp_address_from_sdp_is_used() {
    let pool = pool(2);
    let mut relay = Relay::new(&pool, LOCALHOST).unwrap();
    let (a, a_rtcp, b) = (party().await, party().await, party().await);
    relay.set_remote_with_rtcp(Leg::A, addr(&a), addr(&a_rtcp));
    relay.set_remote(Leg::B, addr(&b));
    relay.start().unwrap();
    let report = [0x80, 201, 0, 1, 1, 2, 3, 4];
    b.send_to(
        &report,
        SocketAddr::new(LOCALHOST, relay.local_port(Leg::B) + 1),
    )
    .await
    .unwrap();
    assert_eq!(recv(&a_rtcp).await.0, report);
    relay.stop().await;
}

#[tokio::test]
async fn re_invite_moves_the_destination_while_running() {
    let pool = pool(2);
    let c = call(&pool).await;
    c.a.send_to(&rtp(1, b"before"), c.relay_a).await.unwrap();
    assert_eq!(recv(&c.b).await.0, rtp(1, b"before"));
    let moved_b = party().await;
    c.relay.set_remote(Leg::B, addr(&moved_b));
    c.a.send_to(&rtp(2, b"after"), c.relay_a).await.unwrap();
    assert_eq!(recv(&moved_b).await.0, rtp(2, b"after"));
    c.relay.stop().await;
}

#[tokio::test]
async fn garbage_datagrams_are_dropped_and_counted_without_killing_the_relay() {
    let pool = pool(2);
    let mut relay = Relay::new(&pool, LOCALHOST).unwrap();
    let (a_rtp, a_rtcp) = party_pair().await;
    let (b_rtp, b_rtcp) = party_pair().await;
    relay.set_remote(Leg::A, addr(&a_rtp));
    relay.set_remote(Leg::B, addr(&b_rtp));
    relay.start().unwrap();
    let (relay_a, relay_a_rtcp) = (
        relay.local_addr(Leg::A),
        SocketAddr::new(LOCALHOST, relay.local_port(Leg::A) + 1),
    );
    a_rtp.send_to(b"xx", relay_a).await.unwrap();
    a_rtp.send_to(&[0u8; 40], relay_a).await.unwrap();
    a_rtp.send_to(&[], relay_a).await.unwrap();
    a_rtp.send_to(&rtp(1, b"valid"), relay_a).await.unwrap();
    assert_eq!(
        recv(&b_rtp).await.0,
        rtp(1, b"valid"),
        "garbage never reaches B, valid RTP does"
    );
    let report = [0x80, 201, 0, 1, 1, 2, 3, 4];
    a_rtcp.send_to(b"rtcp?", relay_a_rtcp).await.unwrap();
    a_rtcp.send_to(&report, relay_a_rtcp).await.unwrap();
    assert_eq!(recv(&b_rtcp).await.0, report);
    let stats = relay.stats();
    assert_eq!(stats.dropped.malformed, 4);
    assert_eq!(stats.a_to_b.rtp_packets, 1);
    assert_eq!(stats.a_to_b.rtcp_packets, 1);
    relay.stop().await;
}

#[tokio::test]
async fn ports_return_to_the_pool_when_a_relay_stops() {
    let pool = pool(4);
    let first = Relay::new(&pool, LOCALHOST).unwrap();
    let mut second = Relay::new(&pool, LOCALHOST).unwrap();
    second.start().unwrap();
    assert_eq!(pool.available(), 0);
    assert!(matches!(
        Relay::new(&pool, LOCALHOST),
        Err(RelayError::Exhausted)
    ));
    drop(first);
    assert_eq!(
        pool.available(),
        2,
        "an unstarted relay frees its ports on drop"
    );
    let third = Relay::new(&pool, LOCALHOST).expect("freed ports are allocated again");
    second.stop().await;
    assert_eq!(pool.available(), 2, "a stopped relay freed its ports");
    let fourth = Relay::new(&pool, LOCALHOST).expect("ports freed by stop bind again");
    drop((third, fourth));
}

#[tokio::test]
async fn pool_exhaustion_is_an_error() {
    let pool = pool(2);
    let _held = Relay::new(&pool, LOCALHOST).unwrap();
    assert!(matches!(
        Relay::new(&pool, LOCALHOST),
        Err(RelayError::Exhausted)
    ));
}

#[tokio::test]
async fn a_port_taken_by_another_process_is_skipped() {
    let pool = pool(3);
    let (low, _) = pool.range();
    let first_even = low + low % 2;
    let _squatter =
        std::net::UdpSocket::bind((LOCALHOST, first_even)).expect("squat the first pair");
    let relay = Relay::new(&pool, LOCALHOST).expect("binding skips the taken pair");
    assert_ne!(relay.local_port(Leg::A), first_even);
    assert_ne!(relay.local_port(Leg::B), first_even);
}

#[tokio::test]
async fn without_sdp_the_latched_source_is_the_destination() {
    let pool = pool(2);
    let mut relay = Relay::new(&pool, LOCALHOST).unwrap();
    let (a, b) = (party().await, party().await);
    relay.set_remote(Leg::A, addr(&a));
    relay.start().unwrap();
    a.send_to(&rtp(1, b"to nobody"), relay.local_addr(Leg::A))
        .await
        .unwrap();
    // B has sent no SDP yet (early media): its first packet latches it and reaches A.
    b.send_to(&rtp(1, b"early from B"), relay.local_addr(Leg::B))
        .await
        .unwrap();
    assert_eq!(recv(&a).await.0, rtp(1, b"early from B"));
    a.send_to(&rtp(2, b"to B"), relay.local_addr(Leg::A))
        .await
        .unwrap();
    assert_eq!(recv(&b).await.0, rtp(2, b"to B"));
    let stats = relay.stop().await;
    assert_eq!(
        stats.dropped.no_destination, 1,
        "A's packet before B was known"
    );
    assert_eq!(stats.a_to_b.rtp_packets, 1);
}

/// Correctness under a steady stream (not a timing benchmark): windows of packets both ways,
/// every one delivered intact and in order, counts exact.
#[tokio::test]
async fn a_steady_stream_both_ways_is_relayed_without_loss() {
    const WINDOWS: u16 = 20;
    const WINDOW: u16 = 50;
    let pool = pool(2);
    let c = call(&pool).await;
    let payload = [0xd5u8; 160];
    for w in 0..WINDOWS {
        for i in 0..WINDOW {
            let seq = w * WINDOW + i;
            c.a.send_to(&rtp(seq, &payload), c.relay_a).await.unwrap();
            c.b.send_to(&rtp(seq, &payload), c.relay_b).await.unwrap();
        }
        for i in 0..WINDOW {
            let seq = w * WINDOW + i;
            assert_eq!(recv(&c.b).await.0, rtp(seq, &payload));
            assert_eq!(recv(&c.a).await.0, rtp(seq, &payload));
        }
    }
    let stats = c.relay.stop().await;
    let total = u64::from(WINDOWS * WINDOW);
    assert_eq!(stats.a_to_b.rtp_packets, total);
    assert_eq!(stats.b_to_a.rtp_packets, total);
    assert_eq!(stats.a_to_b.rtp_bytes, total * 172);
    assert_eq!(stats.dropped.total(), 0);
}
