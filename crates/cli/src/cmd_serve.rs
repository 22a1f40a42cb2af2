//! `trailwarden serve`, `trailwarden tokens`, `trailwarden config`.

use crate::output::{OutputFormat, Table};
use crate::{store, Cli};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use trailwarden_server::auth::Role;
use trailwarden_server::tokens::TokenStore;
use trailwarden_server::Config;

/// Arguments of `trailwarden serve`.
#[derive(Args, Debug)]
#[command(after_help = "\
On first start the data directory gets its signing keys, a self-signed TLS certificate
(keys/tls.crt) and an admin token, printed once on stdout. Create more tokens with
`trailwarden tokens create --role ingest` (roles: ingest, viewer, analyst, reviewer, admin).

Examples:
  trailwarden serve
  trailwarden serve --config /etc/trailwarden/trailwarden.toml
  TRAILWARDEN_HTTP_LISTEN=0.0.0.0:8443 TRAILWARDEN_SYSLOG_TCP=0.0.0.0:6514 trailwarden serve
  curl --cacert trailwarden-data/keys/tls.crt -H \"Authorization: Bearer $TOKEN\" \\
       -H 'Content-Type: application/json' --data-binary @audit.json \\
       https://127.0.0.1:8443/v1/ingest/k8s-audit")]
pub struct ServeArgs {
    /// Configuration file (TOML; see docs/deploy/trailwarden.toml).
    #[arg(long, short = 'c', env = "TRAILWARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address (overrides http.listen).
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// Cluster role (overrides cluster.role): all (one process, no NATS), ingest (publish to
    /// JetStream), writer (the partition's ledger writer; a second one waits as a standby).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// NATS server URLs, comma-separated (overrides cluster.nats_url).
    #[arg(long, value_name = "URLS")]
    pub nats_url: Option<String>,
    /// Partition (overrides cluster.partition): usually the Kubernetes cluster's name.
    #[arg(long, value_name = "NAME")]
    pub partition: Option<String>,
}

/// `trailwarden tokens`.
#[derive(Subcommand, Debug)]
pub enum TokensCmd {
    /// Create a token; prints only the token on stdout (it is not stored, only its hash).
    Create {
        /// Role: ingest, viewer, analyst, reviewer, admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// A name for people (defaults to the role).
        #[arg(long)]
        name: Option<String>,
        /// Expire after this long (e.g. 90d).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens (never the tokens themselves).
    List,
    /// Revoke a token by id (or by name when unique); a running server stops accepting it
    /// within a second.
    Revoke {
        /// Token id (`tok-…`) or name.
        id: String,
    },
}

/// `trailwarden config`.
#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Check a configuration file (and the environment's overrides); print the result.
    Check {
        /// Configuration file.
        #[arg(long, short = 'c', env = "TRAILWARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s)
        .ok_or_else(|| format!("{s:?} is not a role (ingest, viewer, analyst, reviewer, admin)"))
}

/// The `TRAILWARDEN_<SECTION>_<KEY>` overrides in the environment.
pub fn env_vars() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("TRAILWARDEN_")
                && !matches!(
                    k.as_str(),
                    "TRAILWARDEN_DATA_DIR"
                        | "TRAILWARDEN_CONFIG"
                        | "TRAILWARDEN_USER"
                        | "TRAILWARDEN_ANCHOR_DIR"
                        | "TRAILWARDEN_SEGMENT_BYTES"
                        | "TRAILWARDEN_ORIGIN"
                )
        })
        .collect()
}

/// `trailwarden serve`.
pub fn serve(cli: &Cli, a: &ServeArgs) -> Result<u8> {
    let (mut cfg, applied) = match Config::load(a.config.as_deref(), &env_vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(crate::EXIT_USAGE);
        }
    };
    if let Some(l) = &a.listen {
        cfg.http.listen = l.clone();
    }
    if let Some(r) = &a.role {
        match r.parse() {
            Ok(r) => cfg.cluster.role = r,
            Err(e) => {
                eprintln!("error: --role: {e}");
                return Ok(crate::EXIT_USAGE);
            }
        }
    }
    if let Some(u) = &a.nats_url {
        cfg.cluster.nats_url = Some(u.clone());
    }
    if let Some(p) = &a.partition {
        cfg.cluster.partition = p.clone();
    }
    if a.listen.is_some() || a.role.is_some() || a.nats_url.is_some() || a.partition.is_some() {
        if let Err(e) = cfg.check() {
            eprintln!("error: {e}");
            return Ok(crate::EXIT_USAGE);
        }
    }
    for v in applied {
        eprintln!("config: {v} applied from the environment");
    }
    let data_dir = cfg.data_dir.clone().unwrap_or_else(|| cli.data_dir.clone());
    let opts = store::writer_options(cli, "serve")?;
    let shutdown = std::future::pending::<()>();
    #[cfg(feature = "ui")]
    let mount = Some(trailwarden_ui::mount());
    #[cfg(not(feature = "ui"))]
    let mount = None;
    let ui_on = mount.is_some() && cfg.ui.enabled;
    let r = trailwarden_server::serve_with(
        cfg,
        data_dir.clone(),
        opts,
        mount,
        |s| {
            for w in &s.warnings {
                eprintln!("warning: {w}");
            }
            eprintln!(
                "trailwarden serving {}://{} (data directory {}, {} ledger records)",
                s.scheme,
                s.http,
                data_dir.display(),
                s.ledger_size
            );
            if ui_on {
                eprintln!(
                    "web UI at {}://{}/ui/ (sign in with a token)",
                    s.scheme, s.http
                );
            }
            if let Some((crt, created)) = &s.tls_cert {
                eprintln!(
                    "TLS certificate {}{} sha256 {}",
                    crt.display(),
                    if *created {
                        " (self-signed, created now)"
                    } else {
                        ""
                    },
                    s.tls_fingerprint.as_deref().unwrap_or("?")
                );
            }
            for (k, addr) in &s.syslog {
                eprintln!("syslog {k} on {addr}");
            }
            if let Some(t) = &s.admin_token {
                eprintln!("admin token (shown once; store it now, e.g. in your password manager):");
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{t}");
                let _ = out.flush();
            }
        },
        shutdown,
    );
    match r {
        Ok(Some(cp)) => {
            eprintln!("stopped: final checkpoint at size {}", cp.checkpoint.size);
            Ok(crate::EXIT_OK)
        }
        Ok(None) => {
            eprintln!("stopped (ingest node: every acknowledged batch is in JetStream)");
            Ok(crate::EXIT_OK)
        }
        Err(e @ trailwarden_server::ServerError::Ledger(_))
        | Err(e @ trailwarden_server::ServerError::Stopped(_)) => {
            eprintln!("error: {e}");
            Ok(crate::EXIT_STORAGE)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(crate::EXIT_CANNOT_RUN)
        }
    }
}

/// `trailwarden tokens`.
pub fn tokens(cli: &Cli, c: &TokensCmd) -> Result<u8> {
    let mut store_ = TokenStore::open(&cli.data_dir).context("token store")?;
    match c {
        TokensCmd::Create {
            role,
            name,
            expires,
        } => {
            let expires = match expires {
                Some(e) => Some(trailwarden_model::Timestamp(
                    trailwarden_model::Timestamp::now().0
                        + trailwarden_model::parse_duration(e)
                            .with_context(|| format!("--expires {e:?}"))?,
                )),
                None => None,
            };
            let name = name.clone().unwrap_or_else(|| role.as_str().to_string());
            if !cli.data_dir.join("identity.json").exists() {
                // the ledger exists before anything it should record
                let (l, _) = store::open_writer(cli, "init")?;
                l.close("initialized")?;
            }
            let (tok, e) = store_.create(&name, *role, expires)?;
            println!("{tok}");
            eprintln!("created {} ({}, role {})", e.id, e.name, e.role.as_str());
            if let Some(w) = store::record_access(
                cli,
                "token-create",
                &format!("{} ({}) role {}", e.id, e.name, e.role.as_str()),
                0,
                "success",
            ) {
                eprintln!("warning: {w}");
            }
            Ok(crate::EXIT_OK)
        }
        TokensCmd::List => {
            let mut t = Table::new(&["id", "name", "role", "created", "expires", "revoked"]);
            for e in store_.entries() {
                t.row(vec![
                    e.id.clone(),
                    e.name.clone(),
                    e.role.as_str().to_string(),
                    e.created.to_string(),
                    e.expires.map(|x| x.to_string()).unwrap_or_default(),
                    e.revoked.map(|x| x.to_string()).unwrap_or_default(),
                ]);
            }
            let mut out = std::io::stdout().lock();
            match cli.output {
                OutputFormat::Json | OutputFormat::Sarif => writeln!(out, "{}", serde_json::to_string(store_.entries().iter().map(|e| serde_json::json!({"id": e.id, "name": e.name, "role": e.role, "created": e.created, "expires": e.expires, "revoked": e.revoked})).collect::<Vec<_>>().as_slice())?)?,
                OutputFormat::Csv => t.print_csv(&mut out)?,
                OutputFormat::Table => t.print_text(&mut out)?,
            }
            Ok(crate::EXIT_OK)
        }
        TokensCmd::Revoke { id } => match store_.revoke(id) {
            Ok(e) => {
                eprintln!("revoked {} ({}, role {})", e.id, e.name, e.role.as_str());
                if let Some(w) = store::record_access(
                    cli,
                    "token-revoke",
                    &format!("{} ({})", e.id, e.name),
                    0,
                    "success",
                ) {
                    eprintln!("warning: {w}");
                }
                Ok(crate::EXIT_OK)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(crate::EXIT_PROBLEM)
            }
        },
    }
}

/// `trailwarden config`.
pub fn config(_cli: &Cli, c: &ConfigCmd) -> Result<u8> {
    match c {
        ConfigCmd::Check { config } => match Config::load(config.as_deref(), &env_vars()) {
            Ok((cfg, applied)) => {
                for v in applied {
                    eprintln!("{v} applied from the environment");
                }
                print!("{}", cfg.to_toml());
                for l in cfg.alerting.describe() {
                    eprintln!("{l}");
                }
                eprintln!("configuration ok");
                Ok(crate::EXIT_OK)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(crate::EXIT_PROBLEM)
            }
        },
    }
}
