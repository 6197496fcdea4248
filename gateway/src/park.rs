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
    /// The JSON body, from byte `room` on; the bytes before it are room
    /// for the response head, so the answer is sent without copying.
    pub body: Vec<u8>,
    /// Where the body starts in `body`.
    pub room: usize,
    /// A deferred (long-poll) completion: carries `Vary`, as Zulip's do.
    pub deferred: bool,
}

/// Room left before a rendered body for the response head.
pub const HEAD_ROOM: usize = 160;

impl Answer {
    /// An answer whose body is `body` as it is (no head room).
    pub fn plain(status: u16, body: Vec<u8>) -> Answer {
        Answer { status, body, room: 0, deferred: false }
    }

    /// The JSON body.
    pub fn json(&self) -> &[u8] {
        &self.body[self.room..]
    }
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
        slot.fulfil(Answer { deferred: true, ..Answer::plain(200, b"{}".to_vec()) });
        match wait.as_mut().poll(&mut cx) {
            Poll::Ready(a) => assert_eq!((a.status, a.json(), a.deferred), (200, &b"{}"[..], true)),
            Poll::Pending => panic!("answered"),
        }
        assert!(!slot.is_gone());
        slot.set_gone();
        assert!(slot.is_gone());
    }
}
