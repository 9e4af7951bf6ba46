//! RS256 JSON Web Tokens as the doubles exchange them: the OIDC issuer signs service-account
//! tokens, Entra ID checks them against the issuer's JWKS and signs access tokens, and Key
//! Vault checks those against Entra's key.
//!
//! Only what the doubles need: RSA keys, compact serialisation, public JWKs, and
//! signature checks. Claims are plain `serde_json::Value`s so tests can sign odd tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1v15::{Signature, SigningKey as Pkcs1SigningKey, VerifyingKey};
use rsa::signature::{SignatureEncoding as _, Signer as _, Verifier as _};
use rsa::traits::PublicKeyParts as _;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use sha2::Sha256;

/// An RSA key that signs tokens with RS256.
pub struct SigningKey {
    kid: String,
    signer: Pkcs1SigningKey<Sha256>,
    public: RsaPublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a 2048-bit key with key id `kid`.
    pub fn generate(kid: impl Into<String>) -> SigningKey {
        let mut rng = rsa::rand_core::OsRng;
        let private = RsaPrivateKey::new(&mut rng, 2048).expect("generate an RSA key");
        let public = private.to_public_key();
        SigningKey {
            kid: kid.into(),
            signer: Pkcs1SigningKey::new(private),
            public,
        }
    }

    /// The key id, sent as the `kid` header of every token this key signs.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half.
    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public
    }

    /// Signs `claims` with header `{"alg":"RS256","kid":…,"typ":"JWT"}`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }

    /// Signs `claims` under an arbitrary `header` (the signature is RS256 whatever it says).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.signer.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_vec()))
    }

    /// The public JSON Web Key: `kty`, `use`, `kid`, `alg`, `n`, `e`.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(self.public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(self.public.e().to_bytes_be()),
        })
    }
}

/// Why a token could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts of JSON objects.
    Malformed,
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the token is not a well-formed JWT")
    }
}

impl std::error::Error for JwtError {}

/// A token split into its parts, signature not yet checked.
#[derive(Debug, Clone)]
pub struct Jwt {
    /// The decoded header.
    pub header: Value,
    /// The decoded claims.
    pub claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jwt {
    /// Splits and decodes a compact token without checking its signature.
    pub fn decode(token: &str) -> Result<Jwt, JwtError> {
        let mut parts = token.trim().split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let object = |part: &str| -> Result<Value, JwtError> {
            let bytes = URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| JwtError::Malformed)?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
            if value.is_object() {
                Ok(value)
            } else {
                Err(JwtError::Malformed)
            }
        };
        Ok(Jwt {
            header: object(header)?,
            claims: object(claims)?,
            signing_input: format!("{header}.{claims}"),
            signature: URL_SAFE_NO_PAD
                .decode(signature)
                .map_err(|_| JwtError::Malformed)?,
        })
    }

    /// The string claim `name`, if present.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// The integer claim `name`, if present.
    pub fn claim_i64(&self, name: &str) -> Option<i64> {
        self.claims.get(name).and_then(Value::as_i64)
    }

    /// The `aud` claim as a list, whether the token sent a string or an array.
    pub fn audiences(&self) -> Vec<String> {
        match self.claims.get("aud") {
            Some(Value::String(one)) => vec![one.clone()],
            Some(Value::Array(many)) => many
                .iter()
                .filter_map(|aud| aud.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the header says RS256 and the signature verifies with `key`.
    pub fn verify(&self, key: &RsaPublicKey) -> bool {
        if self.header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return false;
        }
        let Ok(signature) = Signature::try_from(self.signature.as_slice()) else {
            return false;
        };
        VerifyingKey::<Sha256>::new(key.clone())
            .verify(self.signing_input.as_bytes(), &signature)
            .is_ok()
    }

    /// Verifies against the key of `jwks` (a JWK Set) whose `kid` matches the header's.
    pub fn verify_with_jwks(&self, jwks: &Value) -> bool {
        let kid = self.header.get("kid").and_then(Value::as_str);
        let keys = jwks.get("keys").and_then(Value::as_array);
        keys.into_iter()
            .flatten()
            .filter(|jwk| kid.is_none() || jwk.get("kid").and_then(Value::as_str) == kid)
            .filter_map(public_key_from_jwk)
            .any(|key| self.verify(&key))
    }
}

/// Reads an RSA public key from a JWK's `n` and `e`.
pub fn public_key_from_jwk(jwk: &Value) -> Option<RsaPublicKey> {
    if jwk.get("kty").and_then(Value::as_str) != Some("RSA") {
        return None;
    }
    let member = |name: &str| {
        let text = jwk.get(name)?.as_str()?;
        Some(BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(text).ok()?))
    };
    RsaPublicKey::new(member("n")?, member("e")?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not() {
        let key = SigningKey::generate("k1");
        let other = SigningKey::generate("k1");
        let token = key.sign(&json!({"sub": "me", "aud": ["a", "b"]}));

        let jwt = Jwt::decode(&token).unwrap();
        assert_eq!(jwt.claim_str("sub"), Some("me"));
        assert_eq!(jwt.audiences(), ["a", "b"]);
        assert!(jwt.verify(key.public_key()));
        assert!(jwt.verify_with_jwks(&json!({"keys": [key.jwk()]})));
        assert!(!jwt.verify(other.public_key()));
        assert!(!jwt.verify_with_jwks(&json!({"keys": [other.jwk()]})));

        let (head, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{head}.{}", URL_SAFE_NO_PAD.encode([0u8; 256]));
        assert!(!Jwt::decode(&forged).unwrap().verify(key.public_key()));
        assert_eq!(Jwt::decode("a.b").unwrap_err(), JwtError::Malformed);
    }
}
