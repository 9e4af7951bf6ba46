//! Every way a Mount can fail, and the one place that turns each into a gRPC status.
//!
//! The driver shows the status message in the pod's events, so messages name the vault,
//! object and version, keep Azure's own codes (AADSTS…, ForbiddenByRbac…) that operators
//! search for, and never carry a token or a secret.

use tonic::{Code, Status};

use crate::http::LastFailure;
use crate::identity::IdentityError;
use crate::keyvault::KeyVaultError;
use crate::render::RenderError;
use crate::request::RequestError;

/// A failed Mount.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The request is malformed or asks for something unsupported.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// No token could be had.
    #[error(transparent)]
    Identity(Box<IdentityError>),
    /// An object could not be fetched.
    #[error(transparent)]
    KeyVault(Box<KeyVaultError>),
    /// An object could not be turned into file contents.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The files would not fit in one response to the driver.
    #[error(
        "the mounted files total {total} bytes, above the driver's limit of {limit} bytes \
         (--max-call-recv-msg-size, 4 MiB by default); largest: {largest}"
    )]
    TooLarge {
        /// Bytes in the response.
        total: usize,
        /// The limit.
        limit: usize,
        /// The largest files with their sizes.
        largest: String,
    },
}

// Boxed: these carry whole object references, and a Mount's happy path should not pay for
// moving them around in every `Result`.
impl From<IdentityError> for MountError {
    fn from(error: IdentityError) -> Self {
        Self::Identity(Box::new(error))
    }
}

impl From<KeyVaultError> for MountError {
    fn from(error: KeyVaultError) -> Self {
        Self::KeyVault(Box::new(error))
    }
}

impl MountError {
    /// The gRPC code the driver sees.
    pub fn code(&self) -> Code {
        match self {
            Self::Request(RequestError::Invalid { .. }) => Code::InvalidArgument,
            Self::Request(RequestError::MissingToken) => Code::FailedPrecondition,
            Self::Request(RequestError::Unsupported(_)) => Code::Unimplemented,
            Self::Identity(error) => identity_code(error),
            Self::KeyVault(error) => keyvault_code(error),
            Self::Render(RenderError::Mismatch { .. }) => Code::InvalidArgument,
            Self::Render(RenderError::Unsupported { .. }) => Code::Unimplemented,
            Self::TooLarge { .. } => Code::ResourceExhausted,
        }
    }

    /// The status returned to the driver.
    pub fn to_status(&self) -> Status {
        Status::new(self.code(), self.to_string())
    }
}

fn identity_code(error: &IdentityError) -> Code {
    match error {
        IdentityError::Entra {
            code: Some(code), ..
        } => match code {
            // The identity is fine; Entra cannot reach the cluster's issuer right now.
            90061 => Code::Unavailable,
            // No federated credential or no application: a trust that was never granted.
            70021 | 700211 | 700212 | 700213 | 7002138 | 700016 => Code::PermissionDenied,
            _ => Code::Unauthenticated,
        },
        IdentityError::Entra { code: None, .. } => Code::Unauthenticated,
        IdentityError::Imds {
            status: 400 | 401 | 403,
            ..
        } => Code::Unauthenticated,
        IdentityError::Imds { .. } => Code::Unavailable,
        IdentityError::Unreachable { gave_up, .. } if gave_up.deadline => Code::DeadlineExceeded,
        IdentityError::Unreachable { .. } | IdentityError::BadResponse { .. } => Code::Unavailable,
    }
}

fn keyvault_code(error: &KeyVaultError) -> Code {
    match error {
        KeyVaultError::NotFound { .. } => Code::NotFound,
        KeyVaultError::Disabled { .. } => Code::FailedPrecondition,
        KeyVaultError::Forbidden { .. } => Code::PermissionDenied,
        KeyVaultError::Unauthorized { .. } => Code::Unauthenticated,
        KeyVaultError::Unavailable { gave_up, .. } if gave_up.deadline && !gave_up.throttled() => {
            Code::DeadlineExceeded
        }
        KeyVaultError::Unavailable { .. } => Code::Unavailable,
        KeyVaultError::Rejected { .. } | KeyVaultError::Malformed { .. } => Code::Internal,
    }
}

/// Words for the last failure of a request that was given up.
pub fn last_failure(last: &LastFailure) -> String {
    match last {
        LastFailure::Status(429) => "throttled (HTTP 429 Too Many Requests)".to_owned(),
        LastFailure::Status(status) => format!("HTTP {status}"),
        LastFailure::Transport(text) => text.clone(),
        LastFailure::NotAttempted => "no time was left to try".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entra(code: u32) -> MountError {
        IdentityError::Entra {
            tenant: "t".into(),
            client_id: "c".into(),
            code: Some(code),
            description: format!("AADSTS{code}: Entra's text."),
            correlation_id: Some("corr".into()),
        }
        .into()
    }

    #[test]
    fn every_documented_aadsts_code_has_a_grpc_code() {
        let table = [
            (70021, Code::PermissionDenied),
            (700211, Code::PermissionDenied),
            (700212, Code::PermissionDenied),
            (700213, Code::PermissionDenied),
            (7002138, Code::PermissionDenied),
            (700016, Code::PermissionDenied),
            (700024, Code::Unauthenticated),
            (700027, Code::Unauthenticated),
            (90002, Code::Unauthenticated),
            (7000215, Code::Unauthenticated),
            (90061, Code::Unavailable),
        ];
        for (aadsts, code) in table {
            assert_eq!(entra(aadsts).code(), code, "AADSTS{aadsts}");
        }
    }

    #[test]
    fn an_aadsts_message_keeps_the_code_and_adds_the_usual_cause() {
        let status = entra(700213).to_status();
        assert_eq!(
            status.message(),
            "Entra ID refused a token for client c in tenant t: AADSTS700213: Entra's text. \
             [the federated credential's subject must be \
             system:serviceaccount:<namespace>:<service account> exactly] (correlation id corr)"
        );
    }

    #[test]
    fn imds_refusals_and_outages_have_their_own_codes() {
        let imds = |status| {
            MountError::from(IdentityError::Imds {
                client_id: None,
                status,
                message: "m".into(),
            })
        };
        assert_eq!(imds(400).code(), Code::Unauthenticated);
        assert_eq!(imds(403).code(), Code::Unauthenticated);
        assert_eq!(imds(409).code(), Code::Unavailable);
    }
}
