//! An in-process view of the catalogue for the intake's shape checks, so accepting an order
//! needs no catalogue query. A miss falls back to the database (a product created on another
//! node is found at once); the whole view refreshes on a timer and after local changes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::repo::{self, ProductRow};
use crate::db::Db;
use crate::domain::Unit;

/// What the intake needs to know about a SKU.
#[derive(Clone, Debug)]
pub struct SkuInfo {
    /// Base unit.
    pub unit: Unit,
    /// Pack size in base milli-units.
    pub pack_size_milli: Option<i64>,
    /// Whether it can be ordered.
    pub active: bool,
}

impl From<&ProductRow> for SkuInfo {
    fn from(p: &ProductRow) -> Self {
        Self { unit: Unit::parse(&p.unit).unwrap_or(Unit::Piece), pack_size_milli: p.pack_size_milli, active: p.active }
    }
}

struct Snapshot {
    by_sku: HashMap<String, SkuInfo>,
    loaded: Instant,
}

/// Shared catalogue view.
#[derive(Clone)]
pub struct CatalogCache {
    snap: Arc<RwLock<Arc<Snapshot>>>,
    ttl: Duration,
}

impl CatalogCache {
    /// An empty view that loads on first use.
    pub fn new(ttl: Duration) -> Self {
        let empty = Snapshot { by_sku: HashMap::new(), loaded: Instant::now() - ttl - Duration::from_secs(1) };
        Self { snap: Arc::new(RwLock::new(Arc::new(empty))), ttl }
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snap.read().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Reloads every product from the database.
    pub async fn refresh(&self, db: &Db) -> Result<(), sqlx::Error> {
        let mut by_sku = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = repo::list_products(db, after.as_deref(), 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.sku.clone());
            for p in &page {
                by_sku.insert(p.sku.clone(), SkuInfo::from(p));
            }
            if page.len() < 1000 {
                break;
            }
        }
        let snap = Arc::new(Snapshot { by_sku, loaded: Instant::now() });
        match self.snap.write() {
            Ok(mut g) => *g = snap,
            Err(p) => *p.into_inner() = snap,
        }
        Ok(())
    }

    /// Looks up SKUs; unknown ones are checked against the database before being reported
    /// missing. Returns one entry per input SKU, `None` where no product has it.
    pub async fn lookup(&self, db: &Db, skus: &[&str]) -> Result<Vec<Option<SkuInfo>>, sqlx::Error> {
        if self.current().loaded.elapsed() > self.ttl {
            self.refresh(db).await?;
        }
        let snap = self.current();
        let mut out = Vec::with_capacity(skus.len());
        for sku in skus {
            match snap.by_sku.get(*sku) {
                Some(info) => out.push(Some(info.clone())),
                None => out.push(repo::find_by_sku(db, sku).await?.as_ref().map(SkuInfo::from)),
            }
        }
        Ok(out)
    }
}
