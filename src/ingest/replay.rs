//! Replay protection: the signatures of recently accepted deliveries, per source.
//!
//! A verified signature is *reserved* while its request is being produced and *remembered*
//! for the tolerance window once Kafka has acknowledged it. A second request with the same
//! signature is refused in either state. If producing fails (503), the reservation is
//! dropped, so the help desk's retry, whether it carries the same signature (Jira re-sends
//! the same body) or a new one (a new timestamp), is accepted.
//!
//! Memory is bounded: at most `capacity` remembered signatures (the oldest is forgotten
//! first when full) plus the reservations of requests in flight, which the server's
//! concurrency limit bounds. Only verified signatures are ever stored, so a client without
//! the secret cannot fill the cache.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A verified signature (an HMAC-SHA256 value).
pub type Mac = [u8; 32];

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Accepted before, within the window: already on the topic.
    Accepted,
    /// Another request with this signature is being produced now.
    InFlight,
}

/// The remembered signatures of one source.
pub struct ReplayCache {
    /// Shared with the reservations, which release themselves on drop.
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    /// Signatures of requests being produced now.
    in_flight: HashSet<Mac>,
    /// Signatures accepted, with when they may be forgotten.
    accepted: HashMap<Mac, Instant>,
    /// The same signatures in the order they were accepted (all expire after the same window,
    /// so this is also expiry order).
    order: VecDeque<(Mac, Instant)>,
    /// How long an accepted signature is remembered.
    window: Duration,
    /// Accepted signatures remembered at most.
    capacity: usize,
    /// Signatures forgotten before their window ended because the cache was full.
    evicted: u64,
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        while let Some(&(mac, until)) = self.order.front() {
            if until > now {
                break;
            }
            self.order.pop_front();
            if self.accepted.get(&mac) == Some(&until) {
                self.accepted.remove(&mac);
            }
        }
    }
}

impl ReplayCache {
    /// Remember accepted signatures for `window`, at most `capacity` of them.
    pub fn new(window: Duration, capacity: usize) -> ReplayCache {
        ReplayCache {
            inner: Arc::new(Mutex::new(Inner {
                in_flight: HashSet::new(),
                accepted: HashMap::new(),
                order: VecDeque::new(),
                window,
                capacity: capacity.max(1),
                evicted: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserve `mac` for a request about to be produced, unless it was seen.
    pub fn reserve(&self, mac: Mac) -> Result<Reservation, Replay> {
        self.reserve_at(mac, Instant::now())
    }

    fn reserve_at(&self, mac: Mac, now: Instant) -> Result<Reservation, Replay> {
        let mut inner = self.lock();
        inner.expire(now);
        if inner.accepted.contains_key(&mac) {
            return Err(Replay::Accepted);
        }
        if !inner.in_flight.insert(mac) {
            return Err(Replay::InFlight);
        }
        Ok(Reservation {
            cache: self.inner.clone(),
            mac,
            done: false,
        })
    }

    /// Signatures remembered now (accepted, not yet expired or evicted).
    pub fn len(&self) -> usize {
        self.lock().accepted.len()
    }

    /// Whether no signature is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Signatures forgotten early because the cache was full (replays of them within the
    /// window would no longer be recognised).
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }
}

/// A signature held for a request in flight: [`Reservation::accept`] it once Kafka has the
/// record; dropping it otherwise frees the signature for a retry.
pub struct Reservation {
    cache: Arc<Mutex<Inner>>,
    mac: Mac,
    done: bool,
}

impl Reservation {
    /// The record is on the topic: remember the signature for the window.
    pub fn accept(self) {
        self.accept_at(Instant::now());
    }

    fn accept_at(mut self, now: Instant) {
        let mut inner = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        inner.in_flight.remove(&self.mac);
        inner.expire(now);
        while inner.accepted.len() >= inner.capacity {
            let Some((old, until)) = inner.order.pop_front() else {
                break;
            };
            if inner.accepted.get(&old) == Some(&until) {
                inner.accepted.remove(&old);
                inner.evicted += 1;
            }
        }
        let until = now + inner.window;
        inner.accepted.insert(self.mac, until);
        inner.order.push_back((self.mac, until));
        self.done = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done {
            let mut inner = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            inner.in_flight.remove(&self.mac);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(i: u8) -> Mac {
        [i; 32]
    }

    #[test]
    fn accepted_signatures_are_refused_until_the_window_ends() {
        let c = ReplayCache::new(Duration::from_secs(300), 10);
        let t0 = Instant::now();
        c.reserve_at(mac(1), t0).unwrap().accept_at(t0);
        assert_eq!(c.reserve_at(mac(1), t0).err(), Some(Replay::Accepted));
        assert_eq!(
            c.reserve_at(mac(1), t0 + Duration::from_secs(299)).err(),
            Some(Replay::Accepted)
        );
        // After the window the signature is forgotten (its timestamp is stale by then).
        let r = c.reserve_at(mac(1), t0 + Duration::from_secs(300));
        assert!(r.is_ok());
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_failed_delivery_frees_its_signature_for_the_retry() {
        let c = ReplayCache::new(Duration::from_secs(300), 10);
        let r = c.reserve(mac(2)).unwrap();
        assert_eq!(c.reserve(mac(2)).err(), Some(Replay::InFlight));
        drop(r); // producing failed: 503
        let r = c.reserve(mac(2)).expect("the retry is accepted");
        r.accept();
        assert_eq!(c.reserve(mac(2)).err(), Some(Replay::Accepted));
    }

    #[test]
    fn memory_is_bounded_by_forgetting_the_oldest() {
        let c = ReplayCache::new(Duration::from_secs(300), 3);
        let t0 = Instant::now();
        for i in 0..5u8 {
            let t = t0 + Duration::from_secs(i as u64);
            c.reserve_at(mac(i), t).unwrap().accept_at(t);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.evicted(), 2);
        let t = t0 + Duration::from_secs(10);
        assert!(c.reserve_at(mac(0), t).is_ok(), "the oldest was forgotten");
        assert_eq!(c.reserve_at(mac(4), t).err(), Some(Replay::Accepted));
        assert_eq!(c.inner.lock().unwrap().order.len(), 3);
    }

    #[test]
    fn expired_entries_leave_the_queue_too() {
        let c = ReplayCache::new(Duration::from_secs(1), 1000);
        let t0 = Instant::now();
        for i in 0..100u8 {
            c.reserve_at(mac(i), t0).unwrap().accept_at(t0);
        }
        let later = t0 + Duration::from_secs(2);
        c.reserve_at(mac(200), later).unwrap().accept_at(later);
        let inner = c.inner.lock().unwrap();
        assert_eq!((inner.accepted.len(), inner.order.len()), (1, 1));
        assert!(inner.in_flight.is_empty());
    }
}
