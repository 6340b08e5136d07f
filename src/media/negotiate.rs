//! Offer/answer across the B2BUA when the media engine can transcode. PURE.
//!
//! The B2BUA passes each offer on to the other side and each answer back (RFC 3264 §5, §6),
//! rewritten for our ports ([`super::sdp`]). With a media engine that transcodes, it also:
//! * **widens** an offer before passing it on ([`widen_offer`]): every codec we can transcode
//!   and `telephone-event/8000` are appended after the offerer's own, so the answerer may pick
//!   one the offerer lacks;
//! * **narrows** the answer before returning it ([`answer_for_offerer`]): the offerer must
//!   only ever see its own payload types (RFC 3264 §6.1), so the answer keeps one voice codec
//!   the offerer offered (the answerer's choice when the offerer had it, the offerer's first
//!   otherwise, or the one already promised in early media) and the offerer's
//!   telephone-event.
//!
//! The two [`LegMedia`] values then tell the engine whether the legs share a codec (relay
//! without decoding) or not (transcode).
//!
//! The rules for what each side gets (the SDP itself is written by
//! [`super::sdp::LegOrigin::write`], never relayed):
//! * an offer we cannot carry (audio only over SRTP or an unknown profile, no audio, no common
//!   codec) is refused with 488 and a Warning saying why ([`offer_warning`], RFC 3261 §20.43,
//!   §21.4.26), never relayed blind;
//! * the offer we pass on is ours: `RTP/AVP` ([`relay_offer`]), since each leg is its own RTP
//!   session and no AVPF feedback is honoured;
//! * an answer has the offer's `m=` lines in order, with the offer's profile on the audio
//!   stream and every other stream rejected (RFC 3264 §6);
//! * the answer the caller got in an unreliable 18x is the one its 2xx carries (RFC 6337
//!   §3.1, RFC 3261 §13.2.1): [`early_answer`] and [`answer_for_offerer`] with the promised
//!   media give the same description, and [`super::sdp::LegOrigin`] keeps its version.

use super::codec::CodecKind;
use super::sdp::{Attribute, Codec, Line, MediaDescription, SessionDescription, SupportedCodec};

/// What one leg sends and receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegMedia {
    /// The voice codec.
    pub codec: CodecKind,
    /// Its payload type on this leg.
    pub payload_type: u8,
    /// The payload type of `telephone-event` (RFC 4733) on this leg, if negotiated.
    pub telephone_event: Option<u8>,
}

/// Codecs the engine transcodes, in the order they are appended to a widened offer:
/// (codec, rtpmap value without the payload type, static payload type, fmtp).
const TRANSCODABLE: [(CodecKind, &str, Option<u8>, Option<&str>); 4] = [
    (CodecKind::Pcmu, "PCMU/8000", Some(0), None),
    (CodecKind::Pcma, "PCMA/8000", Some(8), None),
    (CodecKind::G722, "G722/8000", Some(9), None),
    (
        CodecKind::Opus,
        "opus/48000/2",
        None,
        Some("useinbandfec=1;minptime=10"),
    ),
];

/// The offer we pass on to the other side for `offer` (already intersected with
/// [`SessionDescription::intersect_supported`]): its audio stream as `RTP/AVP`, widened with
/// every codec we transcode when `transcoding`.
pub fn relay_offer(offer: &SessionDescription, transcoding: bool) -> SessionDescription {
    let mut ours = offer.clone();
    if let Some(audio) = ours.audio_index() {
        ours.media[audio].proto = "RTP/AVP".to_owned();
    }
    if transcoding {
        widen_offer(&mut ours);
    }
    ours
}

/// The offer of a call the server places: PCMU, PCMA, G.722 and telephone-event, 20 ms.
pub fn server_offer() -> SessionDescription {
    const OFFER: &str = "v=0\r\no=switchboard 0 0 IN IP4 0.0.0.0\r\ns=switchboard\r\n\
        t=0 0\r\nm=audio 9 RTP/AVP 0 8 9 101\r\na=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";
    SessionDescription::parse(OFFER.as_bytes()).expect("the constant offer parses")
}

/// Why we refuse the offer in `body`, as a Warning header value (RFC 3261 §20.43) for the 488:
/// None when the body is empty (a delayed offer) or the offer is usable.
pub fn offer_warning(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let refusal = SessionDescription::parse(body).and_then(|mut sdp| sdp.intersect_supported());
    refusal.err().map(|e| e.warning("switchboard"))
}

/// Appends every transcodable codec the offer lacks, and `telephone-event/8000`, to the audio
/// stream, with free dynamic payload types (96–127) where no static one exists. Call it after
/// [`SessionDescription::intersect_supported`]. Without an audio stream it does nothing.
pub fn widen_offer(offer: &mut SessionDescription) {
    let codecs = offer.codecs();
    let Some(audio) = offer.audio_index() else {
        return;
    };
    let mut used: Vec<u8> = codecs.iter().map(|c| c.payload_type).collect();
    let add = |m: &mut super::sdp::MediaDescription,
               used: &mut Vec<u8>,
               static_pt: Option<u8>,
               rtpmap: &str,
               fmtp: Option<&str>| {
        let pt = match static_pt.filter(|pt| !used.contains(pt)) {
            Some(pt) => pt,
            None => match (96u8..=127).find(|pt| !used.contains(pt)) {
                Some(pt) => pt,
                None => return,
            },
        };
        used.push(pt);
        m.formats.push(pt.to_string());
        m.lines.push(Line::Attribute(Attribute::new(
            "rtpmap",
            format!("{pt} {rtpmap}"),
        )));
        if let Some(fmtp) = fmtp {
            m.lines.push(Line::Attribute(Attribute::new(
                "fmtp",
                format!("{pt} {fmtp}"),
            )));
        }
    };
    let m = &mut offer.media[audio];
    for (kind, rtpmap, static_pt, fmtp) in TRANSCODABLE {
        if !codecs.iter().any(|c| CodecKind::from_sdp(c) == Some(kind)) {
            add(m, &mut used, static_pt, rtpmap, fmtp);
        }
    }
    if !codecs
        .iter()
        .any(|c| c.supported() == Some(SupportedCodec::TelephoneEvent))
    {
        add(m, &mut used, None, "telephone-event/8000", Some("0-16"));
    }
}

/// The media a description selects: its first voice codec we support and its
/// `telephone-event`. For an answer, that is what the answerer will send (RFC 3264 §6.1).
pub fn leg_media(sdp: &SessionDescription) -> Option<LegMedia> {
    let codecs = sdp.codecs();
    let (codec, payload_type) = first_voice(&codecs)?;
    Some(LegMedia {
        codec,
        payload_type,
        telephone_event: telephone_event(&codecs),
    })
}

/// Narrows `answer` (the other side's answer to a widened `offer`) into the answer the
/// offerer gets (the offer's `m=` lines and profile, the direction answering the offer's),
/// and returns (offerer's media, answerer's media). `promised` is the offerer's
/// media already fixed by an earlier answer (early media): it is kept. None when the answer
/// has no voice codec we support.
pub fn answer_for_offerer(
    offer: &SessionDescription,
    answer: &mut SessionDescription,
    promised: Option<LegMedia>,
) -> Option<(LegMedia, LegMedia)> {
    let answerer = leg_media(answer)?;
    let offered = offer.codecs();
    let offerer = match promised {
        Some(p) => p,
        None => {
            let same = offered
                .iter()
                .find(|c| CodecKind::from_sdp(c) == Some(answerer.codec))
                .map(|c| c.payload_type);
            let (codec, payload_type) = match same {
                Some(pt) => (answerer.codec, pt),
                None => first_voice(&offered)?,
            };
            LegMedia {
                codec,
                payload_type,
                telephone_event: telephone_event(&offered),
            }
        }
    };
    if let Some(audio) = answer.audio_index() {
        restrict(&mut answer.media[audio], offer, &offerer);
    }
    conform_to_offer(answer, offer);
    // Our direction toward the offerer is what our engine does with it, not the answerer's:
    // each leg is our own RTP session. So a callee's `sendonly` 183 and `sendrecv` 200 give
    // the offerer one answer (RFC 6337 §3.1), and a hold answered by the other side reads as
    // the offer answered (RFC 3264 §6.1).
    answer.set_direction(offer.direction().answer());
    Some((offerer, answerer))
}

/// An answer of our own to `offer`, for early media (ringback) before the other side answers:
/// the offerer's first voice codec and its telephone-event, direction answered per RFC 3264
/// §6.1. The caller rewrites addresses and origin as for any answer it sends.
pub fn early_answer(offer: &SessionDescription) -> Option<(SessionDescription, LegMedia)> {
    let media = leg_media(offer)?;
    let mut answer = offer.clone();
    let audio = answer.audio_index()?;
    restrict(&mut answer.media[audio], offer, &media);
    let direction = offer.direction().answer();
    answer.set_direction(direction);
    Some((answer, media))
}

/// Gives `answer` the offer's `m=` lines in order (RFC 3264 §6): the answer's audio stream
/// where the offer has its audio stream, with the offer's media and profile; every other line
/// rejected as the offer wrote it (the writer empties it).
fn conform_to_offer(answer: &mut SessionDescription, offer: &SessionDescription) {
    let accepted = answer.audio().cloned();
    let offer_audio = offer.audio_index();
    answer.media = offer
        .media
        .iter()
        .enumerate()
        .map(|(i, m)| match &accepted {
            Some(a) if Some(i) == offer_audio => MediaDescription {
                media: m.media.clone(),
                proto: m.proto.clone(),
                ..a.clone()
            },
            _ => MediaDescription {
                port: 0,
                port_count: None,
                lines: Vec::new(),
                ..m.clone()
            },
        })
        .collect();
}

/// The first voice codec we can decode, with its payload type.
fn first_voice(codecs: &[Codec]) -> Option<(CodecKind, u8)> {
    codecs
        .iter()
        .find_map(|c| Some((CodecKind::from_sdp(c)?, c.payload_type)))
}

fn telephone_event(codecs: &[Codec]) -> Option<u8> {
    codecs
        .iter()
        .find(|c| c.supported() == Some(SupportedCodec::TelephoneEvent))
        .map(|c| c.payload_type)
}

/// Keeps on `m` only the offerer's voice payload type and telephone-event, described by the
/// offer's own rtpmap/fmtp lines (so the offerer sees its own numbering).
fn restrict(m: &mut super::sdp::MediaDescription, offer: &SessionDescription, media: &LegMedia) {
    let keep: Vec<u8> = std::iter::once(media.payload_type)
        .chain(media.telephone_event)
        .collect();
    m.formats = keep.iter().map(u8::to_string).collect();
    m.lines.retain(|line| {
        !matches!(line, Line::Attribute(a) if matches!(a.name.as_str(), "rtpmap" | "fmtp" | "rtcp-fb"))
    });
    let offer_lines = offer
        .audio()
        .map(|a| a.lines.as_slice())
        .unwrap_or_default();
    for pt in keep {
        for line in offer_lines {
            if let Line::Attribute(a) = line
                && matches!(a.name.as_str(), "rtpmap" | "fmtp")
                && a.value
                    .as_deref()
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|p| p.parse::<u8>().ok())
                    == Some(pt)
            {
                m.lines.push(line.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::sdp::LegOrigin;

    fn sdp(formats: &str, extra: &str) -> SessionDescription {
        let body = format!(
            "v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP {formats}\r\n{extra}"
        );
        SessionDescription::parse(body.as_bytes()).expect("test SDP parses")
    }

    #[test]
    fn widened_offer_appends_missing_codecs_and_telephone_event() {
        let mut offer = sdp("0", "a=rtpmap:0 PCMU/8000\r\n");
        widen_offer(&mut offer);
        let kinds: Vec<_> = offer.codecs().iter().map(|c| c.encoding.clone()).collect();
        assert_eq!(kinds, ["PCMU", "PCMA", "G722", "opus", "telephone-event"]);
        let opus = offer.codecs()[3].clone();
        assert_eq!(
            (opus.payload_type, opus.clock_rate, opus.channels),
            (96, 48000, 2)
        );
        assert_eq!(offer.codecs()[4].payload_type, 97);
    }

    #[test]
    fn widening_skips_payload_types_in_use() {
        let mut offer = sdp(
            "0 96 101",
            "a=rtpmap:96 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        );
        widen_offer(&mut offer);
        let pts: Vec<_> = offer.codecs().iter().map(|c| c.payload_type).collect();
        // PCMA static 8 and opus at the first free dynamic type (97); G.722 and TE were there.
        assert_eq!(pts, [0, 96, 101, 8, 97]);
    }

    #[test]
    fn answer_with_shared_codec_relays_it() {
        let offer = sdp(
            "8 0 101",
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        );
        let mut widened = offer.clone();
        widen_offer(&mut widened);
        let mut answer = sdp("0 101", "a=rtpmap:101 telephone-event/8000\r\n");
        let (a, b) = answer_for_offerer(&offer, &mut answer, None).expect("usable");
        assert_eq!(a, b);
        assert_eq!(a.codec, CodecKind::Pcmu);
        assert_eq!(answer.audio().expect("audio").formats, ["0", "101"]);
    }

    #[test]
    fn answer_with_a_codec_the_offerer_lacks_is_transcoded() {
        let offer = sdp("0", "");
        let mut answer = sdp(
            "96 97",
            "a=rtpmap:96 opus/48000/2\r\na=rtpmap:97 telephone-event/8000\r\n",
        );
        let (a, b) = answer_for_offerer(&offer, &mut answer, None).expect("usable");
        assert_eq!(
            a,
            LegMedia {
                codec: CodecKind::Pcmu,
                payload_type: 0,
                telephone_event: None
            }
        );
        assert_eq!(b.codec, CodecKind::Opus);
        assert_eq!(b.telephone_event, Some(97));
        let m = answer.audio().expect("audio");
        assert_eq!(m.formats, ["0"]);
        assert!(!answer.to_string().contains("opus"));
    }

    #[test]
    fn promised_early_media_codec_is_kept() {
        let offer = sdp("0 8", "");
        let (early, promised) = early_answer(&offer).expect("early answer");
        assert_eq!(early.audio().expect("audio").formats, ["0"]);
        let mut answer = sdp("8", "");
        let (a, b) = answer_for_offerer(&offer, &mut answer, Some(promised)).expect("usable");
        assert_eq!(a.codec, CodecKind::Pcmu);
        assert_eq!(b.codec, CodecKind::Pcma);
        assert_eq!(answer.audio().expect("audio").formats, ["0"]);
    }

    #[test]
    fn answer_without_a_known_codec_is_refused() {
        let offer = sdp("0", "");
        let mut answer = sdp("18", "");
        assert!(answer_for_offerer(&offer, &mut answer, None).is_none());
    }

    #[test]
    fn early_answer_mirrors_direction() {
        let offer = sdp("0", "a=sendonly\r\n");
        let (early, _) = early_answer(&offer).expect("early");
        assert_eq!(early.direction(), super::super::sdp::Direction::RecvOnly);
    }

    const IP: &str = "203.0.113.7";

    fn ip() -> std::net::IpAddr {
        IP.parse().expect("test address")
    }

    #[test]
    fn answer_never_carries_the_offerers_rtcp_fb() {
        let offer = sdp(
            "96 0 101",
            "a=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=rtcp-fb:96 nack\r\na=rtcp-fb:* trr-int 1000\r\na=rtcp-xr:voip-metrics\r\n",
        );
        let (early, _) = early_answer(&offer).expect("early");
        let mut answer = sdp("0", "a=rtcp-fb:0 nack\r\n");
        answer_for_offerer(&offer, &mut answer, None).expect("usable");
        let mut leg = LegOrigin::new("switchboard", 1, ip());
        for model in [&early, &answer] {
            let text = String::from_utf8(leg.write(model, ip(), 30000)).expect("utf-8");
            assert!(!text.contains("rtcp-fb"), "{text}");
            assert!(!text.contains("rtcp-xr"), "{text}");
        }
    }

    #[test]
    fn same_answer_in_183_and_200() {
        // The caller offers PCMU and PCMA; ringback fixes PCMU in the 18x; the callee then
        // answers PCMA from another address. The caller's 2xx must repeat the 18x answer,
        // byte for byte, same o= version (RFC 6337 §3.1, RFC 3264 §8).
        let offer = sdp(
            "0 8 101",
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n",
        );
        let mut leg = LegOrigin::new("switchboard", 77, ip());
        let (early, promised) = early_answer(&offer).expect("early");
        let in_18x = leg.write(&early, ip(), 30000);
        let mut callee = sdp(
            "8 101",
            "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        );
        callee.origin.address = "10.9.9.9".into();
        let (a, b) = answer_for_offerer(&offer, &mut callee, Some(promised)).expect("usable");
        assert_eq!((a.codec, b.codec), (CodecKind::Pcmu, CodecKind::Pcma));
        let in_2xx = leg.write(&callee, ip(), 30000);
        assert_eq!(
            String::from_utf8_lossy(&in_18x),
            String::from_utf8_lossy(&in_2xx)
        );
        // The callee's own 183 with SDP (early media only: sendonly), then its 200
        // (sendrecv): the caller sees one answer too.
        let mut leg = LegOrigin::new("switchboard", 78, ip());
        let mut callee_183 = sdp(
            "0 101",
            "a=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n",
        );
        let (a, _) = answer_for_offerer(&offer, &mut callee_183, None).expect("usable");
        let in_183 = leg.write(&callee_183, ip(), 30000);
        let mut callee_200 = sdp("0 101", "a=rtpmap:101 telephone-event/8000\r\n");
        callee_200.origin.session_version = 2;
        answer_for_offerer(&offer, &mut callee_200, Some(a)).expect("usable");
        assert_eq!(in_183, leg.write(&callee_200, ip(), 30000));
    }

    #[test]
    fn answer_keeps_the_offers_m_lines_and_profile() {
        let body = "v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abcd\r\n\
             m=audio 4002 RTP/AVPF 0 8\r\na=rtcp-fb:* nack\r\nm=video 4004 RTP/AVP 97\r\n";
        let mut offer = SessionDescription::parse(body.as_bytes()).expect("parses");
        offer
            .intersect_supported()
            .expect("the AVPF stream is usable");
        let relayed = relay_offer(&offer, false);
        assert_eq!(relayed.audio().expect("audio").proto, "RTP/AVP");
        // The callee answers our plain offer with one m-line only (a sloppy answer).
        let mut answer = sdp("8", "");
        answer_for_offerer(&offer, &mut answer, None).expect("usable");
        let mut leg = LegOrigin::new("switchboard", 5, ip());
        let text = String::from_utf8(leg.write(&answer, ip(), 30000)).expect("utf-8");
        let m_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m_lines,
            [
                "m=audio 0 RTP/SAVP 0",
                "m=audio 30000 RTP/AVPF 8",
                "m=video 0 RTP/AVP 97"
            ]
        );
        assert!(
            !text.contains("crypto") && !text.contains("rtcp-fb"),
            "{text}"
        );
    }

    #[test]
    fn offers_we_cannot_carry_get_a_warning_and_usable_ones_none() {
        let srtp = "v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abcd\r\n";
        let warning = offer_warning(srtp.as_bytes()).expect("refused");
        assert!(warning.starts_with("302 switchboard \""), "{warning}");
        assert!(warning.contains("RTP/SAVP"), "{warning}");
        assert_eq!(offer_warning(sdp("0", "").to_string().as_bytes()), None);
        assert_eq!(offer_warning(b""), None, "a delayed offer is not a refusal");
        assert!(offer_warning(b"garbage").is_some_and(|w| w.starts_with("399 ")));
    }

    #[test]
    fn server_offer_is_plain_g711_g722_and_dtmf() {
        let offer = server_offer();
        let kinds: Vec<_> = offer.codecs().iter().map(|c| c.encoding.clone()).collect();
        assert_eq!(kinds, ["PCMU", "PCMA", "G722", "telephone-event"]);
        let mut leg = LegOrigin::new("switchboard", 9, ip());
        let text = String::from_utf8(leg.write(&offer, ip(), 30000)).expect("utf-8");
        assert!(text.starts_with("v=0\r\no=switchboard 9 9 IN IP4 203.0.113.7\r\n"));
        assert!(text.contains("m=audio 30000 RTP/AVP 0 8 9 101\r\n"));
    }
}
