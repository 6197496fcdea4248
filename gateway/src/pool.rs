//! A core's pool of byte buffers for responses: a delivery renders into a
//! buffer taken from here and gives it back once written, so the event
//! path allocates nothing in steady state. Per thread: no sharing, no
//! locks.

use std::cell::RefCell;

/// Capacity of a fresh buffer (a typical message response fits).
const FRESH: usize = 2048;
/// Buffers larger than this are not kept (a rare huge response).
const KEEP_MAX: usize = 64 * 1024;
/// At most this many idle buffers per core.
const IDLE_MAX: usize = 4096;

thread_local! {
    static IDLE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer.
pub fn take() -> Vec<u8> {
    IDLE.with(|idle| idle.borrow_mut().pop()).unwrap_or_else(|| Vec::with_capacity(FRESH))
}

/// Returns a buffer for reuse.
pub fn give(mut buf: Vec<u8>) {
    if buf.capacity() > KEEP_MAX || buf.capacity() == 0 {
        return;
    }
    buf.clear();
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        if idle.len() < IDLE_MAX {
            idle.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_and_reused() {
        let mut b = take();
        b.extend_from_slice(b"hello");
        let ptr = b.as_ptr();
        give(b);
        let again = take();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr, "the same allocation");
        give(Vec::with_capacity(KEEP_MAX + 1));
        assert_ne!(take().capacity(), KEEP_MAX + 1, "huge buffers are not kept");
    }
}
