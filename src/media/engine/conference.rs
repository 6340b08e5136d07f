//! Conference rooms shared by the pipelines of their parties.
//!
//! A room is the [`mixer::Conference`] behind a mutex. There is no task per room: every
//! party's pipeline, on its own 20 ms tick, pushes what its party said and takes what it
//! hears; the first party to tick in a frame period runs the mix for everyone. Parties tick
//! on different tasks, so what one says reaches the others within a frame or two; the
//! mixer's small per-party queue absorbs the skew. The lock is held for one push, at most one
//! O(N) mix, and one copy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use crate::media::mixer::{Conference, PartyId};

use super::pipeline::FRAME;

/// Every room mixes at this rate; parties resample to it.
pub const ROOM_RATE: u32 = 16_000;

/// One conference room.
pub struct Room {
    name: String,
    inner: Mutex<Inner>,
}

struct Inner {
    mixer: Conference,
    next_mix: Option<Instant>,
    next_id: u64,
}

/// The live rooms by name. A room lives while a party holds it.
#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, Weak<Room>>>,
}

impl Rooms {
    /// The room called `name`, created if nobody is in it.
    pub fn get_or_create(&self, name: &str) -> Arc<Room> {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(room) = rooms.get(name).and_then(Weak::upgrade) {
            return room;
        }
        rooms.retain(|_, r| r.strong_count() > 0);
        let room = Arc::new(Room {
            name: name.to_owned(),
            inner: Mutex::new(Inner {
                mixer: Conference::new(ROOM_RATE).expect("ROOM_RATE is a supported mixer rate"),
                next_mix: None,
                next_id: 1,
            }),
        });
        rooms.insert(name.to_owned(), Arc::downgrade(&room));
        room
    }
}

impl Room {
    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a party; the others hear the join tone.
    pub fn join(&self) -> PartyId {
        let mut inner = self.lock();
        let id = PartyId(inner.next_id);
        inner.next_id += 1;
        if let Err(error) = inner.mixer.join(id) {
            tracing::warn!(%error, room = %self.name, "cannot join the room");
        }
        id
    }

    /// Removes a party; the others hear the leave tone.
    pub fn leave(&self, id: PartyId) {
        let _ = self.lock().mixer.leave(id);
    }

    /// Mutes a party (nobody hears it).
    pub fn set_muted(&self, id: PartyId, muted: bool) {
        let _ = self.lock().mixer.set_muted(id, muted);
    }

    /// Deafens a party (it hears nothing).
    pub fn set_deaf(&self, id: PartyId, deaf: bool) {
        let _ = self.lock().mixer.set_deaf(id, deaf);
    }

    /// Number of parties.
    pub fn len(&self) -> usize {
        self.lock().mixer.len()
    }

    /// Whether the room is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One frame of party `id`: pushes what it said (at [`ROOM_RATE`]), mixes if this is the
    /// first party in this frame period, and copies what it hears into `out` (`n` samples).
    pub fn exchange(&self, now: Instant, id: PartyId, said: &[i16], out: &mut Vec<i16>, n: usize) {
        let mut inner = self.lock();
        if inner.mixer.push(id, said).is_err() {
            tracing::trace!(room = %self.name, "frame not pushed");
        }
        if inner.next_mix.is_none_or(|t| now >= t) {
            inner.mixer.mix();
            let next = inner.next_mix.map_or(now, |t| t.max(now - FRAME)) + FRAME;
            inner.next_mix = Some(next);
        }
        out.clear();
        out.extend_from_slice(inner.mixer.output(id).unwrap_or_default());
        out.resize(n, 0);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Mixer methods do not panic on valid ids; a poisoned lock still holds a usable mixer.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
