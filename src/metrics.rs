//! Prometheus metrics: what a Mount cost and how the services behind it answered.
//!
//! The families are process-wide statics, registered once, so the few places that count
//! (the gRPC edge, the HTTP retry loop, the token provider) need a function call and no
//! handle threaded through them. Every label value comes from a small fixed set written in
//! this file: object types, status classes, gRPC code names, identity modes. Names of
//! vaults, objects, pods or SecretProviderClasses, and error text, never become labels:
//! they would make every pod a new series, and some of them are not for a dashboard.
//!
//! The exposition is OpenMetrics text, which Prometheus reads natively.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::Code;

use crate::identity::IdentityError;
use crate::request::{Identity, ObjectType};

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the Mount duration buckets, in seconds: from a warm cached Mount (a few
/// milliseconds) to kubelet's two-minute CSI deadline.
const MOUNT_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MountLabels {
    result: &'static str,
    grpc_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyVaultLabels {
    object_type: &'static str,
    status_class: &'static str,
    retried: bool,
    throttled: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    identity_mode: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    arch: &'static str,
}

type HistogramFamily = Family<MountLabels, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    mounts: Family<MountLabels, Counter>,
    mount_duration: HistogramFamily,
    mounts_in_flight: Gauge,
    keyvault_requests: Family<KeyVaultLabels, Counter>,
    token_requests: Family<TokenLabels, Counter>,
    token_cache: Family<ResultLabel, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("akv_csi_provider");
        let mounts = Family::<MountLabels, Counter>::default();
        registry.register(
            "mounts",
            "Mount calls answered, by result and gRPC code",
            mounts.clone(),
        );
        let mount_duration: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(MOUNT_BUCKETS));
        registry.register(
            "mount_duration_seconds",
            "Time to answer a Mount call, by result and gRPC code",
            mount_duration.clone(),
        );
        let mounts_in_flight = Gauge::default();
        registry.register(
            "mounts_in_flight",
            "Mount calls being served now",
            mounts_in_flight.clone(),
        );
        let keyvault_requests = Family::<KeyVaultLabels, Counter>::default();
        registry.register(
            "keyvault_requests",
            "HTTP requests to Key Vault, retries included, by object type, status class \
             (2xx, 3xx, 4xx, 5xx or transport for no answer), whether the request was a \
             retry and whether it was throttled (429)",
            keyvault_requests.clone(),
        );
        let token_requests = Family::<TokenLabels, Counter>::default();
        registry.register(
            "token_requests",
            "Token requests to Entra ID or IMDS (each after its own retries), by identity \
             mode and result",
            token_requests.clone(),
        );
        let token_cache = Family::<ResultLabel, Counter>::default();
        registry.register(
            "token_cache_lookups",
            "Token cache lookups of Mounts: hit (a cached token served) or miss (a token \
             was requested)",
            token_cache.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                arch: std::env::consts::ARCH,
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the labels name the running build",
            build_info,
        );

        Self {
            registry,
            mounts,
            mount_duration,
            mounts_in_flight,
            keyvault_requests,
            token_requests,
            token_cache,
        }
    }
}

/// The whole exposition, `# EOF` included.
pub fn encode() -> String {
    let mut text = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &METRICS.registry);
    text
}

/// Registers the families now, so that the first scrape already lists them all, even before
/// the first Mount.
pub fn init() {
    // The series alerts divide by exist from the start, at zero, so that `rate()` over them
    // is defined before the first Mount.
    let success = MountLabels {
        result: "success",
        grpc_code: code_name(Code::Ok),
    };
    drop(METRICS.mounts.get_or_create(&success));
    drop(METRICS.mount_duration.get_or_create(&success));
    for result in ["hit", "miss"] {
        drop(METRICS.token_cache.get_or_create(&ResultLabel { result }));
    }
}

/// Times one Mount call and counts it in flight until it is finished or dropped.
///
/// A timer dropped without [`MountTimer::finish`] is a call whose caller went away (the
/// driver's deadline passed, or its connection closed): it is counted as `Cancelled`.
#[derive(Debug)]
pub struct MountTimer {
    started: Instant,
    finished: bool,
}

impl MountTimer {
    /// Starts timing a Mount.
    pub fn start() -> Self {
        METRICS.mounts_in_flight.inc();
        Self {
            started: Instant::now(),
            finished: false,
        }
    }

    /// Records the Mount's outcome: `Code::Ok` for a success, else the code returned.
    pub fn finish(mut self, code: Code) {
        self.record(code);
    }

    fn record(&mut self, code: Code) {
        if self.finished {
            return;
        }
        self.finished = true;
        let labels = MountLabels {
            result: if code == Code::Ok { "success" } else { "error" },
            grpc_code: code_name(code),
        };
        METRICS.mounts.get_or_create(&labels).inc();
        METRICS
            .mount_duration
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
        METRICS.mounts_in_flight.dec();
    }
}

impl Drop for MountTimer {
    fn drop(&mut self) {
        self.record(Code::Cancelled);
    }
}

/// Counts one HTTP attempt at Key Vault: `attempt` counts from 1, `status` is `None` when no
/// answer came (connection refused or reset, TLS failure, timeout).
pub fn keyvault_request(kind: ObjectType, attempt: u32, status: Option<u16>) {
    let labels = KeyVaultLabels {
        object_type: object_type(kind),
        status_class: status_class(status),
        retried: attempt > 1,
        throttled: status == Some(429),
    };
    METRICS.keyvault_requests.get_or_create(&labels).inc();
}

/// Counts one token request for `identity`, by its outcome.
pub fn token_request(identity: &Identity, outcome: Result<(), &IdentityError>) {
    let result = match outcome {
        Ok(()) => "success",
        Err(IdentityError::Entra { .. } | IdentityError::Imds { .. }) => "refused",
        Err(IdentityError::Unreachable { .. }) => "unavailable",
        Err(IdentityError::BadResponse { .. }) => "bad_response",
    };
    let labels = TokenLabels {
        identity_mode: identity_mode(identity),
        result,
    };
    METRICS.token_requests.get_or_create(&labels).inc();
}

/// Counts a token cache lookup: `hit` when a cached token was served without a request.
pub fn token_cache_lookup(hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    METRICS
        .token_cache
        .get_or_create(&ResultLabel { result })
        .inc();
}

fn identity_mode(identity: &Identity) -> &'static str {
    match identity {
        Identity::Workload { .. } => "workload_identity",
        Identity::ServicePrincipal { .. } => "service_principal",
        Identity::Managed { .. } => "managed_identity",
    }
}

fn object_type(kind: ObjectType) -> &'static str {
    match kind {
        ObjectType::Secret => "secret",
        ObjectType::Key => "key",
        ObjectType::Cert => "cert",
    }
}

fn status_class(status: Option<u16>) -> &'static str {
    match status {
        None => "transport",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
    }
}

/// The canonical name of a gRPC code, as grpc-go and Prometheus dashboards spell it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of one sample line, e.g. `name{a="b"} 3`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
    }

    #[test]
    fn status_classes_are_a_fixed_set() {
        let classes: Vec<&str> = [None, Some(200), Some(304), Some(429), Some(503), Some(99)]
            .into_iter()
            .map(status_class)
            .collect();
        assert_eq!(classes, ["transport", "2xx", "3xx", "4xx", "5xx", "other"]);
    }

    #[test]
    fn code_names_match_grpc_go() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::Cancelled), "Canceled");
        assert_eq!(code_name(Code::Unauthenticated), "Unauthenticated");
    }

    #[test]
    fn a_dropped_timer_counts_a_cancelled_mount_and_leaves_flight() {
        let series = r#"akv_csi_provider_mounts_total{result="error",grpc_code="Canceled"}"#;
        let before = sample(&encode(), series).unwrap_or(0.0);

        let timer = MountTimer::start();
        assert!(sample(&encode(), "akv_csi_provider_mounts_in_flight").unwrap() >= 1.0);
        drop(timer);

        let text = encode();
        assert!(sample(&text, series).unwrap() >= before + 1.0, "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn keyvault_attempts_carry_retry_and_throttle_flags() {
        keyvault_request(ObjectType::Key, 2, Some(429));
        let text = encode();
        let series = r#"akv_csi_provider_keyvault_requests_total{object_type="key",status_class="4xx",retried="true",throttled="true"}"#;
        assert!(sample(&text, series).unwrap() >= 1.0, "{text}");
    }

    #[test]
    fn build_info_names_the_version() {
        let series = format!(
            "akv_csi_provider_build_info{{version=\"{}\",arch=\"{}\"}}",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH
        );
        assert_eq!(sample(&encode(), &series), Some(1.0));
    }
}
