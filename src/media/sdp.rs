//! SDP parse, print and the offer/answer edits a media-anchoring B2BUA needs. PURE.
//!
//! Owns the [`SessionDescription`] model and these operations:
//! * parsing (RFC 8866 §5, formerly RFC 4566): `<type>=<value>` lines, CRLF or bare LF, with
//!   size and count limits ([`MAX_SDP_BYTES`], [`MAX_LINES`], [`MAX_MEDIA`], [`MAX_FORMATS`]).
//!   Hostile input returns [`SdpError`], never panics. The body must be UTF-8 (RFC 8866 §5.10
//!   default charset); control characters other than TAB are rejected so printing cannot
//!   inject lines.
//! * faithful printing: every line not interpreted is kept verbatim and in order; output uses
//!   CRLF (RFC 8866 §5). `parse(print(x)) == x`.
//! * reading the audio stream: connection address (session- or media-level `c=`, IPv4/IPv6,
//!   RFC 8866 §5.7), port, RTCP address (RFC 3605 `a=rtcp`), direction (RFC 3264 §5.1,
//!   media-level overriding session-level, `c=0.0.0.0` read as RFC 2543 hold, RFC 3264 §8.4),
//!   codec list (`a=rtpmap`, `a=fmtp`, RFC 3551 static payload types).
//! * the transport profile of each `m=` line ([`Profile`], RFC 8866 §5.14 `<proto>`): the
//!   engine terminates plain RTP only (`RTP/AVP`, RFC 3551; `RTP/AVPF`, RFC 4585, without its
//!   feedback). SRTP profiles (`RTP/SAVP` RFC 3711 with `a=crypto` RFC 4568, `RTP/SAVPF`,
//!   DTLS-SRTP `UDP/TLS/RTP/SAVP(F)` RFC 5764) and unknown ones are never carried: such a
//!   stream is rejected with port 0, and an offer with nothing else is refused
//!   ([`SdpError::UnsupportedProfile`], 488 with a Warning, RFC 3261 §21.4.26, §20.43).
//! * codec intersection ([`SessionDescription::intersect_supported`]): PCMU, PCMA, G.722,
//!   Opus (RFC 7587) and RFC 4733 telephone-event; other streams rejected with port 0
//!   (RFC 3264 §6).
//! * **writing our own SDP** ([`SessionDescription::written_from`], [`LegOrigin::write`]):
//!   every description the server sends is generated from the negotiated model, by whitelist:
//!   our `o=`, `s=`, `c=`, `t=0 0`, the audio `m=` with its negotiated payload types,
//!   `a=rtpmap`/`a=fmtp` for them, `a=ptime` (RFC 8866 §6.4), `a=rtcp` (RFC 3605) and the
//!   direction (RFC 3264 §5.1, §6.1); other streams as port-0 rejections (RFC 3264 §6).
//!   Nothing else a peer wrote (`a=crypto`, `a=zrtp-hash`, `a=rtcp-fb`, `a=rtcp-xr`, ICE,
//!   `b=`…) ever leaves the server.
//! * stable origin per leg with a version bump on change only ([`LegOrigin`], RFC 3264 §8).
//!
//! "The audio stream" is the first `m=audio` line with a non-zero port and a profile the
//! engine carries: the relay anchors one audio stream per call.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

/// Largest SDP body accepted, in bytes.
pub const MAX_SDP_BYTES: usize = 32 * 1024;
/// Largest number of lines accepted.
pub const MAX_LINES: usize = 1024;
/// Largest number of `m=` sections accepted.
pub const MAX_MEDIA: usize = 32;
/// Largest number of formats on one `m=` line.
pub const MAX_FORMATS: usize = 128;
/// The packet time we ask for (`a=ptime`, RFC 8866 §6.4): the engine's 20 ms frame.
pub const FRAME_MS: u16 = 20;

/// Why an SDP body was refused or could not be negotiated.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SdpError {
    #[error("SDP body of {0} bytes exceeds the limit of {MAX_SDP_BYTES}")]
    TooLarge(usize),
    #[error("SDP body has more than {MAX_LINES} lines")]
    TooManyLines,
    #[error("SDP body has more than {MAX_MEDIA} media descriptions")]
    TooManyMedia,
    #[error("SDP body is not UTF-8")]
    NotUtf8,
    #[error("SDP line {line}: {reason}")]
    Invalid { line: usize, reason: &'static str },
    #[error("SDP body has no {0}= line")]
    Missing(char),
    /// No active audio stream to anchor (the B2BUA answers 488).
    #[error("SDP offers no audio stream")]
    NoAudio,
    /// No supported audio codec survived the intersection (the B2BUA answers 488).
    #[error("SDP offers no supported audio codec")]
    NoCommonCodec,
    /// Audio is offered only over a transport profile the engine cannot terminate (SRTP,
    /// unknown): the B2BUA answers 488 rather than relay it blind.
    #[error("SDP offers audio only over {0}, which this server does not carry (no SRTP yet)")]
    UnsupportedProfile(String),
}

/// What an `m=` line's transport protocol (RFC 8866 §5.14 `<proto>`) means to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `RTP/AVP` (RFC 3551): carried.
    Avp,
    /// `RTP/AVPF` (RFC 4585): carried, answered as `RTP/AVPF` (the profile of an answer must
    /// match the offer's, RFC 3264 §6) but without `a=rtcp-fb`: RTCP is terminated per leg and
    /// no feedback is honoured, which RFC 4585 §4.2 allows.
    Avpf,
    /// SRTP: `RTP/SAVP` (RFC 3711), `RTP/SAVPF` (RFC 5124), `UDP/TLS/RTP/SAVP(F)` (RFC 5764).
    /// Not carried until the engine terminates SRTP.
    Secure,
    /// Anything else (`udp`, `TCP/RTP/AVP`, …): not carried.
    Other,
}

/// A parsed SDP session description (RFC 8866 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=`, the second line.
    pub origin: Origin,
    /// Session-level lines after `o=` and before the first `m=`, in order (`s=`, `c=`, `t=`, `a=`…).
    pub session: Vec<Line>,
    /// Media descriptions in order.
    pub media: Vec<MediaDescription>,
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>` (RFC 8866 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: String,
    pub session_version: u64,
    pub nettype: String,
    pub addrtype: String,
    pub address: String,
}

/// `c=<nettype> <addrtype> <connection-address>` (RFC 8866 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub nettype: String,
    pub addrtype: String,
    /// The address without the multicast `/ttl/count` suffix; may be a FQDN.
    pub address: String,
    /// Multicast suffix after the first `/`, kept verbatim.
    pub suffix: Option<String>,
}

/// `a=<name>[:<value>]` (RFC 8866 §5.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

/// One line other than `v=`, `o=` and `m=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Connection(Connection),
    Attribute(Attribute),
    /// Any other line, kept verbatim: `kind` is the type letter.
    Other {
        kind: char,
        value: String,
    },
}

/// `m=<media> <port>[/<number of ports>] <proto> <fmt> ...` and the lines below it (RFC 8866 §5.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub media: String,
    pub port: u16,
    pub port_count: Option<u16>,
    pub proto: String,
    pub formats: Vec<String>,
    pub lines: Vec<Line>,
}

/// Stream direction (RFC 3264 §5.1, §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// The codecs the B2BUA relays (no transcoding: the two legs must share one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SupportedCodec {
    /// G.711 µ-law, static PT 0 (RFC 3551 §4.5.14).
    Pcmu,
    /// G.711 A-law, static PT 8.
    Pcma,
    /// G.722, static PT 9, RTP clock rate 8000 (RFC 3551 §4.5.2).
    G722,
    /// Opus, dynamic PT, `opus/48000/2` (RFC 7587 §7).
    Opus,
    /// RFC 4733 DTMF events, dynamic PT.
    TelephoneEvent,
}

/// One payload type of the audio `m=` line, as the SDP describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub payload_type: u8,
    /// Encoding name as written (`PCMU`, `telephone-event`…); empty if unknown.
    pub encoding: String,
    /// RTP clock rate; 0 if unknown.
    pub clock_rate: u32,
    pub channels: u8,
    /// The `a=fmtp` parameters, if any.
    pub fmtp: Option<String>,
}

/// The origin one leg of the B2BUA presents: stable username and session id, version bumped
/// whenever the description sent on that leg changes and only then (RFC 3264 §8). One per side
/// of a call, fixed for the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegOrigin {
    origin: Origin,
    last: Option<Vec<u8>>,
}

impl SdpError {
    /// The Warning code (RFC 3261 §20.43) a 488 for this error carries: 302 "Incompatible
    /// transport protocol" for a profile we do not carry, 304 "Media type not available"
    /// without audio, 305 "Incompatible media format" without a common codec, 399 otherwise.
    pub fn warn_code(&self) -> u16 {
        match self {
            SdpError::UnsupportedProfile(_) => 302,
            SdpError::NoAudio => 304,
            SdpError::NoCommonCodec => 305,
            _ => 399,
        }
    }

    /// The Warning header value (RFC 3261 §20.43): `<code> <agent> "<text>"`, the text
    /// being this error's message with quotes and backslashes removed.
    pub fn warning(&self, agent: &str) -> String {
        let text: String = self
            .to_string()
            .chars()
            .filter(|c| !matches!(c, '"' | '\\'))
            .take(200)
            .collect();
        format!("{} {agent} \"{text}\"", self.warn_code())
    }
}

impl SessionDescription {
    /// Parses an SDP body. Lines end in CRLF or LF; blank lines are skipped.
    pub fn parse(body: &[u8]) -> Result<Self, SdpError> {
        if body.len() > MAX_SDP_BYTES {
            return Err(SdpError::TooLarge(body.len()));
        }
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        let mut origin = None;
        let mut session = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();
        let mut seen_version = false;
        let mut count = 0usize;
        for (index, raw) in text.split('\n').enumerate() {
            let line_no = index + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.trim().is_empty() {
                continue;
            }
            count += 1;
            if count > MAX_LINES {
                return Err(SdpError::TooManyLines);
            }
            let invalid = |reason| SdpError::Invalid {
                line: line_no,
                reason,
            };
            if raw
                .chars()
                .any(|c| (c.is_control() && c != '\t') || c == '\u{7f}')
            {
                return Err(invalid("control character"));
            }
            let bytes = raw.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
                return Err(invalid("expected <type>=<value>"));
            }
            let kind = char::from(bytes[0]);
            let value = &raw[2..];
            if !seen_version {
                if kind != 'v' {
                    return Err(SdpError::Missing('v'));
                }
                if value.trim() != "0" {
                    return Err(invalid("unsupported SDP version"));
                }
                seen_version = true;
                continue;
            }
            if origin.is_none() {
                if kind != 'o' {
                    return Err(SdpError::Missing('o'));
                }
                origin = Some(Origin::parse(value).ok_or_else(|| invalid("malformed o= line"))?);
                continue;
            }
            match kind {
                'v' => return Err(invalid("duplicate v= line")),
                'o' => return Err(invalid("duplicate o= line")),
                'm' => {
                    if media.len() >= MAX_MEDIA {
                        return Err(SdpError::TooManyMedia);
                    }
                    media.push(MediaDescription::parse(value).map_err(invalid)?);
                }
                _ => {
                    let line = Line::parse(kind, value).map_err(invalid)?;
                    match media.last_mut() {
                        Some(m) => m.lines.push(line),
                        None => session.push(line),
                    }
                }
            }
        }
        if !seen_version {
            return Err(SdpError::Missing('v'));
        }
        let origin = origin.ok_or(SdpError::Missing('o'))?;
        Ok(Self {
            origin,
            session,
            media,
        })
    }

    /// Prints the description with CRLF line ends.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Index in [`Self::media`] of the audio stream: the first `m=audio` with a non-zero port
    /// and a profile the engine carries ([`Profile::is_carried`]).
    pub fn audio_index(&self) -> Option<usize> {
        self.media.iter().position(|m| {
            m.media.eq_ignore_ascii_case("audio") && m.port != 0 && m.profile().is_carried()
        })
    }

    /// The audio stream, if any.
    pub fn audio(&self) -> Option<&MediaDescription> {
        self.audio_index().map(|i| &self.media[i])
    }

    /// The session-level `c=`, if any.
    pub fn session_connection(&self) -> Option<&Connection> {
        find_connection(&self.session)
    }

    /// The connection of the audio stream: media-level `c=`, else session-level. Without an
    /// audio stream, the session-level `c=`.
    pub fn connection(&self) -> Option<&Connection> {
        self.audio()
            .and_then(|m| find_connection(&m.lines))
            .or_else(|| self.session_connection())
    }

    /// The audio stream's connection address, if it is a literal IPv4 or IPv6 address.
    pub fn connection_addr(&self) -> Option<IpAddr> {
        self.connection().and_then(Connection::ip)
    }

    /// The audio stream's RTP port.
    pub fn media_port(&self) -> Option<u16> {
        self.audio().map(|m| m.port)
    }

    /// Where the audio stream wants RTP: connection address and port. `None` without an
    /// audio stream or with a non-literal address. May be unspecified (`0.0.0.0`, hold).
    pub fn rtp_addr(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(self.connection_addr()?, self.media_port()?))
    }

    /// Where the audio stream wants RTCP: `a=rtcp:<port> [IN IP4|IP6 <addr>]` (RFC 3605), else
    /// the RTP port + 1 at the connection address (RFC 3550 §11).
    pub fn rtcp_addr(&self) -> Option<SocketAddr> {
        let rtp = self.rtp_addr()?;
        let audio = self.audio()?;
        match find_attribute(&audio.lines, "rtcp").and_then(|a| a.value.as_deref()) {
            Some(value) => {
                let mut tokens = value.split_whitespace();
                let port = tokens.next()?.parse::<u16>().ok()?;
                let ip = match (tokens.next(), tokens.next(), tokens.next()) {
                    (Some(_), Some(_), Some(addr)) => addr.parse().ok()?,
                    _ => rtp.ip(),
                };
                Some(SocketAddr::new(ip, port))
            }
            None => Some(SocketAddr::new(rtp.ip(), rtp.port().checked_add(1)?)),
        }
    }

    /// The audio stream's direction: the media-level attribute, else the session-level one,
    /// else `sendrecv` (RFC 3264 §5.1). A connection address of `0.0.0.0` (or `::`) is the
    /// RFC 2543 hold (RFC 3264 §8.4): the party will not receive, so `sendrecv` reads as
    /// `sendonly` and `recvonly` as `inactive`.
    pub fn direction(&self) -> Direction {
        let attr = self
            .audio()
            .and_then(|m| find_direction(&m.lines))
            .or_else(|| find_direction(&self.session))
            .unwrap_or(Direction::SendRecv);
        if self.connection_addr().is_some_and(|ip| ip.is_unspecified()) {
            match attr {
                Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
                Direction::RecvOnly | Direction::Inactive => Direction::Inactive,
            }
        } else {
            attr
        }
    }

    /// Whether this description puts the other party on hold (`sendonly`, `inactive`, or
    /// RFC 2543 `c=0.0.0.0`).
    pub fn is_hold(&self) -> bool {
        matches!(self.direction(), Direction::SendOnly | Direction::Inactive)
    }

    /// Sets the direction attribute of the audio stream (replacing any there); without an
    /// audio stream, at session level.
    pub fn set_direction(&mut self, direction: Direction) {
        let lines = match self.audio_index() {
            Some(i) => &mut self.media[i].lines,
            None => &mut self.session,
        };
        lines.retain(
            |l| !matches!(l, Line::Attribute(a) if Direction::from_name(&a.name).is_some()),
        );
        lines.push(Line::Attribute(Attribute::flag(direction.as_str())));
    }

    /// Increments the `o=` session version (RFC 3264 §8: every changed offer or answer).
    pub fn bump_version(&mut self) {
        self.origin.session_version = self.origin.session_version.wrapping_add(1);
    }

    /// The description this server sends, written from `model` (an offer or answer already
    /// negotiated: intersected, widened or narrowed) with our media at `ip:rtp_port`. A
    /// whitelist (RFC 8866 §5, RFC 3264 §5, §6):
    /// * `v=0`, the model's `o=` (replace it with [`LegOrigin::apply`]) at `ip`,
    ///   `s=switchboard`, session-level `c=` with `ip`, `t=0 0`;
    /// * the audio stream: `m=audio <rtp_port> RTP/AVP|RTP/AVPF` with the model's payload
    ///   types that we relay, an `a=rtpmap` and (if the model has one) `a=fmtp` for each,
    ///   `a=ptime:20` (the engine's frame, whatever the peer packetises: so an answer does not
    ///   change between the 18x and the 2xx), `a=rtcp:<rtp_port + 1>` (RFC 3605: the engine
    ///   terminates RTCP there) and the model's direction, always written out (an RFC 2543
    ///   `c=0.0.0.0` hold becomes `a=sendonly`/`a=inactive`);
    /// * every other `m=` line rejected: port 0, same media, profile and formats, no lines.
    ///
    /// Nothing else of the model is copied: no `a=crypto`, `a=zrtp-hash`, `a=rtcp-fb`,
    /// `a=rtcp-xr`, ICE, `b=`, `i=` or session-level attributes.
    pub fn written_from(model: &SessionDescription, ip: IpAddr, rtp_port: u16) -> Self {
        let audio = model.audio_index();
        let media = model
            .media
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if Some(i) == audio {
                    model.written_audio(m, rtp_port)
                } else {
                    MediaDescription::rejected(m)
                }
            })
            .collect();
        let mut origin = model.origin.clone();
        origin.nettype = "IN".to_owned();
        origin.addrtype = addrtype(ip).to_owned();
        origin.address = ip.to_string();
        Self {
            origin,
            session: vec![
                Line::Other {
                    kind: 's',
                    value: "switchboard".to_owned(),
                },
                Line::Connection(Connection::new(ip)),
                Line::Other {
                    kind: 't',
                    value: "0 0".to_owned(),
                },
            ],
            media,
        }
    }

    /// Keeps only the payload types we relay on the audio `m=` line (PCMU, PCMA, G.722,
    /// opus/48000/2 and telephone-event/8000), in the offerer's order, dropping
    /// `rtpmap`/`fmtp`/`rtcp-fb` lines of removed types. Every other stream (video, extra
    /// audio…) is rejected with port 0 (RFC 3264 §6). Fails with [`SdpError::NoAudio`]
    /// without an audio stream and [`SdpError::NoCommonCodec`] if no audio codec
    /// (telephone-event alone does not count) survives; the description is then left
    /// unchanged.
    ///
    /// An offer whose only audio streams use a profile we do not carry (SRTP, unknown) fails
    /// with [`SdpError::UnsupportedProfile`]; with several audio streams, the first one we
    /// carry is kept and the others are rejected.
    pub fn intersect_supported(&mut self) -> Result<(), SdpError> {
        let Some(audio) = self.audio_index() else {
            let refused = self.media.iter().find(|m| {
                m.media.eq_ignore_ascii_case("audio") && m.port != 0 && !m.profile().is_carried()
            });
            return Err(match refused {
                Some(m) => SdpError::UnsupportedProfile(m.proto.clone()),
                None => SdpError::NoAudio,
            });
        };
        let codecs = self.codecs();
        let keep: Vec<u8> = codecs
            .iter()
            .filter(|c| c.supported().is_some())
            .map(|c| c.payload_type)
            .collect();
        let has_voice = codecs
            .iter()
            .any(|c| matches!(c.supported(), Some(k) if k != SupportedCodec::TelephoneEvent));
        if !has_voice {
            return Err(SdpError::NoCommonCodec);
        }
        for (i, m) in self.media.iter_mut().enumerate() {
            if i != audio {
                m.port = 0;
                m.port_count = None;
            }
        }
        let m = &mut self.media[audio];
        m.formats
            .retain(|f| f.parse::<u8>().is_ok_and(|pt| keep.contains(&pt)));
        m.lines.retain(|line| match line {
            Line::Attribute(a) if matches!(a.name.as_str(), "rtpmap" | "fmtp" | "rtcp-fb") => {
                match a.value.as_deref().and_then(|v| v.split_whitespace().next()) {
                    Some("*") => true,
                    Some(pt) => pt.parse::<u8>().is_ok_and(|pt| keep.contains(&pt)),
                    None => false,
                }
            }
            _ => true,
        });
        Ok(())
    }

    /// The payload types of the audio stream, in `m=` order, described by `a=rtpmap`/`a=fmtp`
    /// or the RFC 3551 static table. Formats that are not payload numbers are skipped.
    pub fn codecs(&self) -> Vec<Codec> {
        let Some(audio) = self.audio() else {
            return Vec::new();
        };
        audio
            .formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok().filter(|pt| *pt < 128))
            .map(|pt| {
                let (encoding, clock_rate, channels) = match rtpmap(&audio.lines, pt) {
                    Some(map) => map,
                    None => match static_payload_type(pt) {
                        Some((name, rate)) => (name.to_owned(), rate, 1),
                        None => (String::new(), 0, 1),
                    },
                };
                let fmtp = pt_attribute(&audio.lines, "fmtp", pt).map(str::to_owned);
                Codec {
                    payload_type: pt,
                    encoding,
                    clock_rate,
                    channels,
                    fmtp,
                }
            })
            .collect()
    }

    /// The audio `m=` section we write for `m` (this description's audio stream).
    fn written_audio(&self, m: &MediaDescription, rtp_port: u16) -> MediaDescription {
        let codecs: Vec<Codec> = self
            .codecs()
            .into_iter()
            .filter(|c| c.supported().is_some())
            .collect();
        let proto = match m.profile() {
            Profile::Avpf => "RTP/AVPF",
            _ => "RTP/AVP",
        };
        let mut lines = Vec::new();
        for c in &codecs {
            let mut map = format!("{} {}/{}", c.payload_type, c.encoding, c.clock_rate);
            if c.channels != 1 {
                map.push_str(&format!("/{}", c.channels));
            }
            lines.push(Line::Attribute(Attribute::new("rtpmap", map)));
            if let Some(fmtp) = c.fmtp.as_deref().filter(|f| !f.is_empty()) {
                lines.push(Line::Attribute(Attribute::new(
                    "fmtp",
                    format!("{} {fmtp}", c.payload_type),
                )));
            }
        }
        lines.push(Line::Attribute(Attribute::new(
            "ptime",
            FRAME_MS.to_string(),
        )));
        lines.push(Line::Attribute(Attribute::new(
            "rtcp",
            rtp_port.wrapping_add(1).to_string(),
        )));
        lines.push(Line::Attribute(Attribute::flag(self.direction().as_str())));
        MediaDescription {
            media: "audio".to_owned(),
            port: rtp_port,
            port_count: None,
            proto: proto.to_owned(),
            formats: codecs.iter().map(|c| c.payload_type.to_string()).collect(),
            lines,
        }
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v=0\r\n{}\r\n", self.origin)?;
        for line in &self.session {
            write!(f, "{line}\r\n")?;
        }
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

impl Origin {
    fn parse(value: &str) -> Option<Self> {
        let t: Vec<&str> = value.split_whitespace().collect();
        let [username, session_id, version, nettype, addrtype, address] = t.as_slice() else {
            return None;
        };
        Some(Self {
            username: (*username).to_owned(),
            session_id: (*session_id).to_owned(),
            session_version: version.parse().ok()?,
            nettype: (*nettype).to_owned(),
            addrtype: (*addrtype).to_owned(),
            address: (*address).to_owned(),
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "o={} {} {} {} {} {}",
            self.username,
            self.session_id,
            self.session_version,
            self.nettype,
            self.addrtype,
            self.address
        )
    }
}

impl Connection {
    /// `IN IP4 <ip>` or `IN IP6 <ip>`.
    pub fn new(ip: IpAddr) -> Self {
        Self {
            nettype: "IN".to_owned(),
            addrtype: addrtype(ip).to_owned(),
            address: ip.to_string(),
            suffix: None,
        }
    }

    /// The address, if it is a literal IPv4 or IPv6 address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }

    fn parse(value: &str) -> Option<Self> {
        let t: Vec<&str> = value.split_whitespace().collect();
        let [nettype, addrtype, address] = t.as_slice() else {
            return None;
        };
        let (address, suffix) = match address.split_once('/') {
            Some((a, s)) => (a, Some(s.to_owned())),
            None => (*address, None),
        };
        if address.is_empty() {
            return None;
        }
        Some(Self {
            nettype: (*nettype).to_owned(),
            addrtype: (*addrtype).to_owned(),
            address: address.to_owned(),
            suffix,
        })
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c={} {} {}", self.nettype, self.addrtype, self.address)?;
        if let Some(s) = &self.suffix {
            write!(f, "/{s}")?;
        }
        Ok(())
    }
}

impl Attribute {
    /// `a=<name>:<value>`.
    pub fn new(name: &str, value: String) -> Self {
        Self {
            name: name.to_owned(),
            value: Some(value),
        }
    }

    /// `a=<name>` (a property attribute).
    pub fn flag(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            value: None,
        }
    }
}

impl Line {
    fn parse(kind: char, value: &str) -> Result<Self, &'static str> {
        match kind {
            'c' => Connection::parse(value)
                .map(Line::Connection)
                .ok_or("malformed c= line"),
            'a' => {
                let (name, value) = match value.split_once(':') {
                    Some((n, v)) => (n, Some(v.to_owned())),
                    None => (value, None),
                };
                if name.is_empty() || name.contains(char::is_whitespace) {
                    return Err("malformed a= line");
                }
                Ok(Line::Attribute(Attribute {
                    name: name.to_owned(),
                    value,
                }))
            }
            _ => Ok(Line::Other {
                kind,
                value: value.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Connection(c) => c.fmt(f),
            Line::Attribute(Attribute {
                name,
                value: Some(v),
            }) => write!(f, "a={name}:{v}"),
            Line::Attribute(Attribute { name, value: None }) => write!(f, "a={name}"),
            Line::Other { kind, value } => write!(f, "{kind}={value}"),
        }
    }
}

impl MediaDescription {
    fn parse(value: &str) -> Result<Self, &'static str> {
        let mut t = value.split_whitespace();
        let (Some(media), Some(port), Some(proto)) = (t.next(), t.next(), t.next()) else {
            return Err("malformed m= line");
        };
        let (port, port_count) = match port.split_once('/') {
            Some((p, n)) => (
                p,
                Some(n.parse::<u16>().map_err(|_| "malformed m= port count")?),
            ),
            None => (port, None),
        };
        let port = port.parse::<u16>().map_err(|_| "malformed m= port")?;
        let formats: Vec<String> = t.map(str::to_owned).take(MAX_FORMATS + 1).collect();
        if formats.len() > MAX_FORMATS {
            return Err("too many formats on m= line");
        }
        Ok(Self {
            media: media.to_owned(),
            port,
            port_count,
            proto: proto.to_owned(),
            formats,
            lines: Vec::new(),
        })
    }

    /// This section's `c=`, if any.
    pub fn connection(&self) -> Option<&Connection> {
        find_connection(&self.lines)
    }

    /// The first attribute named `name` in this section.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        find_attribute(&self.lines, name)
    }

    /// What this section's transport protocol means to the engine.
    pub fn profile(&self) -> Profile {
        Profile::of(&self.proto)
    }

    /// This section rejected (RFC 3264 §6): port 0, same media, profile and formats, no
    /// attributes.
    fn rejected(m: &MediaDescription) -> Self {
        let formats = if m.formats.is_empty() {
            vec!["0".to_owned()]
        } else {
            m.formats.clone()
        };
        Self {
            media: m.media.clone(),
            port: 0,
            port_count: None,
            proto: m.proto.clone(),
            formats,
            lines: Vec::new(),
        }
    }
}

impl Profile {
    /// Reads an `m=` line's `<proto>` (compared without case).
    pub fn of(proto: &str) -> Self {
        let p = proto.to_ascii_uppercase();
        match p.as_str() {
            "RTP/AVP" => Profile::Avp,
            "RTP/AVPF" => Profile::Avpf,
            "RTP/SAVP" | "RTP/SAVPF" | "UDP/TLS/RTP/SAVP" | "UDP/TLS/RTP/SAVPF"
            | "TCP/TLS/RTP/SAVP" | "TCP/TLS/RTP/SAVPF" => Profile::Secure,
            _ => Profile::Other,
        }
    }

    /// Whether the engine terminates this profile (plain RTP).
    pub fn is_carried(self) -> bool {
        matches!(self, Profile::Avp | Profile::Avpf)
    }
}

impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(n) = self.port_count {
            write!(f, "/{n}")?;
        }
        write!(f, " {}", self.proto)?;
        for fmt in &self.formats {
            write!(f, " {fmt}")?;
        }
        f.write_str("\r\n")?;
        for line in &self.lines {
            write!(f, "{line}\r\n")?;
        }
        Ok(())
    }
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses an attribute name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The direction an answer takes for this offered direction (RFC 3264 §6.1).
    pub fn answer(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}

impl Codec {
    /// Which relayed codec this is, if any: encoding name (case-insensitive) and, for PCMU,
    /// PCMA, G.722 and telephone-event, clock rate 8000 and one channel; for Opus, clock rate
    /// 48000 and two channels, as RFC 7587 §7 requires of every `opus` rtpmap.
    pub fn supported(&self) -> Option<SupportedCodec> {
        let e = self.encoding.as_str();
        if e.eq_ignore_ascii_case("opus") {
            return (self.clock_rate == 48000 && self.channels == 2)
                .then_some(SupportedCodec::Opus);
        }
        if self.clock_rate != 8000 || self.channels != 1 {
            return None;
        }
        if e.eq_ignore_ascii_case("PCMU") {
            Some(SupportedCodec::Pcmu)
        } else if e.eq_ignore_ascii_case("PCMA") {
            Some(SupportedCodec::Pcma)
        } else if e.eq_ignore_ascii_case("G722") {
            Some(SupportedCodec::G722)
        } else if e.eq_ignore_ascii_case("telephone-event") {
            Some(SupportedCodec::TelephoneEvent)
        } else {
            None
        }
    }
}

impl LegOrigin {
    /// A fresh origin for one leg: `o=<username> <session_id> <session_id> IN IP4|IP6 <ip>`
    /// (RFC 8866 §5.2 suggests an NTP-like id; any unique number does).
    pub fn new(username: &str, session_id: u64, ip: IpAddr) -> Self {
        let username = if username.is_empty() || username.contains(char::is_whitespace) {
            "-".to_owned()
        } else {
            username.to_owned()
        };
        Self {
            origin: Origin {
                username,
                session_id: session_id.to_string(),
                session_version: session_id,
                nettype: "IN".to_owned(),
                addrtype: addrtype(ip).to_owned(),
                address: ip.to_string(),
            },
            last: None,
        }
    }

    /// The origin as last applied.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The body this leg gets for `model`: [`SessionDescription::written_from`] with our media
    /// at `ip:rtp_port`, under this leg's origin (version bumped only if the body changed).
    pub fn write(&mut self, model: &SessionDescription, ip: IpAddr, rtp_port: u16) -> Vec<u8> {
        let mut sdp = SessionDescription::written_from(model, ip, rtp_port);
        self.origin.addrtype = addrtype(ip).to_owned();
        self.origin.address = ip.to_string();
        self.apply(&mut sdp);
        sdp.to_bytes()
    }

    /// Puts this leg's origin on `sdp`, bumping the version if the description differs from
    /// the one last sent on this leg, so repeated identical descriptions keep their version.
    pub fn apply(&mut self, sdp: &mut SessionDescription) {
        sdp.origin = self.origin.clone();
        let body = sdp.to_bytes();
        if self.last.as_ref().is_some_and(|last| *last != body) {
            self.origin.session_version = self.origin.session_version.wrapping_add(1);
            sdp.origin = self.origin.clone();
            self.last = Some(sdp.to_bytes());
        } else {
            self.last = Some(body);
        }
    }
}

fn addrtype(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

fn find_connection(lines: &[Line]) -> Option<&Connection> {
    lines.iter().find_map(|l| match l {
        Line::Connection(c) => Some(c),
        _ => None,
    })
}

fn find_attribute<'a>(lines: &'a [Line], name: &str) -> Option<&'a Attribute> {
    lines.iter().find_map(|l| match l {
        Line::Attribute(a) if a.name == name => Some(a),
        _ => None,
    })
}

fn find_direction(lines: &[Line]) -> Option<Direction> {
    lines.iter().find_map(|l| match l {
        Line::Attribute(a) => Direction::from_name(&a.name),
        _ => None,
    })
}

/// The value after `<pt> ` of the first `a=<name>:<pt> ...` line.
fn pt_attribute<'a>(lines: &'a [Line], name: &str, pt: u8) -> Option<&'a str> {
    lines.iter().find_map(|l| match l {
        Line::Attribute(Attribute {
            name: n,
            value: Some(v),
        }) if n == name => {
            let (first, rest) = v
                .split_once(char::is_whitespace)
                .unwrap_or((v.as_str(), ""));
            (first.parse::<u8>().ok() == Some(pt)).then(|| rest.trim())
        }
        _ => None,
    })
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
fn rtpmap(lines: &[Line], pt: u8) -> Option<(String, u32, u8)> {
    let value = pt_attribute(lines, "rtpmap", pt)?;
    let mut parts = value.split('/');
    let encoding = parts.next()?.trim().to_owned();
    let clock = parts
        .next()
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0);
    let channels = match parts.next() {
        Some(c) => c.trim().parse().unwrap_or(0),
        None => 1,
    };
    Some((encoding, clock, channels))
}

/// RFC 3551 §6 static audio payload types we can name.
fn static_payload_type(pt: u8) -> Option<(&'static str, u32)> {
    Some(match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        13 => ("CN", 8000),
        18 => ("G729", 8000),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SIPP_OFFER: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

    const BARESIP_OFFER: &str = "v=0\n\
o=- 1613405232 2948234873 IN IP4 10.0.0.5\n\
s=-\n\
c=IN IP4 10.0.0.5\n\
t=0 0\n\
a=tool:baresip 3.10.1\n\
a=ice-lite\n\
m=audio 10000 RTP/AVP 96 111 0 8 9 101\n\
b=AS:64\n\
a=rtpmap:96 opus/48000/2\n\
a=fmtp:96 stereo=1;sprop-stereo=1\n\
a=rtpmap:111 G722/8000\n\
a=rtpmap:101 telephone-event/8000\n\
a=fmtp:101 0-15\n\
a=rtcp-fb:96 nack\n\
a=rtcp:10001\n\
a=rtcp-mux\n\
a=ice-ufrag:abcd\n\
a=ice-pwd:0123456789abcdef012345\n\
a=candidate:1 1 UDP 2130706431 10.0.0.5 10000 typ host\n\
a=candidate:1 2 UDP 2130706430 10.0.0.5 10001 typ host\n\
a=end-of-candidates\n\
a=sendrecv\n\
a=label:1\n\
m=video 10002 RTP/AVP 97\n\
a=rtpmap:97 H264/90000\n\
a=sendrecv\n";

    fn parse(s: &str) -> SessionDescription {
        SessionDescription::parse(s.as_bytes()).expect("test vector parses")
    }

    fn attr_names(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| match l {
                Line::Attribute(a) => Some(a.name.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn sipp_offer_parses_addresses_and_codecs() {
        let sdp = parse(SIPP_OFFER);
        assert_eq!(sdp.origin.session_version, 2353687637);
        assert_eq!(
            sdp.connection_addr(),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)))
        );
        assert_eq!(sdp.media_port(), Some(6000));
        assert_eq!(sdp.rtp_addr(), Some("192.0.2.10:6000".parse().unwrap()));
        assert_eq!(sdp.rtcp_addr(), Some("192.0.2.10:6001".parse().unwrap()));
        assert_eq!(sdp.direction(), Direction::SendRecv);
        let codecs = sdp.codecs();
        let pts: Vec<u8> = codecs.iter().map(|c| c.payload_type).collect();
        assert_eq!(pts, [0, 8, 101]);
        assert_eq!(codecs[2].supported(), Some(SupportedCodec::TelephoneEvent));
        assert_eq!(codecs[2].fmtp.as_deref(), Some("0-15"));
    }

    #[test]
    fn print_is_faithful_and_round_trips() {
        let sdp = parse(SIPP_OFFER);
        assert_eq!(String::from_utf8(sdp.to_bytes()).unwrap(), SIPP_OFFER);
        let baresip = parse(BARESIP_OFFER);
        let printed = baresip.to_bytes();
        assert_eq!(
            String::from_utf8(printed.clone()).unwrap(),
            BARESIP_OFFER.replace('\n', "\r\n")
        );
        assert_eq!(SessionDescription::parse(&printed).unwrap(), baresip);
    }

    #[test]
    fn baresip_offer_intersects_to_supported_codecs_in_offer_order() {
        let mut sdp = parse(BARESIP_OFFER);
        sdp.intersect_supported().unwrap();
        let audio = sdp.audio().unwrap();
        assert_eq!(audio.formats, ["96", "111", "0", "8", "9", "101"]);
        let names = attr_names(&audio.lines);
        assert!(
            names.contains(&"rtcp-fb".to_owned()),
            "rtcp-fb of kept opus kept"
        );
        let rtpmaps: Vec<_> = audio
            .lines
            .iter()
            .filter(|l| matches!(l, Line::Attribute(a) if a.name == "rtpmap" || a.name == "fmtp"))
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            rtpmaps,
            [
                "a=rtpmap:96 opus/48000/2",
                "a=fmtp:96 stereo=1;sprop-stereo=1",
                "a=rtpmap:111 G722/8000",
                "a=rtpmap:101 telephone-event/8000",
                "a=fmtp:101 0-15"
            ]
        );
        assert_eq!(sdp.codecs()[0].supported(), Some(SupportedCodec::Opus));
        assert_eq!(sdp.codecs()[1].supported(), Some(SupportedCodec::G722));
        // Video is rejected with port 0 but stays in place (RFC 3264 §6).
        assert_eq!(sdp.media.len(), 2);
        assert_eq!(sdp.media[1].port, 0);
        assert_eq!(sdp.media[1].formats, ["97"]);
    }

    #[test]
    fn written_sdp_has_our_address_and_none_of_the_peers_ice() {
        let mut sdp = parse(BARESIP_OFFER);
        sdp.intersect_supported().expect("supported");
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let ours = SessionDescription::written_from(&sdp, ip, 30000);
        assert_eq!(ours.origin.address, "203.0.113.7");
        assert_eq!(ours.rtp_addr(), Some("203.0.113.7:30000".parse().unwrap()));
        assert_eq!(ours.rtcp_addr(), Some("203.0.113.7:30001".parse().unwrap()));
        let text = ours.to_string();
        for gone in [
            "ice-",
            "candidate",
            "rtcp-mux",
            "10.0.0.5",
            "a=rtcp:10001",
            "a=label",
            "a=tool",
            "b=AS",
        ] {
            assert!(!text.contains(gone), "{gone} still in {text}");
        }
        assert!(text.contains("a=rtcp:30001\r\n"));
        assert!(text.contains("m=video 0 RTP/AVP 97\r\n"), "{text}");
        assert_eq!(SessionDescription::parse(&ours.to_bytes()), Ok(ours));
    }

    #[test]
    fn written_sdp_is_exactly_the_whitelist() {
        let sdp = parse(SIPP_OFFER);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let ours = SessionDescription::written_from(&sdp, ip, 20000);
        assert_eq!(
            ours.to_string(),
            "v=0\r\no=user1 53655765 2353687637 IN IP4 198.51.100.1\r\ns=switchboard\r\n\
             c=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 8 101\r\n\
             a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n\
             a=rtcp:20001\r\na=sendrecv\r\n"
        );
    }

    #[test]
    fn ipv6_connection_is_read_and_written_as_ip6() {
        let sdp = parse(
            "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 8\r\nc=IN IP6 2001:db8::1\r\n",
        );
        assert_eq!(sdp.connection_addr(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(sdp.rtp_addr(), Some("[2001:db8::1]:4000".parse().unwrap()));
        let v4 = SessionDescription::written_from(
            &sdp,
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            20000,
        );
        let text = v4.to_string();
        assert!(text.contains("o=- 1 1 IN IP4 198.51.100.1\r\n"));
        assert!(text.contains("c=IN IP4 198.51.100.1\r\n"));
        assert!(!text.contains("2001:db8"));
        let v6 = SessionDescription::written_from(&sdp, IpAddr::V6(Ipv6Addr::LOCALHOST), 20002);
        assert!(v6.to_string().contains("c=IN IP6 ::1\r\n"));
    }

    #[test]
    fn media_without_connection_gets_ours_when_written() {
        let sdp =
            parse("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n");
        assert_eq!(sdp.connection_addr(), None);
        let ours = SessionDescription::written_from(&sdp, "10.1.1.1".parse().unwrap(), 5000);
        assert_eq!(ours.rtp_addr(), Some("10.1.1.1:5000".parse().unwrap()));
    }

    const LINPHONE_SRTP_OFFER: &str = "v=0\r\n\
o=1001 3240 1571 IN IP4 192.0.2.20\r\n\
s=Talk\r\n\
c=IN IP4 192.0.2.20\r\n\
t=0 0\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
m=audio 7078 RTP/SAVP 96 0 8 101\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n\
a=rtcp-fb:* trr-int 1000\r\n\
a=rtcp-fb:* ccm tmmbr\r\n";

    #[test]
    fn savp_offer_with_crypto_is_refused() {
        let mut sdp = parse(LINPHONE_SRTP_OFFER);
        let before = sdp.clone();
        let err = sdp.intersect_supported().expect_err("SRTP is not carried");
        assert_eq!(err, SdpError::UnsupportedProfile("RTP/SAVP".into()));
        assert_eq!(sdp, before, "left unchanged");
        assert_eq!(sdp.audio_index(), None);
        assert_eq!(err.warn_code(), 302);
        let warning = err.warning("switchboard");
        assert!(warning.starts_with("302 switchboard \"SDP offers audio only over RTP/SAVP"));
        assert!(warning.ends_with('"'));
    }

    #[test]
    fn savpf_dtls_and_unknown_profiles_are_refused() {
        for proto in ["RTP/SAVPF", "UDP/TLS/RTP/SAVPF", "TCP/RTP/AVP", "udp"] {
            let mut sdp = parse(&LINPHONE_SRTP_OFFER.replace("RTP/SAVP", proto));
            assert_eq!(
                sdp.intersect_supported(),
                Err(SdpError::UnsupportedProfile(proto.into())),
                "{proto}"
            );
        }
        let mut avpf = parse(&LINPHONE_SRTP_OFFER.replace("RTP/SAVP", "RTP/AVPF"));
        assert_eq!(avpf.intersect_supported(), Ok(()));
    }

    #[test]
    fn offer_without_audio_warns_304_and_without_codec_305() {
        let mut video = parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n\
             m=video 4000 RTP/AVP 97\r\n",
        );
        let err = video.intersect_supported().expect_err("no audio");
        assert_eq!((err.clone(), err.warn_code()), (SdpError::NoAudio, 304));
        let mut g729 = parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 18\r\n",
        );
        let err = g729.intersect_supported().expect_err("no codec");
        assert_eq!(err.warn_code(), 305);
    }

    #[test]
    fn of_several_audio_streams_the_plain_one_is_carried_and_the_srtp_one_rejected() {
        // The RFC 3264 "two m-lines" way of offering SRTP with a plain fallback.
        let body = format!(
            "{LINPHONE_SRTP_OFFER}m=audio 7080 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        );
        let mut sdp = parse(&body);
        sdp.intersect_supported()
            .expect("the plain stream is usable");
        assert_eq!(sdp.audio_index(), Some(1));
        assert_eq!(sdp.media_port(), Some(7080));
        assert_eq!(sdp.media[0].port, 0, "SRTP stream rejected");
        let ours = SessionDescription::written_from(&sdp, "203.0.113.7".parse().unwrap(), 30000);
        let text = ours.to_string();
        assert!(
            text.contains("m=audio 0 RTP/SAVP 96 0 8 101\r\nm=audio 30000 RTP/AVP 0 101\r\n"),
            "{text}"
        );
        assert!(!text.contains("crypto"), "{text}");
    }

    #[test]
    fn crypto_and_zrtp_hash_never_leave_on_an_avp_line() {
        // Best-effort SRTP (SDES keys on a plain RTP/AVP line) and ZRTP: answered plain.
        let body = LINPHONE_SRTP_OFFER.replace("RTP/SAVP", "RTP/AVP").replace(
            "a=rtcp-fb:* ccm tmmbr\r\n",
            "a=rtcp-fb:* ccm tmmbr\r\na=zrtp-hash:1.10 1d7f2bb9e7b2ab6b8a1d3b5c0b0b8a9e\r\n",
        );
        let mut sdp = parse(&body);
        sdp.intersect_supported().expect("plain RTP offer");
        let text = SessionDescription::written_from(&sdp, "203.0.113.7".parse().unwrap(), 30000)
            .to_string();
        for gone in ["crypto", "zrtp", "rtcp-fb", "rtcp-xr", "Talk"] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
        assert!(text.contains("a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n"));
    }

    #[test]
    fn avpf_stays_avpf_without_feedback_lines() {
        let mut sdp = parse(&LINPHONE_SRTP_OFFER.replace("RTP/SAVP", "RTP/AVPF"));
        sdp.intersect_supported().expect("AVPF is carried");
        let text = SessionDescription::written_from(&sdp, "203.0.113.7".parse().unwrap(), 30000)
            .to_string();
        assert!(
            text.contains("m=audio 30000 RTP/AVPF 96 0 8 101\r\n"),
            "{text}"
        );
        assert!(!text.contains("rtcp-fb"), "{text}");
    }

    #[test]
    fn o_line_version_grows_only_when_the_sdp_changes() {
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let mut leg = LegOrigin::new("switchboard", 4242, ip);
        let model = parse(SIPP_OFFER);
        let first = parse_bytes(&leg.write(&model, ip, 30000));
        assert_eq!(
            first.origin.to_string(),
            "o=switchboard 4242 4242 IN IP4 203.0.113.7"
        );
        let again = parse_bytes(&leg.write(&model, ip, 30000));
        assert_eq!(again, first, "resent unchanged: same bytes, same version");
        // The peer's own origin changing does not change what we send.
        let mut bumped = model.clone();
        bumped.bump_version();
        assert_eq!(parse_bytes(&leg.write(&bumped, ip, 30000)), first);
        let mut held = model.clone();
        held.set_direction(Direction::SendOnly);
        let held = parse_bytes(&leg.write(&held, ip, 30000));
        assert_eq!(held.origin.session_version, 4243);
        assert_eq!(held.origin.session_id, "4242");
        let resumed = parse_bytes(&leg.write(&model, ip, 30000));
        assert_eq!(
            resumed.origin.session_version, 4244,
            "a change back is a change"
        );
    }

    fn parse_bytes(b: &[u8]) -> SessionDescription {
        SessionDescription::parse(b).expect("our SDP parses")
    }

    #[test]
    fn hold_directions_are_recognised() {
        let base = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";
        let sendonly = parse(&format!("{base}m=audio 4000 RTP/AVP 0\r\na=sendonly\r\n"));
        assert_eq!(sendonly.direction(), Direction::SendOnly);
        assert!(sendonly.is_hold());
        let inactive = parse(&format!("{base}a=inactive\r\nm=audio 4000 RTP/AVP 0\r\n"));
        assert_eq!(
            inactive.direction(),
            Direction::Inactive,
            "session level applies"
        );
        let overridden = parse(&format!(
            "{base}a=inactive\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n"
        ));
        assert_eq!(
            overridden.direction(),
            Direction::SendRecv,
            "media level overrides"
        );
        assert!(!overridden.is_hold());
        let rfc2543 = base.replace("c=IN IP4 192.0.2.1", "c=IN IP4 0.0.0.0");
        let old_hold = parse(&format!("{rfc2543}m=audio 4000 RTP/AVP 0\r\n"));
        assert_eq!(old_hold.direction(), Direction::SendOnly);
        assert!(old_hold.is_hold());
        let written =
            SessionDescription::written_from(&old_hold, "192.0.2.99".parse().unwrap(), 6000);
        assert_eq!(
            written.direction(),
            Direction::SendOnly,
            "hold survives the rewrite"
        );
        assert!(written.to_string().contains("a=sendonly\r\n"));
    }

    #[test]
    fn set_direction_replaces_the_audio_attribute() {
        let mut sdp = parse(SIPP_OFFER);
        sdp.set_direction(Direction::RecvOnly);
        assert_eq!(sdp.direction(), Direction::RecvOnly);
        let text = sdp.to_string();
        assert!(!text.contains("a=sendrecv"));
        assert_eq!(text.matches("a=recvonly").count(), 1);
        assert_eq!(Direction::SendOnly.answer(), Direction::RecvOnly);
    }

    #[test]
    fn dynamic_pt_g722_and_case_insensitive_names_are_kept() {
        let mut sdp = parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 98 99 100\r\na=rtpmap:98 g722/8000/1\r\n\
             a=rtpmap:99 G722/16000\r\na=rtpmap:100 Telephone-Event/8000\r\n",
        );
        sdp.intersect_supported().unwrap();
        assert_eq!(sdp.audio().unwrap().formats, ["98", "100"]);
        assert!(
            !sdp.to_string().contains("rtpmap:99"),
            "wrong clock rate removed"
        );
    }

    #[test]
    fn opus_is_supported_only_as_48000_hz_two_channels() {
        let mut sdp = parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 96 97 98 101\r\na=rtpmap:96 OPUS/48000/2\r\n\
             a=fmtp:96 useinbandfec=1\r\na=rtpmap:97 opus/48000\r\n\
             a=rtpmap:98 opus/16000/2\r\na=rtpmap:101 telephone-event/8000\r\n",
        );
        let supported: Vec<_> = sdp.codecs().iter().map(Codec::supported).collect();
        assert_eq!(
            supported,
            [
                Some(SupportedCodec::Opus),
                None,
                None,
                Some(SupportedCodec::TelephoneEvent)
            ]
        );
        sdp.intersect_supported().unwrap();
        assert_eq!(sdp.audio().unwrap().formats, ["96", "101"]);
        assert!(sdp.to_string().contains("a=fmtp:96 useinbandfec=1\r\n"));
    }

    #[test]
    fn no_common_codec_is_an_error_and_leaves_sdp_unchanged() {
        let body = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n\
                    m=audio 4000 RTP/AVP 18 101\r\na=rtpmap:18 G729/8000\r\n\
                    a=rtpmap:101 telephone-event/8000\r\n";
        let mut sdp = parse(body);
        let before = sdp.clone();
        assert_eq!(sdp.intersect_supported(), Err(SdpError::NoCommonCodec));
        assert_eq!(sdp, before);
        let mut video_only =
            parse("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=video 4000 RTP/AVP 97\r\n");
        assert_eq!(video_only.intersect_supported(), Err(SdpError::NoAudio));
    }

    #[test]
    fn garbage_input_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            b"",
            b"\r\n\r\n",
            b"hello",
            b"v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
            b"v=0\r\ns=-\r\n",
            b"v=0\r\no=- 1 x IN IP4 1.2.3.4\r\n",
            b"v=0\r\no=- 1 1 IN IP4\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 99999 RTP/AVP 0\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nX=1\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\na=\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=a\rb\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=\xff\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        ];
        for case in cases {
            assert!(
                SessionDescription::parse(case).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(case)
            );
        }
        let huge = vec![b'a'; MAX_SDP_BYTES + 1];
        assert_eq!(
            SessionDescription::parse(&huge),
            Err(SdpError::TooLarge(MAX_SDP_BYTES + 1))
        );
        let many = format!(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n{}",
            "a=x\r\n".repeat(MAX_LINES)
        );
        assert_eq!(
            SessionDescription::parse(many.as_bytes()),
            Err(SdpError::TooManyLines)
        );
        let media = format!(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n{}",
            "m=audio 0 RTP/AVP 0\r\n".repeat(MAX_MEDIA + 1)
        );
        assert_eq!(
            SessionDescription::parse(media.as_bytes()),
            Err(SdpError::TooManyMedia)
        );
    }

    #[test]
    fn odd_but_valid_values_do_not_break_accessors() {
        let sdp = parse(
            "v=0\r\no=- 1 1 IN IP4 host.example\r\ns=-\r\nc=IN IP4 host.example\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 0 abc 300\r\na=rtpmap:0\r\na=rtcp:notaport\r\n",
        );
        assert_eq!(sdp.connection_addr(), None);
        assert_eq!(sdp.rtp_addr(), None);
        assert_eq!(sdp.rtcp_addr(), None);
        assert_eq!(sdp.codecs().len(), 1);
    }

    #[test]
    fn leg_origin_is_stable_and_bumps_only_on_change() {
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let mut leg = LegOrigin::new("switchboard", 1000, ip);
        let mut first = parse(SIPP_OFFER);
        leg.apply(&mut first);
        assert_eq!(
            first.origin.to_string(),
            "o=switchboard 1000 1000 IN IP4 203.0.113.7"
        );
        let mut same = parse(SIPP_OFFER);
        leg.apply(&mut same);
        assert_eq!(
            same.origin.session_version, 1000,
            "unchanged description keeps its version"
        );
        let mut held = parse(SIPP_OFFER);
        held.set_direction(Direction::SendOnly);
        leg.apply(&mut held);
        assert_eq!(held.origin.session_version, 1001);
        assert_eq!(held.origin.session_id, "1000");
        let mut again = held.clone();
        leg.apply(&mut again);
        assert_eq!(again.origin.session_version, 1001);
    }
}
