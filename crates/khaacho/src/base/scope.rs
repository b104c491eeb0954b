//! The tenant scope: which rows a caller may see. Every repository finder that a tenant can
//! reach takes the scope first and applies it in its SQL, so another tenant's row cannot be
//! fetched by accident.

use uuid::Uuid;

/// Which orders a caller may see.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    /// Operators and admins: every order.
    All,
    /// A retailer: only its own.
    Retailer(Uuid),
    /// A vendor: only orders with a line addressed (priced or routed) to it.
    Vendor(Uuid),
}

impl Scope {
    /// The retailer this scope is limited to.
    pub fn retailer(self) -> Option<Uuid> {
        match self {
            Scope::Retailer(id) => Some(id),
            Scope::All | Scope::Vendor(_) => None,
        }
    }

    /// The vendor this scope is limited to.
    pub fn vendor(self) -> Option<Uuid> {
        match self {
            Scope::Vendor(id) => Some(id),
            Scope::All | Scope::Retailer(_) => None,
        }
    }
}
