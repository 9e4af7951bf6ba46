//! The token endpoint, `POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant with a
//! federated assertion (workload identity) or a client secret (service principal).
//!
//! Checks run in Entra's order, and each failure answers with the AADSTS code Entra uses:
//! tenant (90002), app (700016), scope (1002012, 500011), then the credential. An assertion is
//! matched against the app's federated credentials on issuer (700211), subject (700213, or
//! 7002138 when only the case differs) and audience (700212) — or refused with the generic
//! 70021 while the only matching credential still propagates; then the issuer's discovery
//! document and JWKS are fetched (90061), the signature checked (700027) and the time window
//! (700024, with Entra's five minutes of clock skew).

use super::{App, Entra, FederatedCredential};
use crate::cloud::Cloud;
use crate::fault::Fault;
use crate::jwt::Jwt;
use crate::wire::{self, Incoming, Reset, Response};
use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;

/// The only assertion type Entra accepts for a client assertion.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How far outside its validity window Entra still accepts an assertion.
const CLOCK_SKEW_SECS: i64 = 300;

/// Scopes that may accompany the resource scope without naming a resource.
const RESERVED_SCOPES: [&str; 4] = ["openid", "profile", "offline_access", "email"];

/// One request to the token endpoint, as the double saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestSeen {
    /// The cloud whose authority host was called.
    pub cloud: Cloud,
    /// The tenant from the path, as sent.
    pub tenant: String,
    /// The `client_id` field, empty when missing.
    pub client_id: String,
    /// The credential the client presented.
    pub grant: GrantSeen,
    /// The `scope` field, empty when missing.
    pub scope: String,
    /// The assertion's `iss`, when it could be decoded.
    pub assertion_issuer: Option<String>,
    /// The assertion's `sub`, when it could be decoded.
    pub assertion_subject: Option<String>,
    /// Whether a token was issued, or the AADSTS code of the refusal.
    pub outcome: TokenOutcome,
    /// HTTP/1.1 or HTTP/2.
    pub version: http::Version,
}

/// The credential in a token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantSeen {
    /// `client_assertion` (a federated token).
    Assertion,
    /// `client_secret`.
    Secret,
    /// Neither.
    Missing,
}

/// How the token endpoint answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOutcome {
    /// 200 with an access token.
    Issued,
    /// An error body with this AADSTS code.
    Refused(u32),
    /// An injected fault answered instead of the endpoint (see [`crate::Fault`]).
    Faulted,
}

/// An Entra error: an AADSTS code and its text.
#[derive(Debug)]
pub(super) struct Refusal {
    code: u32,
    text: String,
    correlation_id: Option<String>,
}

/// What an access token is for.
pub(super) struct AccessTokenFor<'a> {
    pub cloud: Cloud,
    pub tenant: &'a str,
    pub client_id: &'a str,
    pub object_id: &'a str,
    pub resource: &'a str,
    pub lifetime: u64,
    pub by_assertion: bool,
}

impl Refusal {
    pub(super) fn new(code: u32, text: impl Into<String>) -> Refusal {
        Refusal {
            code,
            text: text.into(),
            correlation_id: None,
        }
    }

    pub(super) fn tenant_not_found(tenant: &str) -> String {
        format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and \
             are signing into the correct cloud. Check with your subscription administrator, this \
             may happen if there are no active subscriptions for the tenant."
        )
    }

    fn missing(parameter: &str) -> Refusal {
        Refusal::new(
            900144,
            format!("The request body must contain the following parameter: '{parameter}'."),
        )
    }

    /// The OAuth `error` and the HTTP status Entra pairs with this code.
    fn classify(&self) -> (&'static str, StatusCode) {
        match self.code {
            90002 => ("invalid_tenant", StatusCode::BAD_REQUEST),
            700016 => ("unauthorized_client", StatusCode::BAD_REQUEST),
            70003 => ("unsupported_grant_type", StatusCode::BAD_REQUEST),
            1002012 => ("invalid_scope", StatusCode::BAD_REQUEST),
            500011 => ("invalid_resource", StatusCode::BAD_REQUEST),
            700211 | 700212 | 700213 | 7002138 | 700024 | 700027 | 7000215 | 7000218 => {
                ("invalid_client", StatusCode::UNAUTHORIZED)
            }
            90033 => ("temporarily_unavailable", StatusCode::SERVICE_UNAVAILABLE),
            _ => ("invalid_request", StatusCode::BAD_REQUEST),
        }
    }

    pub(super) fn response(&self, cloud: Cloud) -> Response {
        let (error, status) = self.classify();
        self.response_as(cloud, error, status)
    }

    fn response_as(&self, cloud: Cloud, error: &str, status: StatusCode) -> Response {
        let now = wire::now();
        let trace_id = wire::guid();
        let correlation_id = self.correlation_id.clone().unwrap_or_else(wire::guid);
        let timestamp = wire::utc_timestamp(now);
        let description = format!(
            "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\n\
             Timestamp: {timestamp}",
            self.code, self.text
        );
        let mut response = wire::json(
            status,
            &json!({
                "error": error,
                "error_description": description,
                "error_codes": [self.code],
                "timestamp": timestamp,
                "trace_id": trace_id,
                "correlation_id": correlation_id,
                "error_uri":
                    format!("https://{}/error?code={}", cloud.authority_host(), self.code),
            }),
        );
        add_request_id(&mut response, &trace_id);
        response
    }
}

fn add_request_id(response: &mut Response, request_id: &str) {
    let headers = response.headers_mut();
    headers.insert(
        "cache-control",
        HeaderValue::from_static("no-store, no-cache"),
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-ms-request-id", value);
    }
}

/// The answer to a request that an injected fault spends.
pub(super) fn fault_response(cloud: Cloud, fault: Fault) -> Result<Response, Reset> {
    let busy = "A transient error has occurred. Please try again.";
    match fault {
        Fault::Reset => Err(Reset),
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            Ok(Refusal::new(90033, busy).response_as(cloud, "temporarily_unavailable", status))
        }
        Fault::Throttle { retry_after } => {
            let text = "TenantThrottlingError: There are too many incoming requests.";
            let mut response = Refusal::new(90055, text).response_as(
                cloud,
                "temporarily_unavailable",
                StatusCode::TOO_MANY_REQUESTS,
            );
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(seconds));
            }
            Ok(response)
        }
    }
}

/// What a token request asks for, before it is answered.
pub(super) fn observe(cloud: Cloud, tenant: &str, request: &Incoming) -> TokenRequestSeen {
    let form: HashMap<String, String> =
        form_urlencoded::parse(&request.body).into_owned().collect();
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let assertion = form.get("client_assertion").map(|token| Jwt::decode(token));
    let assertion_claim = |name: &str| {
        let jwt = assertion.as_ref()?.as_ref().ok()?;
        Some(jwt.claim_str(name)?.to_owned())
    };
    TokenRequestSeen {
        cloud,
        tenant: tenant.to_owned(),
        client_id: field("client_id"),
        grant: match (assertion.is_some(), form.contains_key("client_secret")) {
            (true, _) => GrantSeen::Assertion,
            (false, true) => GrantSeen::Secret,
            (false, false) => GrantSeen::Missing,
        },
        scope: field("scope"),
        assertion_issuer: assertion_claim("iss"),
        assertion_subject: assertion_claim("sub"),
        outcome: TokenOutcome::Issued,
        version: request.version,
    }
}

impl Entra {
    /// `POST /{tenant}/oauth2/v2.0/token`.
    pub(super) async fn token_endpoint(
        &self,
        cloud: Cloud,
        tenant: &str,
        request: &Incoming,
    ) -> Response {
        let form: HashMap<String, String> =
            form_urlencoded::parse(&request.body).into_owned().collect();
        let mut seen = observe(cloud, tenant, request);

        let response = if request.method != http::Method::POST {
            let text = format!(
                "The endpoint only accepts POST requests. Received a {} request.",
                request.method
            );
            Err(Refusal::new(900561, text))
        } else {
            self.exchange(cloud, tenant, &form).await
        };
        let response = match response {
            Ok(body) => {
                let mut response = wire::json(StatusCode::OK, &body);
                add_request_id(&mut response, &wire::guid());
                response
            }
            Err(mut refusal) => {
                seen.outcome = TokenOutcome::Refused(refusal.code);
                refusal.correlation_id = request
                    .headers
                    .get("client-request-id")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                refusal.response(cloud)
            }
        };
        self.state().requests.push(seen);
        response
    }

    /// Runs Entra's checks and returns the success body.
    async fn exchange(
        &self,
        cloud: Cloud,
        tenant: &str,
        form: &HashMap<String, String>,
    ) -> Result<Value, Refusal> {
        if !self.has_tenant(tenant) {
            return Err(Refusal::new(90002, Refusal::tenant_not_found(tenant)));
        }

        let grant_type = form
            .get("grant_type")
            .ok_or_else(|| Refusal::missing("grant_type"))?;
        if grant_type != "client_credentials" {
            let text = format!("The app requested an unsupported grant type '{grant_type}'.");
            return Err(Refusal::new(70003, text));
        }

        let client_id = form
            .get("client_id")
            .ok_or_else(|| Refusal::missing("client_id"))?;
        let app = self.app_in_tenant(tenant, client_id)?;
        let resource = resource_of(cloud, tenant, form.get("scope"))?;

        let by_assertion = if let Some(assertion) = form.get("client_assertion") {
            if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
                return Err(Refusal::missing("client_assertion_type"));
            }
            self.check_assertion(&app, assertion).await?;
            true
        } else if let Some(secret) = form.get("client_secret") {
            check_secret(&app, secret)?;
            false
        } else {
            let text = "The request body must contain the following parameter: \
                        'client_assertion' or 'client_secret'.";
            return Err(Refusal::new(7000218, text));
        };

        let (lifetime, refresh_in) = {
            let state = self.state();
            (state.token_lifetime, state.refresh_in)
        };
        let access_token = self.sign_access_token(&AccessTokenFor {
            cloud,
            tenant: &app.tenant,
            client_id: &app.client_id,
            object_id: &app.object_id,
            resource: &resource,
            lifetime,
            by_assertion,
        });
        let mut body = json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        });
        if let Some(refresh_in) = refresh_in {
            body["refresh_in"] = json!(refresh_in);
        }
        Ok(body)
    }

    fn app_in_tenant(&self, tenant: &str, client_id: &str) -> Result<App, Refusal> {
        let state = self.state();
        let app = state.apps.get(&client_id.to_ascii_lowercase());
        match app {
            Some(app) if app.tenant.eq_ignore_ascii_case(tenant) => Ok(app.clone()),
            _ => Err(Refusal::new(
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory \
                     '{tenant}'. This can happen if the application has not been installed by \
                     the administrator of the tenant or consented to by any user in the tenant. \
                     You may have sent your authentication request to the wrong tenant."
                ),
            )),
        }
    }

    /// Matches the assertion to a federated credential, then verifies it against its issuer.
    async fn check_assertion(&self, app: &App, assertion: &str) -> Result<(), Refusal> {
        let jwt = Jwt::decode(assertion)
            .map_err(|_| Refusal::new(50027, "JWT token is invalid or malformed."))?;
        let issuer = jwt.claim_str("iss").unwrap_or_default().to_owned();
        let subject = jwt.claim_str("sub").unwrap_or_default();
        let audiences = jwt.audiences();

        let effective: Vec<FederatedCredential> = app
            .federated
            .iter()
            .filter(|credential| credential.propagated)
            .cloned()
            .collect();
        if let Err(refusal) = match_federated_credential(&effective, &issuer, subject, &audiences) {
            let propagating = app.federated.iter().any(|credential| {
                !credential.propagated
                    && credential.issuer == issuer
                    && credential.subject == subject
                    && audiences.contains(&credential.audience)
            });
            return Err(if propagating {
                no_matching_record(&issuer, subject, &audiences)
            } else {
                refusal
            });
        }

        let jwks = self.fetch_issuer_keys(&issuer).await.map_err(|reason| {
            let text = format!("Request to External OIDC endpoint failed. ({reason})");
            Refusal::new(90061, text)
        })?;
        if !jwt.verify_with_jwks(&jwks) {
            let text = "Client assertion failed signature validation.";
            return Err(Refusal::new(700027, text));
        }

        check_time_window(&jwt)
    }

    /// Fetches `{iss}/.well-known/openid-configuration`, then its `jwks_uri`.
    async fn fetch_issuer_keys(&self, issuer: &str) -> Result<Value, String> {
        let base = issuer.trim_end_matches('/');
        let discovery = self
            .get_json(&format!("{base}/.well-known/openid-configuration"))
            .await?;
        if discovery.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err("the discovery document names another issuer".to_owned());
        }
        let jwks_uri = discovery
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or("the discovery document has no jwks_uri")?;
        self.get_json(jwks_uri).await
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        // Entra fetches issuer documents over HTTPS only; refusing here also keeps every
        // fetch inside the proxy's CONNECT tunnel.
        if !url.starts_with("https://") {
            return Err(format!("{url} is not https"));
        }
        let response = self
            .inner
            .http
            .get(url)
            .send()
            .await
            .map_err(|error| format!("GET {url}: {error}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url}: {status}"));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|error| format!("GET {url}: {error}"))?;
        serde_json::from_slice(&bytes).map_err(|error| format!("GET {url}: {error}"))
    }

    /// Signs an access token with the claims Entra puts in an app-only v1 token.
    pub(super) fn sign_access_token(&self, token: &AccessTokenFor<'_>) -> String {
        let now = wire::now();
        let issuer = token.cloud.token_issuer(token.tenant);
        let lifetime = i64::try_from(token.lifetime).unwrap_or(i64::MAX / 2);
        let client_auth = if token.by_assertion { "2" } else { "1" };
        let claims = json!({
            "aud": token.resource,
            "iss": issuer,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "aio": wire::version_id(),
            "appid": token.client_id,
            "appidacr": client_auth,
            "azp": token.client_id,
            "azpacr": client_auth,
            "idp": issuer,
            "idtyp": "app",
            "oid": token.object_id,
            "rh": "0.AAAA",
            "sub": token.object_id,
            "tid": token.tenant,
            "uti": wire::version_id(),
            "ver": "1.0",
        });
        let kid = self.inner.key.kid();
        let header = json!({"typ": "JWT", "alg": "RS256", "x5t": kid, "kid": kid});
        let signed = self.inner.key.sign_with_header(&header, &claims);
        self.state().issued.push(signed.clone());
        signed
    }
}

/// The resource of a client-credentials `scope`: exactly one `<resource>/.default`, for a
/// resource that this cloud knows.
fn resource_of(cloud: Cloud, tenant: &str, scope: Option<&String>) -> Result<String, Refusal> {
    let scope = scope.ok_or_else(|| Refusal::missing("scope"))?;
    let resources: Vec<&str> = scope
        .split_whitespace()
        .filter(|scope| !RESERVED_SCOPES.contains(scope))
        .collect();
    let [resource_scope] = resources.as_slice() else {
        return Err(invalid_scope(scope));
    };
    let resource = resource_scope
        .strip_suffix("/.default")
        .ok_or_else(|| invalid_scope(scope))?;

    let bare = resource.trim_end_matches('/');
    let known = bare == cloud.vault_resource() || cloud.other_resources().contains(&bare);
    if !known {
        let text = format!(
            "The resource principal named {resource} was not found in the tenant named \
             {tenant}. This can happen if the application has not been installed by the \
             administrator of the tenant or consented to by any user in the tenant. You might \
             have sent your authentication request to the wrong tenant."
        );
        return Err(Refusal::new(500011, text));
    }
    Ok(resource.to_owned())
}

fn invalid_scope(scope: &str) -> Refusal {
    let text = format!(
        "The provided value for scope {scope} is not valid. Client credential flows must have \
         a scope value with /.default suffixed to the resource identifier (application ID URI)."
    );
    Refusal::new(1002012, text)
}

fn check_secret(app: &App, secret: &str) -> Result<(), Refusal> {
    if app.secrets.iter().any(|known| known == secret) {
        return Ok(());
    }
    let text = format!(
        "Invalid client secret provided. Ensure the secret being sent in the request is the \
         client secret value, not the client secret ID, for a secret added to app '{}'.",
        app.client_id
    );
    Err(Refusal::new(7000215, text))
}

/// Finds a credential with this exact issuer, then subject, then an audience in `aud`.
fn match_federated_credential(
    credentials: &[FederatedCredential],
    issuer: &str,
    subject: &str,
    audiences: &[String],
) -> Result<(), Refusal> {
    let advice = "Please check your federated identity credential Subject, Audience and \
                  Issuer against the presented assertion. \
                  https://learn.microsoft.com/entra/workload-id/workload-identity-federation";

    let by_issuer: Vec<&FederatedCredential> = credentials
        .iter()
        .filter(|credential| credential.issuer == issuer)
        .collect();
    if by_issuer.is_empty() {
        let text = format!(
            "No matching federated identity record found for presented assertion issuer \
             '{issuer}'. {advice}"
        );
        return Err(Refusal::new(700211, text));
    }

    let by_subject: Vec<&&FederatedCredential> = by_issuer
        .iter()
        .filter(|credential| credential.subject == subject)
        .collect();
    if by_subject.is_empty() {
        let case_only = by_issuer
            .iter()
            .any(|credential| credential.subject.eq_ignore_ascii_case(subject));
        let (code, extra) = if case_only {
            (
                7002138,
                " The subject matches a federated identity record only when compared \
                 case-insensitively; subjects are case-sensitive.",
            )
        } else {
            (700213, "")
        };
        let text = format!(
            "No matching federated identity record found for presented assertion subject \
             '{subject}'.{extra} {advice}"
        );
        return Err(Refusal::new(code, text));
    }

    let audience_ok = by_subject
        .iter()
        .any(|credential| audiences.contains(&credential.audience));
    if !audience_ok {
        let text = format!(
            "No matching federated identity record found for presented assertion audience \
             '{}'. {advice}",
            audiences.join(",")
        );
        return Err(Refusal::new(700212, text));
    }
    Ok(())
}

/// The generic refusal Entra gives while a matching credential is still propagating.
fn no_matching_record(issuer: &str, subject: &str, audiences: &[String]) -> Refusal {
    let text = format!(
        "No matching federated identity record found for presented assertion. Assertion \
         Issuer: '{issuer}'. Assertion Subject: '{subject}'. Assertion Audience: '{}'. \
         https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
        audiences.join(",")
    );
    Refusal::new(70021, text)
}

fn check_time_window(jwt: &Jwt) -> Result<(), Refusal> {
    let now = wire::now();
    let expires = jwt.claim_i64("exp");
    let not_before = jwt.claim_i64("nbf").unwrap_or(i64::MIN);
    let valid = expires.is_some_and(|exp| now <= exp + CLOCK_SKEW_SECS)
        && now + CLOCK_SKEW_SECS >= not_before;
    if valid {
        return Ok(());
    }
    let show = |secs: Option<i64>| secs.map_or_else(|| "none".to_owned(), wire::utc_timestamp);
    let text = format!(
        "Client assertion is not within its valid time range. Current time: {}, assertion \
         valid from {}, expiry time of assertion {}.",
        wire::utc_timestamp(now),
        show(jwt.claim_i64("nbf")),
        show(expires)
    );
    Err(Refusal::new(700024, text))
}
