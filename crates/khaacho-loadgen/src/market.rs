//! The market a load runs against, set up over HTTP before the load starts (`khaacho loadtest`
//! and `khaacho simulate` share it): every vendor's capacity and working hours, and how many
//! retailers there are. Without it a run measures the demo data as it is: 66 shops, each
//! ordering several times a second at load-test rates (their credit and risk rules hold or
//! refuse nearly every order, so routing never runs), and fourteen vendors that close in the
//! evening and take 6 to 20 open orders each.

use std::collections::HashSet;

use anyhow::bail;
use reqwest::{Client, StatusCode, Url};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::validate::parse_hours;

/// The market's options (flattened into both commands' options).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MarketArgs {
    /// Set every vendor's capacity (most open orders at once, and most offers left
    /// unanswered at once) before starting, e.g. for a load far above the demo's ten
    /// orders and five unanswered offers per vendor
    #[arg(long, value_name = "N")]
    pub vendor_capacity: Option<u32>,

    /// Set every vendor's working hours before starting, `HH:MM-HH:MM` Nepal time. Routing
    /// prefers the vendors open now, so by default which vendors get the orders depends on
    /// the hour the run starts (in the evening one or two late shops get nearly all of
    /// them); `00:00-24:00` opens every vendor around the clock, so runs compare whenever
    /// they are made
    #[arg(long, value_name = "HH:MM-HH:MM", value_parser = parse_hours)]
    pub vendor_hours: Option<(String, String)>,

    /// Grow the market to at least this many retailers before starting, registering the
    /// missing ones through `POST /api/v1/retailers` (phones +9779700000000 upwards, spread
    /// over the existing retailers' districts; a later run finds them again). A market has
    /// thousands of shops each ordering a few times a day; at load-test rates the demo's 66
    /// would each order several times a second, and their accounts and risk rules would
    /// measure that (holds and rejections, never routing) instead of the pipeline
    #[arg(long, value_name = "N")]
    pub retailers: Option<usize>,
}

impl MarketArgs {
    /// Whether anything is to be set up.
    pub fn is_set(&self) -> bool {
        self.vendor_capacity.is_some() || self.vendor_hours.is_some() || self.retailers.is_some()
    }
}

/// What [`prepare`] found and did.
#[derive(Debug, Default)]
pub(crate) struct Market {
    /// Every vendor's id.
    pub vendors: Vec<String>,
    /// Retailers it registered.
    pub registered: usize,
}

/// Sets the market up as `args` say, as `staff` (an operator's or admin's `Authorization`):
/// every vendor's capacity and hours (`PATCH /api/v1/vendors/{id}`), then the retailers.
pub(crate) async fn prepare(
    client: &Client,
    base: &Url,
    staff: &str,
    args: &MarketArgs,
) -> anyhow::Result<Market> {
    let vendors = ids(client, base, staff, "api/v1/vendors").await?;
    let mut change = serde_json::Map::new();
    if let Some(cap) = args.vendor_capacity {
        change.insert("max_active".into(), json!(cap));
        change.insert("max_awaiting".into(), json!(cap));
    }
    if let Some((opens, closes)) = &args.vendor_hours {
        change.insert("opens".into(), json!(opens));
        change.insert("closes".into(), json!(closes));
    }
    if !change.is_empty() {
        for v in &vendors {
            let resp = client
                .patch(base.join(&format!("api/v1/vendors/{v}"))?)
                .header("authorization", staff)
                .json(&change)
                .send()
                .await?;
            if !resp.status().is_success() {
                bail!(
                    "setting vendor {v}'s capacity and hours failed: {} {}",
                    resp.status(),
                    resp.text().await.unwrap_or_default()
                );
            }
        }
    }
    let registered = match args.retailers {
        Some(n) => grow_market(client, base, staff, n).await?,
        None => 0,
    };
    Ok(Market {
        vendors,
        registered,
    })
}

/// POSTs `body` to `url` as `auth` and returns the answer's JSON; an error naming `what`
/// unless the server answered 201 Created.
pub(crate) async fn create(
    client: &Client,
    url: Url,
    auth: &str,
    body: &Value,
    what: &str,
) -> anyhow::Result<Value> {
    let resp = client
        .post(url)
        .header("authorization", auth)
        .json(body)
        .send()
        .await?;
    if resp.status() != StatusCode::CREATED {
        bail!(
            "{what} failed: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(resp.json().await?)
}

/// Every id of a list route (as `auth`).
pub(crate) async fn ids(
    client: &Client,
    base: &Url,
    auth: &str,
    path: &str,
) -> anyhow::Result<Vec<String>> {
    let items = items(client, base, auth, path).await?;
    Ok(items
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect())
}

/// Every item of a list route (as `auth`).
async fn items(client: &Client, base: &Url, auth: &str, path: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = base.join(path)?;
        url.query_pairs_mut().append_pair("limit", "200");
        if let Some(c) = &cursor {
            url.query_pairs_mut().append_pair("cursor", c);
        }
        let page: Value = client
            .get(url)
            .header("authorization", auth)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        out.extend(page["items"].as_array().into_iter().flatten().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(out),
        }
    }
}

/// How many requests of the set-up (registering retailers, minting keys) run at once.
const SETUP_CONCURRENCY: usize = 16;

/// The phone of simulated retailer `i` (a range the demo data does not use).
fn sim_phone(i: usize) -> String {
    format!("+9779700{i:06}")
}

/// Registers simulated retailers until the market has `n`, each in the district (and near
/// the place) of an existing retailer, taken in turn. Returns how many it registered.
async fn grow_market(client: &Client, base: &Url, staff: &str, n: usize) -> anyhow::Result<usize> {
    let existing = items(client, base, staff, "api/v1/retailers").await?;
    if existing.is_empty() {
        bail!("the server lists no retailers to model new ones on; run `khaacho seed --demo`");
    }
    let phones: HashSet<&str> = existing
        .iter()
        .filter_map(|r| r["phone"].as_str())
        .collect();
    let missing: Vec<usize> = (0..n)
        .filter(|i| !phones.contains(sim_phone(*i).as_str()))
        .take(n.saturating_sub(existing.len()))
        .collect();
    let bodies: Vec<Value> = missing
        .iter()
        .map(|&i| {
            let model = &existing[i % existing.len()];
            // A few hundred metres around the model shop, so distances stay plausible.
            let jitter =
                |v: &Value, k: usize| v.as_f64().map(|x| x + ((k % 7) as f64 - 3.0) * 0.001);
            json!({
                "name": format!("Simulated Kirana {i}"),
                "phone": sim_phone(i),
                "district": model["district"],
                "lat": jitter(&model["lat"], i),
                "lng": jitter(&model["lng"], i / 7),
            })
        })
        .collect();
    let created = in_parallel(bodies, |body| {
        let (client, url, staff) = (
            client.clone(),
            base.join("api/v1/retailers"),
            staff.to_string(),
        );
        async move {
            create(
                &client,
                url?,
                &staff,
                &body,
                "registering a simulated retailer",
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    Ok(created.len())
}

/// Runs `f` over `inputs`, [`SETUP_CONCURRENCY`] at a time; the outputs in no set order, or
/// the first error.
pub(crate) async fn in_parallel<I, O, F, Fut>(inputs: Vec<I>, f: F) -> anyhow::Result<Vec<O>>
where
    I: Send + 'static,
    O: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: Future<Output = anyhow::Result<O>> + Send + 'static,
{
    let mut out = Vec::with_capacity(inputs.len());
    let mut running = JoinSet::new();
    for input in inputs {
        if running.len() >= SETUP_CONCURRENCY
            && let Some(done) = running.join_next().await
        {
            out.push(done??);
        }
        running.spawn(f(input));
    }
    while let Some(done) = running.join_next().await {
        out.push(done??);
    }
    Ok(out)
}
