//! `squall admin ...`: one-off tasks against the database, each printing
//! JSON on success.

use crate::config::Config;
use crate::Admin;
use anyhow::Context;
use serde_json::{json, Value};
use std::path::Path;

/// Runs one administrative task.
pub fn run(cfg: &Config, task: Admin) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let pool = squall_backend::db::connect(&cfg.backend.database_url, 1)?;
    rt.block_on(squall_backend::db::migrate(&pool))?;
    let api = |e: squall_proto::error::ApiError| {
        let cause = e.cause.as_ref().map(|c| format!(" ({c})")).unwrap_or_default();
        anyhow::anyhow!("{}{cause}", e.msg)
    };
    let out = match task {
        Admin::CreateRealm { subdomain, name, owner_email, owner_password, owner_name } => {
            let owner_name = owner_name.unwrap_or_else(|| owner_email.split('@').next().unwrap_or("Owner").to_owned());
            let created = rt
                .block_on(squall_backend::realm::create_realm(
                    &pool,
                    &subdomain,
                    &name,
                    &owner_email,
                    &owner_name,
                    &owner_password,
                ))
                .map_err(api)
                .context("creating the realm")?;
            let host = cfg.external_host();
            let site =
                if subdomain.is_empty() { format!("http://{host}") } else { format!("http://{subdomain}.{host}") };
            json!({"site": site, "email": owner_email, "api_key": created.api_key})
        }
        Admin::CreateUsers { count, prefix, domain, realm, loadtest_state, site } => {
            let accounts = rt
                .block_on(async {
                    let mut db = pool.get().await?;
                    let realm_id = realm_id(&db, &realm).await?;
                    let tx = db.transaction().await?;
                    let made = squall_backend::users::create_users_bulk(&tx, realm_id, &prefix, &domain, count)
                        .await
                        .map_err(api)?;
                    tx.commit().await?;
                    anyhow::Ok(made)
                })
                .context("creating users")?;
            match (loadtest_state, site) {
                (Some(path), Some(site)) => {
                    merge_loadtest_state(&path, &site, &accounts)?;
                    json!({"users": accounts.len(), "state": path, "site": site})
                }
                _ => serde_json::to_value(&accounts)?,
            }
        }
        Admin::SoftDeactivate { inactive_days, realm, no_catch_up } => {
            let report = rt
                .block_on(async {
                    let mut db = pool.get().await?;
                    let realm_id = match &realm {
                        None => None,
                        Some(sub) => Some(realm_id(&db, sub).await?),
                    };
                    squall_backend::soft_deactivation::run_job(&mut db, realm_id, inactive_days, !no_catch_up)
                        .await
                        .map_err(api)
                })
                .context("soft-deactivating users")?;
            json!({"deactivated": report.deactivated, "caught_up_rows": report.caught_up_rows})
        }
    };
    println!("{out}");
    Ok(())
}

async fn realm_id(db: &tokio_postgres::Client, subdomain: &str) -> anyhow::Result<i64> {
    let row = db.query_opt("SELECT id FROM realm WHERE string_id = $1", &[&subdomain]).await?;
    Ok(row.with_context(|| format!("no realm with subdomain {subdomain:?}"))?.get::<_, i32>(0) as i64)
}

/// Adds `accounts` under `site` in a squall-loadtest state file
/// (`{"sites": {site: {email: {email, api_key, user_id}}}}`), keeping what
/// else it holds.
fn merge_loadtest_state(
    path: &Path,
    site: &str,
    accounts: &[squall_backend::users::BulkAccount],
) -> anyhow::Result<()> {
    let mut state: Value = match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parsing {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({"sites": {}}),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let sites = state
        .get_mut("sites")
        .and_then(Value::as_object_mut)
        .with_context(|| format!("{}: not a squall-loadtest state file", path.display()))?;
    let entry = sites.entry(site.to_owned()).or_insert_with(|| json!({}));
    let map = entry.as_object_mut().with_context(|| format!("{}: bad entry for {site}", path.display()))?;
    for a in accounts {
        map.insert(a.email.clone(), json!({"email": a.email, "api_key": a.api_key, "user_id": a.user_id}));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&state)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
