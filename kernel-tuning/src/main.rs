//! `squall-tune`: check, apply and render host settings for Squall.

use clap::{Parser, Subcommand};
use squall_kernel_tuning::{apply, check, host::Host, render, sizing::Target};
use std::path::PathBuf;
use std::process::ExitCode;

/// Check, apply and render host settings for tens of thousands of
/// long-poll connections with io_uring.
///
/// Examples:
///   squall-tune check --connections 100000
///   sudo squall-tune apply --connections 1000000 --dry-run
///   squall-tune render --connections 1000000 --cores 16 --file systemd
#[derive(Parser)]
#[command(version, about, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read the running system and say, knob by knob, whether it can hold
    /// the target. Exit code 0: reachable; 1: not reachable.
    Check {
        /// Long-poll connections the gateway should hold.
        #[arg(long, default_value_t = 100_000)]
        connections: u64,
        /// Gateway cores (default: CPUs available).
        #[arg(long)]
        cores: Option<u64>,
        /// Read the host through this root (for testing against a copy).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// Write the sysctl settings for the target to the running kernel
    /// (root only). Never lowers a value.
    Apply {
        /// Long-poll connections the gateway should hold.
        #[arg(long, default_value_t = 100_000)]
        connections: u64,
        /// Print what would change instead of changing it.
        #[arg(long)]
        dry_run: bool,
        /// Write under this root instead of / (for testing).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// Print (or write) the sysctl.d, limits.d and systemd files for a target.
    Render {
        /// Long-poll connections the gateway should hold.
        #[arg(long, default_value_t = 1_000_000)]
        connections: u64,
        /// Gateway cores.
        #[arg(long, default_value_t = 16)]
        cores: u64,
        /// Which file: sysctl, limits, systemd, or all.
        #[arg(long, default_value = "all")]
        file: String,
        /// Write the files into this directory (as kernel-tuning/files/ lays them out).
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

fn cpus() -> u64 {
    std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1)
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("squall-tune: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Check { connections, cores, root } => {
            let report = check::check(&Host::new(root), Target { connections, cores: cores.unwrap_or_else(cpus) });
            print!("{}", report.render());
            Ok(if report.reachable() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Apply { connections, dry_run, root } => {
            // SAFETY: geteuid has no preconditions.
            if root == std::path::Path::new("/") && !dry_run && unsafe { libc::geteuid() } != 0 {
                anyhow::bail!("apply writes /proc/sys and needs root; try --dry-run");
            }
            let host = Host::new(root.clone());
            let mut failed = false;
            for (s, outcome) in apply::apply(&host, &root, Target { connections, cores: cpus() }, dry_run) {
                match outcome {
                    apply::Outcome::Kept(v) => println!("keep   {} = {v} (meets the target)", s.name),
                    apply::Outcome::Set { from } if dry_run => {
                        println!("would  sysctl -w {}=\"{}\"   # now {from}; {}", s.name, s.value, s.why)
                    }
                    apply::Outcome::Set { from } => println!("set    {} = {} (was {from})", s.name, s.value),
                    apply::Outcome::Failed(e) => {
                        failed = true;
                        println!("FAILED {} = {}: {e}", s.name, s.value)
                    }
                }
            }
            if !dry_run {
                println!("\nThese last until reboot; install kernel-tuning/files/99-squall.conf in /etc/sysctl.d to keep them.");
            }
            Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Render { connections, cores, file, write } => {
            let t = Target { connections, cores };
            let files = [
                ("sysctl", "99-squall.conf", render::sysctl_conf(t)),
                ("limits", "squall-limits.conf", render::limits_conf(t)),
                ("systemd", "squall.service.d/90-limits.conf", render::systemd_dropin(t)),
            ];
            if !["all", "sysctl", "limits", "systemd"].contains(&file.as_str()) {
                anyhow::bail!("--file must be sysctl, limits, systemd or all, not {file:?}");
            }
            for (kind, name, text) in files.iter().filter(|f| file == "all" || f.0 == file) {
                match &write {
                    Some(dir) => {
                        let path = dir.join(name);
                        if let Some(parent) = path.parent() {
                            std::fs::create_dir_all(parent)?;
                        }
                        std::fs::write(&path, text)?;
                        println!("wrote {} ({kind})", path.display());
                    }
                    None => println!("{text}"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
