//! A Squall cluster on this host: gateway nodes (each several processes
//! on one port), REST backends and the router, as `squall gateway`,
//! `squall backend` and `squall router` processes sharing one
//! configuration file, a fresh database and a RabbitMQ vhost of their own.

use crate::server::{create_realm, listening_url};
use crate::services::{fresh_amqp_vhost, fresh_database};
use crate::{squall_bin, Client};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The cluster's shape.
#[derive(Clone, Copy, Debug)]
pub struct ClusterShape {
    /// Gateway nodes.
    pub nodes: usize,
    /// Processes per gateway node.
    pub processes: u16,
    /// Cores per gateway process.
    pub cores: u16,
    /// REST backends.
    pub backends: usize,
}

impl Default for ClusterShape {
    fn default() -> Self {
        ClusterShape { nodes: 2, processes: 2, cores: 1, backends: 2 }
    }
}

/// A running cluster with one realm, reached through its router.
pub struct Cluster {
    /// The router: what clients use.
    pub url: String,
    /// The broker vhost's URL.
    pub amqp_url: String,
    /// The realm owner (through the router).
    pub owner: Client,
    /// The shape it was started with.
    pub shape: ClusterShape,
    /// `host:port` of each gateway node.
    pub gateways: Vec<String>,
    dir: PathBuf,
    config: PathBuf,
    gateway_children: Vec<Option<Child>>,
    others: Vec<Child>,
}

/// `n` free loopback ports (held together while picked, so distinct).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let held: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<_>>()?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

impl Cluster {
    /// Starts a cluster shaped `shape`: fresh database and vhost, realm,
    /// backends (the first migrates), gateway nodes, router.
    pub fn start(shape: ClusterShape) -> Result<Self> {
        let database_url = fresh_database()?;
        let amqp_url = fresh_amqp_vhost()?;
        let ports = free_ports(1 + shape.nodes + shape.backends)?;
        let addr = |p: u16| format!("127.0.0.1:{p}");
        let router = addr(ports[0]);
        let gateways: Vec<String> = ports[1..=shape.nodes].iter().map(|&p| addr(p)).collect();
        let backends: Vec<String> = ports[1 + shape.nodes..].iter().map(|&p| addr(p)).collect();
        let dir = std::env::temp_dir().join(format!("squall-e2e-cluster-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir)?;
        let list = |v: &[String]| v.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ");
        let config = dir.join("cluster.toml");
        std::fs::write(
            &config,
            format!(
                "gateway_processes = {}\ncores = {}\nshared_secret = \"e2e-{:016x}\"\namqp_url = {:?}\n\
                 heartbeat_min_secs = 45\n\n[backend]\ndatabase_url = {:?}\npool_size = 4\nworker_threads = 1\n\n\
                 [cluster]\ngateways = [{}]\nbackends = [{}]\nrouter_listen = {:?}\n",
                shape.processes,
                shape.cores,
                rand::random::<u64>(),
                amqp_url,
                database_url,
                list(&gateways),
                list(&backends),
                router,
            ),
        )?;
        let api_key = create_realm(&database_url)?;
        let mut cluster = Cluster {
            url: format!("http://{router}"),
            amqp_url,
            owner: Client::new(&format!("http://{router}"), "owner@example.com", &api_key),
            shape,
            gateways,
            dir,
            config,
            gateway_children: Vec::new(),
            others: Vec::new(),
        };
        for index in 0..shape.backends {
            let child = cluster.spawn(&["backend", "--index", &index.to_string()], &format!("backend {index}"))?;
            cluster.others.push(child);
        }
        for node in 0..shape.nodes {
            let child = cluster.spawn_gateway(node)?;
            cluster.gateway_children.push(Some(child));
        }
        let child = cluster.spawn(&["router"], "router")?;
        cluster.others.push(child);
        Ok(cluster)
    }

    fn spawn(&self, args: &[&str], what: &str) -> Result<Child> {
        let state = self.dir.join(args.join("-"));
        let mut child = Command::new(squall_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("SQUALL_STATE_DIR", &state)
            .env("SQUALL_LOG", std::env::var("SQUALL_LOG").unwrap_or_else(|_| "warn".into()))
            .env_remove("SQUALL_DATABASE_URL")
            .env_remove("SQUALL_AMQP_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning squall {what}"))?;
        listening_url(&mut child, what)?;
        Ok(child)
    }

    fn spawn_gateway(&self, node: usize) -> Result<Child> {
        self.spawn(&["gateway", "--node", &node.to_string()], &format!("gateway node {node}"))
    }

    /// Stops gateway node `node` with SIGTERM (its processes save their
    /// queues) and waits; returns whether it exited cleanly.
    pub fn stop_gateway(&mut self, node: usize) -> Result<bool> {
        let Some(mut child) = self.gateway_children.get_mut(node).and_then(Option::take) else {
            bail!("gateway node {node} is not running");
        };
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        for _ in 0..400 {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        bail!("gateway node {node} did not exit within 20 s of SIGTERM")
    }

    /// Starts gateway node `node` again (same state directory).
    pub fn start_gateway(&mut self, node: usize) -> Result<()> {
        let child = self.spawn_gateway(node)?;
        self.gateway_children[node] = Some(child);
        Ok(())
    }

    /// Creates a member (as the owner) and returns a client for them.
    pub fn create_user(&self, email: &str, full_name: &str) -> Result<Client> {
        let (status, body) = self
            .owner
            .post("/api/v1/users", &[("email", email), ("password", "pw-for-tests"), ("full_name", full_name)])?;
        if status != 200 {
            bail!("creating {email}: {status} {body}");
        }
        let (status, body) = Client::anonymous(&self.url)
            .post("/api/v1/fetch_api_key", &[("username", email), ("password", "pw-for-tests")])?;
        if status != 200 {
            bail!("fetch_api_key for {email}: {status} {body}");
        }
        let mut c = Client::new(&self.url, email, body["api_key"].as_str().context("api_key")?);
        c.user_id = body["user_id"].as_i64().context("user_id")?;
        Ok(c)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.gateway_children.iter_mut().flatten().chain(self.others.iter_mut()) {
            // The first process of a node stops its siblings on SIGTERM;
            // a SIGKILL would leave them to their parent-death signal.
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        for child in self.gateway_children.iter_mut().flatten().chain(self.others.iter_mut()) {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
