//! Admission in arrival order: at most `max` calls run at once, the others wait in the
//! order they arrived, without allocating.
//!
//! A call takes a ticket (a counter); it may start when every earlier ticket has started
//! (or given up) and fewer than `max` calls are running. A call that gives up at its
//! deadline marks its ticket abandoned so the queue does not stall behind it; the mark is
//! one bit in a fixed ring (a waiter further than [`RING`] tickets from the head cannot
//! give up until it is nearer: it keeps waiting, which only delays its timeout error).
//! Leaving is a guard's `Drop`, so a call that panics still frees its place. Every lock
//! is taken poison-tolerant: the state is a few counters, consistent after any panic.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Tickets ahead of the head whose abandonment can be recorded.
const RING: u64 = 4096;

/// The admission state.
#[derive(Debug)]
struct State {
    /// The next ticket to hand out.
    next: u64,
    /// The oldest ticket that has neither started nor given up.
    head: u64,
    /// Calls running now.
    running: usize,
    /// Abandoned tickets in `head .. head + RING`, one bit each, by `ticket % RING`.
    abandoned: [u64; (RING / 64) as usize],
}

impl State {
    fn is_abandoned(&self, t: u64) -> bool {
        let i = (t % RING) as usize;
        self.abandoned[i / 64] >> (i % 64) & 1 == 1
    }

    fn set_abandoned(&mut self, t: u64, on: bool) {
        let i = (t % RING) as usize;
        let bit = 1u64 << (i % 64);
        if on {
            self.abandoned[i / 64] |= bit;
        } else {
            self.abandoned[i / 64] &= !bit;
        }
    }

    /// Move the head past abandoned tickets.
    fn skip_abandoned(&mut self) {
        while self.head < self.next && self.is_abandoned(self.head) {
            let h = self.head;
            self.set_abandoned(h, false);
            self.head += 1;
        }
    }
}

/// A FIFO admission gate for at most `max` concurrent calls.
#[derive(Debug)]
pub(crate) struct Gate {
    state: Mutex<State>,
    changed: Condvar,
    max: usize,
}

/// A running call's place; dropping it lets the next ticket in.
#[derive(Debug)]
pub(crate) struct Pass<'g> {
    gate: &'g Gate,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let mut s = self.gate.lock();
        s.running -= 1;
        drop(s);
        self.gate.changed.notify_all();
    }
}

impl Gate {
    /// A gate admitting at most `max` (at least 1) calls at once.
    pub(crate) fn new(max: usize) -> Gate {
        let state = State { next: 0, head: 0, running: 0, abandoned: [0; (RING / 64) as usize] };
        Gate { state: Mutex::new(state), changed: Condvar::new(), max: max.max(1) }
    }

    /// How many calls may run at once.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Whether calls other than one running caller are in flight (running or waiting).
    pub(crate) fn others_in_flight(&self) -> bool {
        let s = self.lock();
        s.running > 1 || s.next > s.head
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for this call's turn; `None` if `deadline` passed first (the call then never
    /// runs, and the calls behind it move up).
    pub(crate) fn enter(&self, deadline: Option<Instant>) -> Option<Pass<'_>> {
        let mut s = self.lock();
        let ticket = s.next;
        s.next += 1;
        loop {
            if s.head == ticket && s.running < self.max {
                s.head += 1;
                s.running += 1;
                s.skip_abandoned();
                drop(s);
                // The next ticket may be admissible too (another free place).
                self.changed.notify_all();
                return Some(Pass { gate: self });
            }
            s = match deadline {
                None => self.changed.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d && ticket - s.head < RING {
                        if s.head == ticket {
                            s.head += 1;
                            s.skip_abandoned();
                        } else {
                            s.set_abandoned(ticket, true);
                        }
                        drop(s);
                        self.changed.notify_all();
                        return None;
                    }
                    let wait = d.saturating_duration_since(now).max(std::time::Duration::from_millis(1));
                    self.changed.wait_timeout(s, wait).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn admits_in_arrival_order_one_at_a_time() {
        let gate = Arc::new(Gate::new(1));
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = gate.enter(None).unwrap();
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (g, order) = (Arc::clone(&gate), Arc::clone(&order));
                // Each thread takes its ticket before the next starts.
                let h = std::thread::spawn(move || {
                    let _pass = g.enter(None).unwrap();
                    order.lock().unwrap().push(i);
                });
                while gate.lock().next < i as u64 + 2 {
                    std::thread::yield_now();
                }
                h
            })
            .collect();
        drop(first);
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_waiter_that_gives_up_does_not_block_the_ones_behind() {
        let gate = Arc::new(Gate::new(1));
        let first = gate.enter(None).unwrap();
        let g = Arc::clone(&gate);
        let quitter = std::thread::spawn(move || g.enter(Some(Instant::now() + Duration::from_millis(20))).is_none());
        while gate.lock().next < 2 {
            std::thread::yield_now();
        }
        let g = Arc::clone(&gate);
        let patient = std::thread::spawn(move || g.enter(None).is_some());
        assert!(quitter.join().unwrap(), "the deadline passed while the gate was held");
        drop(first);
        assert!(patient.join().unwrap());
        let s = gate.lock();
        assert_eq!((s.head, s.next, s.running), (3, 3, 0));
    }

    #[test]
    fn at_most_max_run_at_once() {
        let gate = Gate::new(2);
        let a = gate.enter(None).unwrap();
        let b = gate.enter(None).unwrap();
        assert!(gate.enter(Some(Instant::now() + Duration::from_millis(5))).is_none());
        drop(a);
        let c = gate.enter(Some(Instant::now() + Duration::from_secs(5)));
        assert!(c.is_some());
        drop((b, c));
        assert_eq!(gate.lock().running, 0);
    }

    #[test]
    fn a_panicking_call_frees_its_place() {
        let gate = Arc::new(Gate::new(1));
        let g = Arc::clone(&gate);
        let r = std::thread::spawn(move || {
            let _pass = g.enter(None).unwrap();
            panic!("boom");
        })
        .join();
        assert!(r.is_err());
        assert!(gate.enter(Some(Instant::now() + Duration::from_secs(1))).is_some());
    }
}
