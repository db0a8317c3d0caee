//! The replies routes build: a status, an optional JSON body (`{"data": ...}` or
//! `{"error": ...}`, as the Rakkr server sends them) and a few headers. hyper adds `Date`.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// A reply, turned into an HTTP response by axum.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn json(status: u16, value: Value) -> Response {
        Response {
            status,
            body: Some(value),
            headers: Vec::new(),
        }
    }

    /// `{"data": value}`.
    pub fn data(status: u16, value: Value) -> Response {
        Response::json(status, json!({ "data": value }))
    }

    /// `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, json!({ "error": message }))
    }

    /// `{"error": message, "issues": [...]}`.
    pub fn invalid(message: &str, issues: Vec<Value>) -> Response {
        Response::json(400, json!({ "error": message, "issues": issues }))
    }

    /// A reply without a body (204).
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            body: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for Response {
    fn into_response(self) -> axum::response::Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut reply = match self.body {
            Some(body) => (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::to_vec(&body).unwrap_or_default(),
            )
                .into_response(),
            None => status.into_response(),
        };
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                reply
                    .headers_mut()
                    .insert(HeaderName::from_static(name), value);
            }
        }
        reply
    }
}
