//! Bounded lock-free per-core inboxes: the only way into a core.
//!
//! Many producers (the backend's tokio threads, other cores) push; exactly
//! one consumer (the owning core) pops. The queue is crossbeam's
//! `ArrayQueue` (lock-free, fixed capacity); the consumer parks on an
//! `AtomicWaker`, and a push wakes it. A full inbox hands the item back
//! (`Err(item)`), so nothing is dropped silently and the producer decides
//! how to wait.

use crate::state::Item;
use crossbeam_queue::ArrayQueue;
use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// One core's inbox.
pub struct Inbox {
    queue: ArrayQueue<Item>,
    waker: AtomicWaker,
}

impl Inbox {
    /// An inbox holding at most `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Inbox { queue: ArrayQueue::new(capacity.max(1)), waker: AtomicWaker::new() }
    }

    /// Pushes an item, or gives it back when full.
    pub fn push(&self, item: Item) -> Result<(), Item> {
        self.queue.push(item)?;
        self.waker.wake();
        Ok(())
    }

    /// Waits for the next item (single consumer).
    pub fn pop(&self) -> Pop<'_> {
        Pop { inbox: self }
    }

    /// Takes an item without waiting.
    pub fn try_pop(&self) -> Option<Item> {
        self.queue.pop()
    }
}

/// Future returned by [`Inbox::pop`].
pub struct Pop<'a> {
    inbox: &'a Inbox,
}

impl Future for Pop<'_> {
    type Output = Item;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Item> {
        if let Some(item) = self.inbox.queue.pop() {
            return Poll::Ready(item);
        }
        self.inbox.waker.register(cx.waker());
        // A push may have landed between the first pop and the register.
        match self.inbox.queue.pop() {
            Some(item) => Poll::Ready(item),
            None => Poll::Pending,
        }
    }
}
