//! `throttle:` and `max_waits_per_caller` in gate.yaml: how hard one client may push
//! before it is told to back off with `429` (docs/operations.md).

use serde::{Deserialize, Serialize};

use super::{ConfigError, Invalid};
use crate::core::throttle::Rate;

/// Failed authentications a client address may make: 20 at once, then one a second.
pub const FAILED_AUTH: Rate = Rate {
    burst: 20,
    per_minute: 60,
};
/// Refused actions (a vote, cancel or consume the server turns down) a caller may make.
pub const REFUSED: Rate = Rate {
    burst: 20,
    per_minute: 60,
};
/// Concurrent long-waits one caller may hold.
pub const MAX_WAITS_PER_CALLER: usize = 1000;

/// `throttle:` in gate.yaml.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Per client address: requests whose credential the server refused (401).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_auth: Option<Rate>,
    /// Per caller: actions the server refused (403, 409, 422 on approve, deny, cancel,
    /// consume, from the API or the web UI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Rate>,
}

impl ThrottleConfig {
    pub fn failed_auth(&self) -> Rate {
        self.failed_auth.unwrap_or(FAILED_AUTH)
    }

    pub fn refused(&self) -> Rate {
        self.refused.unwrap_or(REFUSED)
    }
}

pub(super) fn validate(
    t: Option<&ThrottleConfig>,
    max_waits: Option<usize>,
    fail: &dyn Fn(&str, Invalid) -> ConfigError,
) -> Result<(), ConfigError> {
    if max_waits == Some(0) {
        return Err(fail("max_waits_per_caller", Invalid::MaxWaits));
    }
    let Some(t) = t else { return Ok(()) };
    for (key, rate) in [("failed_auth", t.failed_auth), ("refused", t.refused)] {
        if let Some(r) = rate {
            r.check(&format!("throttle.{key}"))
                .map_err(|m| fail(key, Invalid::Throttle(m)))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn a_rate_of_zero_and_a_cap_of_zero_are_errors_at_their_place() {
        let e = Config::parse("gate.yaml", "throttle:\n  refused: {burst: 0, per_minute: 5}\n").unwrap_err();
        assert_eq!((e.line, e.message.contains("throttle.refused")), (2, true), "{e:?}");
        let e = Config::parse("gate.yaml", "max_waits_per_caller: 0\n").unwrap_err();
        assert_eq!(e.line, 1, "{e:?}");
        assert!(e.message.contains("max_waits_per_caller"), "{e:?}");
        let e = Config::parse("gate.yaml", "throttle:\n  refused: {burst: 1, per_minut: 5}\n").unwrap_err();
        assert!(e.message.contains("per_minut"), "{e:?}");
        let ok = Config::parse("gate.yaml", "throttle:\n  failed_auth: {burst: 5, per_minute: 10}\n").unwrap();
        let t = ok.throttle.unwrap_or_default();
        assert_eq!((t.failed_auth().burst, t.refused()), (5, super::REFUSED));
    }
}
