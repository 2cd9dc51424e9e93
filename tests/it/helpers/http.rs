//! One HTTP helper for every test: "send this method to this path, with this token and this
//! body; give me the status, headers and JSON". The same calls go to a real server over
//! TCP (reqwest, redirects not followed) or to the router in process (`oneshot`).

use axum::body::Body;
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;
use tower::ServiceExt as _;

#[derive(Clone)]
pub struct Http {
    target: Target,
}

#[derive(Clone)]
enum Target {
    Url { base: String, client: reqwest::Client },
    Router(axum::Router),
}

impl Http {
    /// A real server at `base` (`http://127.0.0.1:PORT`).
    pub fn url(base: &str) -> Http {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Http {
            target: Target::Url {
                base: base.trim_end_matches('/').to_string(),
                client,
            },
        }
    }

    /// The router itself, called in process.
    pub fn router(router: axum::Router) -> Http {
        Http {
            target: Target::Router(router),
        }
    }

    pub fn request(&self, method: Method, path: &str) -> Req {
        assert!(path.starts_with('/'), "a path, not a URL: {path}");
        Req {
            http: self.clone(),
            method,
            path: path.to_string(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn get(&self, path: &str) -> Req {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Req {
        self.request(Method::POST, path)
    }

    /// One call under `/api/v1` with `bearer`: the status and the JSON body. A success must
    /// be JSON; an error that is not JSON comes back as a JSON string of its text.
    pub async fn api(&self, verb: &str, route: &str, bearer: &str, body: Option<Value>) -> (u16, Value) {
        let method = Method::from_bytes(verb.as_bytes()).unwrap();
        let mut r = self.request(method, &format!("/api/v1{route}")).bearer(bearer);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await;
        let status = resp.status.as_u16();
        let body = if resp.status.is_success() {
            resp.json().await
        } else {
            resp.json_or_text().await
        };
        (status, body)
    }
}

/// A request being built; [`Req::send`] sends it.
pub struct Req {
    http: Http,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Req {
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// `Authorization: Bearer TOKEN`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// A body as it is, with its content type.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self.header("content-type", content_type)
    }

    pub fn json(self, value: &impl serde::Serialize) -> Self {
        self.body("application/json", serde_json::to_vec(value).unwrap())
    }

    /// An `application/x-www-form-urlencoded` body.
    pub fn form<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        self.body(
            "application/x-www-form-urlencoded",
            jitgate::http::ui::sso::form_encode(&pairs),
        )
    }

    /// Sends it; the status and headers are read, the body is left to [`Resp::text`] or
    /// [`Resp::json`] (so a stream can be dropped unread).
    pub async fn send(self) -> Resp {
        match self.http.target {
            Target::Url { base, client } => {
                let mut rb = client.request(self.method, format!("{base}{}", self.path));
                for (k, v) in &self.headers {
                    rb = rb.header(k, v);
                }
                if let Some(b) = self.body {
                    rb = rb.body(b);
                }
                let r = rb.send().await.unwrap();
                Resp {
                    status: r.status(),
                    headers: r.headers().clone(),
                    body: RespBody::Reqwest(r),
                }
            }
            Target::Router(router) => {
                let mut rb = http::Request::builder()
                    .method(self.method)
                    .uri(&self.path)
                    .header("host", "gate.in-process.test");
                for (k, v) in &self.headers {
                    rb = rb.header(k, v);
                }
                let body = match self.body {
                    Some(b) => {
                        rb = rb.header("content-length", b.len());
                        Body::from(b)
                    }
                    None => Body::empty(),
                };
                let r = router.oneshot(rb.body(body).unwrap()).await.unwrap();
                let (parts, body) = r.into_parts();
                Resp {
                    status: parts.status,
                    headers: parts.headers,
                    body: RespBody::Axum(body),
                }
            }
        }
    }
}

/// An answer: status and headers, and the body still to be read.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: RespBody,
}

enum RespBody {
    Reqwest(reqwest::Response),
    Axum(Body),
}

impl Resp {
    pub async fn text(self) -> String {
        match self.body {
            RespBody::Reqwest(r) => r.text().await.unwrap(),
            RespBody::Axum(b) => {
                let bytes = axum::body::to_bytes(b, usize::MAX).await.unwrap();
                String::from_utf8(bytes.to_vec()).unwrap()
            }
        }
    }

    /// The body as JSON; a body that is not JSON fails the test, showing it.
    pub async fn json(self) -> Value {
        let text = self.text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// The body as JSON, or as a JSON string when it is not JSON.
    pub async fn json_or_text(self) -> Value {
        let text = self.text().await;
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }

    /// The value of cookie `name` set by this answer, and its whole `Set-Cookie` header.
    pub fn cookie(&self, name: &str) -> Option<(String, String)> {
        self.headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| {
                let value = v.split(';').next().unwrap()[name.len() + 1..].to_string();
                (value, v.to_string())
            })
    }
}
