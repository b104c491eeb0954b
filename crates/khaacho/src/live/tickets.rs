//! WebSocket tickets. A browser cannot send `Authorization` with a WebSocket, so an
//! authenticated client asks `POST /api/v1/ws/tickets` for a ticket and opens
//! `/api/v1/ws?ticket=…` within `live.ticket_ttl_ms` (60 s).
//!
//! Opaque random, stored in the database (only its SHA-256), used by one conditional UPDATE:
//! "used once" then holds across any number of API processes with no clock or key shared
//! between them, and nothing in the ticket can be forged or replayed from a log (it carries no
//! claims; the row does). A signed ticket would still need a used-ticket table for single use,
//! so it would save nothing but the insert.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::base::db::Db;
use crate::base::principal::{Principal, PrincipalKind, Role};
use crate::{with_latest, with_write};

/// Every ticket starts with this.
pub const PREFIX: &str = "kwt_";

/// Why a ticket was refused (audited; the client sees one 401).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a ticket's shape.
    Malformed,
    /// No such ticket (forged, or pruned long after expiry).
    Unknown,
    /// Past its time.
    Expired,
    /// Already used.
    Reused,
}

impl Refused {
    /// For the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Malformed => "malformed ws ticket",
            Refused::Unknown => "unknown ws ticket",
            Refused::Expired => "expired ws ticket",
            Refused::Reused => "reused ws ticket",
        }
    }
}

fn hash(ticket: &str) -> String {
    hex::encode(Sha256::digest(ticket.as_bytes()))
}

/// Issues a ticket for `principal`, valid until `now_ms + ttl_ms`; prunes long-expired ones.
pub async fn issue(
    db: &Db,
    principal: &Principal,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<String, sqlx::Error> {
    let secret: [u8; 32] = rand::random();
    let ticket = format!("{PREFIX}{}", hex::encode(secret));
    let kind = match principal.kind {
        PrincipalKind::User => "user",
        PrincipalKind::ApiKey => "apikey",
    };
    with_write!(db, c => {
        // A day past expiry a refused ticket is audited as "unknown" rather than "expired".
        sqlx::query("DELETE FROM ws_tickets WHERE expires_at_ms < $1")
            .bind(now_ms - 86_400_000).execute(c).await?;
        sqlx::query("INSERT INTO ws_tickets (ticket_hash, principal_kind, principal_id, role, tenant_id, created_at_ms, expires_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(hash(&ticket)).bind(kind).bind(principal.id).bind(principal.role.as_str())
            .bind(principal.tenant).bind(now_ms).bind(now_ms + ttl_ms)
            .execute(c).await?;
    });
    Ok(ticket)
}

/// Whether `ticket` has a ticket's shape (the prefix and 64 lowercase hex digits).
pub fn well_formed(ticket: &str) -> bool {
    ticket.strip_prefix(PREFIX).is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Uses `ticket` (once): the principal it was issued to, or why not.
pub async fn redeem(
    db: &Db,
    ticket: &str,
    now_ms: i64,
) -> Result<Result<Principal, Refused>, sqlx::Error> {
    if !well_formed(ticket) {
        return Ok(Err(Refused::Malformed));
    }
    let h = hash(ticket);
    let row: Option<(String, Uuid, String, Option<Uuid>)> = with_write!(db, c => sqlx::query_as(
        "UPDATE ws_tickets SET used_at_ms = $2 WHERE ticket_hash = $1 AND used_at_ms IS NULL AND expires_at_ms > $2 \
         RETURNING principal_kind, principal_id, role, tenant_id")
        .bind(&h).bind(now_ms).fetch_optional(c).await)?;
    if let Some((kind, id, role, tenant)) = row {
        let Ok(role) = role.parse::<Role>() else {
            return Ok(Err(Refused::Unknown));
        };
        return Ok(Ok(Principal {
            kind: if kind == "apikey" {
                PrincipalKind::ApiKey
            } else {
                PrincipalKind::User
            },
            id,
            role,
            tenant,
            request_id: None,
        }));
    }
    let why: Option<(Option<i64>, i64)> = with_latest!(db, c => sqlx::query_as(
        "SELECT used_at_ms, expires_at_ms FROM ws_tickets WHERE ticket_hash = $1")
        .bind(&h).fetch_optional(c).await)?;
    Ok(Err(match why {
        None => Refused::Unknown,
        Some((Some(_), _)) => Refused::Reused,
        Some((None, _)) => Refused::Expired,
    }))
}
