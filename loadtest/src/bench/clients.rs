//! Benchmark clients: many keep-alive connections split over one monoio
//! runtime per thread. In `Park` mode each client long-polls and records,
//! for every round it receives, the kernel's receive timestamp of the
//! response (`SO_TIMESTAMPNS`), so a busy or niced client does not add its
//! own scheduling delay to the server's latency. In `Rate` mode each client
//! sends requests back to back and only counts answers.

use super::wire::{Cursor, Target};
use crate::http::{parse_response, Response};
use anyhow::{bail, Context, Result};
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How clients behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Long-poll: wait for each round, re-poll at once.
    Park,
    /// Request rate: `dont_block` polls back to back.
    Rate,
}

/// One delivery: which round, received when (ns since the epoch).
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// Round number.
    pub round: u64,
    /// Kernel receive time of the response.
    pub at_ns: u64,
}

/// What clients and the controller share.
pub struct Shared {
    /// Clients set up (queue created, connected).
    pub ready: AtomicU64,
    /// Polls sent and not yet answered.
    pub in_flight: AtomicU64,
    /// Answers received (rate mode).
    pub answers: AtomicU64,
    /// Deliveries per round (index = round).
    pub delivered: Vec<AtomicU64>,
    /// Latest delivery time per round.
    pub last_ns: Vec<AtomicU64>,
    /// Clients that failed, and the first failure.
    pub failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Set to stop every client.
    pub stop: AtomicBool,
}

impl Shared {
    /// Counters for a run of `rounds` rounds.
    pub fn new(rounds: u64) -> Arc<Shared> {
        Arc::new(Shared {
            ready: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            answers: AtomicU64::new(0),
            delivered: (0..=rounds).map(|_| AtomicU64::new(0)).collect(),
            last_ns: (0..=rounds).map(|_| AtomicU64::new(0)).collect(),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
            stop: AtomicBool::new(false),
        })
    }

    fn fail(&self, e: anyhow::Error) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert_with(|| format!("{e:#}"));
    }

    /// The first client failure, if any.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Clients `first..first+count` of a run.
pub struct Fleet {
    /// Server address.
    pub addr: SocketAddr,
    /// `Host` header.
    pub host: String,
    /// Protocol.
    pub target: Arc<Target>,
    /// Behaviour.
    pub mode: Mode,
    /// Use io_uring (else epoll).
    pub io_uring: bool,
}

/// Runs `count` clients starting at index `first` on this thread until
/// [`Shared::stop`]; returns their deliveries.
pub fn run_thread(fleet: Arc<Fleet>, first: usize, count: usize, shared: Arc<Shared>) -> Vec<Delivery> {
    let out = Rc::new(RefCell::new(Vec::new()));
    let io_uring = fleet.io_uring;
    let main = {
        let out = out.clone();
        async move {
            // Connect in batches so the server's accept queue never overflows.
            for chunk_start in (first..first + count).step_by(250) {
                let chunk_end = (chunk_start + 250).min(first + count);
                let started = shared.ready.load(Ordering::Relaxed);
                for idx in chunk_start..chunk_end {
                    let (fleet, shared, out) = (fleet.clone(), shared.clone(), out.clone());
                    monoio::spawn(async move {
                        if let Err(e) = client(idx, &fleet, &shared, &out).await {
                            if !shared.stop.load(Ordering::Relaxed) {
                                shared.fail(e);
                            }
                        }
                    });
                }
                let want = (chunk_end - chunk_start) as u64;
                while shared.ready.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < started + want
                    && !shared.stop.load(Ordering::Relaxed)
                {
                    monoio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            while !shared.stop.load(Ordering::Relaxed) {
                monoio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let result = if io_uring {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().map(|mut rt| rt.block_on(main))
    } else {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().map(|mut rt| rt.block_on(main))
    };
    if let Err(e) = result {
        eprintln!("bench: cannot start a client runtime: {e}");
    }
    out.take()
}

async fn client(idx: usize, fleet: &Fleet, shared: &Shared, out: &RefCell<Vec<Delivery>>) -> Result<()> {
    let mut conn = Conn::connect(fleet.addr).await?;
    let mut cursor = Cursor::default();
    if let Some(req) = fleet.target.open(idx, &fleet.host, &mut cursor) {
        conn.write(req).await?;
        let (r, _) = conn.read().await?;
        fleet.target.opened(&mut cursor, &r)?;
    }
    shared.ready.fetch_add(1, Ordering::Relaxed);
    let mut expect = 1u64;
    while !shared.stop.load(Ordering::Relaxed) {
        conn.write(fleet.target.poll(&fleet.host, &cursor, fleet.mode == Mode::Rate)).await?;
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        let answer = conn.read().await;
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        let (r, at_ns) = answer?;
        if fleet.mode == Mode::Rate {
            shared.answers.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        for round in fleet.target.delivered(&mut cursor, &r)? {
            if round != expect {
                bail!("client {idx} received round {round}, expected {expect} (lost, duplicated or reordered)");
            }
            expect += 1;
            let Some(count) = shared.delivered.get(round as usize) else { bail!("round {round} was never published") };
            shared.last_ns[round as usize].fetch_max(at_ns, Ordering::Relaxed);
            count.fetch_add(1, Ordering::Relaxed);
            out.borrow_mut().push(Delivery { round, at_ns });
        }
    }
    Ok(())
}

/// A client connection that reads with receive timestamps.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect_addr(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            bail!("SO_TIMESTAMPNS: {}", std::io::Error::last_os_error());
        }
        Ok(Conn { stream, buf: Vec::with_capacity(4096) })
    }

    async fn write(&mut self, bytes: Vec<u8>) -> Result<()> {
        let (res, _) = self.stream.write_all(bytes).await;
        res.context("writing a request")?;
        Ok(())
    }

    /// Reads one response; returns it with the receive time of its last
    /// bytes.
    async fn read(&mut self) -> Result<(Response, u64)> {
        let mut at_ns = 0;
        loop {
            if let Some((r, used)) = parse_response(&self.buf)? {
                self.buf.drain(..used);
                return Ok((r, at_ns));
            }
            self.stream.readable(false).await?;
            match recv_stamped(self.stream.as_raw_fd(), &mut self.buf) {
                Ok((0, _)) => bail!("connection closed by the server"),
                Ok((_, ts)) => at_ns = ts,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// One non-blocking `recvmsg` into `buf`'s spare room; returns the bytes
/// read and the kernel receive timestamp (ns since the epoch; the current
/// time if the kernel gave none).
fn recv_stamped(fd: i32, buf: &mut Vec<u8>) -> std::io::Result<(usize, u64)> {
    buf.reserve(16 * 1024);
    let spare = buf.spare_capacity_mut();
    let mut iov = libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: spare.len() };
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; every pointer set below is valid for
    // the duration of the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: fd is an open socket; msg points at live buffers.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised the first n bytes of the spare room.
    unsafe { buf.set_len(buf.len() + n) };
    let mut at_ns = crate::now_ns();
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                at_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n, at_ns))
}
