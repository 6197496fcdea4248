//! Bounded lock-free per-core inboxes: the only way into a core.
//!
//! Many producers (the backend's threads, other cores) push; exactly one
//! consumer (the owning core) pops. The queue is crossbeam's `ArrayQueue`
//! (lock-free, fixed capacity); the consumer parks on an `AtomicWaker`, and
//! a push wakes it. A full inbox hands the item back (`Err(item)`), so
//! nothing is dropped silently; producers that can wait use
//! [`Inbox::push_wait`], which is woken when the core makes room (the
//! only lock here, taken only while the inbox is full).

use crate::state::Item;
use crossbeam_queue::ArrayQueue;
use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// One core's inbox.
pub struct Inbox {
    queue: ArrayQueue<Item>,
    waker: AtomicWaker,
    /// Producers waiting for room.
    blocked: Mutex<Vec<Waker>>,
    /// Whether `blocked` may be non-empty (checked on every pop).
    any_blocked: AtomicBool,
}

impl Inbox {
    /// An inbox holding at most `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Inbox {
            queue: ArrayQueue::new(capacity.max(1)),
            waker: AtomicWaker::new(),
            blocked: Mutex::new(Vec::new()),
            any_blocked: AtomicBool::new(false),
        }
    }

    /// Pushes an item, or gives it back when full.
    pub fn push(&self, item: Item) -> Result<(), Item> {
        self.queue.push(item)?;
        self.waker.wake();
        Ok(())
    }

    /// Pushes an item, waiting for room while the inbox is full.
    pub fn push_wait(&self, item: Item) -> PushWait<'_> {
        PushWait { inbox: self, item: Some(item) }
    }

    /// Waits for the next item (single consumer).
    pub fn pop(&self) -> Pop<'_> {
        Pop { inbox: self }
    }

    /// Items waiting now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits now.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Takes an item without waiting.
    pub fn try_pop(&self) -> Option<Item> {
        let item = self.queue.pop();
        if item.is_some() && self.any_blocked.load(Ordering::Acquire) {
            self.wake_producers();
        }
        item
    }

    fn wake_producers(&self) {
        let wakers = {
            let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
            self.any_blocked.store(false, Ordering::Release);
            std::mem::take(&mut *blocked)
        };
        for w in wakers {
            w.wake();
        }
    }
}

/// Future returned by [`Inbox::pop`].
pub struct Pop<'a> {
    inbox: &'a Inbox,
}

impl Future for Pop<'_> {
    type Output = Item;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Item> {
        if let Some(item) = self.inbox.try_pop() {
            return Poll::Ready(item);
        }
        self.inbox.waker.register(cx.waker());
        // A push may have landed between the first pop and the register.
        match self.inbox.try_pop() {
            Some(item) => Poll::Ready(item),
            None => Poll::Pending,
        }
    }
}

/// Future returned by [`Inbox::push_wait`].
pub struct PushWait<'a> {
    inbox: &'a Inbox,
    item: Option<Item>,
}

impl Future for PushWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(item) = self.item.take() else { return Poll::Ready(()) };
        let item = match self.inbox.push(item) {
            Ok(()) => return Poll::Ready(()),
            Err(back) => back,
        };
        {
            let mut blocked = self.inbox.blocked.lock().unwrap_or_else(|p| p.into_inner());
            blocked.push(cx.waker().clone());
            self.inbox.any_blocked.store(true, Ordering::Release);
        }
        // The core may have made room before it could see us waiting.
        match self.inbox.push(item) {
            Ok(()) => Poll::Ready(()),
            Err(back) => {
                self.item = Some(back);
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
    fn a_full_inbox_holds_producers_until_the_core_makes_room() {
        let inbox = Inbox::new(1);
        assert!(inbox.push(Item::Shutdown).is_ok());
        assert!(inbox.push(Item::Shutdown).is_err(), "full: the item comes back");
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut wait = std::pin::pin!(inbox.push_wait(Item::Shutdown));
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        assert!(inbox.try_pop().is_some());
        assert!(wait.as_mut().poll(&mut cx).is_ready(), "room was made");
        assert!(inbox.try_pop().is_some());
        assert!(inbox.try_pop().is_none());
    }
}
