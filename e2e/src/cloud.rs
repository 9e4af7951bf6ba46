//! The Azure clouds the test world imitates, and the host names each one answers on.
//!
//! Every name here is served by the HTTPS front on loopback and reached only through the
//! world's CONNECT proxy; nothing in the test world resolves them in DNS. Azure Stack Hub has no
//! fixed names, so the world uses those of the Azure Stack Development Kit (region `local`,
//! domain `azurestack.external`), which tests pass to the provider in a cloud environment file.

/// Host of the cluster's OIDC issuer (an AKS issuer in East US).
pub const OIDC_ISSUER_HOST: &str = "eastus.oic.prod-aks.azure.com";

/// An Azure cloud: where its Entra ID and its Key Vaults live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cloud {
    /// Azure public cloud.
    Public,
    /// Azure US Government.
    UsGovernment,
    /// Azure China (21Vianet).
    China,
    /// An Azure Stack Hub stamp, named like the Development Kit's.
    Stack,
}

impl Cloud {
    /// Every cloud the world serves.
    pub const ALL: [Cloud; 4] = [
        Cloud::Public,
        Cloud::UsGovernment,
        Cloud::China,
        Cloud::Stack,
    ];

    /// Host name of Entra ID's token service (the authority host).
    pub fn authority_host(self) -> &'static str {
        match self {
            Cloud::Public => "login.microsoftonline.com",
            Cloud::UsGovernment => "login.microsoftonline.us",
            Cloud::China => "login.chinacloudapi.cn",
            Cloud::Stack => "adfs.local.azurestack.external",
        }
    }

    /// The authority, `https://<authority host>/`.
    pub fn authority(self) -> String {
        format!("https://{}/", self.authority_host())
    }

    /// DNS suffix of its vaults, without a leading dot.
    pub fn vault_suffix(self) -> &'static str {
        match self {
            Cloud::Public => "vault.azure.net",
            Cloud::UsGovernment => "vault.usgovcloudapi.net",
            Cloud::China => "vault.azure.cn",
            Cloud::Stack => "vault.local.azurestack.external",
        }
    }

    /// Key Vault's resource identifier: the `aud` of its tokens and, plus `/.default`, the scope.
    pub fn vault_resource(self) -> String {
        format!("https://{}", self.vault_suffix())
    }

    /// Resources other than Key Vault that this cloud's Entra ID issues tokens for; tests use
    /// them to present a token with the wrong audience.
    pub fn other_resources(self) -> &'static [&'static str] {
        match self {
            Cloud::Public => &[
                "https://management.azure.com",
                "https://storage.azure.com",
                "https://graph.microsoft.com",
            ],
            Cloud::UsGovernment => &["https://management.usgovcloudapi.net"],
            Cloud::China => &["https://management.chinacloudapi.cn"],
            Cloud::Stack => &["https://management.local.azurestack.external"],
        }
    }

    /// The `iss` of the access tokens this cloud's Entra ID issues for `tenant`.
    pub fn token_issuer(self, tenant: &str) -> String {
        match self {
            Cloud::Public | Cloud::UsGovernment => format!("https://sts.windows.net/{tenant}/"),
            Cloud::China => format!("https://sts.chinacloudapi.cn/{tenant}/"),
            Cloud::Stack => format!("https://adfs.local.azurestack.external/{tenant}/"),
        }
    }

    /// `https://<vault>.<suffix>/`, the vault URL clients are configured with.
    pub fn vault_url(self, vault: &str) -> String {
        format!("https://{vault}.{}/", self.vault_suffix())
    }

    /// The cloud whose Entra ID answers on `host`.
    pub fn from_authority_host(host: &str) -> Option<Cloud> {
        Cloud::ALL
            .into_iter()
            .find(|cloud| cloud.authority_host().eq_ignore_ascii_case(host))
    }

    /// Splits `<vault>.<suffix>` into the vault name and its cloud.
    pub fn split_vault_host(host: &str) -> Option<(String, Cloud)> {
        let host = host.to_ascii_lowercase();
        Cloud::ALL.into_iter().find_map(|cloud| {
            let name = host.strip_suffix(cloud.vault_suffix())?.strip_suffix('.')?;
            (!name.is_empty() && !name.contains('.')).then(|| (name.to_owned(), cloud))
        })
    }

    /// The environment file an Azure Stack Hub user gives the provider (`cloudEnvFileName`),
    /// with this world's names. Meaningful for [`Cloud::Stack`]; the others return their
    /// equivalent for completeness.
    pub fn environment_file(self) -> serde_json::Value {
        let resource_manager = self.other_resources()[0];
        serde_json::json!({
            "name": match self {
                Cloud::Public => "AzurePublicCloud",
                Cloud::UsGovernment => "AzureUSGovernmentCloud",
                Cloud::China => "AzureChinaCloud",
                Cloud::Stack => "AzureStackCloud",
            },
            "activeDirectoryEndpoint": self.authority(),
            "resourceManagerEndpoint": format!("{resource_manager}/"),
            "keyVaultEndpoint": format!("{}/", self.vault_resource()),
            "keyVaultDNSSuffix": self.vault_suffix(),
        })
    }
}

/// The names on the HTTPS front's certificate.
pub(crate) fn certificate_names() -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    for cloud in Cloud::ALL {
        names.push(cloud.authority_host().to_owned());
        names.push(format!("*.{}", cloud.vault_suffix()));
    }
    names.push("*.oic.prod-aks.azure.com".to_owned());
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_hosts_split_into_name_and_cloud() {
        assert_eq!(
            Cloud::split_vault_host("Kv1.vault.azure.net"),
            Some(("kv1".to_owned(), Cloud::Public))
        );
        assert_eq!(
            Cloud::split_vault_host("kv1.vault.local.azurestack.external"),
            Some(("kv1".to_owned(), Cloud::Stack))
        );
        assert_eq!(Cloud::split_vault_host("vault.azure.net"), None);
        assert_eq!(Cloud::split_vault_host("a.b.vault.azure.net"), None);
        assert_eq!(Cloud::split_vault_host("kv1.vault.azure.com"), None);
    }
}
