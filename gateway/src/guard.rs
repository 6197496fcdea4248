//! Connection hygiene: what a client can make a core hold, and for how long.
//!
//! Every connection has a [`Watch`] in its core's [`Watchlist`]. While the
//! connection waits for its client it is in a phase with a deadline:
//!
//! - `Fresh`: accepted, no request yet; the whole first head must arrive
//!   within `header_timeout` of the accept;
//! - `Head`: part of a later request's head has arrived; the rest must come
//!   within `header_timeout` of its first byte;
//! - `Body`: the head is complete; the body must come within `body_timeout`;
//! - `Idle`: from the moment an answer is ready until the next request
//!   begins (`idle_timeout`), which also bounds a client that does not read
//!   its answers.
//!
//! A parked long-poll, or a request being handled, is `Busy`:
//! no deadline (heartbeats govern parked polls). The core's tick sweeps the
//! list once a second and closes what is overdue; nothing is done per
//! request beyond setting two cells.
//!
//! Admission: when the process holds `max_connections`, or a core holds
//! `max_unserved` connections that have not completed a request, the
//! oldest of those (then the oldest idle keep-alive ones) are shed to make
//! room, so new clients and parked polls never starve; if nothing can be
//! shed the new connection gets a 503.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

/// Bounds on what clients can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request head must be complete this long after its first byte (the
    /// accept, for a connection's first request).
    pub header_timeout: Duration,
    /// A body must be complete this long after its head.
    pub body_timeout: Duration,
    /// A kept-alive connection may wait this long for its next request.
    pub idle_timeout: Duration,
    /// Connections one core may hold that have not completed a request.
    pub max_unserved: usize,
    /// Connections the whole process may hold (0: no bound). Keep it under
    /// the open-file limit with room for everything else the process opens.
    pub max_connections: usize,
    /// A body longer than this is read only after the request's
    /// credentials were checked (unauthenticated requests are small).
    pub auth_before_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_unserved: 2048,
            max_connections: 0,
            auth_before_body: 64 * 1024,
        }
    }
}

/// What a connection is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted, nothing complete yet.
    Fresh,
    /// Part of a head.
    Head,
    /// The rest of a body.
    Body,
    /// The next request on a kept-alive connection.
    Idle,
    /// Nothing from the client: handling, answering or parked.
    Busy,
}

/// One connection's state as the sweeper sees it.
pub struct Watch {
    phase: Cell<Phase>,
    /// Has completed a request (no longer counted as unserved).
    served: Cell<bool>,
    /// When the current deadline started (clock ms).
    since_ms: Cell<u64>,
    expired: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Watch {
    /// Enters `phase` at `now_ms`. Staying in a phase keeps its start (a
    /// head's deadline covers the whole head, however it trickles in); a
    /// first head continues the accept's deadline.
    pub fn enter(&self, phase: Phase, now_ms: u64) {
        let current = self.phase.get();
        if current == phase || (current == Phase::Fresh && phase == Phase::Head) {
            return;
        }
        self.phase.set(phase);
        self.since_ms.set(now_ms);
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase.get()
    }

    /// Whether the sweeper closed this connection.
    pub fn expired(&self) -> bool {
        self.expired.get()
    }

    /// Marks the connection to close and wakes whatever waits on it.
    fn expire(&self) {
        self.expired.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Runs `f` until it completes or the connection is expired (`None`).
    /// A plain future rather than an `async fn`: an `async fn` would hold
    /// `f` twice in every parked connection's task (its argument and its
    /// pinned local).
    pub fn guard<F: std::future::Future>(&self, f: F) -> Guarded<'_, F> {
        Guarded { watch: self, f }
    }
}

pin_project_lite::pin_project! {
    /// A future that ends early (`None`) when its connection is expired.
    pub struct Guarded<'a, F> {
        watch: &'a Watch,
        #[pin]
        f: F,
    }
}

impl<F: std::future::Future> std::future::Future for Guarded<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let watch = *this.watch;
        if watch.expired.get() {
            return std::task::Poll::Ready(None);
        }
        if let std::task::Poll::Ready(out) = this.f.poll(cx) {
            return std::task::Poll::Ready(Some(out));
        }
        let w = watch.waker.take();
        match w {
            Some(w) if w.will_wake(cx.waker()) => watch.waker.set(Some(w)),
            _ => watch.waker.set(Some(cx.waker().clone())),
        }
        std::task::Poll::Pending
    }
}

/// A core's connections.
pub struct Watchlist {
    limits: Limits,
    slots: RefCell<Vec<Option<Rc<Watch>>>>,
    free: RefCell<Vec<u32>>,
    unserved: Cell<usize>,
    last_sweep_ms: Cell<u64>,
}

/// A connection's place in its core's list.
pub struct Entry {
    index: u32,
    /// Its watch.
    pub watch: Rc<Watch>,
}

impl Watchlist {
    /// An empty list enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Watchlist {
            limits,
            slots: RefCell::default(),
            free: RefCell::default(),
            unserved: Cell::new(0),
            last_sweep_ms: Cell::new(0),
        }
    }

    /// The bounds it enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Watches a new connection (fresh at `now_ms`, or already served when
    /// handed over from another core after a request).
    pub fn add(&self, now_ms: u64, served: bool) -> Entry {
        let watch = Rc::new(Watch {
            phase: Cell::new(if served { Phase::Busy } else { Phase::Fresh }),
            served: Cell::new(served),
            since_ms: Cell::new(now_ms),
            expired: Cell::new(false),
            waker: Cell::new(None),
        });
        if !served {
            self.unserved.set(self.unserved.get() + 1);
        }
        let mut slots = self.slots.borrow_mut();
        let index = match self.free.borrow_mut().pop() {
            Some(i) => {
                slots[i as usize] = Some(watch.clone());
                i
            }
            None => {
                slots.push(Some(watch.clone()));
                (slots.len() - 1) as u32
            }
        };
        Entry { index, watch }
    }

    /// Forgets a connection that closed or moved.
    pub fn remove(&self, entry: Entry) {
        if let Some(w) = self.slots.borrow_mut().get_mut(entry.index as usize).and_then(Option::take) {
            if !w.served.get() {
                self.unserved.set(self.unserved.get() - 1);
            }
            self.free.borrow_mut().push(entry.index);
        }
    }

    /// The connection completed a request.
    pub fn served(&self, watch: &Watch) {
        if !watch.served.replace(true) {
            self.unserved.set(self.unserved.get() - 1);
        }
    }

    /// Connections that have not completed a request.
    pub fn unserved(&self) -> usize {
        self.unserved.get()
    }

    /// Closes what is past its deadline at `now_ms` (at most once a second);
    /// returns how many.
    pub fn sweep(&self, now_ms: u64) -> usize {
        if now_ms < self.last_sweep_ms.get() + 1000 {
            return 0;
        }
        self.last_sweep_ms.set(now_ms);
        let ms = |d: Duration| d.as_millis() as u64;
        let mut closed = 0;
        for w in self.slots.borrow().iter().flatten() {
            let limit = match w.phase.get() {
                Phase::Fresh | Phase::Head => ms(self.limits.header_timeout),
                Phase::Body => ms(self.limits.body_timeout),
                Phase::Idle => ms(self.limits.idle_timeout),
                Phase::Busy => continue,
            };
            if !w.expired.get() && now_ms >= w.since_ms.get() + limit {
                w.expire();
                closed += 1;
            }
        }
        closed
    }

    /// Closes up to `n` connections that wait for their client, oldest
    /// first: those that never completed a request, then idle keep-alive
    /// ones (`unserved_only` stops after the first kind). Returns how many.
    pub fn shed(&self, n: usize, unserved_only: bool) -> usize {
        let slots = self.slots.borrow();
        let waiting = |w: &&Rc<Watch>| !w.expired.get() && w.phase.get() != Phase::Busy;
        let mut unserved: Vec<&Rc<Watch>> =
            slots.iter().flatten().filter(waiting).filter(|w| !w.served.get()).collect();
        unserved.sort_by_key(|w| w.since_ms.get());
        let mut picked: Vec<&Rc<Watch>> = unserved.into_iter().take(n).collect();
        if picked.len() < n && !unserved_only {
            let mut idle: Vec<&Rc<Watch>> =
                slots.iter().flatten().filter(waiting).filter(|w| w.phase.get() == Phase::Idle).collect();
            idle.sort_by_key(|w| w.since_ms.get());
            picked.extend(idle.into_iter().take(n - picked.len()));
        }
        for w in &picked {
            w.expire();
        }
        picked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            ..Limits::default()
        }
    }

    #[test]
    fn each_phase_has_its_deadline_and_busy_has_none() {
        let list = Watchlist::new(limits());
        let fresh = list.add(0, false);
        let body = list.add(0, false);
        body.watch.enter(Phase::Body, 0);
        let idle = list.add(0, true);
        idle.watch.enter(Phase::Idle, 0);
        let parked = list.add(0, true);
        parked.watch.enter(Phase::Busy, 0);
        assert_eq!(list.sweep(9_000), 0);
        assert_eq!(list.sweep(10_000), 1);
        assert!(fresh.watch.expired() && !body.watch.expired());
        assert_eq!(list.sweep(30_000), 1);
        assert!(body.watch.expired() && !idle.watch.expired());
        assert_eq!(list.sweep(60_000), 1);
        assert!(idle.watch.expired());
        assert_eq!(list.sweep(1_000_000), 0);
        assert!(!parked.watch.expired(), "parked polls have no deadline");
    }

    #[test]
    fn a_trickling_head_keeps_its_first_deadline() {
        let list = Watchlist::new(limits());
        let e = list.add(0, true);
        e.watch.enter(Phase::Head, 1_000);
        e.watch.enter(Phase::Head, 9_000);
        assert_eq!(list.sweep(10_999), 0);
        assert_eq!(list.sweep(12_000), 1, "10 s after the first byte, not the last");
        let list = Watchlist::new(limits());
        let first = list.add(0, false);
        first.watch.enter(Phase::Head, 5_000);
        assert_eq!(list.sweep(10_000), 1, "a first head counts from the accept");
    }

    #[test]
    fn the_sweep_runs_at_most_once_a_second() {
        let list = Watchlist::new(limits());
        let _e = list.add(0, false);
        assert_eq!(list.sweep(9_500), 0);
        assert_eq!(list.sweep(10_000), 0, "swept at 9.5 s: next at 10.5 s");
        assert_eq!(list.sweep(10_500), 1);
    }

    #[test]
    fn shedding_takes_the_oldest_unserved_then_idle_never_busy() {
        let list = Watchlist::new(limits());
        let new = list.add(5, false);
        let old = list.add(1, false);
        let idle = list.add(0, true);
        idle.watch.enter(Phase::Idle, 0);
        let parked = list.add(0, true);
        assert_eq!(list.unserved(), 2);
        assert_eq!(list.shed(1, false), 1);
        assert!(old.watch.expired() && !new.watch.expired());
        assert_eq!(list.shed(1, true), 1);
        assert!(new.watch.expired());
        assert_eq!(list.shed(5, true), 0, "no unserved left");
        assert_eq!(list.shed(5, false), 1);
        assert!(idle.watch.expired() && !parked.watch.expired());
    }

    #[test]
    fn served_and_removed_connections_leave_the_unserved_count() {
        let list = Watchlist::new(limits());
        let a = list.add(0, false);
        let b = list.add(0, false);
        list.served(&a.watch);
        list.served(&a.watch);
        assert_eq!(list.unserved(), 1);
        list.remove(b);
        assert_eq!(list.unserved(), 0);
        list.remove(a);
        let c = list.add(0, false);
        assert!(c.index < 2, "slots are reused");
    }

    #[test]
    fn a_guarded_wait_ends_when_expired() {
        use std::future::Future;
        let list = Watchlist::new(limits());
        let e = list.add(0, false);
        let w = e.watch.clone();
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut fut = std::pin::pin!(w.guard(std::future::pending::<()>()));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        list.sweep(10_000);
        assert_eq!(fut.as_mut().poll(&mut cx), std::task::Poll::Ready(None));
    }
}
