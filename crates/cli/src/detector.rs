//! Detection flags of the CLI, over the pipeline's detector (`trailwarden_pipeline::detector`).

use crate::Cli;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use trailwarden_detect::correlation::parse_timespan;
use trailwarden_detect::Rule;
pub use trailwarden_pipeline::detector::{DetectStats, Detector, RuleConfig, CORRELATION_CAP};

/// Which rules run, and how alerts are deduplicated.
#[derive(Args, Debug, Clone)]
pub struct RuleArgs {
    /// More Sigma rules: a file or a directory (repeatable). The built-in pack and the data
    /// directory's `rules/` are always loaded unless `--no-builtin-rules`.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Do not load the built-in rule pack.
    #[arg(long)]
    pub no_builtin_rules: bool,
    /// Detections of the same rule and group within this window merge into one alert
    /// (30s, 15m, 1h, 1d).
    #[arg(long, default_value = "15m", value_parser = parse_window)]
    pub dedup_window: i64,
    /// An identity the rules never alert on (repeatable; `*` wildcards), like `[detection]
    /// allow_users`.
    #[arg(long = "allow-user", value_name = "USER")]
    pub allow_users: Vec<String>,
    /// A namespace whose workload changes the pod and workload rules skip (repeatable).
    #[arg(long = "allow-namespace", value_name = "NS")]
    pub allow_namespaces: Vec<String>,
    /// An image pattern to trust besides the public registries (repeatable), e.g.
    /// `registry.example.com/*`.
    #[arg(long = "trusted-registry", value_name = "PATTERN")]
    pub trusted_registries: Vec<String>,
}

fn parse_window(s: &str) -> Result<i64, String> {
    parse_timespan(s).ok_or_else(|| format!("{s:?} is not a duration (30s, 15m, 1h, 1d)"))
}

impl RuleArgs {
    /// As the pipeline's configuration.
    pub fn config(&self) -> RuleConfig {
        RuleConfig::new(
            self.rules.clone(),
            !self.no_builtin_rules,
            self.dedup_window,
        )
        .with_lists(
            &Default::default(),
            &self.allow_users,
            &self.allow_namespaces,
            &self.trusted_registries,
        )
    }
}

fn warn(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// Load the rules `a` asks for; problems are printed (a broken file never stops the others).
pub fn load_rules(cli: &Cli, a: &RuleArgs) -> Vec<Rule> {
    let (rules, warnings) = trailwarden_pipeline::detector::load_rules(&cli.data_dir, &a.config());
    warn(&warnings);
    rules
}

/// Say which rules will not run, and why.
pub fn warn_disabled(rules: &[Rule]) {
    warn(&trailwarden_pipeline::detector::disabled_warnings(rules));
}

/// Open the detector for the data directory, printing its warnings.
pub fn open(cli: &Cli, a: &RuleArgs, live: bool) -> Result<Detector> {
    let (d, warnings) = Detector::open(&cli.data_dir, &a.config(), live)?;
    warn(&warnings);
    Ok(d)
}
