//! HTTP plumbing shared by the doubles: the request shape they receive, JSON and HTML
//! responses, random identifiers in Azure's formats, and wall-clock helpers.
//!
//! The HTTPS front reads each request whole into an [`Incoming`] and hands it to a double;
//! a double answers with a [`Response`] or asks for the connection to be dropped ([`Reset`]),
//! which is how a double imitates a connection reset.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use http_body_util::Full;
use std::time::{SystemTime, UNIX_EPOCH};

/// A response body: always complete, the doubles never stream.
pub(crate) type Body = Full<Bytes>;

/// A response from a double.
pub(crate) type Response = http::Response<Body>;

/// A request as a double sees it: the head plus the whole body.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The request method.
    pub method: Method,
    /// Lower-case host name, from `:authority` or `Host`, without a port.
    pub host: String,
    /// The path, percent-encoded as sent.
    pub path: String,
    /// The query string as sent, without `?`.
    pub query: Option<String>,
    /// The request headers.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
    /// HTTP/1.1 or HTTP/2.
    pub version: Version,
}

impl Incoming {
    /// The query parameters, decoded.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let query = self.query.as_deref().unwrap_or("");
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }
}

/// Asks the front to drop the connection instead of answering.
#[derive(Debug)]
pub(crate) struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by a test double")
    }
}

impl std::error::Error for Reset {}

/// A JSON response with the content type Azure services send.
pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = http::Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// The HTML page a Microsoft front end answers for a path it does not route.
pub(crate) fn html_not_found() -> Response {
    let page = "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\">\r\n\
        <html><head><title>404 - File or directory not found.</title></head>\r\n\
        <body><h2>404 - File or directory not found.</h2>\r\n\
        <h3>The resource you are looking for might have been removed, had its name changed, \
        or is temporarily unavailable.</h3></body></html>\r\n";
    let mut response = http::Response::new(Full::new(Bytes::from(page)));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(elapsed.as_secs()).expect("the clock fits in i64")
}

/// A random GUID in the usual 8-4-4-4-12 lower-case form (version 4).
pub(crate) fn guid() -> String {
    let mut bytes: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A GUID derived from `seed`, so the same input always names the same object.
pub(crate) fn stable_guid(seed: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(seed.as_bytes());
    let hex = hex::encode(&digest[..16]);
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// A Key Vault object version: 32 random lower-case hex digits.
pub(crate) fn version_id() -> String {
    let bytes: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    hex::encode(bytes)
}

/// `secs` as Entra writes timestamps in error bodies: `2024-05-01 10:11:12Z`.
pub(crate) fn utc_timestamp(secs: i64) -> String {
    let at =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(utc_timestamp(1_714_558_272), "2024-05-01 10:11:12Z");
    }

    #[test]
    fn guids_have_the_usual_shape() {
        for id in [guid(), stable_guid("default/app")] {
            let groups: Vec<usize> = id.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
        }
        assert_eq!(stable_guid("a"), stable_guid("a"));
        assert_eq!(version_id().len(), 32);
    }
}
