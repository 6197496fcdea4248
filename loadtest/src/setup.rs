//! Setting up a scenario through the standard API: users (`POST /users`,
//! `fetch_api_key`) and streams (`POST /users/me/subscriptions` with
//! `principals`). Credentials are cached in a state file so later runs
//! reuse the same accounts without asking for API keys again.

use crate::client::ClientSpec;
use crate::http::{basic_auth, BlockingClient, Response};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An account: email, API key, user id.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Account {
    pub email: String,
    pub api_key: String,
    pub user_id: i64,
}

impl Account {
    /// As a long-poll client with index `idx`.
    pub fn client(&self, idx: usize) -> ClientSpec {
        ClientSpec { idx, email: self.email.clone(), api_key: self.api_key.clone() }
    }
}

/// The administrator the harness acts as, and where.
#[derive(Debug, Clone)]
pub struct Admin {
    pub site: String,
    pub account: Account,
}

/// Reads `[api] email, key, site` from a zuliprc file.
pub fn read_zuliprc(path: &Path) -> Result<(String, String, String)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (mut email, mut key, mut site) = (None, None, None);
    let mut in_api = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_api = line == "[api]";
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        if in_api {
            match k.trim() {
                "email" => email = Some(v.trim().to_owned()),
                "key" => key = Some(v.trim().to_owned()),
                "site" => site = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    Ok((
        email.with_context(|| format!("{}: no email in [api]", path.display()))?,
        key.with_context(|| format!("{}: no key in [api]", path.display()))?,
        site.with_context(|| format!("{}: no site in [api]", path.display()))?,
    ))
}

/// One API call, retried after `Retry-After` on 429.
pub fn call(
    c: &mut BlockingClient,
    method: &str,
    path: &str,
    auth: Option<&str>,
    form: &[(&str, &str)],
) -> Result<Response> {
    for _ in 0..30 {
        let r = c.request(method, path, auth, form)?;
        if r.status != 429 {
            return Ok(r);
        }
        let wait = r.json().ok().and_then(|b| b["retry-after"].as_f64()).unwrap_or(1.0);
        std::thread::sleep(Duration::from_secs_f64(wait.clamp(0.1, 60.0)));
    }
    bail!("{method} {path}: still rate-limited after 30 attempts (disable the server's rate limits for load tests)")
}

impl Admin {
    /// Checks the credentials (`GET /users/me`) and learns the user id.
    pub fn connect(site: &str, email: &str, api_key: &str) -> Result<Admin> {
        let mut c = BlockingClient::new(site)?;
        let r = call(&mut c, "GET", "/api/v1/users/me", Some(&basic_auth(email, api_key)), &[])?;
        let body = r.json()?;
        if r.status != 200 {
            bail!("{site}: the admin credentials do not work: HTTP {} {body}", r.status);
        }
        let user_id = body["user_id"].as_i64().context("users/me: no user_id")?;
        Ok(Admin { site: site.to_owned(), account: Account { email: email.into(), api_key: api_key.into(), user_id } })
    }

    /// HTTP Basic header for the admin.
    pub fn auth(&self) -> String {
        basic_auth(&self.account.email, &self.account.api_key)
    }
}

/// Cached accounts per site: `{site: {email: Account}}`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    sites: BTreeMap<String, BTreeMap<String, Account>>,
}

/// Every account cached for `site` in `state`, by user id.
pub fn cached_accounts(state: &Path, site: &str) -> Result<Vec<Account>> {
    let bytes = std::fs::read(state).with_context(|| format!("reading {}", state.display()))?;
    let cache: State = serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", state.display()))?;
    let mut accounts: Vec<Account> = cache.sites.get(site).map(|m| m.values().cloned().collect()).unwrap_or_default();
    accounts.sort_by_key(|a| a.user_id);
    Ok(accounts)
}

/// `count` accounts named `{prefix}{i}@{domain}`, created when missing,
/// API keys cached in `state`. `parallel` setup connections.
pub fn ensure_users(
    admin: &Admin,
    prefix: &str,
    domain: &str,
    count: usize,
    password: &str,
    state: &Path,
    parallel: usize,
) -> Result<Vec<Account>> {
    let mut cache: State = match std::fs::read(state) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", state.display()))?,
        Err(_) => State::default(),
    };
    let known = cache.sites.entry(admin.site.clone()).or_default().clone();
    let emails: Vec<String> = (0..count).map(|i| format!("{prefix}{i}@{domain}")).collect();
    let missing: Vec<usize> = (0..count).filter(|&i| !known.contains_key(&emails[i])).collect();
    let made = Arc::new(Mutex::new(Vec::<Account>::new()));
    if !missing.is_empty() {
        eprintln!("setup: {} of {count} users to create or look up (cached in {})", missing.len(), state.display());
        let next = Arc::new(AtomicUsize::new(0));
        let missing = Arc::new(missing);
        let emails = Arc::new(emails.clone());
        let mut threads = Vec::new();
        for _ in 0..parallel.max(1) {
            let (next, missing, emails, made, admin) =
                (next.clone(), missing.clone(), emails.clone(), made.clone(), admin.clone());
            let password = password.to_owned();
            threads.push(std::thread::spawn(move || -> Result<()> {
                let mut c = BlockingClient::new(&admin.site)?;
                let auth = admin.auth();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = missing.get(k) else { return Ok(()) };
                    let email = &emails[i];
                    let name = format!("Load Test {i}");
                    let r = call(
                        &mut c,
                        "POST",
                        "/api/v1/users",
                        Some(&auth),
                        &[("email", email), ("password", &password), ("full_name", &name)],
                    )?;
                    if r.status != 200 {
                        let body = r.json()?;
                        if !body["msg"].as_str().unwrap_or_default().contains("already in use") {
                            bail!("creating {email}: HTTP {} {body}", r.status);
                        }
                    }
                    let r = call(
                        &mut c,
                        "POST",
                        "/api/v1/fetch_api_key",
                        None,
                        &[("username", email), ("password", &password)],
                    )?;
                    let body = r.json()?;
                    if r.status != 200 {
                        bail!(
                            "fetch_api_key for {email}: HTTP {} {body} (was it created with another --password?)",
                            r.status
                        );
                    }
                    let account = Account {
                        email: email.clone(),
                        api_key: body["api_key"].as_str().context("no api_key")?.to_owned(),
                        user_id: body["user_id"].as_i64().context("no user_id")?,
                    };
                    made.lock().unwrap_or_else(|p| p.into_inner()).push(account);
                }
            }));
        }
        let mut first_error = None;
        for t in threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => first_error = first_error.or(Some(e)),
                Err(_) => first_error = first_error.or(Some(anyhow::anyhow!("a setup thread panicked"))),
            }
        }
        // Save what was made even when something failed.
        let site = cache.sites.entry(admin.site.clone()).or_default();
        for a in made.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            site.insert(a.email.clone(), a);
        }
        save(state, &cache)?;
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    let site = cache.sites.entry(admin.site.clone()).or_default();
    emails.iter().map(|e| site.get(e).cloned().with_context(|| format!("{e} missing after setup"))).collect()
}

fn save(path: &Path, state: &State) -> Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    std::fs::write(&tmp, serde_json::to_vec(state)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Creates `stream` (if needed) and subscribes `users` and the admin.
pub fn subscribe(admin: &Admin, stream: &str, users: &[i64]) -> Result<()> {
    let mut c = BlockingClient::new(&admin.site)?;
    let auth = admin.auth();
    let subs = json!([{"name": stream}]).to_string();
    let mut batches: Vec<Vec<i64>> = users.chunks(1000).map(<[i64]>::to_vec).collect();
    batches.push(vec![admin.account.user_id]);
    for batch in batches {
        let principals = Value::from(batch).to_string();
        let r = call(
            &mut c,
            "POST",
            "/api/v1/users/me/subscriptions",
            Some(&auth),
            &[("subscriptions", &subs), ("principals", &principals)],
        )?;
        if r.status != 200 {
            bail!("subscribing to {stream}: HTTP {} {}", r.status, String::from_utf8_lossy(&r.body));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zuliprc_api_section() {
        let dir = std::env::temp_dir().join(format!("lt-zuliprc-{}", std::process::id()));
        std::fs::write(&dir, "[other]\nemail=no\n[api]\nemail = a@b.example\nkey=K\nsite=http://127.0.0.1:1\n")
            .unwrap_or(());
        let got = read_zuliprc(&dir).unwrap_or_default();
        let _ = std::fs::remove_file(&dir);
        assert_eq!(got, ("a@b.example".into(), "K".into(), "http://127.0.0.1:1".into()));
    }
}
