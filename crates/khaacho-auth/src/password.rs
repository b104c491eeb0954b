//! argon2id password hashing and verification (PHC strings).
//!
//! Every function here is deliberately slow (tens of milliseconds of CPU and 19 MiB of memory):
//! **call them from `tokio::task::spawn_blocking`**, never directly on an async worker thread.
//!
//! To keep login timing independent of whether the account exists, call [`dummy_verify`] when
//! the user lookup finds nothing, so both paths spend one argon2id computation.

use std::sync::LazyLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

use crate::util::random_bytes;

/// Memory cost in KiB. With [`T_COST`] = 2 and [`P_COST`] = 1 this is the OWASP Password Storage
/// Cheat Sheet's first argon2id configuration (m = 19 MiB, t = 2, p = 1), its stated minimum.
pub const M_COST_KIB: u32 = 19 * 1024;
/// Number of passes (OWASP minimum for 19 MiB).
pub const T_COST: u32 = 2;
/// Degree of parallelism (OWASP: 1; more lanes would only add threads per login).
pub const P_COST: u32 = 1;
/// Salt length in bytes (the argon2/PHC recommendation).
pub const SALT_LEN: usize = 16;
/// Longest accepted password in bytes: bounds the work an attacker can request and matches no
/// real password manager's limit.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A valid PHC hash with the current parameters, of a password nobody knows. Verifying against
/// it costs exactly as much as verifying a real user's hash.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$NzbW8ibLcQW1dzZ3lUj7Vg$bdl2hVY5e41O2ktaWCIKE5GoxM9geyYUsUsSDPwGX/Q";

/// Why hashing or verification could not run (a wrong password is *not* an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Longer than [`MAX_PASSWORD_BYTES`].
    #[error("password too long")]
    TooLong,
    /// The stored string is not a PHC argon2 hash.
    #[error("stored password hash is malformed")]
    MalformedHash,
    /// argon2 refused the parameters or input (should not happen with our constants).
    #[error("password hashing failed")]
    Hashing,
}

static HASHER: LazyLock<Option<Argon2<'static>>> = LazyLock::new(|| {
    Params::new(M_COST_KIB, T_COST, P_COST, None)
        .ok()
        .map(|p| Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
});

fn hasher() -> Result<&'static Argon2<'static>, PasswordError> {
    HASHER.as_ref().ok_or(PasswordError::Hashing)
}

/// Hashes a password with argon2id and a fresh random salt. Returns the PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) to store in `users.password_hash`.
///
/// CPU-heavy: run in `spawn_blocking`.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    let salt = random_bytes::<SALT_LEN>();
    let hash: PasswordHash = hasher()?
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|_| PasswordError::Hashing)?;
    Ok(hash.to_string())
}

/// Checks a password against a stored PHC string. `Ok(false)` for a wrong password; the
/// comparison of the derived hash is constant-time. The parameters stored in the hash are used,
/// so hashes made with older parameters keep verifying (see [`needs_rehash`]).
///
/// CPU-heavy: run in `spawn_blocking`.
pub fn verify(password: &str, stored_hash: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(stored_hash).map_err(|_| PasswordError::MalformedHash)?;
    if password.len() > MAX_PASSWORD_BYTES {
        // Still spend the same time, so the length check does not become an oracle.
        dummy_verify(password);
        return Ok(false);
    }
    match hasher()?.verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(_) => Err(PasswordError::MalformedHash),
    }
}

/// Spends the same time as one [`verify`] of a real hash and always fails. Call it when the
/// login's user lookup found no user (or a disabled one), then answer exactly as for a wrong
/// password, so response timing does not reveal which accounts exist.
///
/// CPU-heavy: run in `spawn_blocking`.
pub fn dummy_verify(password: &str) {
    if let (Ok(parsed), Ok(h)) = (PasswordHash::new(DUMMY_HASH), hasher()) {
        // Truncate instead of skipping, so an over-long input costs the same as a normal one.
        let bytes = password.as_bytes();
        let input = &bytes[..bytes.len().min(MAX_PASSWORD_BYTES)];
        let _ = h.verify_password(input, &parsed);
    }
}

/// Whether a stored hash was made with other parameters than the current constants; if so,
/// re-hash the password (just verified) and update the stored value after a successful login.
pub fn needs_rehash(stored_hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored_hash) else {
        return true;
    };
    let current = format!("m={M_COST_KIB},t={T_COST},p={P_COST}");
    parsed.algorithm.as_str() != "argon2id"
        || parsed.version != Some(0x13)
        || parsed.params.to_string() != current
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn hash_then_verify() {
        let h = hash("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_eq!(verify("correct horse battery staple", &h), Ok(true));
        assert_eq!(verify("correct horse battery stapler", &h), Ok(false));
        assert_eq!(verify("", &h), Ok(false));
        assert!(!needs_rehash(&h));
    }

    #[test]
    fn salts_differ() {
        assert_ne!(hash("same").unwrap(), hash("same").unwrap());
    }

    #[test]
    fn unicode_passwords() {
        let h = hash("पासवर्ड-नेपाल").unwrap();
        assert_eq!(verify("पासवर्ड-नेपाल", &h), Ok(true));
        assert_eq!(verify("पासवर्ड-नेपा", &h), Ok(false));
    }

    #[test]
    fn malformed_hash_is_an_error_not_false() {
        assert_eq!(verify("x", "plaintext"), Err(PasswordError::MalformedHash));
        assert_eq!(verify("x", ""), Err(PasswordError::MalformedHash));
    }

    #[test]
    fn too_long() {
        let long = "a".repeat(MAX_PASSWORD_BYTES + 1);
        assert_eq!(hash(&long), Err(PasswordError::TooLong));
        let h = hash("short").unwrap();
        assert_eq!(verify(&long, &h), Ok(false));
    }

    #[test]
    fn dummy_hash_uses_current_parameters() {
        // If the cost constants change, regenerate DUMMY_HASH, or dummy_verify gets cheaper or
        // dearer than a real verify and the timing difference reveals which users exist.
        assert!(!needs_rehash(DUMMY_HASH), "regenerate DUMMY_HASH");
        assert_eq!(verify("anything", DUMMY_HASH), Ok(false));
    }

    #[test]
    fn needs_rehash_detects_old_parameters() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        );
        let old: PasswordHash = weak
            .hash_password_with_salt(b"pw", b"saltsaltsalt")
            .unwrap();
        let old = old.to_string();
        assert!(needs_rehash(&old));
        // Old hashes still verify with their own parameters.
        assert_eq!(verify("pw", &old), Ok(true));
        assert!(needs_rehash("garbage"));
    }

    #[test]
    fn dummy_verify_costs_about_as_much_as_verify() {
        let h = hash("pw").unwrap();
        let _ = verify("pw", &h); // warm up
        // Interleaved, and the minimum of each: robust against noisy shared cores.
        let (mut real, mut dummy) = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            let t = Instant::now();
            let _ = verify("wrong", &h);
            real = real.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            dummy_verify("wrong");
            dummy = dummy.min(t.elapsed().as_secs_f64());
        }
        let ratio = dummy / real;
        // A missing or cheaper dummy would be far below 0.5.
        assert!((0.5..2.0).contains(&ratio), "ratio {ratio}");
    }
}
