//! The detection engine: loaded rules prefiltered by log source, run over normalized events
//! (the documents Sigma rules see are built from the event and its raw bytes), with the
//! correlations on top. The same engine runs in the ingest path, in `trailwarden detect` over
//! stored records, and in `trailwarden rules test`.

use crate::correlation::Correlator;
use crate::doc::{Doc, FlatDoc, Val};
use crate::rule::{LogSource, Rule};
use serde_json::Value;
use std::borrow::Cow;
use std::cell::OnceCell;
use trailwarden_model::{Event, Format};

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

/// Rules compiled for a stream of events.
pub struct Engine {
    rules: Vec<Rule>,
    /// Per format (position in [`Format::ALL`]): the enabled single-event rules that apply.
    by_format: Vec<Vec<usize>>,
    /// Per rule: raises alerts of its own (false for bases that only feed correlations).
    alerts: Vec<bool>,
    correlator: Correlator,
    /// Rules that cannot run, with why (besides those disabled at load).
    pub problems: Vec<(usize, String)>,
}

impl Engine {
    /// Compile `rules`; correlations keep at most `cap` groups.
    pub fn new(rules: Vec<Rule>, cap: usize) -> Engine {
        let (correlator, problems) = Correlator::new(&rules, cap);
        let by_format = Format::ALL
            .iter()
            .map(|f| {
                let ls = LogSource::of_format(f.as_str());
                rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        r.disabled.is_none() && r.correlation.is_none() && r.logsource.covers(&ls)
                    })
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        let silent = correlator.silent_bases();
        let alerts = (0..rules.len()).map(|i| !silent.contains(&i)).collect();
        Engine {
            rules,
            by_format,
            alerts,
            correlator,
            problems,
        }
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
        let rules = &self.rules;
        let alerts = &self.alerts;
        let correlator = &mut self.correlator;
        let candidates = &self.by_format[slot];
        if candidates.is_empty() {
            return false;
        }
        let mut fed = false;
        let mut matched = Vec::new();
        for_each_doc(ev, raw, &mut |doc| {
            matched.clear();
            for &i in candidates {
                if rules[i].matches(doc) {
                    matched.push(i);
                    if alerts[i] {
                        out.push(Detection {
                            rule: i,
                            group: Vec::new(),
                            count: 1,
                            evidence: vec![id],
                            time,
                            matched: rules[i]
                                .matched_searches(doc)
                                .into_iter()
                                .map(str::to_string)
                                .collect(),
                        });
                    }
                }
            }
            if matched.iter().any(|i| correlator.uses(*i)) {
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
        fed
    }

    /// Single-event matches only (no correlation state): per match, the rule index and the
    /// searches that matched. For `rules test`.
    pub fn matches(&self, ev: &Event, raw: &[u8], f: &mut dyn FnMut(usize, Vec<&str>)) {
        let Some(slot) = Format::ALL.iter().position(|x| *x == ev.format) else {
            return;
        };
        for_each_doc(ev, raw, &mut |doc| {
            for &i in &self.by_format[slot] {
                if self.rules[i].matches(doc) {
                    f(i, self.rules[i].matched_searches(doc));
                }
            }
        });
    }
}

/// The documents an event gives Sigma rules: the audit event itself for JSON formats (the inner
/// document of an envelope such as AKS's `properties.log`), the fields of all records of an
/// auditd event, the message otherwise.
pub fn for_each_doc(ev: &Event, raw: &[u8], f: &mut dyn FnMut(&dyn Doc)) {
    let raw_text = String::from_utf8_lossy(raw);
    match ev.format {
        Format::Auditd => {
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
        Format::K8sAudit | Format::Aks | Format::AzureActivity | Format::Signin | Format::App => {
            let text = ev.payload.as_deref().unwrap_or(&raw_text);
            f(&EventDoc {
                ev,
                text,
                json: OnceCell::new(),
            });
        }
        _ => {
            let message = ev.message.as_deref().unwrap_or_default();
            f(&FlatDoc {
                fields: vec![("message", message)],
                text: &raw_text,
            });
        }
    }
}

/// A JSON event seen through its normalized form: the fields every Kubernetes rule looks at
/// (verb, user, resource, status, source IPs) come from the parsed [`Event`] without parsing the
/// text again; anything else parses the text once, on first use.
pub struct EventDoc<'a> {
    ev: &'a Event,
    text: &'a str,
    json: OnceCell<Option<Value>>,
}

impl<'a> EventDoc<'a> {
    /// A document over `ev` whose JSON text is `text`.
    pub fn new(ev: &'a Event, text: &'a str) -> EventDoc<'a> {
        EventDoc {
            ev,
            text,
            json: OnceCell::new(),
        }
    }

    fn fast(&self, field: &str) -> Option<Vec<Val<'_>>> {
        if !matches!(self.ev.format, Format::K8sAudit | Format::Aks) {
            return None;
        }
        let one = |v: &'a Option<String>| v.as_deref().map(|s| vec![Val::Str(Cow::Borrowed(s))]);
        let r = &self.ev.resource;
        match field {
            "verb" => one(&self.ev.action),
            "objectRef.resource" => one(&r.resource),
            "objectRef.subresource" => one(&r.subresource),
            "objectRef.namespace" => one(&r.namespace),
            "objectRef.name" => one(&r.name),
            "objectRef.apiGroup" => one(&r.api_group),
            "user.username" => one(&self.ev.user.identity.name),
            "userAgent" => one(&self.ev.origin.user_agent),
            "responseStatus.code" => self
                .ev
                .outcome
                .code
                .map(|c| vec![Val::Num(c as f64, Cow::Owned(c.to_string()))]),
            "sourceIPs" => self
                .ev
                .origin
                .ips
                .as_ref()
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.iter()
                        .map(|s| Val::Str(Cow::Borrowed(s.as_str())))
                        .collect()
                }),
            _ => None,
        }
    }
}

impl Doc for EventDoc<'_> {
    fn values(&self, field: &str) -> Vec<Val<'_>> {
        if let Some(v) = self.fast(field) {
            return v;
        }
        match self
            .json
            .get_or_init(|| serde_json::from_str(self.text).ok())
        {
            Some(v) => crate::doc::json_values(v, field),
            None => Vec::new(),
        }
    }

    fn text(&self) -> &str {
        self.text
    }
}
