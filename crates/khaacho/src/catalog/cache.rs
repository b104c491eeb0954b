//! An in-process view of the catalogue for the intake's shape checks, so accepting an order
//! needs no catalogue query. A miss falls back to the database (a product created on another
//! node is found at once); the whole view refreshes on a timer and after local changes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::repo::{self, ProductRow};
use crate::base::db::Db;
use crate::base::domain::{Unit, canonical_unit};

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
        Self {
            unit: canonical_unit(&p.unit).unwrap_or(Unit::Piece),
            pack_size_milli: p.pack_size_milli,
            active: p.active,
        }
    }
}

struct Snapshot {
    by_sku: HashMap<String, SkuInfo>,
    /// The text parser's index over the same products.
    parser: Arc<khaacho_parser::Catalog>,
    loaded: Instant,
}

/// Shared catalogue view.
#[derive(Clone)]
pub struct CatalogCache {
    snap: Arc<RwLock<Arc<Snapshot>>>,
    /// Held while one task reloads a stale view, so concurrent requests wait for that one
    /// reload instead of each loading the whole catalogue again.
    reloading: Arc<tokio::sync::Mutex<()>>,
    ttl: Duration,
}

impl CatalogCache {
    /// An empty view that loads on first use.
    pub fn new(ttl: Duration) -> Self {
        let empty = Snapshot {
            by_sku: HashMap::new(),
            parser: Arc::new(khaacho_parser::Catalog::new(Vec::new())),
            loaded: Instant::now() - ttl - Duration::from_secs(1),
        };
        Self {
            snap: Arc::new(RwLock::new(Arc::new(empty))),
            reloading: Arc::default(),
            ttl,
        }
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snap
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Reloads every product from the database.
    pub async fn refresh(&self, db: &Db) -> Result<(), sqlx::Error> {
        let mut by_sku = HashMap::new();
        let mut for_parser = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = repo::list_products(db, after.as_deref(), 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.sku.clone());
            for p in &page {
                by_sku.insert(p.sku.clone(), SkuInfo::from(p));
                if p.active {
                    for_parser.push(parser_product(p));
                }
            }
            if page.len() < 1000 {
                break;
            }
        }
        // Building the index is CPU work (~50 ms for 10,000 products): keep it off the runtime.
        let parser = tokio::task::spawn_blocking(move || khaacho_parser::Catalog::new(for_parser))
            .await
            .map_err(|e| sqlx::Error::Protocol(format!("building the parser index failed: {e}")))?;
        let snap = Arc::new(Snapshot {
            by_sku,
            parser: Arc::new(parser),
            loaded: Instant::now(),
        });
        match self.snap.write() {
            Ok(mut g) => *g = snap,
            Err(p) => *p.into_inner() = snap,
        }
        Ok(())
    }

    /// The text parser's catalogue index (refreshed with the rest of the view).
    pub async fn parser(&self, db: &Db) -> Result<Arc<khaacho_parser::Catalog>, sqlx::Error> {
        Ok(self.fresh(db).await?.parser.clone())
    }

    /// The current view, reloaded first when older than the TTL (by one task at a time).
    async fn fresh(&self, db: &Db) -> Result<Arc<Snapshot>, sqlx::Error> {
        let snap = self.current();
        if snap.loaded.elapsed() <= self.ttl {
            return Ok(snap);
        }
        let _guard = self.reloading.lock().await;
        // Another task may have reloaded while this one waited for the lock.
        if self.current().loaded.elapsed() > self.ttl {
            self.refresh(db).await?;
        }
        Ok(self.current())
    }

    /// Looks up SKUs; unknown ones are checked against the database before being reported
    /// missing. Returns one entry per input SKU, `None` where no product has it.
    pub async fn lookup(
        &self,
        db: &Db,
        skus: &[&str],
    ) -> Result<Vec<Option<SkuInfo>>, sqlx::Error> {
        let snap = self.fresh(db).await?;
        let mut out = Vec::with_capacity(skus.len());
        for sku in skus {
            match snap.by_sku.get(*sku) {
                Some(info) => out.push(Some(info.clone())),
                None => out.push(
                    repo::find_by_sku(db, sku)
                        .await?
                        .as_ref()
                        .map(SkuInfo::from),
                ),
            }
        }
        Ok(out)
    }
}

fn parser_product(p: &ProductRow) -> khaacho_parser::CatalogProduct {
    khaacho_parser::CatalogProduct {
        sku: p.sku.clone(),
        name: p.name.clone(),
        aliases: p.aliases.0.clone(),
        unit: canonical_unit(&p.unit).unwrap_or(Unit::Piece),
        pack_size: p.pack_size_milli.map(crate::base::domain::milli_to_qty),
        price_npr: p.list_price_paisa.map(crate::base::domain::paisa_to_npr),
        category: p.category.clone(),
    }
}
