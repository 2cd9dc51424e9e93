//! Webhook signatures, both ways: HMAC-SHA256 and the `sha256=<hex>` header check.

use sha2::Sha256;
use subtle::ConstantTimeEq;

/// HMAC-SHA256 of `msg` under `key` (webhook signatures, both ways).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Checks a `sha256=<hex HMAC-SHA256 of msg>` header in constant time.
pub fn verify_sha256_header(key: &[u8], msg: &[u8], header: &str) -> bool {
    let Some(given) = header.trim().strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()) else {
        return false;
    };
    let want = hmac_sha256(key, msg);
    given.len() == want.len() && bool::from(given.ct_eq(&want))
}
