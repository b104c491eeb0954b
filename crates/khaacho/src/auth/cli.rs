//! `khaacho admin create-user` / `create-api-key` and the demo users of `seed --demo`.

use std::io::Read;

use anyhow::Context;
use khaacho_auth::Role;
use uuid::Uuid;

use super::service::AuthError;
use super::service::{self, NewApiKey, NewUser};
use crate::app::App;
use crate::base::audit::Entry;

fn api_error(e: AuthError) -> anyhow::Error {
    match e {
        AuthError::Invalid(errors) => {
            anyhow::anyhow!(
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
        other => anyhow::anyhow!("{other}"),
    }
}

fn cli_entry(action: &str) -> Entry {
    Entry::new("cli", Some("admin"), action)
}

/// `khaacho admin create-user`: the bootstrap path for the first admin. Without
/// `--password-stdin` a random password is generated and printed once.
pub async fn create_user(
    app: &App,
    username: String,
    email: Option<String>,
    role: &str,
    retailer_id: Option<Uuid>,
    vendor_id: Option<Uuid>,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let role: Role = role
        .parse()
        .map_err(|_| anyhow::anyhow!("--role must be admin, operator, vendor or retailer"))?;
    let (password, generated) = if password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from stdin")?;
        (s.trim_end_matches(['\r', '\n']).to_string(), false)
    } else {
        (
            khaacho_auth::webhook::generate_secret()
                .chars()
                .skip(6)
                .take(24)
                .collect(),
            true,
        )
    };
    let user = NewUser {
        username,
        email,
        password: password.clone(),
        role,
        retailer_id,
        vendor_id,
    };
    let row = service::create_user(app, user, cli_entry("user.create"))
        .await
        .map_err(api_error)?;
    println!(
        "user {} ({}) created with id {}",
        row.username, row.role, row.id
    );
    if generated {
        println!("password (shown once): {password}");
    }
    Ok(())
}

/// `khaacho admin create-api-key`: prints the key once.
pub async fn create_api_key(
    app: &App,
    name: String,
    role: &str,
    retailer_id: Option<Uuid>,
    vendor_id: Option<Uuid>,
) -> anyhow::Result<()> {
    let role: Role = role
        .parse()
        .map_err(|_| anyhow::anyhow!("--role must be admin, operator, vendor or retailer"))?;
    let req = NewApiKey {
        name,
        role,
        retailer_id,
        vendor_id,
    };
    let (key, row) = service::create_api_key(app, req, cli_entry("api_key.create"))
        .await
        .map_err(api_error)?;
    eprintln!(
        "API key {} ({}, prefix {}) created; it is shown once:",
        row.id, row.role, row.prefix
    );
    println!("{key}");
    Ok(())
}

/// Demo credentials of `seed --demo` (documented in the README; never use them in production).
pub const DEMO_USERS: &[(&str, &str, Role)] = &[
    ("admin", "demo-admin-password", Role::Admin),
    ("operator", "demo-operator-password", Role::Operator),
    ("vendor", "demo-vendor-password", Role::Vendor),
    ("retailer", "demo-retailer-password", Role::Retailer),
];

/// What [`demo_access`] created.
#[derive(Debug, Default)]
pub struct DemoAccess {
    /// Users created now (existing ones are kept).
    pub users: Vec<(String, String, Role)>,
    /// The retailer API key when created now (shown once).
    pub retailer_key: Option<String>,
    /// The demo retailer and vendor the tenant users belong to.
    pub retailer_id: Option<Uuid>,
    /// The demo vendor.
    pub vendor_id: Option<Uuid>,
}

/// Creates one user per role (vendor and retailer users for the first demo vendor and
/// retailer) and a retailer API key, unless they exist. Needs the demo parties.
pub async fn demo_access(app: &App) -> anyhow::Result<DemoAccess> {
    let retailer = crate::parties::repo::list_retailers(app.db(), None, 1)
        .await?
        .into_iter()
        .next()
        .map(|r| r.id);
    let vendor = crate::parties::repo::list_vendors(app.db(), None, 1)
        .await?
        .into_iter()
        .next()
        .map(|v| v.id);
    let mut out = DemoAccess {
        retailer_id: retailer,
        vendor_id: vendor,
        ..DemoAccess::default()
    };
    for (name, pw, role) in DEMO_USERS {
        if super::repo::find_user_by_login(app.db(), name)
            .await?
            .is_some()
        {
            continue;
        }
        let (retailer_id, vendor_id) = match role {
            Role::Retailer => (retailer, None),
            Role::Vendor => (None, vendor),
            _ => (None, None),
        };
        if matches!(role, Role::Retailer | Role::Vendor) && retailer_id.or(vendor_id).is_none() {
            continue;
        }
        let user = NewUser {
            username: name.to_string(),
            email: None,
            password: pw.to_string(),
            role: *role,
            retailer_id,
            vendor_id,
        };
        service::create_user(app, user, cli_entry("user.create"))
            .await
            .map_err(api_error)?;
        out.users.push((name.to_string(), pw.to_string(), *role));
    }
    if let Some(r) = retailer
        && super::repo::find_api_key_by_name(app.db(), "demo-retailer")
            .await?
            .is_none()
    {
        let req = NewApiKey {
            name: "demo-retailer".into(),
            role: Role::Retailer,
            retailer_id: Some(r),
            vendor_id: None,
        };
        let (key, _) = service::create_api_key(app, req, cli_entry("api_key.create"))
            .await
            .map_err(api_error)?;
        out.retailer_key = Some(key);
    }
    Ok(out)
}

/// Prints how to use what [`demo_access`] created.
pub fn print_demo_access(a: &DemoAccess) {
    if a.users.is_empty() {
        println!(
            "demo users already exist (admin, operator, vendor, retailer; passwords in the README)"
        );
    } else {
        println!("demo users (username / password):");
        for (u, p, r) in &a.users {
            println!("  {u:<9} {p:<24} role {r}");
        }
    }
    if let Some(r) = a.retailer_id {
        println!("the retailer user and key belong to retailer {r}");
    }
    match &a.retailer_key {
        Some(k) => {
            println!("retailer API key (shown once, store it now): {k}");
            println!("  curl -H 'Authorization: Bearer {k}' localhost:8080/api/v1/orders");
        }
        None => println!("the demo retailer API key exists already (keys are shown only once)"),
    }
    println!(
        "sign in: curl -s localhost:8080/api/v1/auth/login -H 'content-type: application/json' \\"
    );
    println!(
        "           -d '{{\"username\":\"operator\",\"password\":\"demo-operator-password\"}}'"
    );
    println!("then send `Authorization: Bearer <access_token>`");
}
