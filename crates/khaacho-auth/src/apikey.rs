//! API keys for machine clients (vendor integrations, ERP connectors).
//!
//! Format: `kh_live_<prefix>_<secret>` where
//! - `kh_live_` marks a Khaacho production key (and lets secret scanners recognise leaks),
//! - `<prefix>` is 8 characters of `[a-z0-9]`, stored in clear and shown in the admin UI; it is
//!   the lookup key (unique index) and is not secret,
//! - `<secret>` is 32 characters of `[a-z0-9]` (≈165 bits of entropy).
//!
//! The full key is shown to its owner once, at creation. The database keeps only the prefix and
//! the SHA-256 of the *whole* key; [`verify`] recomputes the hash and compares in constant time.
//! A fast hash is fine: the secret is random, there is nothing to brute-force.

use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::tokens::Role;
use crate::util::sha256;

/// The fixed start of every key.
pub const KEY_PREFIX: &str = "kh_live_";
/// Length of the visible lookup prefix.
pub const PREFIX_LEN: usize = 8;
/// Length of the secret part.
pub const SECRET_LEN: usize = 32;
/// Length of a whole key: `kh_live_` + 8 + `_` + 32.
pub const KEY_LEN: usize = KEY_PREFIX.len() + PREFIX_LEN + 1 + SECRET_LEN;

const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// What a key may do: act as `role` within `tenant` (the vendor or retailer it belongs to).
/// The app checks it exactly like a user's role and tenant from an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The role the key acts as.
    pub role: Role,
    /// The retailer or vendor it is limited to; `None` only for platform keys.
    pub tenant: Option<Uuid>,
}

/// A freshly generated key.
#[derive(Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// The whole key. Show once, never store, never log.
    pub key: String,
    /// The visible lookup prefix (store in `api_keys.prefix`).
    pub prefix: String,
    /// SHA-256 of the whole key (store in `api_keys.key_hash`).
    pub hash: [u8; 32],
}

impl std::fmt::Debug for NewApiKey {
    // The key itself must not reach logs through a stray `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Why a presented key was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// Not of the form `kh_live_<8>_<32>` over `[a-z0-9]`.
    #[error("malformed API key")]
    Malformed,
}

/// Generates a new key. If inserting it hits the unique index on `prefix` (about one chance in
/// 2.8·10¹² per existing key), generate again.
pub fn generate() -> NewApiKey {
    let prefix = random_string(PREFIX_LEN);
    let secret = random_string(SECRET_LEN);
    let key = format!("{KEY_PREFIX}{prefix}_{secret}");
    let hash = hash(&key);
    NewApiKey { key, prefix, hash }
}

/// Checks the shape of a presented key and returns its lookup prefix.
pub fn parse_prefix(presented: &str) -> Result<&str, ApiKeyError> {
    let rest = presented
        .strip_prefix(KEY_PREFIX)
        .ok_or(ApiKeyError::Malformed)?;
    let (prefix, secret) = rest.split_once('_').ok_or(ApiKeyError::Malformed)?;
    let valid = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| ALPHABET.contains(&b));
    if valid(prefix, PREFIX_LEN) && valid(secret, SECRET_LEN) {
        Ok(prefix)
    } else {
        Err(ApiKeyError::Malformed)
    }
}

/// SHA-256 of a whole key.
pub fn hash(key: &str) -> [u8; 32] {
    sha256(key.as_bytes())
}

/// Whether `presented` hashes to `stored_hash`, compared in constant time. Takes a slice so a
/// `BYTEA`/`BLOB` column can be passed as is; a hash of the wrong length never matches.
pub fn verify(presented: &str, stored_hash: &[u8]) -> bool {
    bool::from(hash(presented).as_slice().ct_eq(stored_hash))
}

fn random_string(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in crate::util::random_bytes::<32>() {
            // 252 = 7 · 36: rejecting the top 4 byte values keeps the alphabet unbiased.
            if b < 252 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b % 36)]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_has_documented_format() {
        let k = generate();
        assert_eq!(k.key.len(), KEY_LEN);
        assert!(k.key.starts_with("kh_live_"));
        assert_eq!(parse_prefix(&k.key), Ok(k.prefix.as_str()));
        assert_eq!(&k.key[8..16], k.prefix);
        assert_eq!(&k.key[16..17], "_");
        assert_eq!(k.hash, hash(&k.key));
        assert!(!format!("{k:?}").contains(&k.key[17..]));
    }

    #[test]
    fn keys_are_unique() {
        let a = generate();
        let b = generate();
        assert_ne!(a.key, b.key);
        assert_ne!(a.prefix, b.prefix);
    }

    #[test]
    fn verify_accepts_only_the_exact_key() {
        let k = generate();
        assert!(verify(&k.key, &k.hash));
        let mut wrong = k.key.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == 'a' { 'b' } else { 'a' });
        assert!(!verify(&wrong, &k.hash));
        assert!(!verify(&k.key, &k.hash[..31]));
        assert!(!verify(&k.key, &[]));
        assert!(!verify(&generate().key, &k.hash));
    }

    #[test]
    fn parse_rejects_malformed() {
        let k = generate();
        let upper = k.key.to_uppercase();
        let test_env = k.key.replace("kh_live_", "kh_test_");
        for bad in [
            "",
            "kh_live_",
            "kh_live_abcdefgh",
            "kh_live_abcdefgh_",
            "kh_live_abcdefg_0123456789abcdef0123456789abcdef",
            "kh_live_abcdefgh_0123456789abcdef0123456789abcde",
            "kh_live_abcdefgh_0123456789abcdef0123456789abcdef0",
            "kh_live_abcdefgh_0123456789abcdef0123456789abcde!",
            upper.as_str(),
            test_env.as_str(),
        ] {
            assert_eq!(parse_prefix(bad), Err(ApiKeyError::Malformed), "{bad}");
        }
        assert!(parse_prefix("kh_live_abcdefgh_0123456789abcdef0123456789abcdef").is_ok());
    }

    #[test]
    fn alphabet_is_roughly_uniform() {
        let mut counts = [0u32; 36];
        for _ in 0..200 {
            for b in random_string(SECRET_LEN).bytes() {
                let i = ALPHABET.iter().position(|&a| a == b).unwrap();
                counts[i] += 1;
            }
        }
        // 6400 draws, 177.8 expected per symbol.
        assert!(
            counts.iter().all(|&c| (100..270).contains(&c)),
            "{counts:?}"
        );
    }
}
