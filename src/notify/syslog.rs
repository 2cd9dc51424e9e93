//! Audit events to a syslog collector: RFC 5424 messages over TCP (RFC 6587) or TLS
//! (RFC 5425), one connection per channel, kept open between messages.
//!
//! The formatter is our own (about forty lines, tested against the RFC's examples)
//! rather than a crate's: `fasyslog`, the maintained RFC 5424 client, stamps every
//! message with the time it is formatted (a retried event must carry the time it
//! happened) and writes no BOM; `syslog`/`syslog_rfc5424` are loggers for `log`.
//!
//! Delivered means written and flushed on an open connection: TCP syslog has no
//! acknowledgement. Before writing on a kept connection we check that the collector has
//! not closed it (it reads as end of stream), so a collector that restarted gets the
//! message on a new connection instead of into a dead socket.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::config::{Framing, Syslog as Config};
use super::{ChannelError, DeliveryError};
use crate::store::NotificationRow;

/// APP-NAME of every message.
pub const APP_NAME: &str = "jitgate";

/// The SD-ID of the structured data element. 32473 is the enterprise number RFC 5612
/// reserves for examples and documentation: jitgate has none of its own.
pub const SD_ID: &str = "jitgate@32473";

/// The severity of an audit event of `kind` (RFC 5424 6.2.1): a refusal is a warning,
/// an outcome that does not let a deployment through, a delegation given or a reload a
/// notice, the rest informational.
pub fn severity(kind: &str) -> u8 {
    match kind {
        "refused" => 4,
        // A delegation or a new configuration changes who may approve what.
        "denied" | "expired" | "canceled" | "delegation_created" | "config_reloaded" => 5,
        _ => 6,
    }
}

/// One RFC 5424 message's fields.
pub struct Message<'a> {
    pub facility: u8,
    pub severity: u8,
    /// Milliseconds since the epoch.
    pub at: i64,
    pub hostname: &'a str,
    pub app_name: &'a str,
    pub procid: &'a str,
    pub msgid: &'a str,
    /// The SD-ID and its parameters; no element when `None`.
    pub sd: Option<(&'a str, Vec<(&'a str, String)>)>,
    /// The MSG, sent as UTF-8 with its BOM.
    pub msg: Option<&'a str>,
}

/// The message as RFC 5424 writes it.
pub fn format(m: &Message) -> Vec<u8> {
    let mut out = format!(
        "<{}>1 {} {} {} {} {} ",
        u16::from(m.facility) * 8 + u16::from(m.severity),
        timestamp(m.at),
        header(m.hostname, 255),
        header(m.app_name, 48),
        header(m.procid, 128),
        header(m.msgid, 32),
    );
    match &m.sd {
        None => out.push('-'),
        Some((id, params)) => {
            out.push('[');
            out.push_str(&sd_name(id));
            for (name, value) in params {
                out.push_str(&format!(" {}=\"{}\"", sd_name(name), escape(value)));
            }
            out.push(']');
        }
    }
    let mut bytes = out.into_bytes();
    if let Some(msg) = m.msg {
        bytes.extend_from_slice(b" \xEF\xBB\xBF");
        bytes.extend_from_slice(msg.as_bytes());
    }
    bytes
}

/// The message framed for the stream (RFC 6587 3.4).
pub fn frame(framing: Framing, msg: &[u8]) -> Vec<u8> {
    match framing {
        Framing::OctetCounting => {
            let mut out = format!("{} ", msg.len()).into_bytes();
            out.extend_from_slice(msg);
            out
        }
        Framing::Newline => {
            let mut out = msg.to_vec();
            out.push(b'\n');
            out
        }
    }
}

/// RFC 3339 in UTC with milliseconds, as RFC 5424's TIMESTAMP allows.
pub fn timestamp(ms: i64) -> String {
    let whole = crate::core::duration::rfc3339(ms.div_euclid(1000) * 1000);
    format!("{}.{:03}Z", whole.trim_end_matches('Z'), ms.rem_euclid(1000))
}

/// A header field: printable US-ASCII, at most `max` octets, `-` (NILVALUE) when empty.
fn header(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if v.is_empty() { "-".into() } else { v }
}

/// An SD-NAME: printable US-ASCII but `=`, space, `]` and `"`, at most 32 octets.
fn sd_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"') {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect()
}

/// A PARAM-VALUE: `"`, `\` and `]` escaped with a backslash (RFC 5424 6.3.3).
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One configured collector and its connection.
pub struct Sender {
    address: String,
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    framing: Framing,
    facility: u8,
    hostname: String,
    procid: String,
    timeout: Duration,
    conn: tokio::sync::Mutex<Option<Box<dyn Stream>>>,
}

impl Sender {
    /// Builds the channel: its TLS configuration (system roots and `ca_file`) is read
    /// now, so a missing or unreadable CA file stops the start.
    pub fn new(c: &Config, timeout: Duration) -> Result<Sender, ChannelError> {
        let (host, port) = super::config::parse_address(&c.address).ok_or_else(|| ChannelError::SyslogAddress {
            name: c.name.clone(),
            address: c.address.clone(),
        })?;
        let tls = c.tls.then(|| tls_connector(c)).transpose()?;
        Ok(Sender {
            address: c.address.clone(),
            host,
            port,
            tls,
            framing: c.framing,
            facility: c.facility.unwrap_or(super::config::Facility::Authpriv).code(),
            hostname: c.hostname.clone().unwrap_or_else(super::local_hostname),
            procid: std::process::id().to_string(),
            timeout,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    /// The framed message of one queued audit event.
    pub fn message(&self, row: &NotificationRow) -> Result<Vec<u8>, DeliveryError> {
        let doc: Value = serde_json::from_str(&row.payload).map_err(DeliveryError::Payload)?;
        let f = |k: &str| match doc.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        };
        let sd = vec![
            ("request_id", f("request_id")),
            ("environment", f("environment")),
            ("repository", f("repository")),
            ("actor", f("actor")),
            ("seq", f("seq")),
            ("hash", f("hash")),
        ];
        // Why, where the event says: a vote's or outcome's reason, a refusal's cause.
        let data = doc.get("data");
        let why = ["reason", "why"]
            .iter()
            .find_map(|k| data.and_then(|d| d.get(*k)).and_then(Value::as_str));
        let mut sd = sd;
        if let Some(w) = why {
            sd.push(("reason", w.to_string()));
        }
        let msg = format(&Message {
            facility: self.facility,
            severity: severity(&row.event),
            at: row.created_at,
            hostname: &self.hostname,
            app_name: APP_NAME,
            procid: &self.procid,
            msgid: &row.event,
            sd: Some((SD_ID, sd)),
            msg: Some(&row.payload),
        });
        Ok(frame(self.framing, &msg))
    }

    /// Writes one message, (re)connecting first when needed.
    pub async fn send(&self, row: &NotificationRow) -> Result<(), DeliveryError> {
        let bytes = self.message(row)?;
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_mut()
            && closed(c).await
        {
            *conn = None;
        }
        if conn.is_none() {
            let c = tokio::time::timeout(self.timeout, self.connect())
                .await
                .map_err(|_| self.failed("connect", timed_out()))??;
            *conn = Some(c);
        }
        let Some(c) = conn.as_mut() else {
            return Err(self.failed("connect", std::io::Error::other("no connection")));
        };
        let written = tokio::time::timeout(self.timeout, async {
            c.write_all(&bytes).await?;
            c.flush().await
        })
        .await
        .unwrap_or_else(|_| Err(timed_out()));
        written.map_err(|e| {
            *conn = None;
            self.failed("write", e)
        })
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, DeliveryError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| self.failed("connect", e))?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| self.failed("TLS", std::io::Error::other(e)))?;
        let s = tls.connect(name, tcp).await.map_err(|e| self.failed("TLS", e))?;
        Ok(Box::new(s))
    }

    fn failed(&self, what: &'static str, e: std::io::Error) -> DeliveryError {
        DeliveryError::Syslog {
            address: self.address.clone(),
            what,
            error: crate::core::error_chain(&e),
        }
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")
}

/// Whether the collector closed a kept connection: a read that is ready at once with
/// end of stream or an error. A collector sends nothing, so anything else is "open".
async fn closed(c: &mut Box<dyn Stream>) -> bool {
    let mut buf = [0u8; 256];
    // `timeout` polls the read once before it looks at the (already passed) deadline.
    matches!(
        tokio::time::timeout(Duration::ZERO, c.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

fn tls_connector(c: &Config) -> Result<tokio_rustls::TlsConnector, ChannelError> {
    let bad = |reason: String| ChannelError::SyslogTls {
        name: c.name.clone(),
        reason,
    };
    let mut extra = Vec::new();
    if let Some(path) = &c.ca_file {
        use rustls::pki_types::pem::PemObject as _;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(format!("ca_file {}: {e}", path.display())))?;
        for cert in certs {
            extra.push(cert.map_err(|e| bad(format!("ca_file {}: {e}", path.display())))?);
        }
        if extra.is_empty() {
            return Err(bad(format!("ca_file {}: no certificate in it", path.display())));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
        .map_err(|e| bad(e.to_string()))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Message) -> String {
        String::from_utf8(format(m)).unwrap()
    }

    #[test]
    fn formats_the_rfc_5424_examples() {
        // RFC 5424 6.5, example 1 (its time has microseconds; ours has milliseconds).
        let at = 1_065_910_455_003; // 2003-10-11T22:14:15.003Z
        let m = Message {
            facility: 4,
            severity: 2,
            at,
            hostname: "mymachine.example.com",
            app_name: "su",
            procid: "",
            msgid: "ID47",
            sd: None,
            msg: Some("'su root' failed for lonvick on /dev/pts/8"),
        };
        assert_eq!(
            text(&m),
            "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}'su root' failed for lonvick on /dev/pts/8"
        );
        // Example 3: structured data and no MSG.
        let m = Message {
            facility: 20,
            severity: 5,
            at,
            hostname: "mymachine.example.com",
            app_name: "evntslog",
            procid: "",
            msgid: "ID47",
            sd: Some((
                "exampleSDID@32473",
                vec![
                    ("iut", "3".into()),
                    ("eventSource", "Application".into()),
                    ("eventID", "1011".into()),
                ],
            )),
            msg: None,
        };
        assert_eq!(
            text(&m),
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"]"
        );
    }

    #[test]
    fn escapes_param_values_and_cleans_headers() {
        assert_eq!(escape(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
        let m = Message {
            facility: 10,
            severity: 6,
            at: 0,
            hostname: "my host",
            app_name: APP_NAME,
            procid: "1",
            msgid: "",
            sd: Some((SD_ID, vec![("reason", "x\"] [y".into())])),
            msg: None,
        };
        assert_eq!(
            text(&m),
            "<86>1 1970-01-01T00:00:00.000Z my_host jitgate 1 - [jitgate@32473 reason=\"x\\\"\\] [y\"]"
        );
        assert_eq!(timestamp(1_700_000_000_500), "2023-11-14T22:13:20.500Z");
        assert_eq!(frame(Framing::OctetCounting, b"<1>1 x"), b"6 <1>1 x");
        assert_eq!(frame(Framing::Newline, b"<1>1 x"), b"<1>1 x\n");
        assert_eq!((severity("refused"), severity("denied"), severity("vote")), (4, 5, 6));
    }
}
