//! The media engine through a running in-process server, over real sockets: transcoding
//! (PCMU ↔ G.722, PCMU ↔ Opus) keeps a tone's frequency and level, shared codecs are relayed,
//! ringback is played on a 180 without SDP, music on hold reaches a held party, SIP INFO
//! digits reach the other side as RFC 4733 events, a recorded call has the caller left and
//! the callee right, conference parties hear each other but not themselves, and each leg's
//! media statistics are stored with the call record.
//!
//! The test parties encode and decode with the crate's own codecs; the server is a black box
//! reached only through SIP and RTP. Audio flows in real time (20 ms packets).
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{
    GUARD, TestServer, Ua, answer, call_with_sdp, expect_status, recv_request, sdp_target,
};
use switchboard::media::analysis::{dominant_frequency, rms_dbfs, sine, tone_power_db};
use switchboard::media::codec::{self, CodecKind};
use switchboard::media::rtp::RtpPacket;
use switchboard::sip::message::{Request, Response};
use switchboard::store::{RecordingState, Store};
use tokio::net::UdpSocket;
use tokio::time::Instant;

const PCMU: (u8, &str) = (0, "PCMU/8000");
const PCMA: (u8, &str) = (8, "PCMA/8000");
const G722: (u8, &str) = (9, "G722/8000");
const OPUS: (u8, &str) = (111, "opus/48000/2");
const TE: (u8, &str) = (101, "telephone-event/8000");

/// Level of the test tones.
const LEVEL_DBFS: f64 = -12.0;
/// Audio at the start of a stream that is not analysed (jitter buffer fill, codec warm-up).
const SETTLE: Duration = Duration::from_millis(300);

fn sdp(port: u16, formats: &[(u8, &str)], direction: &str) -> String {
    let pts: Vec<String> = formats.iter().map(|(pt, _)| pt.to_string()).collect();
    let mut s = format!(
        "v=0\no=- 7 7 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio {port} RTP/AVP {}\n",
        pts.join(" ")
    );
    for (pt, map) in formats {
        s.push_str(&format!("a=rtpmap:{pt} {map}\n"));
    }
    s.push_str(&format!("a={direction}\n"));
    s
}

fn kind_of(map: &str) -> CodecKind {
    match map {
        "PCMU/8000" => CodecKind::Pcmu,
        "PCMA/8000" => CodecKind::Pcma,
        "G722/8000" => CodecKind::G722,
        _ => CodecKind::Opus,
    }
}

/// The PCM rate the test parties use for a codec.
fn pcm_rate(kind: CodecKind) -> u32 {
    match kind {
        CodecKind::Pcmu | CodecKind::Pcma => 8000,
        _ => 16_000,
    }
}

/// One party: SIP UA and RTP socket.
struct Party {
    ua: Ua,
    rtp: UdpSocket,
}

impl Party {
    async fn new(server: &TestServer) -> Party {
        Party {
            ua: Ua::new(server.sip_udp).await,
            rtp: UdpSocket::bind("127.0.0.1:0").await.expect("rtp socket"),
        }
    }

    fn rtp_port(&self) -> u16 {
        self.rtp.local_addr().expect("addr").port()
    }
}

/// An answered call from 1001 (A) to 1002 (B).
struct Call {
    a: Party,
    b: Party,
    /// Where A sends RTP (from the 200 OK) and where B sends RTP (from the INVITE it got).
    to_a: SocketAddr,
    to_b: SocketAddr,
    /// The offer B received and the answer A received.
    offer_to_b: String,
    answer_to_a: String,
    invite_b: Request,
    a_to: String,
    call_id: String,
}

async fn server_with(edit: impl FnOnce(&mut switchboard::config::Config)) -> TestServer {
    let server = TestServer::start(edit).await;
    server.add_user("1001", "pw-a").await;
    server.add_user("1002", "pw-b").await;
    server.add_user("1003", "pw-c").await;
    server
}

/// A calls B offering `a_formats`; B answers with `b_formats`.
async fn start_call(
    server: &TestServer,
    call_id: &str,
    a_formats: &[(u8, &str)],
    b_formats: &[(u8, &str)],
) -> Call {
    let a = Party::new(server).await;
    let b = Party::new(server).await;
    assert_eq!(b.ua.register("1002", "pw-b", 300).await.status.0, 200);
    let offer = sdp(a.rtp_port(), a_formats, "sendrecv");
    call_with_sdp(&a.ua, "1002", "1001", "pw-a", call_id, &offer).await;
    let invite_b = recv_request(&b.ua).await;
    let offer_to_b = String::from_utf8_lossy(&invite_b.body).into_owned();
    let to_b = sdp_target(&invite_b.body);
    let body = sdp(b.rtp_port(), b_formats, "sendrecv");
    b.ua.send(&answer(&invite_b, 200, "OK", b.ua.addr(), Some(body)))
        .await;
    let ok = expect_status(&a.ua, 200).await;
    assert_eq!(recv_request(&b.ua).await.method.as_str(), "ACK");
    let a_to = ok.headers.get("To").expect("To").to_owned();
    ack(&a.ua, server, call_id, &a_to).await;
    Call {
        to_a: sdp_target(&ok.body),
        answer_to_a: String::from_utf8_lossy(&ok.body).into_owned(),
        a,
        b,
        to_b,
        offer_to_b,
        invite_b,
        a_to,
        call_id: call_id.to_owned(),
    }
}

async fn ack(ua: &Ua, server: &TestServer, call_id: &str, to: &str) {
    ua.send_text(&format!(
        "ACK sip:1002@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKack{call_id};rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=a{call_id}\nTo: {to}\nCall-ID: {call_id}\nCSeq: 2 ACK\nContent-Length: 0\n\n",
        server.sip_udp
    ))
    .await;
}

impl Call {
    /// A sends BYE; both sides see the call end.
    async fn hang_up(&self, server: &TestServer) {
        self.a
            .ua
            .send_text(&format!(
                "BYE sip:1002@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKbye{};rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=a{}\nTo: {}\nCall-ID: {}\nCSeq: 30 BYE\nContent-Length: 0\n\n",
                server.sip_udp, self.call_id, self.call_id, self.a_to, self.call_id
            ))
            .await;
        let bye = recv_request(&self.b.ua).await;
        assert_eq!(bye.method.as_str(), "BYE");
        self.b
            .ua
            .send(&answer(&bye, 200, "OK", self.b.ua.addr(), None))
            .await;
        let ok: Response = expect_status(&self.a.ua, 200).await;
        assert!(ok.headers.get("CSeq").is_some_and(|c| c.contains("BYE")));
    }

    /// A sends SIP INFO with a DTMF body (`\n` line ends).
    async fn info(&self, server: &TestServer, cseq: u32, content_type: &str, body: &str) {
        self.a
            .ua
            .send_text(&format!(
                "INFO sip:1002@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKinfo{}{cseq};rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=a{}\nTo: {}\nCall-ID: {}\nCSeq: {cseq} INFO\nContent-Type: {content_type}\nContent-Length: {}\n\n{body}",
                server.sip_udp,
                self.call_id,
                self.call_id,
                self.a_to,
                self.call_id,
                body.replace('\n', "\r\n").len()
            ))
            .await;
        let ok = expect_status(&self.a.ua, 200).await;
        assert!(ok.headers.get("CSeq").is_some_and(|c| c.contains("INFO")));
    }
}

/// Streams a tone as `kind` RTP with payload type `pt` for `duration`, paced at 20 ms.
async fn stream_tone(
    socket: &UdpSocket,
    to: SocketAddr,
    kind: CodecKind,
    pt: u8,
    freq: f64,
    duration: Duration,
) {
    let rate = pcm_rate(kind);
    let frame = (rate / 50) as usize;
    let frames = (duration.as_millis() / 20) as usize;
    let pcm = sine(freq, rate, LEVEL_DBFS, frame * frames);
    let mut enc = codec::encoder(kind, rate).expect("encoder");
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let ssrc: u32 = 0x1234_5678 ^ u32::from(pt);
    for (i, chunk) in pcm.chunks(frame).enumerate() {
        tick.tick().await;
        let mut payload = Vec::new();
        enc.encode(chunk, &mut payload).expect("encode");
        let seq = i as u16;
        let ts = (i as u32).wrapping_mul(kind.rtp_timestamp_step());
        let mut pkt = vec![0x80, pt | if i == 0 { 0x80 } else { 0 }];
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&ts.to_be_bytes());
        pkt.extend_from_slice(&ssrc.to_be_bytes());
        pkt.extend_from_slice(&payload);
        socket.send_to(&pkt, to).await.expect("send rtp");
    }
}

/// What one party received during `duration`: packets by payload type.
struct Received {
    packets: BTreeMap<u8, Vec<(u16, Vec<u8>)>>,
}

async fn receive(socket: &UdpSocket, duration: Duration) -> Received {
    let end = Instant::now() + duration;
    let mut packets: BTreeMap<u8, Vec<(u16, Vec<u8>)>> = BTreeMap::new();
    let mut buf = [0u8; 2048];
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(end, socket.recv_from(&mut buf)).await {
        if let Ok(p) = RtpPacket::parse(&buf[..n]) {
            packets
                .entry(p.payload_type())
                .or_default()
                .push((p.sequence(), p.payload().to_vec()));
        }
    }
    Received { packets }
}

impl Received {
    /// The audio of payload type `pt`, decoded as `kind`, in sequence order.
    fn decode(&self, pt: u8, kind: CodecKind) -> Vec<i16> {
        let mut packets = self.packets.get(&pt).cloned().unwrap_or_default();
        packets.sort_by_key(|(seq, _)| *seq);
        let mut dec = codec::decoder(kind, pcm_rate(kind)).expect("decoder");
        let mut pcm = Vec::new();
        for (_, payload) in packets {
            let _ = dec.decode(&payload, &mut pcm);
        }
        pcm
    }
}

/// Asserts `pcm` (after the settling time) is a tone of `freq` at the test level.
fn assert_tone(pcm: &[i16], rate: u32, freq: f64, what: &str) {
    let skip = (rate as usize) * SETTLE.as_millis() as usize / 1000;
    assert!(
        pcm.len() > skip + rate as usize / 4,
        "{what}: only {} samples received",
        pcm.len()
    );
    let audio = &pcm[skip..];
    let f = dominant_frequency(audio, rate).expect("a tone");
    assert!(
        (f - freq).abs() / freq < 0.01,
        "{what}: {f:.1} Hz, expected {freq} Hz within 1 %"
    );
    let level = rms_dbfs(audio);
    assert!(
        (level - LEVEL_DBFS).abs() <= 3.0,
        "{what}: level {level:.1} dBFS, expected {LEVEL_DBFS} ± 3 dB"
    );
}

/// Sends a tone each way at once and returns what A and B received.
async fn exchange(call: &Call, a: (u8, &str), b: (u8, &str), seconds: u64) -> (Received, Received) {
    let d = Duration::from_secs(seconds);
    let (_, _, at_a, at_b) = tokio::join!(
        stream_tone(&call.a.rtp, call.to_a, kind_of(a.1), a.0, 1000.0, d),
        stream_tone(&call.b.rtp, call.to_b, kind_of(b.1), b.0, 440.0, d),
        receive(&call.a.rtp, d + Duration::from_millis(400)),
        receive(&call.b.rtp, d + Duration::from_millis(400)),
    );
    (at_a, at_b)
}

async fn transcoded_both_ways(callee: (u8, &str), call_id: &str) {
    let server = server_with(|_| {}).await;
    let call = start_call(&server, call_id, &[PCMU, TE], &[callee, TE]).await;
    let callee_name = callee.1.split('/').next().expect("name");
    assert!(
        call.offer_to_b.contains(callee_name),
        "the callee is offered {callee_name}, which the caller lacks:\n{}",
        call.offer_to_b
    );
    assert!(
        !call.answer_to_a.contains(callee_name) && call.answer_to_a.contains("PCMU"),
        "the caller's answer names only its own codec:\n{}",
        call.answer_to_a
    );
    let (at_a, at_b) = exchange(&call, PCMU, callee, 2).await;
    let kind = kind_of(callee.1);
    assert_tone(
        &at_b.decode(callee.0, kind),
        pcm_rate(kind),
        1000.0,
        "caller → callee",
    );
    assert_tone(
        &at_a.decode(0, CodecKind::Pcmu),
        8000,
        440.0,
        "callee → caller",
    );
    call.hang_up(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_caller_and_g722_callee_are_transcoded_both_ways() {
    transcoded_both_ways(G722, "tc-g722").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_caller_and_opus_callee_are_transcoded_both_ways() {
    transcoded_both_ways(OPUS, "tc-opus").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_codec_is_relayed_without_decoding() {
    let server = server_with(|_| {}).await;
    let call = start_call(&server, "relay", &[PCMA, PCMU, TE], &[PCMA, TE]).await;
    let (at_a, at_b) = exchange(&call, PCMA, PCMA, 1).await;
    // Relayed packets keep their payload bytes exactly: compare with what was sent.
    let rate = 8000;
    let sent = sine(1000.0, rate, LEVEL_DBFS, 160 * 50);
    let mut enc = codec::encoder(CodecKind::Pcma, rate).expect("encoder");
    let mut first = Vec::new();
    enc.encode(&sent[..160], &mut first).expect("encode");
    let received = at_b.packets.get(&8).expect("PCMA at the callee");
    assert!(
        received.iter().any(|(_, p)| *p == first),
        "the callee receives the caller's payloads unchanged"
    );
    assert_tone(
        &at_a.decode(8, CodecKind::Pcma),
        rate,
        440.0,
        "callee → caller",
    );
    call.hang_up(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringback_is_played_to_the_caller_while_the_callee_rings_without_sdp() {
    let server = server_with(|_| {}).await;
    let a = Party::new(&server).await;
    let b = Party::new(&server).await;
    assert_eq!(b.ua.register("1002", "pw-b", 300).await.status.0, 200);
    let offer = sdp(a.rtp_port(), &[PCMU, TE], "sendrecv");
    call_with_sdp(&a.ua, "1002", "1001", "pw-a", "ringback", &offer).await;
    let invite = recv_request(&b.ua).await;
    b.ua.send(&answer(&invite, 180, "Ringing", b.ua.addr(), None))
        .await;
    let ringing = expect_status(&a.ua, 180).await;
    assert!(
        !ringing.body.is_empty(),
        "180 to the caller carries our SDP for early media"
    );
    let to_a = sdp_target(&ringing.body);
    // Latch the caller's address, then listen.
    let probe = [0x80u8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
    a.rtp.send_to(&probe, to_a).await.expect("probe");
    let heard = receive(&a.rtp, Duration::from_millis(2500)).await;
    let pcm = heard.decode(0, CodecKind::Pcmu);
    assert!(
        pcm.len() >= 8000,
        "ringback RTP arrives ({} samples)",
        pcm.len()
    );
    // US ringback: 440 + 480 Hz, 2 s on.
    let on = &pcm[..8000.min(pcm.len())];
    assert!(tone_power_db(on, 8000, 440.0) > -25.0, "440 Hz component");
    assert!(tone_power_db(on, 8000, 480.0) > -25.0, "480 Hz component");
    assert!(tone_power_db(on, 8000, 1000.0) < -50.0, "nothing else");
    // The call can still be cancelled cleanly.
    a.ua.send_text(&format!(
        "CANCEL sip:1002@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKinvringback2;rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:1001@switchboard>;tag=aringback\nTo: <sip:1002@switchboard>\nCall-ID: ringback\nCSeq: 2 CANCEL\nContent-Length: 0\n\n",
        server.sip_udp
    ))
    .await;
    expect_status(&a.ua, 200).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_info_digits_reach_the_callee_as_rfc4733_events_and_are_logged() {
    let server = server_with(|_| {}).await;
    let call = start_call(&server, "info", &[PCMU, TE], &[PCMU, TE]).await;
    // Latch the callee's address first.
    let probe = [0x80u8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
    call.b.rtp.send_to(&probe, call.to_b).await.expect("probe");
    let listen = receive(&call.b.rtp, Duration::from_millis(1500));
    let send = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        call.info(
            &server,
            10,
            "application/dtmf-relay",
            "Signal=5\nDuration=160\n",
        )
        .await;
        call.info(&server, 11, "application/dtmf", "#").await;
    };
    let (at_b, ()) = tokio::join!(listen, send);
    let events = at_b
        .packets
        .get(&101)
        .expect("telephone-event packets at the callee");
    let ends: Vec<u8> = events
        .iter()
        .filter(|(_, p)| p.len() >= 4 && p[1] & 0x80 != 0)
        .map(|(_, p)| p[0])
        .collect();
    assert!(
        ends.contains(&5) && ends.contains(&11),
        "end packets for 5 and #: {ends:?}"
    );
    assert_eq!(
        ends.iter().filter(|&&e| e == 5).count(),
        3,
        "the end of an event is sent three times (RFC 4733 §2.5.1.4)"
    );
    call.hang_up(&server).await;
    let store = store_of(&server);
    store.flush().await.expect("flush");
    let digits = dtmf_events(store).await;
    assert_eq!(
        digits,
        [
            ("5".into(), "sip_info".into()),
            ("#".into(), "sip_info".into())
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_party_hears_music_on_hold() {
    let server = server_with(|_| {}).await;
    let call = start_call(&server, "hold", &[PCMU, TE], &[PCMU, TE]).await;
    let probe = [0x80u8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
    call.a.rtp.send_to(&probe, call.to_a).await.expect("probe");
    // B holds A: re-INVITE with a=sendonly.
    let hold = sdp(call.b.rtp_port(), &[PCMU, TE], "sendonly");
    let from = call.invite_b.headers.get("From").expect("From");
    let to = call.invite_b.headers.get("To").expect("To");
    let bcid = call.invite_b.headers.get("Call-ID").expect("Call-ID");
    let body = hold.replace('\n', "\r\n");
    let text = format!(
        "INVITE sip:server@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKhold1;rport\nMax-Forwards: 70\nFrom: {to};tag=callee\nTo: {from}\nCall-ID: {bcid}\nCSeq: 5 INVITE\nContact: <sip:callee@{{addr}}>\nContent-Type: application/sdp\nContent-Length: {}\n\n",
        server.sip_udp,
        body.len()
    ) + &hold;
    call.b.ua.send_text(&text).await;
    let reinvite = recv_request(&call.a.ua).await;
    assert_eq!(reinvite.method.as_str(), "INVITE");
    let answer_body = sdp(call.a.rtp_port(), &[PCMU, TE], "recvonly");
    call.a
        .ua
        .send(&answer(
            &reinvite,
            200,
            "OK",
            call.a.ua.addr(),
            Some(answer_body),
        ))
        .await;
    expect_status(&call.b.ua, 200).await;
    let heard = receive(&call.a.rtp, Duration::from_millis(2000)).await;
    let pcm = heard.decode(0, CodecKind::Pcmu);
    assert!(
        pcm.len() >= 8000,
        "music on hold RTP arrives ({} samples)",
        pcm.len()
    );
    assert!(
        rms_dbfs(&pcm[4000..]) > -40.0,
        "music on hold is audible: {:.1} dBFS",
        rms_dbfs(&pcm[4000..])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_has_the_caller_left_and_the_callee_right_and_leg_stats() {
    let server = server_with(|c| c.recording.record_calls = true).await;
    let call = start_call(&server, "rec", &[PCMU, TE], &[PCMU, TE]).await;
    let _ = exchange(&call, PCMU, PCMU, 2).await;
    call.hang_up(&server).await;
    let store = store_of(&server);
    let call_id = wait_for_event(store, "recording.available")
        .await
        .call_id
        .expect("call id");
    let rec = store
        .recordings_for_call(call_id)
        .await
        .expect("recordings")
        .pop()
        .expect("one recording");
    assert_eq!(rec.state, RecordingState::Complete);
    assert_eq!(rec.channels, 2);
    let path = server.dir.path().join(&rec.path);
    let mut wav = hound::WavReader::open(&path).expect("the WAV opens");
    let spec = wav.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (2, 16));
    let samples: Vec<i16> = wav.samples::<i16>().map(|s| s.expect("sample")).collect();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    let rate = spec.sample_rate;
    let secs = left.len() as f64 / f64::from(rate);
    assert!(
        (1.8..3.5).contains(&secs),
        "recording lasts about the call: {secs:.2} s"
    );
    // Analyse the middle of the call, where both tones play.
    let mid = &left[rate as usize / 2..rate as usize * 3 / 2];
    let f = dominant_frequency(mid, rate).expect("tone on the left");
    assert!(
        (f - 1000.0).abs() < 10.0,
        "caller's 1 kHz on the left, got {f:.1}"
    );
    let mid_r = &right[rate as usize / 2..rate as usize * 3 / 2];
    let f = dominant_frequency(mid_r, rate).expect("tone on the right");
    assert!(
        (f - 440.0).abs() < 4.4,
        "callee's 440 Hz on the right, got {f:.1}"
    );
    assert!(
        (rms_dbfs(mid) - LEVEL_DBFS).abs() < 3.0,
        "left level {:.1}",
        rms_dbfs(mid)
    );
    assert!(
        tone_power_db(mid, rate, 440.0) < tone_power_db(mid, rate, 1000.0) - 30.0,
        "no callee audio on the caller's channel"
    );
    let legs = store.legs_for_call(call_id).await.expect("legs");
    assert_eq!(legs.len(), 2);
    for leg in legs {
        let media = leg.media.expect("media statistics stored with the leg");
        assert!(media.packets_received >= 80, "{media:?}");
        assert!(media.packets_sent >= 80, "{media:?}");
        assert_eq!(media.codec.as_deref(), Some("PCMU"));
        let mos = media.mos.expect("an estimated MOS");
        assert!(mos > 4.0, "a clean loopback call scores high: {mos}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conference_parties_hear_each_other_but_not_themselves() {
    let server = server_with(|_| {}).await;
    let users = [("1001", "pw-a"), ("1002", "pw-b"), ("1003", "pw-c")];
    let freqs = [500.0, 1100.0, 1700.0];
    let mut parties = Vec::new();
    for (i, (ext, pw)) in users.iter().enumerate() {
        let p = Party::new(&server).await;
        let offer = sdp(p.rtp_port(), &[PCMU, TE], "sendrecv");
        let cid = format!("conf{i}");
        call_with_sdp(&p.ua, "*8100", ext, pw, &cid, &offer).await;
        let ok = expect_status(&p.ua, 200).await;
        let to = ok.headers.get("To").expect("To").to_owned();
        p.ua.send_text(&format!(
            "ACK sip:*8100@{} SIP/2.0\nVia: SIP/2.0/UDP {{addr}};branch=z9hG4bKack{cid};rport\nMax-Forwards: 70\nFrom: \"Caller\" <sip:{ext}@switchboard>;tag=a{cid}\nTo: {to}\nCall-ID: {cid}\nCSeq: 2 ACK\nContent-Length: 0\n\n",
            server.sip_udp
        ))
        .await;
        parties.push((p, sdp_target(&ok.body)));
    }
    let d = Duration::from_secs(2);
    let listen = d + Duration::from_millis(300);
    let [(p0, t0), (p1, t1), (p2, t2)] = &parties[..] else {
        unreachable!("three parties")
    };
    let (_, _, _, h0, h1, h2) = tokio::join!(
        stream_tone(&p0.rtp, *t0, CodecKind::Pcmu, 0, freqs[0], d),
        stream_tone(&p1.rtp, *t1, CodecKind::Pcmu, 0, freqs[1], d),
        stream_tone(&p2.rtp, *t2, CodecKind::Pcmu, 0, freqs[2], d),
        receive(&p0.rtp, listen),
        receive(&p1.rtp, listen),
        receive(&p2.rtp, listen),
    );
    let heard = [h0, h1, h2];
    for (i, r) in heard.iter().enumerate() {
        let pcm = r.decode(0, CodecKind::Pcmu);
        assert!(pcm.len() > 8000, "party {i} hears the room");
        let window = &pcm[4000..pcm.len() - 2000];
        let own = tone_power_db(window, 8000, freqs[i]);
        for (j, f) in freqs.iter().enumerate() {
            if j == i {
                continue;
            }
            let other = tone_power_db(window, 8000, *f);
            assert!(
                other > -30.0,
                "party {i} hears party {j} ({f} Hz): {other:.1} dB"
            );
            assert!(
                own < other - 20.0,
                "party {i} does not hear itself: own {own:.1} dB vs {other:.1} dB"
            );
        }
    }
    server.stop().await;
}

fn store_of(server: &TestServer) -> &Store {
    &server.server.as_ref().expect("running").store
}

/// The `dtmf.received` events so far: (digit, source).
async fn dtmf_events(store: &Store) -> Vec<(String, String)> {
    store
        .events_since(0, 1000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == "dtmf.received")
        .map(|e| {
            (
                e.data["digit"].as_str().unwrap_or_default().to_owned(),
                e.data["source"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits (bounded) for the first event of `kind`.
async fn wait_for_event(store: &Store, kind: &str) -> switchboard::store::EventRecord {
    let deadline = Instant::now() + GUARD;
    loop {
        store.flush().await.expect("flush");
        let events = store.events_since(0, 1000).await.expect("events");
        if let Some(e) = events.into_iter().find(|e| e.kind == kind) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} event within {GUARD:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
