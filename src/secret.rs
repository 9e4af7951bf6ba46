//! Containers for values that must never be printed: tokens, assertions, client secrets and
//! secret bytes fetched from Key Vault.
//!
//! Their `Debug` says only that something is there, and their memory is wiped on drop, so a
//! stray `{:?}` in a log line or an error cannot leak what they hold.

use std::fmt;

use zeroize::Zeroize;

/// Text that must not be printed, such as a token or a client secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps `value`, taking ownership so no unredacted copy remains with the caller.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret text, for the single place that must send it somewhere.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretString(<redacted, {} bytes>)", self.0.len())
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// Bytes that must not be printed: a rendered secret on its way into the volume.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps `value`.
    pub fn new(value: Vec<u8>) -> Self {
        Self(value)
    }

    /// The bytes, for the response that carries them to the driver.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Gives up the bytes to the response message, which takes over their lifetime.
    pub fn into_inner(mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<redacted, {} bytes>)", self.0.len())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "hunter2-super-secret-value";

    #[test]
    fn debug_never_shows_the_value() {
        let text = SecretString::new(FIXTURE.to_owned());
        let bytes = SecretBytes::new(FIXTURE.as_bytes().to_vec());

        let printed = format!("{text:?} {bytes:?} {text:#?} {bytes:#?}");

        assert!(!printed.contains(FIXTURE), "{printed}");
        assert!(printed.contains("redacted"));
    }

    #[test]
    fn expose_gives_the_value_back() {
        let text = SecretString::new(FIXTURE.to_owned());
        assert_eq!(text.expose(), FIXTURE);
        assert_eq!(SecretBytes::new(vec![1, 2]).into_inner(), vec![1, 2]);
    }
}
