//! A core's pool of byte buffers for responses: a delivery renders into a
//! buffer taken from here and gives it back once written, so the event
//! path allocates nothing in steady state. Per thread: no sharing, no
//! locks.

use std::cell::RefCell;

/// Capacity of a fresh buffer (a typical message response fits).
const FRESH: usize = 2048;
/// Buffers larger than this are not kept (a rare huge response).
const KEEP_MAX: usize = 64 * 1024;
/// At most this many idle buffers per core...
const IDLE_MAX: usize = 4096;
/// ...holding at most this many bytes (a burst of large responses must not
/// stay resident).
const IDLE_BYTES_MAX: usize = 16 * 1024 * 1024;

struct Idle {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
}

thread_local! {
    static IDLE: RefCell<Idle> = const { RefCell::new(Idle { bufs: Vec::new(), bytes: 0 }) };
}

/// An empty buffer.
pub fn take() -> Vec<u8> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let buf = idle.bufs.pop()?;
        idle.bytes -= buf.capacity();
        Some(buf)
    })
    .unwrap_or_else(|| Vec::with_capacity(FRESH))
}

/// Returns a buffer for reuse.
pub fn give(mut buf: Vec<u8>) {
    if buf.capacity() > KEEP_MAX || buf.capacity() == 0 {
        return;
    }
    buf.clear();
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        if idle.bufs.len() < IDLE_MAX && idle.bytes + buf.capacity() <= IDLE_BYTES_MAX {
            idle.bytes += buf.capacity();
            idle.bufs.push(buf);
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

    #[test]
    fn idle_buffers_stay_within_the_byte_budget() {
        // Fresh thread: an empty pool of its own.
        std::thread::spawn(|| {
            for _ in 0..IDLE_MAX {
                give(Vec::with_capacity(KEEP_MAX));
            }
            let kept = IDLE.with(|idle| (idle.borrow().bufs.len(), idle.borrow().bytes));
            assert_eq!(kept.0, IDLE_BYTES_MAX / KEEP_MAX);
            assert!(kept.1 <= IDLE_BYTES_MAX);
            let mut taken = 0;
            while IDLE.with(|idle| !idle.borrow().bufs.is_empty()) {
                take();
                taken += 1;
            }
            assert_eq!(taken, kept.0);
            assert_eq!(IDLE.with(|idle| idle.borrow().bytes), 0, "the count follows what is taken");
        })
        .join()
        .unwrap();
    }
}
