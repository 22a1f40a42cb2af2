//! The JSON fields a rule set reads, compiled once into a tree of keys, and pulled out of a
//! document in one pass over its text: the values of every wanted path are collected while
//! the parser skips what no rule reads, without building a tree of the whole document.
//!
//! The answers are those of [`crate::doc::json_values`] over the parsed document: arrays on the
//! way are expanded, a key may itself hold dots (`authorization.k8s.io/decision`), an array of
//! scalars at the end of a path gives each scalar and any other array or object gives one
//! [`Val::Composite`]. Where the two could differ — an object with the same key twice (a parsed
//! document keeps the last), or keys `a` and `a.b` side by side (the longer one wins) — the pass
//! says so and the caller parses the document instead. One leniency: a number too large for a
//! float (`1e999`) where no rule looks is skipped unread, so the document's other fields are
//! still there, where the parser refuses the whole document.

use crate::doc::Val;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

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
    root: Node,
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::json_values;

    const FIELDS: &[&str] = &[
        "objectRef.resource",
        "annotations.authorization.k8s.io/decision",
        "requestObject.spec.volumes.hostPath.path",
        "requestObject.spec.volumes",
        "requestObject.spec",
        "user.groups",
        "code",
        "a.b",
        "a.b.c",
        "x",
        "missing.field",
    ];

    fn same(text: &str) {
        let paths = Paths::new(FIELDS.iter().copied());
        let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let ex = paths.extract(text);
        for f in FIELDS {
            let want = json_values(&v, f).to_vec();
            let slot = paths.slot(f).unwrap_or(usize::MAX);
            // every text here is one the pass answers for itself
            let Some(ex) = &ex else {
                panic!("no answer for {text}")
            };
            assert_eq!(
                ex.get(slot).cloned().collect::<Vec<_>>(),
                want,
                "{f} in {text}"
            );
        }
    }

    #[test]
    fn one_pass_gives_what_the_parsed_document_gives() {
        same(crate::doc::SAMPLE);
        same(r#"{"x": [[1, 2], [3]]}"#);
        same(
            r#"{"user": {"groups": []}, "code": 1.5e3, "x": [1, {"y": 2}], "a": [{"b": [{"c": "\u0041"}]}]}"#,
        );
        same(r#"{"x": null, "code": -7, "a": {"b": {"c": [true, false, null]}}}"#);
        same(r#"[{"x": "in an array"}, {"x": "twice"}]"#);
    }

    #[test]
    fn duplicate_and_dotted_keys_are_left_to_the_parser() {
        let paths = Paths::new(FIELDS.iter().copied());
        assert!(paths.extract(r#"{"x": 1, "x": 2}"#).is_none());
        assert!(paths.extract(r#"{"a": {"b": 1}, "a.b": 2}"#).is_none());
        assert!(paths.extract(r#"{"a": {"b": 1}, "x": 2}"#).is_some());
        assert!(paths.extract(r#"{"a": 1} trailing"#).is_none());
        assert!(paths.extract(r#"{"a": "#).is_none());
        // found by the json_extract fuzz target: a number out of range where no rule looks
        let lenient = paths.extract(r#"{"x": 1, "y": 3e6888}"#);
        assert_eq!(
            lenient.map(|e| e.get(paths.slot("x").unwrap_or(0)).count()),
            Some(1)
        );
        assert!(paths.extract(r#"{"x": 3e6888}"#).is_none());
    }

    #[test]
    fn key_search_remembers_per_segment() {
        let paths = Paths::new(["requestObject.spec", "objectRef.resource"]);
        let mut seen = (0, 0);
        let text = br#"{"objectRef": {"resource": "pods"}}"#;
        assert!(!paths.could_have(0, text, &mut seen));
        assert!(paths.could_have(1, text, &mut seen));
        assert_eq!(seen.0.count_ones(), 3); // requestObject (then stop), objectRef, resource
        assert!(!paths.could_have(0, text, &mut seen));
    }

    fn json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-c/.]{0,3}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("a".to_string()),
                        Just("b".to_string()),
                        Just("c".to_string()),
                        Just("a.b".to_string()),
                        Just("x".to_string()),
                        Just("code".to_string()),
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever the document, the pass answers as the parsed document does, or leaves it
        /// to the parser.
        #[test]
        fn one_pass_equals_the_parsed_document(v in json()) {
            let text = v.to_string();
            let paths = Paths::new(FIELDS.iter().copied());
            // the document as the engine parses it (floats need not round-trip exactly)
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let ex = paths.extract(&text);
            if let Some(ex) = &ex {
                for f in FIELDS {
                    let slot = paths.slot(f).unwrap_or(usize::MAX);
                    proptest::prop_assert_eq!(ex.get(slot).cloned().collect::<Vec<_>>(), json_values(&parsed, f).to_vec(), "{} in {}", f, text);
                }
            }
        }
    }
}
