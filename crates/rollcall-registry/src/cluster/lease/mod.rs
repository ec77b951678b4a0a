//! The lease's rules as a step function on tokio's clock: when to renew,
//! when the lease may have lapsed, when to join again. No I/O: the lease loop
//! in [`super::Replica`] asks [`Lease::next`] what to do, does it against
//! etcd, and reports back; tests drive it under paused time.
//!
//! The one rule that keeps a replica from acting on a share another owns: it
//! acts only until TTL after it *asked* for its lease or last renewal (etcd
//! counts the TTL from when it received the request, which is later), and a
//! renewal that comes back after that time does not make the gap acted on.

use std::time::Duration;

use tokio::time::Instant;

/// How long a failed join waits before the next.
pub const JOIN_RETRY: Duration = Duration::from_millis(500);

/// What the lease loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Take a new lease (and report [`Lease::joined`] or
    /// [`Lease::join_failed`]).
    Join,
    /// Nothing until this much time has passed.
    Wait(Duration),
    /// Renew this lease (and report [`Lease::renewed`] or
    /// [`Lease::renewal_failed`]).
    Renew(i64),
    /// The lease may be gone, and the others may own this replica's share
    /// already: stop acting and writing at once; join again next.
    Lapsed(i64),
}

#[derive(Debug, Clone, Copy)]
struct Held {
    id: i64,
    /// Until when the lease surely holds.
    valid_until: Instant,
    next_renewal: Instant,
}

/// One replica's lease.
#[derive(Debug)]
pub struct Lease {
    ttl: Duration,
    held: Option<Held>,
    /// When the next join may be tried (after a failed one).
    join_at: Option<Instant>,
    join_failures: u32,
}

impl Lease {
    /// A replica that holds no lease yet.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            held: None,
            join_at: None,
            join_failures: 0,
        }
    }

    /// Renewals are asked for every third of the TTL: two may fail before
    /// the lease lapses.
    fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// What to do at `now`.
    pub fn next(&mut self, now: Instant) -> Next {
        match self.held {
            None => match self.join_at {
                Some(at) if now < at => Next::Wait(at - now),
                _ => Next::Join,
            },
            Some(held) if now >= held.valid_until => {
                self.held = None;
                Next::Lapsed(held.id)
            }
            // Woken at the lapse if that comes before the renewal (after a
            // failed one), so the replica stops acting on time.
            Some(held) if now < held.next_renewal => {
                Next::Wait(held.next_renewal.min(held.valid_until) - now)
            }
            Some(held) => Next::Renew(held.id),
        }
    }

    /// A lease `id` was granted (and the membership key put on it) for a
    /// request sent at `asked`.
    pub fn joined(&mut self, id: i64, asked: Instant) {
        self.held = Some(Held {
            id,
            valid_until: asked + self.ttl,
            next_renewal: asked + self.renew_every(),
        });
        self.join_at = None;
        self.join_failures = 0;
    }

    /// A join failed at `now`; whether to say so (the first time, then every
    /// 20th, so a long outage is not a warning every half second).
    pub fn join_failed(&mut self, now: Instant) -> bool {
        self.join_failures += 1;
        self.join_at = Some(now + JOIN_RETRY);
        self.join_failures == 1 || self.join_failures.is_multiple_of(20)
    }

    /// A renewal sent at `asked` was answered: the lease holds until TTL
    /// after that.
    pub fn renewed(&mut self, asked: Instant) {
        let ttl = self.ttl;
        let every = self.renew_every();
        if let Some(held) = &mut self.held {
            held.valid_until = held.valid_until.max(asked + ttl);
            held.next_renewal = asked + every;
        }
    }

    /// A renewal failed at `now`. `refused`: etcd said the lease is gone, so
    /// it lapses now; otherwise (etcd did not answer) it is tried again a
    /// third of the TTL later, and lapses when its time is up.
    pub fn renewal_failed(&mut self, now: Instant, refused: bool) {
        let every = self.renew_every();
        if let Some(held) = &mut self.held {
            if refused {
                held.valid_until = now;
            }
            held.next_renewal = now + every;
        }
    }

    /// The lease this replica's writes are fenced on, if it holds one.
    pub fn id(&self) -> Option<i64> {
        self.held.map(|h| h.id)
    }

    /// Until when this replica may act on what it owns (`None`: it holds no
    /// lease, so it may not).
    pub fn valid_until(&self) -> Option<Instant> {
        self.held.map(|h| h.valid_until)
    }

    /// Whether it may act at `now`.
    pub fn may_act(&self, now: Instant) -> bool {
        self.valid_until().is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests;
