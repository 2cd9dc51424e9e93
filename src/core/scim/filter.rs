//! SCIM filters (RFC 7644 §3.4.2.2): parsed into a [`Filter`] and evaluated against a
//! resource as JSON. Attribute names compare caseless, and so do string values (the
//! attributes we serve are all `caseExact: false` but `id`, which is never mixed case).
//! Precedence: `not`, then `and`, then `or`; parentheses group.

use serde_json::Value;

use super::ScimError;

/// `[URN:]attr[.sub]`, the URN dropped (we serve each schema's attributes at the top).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub attr: String,
    pub sub: Option<String>,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare(AttrPath, Op, Value),
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attr[filter]`: some element of a multi-valued attribute matches.
    Within(AttrPath, Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    LBracket,
    RBracket,
    Str(String),
    Word(String),
}

fn bad(detail: impl Into<String>) -> ScimError {
    ScimError::bad("invalidFilter", detail)
}

fn lex(s: &str) -> Result<Vec<Tok>, ScimError> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '[' | ']' => {
                chars.next();
                out.push(match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    '[' => Tok::LBracket,
                    _ => Tok::RBracket,
                });
            }
            '"' => {
                // A JSON string: find its end honouring escapes, then let serde decode it.
                let mut end = None;
                let mut escaped = false;
                for (j, d) in s[i + 1..].char_indices() {
                    match d {
                        _ if escaped => escaped = false,
                        '\\' => escaped = true,
                        '"' => {
                            end = Some(i + 1 + j);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end.ok_or_else(|| bad(format!("unterminated string at character {}", i + 1)))?;
                let v: String = serde_json::from_str(&s[i..=end])
                    .map_err(|e| bad(format!("string at character {}: {e}", i + 1)))?;
                out.push(Tok::Str(v));
                while chars.peek().is_some_and(|&(k, _)| k <= end) {
                    chars.next();
                }
            }
            _ => {
                let mut w = String::new();
                while let Some(&(_, d)) = chars.peek() {
                    if d.is_whitespace() || matches!(d, '(' | ')' | '[' | ']' | '"') {
                        break;
                    }
                    w.push(d);
                    chars.next();
                }
                out.push(Tok::Word(w));
            }
        }
    }
    Ok(out)
}

/// Parses `[URN:]attr[.sub]`.
pub fn attr_path(s: &str) -> Result<AttrPath, ScimError> {
    let name = if s.len() > 4 && s[..4].eq_ignore_ascii_case("urn:") {
        s.rsplit_once(':').map_or(s, |(_, a)| a)
    } else {
        s
    };
    let (attr, sub) = match name.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (name, None),
    };
    let ok = |p: &str| {
        !p.is_empty()
            && p.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))
    };
    if !ok(attr) || sub.is_some_and(|b| !ok(b)) {
        return Err(ScimError::bad("invalidPath", format!("`{s}` is not an attribute path")));
    }
    Ok(AttrPath {
        attr: attr.to_string(),
        sub: sub.map(str::to_string),
    })
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    fn or(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, ScimError> {
        if self.keyword("not") {
            self.at += 1;
            if self.next() != Some(Tok::Open) {
                return Err(bad("`not` must be followed by `(`"));
            }
            let f = self.or()?;
            if self.next() != Some(Tok::Close) {
                return Err(bad("missing `)`"));
            }
            return Ok(Filter::Not(Box::new(f)));
        }
        match self.next() {
            Some(Tok::Open) => {
                let f = self.or()?;
                if self.next() != Some(Tok::Close) {
                    return Err(bad("missing `)`"));
                }
                Ok(f)
            }
            Some(Tok::Word(w)) => {
                let path = attr_path(&w).map_err(|e| bad(e.detail))?;
                if self.peek() == Some(&Tok::LBracket) {
                    self.at += 1;
                    let inner = self.or()?;
                    if self.next() != Some(Tok::RBracket) {
                        return Err(bad("missing `]`"));
                    }
                    return Ok(Filter::Within(path, Box::new(inner)));
                }
                let op = match self.next() {
                    Some(Tok::Word(o)) => o.to_ascii_lowercase(),
                    _ => return Err(bad(format!("`{w}` must be followed by an operator"))),
                };
                let op = match op.as_str() {
                    "pr" => return Ok(Filter::Present(path)),
                    "eq" => Op::Eq,
                    "ne" => Op::Ne,
                    "co" => Op::Co,
                    "sw" => Op::Sw,
                    "ew" => Op::Ew,
                    "gt" => Op::Gt,
                    "ge" => Op::Ge,
                    "lt" => Op::Lt,
                    "le" => Op::Le,
                    other => return Err(bad(format!("unknown operator `{other}`"))),
                };
                let value = match self.next() {
                    Some(Tok::Str(s)) => Value::String(s),
                    Some(Tok::Word(v)) => match v.to_ascii_lowercase().as_str() {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        "null" => Value::Null,
                        _ => serde_json::from_str::<serde_json::Number>(&v)
                            .map(Value::Number)
                            .map_err(|_| bad(format!("`{v}` is not a value: quote strings")))?,
                    },
                    _ => return Err(bad("a comparison needs a value")),
                };
                Ok(Filter::Compare(path, op, value))
            }
            Some(t) => Err(bad(format!("unexpected {t:?}"))),
            None => Err(bad("the filter ends too early")),
        }
    }
}

/// Parses a filter; every refusal is `invalidFilter`.
pub fn parse(s: &str) -> Result<Filter, ScimError> {
    if s.len() > 4096 {
        return Err(bad("the filter is longer than 4096 bytes"));
    }
    let toks = lex(s)?;
    let mut p = Parser { toks, at: 0 };
    let f = p.or()?;
    if p.at < p.toks.len() {
        return Err(bad(format!("unexpected {:?}", p.toks[p.at])));
    }
    Ok(f)
}

/// `obj[name]`, the name compared caseless.
pub fn get_ci<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The values at `path` (each element of a multi-valued attribute).
fn values<'a>(obj: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let Some(v) = get_ci(obj, &path.attr) else {
        return vec![];
    };
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    match &path.sub {
        None => items,
        Some(sub) => items
            .into_iter()
            .filter_map(|i| get_ci(i, sub))
            .flat_map(|v| match v {
                Value::Array(a) => a.iter().collect::<Vec<_>>(),
                other => vec![other],
            })
            .collect(),
    }
}

fn compare(have: &Value, op: Op, want: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (have, want) {
        (Value::String(a), Value::String(b)) => {
            let (a, b) = (a.to_lowercase(), b.to_lowercase());
            match op {
                Op::Co => return a.contains(&b),
                Op::Sw => return a.starts_with(&b),
                Op::Ew => return a.ends_with(&b),
                _ => a.cmp(&b),
            }
        }
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Less),
            _ => return false,
        },
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        _ => return op == Op::Ne,
    };
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Co | Op::Sw | Op::Ew => false,
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

impl Filter {
    /// Whether the resource (or one element of a multi-valued attribute) matches.
    pub fn matches(&self, obj: &Value) -> bool {
        match self {
            Filter::Compare(p, Op::Eq, Value::Null) => !values(obj, p).into_iter().any(present),
            Filter::Compare(p, Op::Ne, want) => !values(obj, p).into_iter().any(|v| compare(v, Op::Eq, want)),
            Filter::Compare(p, op, want) => values(obj, p).into_iter().any(|v| compare(v, *op, want)),
            Filter::Present(p) => values(obj, p).into_iter().any(present),
            Filter::And(a, b) => a.matches(obj) && b.matches(obj),
            Filter::Or(a, b) => a.matches(obj) || b.matches(obj),
            Filter::Not(f) => !f.matches(obj),
            Filter::Within(p, f) => values(obj, p).into_iter().any(|v| f.matches(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn filters_match_as_rfc7644_says() {
        let u = json!({"userName": "Alice@Example.com", "active": true, "name": {"familyName": "Liddell"},
            "emails": [{"value": "a@example.com", "type": "work", "primary": true}], "meta": {"lastModified": "2026-01-02T00:00:00Z"}});
        for (f, want) in [
            (r#"userName eq "alice@example.com""#, true),
            (r#"USERNAME Eq "alice@example.com""#, true),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "alice@example.com""#,
                true,
            ),
            (r#"userName ne "alice@example.com""#, false),
            (r#"userName sw "ali" and active eq true"#, true),
            (r#"userName ew "x" or name.familyName co "dell""#, true),
            (r#"not (active eq true)"#, false),
            (r#"emails[type eq "work" and value co "@example"]"#, true),
            (r#"emails.value eq "a@example.com""#, true),
            (r#"title pr"#, false),
            (r#"meta.lastModified gt "2026-01-01T00:00:00Z""#, true),
            (r#"title eq null"#, true),
        ] {
            assert_eq!(parse(f).unwrap().matches(&u), want, "{f}");
        }
    }

    #[test]
    fn bad_filters_are_invalid_filter() {
        for f in [
            "",
            "userName",
            "userName eq",
            r#"userName zz "x""#,
            r#"userName eq "x"#,
            "userName eq bare",
            "(userName pr",
            r#"userName eq "x" extra"#,
            "not userName pr",
            "emails[type pr",
            "9a pr",
        ] {
            let e = parse(f).unwrap_err();
            assert_eq!(e.scim_type, Some("invalidFilter"), "{f}");
        }
    }
}
