//! The IMDS double: the Azure Instance Metadata Service's managed-identity token endpoint, on
//! plain HTTP on loopback, for the provider's `--imds-endpoint`.
//!
//! `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=…[&client_id=…]` with
//! `Metadata: true` answers a token for the node's system-assigned identity, or for the
//! user-assigned identity that `client_id` names, with every number as a string (`expires_in`,
//! `expires_on`, `not_before`) as IMDS writes them. Without the header it answers 400
//! `bad_request_102`; a request that came through a proxy (absolute-form target or
//! `X-Forwarded-For`) is refused too. Tokens are signed by the Entra double, so the Key Vault
//! double accepts them; identities are registered there with a client and object id, and a
//! test grants them on vaults like any other identity.
//!
//! Faults ([`crate::Fault`]) answer the next requests with 404, 410, 429 or 5xx, or drop the
//! connection, so the provider's IMDS retry rules can be tested. Every request is recorded.
//! Nothing here ever talks to the real metadata address.

use crate::cloud::Cloud;
use crate::entra::Entra;
use crate::fault::{Fault, FaultQueue};
use crate::tasks::{self, AbortOnDrop};
use crate::wire::{self, Reset, Response};
use http::{HeaderValue, Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::{TcpListener, TcpStream};

/// The token endpoint's path.
pub const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";

/// API versions of the token endpoint the double accepts.
const API_VERSIONS: [&str; 4] = ["2018-02-01", "2019-08-01", "2019-11-01", "2021-02-01"];

/// How long IMDS tokens live by default: managed identity tokens last a day.
const DEFAULT_LIFETIME_SECS: u64 = 86_399;

/// One request to the IMDS double, as it saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsRequestSeen {
    /// `GET`, ….
    pub method: String,
    /// The path.
    pub path: String,
    /// The query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The `Metadata` header's value, if any.
    pub metadata: Option<String>,
    /// Whether the request target was in absolute form (`GET http://host/…`), as a proxy
    /// forwards it, instead of a path.
    pub absolute_form: bool,
    /// Whether an `X-Forwarded-For` header came with it.
    pub forwarded: bool,
    /// The status answered; 0 when an injected fault dropped the connection.
    pub status: u16,
}

impl ImdsRequestSeen {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The IMDS double. Cheap to clone: clones share one node.
#[derive(Clone, Debug)]
pub struct Imds {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: String,
    entra: Entra,
    faults: FaultQueue,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    cloud: Cloud,
    system: Option<ManagedIdentity>,
    user_assigned: Vec<ManagedIdentity>,
    requests: Vec<ImdsRequestSeen>,
    lifetime: u64,
}

#[derive(Debug, Clone)]
struct ManagedIdentity {
    tenant: String,
    client_id: String,
}

/// An IMDS refusal: status, `error` and `error_description`.
struct Refusal(StatusCode, &'static str, String);

impl Imds {
    /// Serves on an ephemeral loopback port until the returned handle is dropped.
    pub(crate) async fn start(entra: Entra) -> (Imds, AbortOnDrop) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the IMDS double on loopback");
        let addr = listener.local_addr().expect("IMDS address");
        let imds = Imds {
            inner: Arc::new(Inner {
                url: format!("http://{addr}"),
                entra,
                faults: FaultQueue::default(),
                state: Mutex::new(State {
                    cloud: Cloud::Public,
                    system: None,
                    user_assigned: Vec::new(),
                    requests: Vec::new(),
                    lifetime: DEFAULT_LIFETIME_SECS,
                }),
            }),
        };
        let served = imds.clone();
        let task = tasks::spawn_acceptor(listener, move |stream| serve(stream, served.clone()));
        (imds, task)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().expect("imds state lock")
    }

    /// `http://127.0.0.1:<port>`: the provider's `--imds-endpoint`.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Gives the node a system-assigned identity: app `client_id` in `tenant_id` (both
    /// registered with the Entra double if new).
    pub fn assign_system_identity(&self, tenant_id: &str, client_id: &str) {
        self.inner.entra.ensure_app(tenant_id, client_id);
        self.state().system = Some(ManagedIdentity {
            tenant: tenant_id.to_owned(),
            client_id: client_id.to_owned(),
        });
    }

    /// Assigns user-assigned identity `client_id` of `tenant_id` to the node.
    pub fn assign_user_identity(&self, tenant_id: &str, client_id: &str) {
        self.inner.entra.ensure_app(tenant_id, client_id);
        self.state().user_assigned.push(ManagedIdentity {
            tenant: tenant_id.to_owned(),
            client_id: client_id.to_owned(),
        });
    }

    /// The cloud the node runs in (public by default): tokens are for its resources only.
    pub fn set_cloud(&self, cloud: Cloud) {
        self.state().cloud = cloud;
    }

    /// Sets `expires_in` of tokens issued from now on (a day by default).
    pub fn set_token_lifetime(&self, seconds: u64) {
        self.state().lifetime = seconds;
    }

    /// Makes the next `count` requests fail with `fault`.
    pub fn inject_fault(&self, fault: Fault, count: usize) {
        self.inner.faults.push(fault, count);
    }

    /// Every request seen so far, oldest first.
    pub fn requests(&self) -> Vec<ImdsRequestSeen> {
        self.state().requests.clone()
    }

    /// Answers one request.
    fn handle(&self, request: &http::request::Parts) -> Result<Response, Reset> {
        let mut seen = ImdsRequestSeen {
            method: request.method.to_string(),
            path: request.uri.path().to_owned(),
            query: form_urlencoded::parse(request.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
            metadata: header(request, "metadata"),
            absolute_form: request.uri.authority().is_some(),
            forwarded: request.headers.contains_key("x-forwarded-for"),
            status: 0,
        };
        let outcome = match self.inner.faults.take() {
            Some(fault) => fault_response(fault),
            None => Ok(match self.token(&seen) {
                Ok(body) => wire::json(StatusCode::OK, &body),
                Err(Refusal(status, error, description)) => wire::json(
                    status,
                    &json!({"error": error, "error_description": description}),
                ),
            }),
        };
        if let Ok(response) = &outcome {
            seen.status = response.status().as_u16();
        }
        self.state().requests.push(seen);
        outcome
    }

    /// Runs IMDS's checks and returns the token body.
    fn token(&self, request: &ImdsRequestSeen) -> Result<serde_json::Value, Refusal> {
        let invalid = |text: &str| Refusal(StatusCode::BAD_REQUEST, "invalid_request", text.into());
        if request.absolute_form || request.forwarded {
            return Err(invalid("Requests through a proxy are not accepted"));
        }
        if !request
            .metadata
            .as_deref()
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
        {
            let text = "Required metadata header not specified".to_owned();
            return Err(Refusal(StatusCode::BAD_REQUEST, "bad_request_102", text));
        }
        if request.path != TOKEN_PATH {
            return Err(Refusal(
                StatusCode::NOT_FOUND,
                "not_found",
                "Not found".into(),
            ));
        }
        if request.method != Method::GET.as_str() {
            let text = "The method is not allowed".to_owned();
            return Err(Refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                text,
            ));
        }
        match request.param("api-version") {
            None => return Err(invalid("Required query variable 'api-version' is missing")),
            Some(version) if !API_VERSIONS.contains(&version) => {
                return Err(invalid("Invalid version"));
            }
            Some(_) => {}
        }
        let Some(resource) = request.param("resource").filter(|r| !r.is_empty()) else {
            return Err(invalid("Required audience parameter not specified"));
        };

        let (identity, cloud, lifetime) = {
            let state = self.state();
            (
                choose_identity(&state, request.param("client_id"))?,
                state.cloud,
                state.lifetime,
            )
        };
        let bare = resource.trim_end_matches('/');
        if bare != cloud.vault_resource() && !cloud.other_resources().contains(&bare) {
            let text = format!(
                "AADSTS500011: The resource principal named {resource} was not found in the \
                 tenant named {}.",
                identity.tenant
            );
            return Err(Refusal(StatusCode::BAD_REQUEST, "invalid_resource", text));
        }

        let access_token = self.inner.entra.mint_managed_identity_token(
            cloud,
            &identity.tenant,
            &identity.client_id,
            resource,
            lifetime,
        );
        let now = wire::now();
        let expires_on = now + i64::try_from(lifetime).unwrap_or(i64::MAX / 2);
        Ok(json!({
            "access_token": access_token,
            "client_id": identity.client_id,
            "expires_in": lifetime.to_string(),
            "expires_on": expires_on.to_string(),
            "ext_expires_in": lifetime.to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }))
    }
}

/// The identity a request names, or the node's only one, as IMDS chooses.
fn choose_identity(state: &State, client_id: Option<&str>) -> Result<ManagedIdentity, Refusal> {
    let not_found = || {
        let text = "Identity not found".to_owned();
        Refusal(StatusCode::BAD_REQUEST, "invalid_request", text)
    };
    if let Some(client_id) = client_id {
        return state
            .user_assigned
            .iter()
            .chain(&state.system)
            .find(|identity| identity.client_id.eq_ignore_ascii_case(client_id))
            .cloned()
            .ok_or_else(not_found);
    }
    if let Some(system) = &state.system {
        return Ok(system.clone());
    }
    match state.user_assigned.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(not_found()),
        _ => {
            let text = "Multiple user assigned identities exist, please specify the clientId / \
                        resourceId of the identity in the token request"
                .to_owned();
            Err(Refusal(StatusCode::BAD_REQUEST, "invalid_request", text))
        }
    }
}

fn header(request: &http::request::Parts, name: &str) -> Option<String> {
    let value = request.headers.get(name)?;
    Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// The answer an injected fault gives instead of a token.
fn fault_response(fault: Fault) -> Result<Response, Reset> {
    let (status, retry_after) = match fault {
        Fault::Reset => return Err(Reset),
        Fault::Status(code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            None,
        ),
        Fault::Throttle { retry_after } => (StatusCode::TOO_MANY_REQUESTS, retry_after),
    };
    let body = json!({
        "error": "temporarily_unavailable",
        "error_description": format!("IMDS answered {} (an injected fault)", status.as_u16()),
    });
    let mut response = wire::json(status, &body);
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(seconds));
    }
    Ok(response)
}

/// Serves one connection: HTTP/1.1, as IMDS speaks.
async fn serve(stream: TcpStream, imds: Imds) {
    let service = hyper::service::service_fn(move |request: http::Request<_>| {
        let imds = imds.clone();
        async move {
            let (parts, _body): (_, hyper::body::Incoming) = request.into_parts();
            imds.handle(&parts)
        }
    });
    // Errors are clients going away or injected resets: nothing to report.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const TENANT: &str = "5b1e1c2a-8f3d-4c6e-9a7b-0d2e4f6a8c10";
    const SYSTEM: &str = "0c2ad8e4-1f57-4b39-a6d1-7e3f9b2c5a10";
    const USER: &str = "9e4b7c1d-2a6f-4d83-b5e0-3c8a1f6d2b47";

    /// A world whose node has a system-assigned and a user-assigned identity.
    async fn node() -> crate::World {
        let world = crate::World::start().await;
        world.imds().assign_system_identity(TENANT, SYSTEM);
        world.imds().assign_user_identity(TENANT, USER);
        world
    }

    /// Sends one raw HTTP/1.1 request and returns the status and the JSON body.
    async fn get(imds: &Imds, target: &str, headers: &[&str]) -> (u16, serde_json::Value) {
        let address = imds.url().trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut head = format!("GET {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
        for header in headers {
            head.push_str(header);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let status = answer[9..12].parse().unwrap();
        let (_, body) = answer.split_once("\r\n\r\n").unwrap();
        (status, serde_json::from_str(body).unwrap_or_default())
    }

    fn token_target(extra: &str) -> String {
        format!("{TOKEN_PATH}?api-version=2018-02-01&resource=https://vault.azure.net{extra}")
    }

    #[tokio::test]
    async fn without_the_metadata_header_it_answers_bad_request_102() {
        let world = node().await;
        let imds = world.imds();

        let (status, body) = get(imds, &token_target(""), &[]).await;

        assert_eq!(status, 400);
        assert_eq!(
            body,
            json!({"error": "bad_request_102",
                   "error_description": "Required metadata header not specified"})
        );
        assert_eq!(imds.requests()[0].metadata, None);
    }

    #[tokio::test]
    async fn tokens_carry_every_number_as_a_string() {
        let world = node().await;
        let imds = world.imds();

        let (status, body) = get(imds, &token_target(""), &["Metadata: true"]).await;

        assert_eq!(status, 200, "{body}");
        for field in ["expires_in", "expires_on", "ext_expires_in", "not_before"] {
            assert!(body[field].is_string(), "{field} in {body}");
        }
        assert_eq!(body["expires_in"], "86399");
        assert_eq!(body["client_id"], SYSTEM);
        assert_eq!(body["resource"], "https://vault.azure.net");
        let jwt = world
            .entra()
            .verify_access_token(body["access_token"].as_str().unwrap())
            .unwrap();
        assert_eq!(jwt.claims["appid"], SYSTEM);
        assert_eq!(jwt.claims["aud"], "https://vault.azure.net");
        assert_eq!(jwt.claims["tid"], TENANT);
    }

    #[tokio::test]
    async fn client_id_chooses_a_user_assigned_identity() {
        let world = node().await;
        let imds = world.imds();

        let chosen = format!("&client_id={USER}");
        let (_, body) = get(imds, &token_target(&chosen), &["Metadata: true"]).await;
        assert_eq!(body["client_id"], USER);

        let unknown = "&client_id=00000000-0000-0000-0000-000000000000";
        let (status, body) = get(imds, &token_target(unknown), &["Metadata: true"]).await;
        assert_eq!(status, 400);
        assert_eq!(body["error_description"], "Identity not found");
    }

    #[tokio::test]
    async fn proxied_requests_and_foreign_resources_are_refused() {
        let world = node().await;
        let imds = world.imds();
        let metadata = "Metadata: true";

        let forwarded = ["X-Forwarded-For: 10.0.0.1", metadata];
        let (status, _) = get(imds, &token_target(""), &forwarded).await;
        assert_eq!(status, 400);
        let absolute = format!("{}{}", imds.url(), token_target(""));
        let (status, _) = get(imds, &absolute, &[metadata]).await;
        assert_eq!(status, 400);
        let china = format!("{TOKEN_PATH}?api-version=2018-02-01&resource=https://vault.azure.cn");
        let (status, body) = get(imds, &china, &[metadata]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_resource"))
        );

        let seen = imds.requests();
        assert_eq!(
            seen.iter()
                .map(|r| (r.forwarded, r.absolute_form))
                .collect::<Vec<_>>(),
            [(true, false), (false, true), (false, false)]
        );
    }

    #[tokio::test]
    async fn faults_answer_their_status_then_tokens_follow() {
        let world = node().await;
        let imds = world.imds();
        imds.inject_fault(Fault::Status(410), 2);

        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(get(imds, &token_target(""), &["Metadata: true"]).await.0);
        }

        assert_eq!(statuses, [410, 410, 200]);
    }
}
