//! Sigma correlation rules: `event_count`, `value_count`, `temporal` and `temporal_ordered` over
//! the matches of other rules, grouped by field values within a timespan. State is bounded: at
//! most `cap` groups are kept, the least recently updated evicted first (and counted).

use crate::doc::{Doc, Val};
use crate::rule::{get, strings, text, Rule};
use std::collections::{HashMap, VecDeque};
use yaml_rust2::Yaml;

/// The kind of correlation.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Number of matching events in the window.
    EventCount,
    /// Number of distinct values of `field` in the window.
    ValueCount(String),
    /// Every referenced rule matched within the window, in any order.
    Temporal,
    /// Every referenced rule matched within the window, in the order listed.
    TemporalOrdered,
}

impl Kind {
    /// The Sigma name.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::EventCount => "event_count",
            Kind::ValueCount(_) => "value_count",
            Kind::Temporal => "temporal",
            Kind::TemporalOrdered => "temporal_ordered",
        }
    }
}

/// A parsed `correlation` section.
#[derive(Clone, Debug, PartialEq)]
pub struct Correlation {
    /// Which kind.
    pub kind: Kind,
    /// The rules it counts (names or ids).
    pub rules: Vec<String>,
    /// Fields whose values form the group key.
    pub group_by: Vec<String>,
    /// The window, in nanoseconds.
    pub timespan: i64,
    /// `(operator, n)`: `gt`, `gte`, `lt`, `lte`, `eq` (counts; temporal kinds need every rule).
    pub condition: Option<(String, u64)>,
    /// `generate`: do the referenced rules also raise alerts of their own? (Sigma's default:
    /// no, they only feed the correlation.)
    pub generate: bool,
}

/// A timespan: `30s`, `5m`, `1h`, `2d`, `1w` (also `M` for 30 days, `y` for 365).
pub fn parse_timespan(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "M" => 30 * 86_400,
        "y" => 365 * 86_400,
        _ => return None,
    };
    n.checked_mul(secs)?.checked_mul(1_000_000_000)
}

/// Parse a `correlation` section; the error names the key.
pub fn parse(y: &Yaml) -> Result<Correlation, String> {
    let Yaml::Hash(h) = y else {
        return Err("`correlation` must be a mapping".into());
    };
    let kind = get(h, "type")
        .and_then(text)
        .ok_or("`correlation.type` is missing")?;
    let rules = strings(get(h, "rules"));
    if rules.is_empty() {
        return Err("`correlation.rules` names no rule".into());
    }
    let group_by = strings(get(h, "group-by"));
    let span = get(h, "timespan")
        .and_then(text)
        .ok_or("`correlation.timespan` is missing")?;
    let timespan = parse_timespan(&span).ok_or_else(|| {
        format!("`correlation.timespan: {span}` is not a timespan (30s, 5m, 1h, 2d)")
    })?;
    let mut condition = None;
    let mut field = None;
    if let Some(Yaml::Hash(c)) = get(h, "condition") {
        for (k, v) in c {
            let key = text(k).unwrap_or_default();
            if key == "field" {
                field = text(v);
                continue;
            }
            if !["gt", "gte", "lt", "lte", "eq"].contains(&key.as_str()) {
                return Err(format!(
                    "`correlation.condition.{key}` is not a condition (gt, gte, lt, lte, eq)"
                ));
            }
            let n = match v {
                Yaml::Integer(i) if *i >= 0 => *i as u64,
                _ => return Err(format!("`correlation.condition.{key}` needs a count")),
            };
            condition = Some((key, n));
        }
    }
    let kind =
        match kind.as_str() {
            "event_count" => Kind::EventCount,
            "value_count" => Kind::ValueCount(field.ok_or(
                "`value_count` needs `condition.field`: the field whose values are counted",
            )?),
            "temporal" => Kind::Temporal,
            "temporal_ordered" => Kind::TemporalOrdered,
            other => return Err(format!("unknown correlation type `{other}`")),
        };
    if matches!(kind, Kind::EventCount | Kind::ValueCount(_)) && condition.is_none() {
        return Err(format!(
            "`{}` needs a condition (e.g. `gte: 10`)",
            kind.name()
        ));
    }
    Ok(Correlation {
        kind,
        rules,
        group_by,
        timespan,
        condition,
        generate: matches!(get(h, "generate"), Some(Yaml::Boolean(true))),
    })
}

/// A correlation that fired.
#[derive(Clone, Debug, PartialEq)]
pub struct Fired {
    /// Index of the correlation rule in the rule list given to [`Correlator::new`].
    pub rule: usize,
    /// The group key (the group-by values, in order).
    pub group: Vec<String>,
    /// The count (events, distinct values, or rules seen) that met the condition.
    pub count: u64,
    /// Event ids (as given to [`Correlator::observe`]) of the events in the window.
    pub evidence: Vec<u64>,
}

struct Active {
    rule: usize,
    corr: Correlation,
    /// Indexes of the referenced base rules, in the order listed.
    refs: Vec<usize>,
}

#[derive(Default)]
struct State {
    /// (time, event id, referenced rule position, value) in arrival order.
    window: VecDeque<(i64, u64, usize, Option<String>)>,
    /// How many events of the window hold each value (value counts; other kinds carry no
    /// value), and each referenced rule's position (temporal only): distinct counts in O(1)
    /// per event, not a sort of the window.
    values: HashMap<String, u32>,
    positions: HashMap<usize, u32>,
    touched: u64,
    /// The newest event time this group saw (nanoseconds): idle groups are dropped by it.
    last: i64,
    /// A count correlation crossed its threshold and the burst goes on: the time of its last
    /// event. Each further event within the timespan of it joins the alert as evidence.
    burst: Option<i64>,
}

/// One more event of `key` in a multiset.
fn count_in<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u32>, key: K) {
    *m.entry(key).or_insert(0) += 1;
}

/// One event of `key` fewer in a multiset (gone at zero).
fn count_out<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u32>, key: &K) {
    if let Some(n) = m.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            m.remove(key);
        }
    }
}

impl State {
    /// Add an event; `positions`: the correlation counts distinct referenced rules.
    fn push(&mut self, time: i64, id: u64, pos: usize, value: Option<String>, positions: bool) {
        if let Some(v) = &value {
            count_in(&mut self.values, v.clone());
        }
        if positions {
            count_in(&mut self.positions, pos);
        }
        self.window.push_back((time, id, pos, value));
    }

    fn pop_front(&mut self) {
        let Some((_, _, pos, value)) = self.window.pop_front() else {
            return;
        };
        if let Some(v) = value {
            count_out(&mut self.values, &v);
        }
        count_out(&mut self.positions, &pos);
    }

    fn clear(&mut self) {
        self.window.clear();
        self.values.clear();
        self.positions.clear();
    }
}

/// Correlation state over a stream of base-rule matches.
pub struct Correlator {
    active: Vec<Active>,
    groups: HashMap<(usize, Vec<String>), State>,
    cap: usize,
    clock: u64,
    /// Groups evicted because the cap was reached (a metric: alerts may have been missed).
    pub evicted: u64,
    /// Groups dropped because they were idle (see [`Correlator::observe`]).
    pub expired: u64,
    /// The newest event time observed, and where the last sweep for idle groups ran.
    newest: i64,
    swept_at: i64,
}

fn val_text(v: &Val<'_>) -> Option<String> {
    match v {
        Val::Str(s) | Val::Num(_, s) => Some(s.to_string()),
        Val::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn meets(cond: &Option<(String, u64)>, n: u64) -> bool {
    match cond {
        Some((op, c)) => match op.as_str() {
            "gt" => n > *c,
            "gte" => n >= *c,
            "lt" => n < *c,
            "lte" => n <= *c,
            _ => n == *c,
        },
        None => true,
    }
}

impl Correlator {
    /// Correlations among `rules`, keeping at most `cap` groups. Returns the correlator and, per
    /// correlation rule that cannot run, its index and why (a reference to an unknown rule).
    pub fn new(rules: &[Rule], cap: usize) -> (Correlator, Vec<(usize, String)>) {
        let mut active = Vec::new();
        let mut problems = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let Some(c) = r.correlation.as_ref().filter(|_| r.disabled.is_none()) else {
                continue;
            };
            let mut refs = Vec::new();
            for name in &c.rules {
                match rules
                    .iter()
                    .position(|b| b.correlation.is_none() && b.is_named(name))
                {
                    Some(j) => refs.push(j),
                    None => problems
                        .push((i, format!("refers to `{name}`, which is not a loaded rule"))),
                }
            }
            if refs.len() == c.rules.len() {
                active.push(Active {
                    rule: i,
                    corr: c.clone(),
                    refs,
                });
            }
        }
        (
            Correlator {
                active,
                groups: HashMap::new(),
                cap: cap.max(1),
                clock: 0,
                evicted: 0,
                expired: 0,
                newest: i64::MIN,
                swept_at: i64::MIN,
            },
            problems,
        )
    }

    /// Drop idle groups, at most once per shortest timespan of event time.
    fn sweep(&mut self) {
        let Some(shortest) = self.active.iter().map(|a| a.corr.timespan.max(1)).min() else {
            return;
        };
        if self.swept_at == i64::MIN {
            // the first event: nothing to drop yet, start counting from here
            self.swept_at = self.newest;
        }
        if self.newest.saturating_sub(self.swept_at) < shortest {
            return;
        }
        self.swept_at = self.newest;
        let spans: HashMap<usize, i64> = self
            .active
            .iter()
            .map(|a| (a.rule, a.corr.timespan))
            .collect();
        let newest = self.newest;
        let before = self.groups.len();
        self.groups.retain(|(rule, _), st| {
            let span = spans.get(rule).copied().unwrap_or(i64::MAX);
            st.last >= newest.saturating_sub(span.saturating_mul(2))
        });
        self.expired += (before - self.groups.len()) as u64;
        if self.groups.capacity() > 4 * self.groups.len().max(1024) {
            self.groups.shrink_to_fit();
        }
    }

    /// Groups held now.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// The longest timespan of the running correlations (how far back state must be rebuilt
    /// after a restart), in nanoseconds.
    pub fn max_timespan(&self) -> i64 {
        self.active
            .iter()
            .map(|a| a.corr.timespan)
            .max()
            .unwrap_or(0)
    }

    /// Base rules whose matches only feed correlations (referenced with `generate: false` and
    /// never with `generate: true`): they raise no alert of their own.
    pub fn silent_bases(&self) -> Vec<usize> {
        let mut silent: Vec<usize> = Vec::new();
        let mut loud: Vec<usize> = Vec::new();
        for a in &self.active {
            if a.corr.generate {
                loud.extend(&a.refs);
            } else {
                silent.extend(&a.refs);
            }
        }
        silent.retain(|r| !loud.contains(r));
        silent.sort_unstable();
        silent.dedup();
        silent
    }

    /// Does any running correlation count matches of rule `i`?
    pub fn uses(&self, i: usize) -> bool {
        self.active.iter().any(|a| a.refs.contains(&i))
    }

    /// One event at `time` (ns) with id `id`, which matched the base rules `matched` (indexes
    /// into the rule list). Events must come in time order per group (late ones still count
    /// but do not move the window back).
    ///
    /// A group whose newest event is more than twice its correlation's timespan older than
    /// the newest event seen holds nothing that can count any more (its window has emptied,
    /// its burst has ended; the second timespan is slack for late events) and is dropped —
    /// swept once per shortest timespan of event time. Without that, every group key ever
    /// seen stayed until the cap (a steady hour of `serve` grew by the cap's worth of empty
    /// groups, ~50 MiB, over its first 20 minutes) and each new key then paid a scan of the
    /// cap to find the least recently used.
    pub fn observe(&mut self, time: i64, id: u64, matched: &[usize], doc: &dyn Doc) -> Vec<Fired> {
        let mut out = Vec::new();
        if time > self.newest {
            self.newest = time;
            self.sweep();
        }
        for a in &self.active {
            for (pos, base) in a.refs.iter().enumerate() {
                if !matched.contains(base) {
                    continue;
                }
                // an event without a group-by value cannot be attributed to a group: it is not
                // counted (as SIEMs drop null keys from `stats … by`), rather than pooled with
                // every other event missing it
                let group: Option<Vec<String>> = a
                    .corr
                    .group_by
                    .iter()
                    .map(|f| {
                        doc.values(f)
                            .first()
                            .and_then(val_text)
                            .filter(|v| !v.is_empty())
                    })
                    .collect();
                let Some(group) = group else { continue };
                let value = match &a.corr.kind {
                    Kind::ValueCount(f) => doc.values(f).first().and_then(val_text),
                    _ => None,
                };
                if matches!(a.corr.kind, Kind::ValueCount(_)) && value.is_none() {
                    continue;
                }
                self.clock += 1;
                let key = (a.rule, group.clone());
                if !self.groups.contains_key(&key) && self.groups.len() >= self.cap {
                    if let Some(oldest) = self
                        .groups
                        .iter()
                        .min_by_key(|(_, s)| s.touched)
                        .map(|(k, _)| k.clone())
                    {
                        self.groups.remove(&oldest);
                        self.evicted += 1;
                    }
                }
                let st = self.groups.entry(key).or_default();
                st.touched = self.clock;
                st.last = st.last.max(time);
                let counts = matches!(a.corr.kind, Kind::EventCount | Kind::ValueCount(_));
                match st.burst {
                    Some(last) if counts && time.saturating_sub(last) <= a.corr.timespan => {
                        // the threshold was crossed and the burst continues: this event is
                        // part of the same alert, not the start of a new count
                        st.burst = Some(time.max(last));
                        out.push(Fired {
                            rule: a.rule,
                            group,
                            count: 1,
                            evidence: vec![id],
                        });
                        continue;
                    }
                    _ => st.burst = None,
                }
                st.push(time, id, pos, value, matches!(a.corr.kind, Kind::Temporal));
                while st
                    .window
                    .front()
                    .is_some_and(|(t, ..)| *t < time.saturating_sub(a.corr.timespan))
                {
                    st.pop_front();
                }
                let count = match &a.corr.kind {
                    Kind::EventCount => st.window.len() as u64,
                    Kind::ValueCount(_) => st.values.len() as u64,
                    Kind::Temporal => st.positions.len() as u64,
                    Kind::TemporalOrdered => {
                        // the longest prefix of the rule list seen in order within the window
                        let mut next = 0usize;
                        for (_, _, p, _) in &st.window {
                            if *p == next {
                                next += 1;
                            }
                        }
                        next as u64
                    }
                };
                let fired = match &a.corr.kind {
                    Kind::Temporal | Kind::TemporalOrdered => {
                        count == a.refs.len() as u64 && meets(&a.corr.condition, count)
                    }
                    _ => meets(&a.corr.condition, count),
                };
                if fired {
                    out.push(Fired {
                        rule: a.rule,
                        group,
                        count,
                        evidence: st.window.iter().map(|(_, id, ..)| *id).collect(),
                    });
                    // one alert per burst: what follows within the timespan joins it, and
                    // counting starts again once the burst is over
                    st.clear();
                    if counts {
                        st.burst = Some(time);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("5m"), Some(300_000_000_000));
        assert_eq!(parse_timespan("1h"), Some(3_600_000_000_000));
        assert_eq!(parse_timespan("5x"), None);
        assert_eq!(parse_timespan("m"), None);
    }
}
