//! Products and retailers fetched from the API, and random order bodies.

use std::collections::HashSet;

use anyhow::{Context, bail};
use rand::RngExt;
use reqwest::header::AUTHORIZATION;
use reqwest::{Client, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// Page size requested from list endpoints.
const PAGE_LIMIT: &str = "200";
/// Stop following cursors after this many items per list.
const MAX_ITEMS: usize = 20_000;
/// Hard cap on pages per list (guards against a server that loops cursors).
const MAX_PAGES: usize = 100;
/// Upper bound of the random quantity when the product does not force more.
const SMALL_QTY_MAX: f64 = 10.0;
/// Maximum number of lines per generated order.
const MAX_LINES: usize = 5;

/// A product as listed by `GET /api/v1/products` (only the fields we use).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Product {
    pub(crate) sku: String,
    pub(crate) unit: String,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub(crate) min_order_qty: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub(crate) max_order_qty: Option<f64>,
}

/// A retailer as listed by `GET /api/v1/retailers` (only the id is used).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Retailer {
    pub(crate) id: String,
}

/// One page of a list endpoint.
#[derive(Debug, Deserialize)]
struct Page {
    items: Vec<serde_json::Value>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// Accepts a JSON number, a numeric string (e.g. a serialized decimal) or null.
fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|x| x.is_finite()))
}

/// A body for `POST /api/v1/orders`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct OrderBody {
    pub(crate) retailer_id: String,
    pub(crate) lines: Vec<OrderLine>,
    /// For the hot retailer (`--hot-share`); not sent.
    #[serde(skip)]
    pub(crate) hot: bool,
}

/// One order line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct OrderLine {
    pub(crate) sku: String,
    pub(crate) qty: u32,
    pub(crate) unit: String,
}

/// A product that can be ordered, with its integer quantity range.
#[derive(Debug, Clone)]
struct Orderable {
    sku: String,
    unit: String,
    qty_min: u32,
    qty_max: u32,
}

/// The integer quantities to order for a product: a small integer (1–10)
/// clamped into `[min_order_qty, max_order_qty]` when those are given.
///
/// If `min_order_qty` exceeds 10 the minimum itself is used. Returns `None`
/// when no integer satisfies the constraints (e.g. min 0.2, max 0.5).
pub(crate) fn qty_range(min: Option<f64>, max: Option<f64>) -> Option<(u32, u32)> {
    let lo = min.map_or(1.0, f64::ceil).max(1.0);
    let small_hi = lo.max(SMALL_QTY_MAX);
    let hi = max.map_or(small_hi, |m| m.floor().min(small_hi));
    if !(lo.is_finite() && hi.is_finite()) || hi < lo || hi > f64::from(u32::MAX) {
        return None;
    }
    // Both are integer-valued floats in [1, u32::MAX] here.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some((lo as u32, hi as u32))
}

/// Everything needed to generate orders.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    products: Vec<Orderable>,
    retailers: Vec<String>,
    /// Share of the orders for the first retailer (`--hot-share`), 0 for none.
    hot_share: f64,
}

impl Catalog {
    /// Builds a catalog, dropping duplicate SKUs, products without a usable
    /// quantity range and retailers whose id is not a UUID.
    pub(crate) fn new(products: Vec<Product>, retailers: Vec<Retailer>) -> anyhow::Result<Self> {
        const SEED_HINT: &str = "seed demo data first: khaacho seed --demo";
        if products.is_empty() {
            bail!("the API lists no products; {SEED_HINT}");
        }
        if retailers.is_empty() {
            bail!("the API lists no retailers; {SEED_HINT}");
        }
        let mut seen = HashSet::new();
        let orderable: Vec<Orderable> = products
            .into_iter()
            .filter(|p| !p.sku.is_empty() && !p.unit.is_empty())
            .filter(|p| seen.insert(p.sku.clone()))
            .filter_map(|p| {
                let (qty_min, qty_max) = qty_range(p.min_order_qty, p.max_order_qty)?;
                Some(Orderable {
                    sku: p.sku,
                    unit: p.unit,
                    qty_min,
                    qty_max,
                })
            })
            .collect();
        if orderable.is_empty() {
            bail!(
                "no orderable products: every product's min/max order quantity excludes \
                 whole-number quantities; {SEED_HINT}"
            );
        }
        let ids: Vec<String> = retailers
            .into_iter()
            .filter(|r| uuid::Uuid::parse_str(&r.id).is_ok())
            .map(|r| r.id)
            .collect();
        if ids.is_empty() {
            bail!("no retailer has a UUID id; {SEED_HINT}");
        }
        Ok(Self {
            products: orderable,
            retailers: ids,
            hot_share: 0.0,
        })
    }

    /// Sends `share` (0–1) of the orders for the first retailer, the rest for the others.
    pub(crate) fn with_hot_share(mut self, share: f64) -> Self {
        self.hot_share = share.clamp(0.0, 1.0);
        self
    }

    /// Number of orderable products.
    pub(crate) fn product_count(&self) -> usize {
        self.products.len()
    }

    /// Number of retailers.
    pub(crate) fn retailer_count(&self) -> usize {
        self.retailers.len()
    }

    /// A random order: random retailer, 1–5 lines with distinct SKUs, each
    /// in the product's base unit with an in-range integer quantity.
    pub(crate) fn generate<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> OrderBody {
        let n = self.retailers.len();
        let hot = self.hot_share > 0.0 && (n == 1 || rng.random_bool(self.hot_share));
        let pick = match (hot, self.hot_share > 0.0) {
            (true, _) => 0,
            // With a hot retailer, the others share the rest.
            (false, true) => rng.random_range(1..n),
            (false, false) => rng.random_range(0..n),
        };
        let retailer_id = self.retailers[pick].clone();
        let max_lines = MAX_LINES.min(self.products.len());
        let n = rng.random_range(1..=max_lines);
        let lines = rand::seq::index::sample(rng, self.products.len(), n)
            .into_iter()
            .map(|i| {
                let p = &self.products[i];
                OrderLine {
                    sku: p.sku.clone(),
                    qty: rng.random_range(p.qty_min..=p.qty_max),
                    unit: p.unit.clone(),
                }
            })
            .collect();
        OrderBody {
            retailer_id,
            lines,
            hot,
        }
    }
}

/// `base` with `path` appended to its own path (keeps any path prefix).
pub(crate) fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// Fetches products and retailers and builds the [`Catalog`].
pub(crate) async fn fetch_catalog(
    client: &Client,
    base: &Url,
    auth: Option<&str>,
) -> anyhow::Result<Catalog> {
    let products: Vec<Product> = fetch_list(client, base, "/api/v1/products", auth).await?;
    let retailers: Vec<Retailer> = fetch_list(client, base, "/api/v1/retailers", auth).await?;
    Catalog::new(products, retailers)
}

/// GETs a cursor-paginated list, following `next_cursor` up to [`MAX_ITEMS`].
/// Items that do not deserialize as `T` are skipped.
async fn fetch_list<T: DeserializeOwned>(
    client: &Client,
    base: &Url,
    path: &str,
    auth: Option<&str>,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen_cursors = HashSet::new();
    for _ in 0..MAX_PAGES {
        let mut url = endpoint(base, path);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", PAGE_LIMIT);
            if let Some(c) = &cursor {
                q.append_pair("cursor", c);
            }
        }
        let mut req = client.get(url.clone());
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("could not GET {url} (is the Khaacho API running?)"))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            bail!("GET {url} returned {status}: pass a valid --api-key");
        }
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let snippet: String = text.chars().take(300).collect();
            bail!("GET {url} returned {status}: {snippet}");
        }
        let page: Page = resp.json().await.with_context(|| {
            format!("GET {url}: expected JSON {{\"items\": [...], \"next_cursor\": ...}}")
        })?;
        let page_len = page.items.len();
        for item in page.items {
            if out.len() >= MAX_ITEMS {
                break;
            }
            if let Ok(v) = serde_json::from_value::<T>(item) {
                out.push(v);
            }
        }
        match page.next_cursor {
            Some(c)
                if !c.is_empty()
                    && page_len > 0
                    && out.len() < MAX_ITEMS
                    && seen_cursors.insert(c.clone()) =>
            {
                cursor = Some(c);
            }
            _ => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn product(sku: &str, min: Option<f64>, max: Option<f64>) -> Product {
        Product {
            sku: sku.to_owned(),
            unit: "kg".to_owned(),
            min_order_qty: min,
            max_order_qty: max,
        }
    }

    fn retailer() -> Retailer {
        Retailer {
            id: "0190f5a0-0000-7000-8000-000000000001".to_owned(),
        }
    }

    #[test]
    fn a_hot_share_sends_that_share_to_the_first_retailer_only() {
        let retailers: Vec<Retailer> = (1..=4)
            .map(|i| Retailer {
                id: format!("0190f5a0-0000-7000-8000-00000000000{i}"),
            })
            .collect();
        let first = retailers[0].id.clone();
        let catalog = Catalog::new(vec![product("A", None, None)], retailers)
            .expect("catalog")
            .with_hot_share(0.6);
        let mut rng = SmallRng::seed_from_u64(7);
        let orders: Vec<OrderBody> = (0..5_000).map(|_| catalog.generate(&mut rng)).collect();
        assert!(orders.iter().all(|o| o.hot == (o.retailer_id == first)));
        let hot = orders.iter().filter(|o| o.hot).count();
        assert!((2_800..=3_200).contains(&hot), "{hot} of 5000 hot");
        let body = serde_json::to_value(&orders[0]).expect("serialises");
        assert!(body.get("hot").is_none(), "the flag is not sent: {body}");
        // Without a hot share every retailer, the first included, gets a fair part.
        let plain = Catalog::new(vec![product("A", None, None)], vec![retailer()]).expect("ok");
        assert!(!plain.generate(&mut rng).hot);
    }

    #[test]
    fn qty_range_respects_bounds() {
        assert_eq!(qty_range(None, None), Some((1, 10)));
        assert_eq!(qty_range(Some(2.0), Some(4.0)), Some((2, 4)));
        assert_eq!(qty_range(Some(0.5), None), Some((1, 10)));
        assert_eq!(qty_range(Some(2.5), Some(3.5)), Some((3, 3)));
        assert_eq!(qty_range(None, Some(3.0)), Some((1, 3)));
        assert_eq!(qty_range(Some(25.0), None), Some((25, 25)));
        assert_eq!(qty_range(Some(25.0), Some(100.0)), Some((25, 25)));
        assert_eq!(qty_range(Some(0.2), Some(0.5)), None);
        assert_eq!(qty_range(Some(5.0), Some(4.0)), None);
    }

    #[test]
    fn parses_products_leniently() {
        let p: Product = serde_json::from_value(serde_json::json!({
            "sku": "RICE-25", "unit": "kg", "pack_size": 25,
            "min_order_qty": "2.000", "max_order_qty": null, "name": "Rice"
        }))
        .expect("product parses");
        assert_eq!(p.min_order_qty, Some(2.0));
        assert_eq!(p.max_order_qty, None);
        let p: Product = serde_json::from_value(serde_json::json!({"sku": "X", "unit": "piece"}))
            .expect("minimal product parses");
        assert_eq!(p.min_order_qty, None);
    }

    #[test]
    fn generated_orders_respect_min_max_and_distinct_skus() {
        let products = vec![
            product("A", Some(3.0), Some(5.0)),
            product("B", None, Some(2.0)),
            product("C", Some(7.0), None),
            product("D", None, None),
            product("E", Some(1.5), Some(1.9)), // no integer fits: never ordered
            product("A", None, None),           // duplicate SKU: ignored
            product("F", Some(4.0), Some(4.0)),
            product("G", None, None),
        ];
        let catalog = Catalog::new(products, vec![retailer()]).expect("catalog");
        assert_eq!(catalog.product_count(), 6);
        let mut rng = SmallRng::seed_from_u64(7);
        let mut line_counts = HashSet::new();
        for _ in 0..2_000 {
            let order = catalog.generate(&mut rng);
            assert_eq!(order.retailer_id, retailer().id);
            assert!((1..=5).contains(&order.lines.len()));
            line_counts.insert(order.lines.len());
            let skus: HashSet<&str> = order.lines.iter().map(|l| l.sku.as_str()).collect();
            assert_eq!(skus.len(), order.lines.len(), "SKUs must be distinct");
            for line in &order.lines {
                assert_eq!(line.unit, "kg");
                let ok = match line.sku.as_str() {
                    "A" => (3..=5).contains(&line.qty),
                    "B" => (1..=2).contains(&line.qty),
                    "C" => (7..=10).contains(&line.qty),
                    "D" | "G" => (1..=10).contains(&line.qty),
                    "F" => line.qty == 4,
                    _ => false,
                };
                assert!(ok, "bad line {line:?}");
            }
        }
        assert_eq!(line_counts.len(), 5, "all line counts 1..=5 occur");
    }

    #[test]
    fn single_product_catalog_makes_one_line_orders() {
        let catalog = Catalog::new(vec![product("A", None, None)], vec![retailer()]).expect("ok");
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..100 {
            assert_eq!(catalog.generate(&mut rng).lines.len(), 1);
        }
    }

    #[test]
    fn empty_lists_ask_for_seed_data() {
        let err = Catalog::new(vec![], vec![retailer()]).expect_err("no products");
        assert!(err.to_string().contains("khaacho seed --demo"));
        let err = Catalog::new(vec![product("A", None, None)], vec![]).expect_err("no retailers");
        assert!(err.to_string().contains("khaacho seed --demo"));
    }

    #[test]
    fn endpoint_keeps_prefix() {
        let base = Url::parse("http://127.0.0.1:8080/").expect("url");
        assert_eq!(
            endpoint(&base, "/api/v1/orders").as_str(),
            "http://127.0.0.1:8080/api/v1/orders"
        );
        let base = Url::parse("http://127.0.0.1:8080/khaacho/?x=1").expect("url");
        assert_eq!(
            endpoint(&base, "/api/v1/orders").as_str(),
            "http://127.0.0.1:8080/khaacho/api/v1/orders"
        );
    }
}
