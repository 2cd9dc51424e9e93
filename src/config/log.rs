//! `log:` in gate.yaml: the transparency log's name, how often it signs a checkpoint,
//! and the witnesses whose cosignatures it accepts (docs/audit.md).

use serde::{Deserialize, Serialize};

use super::{ConfigError, Invalid};

/// `log:` in gate.yaml.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// The checkpoint's first line and the log key's name (default: the public URL
    /// without its scheme, e.g. `gate.example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<CheckpointEvery>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub witnesses: Vec<WitnessEntry>,
}

/// A checkpoint is signed once this many events are unsigned, or this long after the
/// last one when any are (whichever comes first); records sign one when they need it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointEvery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<crate::core::duration::Dur>,
}

/// One witness the server accepts cosignatures from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessEntry {
    pub name: String,
    /// Its verifier key, as `gate audit witness --generate-key` prints it.
    pub vkey: String,
}

impl LogConfig {
    /// Checkpoints every 100 events by default.
    pub fn every_events(&self) -> u64 {
        self.checkpoint_every.as_ref().and_then(|c| c.events).unwrap_or(100)
    }

    /// And at least every minute while events arrive, by default (milliseconds).
    pub fn every_ms(&self) -> i64 {
        self.checkpoint_every
            .as_ref()
            .and_then(|c| c.interval)
            .map(|d| d.millis())
            .unwrap_or(60_000)
    }
}

pub(super) fn validate(l: &LogConfig, fail: &dyn Fn(&str, Invalid) -> ConfigError) -> Result<(), ConfigError> {
    if let Some(o) = &l.origin
        && crate::core::log::LogKey::new(o, &ed25519_dalek::SigningKey::from_bytes(&[0; 32])).is_err()
    {
        return Err(fail("origin", Invalid::LogOrigin(o.clone())));
    }
    if let Some(c) = &l.checkpoint_every {
        if c.events == Some(0) {
            return Err(fail("events", Invalid::LogEvery));
        }
        if c.interval.is_some_and(|d| d.millis() <= 0) {
            return Err(fail("interval", Invalid::LogEvery));
        }
    }
    for w in &l.witnesses {
        match crate::core::log::WitnessVkey::parse(&w.vkey) {
            Ok(v) if v.name == w.name => {}
            Ok(v) => {
                return Err(fail(
                    &w.vkey,
                    Invalid::WitnessName {
                        name: w.name.clone(),
                        key: v.name,
                    },
                ));
            }
            Err(e) => return Err(fail(&w.vkey, Invalid::WitnessVkey(w.name.clone(), e.to_string()))),
        }
    }
    Ok(())
}
