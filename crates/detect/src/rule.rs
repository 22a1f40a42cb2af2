//! Sigma rules: YAML (single rules and `action: global|repeat|reset` collections) into a model,
//! compiled once into matchers; a rule that uses something not implemented loads disabled, with
//! the reason.

use crate::condition::{self, Cond};
use crate::doc::{Doc, Normalized, Val};
use crate::matcher::{self, CmpOp, Matcher, Pattern, Piece, StrSet};
use crate::DetectError;
use std::collections::BTreeSet;
use std::path::Path;
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlLoader};

/// Where a rule's events come from (Sigma `logsource`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSource {
    /// e.g. `application`, `process_creation`.
    pub category: Option<String>,
    /// e.g. `kubernetes`, `linux`, `azure`.
    pub product: Option<String>,
    /// e.g. `audit`, `auditd`, `activitylogs`.
    pub service: Option<String>,
}

impl LogSource {
    /// `category/product/service`, leaving out what is not set (how listings show it).
    pub fn label(&self) -> String {
        [&self.category, &self.product, &self.service]
            .iter()
            .filter_map(|x| x.as_deref())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The log source of events of a trailwarden input format.
    pub fn of_format(format: &str) -> LogSource {
        let (c, p, s) = match format {
            "k8s-audit" | "aks" | "gke" => (Some("application"), "kubernetes", "audit"),
            "auditd" => (None, "linux", "auditd"),
            "azure-activity" => (None, "azure", "activitylogs"),
            "signin" => (None, "azure", "signinlogs"),
            "entra-audit" => (None, "azure", "auditlogs"),
            "syslog" => (None, "linux", "syslog"),
            other => (None, other, other),
        };
        LogSource {
            category: c.map(str::to_string),
            product: Some(p.to_string()),
            service: Some(s.to_string()),
        }
    }

    /// Does a rule written for `self` apply to events from `events`? Every field the rule names
    /// must be equal (case-insensitive); a category the events do not state does not exclude.
    pub fn covers(&self, events: &LogSource) -> bool {
        let eq = |rule: &Option<String>, ev: &Option<String>, lenient: bool| match (rule, ev) {
            (None, _) => true,
            (Some(r), Some(e)) => r.eq_ignore_ascii_case(e),
            (Some(_), None) => lenient,
        };
        eq(&self.product, &events.product, false)
            && eq(&self.service, &events.service, false)
            && eq(&self.category, &events.category, true)
    }
}

/// Sigma levels.
pub const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

/// One field test of a search: `field|modifiers: values`.
#[derive(Clone, Debug)]
struct FieldTest {
    field: String,
    matchers: Vec<Matcher>,
    all: bool,
    /// The same test, compiled for a list of case-insensitive strings (any of them).
    set: Option<StrSet>,
    /// The field, when a normalized event holds it (resolved once, not per event).
    normalized: Option<Normalized>,
    /// Its number in the engine's [`Memo`] (tests that are the same in several rules share
    /// it); `NO_MEMO` outside an engine.
    memo: u32,
}

const NO_MEMO: u32 = u32::MAX;

/// Results of field tests for the document being evaluated: a test several rules make (the
/// control plane's identities, a failed status) is evaluated once per document. Costly tests
/// (a user agent against a list of substrings, a user name against dozens of prefixes, an
/// address against networks) also remember their answer per value across documents: a
/// cluster has a few hundred user names and agents, not one per event.
#[derive(Debug, Default)]
pub struct Memo {
    stamp: std::cell::Cell<u32>,
    /// Per test: the stamp it was evaluated at, and the result.
    results: Vec<std::cell::Cell<(u32, bool)>>,
    /// Per test: its answers per string value, when the test is costly and looks at one value
    /// at a time.
    values: Vec<Option<std::cell::RefCell<ValueCache>>>,
}

/// Values longer than this are tested every time (a cache entry holds its value).
const VALUE_CACHE_KEY: usize = 256;
/// Answers remembered per test (then forgotten all at once and refilled): at most
/// `VALUE_CACHE_ENTRIES × VALUE_CACHE_KEY` bytes of values per test.
const VALUE_CACHE_ENTRIES: usize = 1024;
/// Lookups between checks of the hit rate.
const VALUE_CACHE_WINDOW: u32 = 8192;
/// Evaluations without the cache after a window where fewer than half the lookups hit (a field
/// with a new value per event: request URIs, addresses of a scan).
const VALUE_CACHE_REST: u32 = 65_536;

/// One costly test's answers by value (see [`Memo`]).
#[derive(Debug, Default)]
struct ValueCache {
    answers: std::collections::HashMap<Box<str>, bool, foldhash::fast::RandomState>,
    lookups: u32,
    hits: u32,
    /// Evaluations left before the cache is tried again.
    resting: u32,
}

impl ValueCache {
    /// The answer for `v`, remembered or computed by `test`.
    fn answer(&mut self, v: &str, test: impl FnOnce() -> bool) -> bool {
        if self.resting > 0 {
            self.resting -= 1;
            return test();
        }
        if v.len() > VALUE_CACHE_KEY {
            return test();
        }
        self.lookups += 1;
        if let Some(&known) = self.answers.get(v) {
            self.hits += 1;
            return known;
        }
        let answer = test();
        if self.answers.len() >= VALUE_CACHE_ENTRIES {
            self.answers.clear();
        }
        self.answers.insert(v.into(), answer);
        if self.lookups >= VALUE_CACHE_WINDOW {
            if self.hits < self.lookups / 2 {
                self.resting = VALUE_CACHE_REST;
                self.answers = Default::default();
            }
            self.lookups = 0;
            self.hits = 0;
        }
        answer
    }
}

impl Memo {
    fn new(tests: usize) -> Memo {
        Memo {
            stamp: std::cell::Cell::new(1),
            results: (0..tests)
                .map(|_| std::cell::Cell::new((0, false)))
                .collect(),
            values: (0..tests).map(|_| None).collect(),
        }
    }

    fn cache(&self, id: u32) -> Option<&std::cell::RefCell<ValueCache>> {
        self.values.get(id as usize)?.as_ref()
    }

    /// Forget every result: the next document is a new one.
    pub fn clear(&self) {
        let next = self.stamp.get().wrapping_add(1);
        if next == 0 {
            for r in &self.results {
                r.set((0, false));
            }
            self.stamp.set(1);
        } else {
            self.stamp.set(next);
        }
    }

    fn get(&self, id: u32) -> Option<bool> {
        let (at, v) = self.results.get(id as usize)?.get();
        (at == self.stamp.get()).then_some(v)
    }

    fn set(&self, id: u32, v: bool) {
        if let Some(r) = self.results.get(id as usize) {
            r.set((self.stamp.get(), v));
        }
    }
}

/// Number the field tests of `rules` for one [`Memo`]: equal tests (same field, modifiers and
/// values) get the same number. Returns the memo.
pub fn memoize(rules: &mut [Rule]) -> Memo {
    let mut ids: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let mut cached = Vec::new();
    for r in rules.iter_mut() {
        for (_, s) in &mut r.searches {
            let Search::Fields(alts) = s else { continue };
            for t in alts.iter_mut().flatten() {
                let next = ids.len() as u32;
                // a regex prints its pattern but not its flags (`re` and `re|i` print alike):
                // a test with one is never shared
                let regex = t.matchers.iter().any(|m| {
                    matches!(
                        m,
                        Matcher::Str {
                            pattern: Pattern::Regex(_),
                            ..
                        }
                    )
                });
                let key = if regex {
                    format!("regex\0{next}")
                } else {
                    format!("{}\0{}\0{:?}", t.field, t.all, t.matchers)
                };
                t.memo = *ids.entry(key).or_insert(next);
                if t.memo == next && t.caches_values() {
                    cached.push(next);
                }
            }
        }
    }
    let mut memo = Memo::new(ids.len());
    for id in cached {
        if let Some(slot) = memo.values.get_mut(id as usize) {
            *slot = Some(Default::default());
        }
    }
    memo
}

impl FieldTest {
    fn new(field: String, matchers: Vec<Matcher>, all: bool) -> FieldTest {
        // an empty list matches nothing (`any` of nothing), with `all` too
        let all = all && !matchers.is_empty();
        let set = if all || matchers.len() < 2 {
            None
        } else {
            StrSet::new(&matchers)
        };
        FieldTest {
            normalized: Normalized::of(&field),
            field,
            all,
            matchers,
            set,
            memo: NO_MEMO,
        }
    }
}

/// A search (a named entry of `detection`).
#[derive(Clone, Debug)]
enum Search {
    /// Maps: any of them (a list of maps), all the tests of one.
    Fields(Vec<Vec<FieldTest>>),
    /// Keywords: any (or, with `'|all'`, all) of these patterns in the document's text.
    Keywords(Vec<Pattern>, bool),
}

/// A loaded rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// `id` (or the file and document when the rule has none).
    pub id: String,
    /// `title`.
    pub title: String,
    /// `description`.
    pub description: String,
    /// `status`.
    pub status: String,
    /// `level`.
    pub level: String,
    /// `tags`.
    pub tags: Vec<String>,
    /// `falsepositives`.
    pub falsepositives: Vec<String>,
    /// `author`.
    pub author: String,
    /// `logsource`.
    pub logsource: LogSource,
    /// `name`: how correlation rules refer to it (besides its id).
    pub name: Option<String>,
    /// File (and document number in a collection).
    pub source: String,
    /// The correlation, when this is a correlation rule.
    pub correlation: Option<crate::correlation::Correlation>,
    /// What the rule uses (modifiers, condition forms, …), for the compatibility table.
    pub features: BTreeSet<String>,
    /// Why the rule does not run, when it does not.
    pub disabled: Option<String>,
    searches: Vec<(String, Search)>,
    condition: Vec<Plan>,
}

/// Field names SigmaHQ's rules use that are not where the data is, per product.
pub fn field_alias(product: Option<&str>, field: &str) -> Option<&'static str> {
    match (product, field) {
        (Some("kubernetes"), "apiGroup") => Some("objectRef.apiGroup"),
        (Some("kubernetes"), "hostPath") => Some("requestObject.spec.volumes.hostPath.path"),
        (Some("kubernetes"), "capabilities") => {
            Some("requestObject.spec.containers.securityContext.capabilities.add")
        }
        _ => None,
    }
}

const MODIFIERS: &[&str] = &[
    "contains",
    "startswith",
    "endswith",
    "all",
    "re",
    "i",
    "m",
    "s",
    "cidr",
    "base64",
    "base64offset",
    "windash",
    "exists",
    "lt",
    "lte",
    "gt",
    "gte",
    "fieldref",
    "cased",
    "expand",
    "wide",
    "utf16le",
    "utf16be",
    "utf16",
];

pub(crate) fn text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn get<'a>(h: &'a Hash, key: &str) -> Option<&'a Yaml> {
    h.get(&Yaml::String(key.to_string()))
}

pub(crate) fn strings(y: Option<&Yaml>) -> Vec<String> {
    match y {
        Some(Yaml::Array(a)) => a.iter().filter_map(text).collect(),
        Some(y) => text(y).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Deep merge for rule collections: `over` wins, maps merge recursively.
fn merge(base: &Hash, over: &Hash) -> Hash {
    let mut out = base.clone();
    for (k, v) in over {
        let merged = match (out.get(k), v) {
            (Some(Yaml::Hash(a)), Yaml::Hash(b)) => Yaml::Hash(merge(a, b)),
            _ => v.clone(),
        };
        out.insert(k.clone(), merged);
    }
    out
}

/// Load every rule in a file (one rule, or a collection of documents).
pub fn load_file(path: &Path) -> Result<Vec<Rule>, DetectError> {
    let text = std::fs::read_to_string(path).map_err(|e| DetectError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    load_str(&text, &path.display().to_string())
}

/// Is this file a scheduled query rule (`kind: scheduled` at the top level) rather than Sigma?
pub fn is_scheduled(yaml: &str) -> bool {
    yaml.lines()
        .any(|l| l.trim_end() == "kind: scheduled" || l.trim_end() == "kind: Scheduled")
}

/// How deep YAML may nest (flow brackets, `- ` markers on one line) and how far a line may be
/// indented: the YAML parser recurses per level, and a rule file must not be able to overflow
/// the stack of whoever loads it.
pub const MAX_YAML_NESTING: usize = 64;
/// See [`MAX_YAML_NESTING`].
pub const MAX_YAML_INDENT: usize = 256;

fn check_nesting(yaml: &str) -> Result<(), String> {
    let mut flow = 0usize;
    let mut quote: Option<char> = None;
    for (n, line) in yaml.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        let indent = line.len() - body.len();
        if indent > MAX_YAML_INDENT {
            return Err(format!(
                "line {}: indented {indent} columns (at most {MAX_YAML_INDENT}): nested too deeply",
                n + 1
            ));
        }
        let mut dashes = 0;
        let mut rest = body;
        while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
            dashes += 1;
            rest = r.trim_start_matches(' ');
        }
        if dashes > MAX_YAML_NESTING {
            return Err(format!(
                "line {}: {dashes} sequence markers: nested more than {MAX_YAML_NESTING} levels",
                n + 1
            ));
        }
        let mut prev = ' ';
        for c in body.chars() {
            match (quote, c) {
                (None, '#') if prev == ' ' => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q && !(q == '"' && prev == '\\') => quote = None,
                (None, '[' | '{') => {
                    flow += 1;
                    if flow > MAX_YAML_NESTING {
                        return Err(format!(
                            "line {}: brackets nested more than {MAX_YAML_NESTING} levels",
                            n + 1
                        ));
                    }
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
    }
    Ok(())
}

/// Load every rule in YAML text; `origin` names it in messages.
pub fn load_str(yaml: &str, origin: &str) -> Result<Vec<Rule>, DetectError> {
    // scheduled query rules live beside the Sigma rules; they are not Sigma
    if is_scheduled(yaml) {
        return Ok(Vec::new());
    }
    check_nesting(yaml).map_err(|m| DetectError::Yaml {
        path: origin.into(),
        message: m,
    })?;
    let docs = YamlLoader::load_from_str(yaml).map_err(|e| DetectError::Yaml {
        path: origin.into(),
        message: e.to_string(),
    })?;
    let many = docs.len() > 1;
    let mut global: Option<Hash> = None;
    let mut previous: Option<Hash> = None;
    let mut out = Vec::new();
    for (n, doc) in docs.iter().enumerate() {
        let source = if many {
            format!("{origin}#{}", n + 1)
        } else {
            origin.to_string()
        };
        let Yaml::Hash(h) = doc else {
            if matches!(doc, Yaml::Null) {
                continue;
            }
            return Err(DetectError::Invalid {
                path: source,
                message: "a rule must be a mapping of keys (title, logsource, detection, …)".into(),
            });
        };
        let mut h = h.clone();
        match get(&h, "action").and_then(text).as_deref() {
            Some("global") => {
                h.remove(&Yaml::String("action".into()));
                global = Some(h);
                continue;
            }
            Some("reset") => {
                global = None;
                previous = None;
                continue;
            }
            Some("repeat") => {
                h.remove(&Yaml::String("action".into()));
                if let Some(p) = &previous {
                    h = merge(p, &h);
                }
            }
            Some(other) => {
                return Err(DetectError::Invalid {
                    path: source,
                    message: format!("unknown collection action `{other}` (global, repeat, reset)"),
                })
            }
            None => {}
        }
        let full = match &global {
            Some(g) => merge(g, &h),
            None => h.clone(),
        };
        previous = Some(full.clone());
        out.push(build(&full, source, many)?);
    }
    Ok(out)
}

fn build(h: &Hash, source: String, collection: bool) -> Result<Rule, DetectError> {
    let invalid = |m: String| DetectError::Invalid {
        path: source.clone(),
        message: m,
    };
    let title = get(h, "title")
        .and_then(text)
        .ok_or_else(|| invalid("missing `title`".into()))?;
    let level = get(h, "level")
        .and_then(text)
        .unwrap_or_else(|| "medium".into());
    if !LEVELS.contains(&level.as_str()) {
        return Err(invalid(format!(
            "`level: {level}` is not a Sigma level (informational, low, medium, high, critical)"
        )));
    }
    let ls = match get(h, "logsource") {
        Some(Yaml::Hash(l)) => LogSource {
            category: get(l, "category").and_then(text),
            product: get(l, "product").and_then(text),
            service: get(l, "service").and_then(text),
        },
        _ => LogSource::default(),
    };
    let mut rule = Rule {
        id: get(h, "id")
            .and_then(text)
            .unwrap_or_else(|| source.clone()),
        title,
        description: get(h, "description").and_then(text).unwrap_or_default(),
        status: get(h, "status").and_then(text).unwrap_or_default(),
        level,
        tags: strings(get(h, "tags")),
        falsepositives: strings(get(h, "falsepositives")),
        author: get(h, "author").and_then(text).unwrap_or_default(),
        logsource: ls,
        name: get(h, "name").and_then(text),
        source: source.clone(),
        correlation: None,
        features: BTreeSet::new(),
        disabled: None,
        searches: Vec::new(),
        condition: Vec::new(),
    };
    if collection {
        rule.features.insert("collection".into());
    }
    if let Some(c) = get(h, "correlation") {
        match crate::correlation::parse(c) {
            Ok(c) => {
                rule.features
                    .insert(format!("correlation: {}", c.kind.name()));
                rule.correlation = Some(c);
            }
            Err(why) => {
                rule.features.insert("correlation".into());
                rule.disabled = Some(why);
            }
        }
        return Ok(rule);
    }
    let Some(Yaml::Hash(det)) = get(h, "detection") else {
        return Err(invalid(
            "missing `detection` (a mapping with a `condition`)".into(),
        ));
    };
    if let Err(reason) = compile(&mut rule, det) {
        rule.disabled = Some(reason);
        rule.searches.clear();
        rule.condition.clear();
    }
    Ok(rule)
}

fn compile(rule: &mut Rule, det: &Hash) -> Result<(), String> {
    let product = rule.logsource.product.clone();
    for (k, v) in det {
        let Some(name) = text(k) else { continue };
        if name == "condition" || name == "timeframe" {
            if name == "timeframe" {
                rule.features.insert("timeframe".into());
            }
            continue;
        }
        let search = compile_search(v, product.as_deref(), &mut rule.features)
            .map_err(|e| format!("search `{name}`: {e}"))?;
        rule.searches.push((name, search));
    }
    let conds = strings(det.get(&Yaml::String("condition".into())));
    if conds.is_empty() {
        return Err("`detection` has no `condition`".into());
    }
    for c in conds {
        let parsed = condition::parse(&c).map_err(|e| format!("condition `{c}`: {e}"))?;
        note_condition(&parsed, &mut rule.features);
        let plan = resolve(&parsed, &rule.searches).map_err(|e| format!("condition `{c}`: {e}"))?;
        rule.condition.push(plan);
    }
    Ok(())
}

fn note_condition(c: &Cond, f: &mut BTreeSet<String>) {
    match c {
        Cond::Search(_) => {}
        Cond::Not(x) => {
            f.insert("condition: not".into());
            note_condition(x, f);
        }
        Cond::And(xs) | Cond::Or(xs) => {
            f.insert(format!(
                "condition: {}",
                if matches!(c, Cond::And(_)) {
                    "and"
                } else {
                    "or"
                }
            ));
            xs.iter().for_each(|x| note_condition(x, f));
        }
        Cond::Of { all, pattern } => {
            f.insert(format!(
                "condition: {} of {}",
                if *all { "all" } else { "1" },
                if pattern == "them" { "them" } else { "pattern" }
            ));
        }
    }
}

/// A condition with its search names resolved to indexes (quantifier patterns expanded), once
/// at load time: evaluation looks nothing up by name.
#[derive(Clone, Debug)]
enum Plan {
    Search(usize),
    Not(Box<Plan>),
    And(Vec<Plan>),
    Or(Vec<Plan>),
    Of { all: bool, searches: Vec<usize> },
}

fn resolve(c: &Cond, searches: &[(String, Search)]) -> Result<Plan, String> {
    let index = |n: &str| searches.iter().position(|(s, _)| s == n);
    Ok(match c {
        Cond::Search(n) => Plan::Search(
            index(n).ok_or_else(|| format!("names `{n}`, which is not a search of this rule"))?,
        ),
        Cond::Not(x) => Plan::Not(Box::new(resolve(x, searches)?)),
        Cond::And(xs) => Plan::And(
            xs.iter()
                .map(|x| resolve(x, searches))
                .collect::<Result<_, _>>()?,
        ),
        Cond::Or(xs) => Plan::Or(
            xs.iter()
                .map(|x| resolve(x, searches))
                .collect::<Result<_, _>>()?,
        ),
        Cond::Of { all, pattern } => {
            let picked: Vec<usize> =
                condition::select(pattern, searches.iter().map(|(s, _)| s.as_str()))
                    .into_iter()
                    .filter_map(index)
                    .collect();
            if picked.is_empty() {
                return Err(format!("`{pattern}` selects no search of this rule"));
            }
            Plan::Of {
                all: *all,
                searches: picked,
            }
        }
    })
}

fn compile_search(
    v: &Yaml,
    product: Option<&str>,
    f: &mut BTreeSet<String>,
) -> Result<Search, String> {
    match v {
        // `'|all': [keywords]`: every keyword must be in the text
        Yaml::Hash(h)
            if h.len() == 1 && h.keys().next().and_then(text).as_deref() == Some("|all") =>
        {
            f.insert("keywords".into());
            f.insert("modifier: all".into());
            let items = match h.values().next() {
                Some(Yaml::Array(a)) => a.clone(),
                Some(one) => vec![one.clone()],
                None => Vec::new(),
            };
            items
                .iter()
                .map(|i| keyword(i, f))
                .collect::<Result<Vec<_>, _>>()
                .map(|k| Search::Keywords(k, true))
        }
        Yaml::Hash(h) => Ok(Search::Fields(vec![compile_map(h, product, f)?])),
        Yaml::Array(items) if items.iter().all(|i| matches!(i, Yaml::Hash(_))) => {
            let mut alts = Vec::new();
            for i in items {
                if let Yaml::Hash(h) = i {
                    alts.push(compile_map(h, product, f)?);
                }
            }
            Ok(Search::Fields(alts))
        }
        Yaml::Array(items) => {
            f.insert("keywords".into());
            items
                .iter()
                .map(|i| keyword(i, f))
                .collect::<Result<Vec<_>, _>>()
                .map(|k| Search::Keywords(k, false))
        }
        other => {
            f.insert("keywords".into());
            Ok(Search::Keywords(vec![keyword(other, f)?], false))
        }
    }
}

fn keyword(y: &Yaml, f: &mut BTreeSet<String>) -> Result<Pattern, String> {
    let t = text(y).ok_or("a keyword must be a string or a number")?;
    let mut p = matcher::pieces(&t);
    if p.iter().any(|x| !matches!(x, Piece::Lit(_))) {
        f.insert("wildcards".into());
    }
    p.insert(0, Piece::Star);
    p.push(Piece::Star);
    matcher::compile_pieces(&p, false)
}

fn compile_map(
    h: &Hash,
    product: Option<&str>,
    f: &mut BTreeSet<String>,
) -> Result<Vec<FieldTest>, String> {
    let mut tests = Vec::new();
    for (k, v) in h {
        let key = text(k).ok_or("a field name must be a string")?;
        let mut parts = key.split('|');
        let raw_field = parts.next().unwrap_or_default().to_string();
        let mods: Vec<&str> = parts.collect();
        for m in &mods {
            if !MODIFIERS.contains(m) {
                return Err(format!("unsupported modifier `{m}` on `{raw_field}`"));
            }
            f.insert(format!("modifier: {m}"));
        }
        let field = match field_alias(product, &raw_field) {
            Some(real) => {
                f.insert(format!("field mapping: {raw_field}"));
                real.to_string()
            }
            None => raw_field.clone(),
        };
        if raw_field.is_empty() {
            return Err("a field test with an empty field name".into());
        }
        let values: Vec<&Yaml> = match v {
            Yaml::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        let all = mods.contains(&"all");
        let mut matchers = Vec::new();
        for val in values {
            matchers.extend(value_matchers(val, &mods, f)?);
        }
        tests.push(FieldTest::new(field, matchers, all));
    }
    Ok(tests)
}

fn value_matchers(
    v: &Yaml,
    mods: &[&str],
    f: &mut BTreeSet<String>,
) -> Result<Vec<Matcher>, String> {
    let has = |m: &str| mods.contains(&m);
    if has("expand") {
        let t = text(v).ok_or("`expand` takes a string with a %placeholder%")?;
        let rest: Vec<&str> = mods.iter().copied().filter(|m| *m != "expand").collect();
        let mut out = Vec::new();
        for value in crate::placeholders::expand(&t)? {
            out.extend(value_matchers(&Yaml::String(value), &rest, f)?);
        }
        return Ok(out);
    }
    if has("exists") {
        return match v {
            Yaml::Boolean(b) => Ok(vec![Matcher::Exists(*b)]),
            _ => Err("`exists` takes true or false".into()),
        };
    }
    if matches!(v, Yaml::Null) {
        f.insert("null".into());
        return Ok(vec![Matcher::Null]);
    }
    let t = text(v).ok_or("a value must be a string, number, boolean or null")?;
    if has("fieldref") {
        return Ok(vec![Matcher::FieldRef(t)]);
    }
    for (m, op) in [
        ("lt", CmpOp::Lt),
        ("lte", CmpOp::Lte),
        ("gt", CmpOp::Gt),
        ("gte", CmpOp::Gte),
    ] {
        if has(m) {
            let n: f64 = t
                .trim()
                .parse()
                .map_err(|_| format!("`{m}` needs a number, not {t:?}"))?;
            return Ok(vec![Matcher::Cmp(op, n)]);
        }
    }
    if has("cidr") {
        let (ip, bits) =
            matcher::parse_cidr(&t).ok_or_else(|| format!("`cidr`: {t:?} is not a network"))?;
        return Ok(vec![Matcher::Cidr(ip, bits)]);
    }
    let cased = has("cased");
    if has("re") {
        let re = matcher::build_regex(&t, has("i"), has("m"), has("s"))?;
        f.insert("regex".into());
        return Ok(vec![Matcher::Str {
            pattern: Pattern::Regex(re),
            cased: true,
        }]);
    }
    let stringy = [
        "contains",
        "startswith",
        "endswith",
        "base64",
        "base64offset",
        "windash",
        "wide",
        "utf16le",
        "utf16be",
        "utf16",
    ]
    .iter()
    .any(|m| has(m));
    match v {
        Yaml::Integer(i) if !stringy => return Ok(vec![Matcher::Num(*i as f64)]),
        Yaml::Real(r) if !stringy => {
            if let Ok(n) = r.parse::<f64>() {
                return Ok(vec![Matcher::Num(n)]);
            }
        }
        Yaml::Boolean(b) if !stringy => return Ok(vec![Matcher::Bool(*b)]),
        _ => {}
    }
    // transformations of the literal value, each giving one or more alternatives
    let mut alts: Vec<String> = vec![t];
    let encoding = ["wide", "utf16le", "utf16be", "utf16"]
        .into_iter()
        .find(|m| has(m));
    if has("windash") {
        alts = alts.iter().flat_map(|a| matcher::windash(a)).collect();
    }
    if has("base64") || has("base64offset") {
        let bytes = |a: &String| -> Vec<u8> {
            let plain: String = matcher::pieces(a)
                .iter()
                .map(|p| match p {
                    Piece::Lit(s) => s.as_str(),
                    Piece::Star => "*",
                    Piece::One => "?",
                })
                .collect();
            match encoding {
                Some(e) => matcher::utf16(&plain, if e == "wide" { "utf16le" } else { e }),
                None => plain.into_bytes(),
            }
        };
        alts = if has("base64offset") {
            alts.iter()
                .flat_map(|a| matcher::base64_offsets(&bytes(a)))
                .map(|s| matcher::escape_literal(&s))
                .collect()
        } else {
            alts.iter()
                .map(|a| matcher::escape_literal(&matcher::base64(&bytes(a))))
                .collect()
        };
    } else if encoding.is_some() {
        return Err("`wide`/`utf16*` only make sense before `base64` or `base64offset`".into());
    }
    let mut out = Vec::new();
    for a in alts {
        let mut p = matcher::pieces(&a);
        if p.iter().any(|x| !matches!(x, Piece::Lit(_))) {
            f.insert("wildcards".into());
        }
        if has("contains") || has("endswith") || has("base64offset") {
            p.insert(0, Piece::Star);
        }
        if has("contains") || has("startswith") || has("base64offset") {
            p.push(Piece::Star);
        }
        out.push(Matcher::Str {
            pattern: matcher::compile_pieces(&p, cased)?,
            cased,
        });
    }
    Ok(out)
}

impl FieldTest {
    fn eval(&self, doc: &dyn Doc, memo: &Memo) -> bool {
        if let Some(v) = memo.get(self.memo) {
            return v;
        }
        let v = match memo.cache(self.memo) {
            Some(cache) => self.eval_cached(doc, &mut cache.borrow_mut()),
            None => self.eval_now(doc),
        };
        memo.set(self.memo, v);
        v
    }

    /// Is the test costly, and decided by each value on its own (so its answer for a value
    /// can be remembered)?
    fn caches_values(&self) -> bool {
        !self.all
            && self.matchers.iter().all(Matcher::is_per_value)
            && match &self.set {
                Some(set) => set.is_costly(),
                None => self.matchers.len() > 4 || self.matchers.iter().any(Matcher::is_costly),
            }
    }

    /// Does one value pass? (For a test that [`FieldTest::caches_values`], the test is: any
    /// value passes.)
    fn test_value(&self, v: &Val<'_>) -> bool {
        match &self.set {
            Some(set) => set.test(v),
            None => self.matchers.iter().any(|m| m.test(v)),
        }
    }

    /// [`FieldTest::eval_now`] with string values' answers remembered in `cache`.
    fn eval_cached(&self, doc: &dyn Doc, cache: &mut ValueCache) -> bool {
        self.with_values(doc, |values| {
            values.iter().any(|v| match v {
                Val::Str(s) => cache.answer(s, || self.test_value(v)),
                v => self.test_value(v),
            })
        })
    }

    /// `f` of the field's values in `doc` (a field of one string is read in place).
    fn with_values(&self, doc: &dyn Doc, f: impl FnOnce(&[Val<'_>]) -> bool) -> bool {
        if let Some(one) = self.normalized.and_then(|n| doc.normalized_str(n)) {
            return match one {
                Some(s) => f(&[Val::Str(std::borrow::Cow::Borrowed(s))]),
                None => f(&[]),
            };
        }
        match self.normalized.and_then(|n| doc.normalized(n)) {
            Some(v) => f(&v),
            None => f(&doc.values(&self.field)),
        }
    }

    fn eval_now(&self, doc: &dyn Doc) -> bool {
        self.with_values(doc, |values| self.decide(doc, values))
    }

    /// The test's answer for a field holding `values`.
    fn decide(&self, doc: &dyn Doc, values: &[Val<'_>]) -> bool {
        if let Some(set) = &self.set {
            return values.iter().any(|v| set.test(v));
        }
        let one = |m: &Matcher| match m {
            Matcher::Exists(b) => values.iter().any(|v| *v != Val::Null) == *b,
            Matcher::Null => values.is_empty() || values.contains(&Val::Null),
            Matcher::FieldRef(other) => {
                let theirs = doc.values(other);
                values.iter().any(|v| *v != Val::Null && theirs.contains(v))
            }
            m => values.iter().any(|v| m.test(v)),
        };
        if self.all {
            self.matchers.iter().all(one)
        } else {
            self.matchers.iter().any(one)
        }
    }
}

impl Search {
    /// The values `field` must equal (lowercase) for this search to match, if it says.
    fn requires(&self, field: &str) -> Option<Vec<String>> {
        let Search::Fields(alts) = self else {
            return None;
        };
        let mut out = Vec::new();
        for tests in alts {
            let t = tests.iter().find(|t| {
                t.field == field
                    && !t.all
                    && !t.matchers.is_empty()
                    && t.matchers.iter().all(|m| {
                        matches!(
                            m,
                            Matcher::Str {
                                pattern: Pattern::Eq(_),
                                cased: false
                            }
                        )
                    })
            })?;
            for m in &t.matchers {
                if let Matcher::Str {
                    pattern: Pattern::Eq(v),
                    ..
                } = m
                {
                    out.push(v.to_lowercase());
                }
            }
        }
        Some(out)
    }

    fn eval(&self, doc: &dyn Doc, memo: &Memo) -> bool {
        match self {
            Search::Fields(alts) => alts
                .iter()
                .any(|tests| tests.iter().all(|t| t.eval(doc, memo))),
            Search::Keywords(ps, all) => {
                let text = Val::Str(doc.text().into());
                let hit = |p: &Pattern| p.test(&text);
                if *all {
                    ps.iter().all(hit)
                } else {
                    ps.iter().any(hit)
                }
            }
        }
    }
}

impl Rule {
    /// Does this rule match `doc`? (A disabled rule matches nothing; a correlation rule is not
    /// matched against single events: see [`crate::correlation::Correlator`].)
    pub fn matches(&self, doc: &dyn Doc) -> bool {
        self.matches_with(doc, &Memo::default())
    }

    /// [`Rule::matches`], with the results of field tests shared through `memo` (cleared for
    /// each document; see [`memoize`]).
    pub fn matches_with(&self, doc: &dyn Doc, memo: &Memo) -> bool {
        self.disabled.is_none() && self.condition.iter().any(|c| self.eval(c, doc, memo))
    }

    /// Is `reference` this rule's name or id?
    pub fn is_named(&self, reference: &str) -> bool {
        self.id == reference || self.name.as_deref() == Some(reference)
    }

    /// The values (lowercase) `field` must equal for this rule to match, when its condition
    /// requires that (a prefilter: an event whose value is not among them cannot match).
    /// `None` when the rule matches whatever the field holds.
    pub fn required_values(&self, field: &str) -> Option<Vec<String>> {
        if self.disabled.is_some() || self.condition.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for c in &self.condition {
            out.extend(self.plan_requires(c, field)?);
        }
        out.sort();
        out.dedup();
        Some(out)
    }

    fn plan_requires(&self, c: &Plan, field: &str) -> Option<Vec<String>> {
        let search = |i: &usize| self.searches[*i].1.requires(field);
        let union = |parts: Vec<Option<Vec<String>>>| -> Option<Vec<String>> {
            let mut out = Vec::new();
            for p in parts {
                out.extend(p?);
            }
            Some(out)
        };
        match c {
            Plan::Search(i) => search(i),
            Plan::Not(_) => None,
            // any conjunct that constrains the field constrains the whole
            Plan::And(xs) => xs.iter().find_map(|x| self.plan_requires(x, field)),
            Plan::Or(xs) => union(xs.iter().map(|x| self.plan_requires(x, field)).collect()),
            Plan::Of {
                all: true,
                searches,
            } => searches.iter().find_map(search),
            Plan::Of {
                all: false,
                searches,
            } => union(searches.iter().map(search).collect()),
        }
    }

    /// Every field the rule's searches read (with repeats), and the fields `fieldref` values
    /// name: what the engine extracts from a document.
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for (_, s) in &self.searches {
            let Search::Fields(alts) = s else { continue };
            for t in alts.iter().flatten() {
                out.push(t.field.as_str());
                for m in &t.matchers {
                    if let Matcher::FieldRef(other) = m {
                        out.push(other.as_str());
                    }
                }
            }
        }
        if let Some(c) = &self.correlation {
            out.extend(c.group_by.iter().map(String::as_str));
            if let crate::correlation::Kind::ValueCount(f) = &c.kind {
                out.push(f.as_str());
            }
        }
        out
    }

    /// The searches that matched (for "why did this fire").
    pub fn matched_searches(&self, doc: &dyn Doc) -> Vec<&str> {
        self.matched_searches_with(doc, &Memo::default())
    }

    /// [`Rule::matched_searches`] with a [`Memo`].
    pub fn matched_searches_with(&self, doc: &dyn Doc, memo: &Memo) -> Vec<&str> {
        self.searches
            .iter()
            .filter(|(_, s)| s.eval(doc, memo))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    fn eval(&self, c: &Plan, doc: &dyn Doc, memo: &Memo) -> bool {
        let search = |i: &usize| self.searches[*i].1.eval(doc, memo);
        match c {
            Plan::Search(i) => search(i),
            Plan::Not(x) => !self.eval(x, doc, memo),
            Plan::And(xs) => xs.iter().all(|x| self.eval(x, doc, memo)),
            Plan::Or(xs) => xs.iter().any(|x| self.eval(x, doc, memo)),
            Plan::Of {
                all: true,
                searches,
            } => searches.iter().all(search),
            Plan::Of {
                all: false,
                searches,
            } => searches.iter().any(search),
        }
    }
}
