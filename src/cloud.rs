//! Which Azure cloud a Mount talks to: the Entra authority and the Key Vault host and scope.
//!
//! The public clouds are a fixed table. Azure Stack Hub's endpoints come from a JSON
//! environment file named by the request, read per request into a value: unlike the Go
//! provider, which set a process environment variable, concurrent Mounts cannot see each
//! other's file.

use serde::Deserialize;

use crate::request::{Place, RequestError};

/// The endpoints of one cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloud {
    /// Canonical name, e.g. `AzurePublicCloud`.
    pub name: String,
    /// Entra authority host with a trailing `/`, e.g. `https://login.microsoftonline.com/`.
    pub authority: String,
    /// Key Vault DNS suffix, e.g. `vault.azure.net`.
    pub keyvault_suffix: String,
    /// Key Vault resource, e.g. `https://vault.azure.net`; the token scope adds `/.default`.
    pub keyvault_resource: String,
}

impl Cloud {
    /// The OAuth scope of a Key Vault token.
    pub fn keyvault_scope(&self) -> String {
        format!("{}/.default", self.keyvault_resource)
    }

    /// The base URL of a vault, with a trailing `/`.
    pub fn vault_url(&self, vault: &str) -> String {
        format!("https://{vault}.{}/", self.keyvault_suffix)
    }
}

fn fixed(name: &str, authority: &str, suffix: &str) -> Cloud {
    Cloud {
        name: name.to_owned(),
        authority: authority.to_owned(),
        keyvault_suffix: suffix.to_owned(),
        keyvault_resource: format!("https://{suffix}"),
    }
}

/// Resolves `cloudName` (any case), reading `cloudEnvFileName` for Azure Stack Hub.
pub fn resolve(name: &str, env_file: Option<&str>) -> Result<Cloud, RequestError> {
    let place = Place::Parameter("cloudName");
    match name.to_ascii_lowercase().as_str() {
        "azurepubliccloud" | "azurecloud" => Ok(fixed(
            "AzurePublicCloud",
            "https://login.microsoftonline.com/",
            "vault.azure.net",
        )),
        "azureusgovernmentcloud" | "azureusgovernment" => Ok(fixed(
            "AzureUSGovernmentCloud",
            "https://login.microsoftonline.us/",
            "vault.usgovcloudapi.net",
        )),
        "azurechinacloud" => Ok(fixed(
            "AzureChinaCloud",
            "https://login.chinacloudapi.cn/",
            "vault.azure.cn",
        )),
        "azurestackcloud" => {
            let Some(path) = env_file else {
                return Err(RequestError::Invalid {
                    place: Place::Parameter("cloudEnvFileName"),
                    reason: "is required when cloudName is AzureStackCloud".into(),
                });
            };
            stack(path)
        }
        "azuregermancloud" => Err(RequestError::Invalid {
            place,
            reason: "AzureGermanCloud was closed in 2021 and is not supported".into(),
        }),
        _ => Err(RequestError::Invalid {
            place,
            reason: format!(
                "{name:?} is not one of AzurePublicCloud, AzureUSGovernmentCloud, \
                 AzureChinaCloud, AzureStackCloud"
            ),
        }),
    }
}

/// Normalises an authority host URL to `https://host/`; anything but https is refused.
pub fn authority(url: &str) -> Result<String, String> {
    let trimmed = url.trim().trim_end_matches('/');
    let host = trimmed.strip_prefix("https://").unwrap_or_default();
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "{url:?} is not an https authority host such as https://login.microsoftonline.com/"
        ));
    }
    Ok(format!("{trimmed}/"))
}

/// The fields of an Azure environment file that matter here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvFile {
    #[serde(default)]
    name: String,
    active_directory_endpoint: String,
    #[serde(rename = "keyVaultDNSSuffix")]
    keyvault_dns_suffix: String,
    #[serde(default, rename = "keyVaultEndpoint")]
    keyvault_endpoint: String,
    #[serde(default)]
    resource_identifiers: ResourceIdentifiers,
}

#[derive(Deserialize, Default)]
struct ResourceIdentifiers {
    #[serde(default, rename = "keyVault")]
    keyvault: String,
}

fn stack(path: &str) -> Result<Cloud, RequestError> {
    let invalid = |reason: String| RequestError::Invalid {
        place: Place::Parameter("cloudEnvFileName"),
        reason,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read {path:?}: {e}")))?;
    let env: EnvFile = serde_json::from_str(&text).map_err(|e| {
        invalid(format!(
            "{path:?} is not an Azure environment file (needs activeDirectoryEndpoint and \
             keyVaultDNSSuffix): {e}"
        ))
    })?;

    let authority = env.active_directory_endpoint.trim().trim_end_matches('/');
    if !authority.starts_with("https://") || authority.len() <= "https://".len() {
        return Err(invalid(format!(
            "activeDirectoryEndpoint in {path:?} must be an https URL"
        )));
    }
    let suffix = env.keyvault_dns_suffix.trim().trim_start_matches('.');
    let suffix_ok = !suffix.is_empty()
        && suffix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !suffix_ok {
        return Err(invalid(format!(
            "keyVaultDNSSuffix in {path:?} is not a DNS suffix"
        )));
    }
    // autorest writes "N/A" for identifiers a stamp lacks: only an https URL is a resource.
    let resource = [env.resource_identifiers.keyvault, env.keyvault_endpoint]
        .into_iter()
        .map(|r| r.trim().trim_end_matches('/').to_owned())
        .find(|r| r.len() > "https://".len() && r.starts_with("https://"))
        .unwrap_or_else(|| format!("https://{suffix}"));

    Ok(Cloud {
        name: if env.name.is_empty() {
            "AzureStackCloud".into()
        } else {
            env.name
        },
        authority: format!("{authority}/"),
        keyvault_suffix: suffix.to_owned(),
        keyvault_resource: resource,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_clouds_have_their_hosts_and_scopes() {
        let public = resolve("azurepubliccloud", None).unwrap();
        assert_eq!(public.authority, "https://login.microsoftonline.com/");
        assert_eq!(public.keyvault_scope(), "https://vault.azure.net/.default");
        assert_eq!(public.vault_url("kv1"), "https://kv1.vault.azure.net/");

        let gov = resolve("AzureUSGovernmentCloud", None).unwrap();
        assert_eq!(gov.authority, "https://login.microsoftonline.us/");
        assert_eq!(
            gov.keyvault_scope(),
            "https://vault.usgovcloudapi.net/.default"
        );

        let china = resolve("AZURECHINACLOUD", None).unwrap();
        assert_eq!(china.authority, "https://login.chinacloudapi.cn/");
        assert_eq!(china.vault_url("kv"), "https://kv.vault.azure.cn/");
    }

    #[test]
    fn german_and_unknown_clouds_are_rejected() {
        for name in ["AzureGermanCloud", "Mars"] {
            let message = resolve(name, None).unwrap_err().to_string();
            assert!(message.starts_with("parameter cloudName: "), "{message}");
        }
    }

    #[test]
    fn azure_stack_reads_its_env_file() {
        let dir = std::env::temp_dir().join(format!("akv-cloud-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("stack.json");
        std::fs::write(
            &file,
            r#"{"name":"AzureStackCloud","activeDirectoryEndpoint":"https://login.stack.example/",
               "keyVaultDNSSuffix":"vault.stack.example",
               "resourceIdentifiers":{"keyVault":"https://vault.stack.example"}}"#,
        )
        .unwrap();

        let cloud = resolve("AzureStackCloud", Some(file.to_str().unwrap())).unwrap();

        assert_eq!(cloud.authority, "https://login.stack.example/");
        assert_eq!(cloud.vault_url("kv"), "https://kv.vault.stack.example/");
        assert_eq!(
            cloud.keyvault_scope(),
            "https://vault.stack.example/.default"
        );
        let missing = resolve("AzureStackCloud", None).unwrap_err().to_string();
        assert!(missing.starts_with("parameter cloudEnvFileName: is required"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unavailable_resource_identifier_falls_back_to_the_key_vault_endpoint() {
        let dir = std::env::temp_dir().join(format!("akv-cloud-na-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("stack.json");
        std::fs::write(
            &file,
            r#"{"activeDirectoryEndpoint":"https://login.stack.example",
               "keyVaultDNSSuffix":".vault.stack.example",
               "keyVaultEndpoint":"https://vault.stack.example/",
               "resourceIdentifiers":{"keyVault":"N/A"}}"#,
        )
        .unwrap();

        let cloud = resolve("azurestackcloud", Some(file.to_str().unwrap())).unwrap();

        assert_eq!(
            cloud,
            Cloud {
                name: "AzureStackCloud".into(),
                authority: "https://login.stack.example/".into(),
                keyvault_suffix: "vault.stack.example".into(),
                keyvault_resource: "https://vault.stack.example".into(),
            }
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_bad_env_file_is_named_in_the_error() {
        let missing = resolve("AzureStackCloud", Some("/nonexistent/akv-env.json"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with(
                "parameter cloudEnvFileName: cannot read \"/nonexistent/akv-env.json\": "
            ),
            "{missing}"
        );
    }
}
