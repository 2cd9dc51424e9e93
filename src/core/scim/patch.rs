//! PATCH (RFC 7644 §3.5.2): `add`, `replace` and `remove` applied in order to a resource
//! as JSON. Paths are `attr`, `attr.sub`, `attr[filter]` and `attr[filter].sub`, with an
//! optional schema URN; attribute names compare caseless. Operation names are caseless
//! too (Entra ID sends `Replace`). The caller checks the result like a PUT body.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ScimError;
use super::filter::{self, Filter, get_ci};

/// A PatchOp body.
#[derive(Debug, Deserialize)]
pub struct PatchRequest {
    pub schemas: Vec<String>,
    #[serde(rename = "Operations", alias = "operations")]
    pub operations: Vec<Operation>,
}

#[derive(Debug, Deserialize)]
pub struct Operation {
    pub op: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub value: Option<Value>,
}

/// A PATCH target.
#[derive(Debug, Clone, PartialEq)]
struct Path {
    attr: String,
    filter: Option<Filter>,
    sub: Option<String>,
}

fn parse_path(s: &str) -> Result<Path, ScimError> {
    let s = s.trim();
    let (head, bracket) = match s.find('[') {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let Some(bracket) = bracket else {
        let p = filter::attr_path(head)?;
        return Ok(Path {
            attr: p.attr,
            filter: None,
            sub: p.sub,
        });
    };
    let p = filter::attr_path(head)?;
    let invalid = || ScimError::bad("invalidPath", format!("`{s}` is not a PATCH path"));
    if p.sub.is_some() {
        return Err(invalid());
    }
    let close = bracket.rfind(']').ok_or_else(invalid)?;
    let f = filter::parse(&bracket[1..close]).map_err(|e| ScimError::bad("invalidPath", e.detail))?;
    let rest = &bracket[close + 1..];
    let sub = match rest.strip_prefix('.') {
        Some(sub) if filter::attr_path(sub).is_ok_and(|a| a.sub.is_none()) => Some(sub.to_string()),
        None if rest.is_empty() => None,
        _ => return Err(invalid()),
    };
    Ok(Path {
        attr: p.attr,
        filter: Some(f),
        sub,
    })
}

/// The key `name` is stored under (caseless), or `name` itself.
fn key_of(obj: &Map<String, Value>, name: &str) -> String {
    obj.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

fn object<'a>(v: &'a mut Value, what: &str) -> Result<&'a mut Map<String, Value>, ScimError> {
    if v.is_null() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut()
        .ok_or_else(|| ScimError::bad("invalidPath", format!("`{what}` is not a complex attribute")))
}

/// Applies every operation in order; the first refusal stops (nothing is stored).
pub fn apply(resource: &mut Value, req: &PatchRequest) -> Result<(), ScimError> {
    if !req.schemas.iter().any(|s| s == super::PATCH_SCHEMA) {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("`schemas` must include {}", super::PATCH_SCHEMA),
        ));
    }
    if req.operations.is_empty() {
        return Err(ScimError::bad("invalidSyntax", "`Operations` is empty"));
    }
    for op in &req.operations {
        let kind = op.op.to_ascii_lowercase();
        let path = op
            .path
            .as_deref()
            .filter(|p| !p.trim().is_empty())
            .map(parse_path)
            .transpose()?;
        let obj = object(resource, "the resource")?;
        match (kind.as_str(), path) {
            ("add" | "replace", None) => {
                let Some(Value::Object(m)) = &op.value else {
                    return Err(ScimError::bad(
                        "invalidValue",
                        "an operation without `path` needs an object `value`",
                    ));
                };
                for (k, v) in m {
                    // A key may itself be a path (`name.givenName`, as Entra ID sends).
                    let p = parse_path(k)?;
                    set(obj, &p, v.clone(), kind == "add")?;
                }
            }
            ("add" | "replace", Some(p)) => {
                let v = op
                    .value
                    .clone()
                    .ok_or_else(|| ScimError::bad("invalidValue", format!("`{}` needs a `value`", op.op)))?;
                set(obj, &p, v, kind == "add")?;
            }
            ("remove", None) => return Err(ScimError::bad("noTarget", "`remove` needs a `path`")),
            ("remove", Some(p)) => remove(obj, &p, op.value.as_ref())?,
            _ => {
                return Err(ScimError::bad(
                    "invalidSyntax",
                    format!("unknown operation `{}`: use add, replace or remove", op.op),
                ));
            }
        }
    }
    Ok(())
}

fn set(obj: &mut Map<String, Value>, p: &Path, v: Value, add: bool) -> Result<(), ScimError> {
    let key = key_of(obj, &p.attr);
    match (&p.filter, &p.sub) {
        (None, None) => {
            let merge_into = obj.get_mut(&key).filter(|_| add);
            match (merge_into, v) {
                (Some(Value::Array(have)), Value::Array(more)) => {
                    for m in more {
                        if !have.contains(&m) {
                            have.push(m);
                        }
                    }
                }
                (Some(Value::Array(have)), one) => {
                    if !have.contains(&one) {
                        have.push(one);
                    }
                }
                (Some(Value::Object(have)), Value::Object(more)) => {
                    for (k, m) in more {
                        let k = key_of(have, &k);
                        have.insert(k, m);
                    }
                }
                (_, v) => {
                    obj.insert(key, v);
                }
            }
        }
        (None, Some(sub)) => {
            let parent = object(obj.entry(key.clone()).or_insert(Value::Null), &key)?;
            let sk = key_of(parent, sub);
            parent.insert(sk, v);
        }
        (Some(f), sub) => {
            let items = obj
                .get_mut(&key)
                .and_then(Value::as_array_mut)
                .ok_or_else(|| ScimError::bad("noTarget", format!("`{}` has no values to match", p.attr)))?;
            let mut hit = false;
            for item in items.iter_mut().filter(|i| f.matches(i)) {
                hit = true;
                let io = object(item, &p.attr)?;
                match (sub, &v) {
                    (Some(sub), v) => {
                        let sk = key_of(io, sub);
                        io.insert(sk, v.clone());
                    }
                    (None, Value::Object(m)) => {
                        for (k, mv) in m {
                            let k = key_of(io, k);
                            io.insert(k, mv.clone());
                        }
                    }
                    (None, _) => {
                        return Err(ScimError::bad(
                            "invalidValue",
                            "a filtered path without a sub-attribute needs an object `value`",
                        ));
                    }
                }
            }
            if !hit {
                return Err(ScimError::bad(
                    "noTarget",
                    format!("no value of `{}` matches the filter", p.attr),
                ));
            }
        }
    }
    Ok(())
}

fn remove(obj: &mut Map<String, Value>, p: &Path, value: Option<&Value>) -> Result<(), ScimError> {
    let key = key_of(obj, &p.attr);
    match (&p.filter, &p.sub) {
        (None, None) => match (obj.get_mut(&key), value) {
            // `remove members` with the values to take out (as Entra ID sends it).
            (Some(Value::Array(have)), Some(v)) => {
                let gone: Vec<&Value> = match v {
                    Value::Array(a) => a.iter().collect(),
                    one => vec![one],
                };
                have.retain(|h| {
                    !gone
                        .iter()
                        .any(|g| *g == h || (get_ci(g, "value").is_some() && get_ci(g, "value") == get_ci(h, "value")))
                });
            }
            _ => {
                obj.remove(&key);
            }
        },
        (None, Some(sub)) => match obj.get_mut(&key) {
            Some(Value::Object(o)) => {
                let sk = key_of(o, sub);
                o.remove(&sk);
            }
            Some(Value::Array(a)) => {
                for i in a.iter_mut().filter_map(Value::as_object_mut) {
                    let sk = key_of(i, sub);
                    i.remove(&sk);
                }
            }
            _ => {}
        },
        (Some(f), sub) => {
            let Some(Value::Array(items)) = obj.get_mut(&key) else {
                return Ok(());
            };
            match sub {
                None => items.retain(|i| !f.matches(i)),
                Some(sub) => {
                    for i in items
                        .iter_mut()
                        .filter(|i| f.matches(i))
                        .filter_map(Value::as_object_mut)
                    {
                        let sk = key_of(i, sub);
                        i.remove(&sk);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patch(v: &mut Value, ops: Value) -> Result<(), ScimError> {
        let req: PatchRequest =
            serde_json::from_value(json!({"schemas": [super::super::PATCH_SCHEMA], "Operations": ops})).unwrap();
        apply(v, &req)
    }

    #[test]
    fn operations_apply_in_order() {
        let mut u = json!({"userName": "a", "active": true, "emails": [{"value": "a@x", "type": "work"}],
            "members": [{"value": "1"}, {"value": "2"}]});
        patch(
            &mut u,
            json!([
                {"op": "Replace", "path": "active", "value": false},
                {"op": "add", "path": "name.givenName", "value": "Ann"},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@x"},
                {"op": "add", "path": "members", "value": [{"value": "3"}, {"value": "1"}]},
                {"op": "remove", "path": "members[value eq \"2\"]"},
                {"op": "remove", "path": "members", "value": [{"value": "3"}]},
                {"op": "replace", "value": {"displayName": "Ann A", "name.familyName": "A"}},
            ]),
        )
        .unwrap();
        assert_eq!(
            u,
            json!({"userName": "a", "active": false, "emails": [{"value": "b@x", "type": "work"}],
                "members": [{"value": "1"}], "name": {"givenName": "Ann", "familyName": "A"}, "displayName": "Ann A"})
        );
    }

    #[test]
    fn refusals_name_their_scim_type() {
        let mut u = json!({"userName": "a", "emails": [{"value": "a@x", "type": "work"}]});
        for (ops, want) in [
            (json!([{"op": "remove"}]), "noTarget"),
            (json!([{"op": "move", "path": "a"}]), "invalidSyntax"),
            (
                json!([{"op": "replace", "path": "emails[type eq \"home\"].value", "value": "x"}]),
                "noTarget",
            ),
            (
                json!([{"op": "add", "path": "emails[type eq", "value": "x"}]),
                "invalidPath",
            ),
            (json!([{"op": "add", "path": "a..b", "value": "x"}]), "invalidPath"),
            (json!([{"op": "replace", "value": 3}]), "invalidValue"),
            (json!([{"op": "add", "path": "nick"}]), "invalidValue"),
            (json!([]), "invalidSyntax"),
        ] {
            assert_eq!(patch(&mut u, ops.clone()).unwrap_err().scim_type, Some(want), "{ops}");
        }
    }
}
