//! Who is calling: the authenticated [`Principal`] the security middleware leaves on every
//! request, its role checks and the tenant scope that follows from it.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
pub use khaacho_auth::Role;
use uuid::Uuid;

use super::audit::Entry;
use super::scope::Scope;
use super::wire::error::ApiError;

/// Every role, in the order of the docs' role matrix.
pub const ALL_ROLES: &[Role] = &[Role::Admin, Role::Operator, Role::Vendor, Role::Retailer];
/// Platform staff.
pub const STAFF: &[Role] = &[Role::Admin, Role::Operator];
/// Admins only.
pub const ADMIN: &[Role] = &[Role::Admin];

/// How the caller authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A user with an access token.
    User,
    /// An API key.
    ApiKey,
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Principal {
    /// User or API key.
    pub kind: PrincipalKind,
    /// The user's or the key's id.
    pub id: Uuid,
    /// The role it acts in.
    pub role: Role,
    /// The retailer or vendor it belongs to (`None` for staff).
    pub tenant: Option<Uuid>,
    /// The request's id (for audit rows).
    pub request_id: Option<String>,
}

impl Principal {
    /// The audit-log actor: `user:<id>` or `apikey:<id>`.
    pub fn actor(&self) -> String {
        match self.kind {
            PrincipalKind::User => format!("user:{}", self.id),
            PrincipalKind::ApiKey => format!("apikey:{}", self.id),
        }
    }

    /// Refuses the request (403, audited) unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role may not do this",
                self.role
            )))
        }
    }

    /// Whether the caller is platform staff (admin or operator).
    pub fn is_staff(&self) -> bool {
        STAFF.contains(&self.role)
    }

    /// The retailer this caller is limited to (retailer role).
    pub fn retailer(&self) -> Option<Uuid> {
        (self.role == Role::Retailer).then(|| self.tenant.unwrap_or(Uuid::nil()))
    }

    /// The vendor this caller is limited to (vendor role).
    pub fn vendor(&self) -> Option<Uuid> {
        (self.role == Role::Vendor).then(|| self.tenant.unwrap_or(Uuid::nil()))
    }

    /// Which orders the caller may see. A tenant role without a tenant sees nothing.
    pub fn order_scope(&self) -> Scope {
        match self.role {
            Role::Admin | Role::Operator => Scope::All,
            Role::Retailer => Scope::Retailer(self.tenant.unwrap_or(Uuid::nil())),
            Role::Vendor => Scope::Vendor(self.tenant.unwrap_or(Uuid::nil())),
        }
    }

    /// An audit entry by this caller.
    pub fn audit(&self, action: &str) -> Entry {
        let mut e = Entry::new(self.actor(), Some(self.role.as_str()), action);
        e.request_id = self.request_id.clone();
        e
    }
}

/// The authentication outcome the middleware leaves in the request's extensions.
#[derive(Clone, Debug)]
pub enum AuthState {
    /// No credentials were presented.
    Anonymous,
    /// Valid credentials.
    Authenticated(Principal),
    /// Credentials were presented and refused (the reason is not sent to the client).
    Invalid(&'static str),
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<AuthState>() {
            Some(AuthState::Authenticated(p)) => Ok(p.clone()),
            Some(AuthState::Invalid(_)) => {
                Err(ApiError::Unauthorized("invalid or expired credentials"))
            }
            _ => Err(ApiError::Unauthorized(
                "authentication required: send `Authorization: Bearer <token>`",
            )),
        }
    }
}
