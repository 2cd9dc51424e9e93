//! Reading the YAML an operator wrote (the policy, `gate.yaml`) so that hostile or broken
//! input fails fast with its place: a key given twice is an error, not a silent
//! replacement; the file's size, its nesting and its alias expansion are bounded before
//! anything big is built.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Largest file read (bytes). A policy of thousands of rules is well under it.
pub const MAX_BYTES: usize = 1 << 20;
/// Deepest nesting of `[` and `{` (block nesting is bounded by the parser itself, at 128).
pub const MAX_FLOW_DEPTH: usize = 64;
/// Most nodes the document may have once its aliases (`*name`) are expanded.
pub const MAX_NODES: usize = 250_000;

/// What an alias expansion past the bounds is told.
const ALIASES: &str = "too many values once aliases (`*name`) are expanded; use fewer aliases";

/// Why the YAML was refused, and where (1-based; `(0, 0)` when the parser gave no place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Deserialises `text` as `T` after the checks of this module.
pub fn strict<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, YamlError> {
    if text.len() > MAX_BYTES {
        return Err(YamlError {
            line: 0,
            column: 0,
            message: format!("the file is {} bytes; at most {MAX_BYTES} are read", text.len()),
        });
    }
    check_flow_depth(text)?;
    // One pass over the document, as the parser sees it, counting nodes (aliases
    // expanded) and keys; only then the typed pass.
    let budget = Cell::new(MAX_NODES);
    let probe = serde_norway::Deserializer::from_str(text);
    Probe { budget: &budget }
        .deserialize(probe)
        .map_err(|e| from_parser(text, &e))?;
    serde_norway::from_str(text).map_err(|e| from_parser(text, &e))
}

/// The parser's error with its place up front, and a repeated key placed where it
/// repeats.
fn from_parser(text: &str, e: &serde_norway::Error) -> YamlError {
    let at = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    // serde_norway appends " at line L column C"; the place is printed up front instead.
    let msg = e.to_string();
    let mut message = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    if message == "repetition limit exceeded" {
        // The parser's own bound on alias uses (100 per event), said as ours is.
        message = ALIASES.to_string();
    }
    let (line, column) = duplicate_key_at(text, &message, at);
    YamlError { line, column, message }
}

/// Refuses `[`/`{` nested deeper than [`MAX_FLOW_DEPTH`] before the parser sees them (it
/// takes time quadratic in that depth). Brackets inside quotes and comments do not
/// count; a plain scalar such as `a[b` may count one too many, never one too few.
fn check_flow_depth(text: &str) -> Result<(), YamlError> {
    let mut depth = 0usize;
    let (mut line, mut column) = (1, 0);
    let mut quote: Option<char> = None;
    let mut prev = '\n';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        match (quote, c) {
            (_, '\n') => {
                line += 1;
                column = 0;
            }
            (Some('"'), '\\') => {
                chars.next();
                column += 1;
            }
            (Some(q), c) if c == q => {
                // `''` inside single quotes is an escaped quote, not the end.
                if q == '\'' && chars.peek() == Some(&'\'') {
                    chars.next();
                    column += 1;
                } else {
                    quote = None;
                }
            }
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if prev.is_whitespace() => {
                // A comment runs to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        column = 0;
                        break;
                    }
                }
                prev = '\n';
                continue;
            }
            (None, '[' | '{') => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(YamlError {
                        line,
                        column,
                        message: format!("nested deeper than {MAX_FLOW_DEPTH} levels of `[` and `{{`"),
                    });
                }
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        prev = c;
    }
    Ok(())
}

/// Where the second `key:` of a YAML block mapping is, given the parser's error for a
/// key given twice (`duplicate entry with key "key"`, located at the mapping's start):
/// the line and column of the repeated key, or `at` unchanged when it cannot be found
/// (a flow mapping, a quoted key).
pub fn duplicate_key_at(text: &str, message: &str, at: (usize, usize)) -> (usize, usize) {
    let Some(key) = message
        .split("duplicate entry with key \"")
        .nth(1)
        .and_then(|k| k.split('"').next())
    else {
        return at;
    };
    let (line, column) = at;
    let want = format!("{key}:");
    text.lines()
        .enumerate()
        .skip(line.saturating_sub(1))
        .filter(|(_, l)| {
            l.get(column.saturating_sub(1)..)
                .is_some_and(|rest| rest.starts_with(&want))
        })
        .nth(1)
        .map(|(i, _)| (i + 1, column))
        .unwrap_or(at)
}

/// Visits every node once per place it appears (so an alias counts as often as it is
/// used), spending one of `budget` each, and refuses a mapping with a key twice. Builds
/// nothing but the keys of one mapping at a time.
struct Probe<'b> {
    budget: &'b Cell<usize>,
}

/// A mapping key, as far as comparing keys goes: scalars by type and value; anything
/// else never equal to another.
#[derive(PartialEq, Eq, Hash)]
enum Key {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Other(usize),
}

impl fmt::Display for Key {
    /// As serde_norway words it, so [`duplicate_key_at`] can place it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Null => f.write_str("with null key"),
            Key::Bool(b) => write!(f, "with key `{b}`"),
            Key::Number(n) => write!(f, "with key {n}"),
            Key::String(s) => write!(f, "with key {s:?}"),
            Key::Other(_) => f.write_str("in YAML map"),
        }
    }
}

impl Probe<'_> {
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        match self.budget.get().checked_sub(1) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => Err(E::custom(ALIASES)),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = Key;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
        self.spend()?;
        Ok(Key::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Key, E> {
        self.visit_unit()
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
        self.spend()?;
        Ok(Key::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
        self.spend()?;
        Ok(Key::Number(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
        self.spend()?;
        Ok(Key::Number(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
        self.spend()?;
        Ok(Key::Number(v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        self.spend()?;
        Ok(Key::String(v.to_string()))
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        self.deserialize(d)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        self.deserialize(d)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Key, A::Error> {
        // A tagged value (`!tag x`): count the tag and what it tags.
        use de::VariantAccess;
        self.spend()?;
        let (_, variant): (Key, _) = data.variant_seed(Probe { budget: self.budget })?;
        variant.newtype_variant_seed(Probe { budget: self.budget })?;
        Ok(Key::Other(self.budget.get()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Key, A::Error> {
        self.spend()?;
        while seq.next_element_seed(Probe { budget: self.budget })?.is_some() {}
        Ok(Key::Other(self.budget.get()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        self.spend()?;
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key_seed(Probe { budget: self.budget })? {
            if let Some(dup) = keys.replace(key) {
                return Err(de::Error::custom(format!("duplicate entry {dup}")));
            }
            map.next_value_seed(Probe { budget: self.budget })?;
        }
        Ok(Key::Other(self.budget.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        groups: std::collections::BTreeMap<String, Vec<String>>,
    }

    #[test]
    fn a_repeated_key_is_an_error_where_it_repeats() {
        let text = "groups:\n  sre: [x]\n  ops: [y]\n  sre: [z]\n";
        let e = strict::<Doc>(text).unwrap_err();
        assert_eq!((e.line, e.column), (4, 3), "{e}");
        assert!(e.message.contains("duplicate entry with key \"sre\""), "{e}");
        let flow = strict::<serde_norway::Value>("x: {a: 1, a: 2}").unwrap_err();
        assert!(flow.message.contains("duplicate entry with key \"a\""), "{flow}");
        let numbers = strict::<serde_norway::Value>("1: a\n2: b\n1: c\n").unwrap_err();
        assert!(numbers.message.contains("duplicate entry with key 1"), "{numbers}");
    }

    #[test]
    fn aliases_are_fine_until_they_expand_too_far() {
        let ok = "base: &b [alice, bob]\ngroups:\n  sre: *b\n  ops: *b\n";
        let v: serde_norway::Value = strict(ok).unwrap();
        assert_eq!(v["groups"]["ops"][1], "bob");
        // A "billion laughs": ten of ten of ten ... of a ten-item list.
        let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = strict::<serde_norway::Value>(&laughs).unwrap_err();
        assert!(e.message.contains("aliases"), "{e}");
        // The same expansion is also refused when the limit the parser keeps is not
        // reached: few events, each alias a large node.
        let mut wide = String::from("a: &a [");
        wide.push_str(&vec!["x"; 4000].join(", "));
        wide.push_str("]\nb: [");
        wide.push_str(&vec!["*a"; 200].join(", "));
        wide.push_str("]\n");
        let e = strict::<serde_norway::Value>(&wide).unwrap_err();
        assert!(e.message.contains("aliases"), "{e}");
    }

    #[test]
    fn deep_flow_nesting_is_refused_at_its_place_without_parsing() {
        let deep = format!("a: 1\nb: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let e = strict::<serde_norway::Value>(&deep).unwrap_err();
        assert_eq!((e.line, e.column), (2, 4 + MAX_FLOW_DEPTH), "{e}");
        assert!(e.message.contains("nested deeper than 64"), "{e}");
        // Brackets in quotes and comments are text, not nesting.
        let quoted = format!(
            "a: '{}'\nb: \"{}\\\"\"\nc: 1 # {}\nd: 'it''s [{{'\n",
            "[".repeat(100),
            "{".repeat(100),
            "[".repeat(100)
        );
        let v: serde_norway::Value = strict(&quoted).unwrap();
        assert_eq!(v["c"], 1);
        let fine = format!("a: {}{}\n", "[".repeat(MAX_FLOW_DEPTH), "]".repeat(MAX_FLOW_DEPTH));
        assert!(check_flow_depth(&fine).is_ok());
    }

    #[test]
    fn a_file_too_large_is_refused_before_parsing() {
        let big = format!("a: \"{}\"\n", "x".repeat(MAX_BYTES));
        let e = strict::<serde_norway::Value>(&big).unwrap_err();
        assert!(e.message.contains("at most 1048576"), "{e}");
    }

    #[test]
    fn a_repeated_key_is_found_where_it_repeats() {
        let text = "a: 1\ngroups:\n  sre: [x]\n  ops: [y]\n  sre: [z]\n";
        let msg = "groups: duplicate entry with key \"sre\"";
        assert_eq!(duplicate_key_at(text, msg, (3, 3)), (5, 3));
        assert_eq!(duplicate_key_at(text, "something else", (3, 3)), (3, 3));
        assert_eq!(
            duplicate_key_at("x: {a: 1, a: 2}", "duplicate entry with key \"a\"", (1, 4)),
            (1, 4)
        );
    }
}
