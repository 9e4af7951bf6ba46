//! One Mount, start to finish: request → identity → Key Vault → render → answer.
//!
//! Every object (and every version of a history) is fetched concurrently, at most
//! `concurrency` requests at a time per Mount. The answer is all or nothing: either every
//! file, or one error naming what failed — the first failure cancels the other fetches.

use std::time::Duration;

use futures::future::try_join_all;
use prost::Message as _;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::error::MountError;
use crate::identity::TokenProvider;
use crate::keyvault::{KeyVault, KeyVaultError, ObjectRef, version_of};
use crate::proto::{File, MountRequest, MountResponse, ObjectVersion};
use crate::render::{self, Fetched, RenderOptions};
use crate::request::{self, Defaults, MountParams, ObjectSpec, ObjectType, RequestError, paths};
use crate::secret::{SecretBytes, SecretString};

/// The driver's default limit on a response (`--max-call-recv-msg-size`).
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Settings of the Mount path.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Defaults for request parameters.
    pub defaults: Defaults,
    /// Key Vault requests at once within one Mount.
    pub concurrency: usize,
    /// Time a Mount may take when the caller sends no deadline.
    pub default_timeout: Duration,
    /// Rendering switches.
    pub render: RenderOptions,
}

/// Serves Mounts: owns the token provider and the Key Vault client, shared by all calls.
pub struct Mounter {
    tokens: TokenProvider,
    keyvault: KeyVault,
    options: MountOptions,
}

/// What one object contributes to the answer.
struct Mounted {
    files: Vec<(String, u32, SecretBytes)>,
    versions: Vec<ObjectVersion>,
}

/// What every fetch of one Mount shares.
struct Context<'a> {
    params: &'a MountParams,
    vault_url: String,
    token: SecretString,
    deadline: Instant,
    permits: Semaphore,
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
        request::parse(
            &request.attributes,
            &request.secrets,
            &request.permission,
            &self.options.defaults,
        )
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

        let context = Context {
            params,
            vault_url: params.cloud.vault_url(&params.vault),
            token,
            deadline,
            permits: Semaphore::new(self.options.concurrency.max(1)),
        };
        let mounted = try_join_all(
            params
                .objects
                .iter()
                .map(|spec| self.object(&context, spec)),
        )
        .await?;
        respond(mounted)
    }

    /// One object: its latest or pinned version, or a history of versions.
    async fn object(&self, cx: &Context<'_>, spec: &ObjectSpec) -> Result<Mounted, MountError> {
        if spec.history <= 1 {
            let fetched = self.fetch(cx, spec, spec.version.clone()).await?;
            let versions = vec![ObjectVersion {
                id: spec.id(),
                version: fetched.version().to_owned(),
            }];
            let files = self.render(spec, fetched, &spec.path).await?;
            return Ok(Mounted { files, versions });
        }

        let chosen = self.history(cx, spec).await?;
        let fetches = chosen
            .iter()
            .map(|version| self.fetch(cx, spec, Some(version.clone())));
        let fetched = try_join_all(fetches).await?;

        let mut mounted = Mounted {
            files: Vec::new(),
            versions: Vec::new(),
        };
        for (index, fetched) in fetched.into_iter().enumerate() {
            let path = format!("{}/{index}", spec.path);
            mounted.versions.push(ObjectVersion {
                id: format!("{}/{index}", spec.id()),
                version: fetched.version().to_owned(),
            });
            mounted
                .files
                .extend(self.render(spec, fetched, &path).await?);
        }
        Ok(mounted)
    }

    /// The versions a history mounts: the newest enabled ones, starting at the pinned
    /// version when there is one, at most `history` of them.
    async fn history(
        &self,
        cx: &Context<'_>,
        spec: &ObjectSpec,
    ) -> Result<Vec<String>, MountError> {
        let object = self.object_ref(cx, spec, None);
        let items = {
            let _permit = cx.permits.acquire().await;
            self.keyvault
                .versions(&cx.vault_url, &object, &cx.token, cx.deadline)
                .await?
        };
        let versions: Vec<String> = items
            .iter()
            .map(|item| version_of(&item.id).to_owned())
            .collect();

        let start = match &spec.version {
            None => 0,
            Some(pinned) => versions
                .iter()
                .position(|v| v.eq_ignore_ascii_case(pinned))
                .ok_or_else(|| KeyVaultError::NotFound {
                    object: self.object_ref(cx, spec, Some(pinned.clone())),
                    message: "the pinned objectVersion is not among the object's enabled \
                              versions, so its history cannot start there"
                        .into(),
                })?,
        };
        if versions.len() <= start {
            return Err(KeyVaultError::NotFound {
                object,
                message: "the object has no enabled versions".into(),
            }
            .into());
        }
        Ok(versions
            .into_iter()
            .skip(start)
            .take(spec.history as usize)
            .collect())
    }

    /// GETs one version of an object from its collection.
    async fn fetch(
        &self,
        cx: &Context<'_>,
        spec: &ObjectSpec,
        version: Option<String>,
    ) -> Result<Fetched, MountError> {
        let object = self.object_ref(cx, spec, version);
        let _permit = cx.permits.acquire().await;
        let (url, token, deadline) = (&cx.vault_url, &cx.token, cx.deadline);
        let fetched = match spec.kind {
            ObjectType::Secret => {
                Fetched::Secret(self.keyvault.secret(url, &object, token, deadline).await?)
            }
            ObjectType::Key => {
                Fetched::Key(self.keyvault.key(url, &object, token, deadline).await?)
            }
            ObjectType::Cert => Fetched::Cert(
                self.keyvault
                    .certificate(url, &object, token, deadline)
                    .await?,
            ),
        };
        tracing::debug!(
            object.type = %spec.kind, object.name = %spec.name, object.version = fetched.version(),
            "fetched"
        );
        Ok(fetched)
    }

    /// Renders on the blocking pool when the object backs a certificate: PKCS#12 key
    /// derivation is deliberately slow, and must not hold up the async workers that serve
    /// every other Mount and the health checks.
    async fn render(
        &self,
        spec: &ObjectSpec,
        fetched: Fetched,
        path: &str,
    ) -> Result<Vec<(String, u32, SecretBytes)>, MountError> {
        let options = self.options.render;
        let rendered = match &fetched {
            Fetched::Secret(bundle) if bundle.kid.is_some() => {
                let owned = spec.clone();
                tokio::task::spawn_blocking(move || render::object(&owned, &fetched, options))
                    .await
                    .map_err(|join| render::RenderError::Unsupported {
                        index: spec.index,
                        name: spec.name.clone(),
                        what: format!("rendering that failed ({join})"),
                    })??
            }
            _ => render::object(spec, &fetched, options)?,
        };
        if let Some(warning) = &rendered.warning {
            tracing::warn!(object.type = %spec.kind, object.name = %spec.name, "{warning}");
        }
        Ok(rendered
            .outputs
            .into_iter()
            .map(|output| {
                (
                    format!("{path}{}", output.suffix),
                    spec.mode,
                    output.contents,
                )
            })
            .collect())
    }

    fn object_ref(
        &self,
        cx: &Context<'_>,
        spec: &ObjectSpec,
        version: Option<String>,
    ) -> ObjectRef {
        ObjectRef {
            vault: cx.params.vault.clone(),
            kind: spec.kind,
            name: spec.name.clone(),
            version,
        }
    }
}

/// Assembles the response, refusing one the driver could not write or receive.
fn respond(mounted: Vec<Mounted>) -> Result<MountResponse, MountError> {
    // The request's paths were checked when it was parsed, but history folders and `.crt` /
    // `.key` files add to them: check the final paths as the driver's writer will.
    let paths: Vec<&str> = mounted
        .iter()
        .flat_map(|m| &m.files)
        .map(|(p, _, _)| p.as_str())
        .collect();
    for path in &paths {
        if let Err(reason) = paths::check(path) {
            return Err(invalid_objects(format!(
                "the file {path:?} cannot be written: {reason}"
            )));
        }
    }
    if let Some((first, second)) = paths::find_conflict(&paths) {
        return Err(invalid_objects(format!(
            "the files {first:?} and {second:?} clash in the volume"
        )));
    }

    // Known shortcoming: one object listed twice (two aliases, different pins) gives two
    // versions under one id, and the driver keeps the last. Refusing it would break manifests
    // that work with the Go provider; warning about it would need the ids compared here.
    let mut response = MountResponse::default();
    for object in mounted {
        response.object_version.extend(object.versions);
        for (path, mode, contents) in object.files {
            // Modes were checked to be at most 0o777 when the request was parsed.
            let mode = (mode & 0o777) as i32;
            response.files.push(File {
                path,
                mode,
                contents: contents.into_inner(),
            });
        }
    }

    // The driver's limit applies to the whole encoded message, versions included.
    let total = response.encoded_len();
    if total > MAX_RESPONSE_BYTES {
        let mut sizes: Vec<(&str, usize)> = response
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.contents.len()))
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
    Ok(response)
}

fn invalid_objects(reason: String) -> MountError {
    RequestError::Invalid {
        place: request::Place::Parameter("objects"),
        reason,
    }
    .into()
}
