//! DTMF through the pipeline: digits received on a leg (RFC 4733 events, SIP INFO, in-band) are
//! reported once, stop a barge-in prompt, and cross to the other leg in the form it negotiated
//! (RFC 4733 events, or in-band tones).

use super::*;

impl Pipeline {
    pub(super) fn on_digit_in(
        &mut self,
        now: Instant,
        leg: Leg,
        digit: Digit,
        source: DigitSource,
    ) {
        self.events
            .push_back(MediaEvent::Digit { leg, digit, source });
        self.barge_in(leg);
        if self.room.is_some() {
            return;
        }
        let transcoding = self.transcoding;
        let Some(media) = self.legs[leg.other().index()].media else {
            return;
        };
        let relayed_as_event = source == DigitSource::Rfc4733
            && media.telephone_event.is_some()
            && (!transcoding || media.codec.rtp_clock_rate() == 8000);
        if !relayed_as_event {
            self.send_digit(leg.other(), digit, DEFAULT_DIGIT);
        }
        self.update_clock(now);
    }

    /// A digit from `leg` stops a barge-in playback to that same party.
    pub(super) fn barge_in(&mut self, leg: Leg) {
        if self.legs[leg.index()]
            .playing
            .as_ref()
            .is_some_and(|p| p.barge_in)
        {
            self.stop_playback(leg, true);
        }
    }

    pub(super) fn send_digit(&mut self, leg: Leg, digit: Digit, duration: Duration) {
        let l = &mut self.legs[leg.index()];
        match &mut l.dtmf_out {
            Some(sender) => {
                if let Err(error) = sender.queue(digit, duration) {
                    tracing::info!(%error, "digit not sent");
                }
            }
            None if l.media.is_some() => l.inband_out.push_back((digit, duration)),
            None => {}
        }
    }
}
