//! `chat`: a realistic mix. S streams of Z members each (every member long-
//! polls), A of the members send at a total rate R for T seconds: stream
//! messages, a fraction of DMs (preceded by typing notifications), and
//! read-flag updates. Send and delivery latency, exactly-once per recipient.

use super::{Fleet, FleetOptions, Output, Report};
use crate::check;
use crate::http::{basic_auth, BlockingClient};
use crate::setup::{self, Account, Admin};
use crate::stats::{self, Summary};
use anyhow::{bail, Result};
use rand::Rng;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Parameters.
#[derive(Debug, Clone)]
pub struct Chat {
    pub streams: usize,
    pub stream_size: usize,
    pub senders: usize,
    pub rate: f64,
    pub duration: Duration,
    pub dm_fraction: f64,
    pub read_fraction: f64,
    pub drain: Duration,
    pub connect_timeout: Duration,
}

/// Who should receive a sent message (client indices).
enum Audience {
    Stream(usize),
    Pair(usize, usize),
}

/// Runs the mix over `users` (streams × stream_size of them).
pub fn command(admin: &Admin, fleet_opts: &FleetOptions, users: &[Account], c: &Chat, out: &Output) -> Result<i32> {
    let size = c.stream_size.max(1);
    if users.len() < c.streams * size || c.senders == 0 {
        bail!("chat needs streams × stream-size users and at least one sender");
    }
    let stream_name = |j: usize| format!("loadtest-chat-{j}");
    for j in 0..c.streams {
        let members: Vec<i64> = users[j * size..(j + 1) * size].iter().map(|u| u.user_id).collect();
        setup::subscribe(admin, &stream_name(j), &members)?;
    }
    let run = super::run_id();
    let clients = users[..c.streams * size].iter().enumerate().map(|(i, a)| a.client(i)).collect();
    let started = Instant::now();
    let mut fleet = Fleet::start(fleet_opts, &run, clients)?;
    fleet.wait_connected((c.streams * size) as u64, c.connect_timeout)?;

    // Senders: spread over the streams (sender k is member 0.. of stream k % S).
    let sent: Arc<Mutex<Vec<(i64, Audience)>>> = Arc::new(Mutex::new(Vec::new()));
    let send_hist = Arc::new(Mutex::new(stats::histogram()));
    let errors = Arc::new(Mutex::new(0u64));
    let deadline = Instant::now() + c.duration;
    let per_sender = (c.rate / c.senders as f64).max(0.001);
    let mut threads = Vec::new();
    for k in 0..c.senders {
        let stream = k % c.streams;
        let me = stream * size + (k / c.streams) % size;
        let (users, sent, send_hist, errors, run, site) =
            (users.to_vec(), sent.clone(), send_hist.clone(), errors.clone(), run.clone(), admin.site.clone());
        let c = c.clone();
        let name = stream_name(stream);
        threads.push(std::thread::spawn(move || -> Result<()> {
            let mut client = BlockingClient::new(&site)?;
            let auth = basic_auth(&users[me].email, &users[me].api_key);
            let mut rng = rand::thread_rng();
            let t0 = Instant::now();
            let total = c.streams * size;
            let mut seq = 0u64;
            let mut mine: Vec<i64> = Vec::new();
            while Instant::now() < deadline {
                // Fixed schedule at this sender's rate, offset per sender.
                let due = t0 + Duration::from_secs_f64((seq as f64 + k as f64 / c.senders as f64) / per_sender);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let content = crate::stamp(&run, (k as u64) << 32 | seq);
                seq += 1;
                let (form, audience): (Vec<(&str, String)>, Audience) =
                    if rng.gen_bool(c.dm_fraction.clamp(0.0, 1.0)) && total > 1 {
                        let mut other = rng.gen_range(0..total);
                        if other == me {
                            other = (other + 1) % total;
                        }
                        let to = json!([users[other].user_id]).to_string();
                        let typing = setup::call(
                            &mut client,
                            "POST",
                            "/api/v1/typing",
                            Some(&auth),
                            &[("op", "start"), ("to", &to)],
                        )?;
                        if typing.status != 200 {
                            *errors.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                        }
                        (vec![("type", "direct".into()), ("to", to), ("content", content)], Audience::Pair(me, other))
                    } else {
                        (
                            vec![
                                ("type", "stream".into()),
                                ("to", name.clone()),
                                ("topic", "chat".into()),
                                ("content", content),
                            ],
                            Audience::Stream(stream),
                        )
                    };
                let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let t = Instant::now();
                let r = setup::call(&mut client, "POST", "/api/v1/messages", Some(&auth), &pairs)?;
                stats::record(&mut send_hist.lock().unwrap_or_else(|p| p.into_inner()), t.elapsed().as_micros() as u64);
                match r.json()?["id"].as_i64() {
                    Some(id) if r.status == 200 => {
                        mine.push(id);
                        sent.lock().unwrap_or_else(|p| p.into_inner()).push((id, audience));
                    }
                    _ => *errors.lock().unwrap_or_else(|p| p.into_inner()) += 1,
                }
                if rng.gen_bool(c.read_fraction.clamp(0.0, 1.0)) {
                    let ids = json!(mine.iter().rev().take(5).collect::<Vec<_>>()).to_string();
                    let r = setup::call(
                        &mut client,
                        "POST",
                        "/api/v1/messages/flags",
                        Some(&auth),
                        &[("messages", &ids), ("op", "add"), ("flag", "read")],
                    )?;
                    if r.status != 200 {
                        *errors.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                    }
                }
            }
            Ok(())
        }));
    }
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("a sender thread panicked"))??;
    }
    let sent = std::mem::take(&mut *sent.lock().unwrap_or_else(|p| p.into_inner()));
    let mut expected: HashMap<usize, Vec<i64>> = HashMap::new();
    for (id, audience) in &sent {
        match *audience {
            Audience::Stream(j) => (j * size..(j + 1) * size).for_each(|i| expected.entry(i).or_default().push(*id)),
            Audience::Pair(a, b) => {
                expected.entry(a).or_default().push(*id);
                expected.entry(b).or_default().push(*id);
            }
        }
    }
    let want: u64 = expected.values().map(|v| v.len() as u64).sum();
    fleet.wait("delivering", c.drain, &String::new, &|p| p.deliveries >= want)?;
    let o = fleet.finish()?;
    let verdict = check::check(&expected, &o.received);
    let send_hist = send_hist.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let send_errors = *errors.lock().unwrap_or_else(|p| p.into_inner());
    let report = Report {
        scenario: "chat".into(),
        site: admin.site.clone(),
        params: json!({"streams": c.streams, "stream_size": size, "senders": c.senders, "rate": c.rate,
                       "seconds": c.duration.as_secs(), "dm_fraction": c.dm_fraction, "read_fraction": c.read_fraction}),
        duration_secs: started.elapsed().as_secs_f64(),
        progress: o.progress,
        sent: sent.len() as u64,
        send_errors,
        verdict: Some(verdict),
        latencies: vec![
            Summary::of("delivery (send → event)", &o.latency)?,
            Summary::of("send (POST /messages)", &send_hist)?,
        ],
        worker_rss_kib: o.worker_rss_kib,
        server: None,
        extra: json!({"achieved_rate": sent.len() as f64 / c.duration.as_secs_f64().max(0.001)}),
    };
    report.emit(out, &[("delivery".into(), &o.latency), ("send".into(), &send_hist)])
}
