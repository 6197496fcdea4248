//! The gateway processes of one host, seen from the first: it starts the
//! others (`squall serve --process-index K`, the same configuration, the
//! port it bound, the node's `server_generation` and secret), restarts any
//! that dies with a growing delay, and at shutdown stops them all (SIGTERM:
//! each saves its queues, as a single process does) and waits for them.

use anyhow::Context;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The started processes.
pub struct Family {
    stopping: Arc<AtomicBool>,
    running: Vec<Arc<Mutex<Option<Child>>>>,
    keepers: Vec<std::thread::JoinHandle<()>>,
}

impl Family {
    /// Starts processes `1..processes` on `addr`.
    pub fn start(addr: SocketAddr, processes: u16, server_generation: i64, secret: &str) -> anyhow::Result<Family> {
        let exe = std::env::current_exe().context("finding the squall executable")?;
        let stopping = Arc::new(AtomicBool::new(false));
        let mut running = Vec::new();
        let mut keepers = Vec::new();
        for index in 1..processes {
            let mut cmd = Command::new(&exe);
            cmd.args(std::env::args_os().skip(1).take_while(|a| a != "serve"))
                .arg("serve")
                .args(["--listen", &addr.to_string()])
                .args(["--process-index", &index.to_string()])
                .args(["--server-generation", &server_generation.to_string()])
                .env("SQUALL_GATEWAY_PROCESSES", processes.to_string())
                .env("SQUALL_SHARED_SECRET", secret)
                .stdout(std::process::Stdio::null());
            let parent = std::process::id() as i32;
            // SAFETY: between fork and exec only async-signal-safe calls
            // (prctl, getppid, _exit) are made.
            unsafe {
                cmd.pre_exec(move || {
                    // The process stops when the first one does, even if
                    // that one is killed outright; and if it is already
                    // gone, at once.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    if libc::getppid() != parent {
                        libc::_exit(0);
                    }
                    Ok(())
                });
            }
            let slot =
                Arc::new(Mutex::new(Some(cmd.spawn().with_context(|| format!("starting gateway process {index}"))?)));
            running.push(slot.clone());
            let stopping = stopping.clone();
            keepers.push(
                std::thread::Builder::new()
                    .name(format!("squall-keeper-{index}"))
                    .spawn(move || keep(index, cmd, slot, &stopping))?,
            );
        }
        Ok(Family { stopping, running, keepers })
    }

    /// Stops every process (SIGTERM) and waits for them.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        for slot in &self.running {
            if let Some(child) = slot.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                // SAFETY: kill(2) on a child we started.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            }
        }
        for k in self.keepers {
            let _ = k.join();
        }
    }
}

/// Waits for process `index`; restarts it (1 s, 2 s, ... up to 30 s later)
/// whenever it exits while the family is not stopping.
fn keep(index: u16, mut cmd: Command, slot: Arc<Mutex<Option<Child>>>, stopping: &AtomicBool) {
    let mut delay = Duration::from_secs(1);
    loop {
        let status = loop {
            let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            let Some(child) = guard.as_mut() else { return };
            match child.try_wait() {
                Ok(Some(status)) => break status,
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
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        match cmd.spawn() {
            Ok(child) => *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(child),
            Err(e) => {
                tracing::error!(process = index, error = %e, "cannot restart a gateway process");
                return;
            }
        }
    }
}
