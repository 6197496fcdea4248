//! The gateway processes of one host, seen from the first: it starts the
//! others (`squall serve --process-index K`, or `squall gateway --node N
//! --process-index K` in a cluster; the same configuration, the
//! port it bound, its cores per process, the node's `server_generation` and
//! secret), waits until each can take connections, restarts any that dies
//! with a growing delay, and at shutdown stops them all (SIGTERM: each
//! saves its queues, as a single process does) and waits for them.

use anyhow::Context;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a new process may take to start listening for its siblings.
const READY_WAIT: Duration = Duration::from_secs(20);

/// One started process: the current child, if any.
type Slot = Arc<Mutex<Option<Child>>>;

/// The started processes.
pub struct Family {
    stopper: Stopper,
    keepers: Vec<std::thread::JoinHandle<()>>,
}

/// Stops the family: no more restarts, SIGTERM to every process.
#[derive(Clone)]
pub struct Stopper {
    stopping: Arc<AtomicBool>,
    slots: Vec<Slot>,
}

impl Stopper {
    /// Stops restarting processes and sends each a SIGTERM.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for slot in &self.slots {
            if let Some(child) = slot.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                // SAFETY: kill(2) on a child we started and have not reaped
                // (a reaped child leaves its slot empty).
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            }
        }
    }
}

impl Family {
    /// Starts processes `1..processes` on `addr`, each with `cores` cores,
    /// and returns once each listens for its siblings in `run_dir`.
    /// `subcommand` is how this process was started (`["serve"]` or
    /// `["gateway", "--node", "N"]`); the options before it are passed on.
    pub fn start(
        subcommand: &[String],
        addr: SocketAddr,
        processes: u16,
        cores: u16,
        server_generation: i64,
        secret: &str,
        run_dir: &Path,
    ) -> anyhow::Result<Family> {
        let exe = std::env::current_exe().context("finding the squall executable")?;
        let stopping = Arc::new(AtomicBool::new(false));
        let mut slots = Vec::new();
        let mut keepers = Vec::new();
        for index in 1..processes {
            let mut cmd = Command::new(&exe);
            let name = subcommand.first().map(String::as_str).unwrap_or("serve");
            cmd.args(std::env::args_os().skip(1).take_while(|a| a != name))
                .args(subcommand)
                .args(["--listen", &addr.to_string()])
                .args(["--process-index", &index.to_string()])
                .args(["--server-generation", &server_generation.to_string()])
                .env("SQUALL_GATEWAY_PROCESSES", processes.to_string())
                .env("SQUALL_CORES", cores.to_string())
                .env("SQUALL_SHARED_SECRET", secret)
                .stdout(std::process::Stdio::null());
            let parent = std::process::id() as i32;
            // SAFETY: between fork and exec only async-signal-safe calls
            // (prctl, getppid, syscall, _exit) are made.
            unsafe {
                cmd.pre_exec(move || {
                    // The process stops when the first one does, even if
                    // that one is killed outright; and if it is already
                    // gone, at once.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    if libc::getppid() != parent {
                        libc::_exit(0);
                    }
                    // A restart forks a process serving thousands of
                    // clients: none of their sockets may leak into the new
                    // one (stdio is 0-2).
                    libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
                    Ok(())
                });
            }
            let child = cmd.spawn().with_context(|| format!("starting gateway process {index}"))?;
            let slot: Slot = Arc::new(Mutex::new(Some(child)));
            slots.push(slot.clone());
            let stopping = stopping.clone();
            keepers.push(
                std::thread::Builder::new()
                    .name(format!("squall-keeper-{index}"))
                    .spawn(move || keep(index, cmd, slot, &stopping))?,
            );
        }
        for index in 1..processes {
            wait_ready(run_dir, index);
        }
        Ok(Family { stopper: Stopper { stopping, slots }, keepers })
    }

    /// What stops the family (for the signal handler).
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Stops every process (if not done yet) and waits for them.
    pub fn wait(self) {
        self.stopper.stop();
        for k in self.keepers {
            let _ = k.join();
        }
    }
}

/// Waits until process `index` listens for its siblings (so a connection
/// handed to it is taken), at most [`READY_WAIT`].
fn wait_ready(run_dir: &Path, index: u16) {
    let path = crate::siblings::socket_path(run_dir, index);
    let deadline = Instant::now() + READY_WAIT;
    while std::os::unix::net::UnixStream::connect(&path).is_err() {
        if Instant::now() > deadline {
            tracing::warn!(process = index, "gateway process not ready yet; serving without waiting for it");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for process `index`; restarts it (1 s, 2 s, ... up to 30 s later)
/// whenever it exits while the family is not stopping.
fn keep(index: u16, mut cmd: Command, slot: Slot, stopping: &AtomicBool) {
    let mut delay = Duration::from_secs(1);
    loop {
        let status = loop {
            let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            let Some(child) = guard.as_mut() else { return };
            match child.try_wait() {
                Ok(Some(status)) => {
                    // Reaped: its pid may be reused, so it is never
                    // signalled again.
                    *guard = None;
                    break status;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(process = index, error = %e, "cannot watch a gateway process");
                    return;
                }
            }
            drop(guard);
            std::thread::sleep(Duration::from_millis(100));
        };
        if stopping.load(Ordering::SeqCst) {
            tracing::info!(process = index, %status, "gateway process stopped");
            return;
        }
        tracing::error!(process = index, %status, restart_in = ?delay, "gateway process exited; restarting it");
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(30));
        let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock: a stop either sees the new child or
        // prevents it.
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        match cmd.spawn() {
            Ok(child) => *guard = Some(child),
            Err(e) => {
                tracing::error!(process = index, error = %e, "cannot restart a gateway process");
                return;
            }
        }
    }
}
