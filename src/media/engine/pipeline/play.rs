//! What we play to a leg instead of what the other party says: prompts, tones and silence
//! (resampled once when queued), and music on hold while the leg is held.

use super::*;

impl Pipeline {
    pub(super) fn start_moh(&mut self, leg: Leg) {
        let pcm = self
            .config
            .music_on_hold
            .as_ref()
            .map(|m| if self.rate == 8000 { &m[0] } else { &m[1] });
        self.legs[leg.index()].moh = pcm.map(|pcm| Playback::looped(Arc::clone(pcm)));
    }

    pub(super) fn play(&mut self, leg: Leg, id: u64, source: PlaySource, barge_in: bool) {
        let rate = self.rate;
        let source = match source {
            PlaySource::Tone(kind) => match ToneSource::new(kind, self.config.tone_region, rate) {
                Ok(t) => Source::Tone(t),
                Err(error) => {
                    tracing::warn!(%error, "tone not playable");
                    self.events.push_back(MediaEvent::PlaybackFinished {
                        leg,
                        id,
                        interrupted: true,
                    });
                    return;
                }
            },
            PlaySource::Prompt {
                pcm,
                rate: r,
                looped,
            } => {
                let pcm = resample_whole(&pcm, r, rate);
                Source::Prompt(if looped {
                    Playback::looped(pcm)
                } else {
                    Playback::new(pcm)
                })
            }
        };
        let old = self.legs[leg.index()].playing.replace(Playing {
            id,
            barge_in,
            source,
        });
        if let Some(old) = old {
            self.events.push_back(MediaEvent::PlaybackFinished {
                leg,
                id: old.id,
                interrupted: true,
            });
        }
    }

    pub(super) fn stop_playback(&mut self, leg: Leg, interrupted: bool) {
        if let Some(p) = self.legs[leg.index()].playing.take() {
            self.events.push_back(MediaEvent::PlaybackFinished {
                leg,
                id: p.id,
                interrupted,
            });
        }
    }
}

/// Resamples a whole prompt once when it is queued.
fn resample_whole(pcm: &Arc<[i16]>, from: u32, to: u32) -> Arc<[i16]> {
    if from == to {
        return Arc::clone(pcm);
    }
    match crate::media::resample::resample_block(from, to, pcm) {
        Ok(out) => Arc::from(out),
        Err(error) => {
            tracing::warn!(%error, "prompt not resampled");
            Arc::clone(pcm)
        }
    }
}
