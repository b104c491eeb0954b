//! JWT access tokens signed with EdDSA (Ed25519), with a `kid` header so keys can rotate.
//!
//! A [`KeySet`] holds one *active* signing key and any number of *verification-only* keys, each
//! addressed by its key id. Rotation = generate a new active key and keep the previous public key
//! for verification until every token it signed has expired (15 minutes by default), then drop it.
//!
//! The key id is the first 16 characters of the key's RFC 7638 JWK thumbprint, so it is derived
//! from the key itself: a PEM read back from config gets the same `kid` on every node and after
//! every restart, and no separate kid has to be stored next to the PEM.
//!
//! [`KeySet::verify`] only accepts `alg: EdDSA` with a known `kid`; everything else (`none`,
//! HS256 "algorithm confusion", other asymmetric algorithms, a missing or unknown `kid`, a bad
//! signature, an expired token, malformed input) is refused with a [`TokenError`].

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::util::{random_bytes, sha256, unix_now};

/// Default lifetime of an access token.
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);

/// Clock skew tolerated on `exp`, in seconds. Kept small on purpose: an access token is
/// short-lived, and a generous leeway would quietly extend every stolen token.
pub const LEEWAY_SECS: u64 = 5;

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410 §7); the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// SubjectPublicKeyInfo prefix of an Ed25519 public key (RFC 8410 §4); the 32-byte key follows.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A platform role (DOMAIN.md "Parties and roles"). Serialised in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including settings, users, credit limits and dead-letter jobs.
    Admin,
    /// Platform staff: review held orders, manage vendors and retailers.
    Operator,
    /// A wholesaler's user; tenant = the vendor id.
    Vendor,
    /// A shop's user; tenant = the retailer id.
    Retailer,
}

impl Role {
    /// The lower-case name used in tokens and database columns.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Vendor => "vendor",
            Role::Retailer => "retailer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`Role::from_str`]: the text is not one of the four role names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role")]
pub struct UnknownRole;

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "vendor" => Ok(Role::Vendor),
            "retailer" => Ok(Role::Retailer),
            _ => Err(UnknownRole),
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The user's role.
    pub role: Role,
    /// The retailer or vendor the user belongs to; `None` for admins and operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Uuid>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Unique token id (UUID v7), for audit logs and an optional deny-list.
    pub jti: Uuid,
}

/// Why a token could not be issued or verified, or a key could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed JWT (segments, base64, JSON or claim types).
    #[error("malformed token")]
    Malformed,
    /// The header has no `kid`.
    #[error("token has no key id")]
    MissingKid,
    /// The `kid` names no key of this key set (retired or foreign).
    #[error("unknown key id")]
    UnknownKid,
    /// The header's `alg` is not `EdDSA` (e.g. `none` or `HS256`).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The signature does not match the header and payload under the key named by `kid`.
    #[error("invalid signature")]
    InvalidSignature,
    /// `exp` is in the past (beyond [`LEEWAY_SECS`]).
    #[error("token expired")]
    Expired,
    /// A PEM could not be parsed as an Ed25519 key.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// Signing failed inside the crypto provider.
    #[error("signing failed")]
    Signing,
}

/// The active key: private half for signing, public half for verifying.
struct SigningKey {
    kid: String,
    /// PKCS#8 v1 DER (48 bytes). Kept to export it again as PEM.
    pkcs8: Vec<u8>,
    encoding: EncodingKey,
    public: [u8; 32],
}

/// A public key accepted for verification.
struct VerifyingKey {
    public: [u8; 32],
    decoding: DecodingKey,
}

impl VerifyingKey {
    fn new(public: [u8; 32]) -> Self {
        Self {
            public,
            decoding: DecodingKey::from_ed_der(&public),
        }
    }
}

impl SigningKey {
    fn from_seed(seed: &[u8; 32]) -> Result<Self, TokenError> {
        let mut pkcs8 = Vec::with_capacity(48);
        pkcs8.extend_from_slice(&PKCS8_ED25519_PREFIX);
        pkcs8.extend_from_slice(seed);
        let encoding = EncodingKey::from_ed_der(&pkcs8);
        // jsonwebtoken derives the public half through its crypto provider (aws-lc-rs).
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA)
            .map_err(|_| TokenError::InvalidKey("not an Ed25519 private key"))?;
        let AlgorithmParameters::OctetKeyPair(okp) = jwk.algorithm else {
            return Err(TokenError::InvalidKey("not an Ed25519 private key"));
        };
        let public: [u8; 32] = URL_SAFE_NO_PAD
            .decode(okp.x.as_bytes())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(TokenError::InvalidKey("bad derived public key"))?;
        Ok(Self {
            kid: kid_for(&public),
            pkcs8,
            encoding,
            public,
        })
    }
}

/// The signing key and the verification keys of this node.
///
/// Cheap to share behind an `Arc`; signing and verifying take `&self`.
pub struct KeySet {
    active: SigningKey,
    verifiers: HashMap<String, VerifyingKey>,
    access_ttl: Duration,
}

impl fmt::Debug for KeySet {
    // Never print key material, only key ids.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&String> = self.verifiers.keys().collect();
        kids.sort();
        f.debug_struct("KeySet")
            .field("active_kid", &self.active.kid)
            .field("verification_kids", &kids)
            .field("access_ttl", &self.access_ttl)
            .finish()
    }
}

impl KeySet {
    /// Generates a new random Ed25519 signing key. Use for the embedded (single-node) mode on
    /// first start, then persist [`KeySet::to_pem`] so tokens survive restarts.
    pub fn generate() -> Result<Self, TokenError> {
        Ok(Self::with_active(SigningKey::from_seed(
            &random_bytes::<32>(),
        )?))
    }

    /// Loads the active signing key from a PKCS#8 `PRIVATE KEY` PEM (as written by
    /// [`KeySet::to_pem`] or `openssl genpkey -algorithm ed25519`).
    pub fn from_pem(private_pem: &str) -> Result<Self, TokenError> {
        let der = pem_body(private_pem, "PRIVATE KEY")?;
        let seed = der
            .strip_prefix(&PKCS8_ED25519_PREFIX[..])
            .and_then(|s| <[u8; 32]>::try_from(s).ok())
            .ok_or(TokenError::InvalidKey("not an Ed25519 PKCS#8 v1 key"))?;
        Ok(Self::with_active(SigningKey::from_seed(&seed)?))
    }

    fn with_active(active: SigningKey) -> Self {
        let mut verifiers = HashMap::new();
        verifiers.insert(active.kid.clone(), VerifyingKey::new(active.public));
        Self {
            active,
            verifiers,
            access_ttl: DEFAULT_ACCESS_TTL,
        }
    }

    /// Sets the lifetime of tokens made by [`KeySet::issue`] (default [`DEFAULT_ACCESS_TTL`]).
    #[must_use]
    pub fn with_access_ttl(mut self, ttl: Duration) -> Self {
        self.access_ttl = ttl;
        self
    }

    /// The PKCS#8 `PRIVATE KEY` PEM of the active key. Secret: store it like a password.
    pub fn to_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.active.pkcs8)
    }

    /// The SubjectPublicKeyInfo `PUBLIC KEY` PEM of the active key, for other nodes' verification
    /// lists after a rotation.
    pub fn public_pem(&self) -> String {
        let mut der = SPKI_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&self.active.public);
        pem_encode("PUBLIC KEY", &der)
    }

    /// Adds a verification-only key from a `PUBLIC KEY` PEM and returns its key id.
    pub fn add_verification_pem(&mut self, public_pem: &str) -> Result<String, TokenError> {
        let der = pem_body(public_pem, "PUBLIC KEY")?;
        let public = der
            .strip_prefix(&SPKI_ED25519_PREFIX[..])
            .and_then(|s| <[u8; 32]>::try_from(s).ok())
            .ok_or(TokenError::InvalidKey("not an Ed25519 public key"))?;
        let kid = kid_for(&public);
        self.verifiers
            .insert(kid.clone(), VerifyingKey::new(public));
        Ok(kid)
    }

    /// Removes a verification key (not the active one). Returns whether it was present.
    pub fn remove_verification_key(&mut self, kid: &str) -> bool {
        kid != self.active.kid && self.verifiers.remove(kid).is_some()
    }

    /// Makes a fresh key the active one; the previous key stays accepted for verification.
    pub fn rotate(&mut self) -> Result<(), TokenError> {
        let next = SigningKey::from_seed(&random_bytes::<32>())?;
        self.verifiers
            .insert(next.kid.clone(), VerifyingKey::new(next.public));
        self.active = next;
        Ok(())
    }

    /// The key id of the active signing key.
    pub fn active_kid(&self) -> &str {
        &self.active.kid
    }

    /// The key ids accepted by [`KeySet::verify`], sorted.
    pub fn verification_kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.verifiers.keys().cloned().collect();
        kids.sort();
        kids
    }

    /// The public keys as a JWK Set (`{"keys":[…]}`), e.g. for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        let mut kids: Vec<&String> = self.verifiers.keys().collect();
        kids.sort();
        let keys: Vec<serde_json::Value> = kids
            .into_iter()
            .filter_map(|kid| {
                let key = self.verifiers.get(kid)?;
                Some(serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(key.public),
                    "kid": kid,
                    "alg": "EdDSA",
                    "use": "sig",
                }))
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Issues an access token for a user, valid for the configured TTL from now.
    /// Returns the compact JWT and the claims it carries.
    pub fn issue(
        &self,
        user: Uuid,
        role: Role,
        tenant: Option<Uuid>,
    ) -> Result<(String, Claims), TokenError> {
        let iat = unix_now();
        let claims = Claims {
            sub: user,
            role,
            tenant,
            iat,
            exp: iat.saturating_add(self.access_ttl.as_secs()),
            jti: Uuid::now_v7(),
        };
        let token = self.sign(&claims)?;
        Ok((token, claims))
    }

    /// Signs arbitrary claims with the active key (header `alg: EdDSA`, `kid`). Prefer
    /// [`KeySet::issue`]; this exists for tests and for re-issuing with explicit times.
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.active.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.active.encoding)
            .map_err(|_| TokenError::Signing)
    }

    /// Verifies a compact JWT and returns its claims.
    ///
    /// The header is checked *before* any key is chosen: `alg` must be exactly `EdDSA` and `kid`
    /// must name a key of this set, so the token can never pick its own algorithm or key.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = peek_header(token)?;
        if header.alg != "EdDSA" {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let kid = header.kid.ok_or(TokenError::MissingKid)?;
        let key = self.verifiers.get(&kid).ok_or(TokenError::UnknownKid)?;

        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::InvalidSignature,
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::MissingAlgorithm
                | ErrorKind::UnsupportedAlgorithm => TokenError::AlgorithmNotAllowed,
                _ => TokenError::Malformed,
            })
    }
}

/// The two header fields we look at, read without trusting anything else in the token.
#[derive(Deserialize)]
struct PeekedHeader {
    alg: String,
    kid: Option<String>,
}

fn peek_header(token: &str) -> Result<PeekedHeader, TokenError> {
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let json = URL_SAFE_NO_PAD
        .decode(head.as_bytes())
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
}

/// First 16 characters of the RFC 7638 thumbprint of the Ed25519 public JWK.
fn kid_for(public: &[u8; 32]) -> String {
    // RFC 7638 §3.2: required members only, lexicographic order, no whitespace.
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public)
    );
    let mut kid = URL_SAFE_NO_PAD.encode(sha256(canonical.as_bytes()));
    kid.truncate(16);
    kid
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_body(pem: &str, label: &str) -> Result<Vec<u8>, TokenError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .ok_or(TokenError::InvalidKey("missing PEM header"))?
        + begin.len();
    let stop = pem[start..]
        .find(&end)
        .ok_or(TokenError::InvalidKey("missing PEM footer"))?
        + start;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| TokenError::InvalidKey("bad PEM base64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(json.to_string())
    }

    fn claims_at(iat: u64, exp: u64) -> Claims {
        Claims {
            sub: Uuid::now_v7(),
            role: Role::Retailer,
            tenant: Some(Uuid::now_v7()),
            exp,
            iat,
            jti: Uuid::now_v7(),
        }
    }

    #[test]
    fn issue_and_verify_round_trip() {
        let keys = KeySet::generate().unwrap();
        let user = Uuid::now_v7();
        let tenant = Uuid::now_v7();
        let (token, claims) = keys.issue(user, Role::Vendor, Some(tenant)).unwrap();
        assert_eq!(claims.exp - claims.iat, 15 * 60);
        let got = keys.verify(&token).unwrap();
        assert_eq!(got, claims);
        assert_eq!(got.sub, user);
        assert_eq!(got.role, Role::Vendor);
        assert_eq!(got.tenant, Some(tenant));
        // The header carries alg EdDSA and our kid.
        let header = peek_header(&token).unwrap();
        assert_eq!(header.alg, "EdDSA");
        assert_eq!(header.kid.as_deref(), Some(keys.active_kid()));
    }

    #[test]
    fn tenant_is_optional() {
        let keys = KeySet::generate().unwrap();
        let (token, _) = keys.issue(Uuid::now_v7(), Role::Admin, None).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert!(json.get("tenant").is_none());
        assert_eq!(json["role"], "admin");
        assert_eq!(keys.verify(&token).unwrap().tenant, None);
    }

    #[test]
    fn pem_round_trip_keeps_kid_and_verifies_old_tokens() {
        let keys = KeySet::generate().unwrap();
        let (token, _) = keys.issue(Uuid::now_v7(), Role::Operator, None).unwrap();
        let pem = keys.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let reloaded = KeySet::from_pem(&pem).unwrap();
        assert_eq!(reloaded.active_kid(), keys.active_kid());
        assert_eq!(reloaded.to_pem(), pem);
        assert!(reloaded.verify(&token).is_ok());
        assert_eq!(keys.active_kid().len(), 16);
    }

    #[test]
    fn from_pem_rejects_garbage() {
        assert!(matches!(
            KeySet::from_pem("not a pem"),
            Err(TokenError::InvalidKey(_))
        ));
        let wrong = pem_encode("PRIVATE KEY", &[1, 2, 3]);
        assert!(matches!(
            KeySet::from_pem(&wrong),
            Err(TokenError::InvalidKey(_))
        ));
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_until_key_removed() {
        let mut keys = KeySet::generate().unwrap();
        let old_kid = keys.active_kid().to_owned();
        let (old_token, _) = keys.issue(Uuid::now_v7(), Role::Retailer, None).unwrap();
        keys.rotate().unwrap();
        assert_ne!(keys.active_kid(), old_kid);
        let (new_token, _) = keys.issue(Uuid::now_v7(), Role::Retailer, None).unwrap();
        assert!(keys.verify(&old_token).is_ok());
        assert!(keys.verify(&new_token).is_ok());
        assert_eq!(keys.verification_kids().len(), 2);
        let active = keys.active_kid().to_owned();
        assert!(!keys.remove_verification_key(&active));
        assert!(keys.remove_verification_key(&old_kid));
        assert_eq!(keys.verify(&old_token), Err(TokenError::UnknownKid));
        assert!(keys.verify(&new_token).is_ok());
    }

    #[test]
    fn other_node_verifies_with_public_pem() {
        let signer = KeySet::generate().unwrap();
        let mut other = KeySet::generate().unwrap();
        let (token, _) = signer.issue(Uuid::now_v7(), Role::Admin, None).unwrap();
        assert_eq!(other.verify(&token), Err(TokenError::UnknownKid));
        let kid = other.add_verification_pem(&signer.public_pem()).unwrap();
        assert_eq!(kid, signer.active_kid());
        assert!(other.verify(&token).is_ok());
    }

    #[test]
    fn jwks_lists_public_keys_only() {
        let keys = KeySet::generate().unwrap();
        let jwks = keys.jwks();
        let key = &jwks["keys"][0];
        assert_eq!(key["kid"], keys.active_kid());
        assert_eq!(key["kty"], "OKP");
        assert!(key.get("d").is_none());
        // The published JWK verifies our tokens (as a third party would use it).
        let jwk: Jwk = serde_json::from_value(key.clone()).unwrap();
        let decoding = DecodingKey::from_jwk(&jwk).unwrap();
        let (token, _) = keys.issue(Uuid::now_v7(), Role::Admin, None).unwrap();
        let mut v = Validation::new(Algorithm::EdDSA);
        v.validate_aud = false;
        assert!(jsonwebtoken::decode::<Claims>(&token, &decoding, &v).is_ok());
    }

    #[test]
    fn debug_does_not_leak_private_key() {
        let keys = KeySet::generate().unwrap();
        let dbg = format!("{keys:?}");
        assert!(dbg.contains(keys.active_kid()));
        let pem = keys.to_pem();
        let body = pem.lines().nth(1).unwrap();
        assert!(!dbg.contains(body));
    }

    #[test]
    fn refuses_missing_kid() {
        let keys = KeySet::generate().unwrap();
        let claims = claims_at(unix_now(), unix_now() + 60);
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &keys.active.encoding,
        )
        .unwrap();
        assert_eq!(keys.verify(&token), Err(TokenError::MissingKid));
    }

    #[test]
    fn refuses_unknown_kid() {
        let keys = KeySet::generate().unwrap();
        let claims = claims_at(unix_now(), unix_now() + 60);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("nope".into());
        let token = jsonwebtoken::encode(&header, &claims, &keys.active.encoding).unwrap();
        assert_eq!(keys.verify(&token), Err(TokenError::UnknownKid));
    }

    #[test]
    fn refuses_wrong_key_under_our_kid() {
        let keys = KeySet::generate().unwrap();
        let attacker = KeySet::generate().unwrap();
        let claims = claims_at(unix_now(), unix_now() + 60);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys.active_kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, &attacker.active.encoding).unwrap();
        assert_eq!(keys.verify(&token), Err(TokenError::InvalidSignature));
    }

    #[test]
    fn refuses_tampered_payload() {
        let keys = KeySet::generate().unwrap();
        let (token, claims) = keys.issue(Uuid::now_v7(), Role::Retailer, None).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut forged = serde_json::to_value(&claims).unwrap();
        forged["role"] = "admin".into();
        parts[1] = b64(&forged);
        assert_eq!(
            keys.verify(&parts.join(".")),
            Err(TokenError::InvalidSignature)
        );
        // Flipping one signature character is caught as well.
        let mut sig = parts[2].clone().into_bytes();
        sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
        let tampered = format!(
            "{}.{}.{}",
            token.split('.').next().unwrap(),
            token.split('.').nth(1).unwrap(),
            String::from_utf8(sig).unwrap()
        );
        assert_eq!(keys.verify(&tampered), Err(TokenError::InvalidSignature));
    }

    #[test]
    fn refuses_expired_beyond_leeway() {
        let keys = KeySet::generate().unwrap();
        let now = unix_now();
        let expired = keys.sign(&claims_at(now - 1000, now - 30)).unwrap();
        assert_eq!(keys.verify(&expired), Err(TokenError::Expired));
        // Within the few seconds of leeway it still passes (clock skew between nodes).
        let skewed = keys.sign(&claims_at(now - 900, now - 1)).unwrap();
        assert!(keys.verify(&skewed).is_ok());
    }

    #[test]
    fn refuses_alg_none() {
        let keys = KeySet::generate().unwrap();
        let claims = serde_json::to_value(claims_at(unix_now(), unix_now() + 60)).unwrap();
        let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": keys.active_kid()});
        for token in [
            format!("{}.{}.", b64(&header), b64(&claims)),
            format!("{}.{}", b64(&header), b64(&claims)),
        ] {
            assert!(keys.verify(&token).is_err(), "{token}");
        }
        let token = format!("{}.{}.", b64(&header), b64(&claims));
        assert_eq!(keys.verify(&token), Err(TokenError::AlgorithmNotAllowed));
    }

    #[test]
    fn refuses_hs256_algorithm_confusion() {
        // The classic attack: HMAC-sign with the *public* key as the secret, hoping the verifier
        // feeds its public key to HMAC.
        let keys = KeySet::generate().unwrap();
        let claims = claims_at(unix_now(), unix_now() + 60);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(keys.active_kid().to_owned());
        for secret in [keys.public_pem().into_bytes(), keys.active.public.to_vec()] {
            let token =
                jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
            assert_eq!(keys.verify(&token), Err(TokenError::AlgorithmNotAllowed));
        }
    }

    #[test]
    fn refuses_header_alg_swapped_to_other_asymmetric() {
        let keys = KeySet::generate().unwrap();
        let (token, _) = keys.issue(Uuid::now_v7(), Role::Retailer, None).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let header = serde_json::json!({"alg": "ES256", "kid": keys.active_kid()});
        let swapped = format!("{}.{}.{}", b64(&header), parts[1], parts[2]);
        assert_eq!(keys.verify(&swapped), Err(TokenError::AlgorithmNotAllowed));
    }

    #[test]
    fn refuses_malformed() {
        let keys = KeySet::generate().unwrap();
        for bad in ["", "abc", "a.b", "a.b.c", "a.b.c.d", "!!!.###.$$$"] {
            assert_eq!(keys.verify(bad), Err(TokenError::Malformed), "{bad}");
        }
        // Valid header and signature shape, payload not our claims.
        let header = serde_json::json!({"alg": "EdDSA", "kid": keys.active_kid()});
        let token = format!(
            "{}.{}.AAAA",
            b64(&header),
            b64(&serde_json::json!({"x": 1}))
        );
        assert!(keys.verify(&token).is_err());
    }

    #[test]
    fn role_names_round_trip() {
        for role in [Role::Admin, Role::Operator, Role::Vendor, Role::Retailer] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                serde_json::Value::from(role.as_str())
            );
        }
        assert_eq!("root".parse::<Role>(), Err(UnknownRole));
    }
}
