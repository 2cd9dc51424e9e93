//! Generic webhooks: the notification document POSTed as JSON, signed with HMAC-SHA256.
//!
//! Headers: `X-Jitgate-Signature: sha256=<hex HMAC-SHA256 of the raw body>`,
//! `X-Jitgate-Event`, `X-Jitgate-Delivery` (the idempotency key, the same on every retry)
//! and `X-Jitgate-Timestamp` (Unix seconds of this attempt).

/// The `X-Jitgate-Signature` value of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(crate::core::crypto::hmac_sha256(secret, body)))
}

/// Checks a signature header in constant time (for receivers written in Rust, and tests).
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    crate::core::crypto::verify_sha256_header(secret, body, header)
}

/// POSTs `body` to `url`, signed; any 2xx is a delivery.
pub async fn send(
    http: &reqwest::Client,
    url: &str,
    secret: &[u8],
    event: &str,
    delivery: &str,
    body: &str,
) -> Result<(), super::DeliveryError> {
    let ts = crate::core::duration::now_ms() / 1000;
    let req = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Jitgate-Signature", signature(secret, body.as_bytes()))
        .header("X-Jitgate-Event", event)
        .header("X-Jitgate-Delivery", delivery)
        .header("X-Jitgate-Timestamp", ts.to_string())
        .body(body.to_string());
    super::worker::deliver(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_documented_one_liner() {
        // printf '%s' '{"event":"opened"}' | openssl dgst -sha256 -hmac s3cret
        let s = signature(b"s3cret", br#"{"event":"opened"}"#);
        assert_eq!(
            s,
            "sha256=45e03547518ededf1ae0c0f71e972bce675c93cd5b2ddb6efdc1d12697495823"
        );
        assert!(verify(b"s3cret", br#"{"event":"opened"}"#, &s));
        assert!(!verify(b"other", br#"{"event":"opened"}"#, &s));
        assert!(!verify(b"s3cret", br#"{"event":"opened" }"#, &s));
        assert!(!verify(b"s3cret", br#"{"event":"opened"}"#, "sha1=00"));
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
