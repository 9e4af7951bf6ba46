//! The Key Vault data plane as the double serves it: routing by vault host and path, the
//! `api-version` check, bearer authentication with the 401 challenge, the RBAC check, and the
//! bundles, list pages and errors — in the order the service applies them.

use super::bodies::{self, collection};
use super::{KeyVault, Kind, Object, State, Vault};
use crate::cloud::Cloud;
use crate::fault::Fault;
use crate::wire::{self, Incoming, Reset, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

/// API versions the double accepts (and their `-preview` variants).
const API_VERSIONS: [&str; 11] = [
    "2016-10-01",
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-06-01",
    "2025-07-01",
    "2026-04-01",
];

/// How far outside its validity window Key Vault still accepts a token.
const CLOCK_SKEW_SECS: i64 = 300;

/// One request to the Key Vault double, as it saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvRequestSeen {
    /// `GET`, `PUT`, ….
    pub method: String,
    /// The vault host, lower case, without port.
    pub host: String,
    /// The path as sent.
    pub path: String,
    /// The query string as sent, without `?`.
    pub query: Option<String>,
    /// Whether an `Authorization: Bearer …` header came with it.
    pub had_bearer: bool,
    /// The `appid` of a bearer token that passed authentication.
    pub caller: Option<String>,
    /// The status answered; 0 when the connection was dropped by an injected fault.
    pub status: u16,
    /// HTTP/1.1 or HTTP/2.
    pub version: http::Version,
}

/// What a path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `GET /{collection}/{name}[/{version}]`.
    Get {
        kind: Kind,
        name: String,
        version: Option<String>,
    },
    /// `GET /{collection}/{name}/versions`.
    Versions { kind: Kind, name: String },
    /// `GET /{collection}`.
    List { kind: Kind },
}

/// A 400 or 401 found before the request reaches an object.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn bad_parameter(message: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn unauthorized(message: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }

    fn into_response(self, vault: &Vault) -> Response {
        if self.status == StatusCode::UNAUTHORIZED {
            unauthorized(vault, &self.message)
        } else {
            error(self.status, "BadParameter", &self.message, None)
        }
    }
}

/// The identity behind a valid bearer token.
struct Caller {
    app_id: String,
    object_id: String,
    issuer: String,
}

impl KeyVault {
    /// Answers a request that the front routed to a vault host.
    pub(crate) async fn handle(&self, request: Incoming) -> Result<Response, Reset> {
        let latency = self.state().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }

        let mut seen = KvRequestSeen {
            method: request.method.to_string(),
            host: request.host.clone(),
            path: request.path.clone(),
            query: request.query.clone(),
            had_bearer: bearer(&request).is_some(),
            caller: None,
            status: 0,
            version: request.version,
        };
        let outcome = match self.inner.faults.take() {
            Some(fault) => fault_response(fault),
            None => match self.throttled(&request.host) {
                Some(retry_after) => fault_response(Fault::Throttle { retry_after }),
                None => Ok(self.respond(&request, &mut seen.caller)),
            },
        };
        let mut outcome = outcome;
        if let Ok(response) = &mut outcome {
            seen.status = response.status().as_u16();
            add_service_headers(response);
        }
        let mut state = self.state();
        state.counts.requests += 1;
        if seen.status == StatusCode::TOO_MANY_REQUESTS.as_u16() {
            state.counts.throttled += 1;
        }
        state.requests.push(seen);
        drop(state);
        outcome
    }

    fn respond(&self, request: &Incoming, caller_seen: &mut Option<String>) -> Response {
        let Some((vault_name, cloud)) = Cloud::split_vault_host(&request.host) else {
            return wire::html_not_found();
        };
        let state = self.state();
        let Some(vault) = state
            .vaults
            .get(&vault_name)
            .filter(|vault| vault.cloud == cloud)
        else {
            return wire::html_not_found();
        };
        let route = match parse_route(&request.path) {
            Ok(Some(route)) => route,
            Ok(None) => return wire::html_not_found(),
            Err(refusal) => return refusal.into_response(vault),
        };
        if request.method != Method::GET {
            let message = format!("The method {} is not allowed here.", request.method);
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "BadParameter",
                &message,
                None,
            );
        }
        let api_version = match check_api_version(request) {
            Ok(api_version) => api_version,
            Err(refusal) => return refusal.into_response(vault),
        };

        let caller = match self.authenticate(request, vault) {
            Ok(caller) => caller,
            Err(refusal) => return refusal.into_response(vault),
        };
        *caller_seen = Some(caller.app_id.clone());
        if !vault.readers.contains(&caller.app_id.to_ascii_lowercase()) {
            return forbidden_by_rbac(vault, &caller, &route);
        }

        let base = format!("https://{}", request.host);
        match route {
            Route::Get {
                kind,
                name,
                version,
            } => get(vault, &base, kind, &name, version.as_deref()),
            Route::Versions { kind, name } => {
                let Some(object) = vault.objects.get(&(kind, name.to_ascii_lowercase())) else {
                    return not_found(kind, &name);
                };
                let mut versions: Vec<_> = object.versions.iter().collect();
                versions.sort_by(|a, b| a.id.cmp(&b.id));
                let items = versions
                    .into_iter()
                    .map(|version| bodies::item(kind, &base, &object.name, version, true))
                    .collect();
                page(&state, request, &api_version, items)
            }
            Route::List { kind } => {
                let items = vault
                    .objects
                    .iter()
                    .filter(|((object_kind, _), _)| *object_kind == kind)
                    .filter_map(|(_, object)| {
                        let version = object.current()?;
                        Some(bodies::item(kind, &base, &object.name, version, false))
                    })
                    .collect();
                page(&state, request, &api_version, items)
            }
        }
    }

    /// Checks the bearer token: signed by Entra, for this cloud's Key Vault, from the vault's
    /// tenant, within its lifetime.
    fn authenticate(&self, request: &Incoming, vault: &Vault) -> Result<Caller, Refusal> {
        let Some(token) = bearer(request) else {
            let message = "AKV10000: Request is missing a Bearer or PoP token.";
            return Err(Refusal::unauthorized(message));
        };
        let Some(jwt) = self.inner.entra.verify_access_token(token) else {
            let message = "AKV10046: Unable to resolve the key used for signature validation.";
            return Err(Refusal::unauthorized(message));
        };

        let resource = vault.cloud.vault_resource();
        let audience = jwt.claim_str("aud").unwrap_or_default();
        if audience.trim_end_matches('/') != resource {
            let message =
                format!("AKV10022: Invalid audience. Expected {resource}, found: {audience}.");
            return Err(Refusal::unauthorized(message));
        }

        let expected_issuer = vault.cloud.token_issuer(&vault.tenant);
        let issuer = jwt.claim_str("iss").unwrap_or_default();
        if !issuer.eq_ignore_ascii_case(&expected_issuer) {
            let message = format!(
                "AKV10032: Invalid issuer. Expected one of {expected_issuer}, found {issuer}."
            );
            return Err(Refusal::unauthorized(message));
        }

        let now = wire::now();
        let activity = wire::guid();
        if jwt
            .claim_i64("exp")
            .is_none_or(|exp| now > exp + CLOCK_SKEW_SECS)
        {
            let message = format!("Token has expired (Activity ID: {activity})");
            return Err(Refusal::unauthorized(message));
        }
        if jwt
            .claim_i64("nbf")
            .is_some_and(|nbf| now + CLOCK_SKEW_SECS < nbf)
        {
            let message = format!("Token not yet valid (Activity ID: {activity})");
            return Err(Refusal::unauthorized(message));
        }

        Ok(Caller {
            app_id: jwt.claim_str("appid").unwrap_or_default().to_owned(),
            object_id: jwt.claim_str("oid").unwrap_or_default().to_owned(),
            issuer: issuer.to_owned(),
        })
    }
}

/// `GET` of one version (or the current one) of an object.
fn get(vault: &Vault, base: &str, kind: Kind, name: &str, version: Option<&str>) -> Response {
    let object: Option<&Object> = vault.objects.get(&(kind, name.to_ascii_lowercase()));
    let found = match version {
        Some(version) => object.and_then(|object| object.version(version)),
        None => object.and_then(Object::current),
    };
    let (Some(object), Some(found)) = (object, found) else {
        let shown = match version {
            Some(version) => format!("{name}/{version}"),
            None => name.to_owned(),
        };
        return not_found(kind, &shown);
    };

    let disabled_code = match kind {
        Kind::Secret => Some("SecretDisabled"),
        Kind::Key => Some("KeyDisabled"),
        // A certificate's public part stays readable; its secret and key do not.
        Kind::Certificate => None,
    };
    if let (false, Some(code)) = (found.enabled, disabled_code) {
        let message = format!(
            "Operation get is not allowed on a disabled {}.",
            object_word(kind)
        );
        return error(StatusCode::FORBIDDEN, "Forbidden", &message, Some(code));
    }

    wire::json(StatusCode::OK, &bodies::bundle(base, &object.name, found))
}

/// One page of `items` as the request's `maxresults` and `$skiptoken` select.
fn page(state: &State, request: &Incoming, api_version: &str, items: Vec<Value>) -> Response {
    let max_results = request.query_param("maxresults");
    let size = match max_results.as_deref().map(str::parse::<usize>) {
        None => super::MAX_PAGE_SIZE,
        Some(Ok(size)) if (1..=super::MAX_PAGE_SIZE).contains(&size) => size,
        Some(_) => {
            let message = "Invalid value for maxresults: it must be between 1 and 25.";
            return error(StatusCode::BAD_REQUEST, "BadParameter", message, None);
        }
    };
    let size = size.min(state.page_size);

    let cursor = match request.query_param("$skiptoken") {
        None => Cursor {
            offset: 0,
            empty: state.empty_pages,
        },
        Some(token) => match Cursor::decode(&token) {
            Some(cursor) => cursor,
            None => {
                let message = "The skip token is not valid.";
                return error(StatusCode::BAD_REQUEST, "BadParameter", message, None);
            }
        },
    };

    let (value, next) = if cursor.empty {
        let next = Cursor {
            offset: cursor.offset,
            empty: false,
        };
        (Vec::new(), (cursor.offset < items.len()).then_some(next))
    } else {
        let start = cursor.offset.min(items.len());
        let end = (start + size).min(items.len());
        let next = Cursor {
            offset: end,
            empty: state.empty_pages,
        };
        (
            items[start..end].to_vec(),
            (end < items.len()).then_some(next),
        )
    };

    let next_link = next.map(|next| {
        let mut link = format!(
            "https://{}:443{}?api-version={api_version}&$skiptoken={}",
            request.host,
            request.path,
            next.encode()
        );
        if let Some(max_results) = &max_results {
            link.push_str(&format!("&maxresults={max_results}"));
        }
        link
    });
    wire::json(
        StatusCode::OK,
        &json!({"value": value, "nextLink": next_link}),
    )
}

/// Where the next page starts; `empty` means "answer an empty page first".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    offset: usize,
    empty: bool,
}

impl Cursor {
    /// An opaque token shaped like Key Vault's (base64 of a JSON marker).
    fn encode(self) -> String {
        let flag = if self.empty { "E" } else { "D" };
        let marker = json!({
            "NextMarker": format!("2!{}!{flag}", self.offset),
            "TargetLocation": 0,
        });
        URL_SAFE_NO_PAD.encode(marker.to_string())
    }

    fn decode(token: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
        let marker: Value = serde_json::from_slice(&bytes).ok()?;
        let text = marker.get("NextMarker")?.as_str()?;
        let mut fields = text.split('!');
        let (Some("2"), Some(offset), Some(flag), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return None;
        };
        Some(Cursor {
            offset: offset.parse().ok()?,
            empty: flag == "E",
        })
    }
}

/// Parses `/{collection}[/{name}[/{version}|/versions]][/]`; `Ok(None)` for unrouted paths.
fn parse_route(path: &str) -> Result<Option<Route>, Refusal> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let segments: Vec<&str> = trimmed.split('/').collect();
    let kind = match segments[0].to_ascii_lowercase().as_str() {
        "secrets" => Kind::Secret,
        "keys" => Kind::Key,
        "certificates" => Kind::Certificate,
        _ => return Ok(None),
    };
    if let Some(name) = segments.get(1).filter(|name| !valid_name(name)) {
        let message = format!("The request URI contains an invalid name: {name}");
        return Err(Refusal::bad_parameter(message));
    }
    let route = match segments.as_slice() {
        [_] => Route::List { kind },
        [_, name] => Route::Get {
            kind,
            name: (*name).to_owned(),
            version: None,
        },
        [_, name, "versions"] => Route::Versions {
            kind,
            name: (*name).to_owned(),
        },
        [_, name, version] if !version.is_empty() => Route::Get {
            kind,
            name: (*name).to_owned(),
            version: Some((*version).to_owned()),
        },
        _ => return Ok(None),
    };
    Ok(Some(route))
}

/// Key Vault object names: 1 to 127 letters, digits and dashes.
fn valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
}

fn check_api_version(request: &Incoming) -> Result<String, Refusal> {
    let Some(version) = request.query_param("api-version") else {
        let message = "The request is missing the required parameter 'api-version'.";
        return Err(Refusal::bad_parameter(message));
    };
    let base = version.split("-preview").next().unwrap_or_default();
    if API_VERSIONS.contains(&base) {
        return Ok(version);
    }
    let message = format!(
        "The specified version ({version}) is not recognized. Consider using the latest \
         supported version ({}).",
        API_VERSIONS[API_VERSIONS.len() - 1]
    );
    Err(Refusal::bad_parameter(message))
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(request: &Incoming) -> Option<&str> {
    let value = request.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn error(status: StatusCode, code: &str, message: &str, inner: Option<&str>) -> Response {
    wire::json(status, &bodies::error(code, message, inner))
}

/// 401 with the challenge that tells a client where to get a token and for what.
fn unauthorized(vault: &Vault, message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, "Unauthorized", message, None);
    let challenge = format!(
        "Bearer authorization=\"https://{}/{}\", resource=\"{}\"",
        vault.cloud.authority_host(),
        vault.tenant,
        vault.cloud.vault_resource()
    );
    let value = HeaderValue::from_str(&challenge).expect("challenge is a valid header value");
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, value);
    response
}

fn forbidden_by_rbac(vault: &Vault, caller: &Caller, route: &Route) -> Response {
    let (kind, name, action) = match route {
        Route::Get { kind, name, .. } => (*kind, Some(name.as_str()), read_action(*kind)),
        Route::Versions { kind, name } => (*kind, Some(name.as_str()), list_action(*kind)),
        Route::List { kind } => (*kind, None, list_action(*kind)),
    };
    let subscription = wire::stable_guid("subscription");
    let mut resource = format!(
        "/subscriptions/{subscription}/resourcegroups/rg-akv-e2e/providers/\
         microsoft.keyvault/vaults/{}",
        vault.name.to_ascii_lowercase()
    );
    if let Some(name) = name {
        resource.push_str(&format!(
            "/{}/{}",
            collection(kind),
            name.to_ascii_lowercase()
        ));
    }
    let message = format!(
        "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny \
         assignments or role definitions were changed recently, please observe propagation \
         time.\r\nCaller: appid={};oid={};iss={}\r\nAction: '{action}'\r\nResource: \
         '{resource}'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: \
         null \r\nVault: {};location=eastus\r\n",
        caller.app_id, caller.object_id, caller.issuer, vault.name
    );
    error(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &message,
        Some("ForbiddenByRbac"),
    )
}

fn read_action(kind: Kind) -> &'static str {
    match kind {
        Kind::Secret => "Microsoft.KeyVault/vaults/secrets/getSecret/action",
        Kind::Key => "Microsoft.KeyVault/vaults/keys/read",
        Kind::Certificate => "Microsoft.KeyVault/vaults/certificates/read",
    }
}

fn list_action(kind: Kind) -> &'static str {
    match kind {
        Kind::Secret => "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        Kind::Key => "Microsoft.KeyVault/vaults/keys/read",
        Kind::Certificate => "Microsoft.KeyVault/vaults/certificates/read",
    }
}

fn object_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Secret => "secret",
        Kind::Key => "key",
        Kind::Certificate => "certificate",
    }
}

fn not_found(kind: Kind, shown: &str) -> Response {
    let code = match kind {
        Kind::Secret => "SecretNotFound",
        Kind::Key => "KeyNotFound",
        Kind::Certificate => "CertificateNotFound",
    };
    let word = object_word(kind);
    let message = format!(
        "A {word} with (name/id) {shown} was not found in this key vault. If you recently \
         deleted this {word} you may be able to recover it using the correct recovery command. \
         For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
    );
    error(StatusCode::NOT_FOUND, code, &message, None)
}

fn fault_response(fault: Fault) -> Result<Response, Reset> {
    match fault {
        Fault::Reset => Err(Reset),
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let name = match status {
                StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
                StatusCode::GATEWAY_TIMEOUT => "GatewayTimeout",
                StatusCode::BAD_GATEWAY => "BadGateway",
                _ => "InternalServerError",
            };
            let message = "The service encountered an internal error. Please try again.";
            Ok(error(status, name, message, None))
        }
        Fault::Throttle { retry_after } => {
            let message = "Operations per second rate limit is exceeded. Please retry later. \
                           Reason: VaultRequestTypeLimitReached";
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "Throttled", message, None);
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            Ok(response)
        }
    }
}

fn add_service_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "x-ms-keyvault-service-version",
        HeaderValue::from_static("1.9.2164.1"),
    );
    headers.insert("x-ms-keyvault-region", HeaderValue::from_static("eastus"));
    if let Ok(value) = HeaderValue::from_str(&wire::guid()) {
        headers.insert("x-ms-request-id", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_accept_the_sdk_spellings() {
        let get = |version: Option<&str>| Route::Get {
            kind: Kind::Secret,
            name: "db".to_owned(),
            version: version.map(str::to_owned),
        };
        assert_eq!(parse_route("/secrets/db").unwrap(), Some(get(None)));
        assert_eq!(parse_route("/secrets/db/").unwrap(), Some(get(None)));
        assert_eq!(
            parse_route("/secrets/db/abc").unwrap(),
            Some(get(Some("abc")))
        );
        assert_eq!(
            parse_route("/keys/k/versions").unwrap(),
            Some(Route::Versions {
                kind: Kind::Key,
                name: "k".to_owned()
            })
        );
        assert_eq!(
            parse_route("/certificates").unwrap(),
            Some(Route::List {
                kind: Kind::Certificate
            })
        );
        assert_eq!(parse_route("/").unwrap(), None);
        assert_eq!(parse_route("/secrets/a/b/c").unwrap(), None);
        assert_eq!(parse_route("/storage/x").unwrap(), None);
        assert!(parse_route("/secrets/a_b").is_err());
    }

    #[test]
    fn skip_tokens_round_trip() {
        let cursor = Cursor {
            offset: 50,
            empty: true,
        };
        let token = cursor.encode();
        assert!(token.starts_with("eyJ"));
        assert_eq!(Cursor::decode(&token), Some(cursor));
        assert_eq!(Cursor::decode("bm9wZQ"), None);
    }
}
