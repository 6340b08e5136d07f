//! Stream framing (PURE): splits a TCP byte stream into messages (RFC 3261 §18.3), answers
//! RFC 5626 §3.5.1 CRLFCRLF pings, ignores CRLFs before a start line (§7.5), and classifies
//! datagrams that carry no SIP (RFC 5626 §4.4 keep-alives).
//!
//! Generic over the parser so that it can be tested with a toy one: the parser contract is that
//! of [`crate::sip::message::parse`] with `Framing::Stream` — `Ok((msg, consumed))`,
//! `Err(Incomplete)` to wait for bytes, `Err(Invalid)` when the stream is beyond repair.

use bytes::{Buf, BytesMut};

use crate::sip::message::{Invalid, ParseError};

/// Frames a byte stream. Read into [`StreamFramer::buffer`], then call
/// [`StreamFramer::next_frame`] until it returns `None`.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    max: usize,
    /// Set after an `Invalid` frame: the stream cannot be resynchronised.
    failed: bool,
}

/// One thing found on a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<M> {
    Message(M),
    /// A CRLFCRLF keep-alive ping: answer [`PONG`].
    Ping,
    /// The stream holds garbage (or an over-long message): report it and close.
    Invalid(Box<Invalid>),
}

/// What a datagram is, before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// Empty or only whitespace: an RFC 5626 §4.4.1 CRLF keep-alive.
    KeepAlive,
    /// A STUN message (RFC 5389 header: top two bits zero, magic cookie).
    Stun,
    /// Anything else: give it to the parser.
    Sip,
}

/// The RFC 5626 §3.5.1 pong.
pub const PONG: &[u8] = b"\r\n";
/// The RFC 5626 §3.5.1 ping.
pub const PING: &[u8] = b"\r\n\r\n";

const READ_CHUNK: usize = 8 * 1024;

impl StreamFramer {
    /// A framer that reports a message longer than `max` bytes as invalid (413).
    pub fn new(max: usize) -> StreamFramer {
        StreamFramer {
            buf: BytesMut::with_capacity(READ_CHUNK),
            max,
            failed: false,
        }
    }

    /// The buffer to read into (with room reserved for one more read).
    pub fn buffer(&mut self) -> &mut BytesMut {
        self.buf.reserve(READ_CHUNK);
        &mut self.buf
    }

    /// Appends bytes (for callers that do not read into [`StreamFramer::buffer`]).
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet framed.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next frame, or `None` when more bytes are needed. After one
    /// [`Frame::Invalid`] the framer drops its buffer and yields nothing more.
    pub fn next_frame<M>(
        &mut self,
        parse: impl FnMut(&[u8]) -> Result<(M, usize), ParseError>,
    ) -> Option<Frame<M>> {
        if self.failed {
            return None;
        }
        let frame = self.frame(parse);
        if matches!(frame, Some(Frame::Invalid(_))) {
            self.failed = true;
            self.buf.clear();
        }
        frame
    }

    fn frame<M>(
        &mut self,
        mut parse: impl FnMut(&[u8]) -> Result<(M, usize), ParseError>,
    ) -> Option<Frame<M>> {
        loop {
            if self.buf.starts_with(PING) {
                self.buf.advance(PING.len());
                return Some(Frame::Ping);
            }
            if self.buf.starts_with(b"\r\n") || self.buf.starts_with(b"\n") {
                if self.buf.len() < PING.len() && PING.starts_with(&self.buf) {
                    return None; // maybe the first half of a ping
                }
                let n = if self.buf[0] == b'\r' { 2 } else { 1 };
                self.buf.advance(n); // stray line ending before a start line (§7.5)
                continue;
            }
            if self.buf.is_empty() {
                return None;
            }
            return match parse(&self.buf) {
                Ok((msg, consumed)) if consumed > 0 && consumed <= self.buf.len() => {
                    self.buf.advance(consumed);
                    Some(Frame::Message(msg))
                }
                Ok(_) => Some(Frame::Invalid(super::invalid_without_salvage(
                    "parser consumed no bytes",
                    400,
                    &self.buf,
                ))),
                Err(ParseError::Incomplete) if self.buf.len() >= self.max => Some(Frame::Invalid(
                    super::invalid_without_salvage("message too large", 413, &self.buf),
                )),
                Err(ParseError::Incomplete) => None,
                Err(ParseError::Invalid(inv)) => Some(Frame::Invalid(inv)),
            };
        }
    }
}

/// Classifies a datagram before it reaches the parser.
pub fn classify_datagram(d: &[u8]) -> DatagramKind {
    if d.iter()
        .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
    {
        DatagramKind::KeepAlive
    } else if d.len() >= 20 && d[0] & 0xC0 == 0 && d[4..8] == [0x21, 0x12, 0xA4, 0x42] {
        DatagramKind::Stun
    } else {
        DatagramKind::Sip
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::StatusCode;

    /// Toy parser: `MSG <len>\n` then `len` body bytes; `BAD` anywhere in the head is invalid.
    fn toy(buf: &[u8]) -> Result<(Vec<u8>, usize), ParseError> {
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            return Err(ParseError::Incomplete);
        };
        let head = std::str::from_utf8(&buf[..nl]).map_err(|_| bad())?;
        let len: usize = head
            .strip_prefix("MSG ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?;
        let end = nl + 1 + len;
        if buf.len() < end {
            return Err(ParseError::Incomplete);
        }
        Ok((buf[nl + 1..end].to_vec(), end))
    }

    fn bad() -> ParseError {
        ParseError::Invalid(Box::new(Invalid {
            reason: "bad".into(),
            status: StatusCode::BAD_REQUEST,
            is_request: true,
            salvage: None,
        }))
    }

    fn drain(f: &mut StreamFramer) -> Vec<Frame<Vec<u8>>> {
        std::iter::from_fn(|| f.next_frame(toy)).collect()
    }

    #[test]
    fn message_split_into_single_bytes_is_framed_once() {
        let mut f = StreamFramer::new(1000);
        let mut frames = Vec::new();
        for b in b"MSG 5\nhello" {
            f.push(&[*b]);
            frames.extend(drain(&mut f));
        }
        assert_eq!(frames, vec![Frame::Message(b"hello".to_vec())]);
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn two_messages_in_one_read_are_two_frames() {
        let mut f = StreamFramer::new(1000);
        f.push(b"MSG 1\naMSG 2\nbcMSG");
        assert_eq!(
            drain(&mut f),
            vec![
                Frame::Message(b"a".to_vec()),
                Frame::Message(b"bc".to_vec())
            ]
        );
        assert_eq!(f.pending(), 3);
    }

    #[test]
    fn crlfcrlf_is_a_ping_and_lone_crlf_is_skipped() {
        let mut f = StreamFramer::new(1000);
        f.push(b"\r\n\r\n\r\nMSG 1\nx\r\n\r\n");
        assert_eq!(
            drain(&mut f),
            vec![Frame::Ping, Frame::Message(b"x".to_vec()), Frame::Ping]
        );
    }

    #[test]
    fn half_a_ping_waits_for_the_rest() {
        let mut f = StreamFramer::new(1000);
        f.push(b"\r\n");
        assert_eq!(drain(&mut f), vec![]);
        f.push(b"\r");
        assert_eq!(drain(&mut f), vec![]);
        f.push(b"\n");
        assert_eq!(drain(&mut f), vec![Frame::Ping]);
    }

    #[test]
    fn garbage_is_invalid() {
        let mut f = StreamFramer::new(1000);
        f.push(b"BAD\nMSG 1\na");
        assert!(matches!(drain(&mut f).as_slice(), [Frame::Invalid(_)]));
        f.push(b"MSG 1\na");
        assert_eq!(drain(&mut f), vec![], "nothing is framed after garbage");
    }

    #[test]
    fn incomplete_message_past_the_limit_is_too_large() {
        let mut f = StreamFramer::new(16);
        f.push(b"MSG 100\n0123456789");
        match drain(&mut f).as_slice() {
            [Frame::Invalid(inv)] => assert_eq!(inv.status, StatusCode::TOO_LARGE),
            other => panic!("expected 413, got {other:?}"),
        }
    }

    #[test]
    fn whitespace_datagrams_are_keepalives_and_stun_is_recognised() {
        assert_eq!(classify_datagram(b""), DatagramKind::KeepAlive);
        assert_eq!(classify_datagram(b"\r\n\r\n"), DatagramKind::KeepAlive);
        assert_eq!(classify_datagram(b" \r\n"), DatagramKind::KeepAlive);
        let mut stun = [0u8; 20];
        stun[1] = 1;
        stun[4..8].copy_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        assert_eq!(classify_datagram(&stun), DatagramKind::Stun);
        assert_eq!(
            classify_datagram(b"OPTIONS sip:a SIP/2.0\r\n"),
            DatagramKind::Sip
        );
    }
}
