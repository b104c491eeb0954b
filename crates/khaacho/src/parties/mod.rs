//! Retailers (shops that buy) and vendors (wholesalers that sell).

pub mod repo;
pub mod routes;
