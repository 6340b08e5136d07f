//! Parse and print a typical INVITE with an SDP body (the hot path of every call setup).
//!
//! Run: `cargo bench --bench sip_message`. The budget this guards: ≥1,000 calls/s, several
//! messages per call, on 2 cores.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use switchboard::sip::message::{Framing, Message, parse};

const INVITE: &[u8] = b"INVITE sip:+15551234567@pbx.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK4b43c2ff8.1;received=198.51.100.7\r\n\
Max-Forwards: 69\r\n\
From: \"Alice Caller\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
To: <sip:+15551234567@pbx.example.com;user=phone>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 31862 INVITE\r\n\
Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n\
Record-Route: <sip:198.51.100.7;lr>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY\r\n\
Supported: replaces, timer, 100rel\r\n\
User-Agent: Softphone/4.2\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 226\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=sendrecv\r\n";

fn bench(c: &mut Criterion) {
    let (msg, _) = parse(INVITE, Framing::Datagram).expect("the benchmark INVITE is valid");
    assert!(matches!(msg, Message::Request(_)));
    c.bench_function("parse INVITE+SDP", |b| {
        b.iter(|| parse(black_box(INVITE), Framing::Datagram))
    });
    c.bench_function("print INVITE+SDP", |b| {
        b.iter(|| black_box(&msg).to_bytes())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
