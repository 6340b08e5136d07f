//! Conference mixing (SANS-IO): the arithmetic of a conference room, one 20 ms tick at a time.
//!
//! A [`Conference`] holds its parties at one sample rate. Each tick the driver
//! [`push`](Conference::push)es the decoded frame of every party that has audio, calls
//! [`mix`](Conference::mix) once, and reads each party's [`output`](Conference::output):
//!
//! * every party hears the sum of all *other* unmuted parties ("N − 1" mix): the sum of all
//!   contributions is formed once in `i32`, and each party's own contribution is subtracted
//!   from it, so a tick costs O(N × frame), not O(N²);
//! * the result passes a soft limiter (linear up to −2.5 dBFS, then a smooth knee that
//!   approaches but never reaches full scale), so overload compresses instead of wrapping;
//! * muted parties are heard by nobody; deaf parties hear silence (but are heard);
//! * a party that pushed nothing this tick contributes silence (counted as `missing`);
//! * parties are driven by different tasks, so each has an inbound queue of
//!   [`INBOUND_FRAMES`] frames: a push more than that ahead of the mix drops the oldest
//!   frame (counted as `dropped`);
//! * joining and leaving play the [`ToneKind::Join`] / [`ToneKind::Leave`] chime to the
//!   parties that were already there (the newcomer does not hear its own join chime).
//!
//! No allocation per tick: every buffer is sized at join time. Time is the tick count.
//! Cost (release, 2-core test VM, `fifty_party_mix_cost`): 50 parties, push + mix, 6.6 µs per
//! tick at 8 kHz, 12 µs at 16 kHz, 33 µs at 48 kHz with speech levels; 3.5–4× that when every
//! sample overloads and goes through the limiter's knee.

use std::collections::HashMap;

use thiserror::Error;

use super::frame_len;
use super::tone::{ToneError, ToneKind, ToneRegion, ToneSource};

/// Frames a party may push ahead of the mix before the oldest is dropped.
pub const INBOUND_FRAMES: usize = 3;

/// Limiter knee: samples up to this magnitude pass unchanged (−2.5 dBFS).
const KNEE: i32 = 24_576;
/// Headroom above the knee, approached asymptotically.
const HEADROOM: i64 = 32_767 - KNEE as i64;

/// Errors of this module.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MixerError {
    /// The conference rate cannot carry its tones (8–48 kHz).
    #[error("conference rate: {0}")]
    Rate(#[from] ToneError),
    /// No such party in this conference.
    #[error("party {0:?} is not in the conference")]
    UnknownParty(PartyId),
    /// The party is already in.
    #[error("party {0:?} already joined")]
    AlreadyJoined(PartyId),
    /// A pushed frame of the wrong length.
    #[error("frame of {got} samples, the conference takes {expected}")]
    FrameLength {
        /// Samples per frame at the conference rate.
        expected: usize,
        /// Samples pushed.
        got: usize,
    },
}

/// Identifies a party (a leg) in a conference; chosen by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartyId(pub u64);

/// Counters of one party.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartyStats {
    /// Frames dropped because the party pushed more than [`INBOUND_FRAMES`] ahead.
    pub dropped: u64,
    /// Ticks in which the party had no frame (mixed as silence).
    pub missing: u64,
}

#[derive(Debug)]
struct Party {
    id: PartyId,
    muted: bool,
    deaf: bool,
    /// Join order: the party hears chimes of later events only.
    seq: u64,
    /// Ring of [`INBOUND_FRAMES`] frames.
    inbound: Box<[i16]>,
    head: usize,
    queued: usize,
    /// This tick's contribution.
    current: Box<[i16]>,
    out: Box<[i16]>,
    stats: PartyStats,
}

/// A join or leave chime being played.
#[derive(Debug)]
struct Chime {
    tone: ToneSource,
    /// Parties with `seq` below this hear it.
    seq: u64,
    frame: Box<[i16]>,
}

/// One conference room.
#[derive(Debug)]
pub struct Conference {
    rate: u32,
    frame_len: usize,
    parties: Vec<Party>,
    index: HashMap<PartyId, usize>,
    chimes: Vec<Chime>,
    chimes_on: bool,
    next_seq: u64,
    /// Sum of every unmuted contribution and every chime.
    total: Box<[i32]>,
    /// `total`, limited: what a recorder of the whole room takes.
    room: Box<[i16]>,
    ticks: u64,
}

impl Conference {
    /// An empty conference at `rate` Hz (8 000 to 48 000).
    pub fn new(rate: u32) -> Result<Self, MixerError> {
        // Check the rate once here so chimes never fail later.
        ToneSource::new(ToneKind::Join, ToneRegion::default(), rate)?;
        let n = frame_len(rate);
        Ok(Self {
            rate,
            frame_len: n,
            parties: Vec::new(),
            index: HashMap::new(),
            chimes: Vec::new(),
            chimes_on: true,
            next_seq: 0,
            total: vec![0; n].into_boxed_slice(),
            room: vec![0; n].into_boxed_slice(),
            ticks: 0,
        })
    }

    /// The conference's sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Samples per frame.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Number of parties.
    pub fn len(&self) -> usize {
        self.parties.len()
    }

    /// True with nobody in.
    pub fn is_empty(&self) -> bool {
        self.parties.is_empty()
    }

    /// Ticks mixed so far.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Whether joins and leaves play their chimes (default on).
    pub fn set_chimes(&mut self, on: bool) {
        self.chimes_on = on;
        if !on {
            self.chimes.clear();
        }
    }

    /// Adds `id`, unmuted and hearing; the others hear the join chime.
    pub fn join(&mut self, id: PartyId) -> Result<(), MixerError> {
        if self.index.contains_key(&id) {
            return Err(MixerError::AlreadyJoined(id));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let n = self.frame_len;
        self.index.insert(id, self.parties.len());
        self.parties.push(Party {
            id,
            muted: false,
            deaf: false,
            seq,
            inbound: vec![0; n * INBOUND_FRAMES].into_boxed_slice(),
            head: 0,
            queued: 0,
            current: vec![0; n].into_boxed_slice(),
            out: vec![0; n].into_boxed_slice(),
            stats: PartyStats::default(),
        });
        self.chime(ToneKind::Join, seq);
        Ok(())
    }

    /// Removes `id`; the others hear the leave chime. Returns its counters.
    pub fn leave(&mut self, id: PartyId) -> Result<PartyStats, MixerError> {
        let slot = self.index.remove(&id).ok_or(MixerError::UnknownParty(id))?;
        let party = self.parties.swap_remove(slot);
        if let Some(moved) = self.parties.get(slot) {
            self.index.insert(moved.id, slot);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.chime(ToneKind::Leave, seq);
        Ok(party.stats)
    }

    fn chime(&mut self, kind: ToneKind, seq: u64) {
        if !self.chimes_on {
            return;
        }
        if let Ok(tone) = ToneSource::new(kind, ToneRegion::default(), self.rate) {
            self.chimes.push(Chime {
                tone,
                seq,
                frame: vec![0; self.frame_len].into_boxed_slice(),
            });
        }
    }

    fn party_mut(&mut self, id: PartyId) -> Result<&mut Party, MixerError> {
        let slot = *self.index.get(&id).ok_or(MixerError::UnknownParty(id))?;
        Ok(&mut self.parties[slot])
    }

    fn party(&self, id: PartyId) -> Option<&Party> {
        self.index.get(&id).map(|&slot| &self.parties[slot])
    }

    /// Mutes or unmutes `id` (a muted party is heard by nobody).
    pub fn set_muted(&mut self, id: PartyId, muted: bool) -> Result<(), MixerError> {
        self.party_mut(id)?.muted = muted;
        Ok(())
    }

    /// Makes `id` deaf or hearing (a deaf party hears silence).
    pub fn set_deaf(&mut self, id: PartyId, deaf: bool) -> Result<(), MixerError> {
        self.party_mut(id)?.deaf = deaf;
        Ok(())
    }

    /// Whether `id` is muted.
    pub fn is_muted(&self, id: PartyId) -> Option<bool> {
        self.party(id).map(|p| p.muted)
    }

    /// Whether `id` is deaf.
    pub fn is_deaf(&self, id: PartyId) -> Option<bool> {
        self.party(id).map(|p| p.deaf)
    }

    /// Counters of `id`.
    pub fn stats(&self, id: PartyId) -> Option<PartyStats> {
        self.party(id).map(|p| p.stats)
    }

    /// Queues `id`'s next frame (exactly [`frame_len`](Self::frame_len) samples) for the
    /// mix. With [`INBOUND_FRAMES`] already queued, the oldest is dropped.
    pub fn push(&mut self, id: PartyId, frame: &[i16]) -> Result<(), MixerError> {
        let n = self.frame_len;
        if frame.len() != n {
            return Err(MixerError::FrameLength {
                expected: n,
                got: frame.len(),
            });
        }
        let p = self.party_mut(id)?;
        if p.queued == INBOUND_FRAMES {
            p.head = (p.head + 1) % INBOUND_FRAMES;
            p.queued -= 1;
            p.stats.dropped += 1;
        }
        let at = (p.head + p.queued) % INBOUND_FRAMES;
        p.inbound[at * n..(at + 1) * n].copy_from_slice(frame);
        p.queued += 1;
        Ok(())
    }

    /// Mixes one tick: takes one queued frame per party (silence if none) and computes every
    /// party's output.
    pub fn mix(&mut self) {
        let n = self.frame_len;
        self.ticks += 1;
        self.total.fill(0);
        for p in &mut self.parties {
            if p.queued > 0 {
                let at = p.head;
                p.current.copy_from_slice(&p.inbound[at * n..(at + 1) * n]);
                p.head = (p.head + 1) % INBOUND_FRAMES;
                p.queued -= 1;
            } else {
                p.current.fill(0);
                p.stats.missing += 1;
            }
            if !p.muted {
                for (t, &s) in self.total.iter_mut().zip(p.current.iter()) {
                    *t += i32::from(s);
                }
            }
        }
        for c in &mut self.chimes {
            c.tone.next_frame(&mut c.frame);
            for (t, &s) in self.total.iter_mut().zip(c.frame.iter()) {
                *t += i32::from(s);
            }
        }
        for (r, &t) in self.room.iter_mut().zip(self.total.iter()) {
            *r = limit(t);
        }
        for p in &mut self.parties {
            if p.deaf {
                p.out.fill(0);
                continue;
            }
            let own = !p.muted;
            // Chimes this party must not hear: its own join, and events from before it came.
            if self.chimes.iter().any(|c| c.seq <= p.seq) {
                // Rare (a chime's first quarter second): the general path.
                for (i, o) in p.out.iter_mut().enumerate() {
                    let mut v = self.total[i];
                    if own {
                        v -= i32::from(p.current[i]);
                    }
                    for c in self.chimes.iter().filter(|c| c.seq <= p.seq) {
                        v -= i32::from(c.frame[i]);
                    }
                    *o = limit(v);
                }
            } else if own {
                // Fast pass (vectorises): clamp at the knee and note whether anything passed it.
                let mut over = false;
                let mix = p
                    .out
                    .iter_mut()
                    .zip(self.total.iter())
                    .zip(p.current.iter());
                for ((o, &t), &s) in mix {
                    let v = t - i32::from(s);
                    let c = v.clamp(-KNEE, KNEE);
                    over |= c != v;
                    *o = c as i16;
                }
                if over {
                    let mix = p
                        .out
                        .iter_mut()
                        .zip(self.total.iter())
                        .zip(p.current.iter());
                    for ((o, &t), &s) in mix {
                        *o = limit(t - i32::from(s));
                    }
                }
            } else {
                p.out.copy_from_slice(&self.room);
            }
        }
        self.chimes.retain(|c| !c.tone.is_finished());
    }

    /// What `id` hears this tick.
    pub fn output(&self, id: PartyId) -> Option<&[i16]> {
        self.party(id).map(|p| &p.out[..])
    }

    /// The whole room this tick (everyone unmuted, chimes included), for recording.
    pub fn room(&self) -> &[i16] {
        &self.room
    }
}

/// Soft limiter: identity up to [`KNEE`], then `knee + h·d/(d + h)` (slope 1 at the knee,
/// never reaching full scale), symmetric.
#[inline]
fn limit(x: i32) -> i16 {
    let m = x.unsigned_abs() as i64;
    if m <= KNEE as i64 {
        return x as i16;
    }
    let d = m - KNEE as i64;
    let y = (KNEE as i64 + HEADROOM * d / (d + HEADROOM)) as i16;
    if x < 0 { -y } else { y }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::goertzel;
    use std::f64::consts::PI;

    const RATE: u32 = 8000;
    const N: usize = 160;

    /// Amplitude of `freq` in `x`.
    fn amplitude(x: &[i16], freq: f64) -> f64 {
        2.0 * goertzel(x, RATE, freq).sqrt() / x.len() as f64
    }

    struct Talker {
        id: PartyId,
        freq: f64,
        t: usize,
    }

    impl Talker {
        fn frame(&mut self, amp: f64) -> Vec<i16> {
            let f: Vec<i16> = (0..N)
                .map(|i| {
                    let t = (self.t + i) as f64 / f64::from(RATE);
                    (amp * (2.0 * PI * self.freq * t).sin()).round() as i16
                })
                .collect();
            self.t += N;
            f
        }
    }

    fn talkers(c: &mut Conference, freqs: &[f64]) -> Vec<Talker> {
        freqs
            .iter()
            .enumerate()
            .map(|(i, &freq)| {
                let id = PartyId(i as u64 + 1);
                c.join(id).unwrap();
                Talker { id, freq, t: 0 }
            })
            .collect()
    }

    /// Runs `ticks` ticks with every talker talking at `amp`; returns each party's output.
    fn run(c: &mut Conference, ts: &mut [Talker], ticks: usize, amp: f64) -> Vec<Vec<i16>> {
        let mut heard = vec![Vec::new(); ts.len()];
        for _ in 0..ticks {
            for t in ts.iter_mut() {
                let f = t.frame(amp);
                c.push(t.id, &f).unwrap();
            }
            c.mix();
            for (h, t) in heard.iter_mut().zip(ts.iter()) {
                h.extend_from_slice(c.output(t.id).unwrap());
            }
        }
        heard
    }

    const FREQS: [f64; 3] = [500.0, 1100.0, 1700.0];

    #[test]
    fn each_party_hears_the_others_and_not_itself() {
        let mut c = Conference::new(RATE).unwrap();
        c.set_chimes(false);
        let mut ts = talkers(&mut c, &FREQS);
        let heard = run(&mut c, &mut ts, 25, 8000.0);
        for (i, h) in heard.iter().enumerate() {
            for (j, &f) in FREQS.iter().enumerate() {
                let a = amplitude(h, f);
                if i == j {
                    assert!(a < 8000.0 / 100.0, "party {i} hears itself at {a}");
                } else {
                    assert!((a - 8000.0).abs() < 80.0, "party {i} hears {f} Hz at {a}");
                }
            }
        }
    }

    #[test]
    fn a_muted_party_is_heard_by_nobody() {
        let mut c = Conference::new(RATE).unwrap();
        c.set_chimes(false);
        let mut ts = talkers(&mut c, &FREQS);
        c.set_muted(ts[0].id, true).unwrap();
        let heard = run(&mut c, &mut ts, 25, 8000.0);
        for h in &heard[1..] {
            assert!(amplitude(h, FREQS[0]) < 1.0);
        }
        // It still hears the others.
        assert!(amplitude(&heard[0], FREQS[1]) > 7900.0);
        assert!(amplitude(&heard[0], FREQS[2]) > 7900.0);
        assert!(amplitude(c.room(), FREQS[0]) < 1.0);
    }

    #[test]
    fn a_deaf_party_hears_silence_but_is_heard() {
        let mut c = Conference::new(RATE).unwrap();
        c.set_chimes(false);
        let mut ts = talkers(&mut c, &FREQS);
        c.set_deaf(ts[1].id, true).unwrap();
        let heard = run(&mut c, &mut ts, 10, 8000.0);
        assert!(heard[1].iter().all(|&s| s == 0));
        assert!(amplitude(&heard[0], FREQS[1]) > 7900.0);
        assert!(amplitude(&heard[2], FREQS[1]) > 7900.0);
    }

    #[test]
    fn overload_is_limited_without_wrapping() {
        let mut c = Conference::new(RATE).unwrap();
        c.set_chimes(false);
        // Four parties in phase at near full scale: the sum reaches ~±98 000.
        let mut ts = talkers(&mut c, &[400.0; 4]);
        let heard = run(&mut c, &mut ts, 5, 32000.0);
        let reference: Vec<f64> = (0..heard[0].len())
            .map(|i| (2.0 * PI * 400.0 * i as f64 / f64::from(RATE)).sin())
            .collect();
        for h in &heard {
            let peak = h.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!(peak > 30000 && peak < 32767, "peak {peak}");
            for (&s, &r) in h.iter().zip(&reference) {
                // Same sign as the true sum wherever the sum is clearly non-zero.
                if r.abs() > 0.05 {
                    assert_eq!(s > 0, r > 0.0, "wrapped: {s} for {r}");
                }
            }
        }
        // The limiter is monotonic and odd.
        let mut last = i16::MIN;
        for x in (-200_000..200_000).step_by(97) {
            let y = limit(x);
            assert!(y >= last);
            assert_eq!(limit(-x), -y);
            last = y;
        }
        assert_eq!(limit(1000), 1000);
        assert_eq!(limit(KNEE), KNEE as i16);
    }

    #[test]
    fn join_chime_reaches_existing_parties_only() {
        let mut c = Conference::new(RATE).unwrap();
        c.join(PartyId(1)).unwrap();
        c.join(PartyId(2)).unwrap();
        for _ in 0..20 {
            c.mix(); // let the first chimes finish
        }
        c.join(PartyId(3)).unwrap();
        let mut heard = vec![Vec::new(); 3];
        for _ in 0..15 {
            c.mix();
            for (i, h) in heard.iter_mut().enumerate() {
                h.extend_from_slice(c.output(PartyId(i as u64 + 1)).unwrap());
            }
        }
        assert!(amplitude(&heard[0][..800], 523.25) > 1000.0);
        assert!(amplitude(&heard[1][..800], 523.25) > 1000.0);
        assert!(
            heard[2].iter().all(|&s| s == 0),
            "the newcomer heard its own chime"
        );
        // Then it ends.
        c.mix();
        assert!(c.output(PartyId(1)).unwrap().iter().all(|&s| s == 0));
    }

    #[test]
    fn leave_chime_reaches_those_who_stay() {
        let mut c = Conference::new(RATE).unwrap();
        for i in 1..=3 {
            c.join(PartyId(i)).unwrap();
        }
        for _ in 0..20 {
            c.mix();
        }
        c.leave(PartyId(2)).unwrap();
        assert!(c.output(PartyId(2)).is_none());
        let mut heard = Vec::new();
        for _ in 0..5 {
            c.mix();
            heard.extend_from_slice(c.output(PartyId(3)).unwrap());
        }
        assert!(amplitude(&heard, 783.99) > 1000.0);
        // A party joining during the chime does not hear it, nor its own join.
        c.join(PartyId(4)).unwrap();
        c.mix();
        assert!(c.output(PartyId(4)).unwrap().iter().all(|&s| s == 0));
        assert!(c.output(PartyId(1)).unwrap().iter().any(|&s| s != 0));
    }

    #[test]
    fn pushes_ahead_are_queued_and_the_oldest_dropped() {
        let mut c = Conference::new(RATE).unwrap();
        c.set_chimes(false);
        c.join(PartyId(1)).unwrap();
        c.join(PartyId(2)).unwrap();
        for v in 1..=5i16 {
            c.push(PartyId(1), &[v; N]).unwrap();
        }
        assert_eq!(c.stats(PartyId(1)).unwrap().dropped, 2);
        for v in 3..=5 {
            c.mix();
            assert_eq!(c.output(PartyId(2)).unwrap(), &[v; N][..]);
        }
        c.mix();
        assert_eq!(c.output(PartyId(2)).unwrap(), &[0; N][..]);
        assert_eq!(c.stats(PartyId(1)).unwrap().missing, 1);
        assert_eq!(c.stats(PartyId(2)).unwrap().missing, 4);
    }

    #[test]
    fn bad_calls_are_errors_not_panics() {
        let mut c = Conference::new(RATE).unwrap();
        assert_eq!(
            c.push(PartyId(9), &[0; N]),
            Err(MixerError::UnknownParty(PartyId(9)))
        );
        c.join(PartyId(1)).unwrap();
        assert_eq!(
            c.join(PartyId(1)),
            Err(MixerError::AlreadyJoined(PartyId(1)))
        );
        assert_eq!(
            c.push(PartyId(1), &[0; 100]),
            Err(MixerError::FrameLength {
                expected: N,
                got: 100
            })
        );
        assert!(c.set_muted(PartyId(2), true).is_err());
        assert!(c.leave(PartyId(2)).is_err());
        assert!(Conference::new(1000).is_err());
    }

    #[test]
    fn leaving_keeps_the_others_addressable() {
        let mut c = Conference::new(RATE).unwrap();
        c.set_chimes(false);
        for i in 1..=4 {
            c.join(PartyId(i)).unwrap();
        }
        c.leave(PartyId(1)).unwrap();
        c.push(PartyId(4), &[100; N]).unwrap();
        c.mix();
        assert_eq!(c.output(PartyId(2)).unwrap()[0], 100);
        assert_eq!(c.output(PartyId(4)).unwrap()[0], 0);
        assert_eq!(c.len(), 3);
    }

    /// `cargo test --release --lib mixer -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn fifty_party_mix_cost() {
        for rate in [8000, 16000, 48000] {
            let n = frame_len(rate);
            // Speech-level frames (about -24 dBFS peaks), a different one per party; then
            // full-scale ones, where the limiter works on every sample.
            let speech: Vec<Vec<i16>> = (0..50)
                .map(|p| {
                    (0..n)
                        .map(|i| (((i * 37 + p * 101) % 4001) as i16) - 2000)
                        .collect()
                })
                .collect();
            let loud: Vec<Vec<i16>> = (0..50)
                .map(|p| {
                    (0..n)
                        .map(|i| ((i * 37 + p) as i16).wrapping_mul(997))
                        .collect()
                })
                .collect();
            for (label, frames) in [("speech", &speech), ("overload", &loud)] {
                let mut c = Conference::new(rate).unwrap();
                c.set_chimes(false);
                for i in 0..50 {
                    c.join(PartyId(i)).unwrap();
                }
                let ticks = 5000u32;
                let start = std::time::Instant::now();
                for _ in 0..ticks {
                    for (i, frame) in frames.iter().enumerate() {
                        c.push(PartyId(i as u64), std::hint::black_box(frame))
                            .unwrap();
                    }
                    c.mix();
                    std::hint::black_box(c.output(PartyId(7)));
                }
                let ns = start.elapsed().as_nanos() / u128::from(ticks);
                println!("50 parties at {rate} Hz, {label}: {ns} ns per tick (push + mix)");
            }
        }
    }
}
