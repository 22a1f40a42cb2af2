//! The JSON fields a rule set reads, compiled once into a tree of keys, and pulled out of a
//! document in one pass over its text: the values of every wanted path are collected while
//! the parser skips what no rule reads, without building a tree of the whole document.
//!
//! The answers are those of a path lookup in the parsed document (the detection engine's
//! `json_values`): arrays on the way are expanded, a key may itself hold dots
//! (`authorization.k8s.io/decision`), an array of scalars at the end of a path gives each
//! scalar and any other array or object gives one [`Val::Composite`]. Where the two could
//! differ — an object with the same key twice (a parsed document keeps the last), or keys `a`
//! and `a.b` side by side (the longer one wins) — the pass says so and the caller parses the
//! document instead. One leniency: a number too large for a float (`1e999`) where no rule looks
//! is skipped unread, so the document's other fields are still there, where the parser refuses
//! the whole document.
//!
//! The Kubernetes parser runs the same walk over an event's `requestObject` while it reads the
//! event ([`pulling`]), so the values the rules read under it arrive with the event
//! ([`trailwarden_model::Pulled`]) and detection does not go through the object's JSON again.
//! That pass looks at the key `requestObject` only: a top-level key spelled with the dots of a
//! deeper path (`"requestObject.spec": …`, which no API server writes) is not seen there.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use trailwarden_model::{Pulled, PulledValue};

/// One value of a field.
#[derive(Clone, Debug, PartialEq)]
pub enum Val<'a> {
    /// JSON null.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number, with its text (a string pattern compares the text).
    Num(f64, Cow<'a, str>),
    /// A string.
    Str(Cow<'a, str>),
    /// An object or array (only `exists` and `null` look at these).
    Composite,
}

/// Wanted field paths, as a tree of object keys.
#[derive(Clone, Debug, Default)]
pub struct Paths {
    /// Field path → slot.
    slots: HashMap<String, usize>,
    /// Per slot: the path's segments (indexes into `segments`), for the "every key is in the
    /// text" test.
    needs: Vec<Vec<usize>>,
    /// Distinct path segments, each with a precompiled substring finder.
    segments: Vec<memchr::memmem::Finder<'static>>,
    /// Every segment is ASCII.
    ascii: bool,
    /// Per slot: the path is `requestObject` or below it (the parser pulls those).
    pulled: Vec<bool>,
    /// Which path set a [`Pulled`] answers: a hash of the paths in slot order, so engines
    /// built from the same rules read each other's pulled values.
    id: u64,
    root: Node,
}

/// The object whose fields the parser pulls while it reads a Kubernetes event.
const REQUEST_OBJECT: &str = "requestObject";

/// The keys wanted at one object.
#[derive(Clone, Debug, Default)]
struct Node {
    keys: Vec<(String, Edge)>,
    /// Some key is another key followed by `.` (`a` and `a.b`): matched keys must be compared.
    dotted: bool,
}

/// What a key leads to: paths that end there, and the keys wanted below it.
#[derive(Clone, Debug, Default)]
struct Edge {
    leaves: Vec<usize>,
    child: Option<Box<Node>>,
}

impl Node {
    fn build(entries: &[(usize, &str)]) -> Node {
        let mut keys: Vec<(String, Edge)> = Vec::new();
        let mut below: Vec<(String, Vec<(usize, &str)>)> = Vec::new();
        for &(slot, rest) in entries {
            // every way of reading `rest` as a key followed by more: `a.b.c` is `a` then
            // `b.c`, `a.b` then `c`, or the key `a.b.c`
            let mut cut = 0;
            loop {
                let dot = rest[cut..].find('.').map(|d| cut + d);
                let key = &rest[..dot.unwrap_or(rest.len())];
                let at = match keys.iter().position(|(k, _)| k == key) {
                    Some(i) => i,
                    None => {
                        keys.push((key.to_string(), Edge::default()));
                        below.push((key.to_string(), Vec::new()));
                        keys.len() - 1
                    }
                };
                match dot {
                    None => {
                        keys[at].1.leaves.push(slot);
                        break;
                    }
                    Some(d) => {
                        below[at].1.push((slot, &rest[d + 1..]));
                        cut = d + 1;
                    }
                }
            }
        }
        for ((_, edge), (_, sub)) in keys.iter_mut().zip(&below) {
            if !sub.is_empty() {
                edge.child = Some(Box::new(Node::build(sub)));
            }
        }
        let dotted = keys.iter().any(|(a, _)| {
            keys.iter().any(|(b, _)| {
                b.len() > a.len() && b.starts_with(a.as_str()) && b.as_bytes()[a.len()] == b'.'
            })
        });
        Node { keys, dotted }
    }

    fn edge(&self, key: &str) -> Option<&Edge> {
        self.keys.iter().find(|(k, _)| k == key).map(|(_, e)| e)
    }
}

/// The values of every wanted path in one document: (slot, value) in document order (a
/// document holds few of the wanted paths, so this is shorter than a list per slot).
pub struct Extracted<'a> {
    values: Vec<(usize, Val<'a>)>,
}

impl<'a> Extracted<'a> {
    /// The values at `slot`, in document order (none = absent).
    pub fn get(&self, slot: usize) -> impl Iterator<Item = &Val<'a>> {
        self.values
            .iter()
            .filter(move |(s, _)| *s == slot)
            .map(|(_, v)| v)
    }
}

impl Paths {
    /// The tree of `fields` (duplicates are one slot).
    pub fn new<'f>(fields: impl IntoIterator<Item = &'f str>) -> Paths {
        let mut slots: HashMap<String, usize> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        for f in fields {
            if f.is_empty() || slots.contains_key(f) {
                continue;
            }
            slots.insert(f.to_string(), order.len());
            order.push(f);
        }
        let mut seg_ids: HashMap<&str, usize> = HashMap::new();
        let mut segments = Vec::new();
        let needs = order
            .iter()
            .map(|f| {
                f.split('.')
                    .map(|s| {
                        *seg_ids.entry(s).or_insert_with(|| {
                            segments.push(memchr::memmem::Finder::new(s.as_bytes()).into_owned());
                            segments.len() - 1
                        })
                    })
                    .collect()
            })
            .collect();
        let entries: Vec<(usize, &str)> = order.iter().copied().enumerate().collect();
        Paths {
            ascii: order.iter().all(|f| f.is_ascii()),
            pulled: order
                .iter()
                .map(|f| {
                    f.strip_prefix(REQUEST_OBJECT)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
                })
                .collect(),
            id: {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                order.hash(&mut h);
                h.finish()
            },
            slots,
            needs,
            segments,
            root: Node::build(&entries),
        }
    }

    /// The slot of `field`, if it is one of the wanted paths.
    pub fn slot(&self, field: &str) -> Option<usize> {
        self.slots.get(field).copied()
    }

    /// This path set's id (what [`Pulled::paths`] names).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Is `slot`'s path one the parser pulls (`requestObject` or below it)?
    pub fn is_pulled(&self, slot: usize) -> bool {
        self.pulled.get(slot).copied().unwrap_or(false)
    }

    /// Are all the keys of the wanted paths ASCII? (Then [`Paths::could_have`] may look in
    /// bytes not yet checked to be UTF-8: lossy decoding keeps every ASCII byte in place.)
    pub fn ascii_keys(&self) -> bool {
        self.ascii
    }

    /// Could `text` (JSON that escapes no character of a key) hold `slot`'s path? False when
    /// one of its keys does not occur in the text at all. `seen` remembers, per segment (the
    /// first 64), which were looked for (`.0`) and found (`.1`), so a document is searched
    /// once per key.
    pub fn could_have(&self, slot: usize, text: &[u8], seen: &mut (u64, u64)) -> bool {
        let Some(need) = self.needs.get(slot) else {
            return true;
        };
        need.iter().all(|&s| {
            let bit = 1u64.checked_shl(s as u32).unwrap_or(0);
            if bit != 0 && seen.0 & bit != 0 {
                return seen.1 & bit != 0;
            }
            let found = self.segments[s].find(text).is_some();
            if bit != 0 {
                seen.0 |= bit;
                if found {
                    seen.1 |= bit;
                }
            }
            found
        })
    }

    /// Every wanted path's values in the JSON `text`, in one pass. `None` when the text is not
    /// one JSON value, or holds a duplicate or dotted key on a wanted path (parse it instead).
    pub fn extract<'a>(&self, text: &'a str) -> Option<Extracted<'a>> {
        let mut out = Out {
            values: Vec::new(),
            ambiguous: false,
        };
        let mut de = serde_json::Deserializer::from_str(text);
        Walk {
            leaves: &[],
            scalar: false,
            node: Some(&self.root),
            out: &mut out,
        }
        .deserialize(&mut de)
        .ok()?;
        de.end().ok()?;
        if out.ambiguous {
            return None;
        }
        Some(Extracted { values: out.values })
    }
}

thread_local! {
    /// The path set the parser pulls for while [`pulling`] runs on this thread.
    static PULLING: RefCell<Option<Arc<Paths>>> = const { RefCell::new(None) };
}

/// Run `f` (which parses events) with the parser pulling the `requestObject` fields of
/// `paths` into each Kubernetes event it reads ([`trailwarden_model::Event::pulled`]).
pub fn pulling<R>(paths: Option<&Arc<Paths>>, f: impl FnOnce() -> R) -> R {
    let Some(paths) = paths else {
        return f();
    };
    struct Restore(Option<Arc<Paths>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            PULLING.with_borrow_mut(|p| *p = prev);
        }
    }
    let _restore = Restore(PULLING.with_borrow_mut(|p| p.replace(Arc::clone(paths))));
    f()
}

/// What the parser's pass found in a `requestObject` (`None`: not pulled — no path set, or an
/// object the pass cannot answer for exactly, such as one with a key twice).
pub(crate) struct RequestObject(Option<Pulled>);

/// `deserialize_with` of the Kubernetes event's `requestObject`: walks it for the wanted paths
/// when [`pulling`], else skips it.
pub(crate) fn request_object<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<RequestObject>, D::Error> {
    PULLING.with_borrow(|p| {
        let Some(paths) = p else {
            d.deserialize_ignored_any(IgnoredAny)?;
            return Ok(None);
        };
        let mut out = Out {
            values: Vec::new(),
            ambiguous: false,
        };
        if let Some(edge) = paths.root.edge(REQUEST_OBJECT) {
            Walk {
                leaves: &edge.leaves,
                scalar: false,
                node: edge.child.as_deref(),
                out: &mut out,
            }
            .deserialize(d)?;
        } else {
            d.deserialize_ignored_any(IgnoredAny)?;
        }
        if out.ambiguous {
            return Ok(Some(RequestObject(None)));
        }
        let values = out
            .values
            .into_iter()
            .map(|(slot, v)| (slot as u32, owned(v)))
            .collect();
        Ok(Some(RequestObject(Some(Pulled {
            paths: paths.id,
            values,
        }))))
    })
}

/// What an event read while [`pulling`] carries: the pulled values, none (every wanted path
/// absent) when it had no `requestObject`, or nothing when the pass left it to detection.
pub(crate) fn pulled(found: Option<RequestObject>) -> Option<Pulled> {
    match found {
        Some(RequestObject(p)) => p,
        None => PULLING.with_borrow(|p| {
            p.as_ref().map(|paths| Pulled {
                paths: paths.id,
                values: Vec::new(),
            })
        }),
    }
}

fn owned(v: Val<'_>) -> PulledValue {
    match v {
        Val::Null => PulledValue::Null,
        Val::Bool(b) => PulledValue::Bool(b),
        Val::Num(n, text) => PulledValue::Num {
            bits: n.to_bits(),
            text: text.into_owned(),
        },
        Val::Str(s) => PulledValue::Str(s.into_owned()),
        Val::Composite => PulledValue::Composite,
    }
}

/// A pulled value as the value of a field.
pub fn val_of(v: &PulledValue) -> Val<'_> {
    match v {
        PulledValue::Null => Val::Null,
        PulledValue::Bool(b) => Val::Bool(*b),
        PulledValue::Num { bits, text } => Val::Num(f64::from_bits(*bits), Cow::Borrowed(text)),
        PulledValue::Str(s) => Val::Str(Cow::Borrowed(s)),
        PulledValue::Composite => Val::Composite,
    }
}

struct Out<'a> {
    values: Vec<(usize, Val<'a>)>,
    ambiguous: bool,
}

/// One value of the document: paths that end at it (`leaves`) and the keys wanted below it.
/// Returns the value when it is a scalar (for the array-of-scalars rule at a path's end).
struct Walk<'p, 'o, 'a> {
    leaves: &'p [usize],
    /// The caller needs to know whether the value is a scalar (an item of an array at a
    /// path's end).
    scalar: bool,
    node: Option<&'p Node>,
    out: &'o mut Out<'a>,
}

impl<'p, 'o, 'de> DeserializeSeed<'de> for Walk<'p, 'o, 'de> {
    type Value = Option<Val<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.leaves.is_empty() && self.node.is_none() && !self.scalar {
            d.deserialize_ignored_any(IgnoredAny)?;
            return Ok(None);
        }
        d.deserialize_any(self)
    }
}

impl<'p, 'o, 'de> Walk<'p, 'o, 'de> {
    fn scalar(self, v: Val<'de>) -> Option<Val<'de>> {
        for &s in self.leaves {
            self.out.values.push((s, v.clone()));
        }
        Some(v)
    }
}

fn num<'a>(n: serde_json::Number) -> Val<'a> {
    Val::Num(n.as_f64().unwrap_or(f64::NAN), Cow::Owned(n.to_string()))
}

impl<'p, 'o, 'de> Visitor<'de> for Walk<'p, 'o, 'de> {
    type Value = Option<Val<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(self.scalar(Val::Null))
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(self.scalar(Val::Null))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(self.scalar(Val::Bool(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self.scalar(num(v.into())))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self.scalar(num(v.into())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        let v = match serde_json::Number::from_f64(v) {
            Some(n) => num(n),
            None => Val::Null,
        };
        Ok(self.scalar(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(self.scalar(Val::Str(Cow::Borrowed(v))))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.scalar(Val::Str(Cow::Owned(v.to_string()))))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(self.scalar(Val::Str(Cow::Owned(v))))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // at a path's end: each scalar of an array of scalars, else one composite; below: the
        // same keys are wanted in every item (nested arrays too)
        let mut items: SmallVec<[Val<'de>; 4]> = SmallVec::new();
        let mut composite = false;
        loop {
            let item = seq.next_element_seed(Walk {
                leaves: &[],
                scalar: !self.leaves.is_empty(),
                node: self.node,
                out: &mut *self.out,
            })?;
            match item {
                None => break,
                Some(Some(v)) if !self.leaves.is_empty() => items.push(v),
                Some(Some(_)) => {}
                Some(None) => composite = true,
            }
        }
        for &s in self.leaves {
            if composite || items.is_empty() {
                self.out.values.push((s, Val::Composite));
            } else {
                self.out.values.extend(items.iter().map(|v| (s, v.clone())));
            }
        }
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        for &s in self.leaves {
            self.out.values.push((s, Val::Composite));
        }
        let Some(node) = self.node else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(None);
        };
        let mut matched: SmallVec<[Cow<'de, str>; 4]> = SmallVec::new();
        while let Some(key) = map.next_key_seed(Key)? {
            match node.edge(&key) {
                Some(edge) => {
                    if matched.iter().any(|m| {
                        *m == key
                            || (node.dotted
                                && (is_dotted_prefix(m, &key) || is_dotted_prefix(&key, m)))
                    }) {
                        self.out.ambiguous = true;
                    }
                    matched.push(key);
                    map.next_value_seed(Walk {
                        leaves: &edge.leaves,
                        scalar: false,
                        node: edge.child.as_deref(),
                        out: &mut *self.out,
                    })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(None)
    }
}

/// `a` followed by `.` starts `b`.
fn is_dotted_prefix(a: &str, b: &str) -> bool {
    b.len() > a.len() && b.starts_with(a) && b.as_bytes()[a.len()] == b'.'
}

/// An object key, borrowed from the text when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}
