//! Security building blocks for Khaacho.
//!
//! Every module is free of application and database types: the app owns the tables, routes and
//! middleware, and calls into these pure (or storage-trait based) functions. See the crate
//! `README.md` for how each piece is meant to be wired.
//!
//! | module | what it does |
//! |---|---|
//! | [`tokens`] | EdDSA (Ed25519) JWT access tokens with `kid` based key rotation |
//! | [`password`] | argon2id hashing and user-enumeration-safe verification |
//! | [`refresh`] | opaque rotating refresh tokens with reuse detection per family |
//! | [`apikey`] | `kh_live_…` API keys, stored hashed, verified in constant time |
//! | [`webhook`] | Twilio inbound signature check and our own outbound `Khaacho-Signature` |
//! | [`ratelimit`] | GCRA limiter: in-process, Redis (cross-node) and Redis-with-fallback |
//! | [`lockout`] | failed-login lockout policy |
//! | [`mask`] | masking of phone numbers and names for logs |

#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod apikey;
pub mod lockout;
pub mod mask;
pub mod password;
pub mod ratelimit;
pub mod refresh;
pub mod tokens;
pub mod webhook;

mod util;

pub use tokens::Role;

#[cfg(test)]
mod tests {
    /// The app shares these across tasks in `Arc`s.
    #[test]
    fn shared_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<crate::tokens::KeySet>();
        assert_send_sync::<crate::refresh::RefreshTokens<crate::refresh::MemoryRefreshStore>>();
        assert_send_sync::<crate::ratelimit::Limiter>();
        assert_send_sync::<crate::ratelimit::RedisLimiter>();
    }
}
