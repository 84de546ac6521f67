//! `http` steps: one request per attempt.
//!
//! A 2xx response succeeds. 5xx, 408, 425, 429 and errors reaching the server (connection
//! refused, reset, timed out) are transient and honour a `Retry-After` header (seconds or an
//! HTTP date); other statuses are permanent: retrying a 404 cannot help.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rh_agents::{Actor, BoxError, Ctx, ErrorExt};
use serde::{Deserialize, Serialize};

use super::command::Captured;
use super::{head, interrupted, StepError};
use crate::pipeline::{HttpSpec, Outputs};

/// A request with its templates rendered: the recorded input of the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpInput {
    /// The method, upper case.
    pub method: String,
    /// The URL.
    pub url: String,
    /// Request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// A successful response: the recorded result of the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpOutput {
    /// The status code (2xx).
    pub status: u16,
    /// Response headers (names in lower case; repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// The body as text (bytes that are not UTF-8 replaced by U+FFFD).
    pub body: String,
    /// The kept body exactly, in base64, when it is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// The body was cut at [`MAX_CAPTURE`](super::command::MAX_CAPTURE) bytes; the rest was
    /// not read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body_truncated: bool,
}

/// Renders a request's templates.
///
/// # Errors
///
/// A referenced output is missing.
pub fn render(spec: &HttpSpec, outputs: &Outputs) -> Result<HttpInput, String> {
    Ok(HttpInput {
        method: spec.method.clone(),
        url: spec.url.render(outputs)?,
        headers: spec
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.render(outputs)?)))
            .collect::<Result<_, String>>()?,
        body: spec.body.as_ref().map(|b| b.render(outputs)).transpose()?,
    })
}

/// The actor of an http step (without its retry policy).
pub fn actor(name: &str, client: reqwest::Client) -> Actor<HttpInput, HttpOutput> {
    Actor::tool(name, move |input: HttpInput, ctx: Ctx| {
        let client = client.clone();
        async move {
            tokio::select! {
                result = send(&client, input) => result,
                () = ctx.interrupted() => Err(interrupted(&ctx).into()),
            }
        }
    })
    .description("sends an HTTP request")
}

/// `error: cause: root cause` for a reqwest error (its `Display` leaves the causes out).
fn chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn transport(e: &reqwest::Error) -> BoxError {
    let error = StepError(chain(e));
    // A request that cannot be built, or that redirects in a loop, fails the same way again.
    if e.is_builder() || e.is_redirect() {
        error.permanent().into()
    } else {
        error.transient().into()
    }
}

/// The body, cut at [`MAX_CAPTURE`](super::command::MAX_CAPTURE) bytes (like a command's
/// output): a huge or endless response must not exhaust memory. Reading stops at the cap, so
/// how much was dropped is not known; that something was is recorded.
async fn read_body(mut response: reqwest::Response) -> Result<(Captured, bool), BoxError> {
    let limit = super::command::MAX_CAPTURE;
    let mut bytes = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(&e))? {
        let room = limit.saturating_sub(bytes.len());
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            truncated = true;
            break;
        }
    }
    Ok((Captured::new(bytes, truncated), truncated))
}

/// The wait a `Retry-After` value asks for, at `now`: a number of seconds, or an HTTP date
/// (a date already past means no wait). `None` when it is neither: the policy's own delay
/// applies. A wait too long to represent is the longest one; the retry policy caps every wait
/// at its `max_delay` in any case.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(value.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

async fn send(client: &reqwest::Client, input: HttpInput) -> Result<HttpOutput, BoxError> {
    let method = reqwest::Method::from_bytes(input.method.as_bytes()).map_err(|_| {
        StepError(format!("\"{}\" is not an HTTP method", input.method)).permanent()
    })?;
    let url = reqwest::Url::parse(&input.url)
        .map_err(|e| StepError(format!("invalid url \"{}\": {e}", input.url)).permanent())?;
    let mut request = client.request(method, url);
    for (name, value) in &input.headers {
        // Checked here rather than by reqwest, whose "builder error" does not say which
        // header: a template may have filled in a line break or another control character.
        let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
            StepError(format!(
                "the value of header \"{name}\" is not valid once its template is filled in \
                 (control characters such as line breaks are not allowed)"
            ))
            .permanent()
        })?;
        request = request.header(name, value);
    }
    if let Some(body) = input.body {
        request = request.body(body);
    }
    let response = request.send().await.map_err(|e| transport(&e))?;
    let status = response.status();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in response.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let retry_after = headers
        .get("retry-after")
        .and_then(|v| retry_after(v, SystemTime::now()));
    let (body, body_truncated) = read_body(response).await?;
    if status.is_success() {
        return Ok(HttpOutput {
            status: status.as_u16(),
            headers,
            body: body.text,
            body_base64: body.base64,
            body_truncated,
        });
    }
    let mut message = format!("HTTP {status}");
    let snippet = head(&body.text, 200);
    if !snippet.is_empty() {
        message.push_str(": ");
        message.push_str(&snippet);
    }
    let error = StepError(message);
    // 408 (the server gave up waiting) and 425 (too early) invite a retry, like 429 and 5xx.
    let transient = status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429);
    if transient {
        let marked = error.transient();
        Err(match retry_after {
            Some(after) => marked.with_retry_after(after).into(),
            None => marked.into(),
        })
    } else {
        Err(error.permanent().into())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    use super::{retry_after, send, HttpInput};

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        // 1994-11-06 08:49:37 UTC, the date of RFC 9110's examples.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        // The three forms of an HTTP date, 30 s after `now`.
        for date in [
            "Sun, 06 Nov 1994 08:50:07 GMT",
            "Sunday, 06-Nov-94 08:50:07 GMT",
            "Sun Nov  6 08:50:07 1994",
        ] {
            assert_eq!(
                retry_after(date, now),
                Some(Duration::from_secs(30)),
                "{date}"
            );
        }
        // A date already past: retry at once (the policy's delay still applies).
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        // More seconds than fit: the longest wait, which the policy caps at its max_delay.
        assert_eq!(
            retry_after("99999999999999999999999", now),
            Some(Duration::MAX)
        );
        for bad in ["", "soon", "-5", "1.5", "Sun, 31 Feb 1994 08:50:07 GMT"] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_header_value_its_template_made_invalid_is_named() {
        let input = HttpInput {
            method: "GET".to_owned(),
            // Never contacted: the request is refused before it is sent.
            url: "http://127.0.0.1:9/".to_owned(),
            headers: BTreeMap::from([
                ("x-fine".to_owned(), "ok".to_owned()),
                ("x-token".to_owned(), "line one\nline two".to_owned()),
            ]),
            body: None,
        };
        let error = send(&reqwest::Client::new(), input).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "the value of header \"x-token\" is not valid once its template is filled in \
             (control characters such as line breaks are not allowed)"
        );
    }
}
