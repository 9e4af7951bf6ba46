//! `Debug` for the generated messages that carry secrets.
//!
//! A MountRequest holds the pod's tokens (in `attributes`) and the node-publish secret (in
//! `secrets`); a File holds secret bytes. The generated code is told not to derive `Debug`
//! for them (see `build.rs`), and these impls print only shapes and sizes.

use std::fmt;

use crate::proto::{File, MountRequest};

impl fmt::Debug for MountRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MountRequest")
            .field(
                "attributes",
                &format_args!("<{} bytes>", self.attributes.len()),
            )
            .field("secrets", &format_args!("<{} bytes>", self.secrets.len()))
            .field("target_path", &self.target_path)
            .field("permission", &self.permission)
            .field("current_object_version", &self.current_object_version)
            .finish()
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("path", &self.path)
            .field("mode", &format_args!("{:#o}", self.mode))
            .field(
                "contents",
                &format_args!("<redacted, {} bytes>", self.contents.len()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::{File, MountRequest, MountResponse};

    #[test]
    fn messages_with_secrets_print_no_secret() {
        let secret = "s3cr3t-value-that-must-not-print";
        let request = MountRequest {
            attributes: format!(r#"{{"csi.storage.k8s.io/serviceAccount.tokens":"{secret}"}}"#),
            secrets: format!(r#"{{"clientsecret":"{secret}"}}"#),
            target_path: "/var/lib/kubelet/pods/x/volumes/v".into(),
            permission: "420".into(),
            current_object_version: vec![],
        };
        let response = MountResponse {
            files: vec![File {
                path: "db".into(),
                mode: 0o400,
                contents: secret.as_bytes().to_vec(),
            }],
            ..Default::default()
        };

        let printed = format!("{request:?} {response:?} {request:#?} {response:#?}");

        assert!(!printed.contains(secret), "{printed}");
        assert!(
            printed.contains("0o400") && printed.contains("/var/lib/kubelet"),
            "{printed}"
        );
    }
}
