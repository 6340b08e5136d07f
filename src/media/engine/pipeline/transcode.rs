//! Transcoding and per-leg audio (RFC 3550 §5 timing, RFC 3551 codec rates): deciding after a
//! media change whether the legs are relayed or transcoded and at which pipeline rate, and one
//! leg's state: its RTP session, and the jitter buffer, decoder, encoder and resamplers created
//! only when something needs its audio.

use super::*;

impl Pipeline {
    /// Rebuilds codecs, resamplers and the transcoding decision after a media change.
    pub(super) fn reconfigure(&mut self) {
        let (a, b) = (self.legs[0].media, self.legs[1].media);
        self.transcoding = matches!((a, b), (Some(a), Some(b)) if a.codec != b.codec);
        // Opus runs at whatever rate the pipeline does. Against a G.711 leg nothing above
        // 4 kHz can cross either way, so the pipeline stays at 8 kHz: no resampling, and
        // narrowband Opus is cheaper to encode and decode than wideband (PCMU<->Opus frame:
        // 127 µs instead of 169 µs, `cargo bench --bench media_pipeline`). Prompts and music
        // on hold played to the Opus party during such a call are narrowband too. G.722 is
        // wideband whatever the other leg is.
        let is =
            |m: Option<LegMedia>, kinds: &[CodecKind]| m.is_some_and(|m| kinds.contains(&m.codec));
        let narrow = is(a, &[CodecKind::Pcmu, CodecKind::Pcma])
            || is(b, &[CodecKind::Pcmu, CodecKind::Pcma]);
        let wide = is(a, &[CodecKind::G722])
            || is(b, &[CodecKind::G722])
            || (!narrow && (is(a, &[CodecKind::Opus]) || is(b, &[CodecKind::Opus])));
        self.rate = if self.room.is_some() {
            ROOM_RATE
        } else if wide {
            16_000
        } else {
            8000
        };
        let (rate, jitter, inband) = (self.rate, &self.config.jitter, self.config.inband_dtmf);
        for l in &mut self.legs {
            l.configure(rate, jitter, inband);
        }
        if let Some(tap) = &mut self.recording {
            let to = tap.recorder_rate();
            tap.resample = (to != rate)
                .then(|| {
                    Some([
                        Resampler::new(rate, to).ok()?,
                        Resampler::new(rate, to).ok()?,
                    ])
                })
                .flatten();
        }
        for leg in [Leg::A, Leg::B] {
            if self.legs[leg.index()].held {
                self.start_moh(leg);
            }
        }
    }
}

impl LegState {
    pub(super) fn new(leg: Leg, now: Instant) -> Self {
        let ssrc = Ssrc(rand::random());
        let cname = format!("switchboard-{:08x}", ssrc.0);
        let mut config = SessionConfig::new(ssrc, cname, rand::random());
        config.ntp_at_start = rtp::NtpTime::from_unix(crate::clock::unix_duration());
        Self {
            leg,
            media: None,
            rtp: RtpSession::new(now, config),
            dtmf_in: EventReceiver::new(8000),
            dtmf_out: None,
            inband_out: VecDeque::new(),
            inband_tone: None,
            detector: None,
            jitter: None,
            decoder: None,
            encoder: None,
            rate: 8000,
            jitter_config: JitterConfig::default(),
            up: None,
            down: None,
            playing: None,
            held: false,
            muted: false,
            moh: None,
            silence: None,
            // Scratch buffers grow on first use: a relayed call never touches them.
            heard: Vec::new(),
            pending: VecDeque::new(),
            pcm: Vec::new(),
            resampled: Vec::new(),
            payload: Vec::new(),
        }
    }

    pub(super) fn set_media(&mut self, media: Option<LegMedia>) {
        if self.media.map(|m| m.codec) != media.map(|m| m.codec) {
            self.decoder = None;
            self.encoder = None;
            self.jitter = None;
        }
        self.media = media;
        let Some(m) = media else {
            self.dtmf_out = None;
            return;
        };
        let clock = m.codec.rtp_clock_rate();
        self.rtp.set_clock_rate(clock);
        self.rtp.set_event_payload_type(m.telephone_event);
        self.rtp.set_codec(match m.codec {
            CodecKind::Pcmu | CodecKind::Pcma => rtp::Codec::G711,
            CodecKind::G722 => rtp::Codec::G722,
            CodecKind::Opus => rtp::Codec::Opus,
        });
        self.dtmf_in = EventReceiver::new(clock);
        self.dtmf_out = m.telephone_event.map(|pt| EventSender::new(pt, clock));
    }

    /// Settles what this leg needs at pipeline rate `rate`. Codecs, resamplers and the
    /// jitter buffer are created on first use ([`Self::ensure_decoding`],
    /// [`Self::ensure_encoding`]): a relayed call never pays for them.
    pub(super) fn configure(&mut self, rate: u32, jitter: &JitterConfig, inband: bool) {
        let Some(m) = self.media else {
            return;
        };
        if self.rate != rate {
            self.decoder = None;
            self.encoder = None;
            self.up = None;
            self.down = None;
        }
        self.rate = rate;
        self.jitter_config = *jitter;
        // In-band digits are a narrowband trunk habit; decoding every Opus or G.722 frame of
        // a leg just to listen for them would cost more than it finds.
        let narrowband = matches!(m.codec, CodecKind::Pcmu | CodecKind::Pcma);
        self.detector =
            (inband && narrowband && m.telephone_event.is_none()).then(|| DtmfDetector::new(rate));
        self.pending.clear();
    }

    /// The jitter buffer, decoder and resampler to the pipeline rate.
    pub(super) fn ensure_decoding(&mut self) {
        let Some(m) = self.media else {
            return;
        };
        let codec_rate = codec_pcm_rate(m.codec, self.rate);
        if self.decoder.is_none() {
            self.decoder = codec::decoder(m.codec, codec_rate)
                .inspect_err(|error| tracing::error!(%error, "no decoder"))
                .ok();
            self.up = (codec_rate != self.rate)
                .then(|| Resampler::new(codec_rate, self.rate).ok())
                .flatten();
        }
        if self.jitter.is_none() {
            self.jitter = Some(JitterBuffer::new(
                self.jitter_config,
                m.codec.rtp_clock_rate(),
                m.codec.rtp_timestamp_step(),
            ));
        }
    }

    /// The encoder and resampler from the pipeline rate.
    pub(super) fn ensure_encoding(&mut self) {
        let Some(m) = self.media else {
            return;
        };
        if self.encoder.is_none() {
            let codec_rate = codec_pcm_rate(m.codec, self.rate);
            self.encoder = codec::encoder(m.codec, codec_rate)
                .inspect_err(|error| tracing::error!(%error, "no encoder"))
                .ok();
            self.down = (codec_rate != self.rate)
                .then(|| Resampler::new(self.rate, codec_rate).ok())
                .flatten();
        }
    }

    /// We are sending something of our own to this party instead of relayed packets.
    pub(super) fn is_generating(&self) -> bool {
        self.playing.is_some()
            || self.held
            || self.dtmf_out.as_ref().is_some_and(|s| s.is_active())
            || self.inband_tone.is_some()
            || !self.inband_out.is_empty()
    }

    /// Pulls one frame of this party's audio, at the pipeline rate, into `heard`.
    pub(super) fn decode_frame(&mut self, now: Instant, n: usize) {
        self.ensure_decoding();
        let (Some(j), Some(dec)) = (&mut self.jitter, &mut self.decoder) else {
            return;
        };
        while self.pending.len() < n {
            self.pcm.clear();
            match j.pop(now) {
                Pop::Packet { payload, .. } => {
                    if dec.decode(payload, &mut self.pcm).is_err() {
                        dec.conceal(frame_len(dec.pcm_rate()), &mut self.pcm);
                    }
                }
                Pop::Missing => dec.conceal(frame_len(dec.pcm_rate()), &mut self.pcm),
                Pop::Empty => break,
            }
            match &mut self.up {
                Some(up) => {
                    self.resampled.clear();
                    up.process(&self.pcm, &mut self.resampled);
                    self.pending.extend(self.resampled.iter().copied());
                }
                None => self.pending.extend(self.pcm.iter().copied()),
            }
        }
        // Copied as slices: extending a Vec from `drain(..)` goes sample by sample.
        let take = n.min(self.pending.len());
        let (front, back) = self.pending.as_slices();
        let from_front = take.min(front.len());
        self.heard.extend_from_slice(&front[..from_front]);
        self.heard.extend_from_slice(&back[..take - from_front]);
        if take == self.pending.len() {
            self.pending.clear();
        } else {
            self.pending.drain(..take);
        }
    }

    /// Encodes one frame at the pipeline rate into an RTP packet for this leg, written to
    /// `out` (empty); false when there is nothing to send.
    pub(super) fn encode_frame(&mut self, now: Instant, frame: &[i16], out: &mut Vec<u8>) -> bool {
        self.ensure_encoding();
        let (Some(media), Some(enc)) = (self.media, self.encoder.as_mut()) else {
            return false;
        };
        let want = frame_len(enc.pcm_rate());
        let input: &[i16] = match &mut self.down {
            Some(down) => {
                self.resampled.clear();
                down.process(frame, &mut self.resampled);
                self.resampled.resize(want, 0);
                &self.resampled
            }
            None => frame,
        };
        self.payload.clear();
        if let Err(error) = enc.encode(input, &mut self.payload) {
            tracing::debug!(%error, "encode failed");
            return false;
        }
        let step = media.codec.rtp_timestamp_step();
        let header = self
            .rtp
            .next_header(now, media.payload_type, false, step, self.payload.len());
        header.write(&self.payload, out);
        true
    }
}

/// The PCM rate a codec instance works at inside a pipeline running at `rate`.
fn codec_pcm_rate(codec: CodecKind, rate: u32) -> u32 {
    match codec {
        CodecKind::Pcmu | CodecKind::Pcma => 8000,
        CodecKind::G722 => 16_000,
        // libopus decodes and encodes at the rate we ask: no resampler needed.
        CodecKind::Opus => rate,
    }
}
