//! Where a parked long-poll's answer goes. The connection task owns a
//! [`Slot`] for its whole life and lends it (an `Rc`) to the queue it polls;
//! the core fills it when events arrive, a heartbeat is due or the poll is
//! superseded, and wakes the task. Both sides live on the owner core: no
//! channel, no allocation per poll.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// An answer to `/events` made by the core: status and JSON body (a
/// [`crate::pool`] buffer).
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
    /// A deferred (long-poll) completion: carries `Vary`, as Zulip's do.
    pub deferred: bool,
}

#[derive(Default)]
struct Inner {
    answer: Option<Answer>,
    waker: Option<Waker>,
    gone: bool,
}

/// One connection's parking place.
#[derive(Default)]
pub struct Slot {
    inner: RefCell<Inner>,
}

impl Slot {
    /// A slot for a new connection.
    pub fn new() -> Rc<Slot> {
        Rc::new(Slot::default())
    }

    /// Hands the answer over and wakes the waiting connection.
    pub fn fulfil(&self, answer: Answer) {
        let waker = {
            let mut inner = self.inner.borrow_mut();
            inner.answer = Some(answer);
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Whether the client behind this slot went away.
    pub fn is_gone(&self) -> bool {
        self.inner.borrow().gone
    }

    /// Marks the client gone (the connection closed while parked).
    pub fn set_gone(&self) {
        self.inner.borrow_mut().gone = true;
    }

    /// Waits for the answer.
    pub fn wait(&self) -> Wait<'_> {
        Wait { slot: self }
    }
}

/// Future of [`Slot::wait`].
pub struct Wait<'a> {
    slot: &'a Slot,
}

impl Future for Wait<'_> {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let mut inner = self.slot.inner.borrow_mut();
        match inner.answer.take() {
            Some(a) => Poll::Ready(a),
            None => {
                inner.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker;

    #[test]
    fn an_answer_reaches_the_waiter() {
        let slot = Slot::new();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut wait = std::pin::pin!(slot.wait());
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        slot.fulfil(Answer { status: 200, body: b"{}".to_vec(), deferred: true });
        match wait.as_mut().poll(&mut cx) {
            Poll::Ready(a) => assert_eq!((a.status, a.body.as_slice(), a.deferred), (200, &b"{}"[..], true)),
            Poll::Pending => panic!("answered"),
        }
        assert!(!slot.is_gone());
        slot.set_gone();
        assert!(slot.is_gone());
    }
}
