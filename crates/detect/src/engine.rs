//! The detection engine: loaded rules prefiltered by log source, run over normalized events
//! (the documents Sigma rules see are built from the event and its raw bytes), with the
//! correlations on top. The same engine runs in the ingest path, in `trailwarden detect` over
//! stored records, and in `trailwarden rules test`.

use crate::correlation::Correlator;
use crate::doc::{Doc, FlatDoc, Normalized, Val, Vals};
use crate::extract::{Extracted, Paths};
use crate::rule::{LogSource, Memo, Rule};
use serde_json::Value;
use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use trailwarden_model::{Event, Format};

/// How many (format, verb, resource) triples [`Engine`] remembers the candidate rules of (a
/// cluster has a few hundred; the cap keeps made-up resource names from growing it).
const CANDIDATE_CACHE: usize = 4096;

/// The candidate rules of one (format, verb, resource) triple.
struct Cached {
    slot: usize,
    verb: Option<String>,
    resource: Option<String>,
    rules: Vec<usize>,
}

/// One alert-worthy finding: a rule matched an event, or a correlation's condition was met.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// Index of the rule in [`Engine::rules`].
    pub rule: usize,
    /// The group key: the correlation's group-by values (empty for single-event rules).
    pub group: Vec<String>,
    /// Events counted (1 for single-event rules).
    pub count: u64,
    /// Ids of the events that raised it (ledger indexes in the pipeline).
    pub evidence: Vec<u64>,
    /// Time of the event that raised it (ns since the epoch).
    pub time: i64,
    /// Names of the searches that matched (single-event rules).
    pub matched: Vec<String>,
}

/// The rules that apply to one format, prefiltered by the Kubernetes verb (and then, in
/// `Slot::candidates`, by resource).
#[derive(Default)]
struct Slot {
    /// Rules that may match whatever the verb (ascending).
    always: Vec<usize>,
    /// Rules that can only match these verbs (lowercase), per verb (ascending).
    by_verb: HashMap<String, Vec<usize>>,
}

/// Rules compiled for a stream of events.
pub struct Engine {
    rules: Vec<Rule>,
    /// Per format (position in [`Format::ALL`]): the enabled single-event rules that apply.
    by_format: Vec<Slot>,
    /// Candidate rules of the event being checked (reused).
    scratch: Vec<usize>,
    /// Kubernetes audit events: candidate rules per format, verb and resource, as
    /// [`Slot::candidates`] gives them, by the hash of the three (at most [`CANDIDATE_CACHE`]
    /// entries).
    by_request: HashMap<u64, Vec<Cached>>,
    request_hasher: foldhash::fast::RandomState,
    /// Entries in `by_request`.
    cached: usize,
    /// Per rule: raises alerts of its own (false for bases that only feed correlations).
    alerts: Vec<bool>,
    /// Per rule: some correlation counts its matches.
    feeds: Vec<bool>,
    /// Per rule: the Kubernetes resources (`objectRef.resource`, lowercase) it can only match,
    /// if it names them (the second prefilter after the verb).
    resources: Vec<Option<Vec<String>>>,
    correlator: Correlator,
    /// The JSON fields the rules read, pulled out of a document in one pass.
    paths: Arc<Paths>,
    /// Field test results for the document being checked.
    memo: Memo,
    /// Rules that cannot run, with why (besides those disabled at load).
    pub problems: Vec<(usize, String)>,
}

impl Engine {
    /// Compile `rules`; correlations keep at most `cap` groups.
    pub fn new(mut rules: Vec<Rule>, cap: usize) -> Engine {
        let memo = crate::rule::memoize(&mut rules);
        let (correlator, problems) = Correlator::new(&rules, cap);
        let by_format = Format::ALL
            .iter()
            .map(|f| {
                let ls = LogSource::of_format(f.as_str());
                let k8s = f.is_kubernetes_audit();
                let mut slot = Slot::default();
                for (i, r) in rules.iter().enumerate() {
                    if r.disabled.is_some() || r.correlation.is_some() || !r.logsource.covers(&ls) {
                        continue;
                    }
                    match r.required_values("verb").filter(|_| k8s) {
                        Some(verbs) => {
                            for v in verbs {
                                slot.by_verb.entry(v).or_default().push(i);
                            }
                        }
                        None => slot.always.push(i),
                    }
                }
                slot
            })
            .collect();
        let silent = correlator.silent_bases();
        let alerts = (0..rules.len()).map(|i| !silent.contains(&i)).collect();
        let feeds = (0..rules.len()).map(|i| correlator.uses(i)).collect();
        let resources = rules
            .iter()
            .map(|r| r.required_values("objectRef.resource"))
            .collect();
        let paths = Arc::new(Paths::new(
            rules
                .iter()
                .filter(|r| r.disabled.is_none())
                .flat_map(Rule::fields),
        ));
        Engine {
            memo,
            paths,
            rules,
            by_format,
            scratch: Vec::new(),
            by_request: HashMap::default(),
            request_hasher: foldhash::fast::RandomState::default(),
            cached: 0,
            alerts,
            feeds,
            resources,
            correlator,
            problems,
        }
    }

    /// The JSON fields the rules read. Give them to the parser (`Options::pull`) and it pulls
    /// those under `requestObject` out of each Kubernetes event while reading it, which
    /// spares detection a pass over the object.
    pub fn paths(&self) -> &Arc<Paths> {
        &self.paths
    }

    /// The rules, in load order (detections refer to them by index).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Correlation groups evicted because the cap was reached.
    pub fn evicted(&self) -> u64 {
        self.correlator.evicted
    }

    /// Correlation groups held now.
    pub fn groups(&self) -> usize {
        self.correlator.groups()
    }

    /// How far back events must be replayed to rebuild correlation state (ns).
    pub fn lookback(&self) -> i64 {
        self.correlator.max_timespan()
    }

    /// Hint that `ev` (received as `raw`) is checked next but one: the strings every event's
    /// first tests read (verb, resource, user, agent, stage, addresses, the text) are asked of
    /// memory now, so [`Engine::check`] does not wait for them. Call it for the event two
    /// ahead of the one being checked when going through a batch: a third of the engine's
    /// time over records fresh from a parser is waiting for their strings.
    pub fn prefetch(&self, ev: &Event, raw: &[u8]) {
        let s = |v: &Option<String>| {
            if let Some(v) = v {
                prefetch(v.as_ptr());
            }
        };
        s(&ev.action);
        s(&ev.resource.resource);
        s(&ev.user.identity.name);
        s(&ev.origin.user_agent);
        s(&ev.stage);
        s(&ev.request_uri);
        if let Some(ips) = &ev.origin.ips {
            prefetch(ips.as_ptr().cast());
            if let Some(ip) = ips.first() {
                prefetch(ip.as_ptr());
            }
        }
        match &ev.payload {
            Some(p) => prefetch(p.as_ptr()),
            None => prefetch(raw.as_ptr()),
        }
        if let Some(p) = ev.pulled.as_ref().filter(|p| !p.values.is_empty()) {
            prefetch(p.values.as_ptr().cast());
        }
    }

    /// Run every applicable rule over one event with id `id` at `time` (ns); detections are
    /// appended to `out`. Returns true when the event fed a correlation (it must be replayed
    /// to rebuild correlation state after a restart).
    pub fn check(
        &mut self,
        id: u64,
        time: i64,
        ev: &Event,
        raw: &[u8],
        out: &mut Vec<Detection>,
    ) -> bool {
        let Some(slot) = Format::ALL.iter().position(|f| *f == ev.format) else {
            return false;
        };
        let mut candidates = std::mem::take(&mut self.scratch);
        self.candidates(slot, ev, &mut candidates);
        if candidates.is_empty() {
            self.scratch = candidates;
            return false;
        }
        let rules = &self.rules;
        let alerts = &self.alerts;
        let feeds = &self.feeds;
        let correlator = &mut self.correlator;
        let memo = &self.memo;
        let mut fed = false;
        let mut matched = Vec::new();
        for_each_doc(ev, raw, &self.paths, &mut |doc| {
            matched.clear();
            memo.clear();
            for &i in &candidates {
                if rules[i].matches_with(doc, memo) {
                    matched.push(i);
                    if alerts[i] {
                        out.push(Detection {
                            rule: i,
                            group: Vec::new(),
                            count: 1,
                            evidence: vec![id],
                            time,
                            matched: rules[i]
                                .matched_searches_with(doc, memo)
                                .into_iter()
                                .map(str::to_string)
                                .collect(),
                        });
                    }
                }
            }
            if matched.iter().any(|i| feeds[*i]) {
                fed = true;
                for f in correlator.observe(time, id, &matched, doc) {
                    out.push(Detection {
                        rule: f.rule,
                        group: f.group,
                        count: f.count,
                        evidence: f.evidence,
                        time,
                        matched: Vec::new(),
                    });
                }
            }
        });
        self.scratch = candidates;
        fed
    }

    /// The rules to run over `ev` (of format `slot`), ascending; for Kubernetes audit events
    /// from the cache of (format, verb, resource) triples seen before.
    fn candidates(&mut self, slot: usize, ev: &Event, out: &mut Vec<usize>) {
        if !ev.format.is_kubernetes_audit() {
            self.by_format[slot].candidates(ev, &self.resources, out);
            return;
        }
        let (verb, resource) = (ev.action.as_deref(), ev.resource.resource.as_deref());
        let hash = self.request_hasher.hash_one((slot, verb, resource));
        let bucket = self
            .by_request
            .get(&hash)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Some(hit) = bucket.iter().find(|e| {
            e.slot == slot && e.verb.as_deref() == verb && e.resource.as_deref() == resource
        }) {
            out.clear();
            out.extend_from_slice(&hit.rules);
            return;
        }
        self.by_format[slot].candidates(ev, &self.resources, out);
        if self.cached < CANDIDATE_CACHE {
            self.cached += 1;
            self.by_request.entry(hash).or_default().push(Cached {
                slot,
                verb: verb.map(str::to_string),
                resource: resource.map(str::to_string),
                rules: out.clone(),
            });
        }
    }

    /// Single-event matches only (no correlation state): per match, the rule index and the
    /// searches that matched. For `rules test`.
    pub fn matches(&self, ev: &Event, raw: &[u8], f: &mut dyn FnMut(usize, Vec<&str>)) {
        let Some(slot) = Format::ALL.iter().position(|x| *x == ev.format) else {
            return;
        };
        let mut candidates = Vec::new();
        self.by_format[slot].candidates(ev, &self.resources, &mut candidates);
        for_each_doc(ev, raw, &self.paths, &mut |doc| {
            for &i in &candidates {
                if self.rules[i].matches(doc) {
                    f(i, self.rules[i].matched_searches(doc));
                }
            }
        });
    }
}

impl Slot {
    /// The rules to run over `ev`, ascending: by the verb, then by the resource a rule names
    /// (`resources`, per rule; Kubernetes audit events only, whose resource is a normalized
    /// field).
    fn candidates(&self, ev: &Event, resources: &[Option<Vec<String>>], out: &mut Vec<usize>) {
        self.by_verb(ev, out);
        if !ev.format.is_kubernetes_audit() {
            return;
        }
        let have = ev.resource.resource.as_deref();
        out.retain(|&i| match resources.get(i) {
            Some(Some(want)) => have.is_some_and(|r| {
                if r.is_ascii() {
                    want.iter().any(|w| w.eq_ignore_ascii_case(r))
                } else {
                    let r = r.to_lowercase();
                    want.contains(&r)
                }
            }),
            _ => true,
        });
    }

    /// The rules to run over `ev` by its verb, ascending.
    fn by_verb(&self, ev: &Event, out: &mut Vec<usize>) {
        out.clear();
        let by_verb = ev.action.as_deref().and_then(|v| {
            if v.bytes().any(|b| b.is_ascii_uppercase()) {
                self.by_verb.get(&v.to_ascii_lowercase())
            } else {
                self.by_verb.get(v)
            }
        });
        match by_verb {
            None => out.extend_from_slice(&self.always),
            Some(extra) => {
                // merge two ascending lists (rules run in load order)
                let (mut a, mut b) = (self.always.iter().peekable(), extra.iter().peekable());
                loop {
                    match (a.peek(), b.peek()) {
                        (Some(&&x), Some(&&y)) => {
                            if x <= y {
                                out.push(x);
                                a.next();
                            } else {
                                out.push(y);
                                b.next();
                            }
                        }
                        (Some(&&x), None) => {
                            out.push(x);
                            a.next();
                        }
                        (None, Some(&&y)) => {
                            out.push(y);
                            b.next();
                        }
                        (None, None) => break,
                    }
                }
            }
        }
    }
}

/// Ask the CPU to bring the cache line at `p` in. A hint: it reads nothing the program sees,
/// never faults (whatever the address), and does nothing on other architectures.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: `prefetcht0` performs no architectural memory access and cannot fault for any
    // address; SSE, which it needs, is part of the x86_64 baseline. (The only `unsafe` in the
    // engine: stable Rust has no safe prefetch.)
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The documents an event gives Sigma rules: the audit event itself for JSON formats (the inner
/// document of an envelope such as AKS's `properties.log`), the fields of all records of an
/// auditd event, the message otherwise. `paths`: the JSON fields to pull out of a JSON event in
/// one pass (others parse the event).
pub fn for_each_doc(ev: &Event, raw: &[u8], paths: &Paths, f: &mut dyn FnMut(&dyn Doc)) {
    match ev.format {
        Format::Auditd => {
            let raw_text = String::from_utf8_lossy(raw);
            // one document per event: the fields of all its records (SYSCALL, PATH, CWD,
            // PROCTITLE, …), so a rule can say `type: PATH` and `name: /etc/shadow` and filter
            // on the `exe` of the same event
            let records: Vec<_> = raw_text
                .lines()
                .filter_map(|l| trailwarden_parse::auditd::parse_record(l).ok())
                .collect();
            let mut fields = Vec::new();
            for r in &records {
                fields.push(("type", r.record_type.as_str()));
                fields.extend(r.fields.iter().map(|x| (x.key.as_str(), x.value.as_str())));
            }
            f(&FlatDoc {
                fields,
                text: &raw_text,
            });
        }
        Format::K8sAudit
        | Format::Aks
        | Format::Gke
        | Format::AzureActivity
        | Format::Signin
        | Format::EntraAudit
        | Format::App => f(&EventDoc::with_paths(ev, raw, paths)),
        _ => {
            let raw_text = String::from_utf8_lossy(raw);
            let message = ev.message.as_deref().unwrap_or_default();
            f(&FlatDoc {
                fields: vec![("message", message)],
                text: &raw_text,
            });
        }
    }
}

/// A JSON event seen through its normalized form: the fields every Kubernetes rule looks at
/// (verb, stage, user, impersonation, resource, status, source IPs, user agent, URI) come from
/// the parsed [`Event`] without parsing the text again; anything else parses the text once, on
/// first use.
pub struct EventDoc<'a> {
    ev: &'a Event,
    raw: &'a [u8],
    text: OnceCell<Cow<'a, str>>,
    /// Whether the text escapes characters a key could be spelled with (`\u`, `\/`).
    escapes: OnceCell<bool>,
    json: OnceCell<Option<Value>>,
    /// The fields pulled out in one pass (`paths`), when that pass could answer.
    paths: Option<&'a Paths>,
    extracted: OnceCell<Option<Extracted<'a>>>,
    /// Path segments looked for in the text, and found (see [`Paths::could_have`]).
    seen: Cell<(u64, u64)>,
    /// The status code as text (formatted once).
    code_text: OnceCell<CodeText>,
}

/// A status code's digits, formatted in place (no allocation per event).
struct CodeText {
    buf: [u8; 20],
    len: usize,
}

impl CodeText {
    fn new(code: i64) -> CodeText {
        use std::io::Write;
        let mut buf = [0u8; 20];
        let mut rest = &mut buf[..];
        // an i64 has at most 20 characters ("-9223372036854775808"), so this cannot fail
        let _ = write!(rest, "{code}");
        let len = 20 - rest.len();
        CodeText { buf, len }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl<'a> EventDoc<'a> {
    /// A document over `ev` received as `raw` (its JSON text is the event's payload when the
    /// source wrapped it, such as AKS's `properties.log`, else `raw`).
    pub fn new(ev: &'a Event, raw: &'a [u8]) -> EventDoc<'a> {
        EventDoc {
            ev,
            raw,
            text: OnceCell::new(),
            escapes: OnceCell::new(),
            json: OnceCell::new(),
            paths: None,
            extracted: OnceCell::new(),
            seen: Cell::new((0, 0)),
            code_text: OnceCell::new(),
        }
    }

    /// A document that pulls the JSON fields in `paths` out of the text in one pass.
    pub fn with_paths(ev: &'a Event, raw: &'a [u8], paths: &'a Paths) -> EventDoc<'a> {
        let mut d = EventDoc::new(ev, raw);
        d.paths = Some(paths);
        d
    }

    /// The fields a Kubernetes event's normalized form holds verbatim; empty when the event has
    /// no such value (absent, which Sigma's `null` treats as null).
    fn fast<'s>(&'s self, field: Normalized) -> Option<Vals<'s>> {
        // the fields of one string, as `fast_str` reads them
        if let Some(one) = self.fast_str(field) {
            return Some(
                one.map(|s| Val::Str(Cow::Borrowed(s)))
                    .into_iter()
                    .collect(),
            );
        }
        if !self.ev.format.is_kubernetes_audit() {
            return None;
        }
        let ev: &'s Event = self.ev;
        let many = |v: Option<&'s Vec<String>>| {
            v.into_iter()
                .flatten()
                .map(|s| Val::Str(Cow::Borrowed(s.as_str())))
                .collect::<Vals<'s>>()
        };
        let imp = ev.user.impersonated.as_ref();
        Some(match field {
            Normalized::Groups => many(ev.user.identity.groups.as_ref()),
            Normalized::ImpersonatedGroups => many(imp.and_then(|i| i.groups.as_ref())),
            Normalized::SourceIps => many(ev.origin.ips.as_ref()),
            Normalized::Code => {
                let mut out = Vals::new();
                if let Some(c) = ev.outcome.code {
                    let text = self.code_text.get_or_init(|| CodeText::new(c));
                    out.push(Val::Num(c as f64, Cow::Borrowed(text.as_str())));
                }
                out
            }
            // answered by `fast_str` above
            _ => Vals::new(),
        })
    }

    /// [`Doc::normalized_str`]: the Kubernetes fields of one string, in place.
    fn fast_str(&self, field: Normalized) -> Option<Option<&str>> {
        if !self.ev.format.is_kubernetes_audit() {
            return None;
        }
        let ev = self.ev;
        let r = &ev.resource;
        Some(match field {
            Normalized::Verb => ev.action.as_deref(),
            Normalized::Stage => ev.stage.as_deref(),
            Normalized::RequestUri => ev.request_uri.as_deref(),
            Normalized::Resource => r.resource.as_deref(),
            Normalized::Subresource => r.subresource.as_deref(),
            Normalized::Namespace => r.namespace.as_deref(),
            Normalized::Name => r.name.as_deref(),
            Normalized::ApiGroup => r.api_group.as_deref(),
            Normalized::Username => ev.user.identity.name.as_deref(),
            Normalized::ImpersonatedUsername => ev
                .user
                .impersonated
                .as_ref()
                .and_then(|i| i.name.as_deref()),
            Normalized::UserAgent => ev.origin.user_agent.as_deref(),
            Normalized::Groups
            | Normalized::ImpersonatedGroups
            | Normalized::SourceIps
            | Normalized::Code => return None,
        })
    }

    fn text_cow(&self) -> &Cow<'a, str> {
        self.text.get_or_init(|| match &self.ev.payload {
            Some(p) => Cow::Borrowed(p.as_str()),
            None => {
                // a CloudWatch Logs export line (EKS) is `<time> <event>`: rules read the event
                let mut raw = self.raw;
                if raw.first() != Some(&b'{') && self.ev.attrs.contains_key("cloudwatch_time") {
                    if let Some(sp) = memchr::memchr(b' ', raw) {
                        raw = &raw[sp + 1..];
                    }
                }
                match std::str::from_utf8(raw) {
                    Ok(s) => Cow::Borrowed(s),
                    Err(_) => String::from_utf8_lossy(raw),
                }
            }
        })
    }

    fn text_ref(&self) -> &str {
        self.text_cow()
    }

    /// The fields of `paths` in one pass over the text (`None`: parse the text instead — it
    /// was not valid UTF-8, or the pass could not answer exactly).
    fn extracted(&self, paths: &Paths) -> Option<&Extracted<'a>> {
        self.extracted
            .get_or_init(|| match self.text_cow() {
                Cow::Borrowed(text) => paths.extract(text),
                Cow::Owned(_) => None,
            })
            .as_ref()
    }
}

impl Doc for EventDoc<'_> {
    fn normalized(&self, field: Normalized) -> Option<Vals<'_>> {
        self.fast(field)
    }

    fn normalized_str(&self, field: Normalized) -> Option<Option<&str>> {
        self.fast_str(field)
    }

    fn values(&self, field: &str) -> Vals<'_> {
        if let Some(v) = Normalized::of(field).and_then(|n| self.fast(n)) {
            return v;
        }
        let slot = self.paths.and_then(|p| Some((p, p.slot(field)?)));
        if let Some((paths, slot)) = slot {
            // the parser pulled the request object's fields for these paths
            if paths.is_pulled(slot) {
                if let Some(p) = self.ev.pulled.as_ref().filter(|p| p.paths == paths.id()) {
                    return p
                        .values
                        .iter()
                        .filter(|(s, _)| *s as usize == slot)
                        .map(|(_, v)| trailwarden_parse::paths::val_of(v))
                        .collect();
                }
            }
            // the text was gone through for another field already
            if let Some(Some(ex)) = self.extracted.get() {
                return ex.get(slot).cloned().collect();
            }
        }
        // every key on the field's path is spelled out in the text (unless escaped): when one
        // is not there the field is absent, and the text need not be parsed (most events have
        // no `requestObject`, which most rules reading the JSON look into). Keys of ASCII are
        // looked for in the bytes as received (not yet checked to be UTF-8: an ASCII key is in
        // them exactly when it is in the text made of them)
        let text = match (&self.ev.payload, slot) {
            (None, Some((paths, _))) if paths.ascii_keys() => self.raw,
            _ => self.text_ref().as_bytes(),
        };
        let escapes = *self.escapes.get_or_init(|| {
            memchr::memchr(b'\\', text).is_some()
                && (memchr::memmem::find(text, b"\\u").is_some()
                    || memchr::memmem::find(text, b"\\/").is_some())
        });
        if let Some((paths, slot)) = slot {
            if !escapes {
                let mut seen = self.seen.get();
                let could = paths.could_have(slot, text, &mut seen);
                self.seen.set(seen);
                if !could {
                    return Vals::new();
                }
            }
            if let Some(ex) = self.extracted(paths) {
                return ex.get(slot).cloned().collect();
            }
        } else if !escapes
            && field
                .split('.')
                .any(|seg| memchr::memmem::find(text, seg.as_bytes()).is_none())
        {
            return Vals::new();
        }
        match self
            .json
            .get_or_init(|| serde_json::from_str(self.text_ref()).ok())
        {
            Some(v) => crate::doc::json_values(v, field),
            None => Vals::new(),
        }
    }

    fn text(&self) -> &str {
        self.text_ref()
    }
}
