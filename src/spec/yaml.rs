//! YAML -> JSON value plus the line:column of every node and key, so that schema and semantic
//! errors can point into the file.
//!
//! serde-saphyr parses (serde_yaml is archived); its budgets refuse alias bombs and oversized
//! documents before they cost memory, and `Spanned` gives each node's position.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

/// 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A parsed document: the value, and positions by JSON pointer (`/queries/0/name`).
#[derive(Debug, Default)]
pub struct Located {
    pub value: Value,
    /// Where each value starts.
    pub values: HashMap<String, Pos>,
    /// Where each mapping key starts (for "unknown key" errors).
    pub keys: HashMap<String, Pos>,
}

impl Located {
    /// The position of the value at `pointer`, else of its closest ancestor.
    pub fn pos(&self, pointer: &str) -> Pos {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Pos { line: 1, column: 1 },
            }
        }
    }

    /// The position of the key at `pointer` (falling back to the value's).
    pub fn key_pos(&self, pointer: &str) -> Pos {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.pos(pointer))
    }
}

/// A YAML node with positions, the shape serde-saphyr hands over.
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Spanned<Node>>()? {
            let v = map.next_value::<Spanned<Node>>()?;
            entries.push((k, v));
        }
        Ok(Node::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

fn pos_of<T>(s: &Spanned<T>) -> Pos {
    Pos {
        line: s.referenced.line(),
        column: s.referenced.column(),
    }
}

/// RFC 6901 escaping of one pointer segment.
pub fn escape_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn scalar_key(n: &Node) -> String {
    match n {
        Node::Null => "null".into(),
        Node::Bool(b) => b.to_string(),
        Node::Int(i) => i.to_string(),
        Node::UInt(u) => u.to_string(),
        Node::Float(f) => f.to_string(),
        Node::Str(s) => s.clone(),
        Node::Seq(_) | Node::Map(_) => "<collection>".into(),
    }
}

fn convert(node: Spanned<Node>, pointer: &str, out: &mut Located) -> Value {
    out.values.insert(pointer.to_string(), pos_of(&node));
    match node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Int(i) => Value::Number(i.into()),
        Node::UInt(u) => Value::Number(u.into()),
        Node::Float(f) => Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Node::Str(s) => Value::String(s),
        Node::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| convert(item, &format!("{pointer}/{i}"), out))
                .collect(),
        ),
        Node::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let key = scalar_key(&k.value);
                let child = format!("{pointer}/{}", escape_segment(&key));
                out.keys.insert(child.clone(), pos_of(&k));
                let value = convert(v, &child, out);
                m.insert(key, value);
            }
            Value::Object(m)
        }
    }
}

/// Parse limits: a spec is a few kilobytes; these refuse bombs and junk quickly.
fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 200_000;
    budget.max_nodes = 50_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_depth = 32;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = 4 * 1024 * 1024;
    let mut alias = serde_saphyr::options::AliasLimits::default();
    alias.max_total_replayed_events = 20_000;
    alias.max_replay_stack_depth = 16;
    let mut o = serde_saphyr::Options::default();
    o.budget = Some(budget);
    o.alias_limits = alias;
    o.with_snippet = false;
    o.duplicate_keys = serde_saphyr::options::DuplicateKeyPolicy::Error;
    o
}

/// A YAML error with its position when the parser knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Option<Pos>,
    pub message: String,
}

/// The parser's message without its own position (the caller prints ours) or advice about
/// its API.
fn tidy(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or("invalid YAML").trim();
    let msg = first.split(" at line ").next().unwrap_or(first);
    if let Some(rest) = msg.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        return format!("duplicate key `{key}`");
    }
    if msg.starts_with("alias replay limit exceeded") || msg.contains("budget") {
        return "too many alias expansions or nodes (a YAML bomb?); a spec needs neither"
            .to_string();
    }
    format!("invalid YAML: {msg}")
}

/// Parses one YAML document. An empty document is an empty mapping's worth of nothing (null).
pub fn parse(text: &str) -> Result<Located, YamlError> {
    let node: Spanned<Node> =
        serde_saphyr::from_str_with_options(text, options()).map_err(|e| {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line(),
                    column: l.column(),
                })
                .filter(|p| p.line > 0);
            YamlError {
                pos,
                message: tidy(&e.to_string()),
            }
        })?;
    let mut out = Located::default();
    out.value = convert(node, "", &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_values_and_keys() {
        let doc = parse("a: 1\nqueries:\n  - name: x\n    service_types: [preset, 3]\n").unwrap();
        assert_eq!(doc.value["queries"][0]["service_types"][1], 3);
        assert_eq!(
            doc.pos("/queries/0/service_types/1"),
            Pos {
                line: 4,
                column: 29
            }
        );
        assert_eq!(doc.key_pos("/queries/0/name"), Pos { line: 3, column: 5 });
        assert_eq!(doc.pos("/queries/0/missing"), doc.pos("/queries/0"));
    }

    #[test]
    fn malformed_yaml_has_a_position() {
        let e = parse("a: [1, 2\nb: c\n").unwrap_err();
        assert!(e.pos.is_some(), "{e:?}");
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.message, "duplicate key `a`");
        assert_eq!(e.pos, Some(Pos { line: 2, column: 1 }));
    }

    #[test]
    fn billion_laughs_is_refused_quickly() {
        let mut y = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            y.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                [prev.as_str(); 9].join(", ")
            ));
        }
        let started = std::time::Instant::now();
        let e = parse(&y).unwrap_err();
        assert!(e.message.contains("YAML bomb"), "{e:?}");
        assert!(started.elapsed().as_secs() < 2);
    }
}
