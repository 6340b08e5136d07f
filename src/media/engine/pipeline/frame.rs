//! The 20 ms frame tick: decode what each party says, feed the recorder taps, the conference
//! room and silence detection, and build and send what each party hears when we generate it
//! (transcoded audio, prompts, tones, digits, the room's mix).

use super::*;

impl Pipeline {
    /// One 20 ms frame.
    pub(super) fn tick(&mut self, now: Instant) {
        let n = frame_len(self.rate);
        // 1. What each party said.
        for i in 0..2 {
            let needs = self.needs_audio(self.legs[i].leg);
            let l = &mut self.legs[i];
            l.heard.clear();
            if needs && l.media.is_some() {
                l.decode_frame(now, n);
            }
            l.heard.resize(n, 0);
            if let Some(w) = &mut l.silence {
                w.quiet = if is_quiet(&l.heard) {
                    w.quiet + FRAME
                } else {
                    Duration::ZERO
                };
                if w.quiet >= w.after {
                    l.silence = None;
                    self.events.push_back(MediaEvent::Silence { leg: l.leg });
                }
            }
            let digit = l.detector.as_mut().and_then(|d| d.process(&l.heard));
            if l.muted {
                l.heard.fill(0);
            }
            if let Some(digit) = digit {
                let leg = l.leg;
                self.on_digit_in(now, leg, digit, DigitSource::Inband);
            }
        }
        // 2. The conference: push what the party said, take the mix of the others.
        if let Some((room, id, leg)) = &self.room {
            room.exchange(
                now,
                *id,
                &self.legs[leg.index()].heard,
                &mut self.room_out,
                n,
            );
        }
        // 3. The recording: caller left, the other party (or the caller's room) right.
        // With the callee in the room (an attended transfer's consultation), the right channel
        // is the consultation: the callee and the room mixed.
        let room_leg = self.room_leg();
        if room_leg == Some(Leg::B) && self.recording.is_some() {
            self.mix.clear();
            self.mix.extend(
                self.legs[1]
                    .heard
                    .iter()
                    .zip(&self.room_out)
                    .map(|(a, b)| a.saturating_add(*b)),
            );
        }
        if let Some(tap) = &mut self.recording {
            let right = match room_leg {
                Some(Leg::A) => &self.room_out,
                Some(Leg::B) => &self.mix,
                None => &self.legs[1].heard,
            };
            tap.write(&self.legs[0].heard, right);
        }
        // 4. What each party hears, where we generate it.
        for i in 0..2 {
            self.output_frame(now, i, n);
        }
    }

    /// Builds and sends what the party on leg `i` hears this frame, if we generate it.
    pub(super) fn output_frame(&mut self, now: Instant, i: usize, n: usize) {
        let (this, other) = if i == 0 {
            let (a, b) = self.legs.split_at_mut(1);
            (&mut a[0], &b[0])
        } else {
            let (a, b) = self.legs.split_at_mut(1);
            (&mut b[0], &a[0])
        };
        let Some(media) = this.media else {
            return;
        };
        // RFC 4733 events take the stream while they last.
        if let Some(sender) = &mut this.dtmf_out
            && let Some(ev) = sender.poll_packet()
        {
            let step = media.codec.rtp_timestamp_step();
            let mut header = this
                .rtp
                .next_header(now, ev.payload_type, ev.marker, step, 4);
            header.timestamp = ev.rtp_timestamp(header.timestamp);
            let mut bytes = self.spare.pop().unwrap_or_default();
            header.write(&ev.payload, &mut bytes);
            self.transmits.push_back(Transmit {
                leg: this.leg,
                rtcp: false,
                bytes,
            });
            return;
        }
        let frame = &mut self.frame;
        frame.clear();
        frame.resize(n, 0);
        let mut generate = false;
        if let Some(p) = &mut this.playing {
            generate = true;
            let more = match &mut p.source {
                Source::Tone(t) => t.next_frame(frame),
                Source::Prompt(pb) => pb.next_frame(frame),
            };
            if !more {
                let id = p.id;
                this.playing = None;
                self.events.push_back(MediaEvent::PlaybackFinished {
                    leg: this.leg,
                    id,
                    interrupted: false,
                });
            }
        } else if this.held {
            generate = true;
            if let Some(m) = &mut this.moh {
                m.next_frame(frame);
            }
        } else if let Some((_, _, leg)) = &self.room {
            // The party in the room hears its mix; the other one nothing (it is held).
            if leg.index() == i {
                generate = true;
                frame.copy_from_slice(&self.room_out[..n]);
            }
        } else if self.transcoding || other.muted {
            // A muted party's `heard` is silence.
            generate = true;
            frame.copy_from_slice(&other.heard[..n]);
        }
        if this.inband_tone.is_none()
            && let Some((digit, duration)) = this.inband_out.pop_front()
        {
            this.inband_tone = Some(ToneGenerator::new(digit, self.rate, duration));
        }
        if let Some(t) = &mut this.inband_tone {
            generate = true;
            t.fill(frame);
            if t.is_done() {
                this.inband_tone = None;
            }
        }
        if generate {
            let mut bytes = self.spare.pop().unwrap_or_default();
            if this.encode_frame(now, frame, &mut bytes) {
                self.transmits.push_back(Transmit {
                    leg: this.leg,
                    rtcp: false,
                    bytes,
                });
            } else {
                self.spare.push(bytes);
            }
        }
    }
}

impl Tap {
    pub(super) fn recorder_rate(&self) -> u32 {
        self.recorder.sample_rate()
    }

    pub(super) fn write(&mut self, left: &[i16], right: &[i16]) {
        match &mut self.resample {
            None => self.recorder.write_frame(left, right),
            Some([l, r]) => {
                let [cl, cr] = &mut self.channels;
                cl.clear();
                cr.clear();
                l.process(left, cl);
                r.process(right, cr);
                let n = cl.len().min(cr.len());
                self.recorder.write_frame(&cl[..n], &cr[..n]);
            }
        }
    }
}

/// Whether a frame is below [`SILENCE_THRESHOLD_DBFS`] (an empty frame is).
pub(super) fn is_quiet(frame: &[i16]) -> bool {
    let energy: i64 = frame.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
    frame.is_empty() || energy < QUIET_MEAN_SQUARE * frame.len() as i64
}
