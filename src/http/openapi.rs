//! The API description served at `/api/v1/openapi.json`: `openapi.json` beside this file,
//! written by hand. `tests/it/openapi.rs` checks that it describes every route the router
//! serves (and no other), and runs schemathesis against a real server with it.

pub const SPEC: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    #[test]
    fn spec_is_json() {
        let v: serde_json::Value = serde_json::from_str(super::SPEC).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
    }
}
