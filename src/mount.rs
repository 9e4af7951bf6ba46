//! One Mount, start to finish: request → identity → Key Vault → render → answer.
//!
//! Objects are fetched concurrently (bounded per Mount), and the answer is all or nothing:
//! either every file, or one error naming what failed.

use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use tokio::time::Instant;

use crate::error::MountError;
use crate::identity::TokenProvider;
use crate::keyvault::{KeyVault, ObjectRef};
use crate::proto::{File, MountRequest, MountResponse, ObjectVersion};
use crate::render;
use crate::request::{self, Defaults, MountParams, ObjectSpec, ObjectType, RequestError};
use crate::secret::{SecretBytes, SecretString};

/// The driver's default limit on a response (`--max-call-recv-msg-size`).
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Settings of the Mount path.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Defaults for request parameters.
    pub defaults: Defaults,
    /// Objects fetched at once within one Mount.
    pub concurrency: usize,
    /// Time a Mount may take when the caller sends no deadline.
    pub default_timeout: Duration,
}

/// Serves Mounts: owns the token provider and the Key Vault client, shared by all calls.
pub struct Mounter {
    tokens: TokenProvider,
    keyvault: KeyVault,
    options: MountOptions,
}

/// The files of one object and the version they came from.
struct Mounted {
    files: Vec<(String, u32, SecretBytes)>,
    id: String,
    version: String,
}

impl Mounter {
    /// A mounter over the given clients.
    pub fn new(tokens: TokenProvider, keyvault: KeyVault, options: MountOptions) -> Self {
        Self {
            tokens,
            keyvault,
            options,
        }
    }

    /// Parses and validates a request without serving it.
    pub fn parse(&self, request: &MountRequest) -> Result<MountParams, RequestError> {
        let params = request::parse(
            &request.attributes,
            &request.secrets,
            &request.permission,
            &self.options.defaults,
        )?;
        check_supported(&params.objects)?;
        Ok(params)
    }

    /// Serves a parsed request within `timeout`, or the default when the caller sent none.
    pub async fn mount(
        &self,
        params: &MountParams,
        timeout: Option<Duration>,
    ) -> Result<MountResponse, MountError> {
        let deadline = Instant::now() + timeout.unwrap_or(self.options.default_timeout);
        let token = self
            .tokens
            .keyvault_token(&params.identity, &params.cloud, deadline)
            .await?;

        let vault_url = params.cloud.vault_url(&params.vault);
        // Built eagerly, run at most `concurrency` at a time, answered in list order.
        let fetches: Vec<_> = params
            .objects
            .iter()
            .map(|spec| self.object(params, &vault_url, spec, &token, deadline))
            .collect();
        let mounted: Vec<Mounted> = futures::stream::iter(fetches)
            .buffered(self.options.concurrency.max(1))
            .try_collect()
            .await?;

        respond(mounted)
    }

    async fn object(
        &self,
        params: &MountParams,
        vault_url: &str,
        spec: &ObjectSpec,
        token: &SecretString,
        deadline: Instant,
    ) -> Result<Mounted, MountError> {
        let object = ObjectRef {
            vault: params.vault.clone(),
            kind: spec.kind,
            name: spec.name.clone(),
            version: spec.version.clone(),
        };
        let bundle = self
            .keyvault
            .secret(vault_url, &object, token, deadline)
            .await?;
        let contents = render::secret(spec, &bundle)?;
        tracing::debug!(
            object.type = %spec.kind, object.name = %spec.name, object.version = bundle.version(),
            bytes = contents.len(), "fetched"
        );
        Ok(Mounted {
            files: vec![(spec.path.clone(), spec.mode, contents)],
            id: spec.id(),
            version: bundle.version().to_owned(),
        })
    }
}

/// Object types and options whose rendering is not built yet fail before any request.
fn check_supported(objects: &[ObjectSpec]) -> Result<(), RequestError> {
    for spec in objects {
        let what = match spec.kind {
            ObjectType::Key => Some("objectType key"),
            ObjectType::Cert => Some("objectType cert"),
            ObjectType::Secret if spec.history > 1 => Some("objectVersionHistory above 1"),
            ObjectType::Secret => None,
        };
        if let Some(what) = what {
            return Err(RequestError::Unsupported(format!(
                "objects[{}] ({}): {what} is not supported yet",
                spec.index, spec.name
            )));
        }
    }
    Ok(())
}

/// Assembles the response, refusing one the driver could not receive.
fn respond(mounted: Vec<Mounted>) -> Result<MountResponse, MountError> {
    let total: usize = mounted
        .iter()
        .flat_map(|m| &m.files)
        .map(|(path, _, contents)| path.len() + contents.len() + 16)
        .sum();
    if total > MAX_RESPONSE_BYTES {
        let mut sizes: Vec<(&str, usize)> = mounted
            .iter()
            .flat_map(|m| &m.files)
            .map(|(path, _, contents)| (path.as_str(), contents.len()))
            .collect();
        sizes.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
        let largest = sizes
            .iter()
            .take(3)
            .map(|(path, size)| format!("{path} ({size} bytes)"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(MountError::TooLarge {
            total,
            limit: MAX_RESPONSE_BYTES,
            largest,
        });
    }

    let mut response = MountResponse::default();
    for object in mounted {
        response.object_version.push(ObjectVersion {
            id: object.id,
            version: object.version,
        });
        for (path, mode, contents) in object.files {
            let mode = i32::try_from(mode).unwrap_or(0o644);
            response.files.push(File {
                path,
                mode,
                contents: contents.into_inner(),
            });
        }
    }
    Ok(response)
}
