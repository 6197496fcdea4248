//! What each gateway process of a host is doing, for `squall status`: every
//! process writes `<state_dir>/run/gateway-<k>.pid` at start and
//! `gateway-<k>.json` (its counters) every second; `squall status` reads
//! them back and says which processes are alive.

use serde::{Deserialize, Serialize};
use squall_gateway::stats::Stats;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One process's report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Process index.
    pub process: u16,
    /// Its pid.
    pub pid: u32,
    /// Unix time of the report.
    pub at: u64,
    /// Open client connections.
    pub connections: i64,
    /// Event queues.
    pub queues: i64,
    /// Parked long-polls.
    pub parked: i64,
    /// Long-poll answers carrying events, since start.
    pub deliveries: u64,
    /// Requests served, since start.
    pub requests: u64,
    /// Connections handed to the owner of their queue, since start.
    pub handoffs: u64,
}

/// Takes `<run_dir>/lock` for the life of the returned file, or says who
/// holds it.
pub fn lock(run_dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = run_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    // SAFETY: flock on a file we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        anyhow::bail!(
            "another squall serve is running with this state directory ({}); stop it or use another SQUALL_STATE_DIR",
            run_dir.parent().unwrap_or(run_dir).display()
        );
    }
    Ok(file)
}

/// Writes `<run_dir>/gateway-<index>.pid`.
pub fn write_pid(run_dir: &Path, index: u16) {
    let path = run_dir.join(format!("gateway-{index}.pid"));
    if let Err(e) = std::fs::write(&path, std::process::id().to_string()) {
        tracing::warn!(path = %path.display(), error = %e, "could not write the pid file");
    }
}

fn report_path(run_dir: &Path, index: u16) -> PathBuf {
    run_dir.join(format!("gateway-{index}.json"))
}

/// Writes this process's report every second, forever.
pub async fn report(run_dir: PathBuf, index: u16, stats: Arc<Stats>) {
    let path = report_path(&run_dir, index);
    let tmp = path.with_extension("json.tmp");
    loop {
        let t = stats.totals();
        let r = Report {
            process: index,
            pid: std::process::id(),
            at: squall_backend::unix_time().as_secs(),
            connections: t.connections,
            queues: t.queues,
            parked: t.parked,
            deliveries: t.deliveries,
            requests: t.requests,
            handoffs: t.handoffs,
        };
        if let Ok(bytes) = serde_json::to_vec(&r) {
            if std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path)).is_err() {
                tracing::debug!(path = %path.display(), "could not write the status report");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every process's latest report under `run_dir`, with whether its pid is
/// alive.
pub fn read(run_dir: &Path) -> Vec<(Report, bool)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(run_dir) else { return out };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("gateway-") && name.ends_with(".json")) {
            continue;
        }
        let Ok(bytes) = std::fs::read(e.path()) else { continue };
        let Ok(r) = serde_json::from_slice::<Report>(&bytes) else { continue };
        // SAFETY: kill with signal 0 only checks that the pid exists.
        let alive = unsafe { libc::kill(r.pid as i32, 0) } == 0;
        out.push((r, alive));
    }
    out.sort_by_key(|(r, _)| r.process);
    out
}

/// The table `squall status` prints.
pub fn table(reports: &[(Report, bool)], now: u64) -> String {
    let mut out =
        String::from("process  pid      state    connections  queues  parked  deliveries  hand-offs  updated\n");
    for (r, alive) in reports {
        let state = if !alive {
            "gone"
        } else if now.saturating_sub(r.at) > 5 {
            "stale"
        } else {
            "running"
        };
        out.push_str(&format!(
            "{:<8} {:<8} {:<8} {:>11} {:>7} {:>7} {:>11} {:>10}  {}s ago\n",
            r.process,
            r.pid,
            state,
            r.connections,
            r.queues,
            r.parked,
            r.deliveries,
            r.handoffs,
            now.saturating_sub(r.at)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_read_back_and_tabulated() {
        let dir = std::env::temp_dir().join(format!("squall-status-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let me = Report {
            process: 0,
            pid: std::process::id(),
            at: 100,
            connections: 5,
            queues: 7,
            parked: 3,
            deliveries: 9,
            requests: 11,
            handoffs: 1,
        };
        let gone = Report { process: 1, pid: u32::MAX / 2, ..me.clone() };
        std::fs::write(report_path(&dir, 0), serde_json::to_vec(&me).unwrap()).unwrap();
        std::fs::write(report_path(&dir, 1), serde_json::to_vec(&gone).unwrap()).unwrap();
        let got = read(&dir);
        assert_eq!(got, vec![(me, true), (gone, false)]);
        let t = table(&got, 101);
        assert!(t.lines().nth(1).unwrap().contains("running"), "{t}");
        assert!(t.lines().nth(2).unwrap().contains("gone"), "{t}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
