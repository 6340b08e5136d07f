//! A tiny deterministic PRNG (xorshift64) for the media tests' synthetic streams: seeded, so
//! every run sees the same jitter, loss and lateness.

pub(crate) struct XorShift(pub u64);

impl XorShift {
    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n` (slightly biased; fine for tests).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `p` times in 100.
    pub(crate) fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}
