//! `khaacho simulate`: plays the vendors and the retailers against a running server, so
//! orders move through every state — for the demo, and to load-test the whole lifecycle.
//!
//! It signs in as an admin, mints one API key per vendor and per retailer (revoked when it
//! stops) and an operator key for the lists and the payments, then, every `--poll`:
//! - vendors answer the new offers (the newest pages of the offered parts) — accept
//!   (`--accept`), reject with a reason (`--reject`) or let the offer expire (the rest) —
//!   each after a random delay up to `--respond-within`; a vendor then dispatches and
//!   delivers what it accepted after random delays up to `--ship-within`, some short
//!   (`--short`: half of the first line), as its app would, without looking it up again,
//!   or gives a few back before dispatch (`--give-back`: the next vendor is offered them);
//! - the retailer of a delivered part (the shop the part names) reads its order with its
//!   own key and, once the order's last part was delivered, confirms it (`--confirm`; the
//!   rest complete automatically after 48 h) and pays some at once (`--pay`);
//! - every eighth round reads every list whole (offered, accepted and dispatched parts,
//!   delivered orders) for what the simulation did not start (an operator acting in the
//!   console, an offer reassigned further down the list);
//! - with `--rate R > 0`, the load generator places R orders per second meanwhile and times
//!   202 → routed (its e2e sample waits through `received` and `validated`).
//!
//! Every action goes over HTTP as the party would act; nothing touches the database.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use rand::RngExt;
use reqwest::{Client, StatusCode, Url};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::market::{self, MarketArgs, create, ids, in_parallel};
use crate::validate::{ensure_loopback, parse_duration};

/// Options of `khaacho simulate`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Base URL of the Khaacho API; loopback only
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// How long to run, e.g. 60s, 10m
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Orders placed per second meanwhile (0: place none, only play the parties)
    #[arg(long, value_name = "R", default_value_t = 1.0)]
    pub rate: f64,

    /// Share of offers a vendor accepts
    #[arg(long, value_name = "P", default_value_t = 0.85)]
    pub accept: f64,

    /// Share of offers a vendor rejects (the rest it ignores until they expire)
    #[arg(long, value_name = "P", default_value_t = 0.05)]
    pub reject: f64,

    /// Share of accepted parts a vendor gives back before dispatch (it cannot deliver after
    /// all); the part goes to the next vendor
    #[arg(long, value_name = "P", default_value_t = 0.02)]
    pub give_back: f64,

    /// Share of deliveries that are short (half of the first line arrives)
    #[arg(long, value_name = "P", default_value_t = 0.1)]
    pub short: f64,

    /// Share of delivered orders the retailer confirms (the rest complete automatically)
    #[arg(long, value_name = "P", default_value_t = 0.8)]
    pub confirm: f64,

    /// Share of confirmed credit orders the retailer pays at once
    #[arg(long, value_name = "P", default_value_t = 0.3)]
    pub pay: f64,

    /// A vendor answers an offer after a random delay up to this, e.g. 2s
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub respond_within: Duration,

    /// A vendor dispatches (and then delivers) after a random delay up to this
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub ship_within: Duration,

    /// How often the parties look at their work
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_duration)]
    pub poll: Duration,

    /// The market to run against: vendors' capacity and hours, how many retailers
    #[command(flatten)]
    pub market: MarketArgs,

    /// Admin to sign in as (mints and revokes the parties' API keys)
    #[arg(long, value_name = "NAME", default_value = "admin")]
    pub username: String,

    /// Password of --username (default: the demo admin's)
    #[arg(
        long,
        value_name = "PASSWORD",
        default_value = "demo-admin-password",
        hide_default_value = true
    )]
    pub password: String,

    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

/// What the simulation did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SimReport {
    /// Actions by name (`accept`, `reject`, `ignore`, `dispatch`, `deliver`, `deliver_short`,
    /// `confirm`, `pay`), and how often the server shed a request that was then tried again
    /// (`retried_after_503_or_429`) or given up after three tries (`gave_up_after_retries`),
    /// and the rounds whose lists the server failed (`list_rounds_failed`).
    pub actions: std::collections::BTreeMap<String, u64>,
    /// Refused or failed actions by `action:status`.
    pub refused: std::collections::BTreeMap<String, u64>,
    /// Orders per state at the end (the server's `khaacho_orders` gauge).
    pub orders: std::collections::BTreeMap<String, i64>,
    /// The order placement's report, when orders were placed.
    pub load: Option<crate::Report>,
}

/// Remembers what was already handled, up to a bound (oldest forgotten first).
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    const CAP: usize = 500_000;

    fn new() -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `key` is remembered.
    fn contains(&self, key: &str) -> bool {
        self.set.contains(key)
    }

    /// Whether `key` is new (and now remembered).
    fn first(&mut self, key: String) -> bool {
        if !self.set.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > Self::CAP
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

struct Sim {
    args: SimulateArgs,
    base: Url,
    client: Client,
    /// The operator key's header: lists, payments.
    staff: String,
    /// Header per vendor id / retailer id.
    vendors: HashMap<String, String>,
    retailers: HashMap<String, String>,
    report: Mutex<SimReport>,
    seen: Mutex<Seen>,
    /// Rounds so far: every [`Sim::SWEEP_EVERY`]th looks at every list, every
    /// `SWEEP_EVERY²`th reads them whole.
    rounds: std::sync::atomic::AtomicU64,
}

impl Sim {
    fn count(&self, action: &str) {
        let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
        *r.actions.entry(action.to_string()).or_default() += 1;
    }

    fn refused(&self, action: &str, status: StatusCode) {
        let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
        *r.refused
            .entry(format!("{action}:{}", status.as_u16()))
            .or_default() += 1;
    }

    fn first(&self, key: String) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first(key)
    }

    /// Every item of a list route, newest first, up to `pages` pages of 200. Unless `whole`,
    /// the reading stops after a page whose every item was handled already (by the name
    /// `known` gives it): the lists are newest first, so what follows is older still.
    async fn list(
        &self,
        path: &str,
        pages: usize,
        known: &(dyn Fn(&Value) -> String + Sync),
        whole: bool,
    ) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..pages {
            let mut url = self.base.join(path)?;
            url.query_pairs_mut().append_pair("limit", "200");
            if let Some(c) = &cursor {
                url.query_pairs_mut().append_pair("cursor", c);
            }
            let resp = self
                .client
                .get(url)
                .header("authorization", &self.staff)
                .send()
                .await?;
            if !resp.status().is_success() {
                bail!("GET {path}: {}", resp.status());
            }
            let page: Value = resp.json().await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            let all_known = !whole && {
                let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                items.iter().all(|i| seen.contains(&known(i)))
            };
            out.extend(items);
            match page["next_cursor"].as_str() {
                Some(c) if !all_known => cursor = Some(c.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Sends as a party's app would: a `503` (the server shedding load) or `429` is tried
    /// again after its `Retry-After`, up to three times, before it counts as refused.
    async fn send(
        &self,
        request: impl Fn() -> anyhow::Result<reqwest::RequestBuilder>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut tries = 0;
        loop {
            let resp = request()?.send().await?;
            let again = matches!(
                resp.status(),
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
            );
            if !again || tries == 3 {
                if again {
                    self.count("gave_up_after_retries");
                }
                return Ok(resp);
            }
            tries += 1;
            self.count("retried_after_503_or_429");
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait.min(10))).await;
        }
    }

    /// Posts `body` as `auth` (see [`Sim::send`]); the final status.
    async fn post(&self, auth: &str, path: &str, body: Value) -> anyhow::Result<StatusCode> {
        let url = self.base.join(path)?;
        let resp = self
            .send(|| {
                Ok(self
                    .client
                    .post(url.clone())
                    .header("authorization", auth)
                    .json(&body))
            })
            .await?;
        Ok(resp.status())
    }

    /// How often (in rounds) the accepted, dispatched and delivered lists are looked at, for
    /// parts and orders that changed outside the simulation (an operator acting in the
    /// console) or whose offer was reassigned to another vendor further down the list; every
    /// `SWEEP_EVERY`-th such look reads them whole.
    const SWEEP_EVERY: u64 = 8;

    /// Posts an action as `auth` and counts it under `name`, done or refused (an unreachable
    /// server as 502); whether it succeeded.
    async fn act(&self, name: &str, auth: &str, path: &str, body: Value) -> bool {
        match self.post(auth, path, body).await {
            Ok(s) if s.is_success() => {
                self.count(name);
                true
            }
            Ok(s) => {
                self.refused(name, s);
                false
            }
            Err(_) => {
                self.refused(name, StatusCode::BAD_GATEWAY);
                false
            }
        }
    }

    /// A part action as its vendor; whether it succeeded.
    async fn vendor_act(&self, part: &Value, action: &'static str, body: Value) -> bool {
        let name = match (action, body.get("lines")) {
            ("deliver", Some(_)) => "deliver_short",
            _ => action,
        };
        let id = part["id"].as_str().unwrap_or_default();
        let Some(auth) = part["vendor_id"].as_str().and_then(|v| self.vendors.get(v)) else {
            return false;
        };
        let path = format!("api/v1/fulfilments/{id}/{action}");
        self.act(name, auth, &path, body).await
    }

    fn delay(&self, within: Duration) -> Duration {
        let ms = within.as_millis() as u64;
        if ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::rng().random_range(0..=ms))
        }
    }

    /// What a vendor does with a part it accepted, as its app would, without looking it up
    /// again: dispatch and deliver it after random delays; then its retailer confirms the
    /// order if that was its last part. `from` is the part's status (`accepted`, or
    /// `dispatched` to deliver only).
    async fn carry(self: Arc<Self>, part: Value, from: &'static str) {
        // By the offer: a part given back is carried again by its next vendor.
        let id = offer_of(&part).to_string();
        if from == "accepted" {
            if !self.first(format!("dispatch:{id}")) {
                return;
            }
            tokio::time::sleep(self.delay(self.args.ship_within)).await;
            if rand::rng().random::<f64>() < self.args.give_back {
                let body = json!({ "reason": "simulated: the truck broke down" });
                self.vendor_act(&part, "cancel", body).await;
                return;
            }
            if !self.vendor_act(&part, "dispatch", json!({})).await {
                return;
            }
        }
        if !self.first(format!("deliver:{id}")) {
            return;
        }
        tokio::time::sleep(self.delay(self.args.ship_within)).await;
        let short = rand::rng().random::<f64>() < self.args.short;
        let body = match (short, part["lines"].get(0)) {
            (true, Some(l)) => json!({ "lines": [{ "line_no": l["line_no"],
                "quantity": (l["quantity"].as_f64().unwrap_or(0.0) / 2.0).floor() }] }),
            _ => json!({}),
        };
        if !self.vendor_act(&part, "deliver", body).await {
            return;
        }
        let Some(order_id) = part["order_id"].as_str() else {
            return;
        };
        let Ok(url) = self.base.join(&format!("api/v1/orders/{order_id}")) else {
            return;
        };
        // The retailer's app reads its order as any client would (a shed read is asked
        // again); the part names its shop. A shop the simulation has no key of is read as staff.
        let auth = part["deliver_to"]["retailer_id"]
            .as_str()
            .and_then(|r| self.retailers.get(r))
            .unwrap_or(&self.staff);
        let order = match self
            .send(|| Ok(self.client.get(url.clone()).header("authorization", auth)))
            .await
        {
            Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
            _ => None,
        };
        if let Some(order) = order.filter(|o| o["status"] == "delivered") {
            self.confirm(order).await;
        }
    }

    /// The retailer confirms a delivered order (`--confirm` of them; the rest are left to
    /// complete on their own) and pays some credit orders at once (`--pay`).
    async fn confirm(&self, order: Value) {
        let Some(id) = order["id"].as_str().map(str::to_string) else {
            return;
        };
        if !self.first(format!("confirm:{id}")) {
            return;
        }
        if rand::rng().random::<f64>() >= self.args.confirm {
            self.count("leave_to_auto_complete");
            return;
        }
        let pay = order["payment_mode"] == "credit" && rand::rng().random::<f64>() < self.args.pay;
        let retailer = order["retailer_id"].as_str().unwrap_or_default();
        let Some(auth) = self.retailers.get(retailer) else {
            return;
        };
        let confirm = format!("api/v1/orders/{id}/confirm");
        if !self.act("confirm", auth, &confirm, json!({})).await {
            return;
        }
        let amount = order["totals"]["total_npr"].as_f64().unwrap_or(0.0);
        if pay && amount > 0.0 {
            let body =
                json!({ "amount_npr": amount, "method": "cash", "reference": format!("sim-{id}") });
            let path = format!("api/v1/credit/accounts/{retailer}/payments");
            self.act("pay", &self.staff, &path, body).await;
        }
    }

    /// One look at the vendors' and retailers' work; spawns the actions into `tasks`.
    ///
    /// New offers are found on the newest pages of the offered parts; what follows an
    /// accepted offer is carried by the same task ([`Sim::carry`]). Every
    /// [`Sim::SWEEP_EVERY`]th round also looks at the accepted, dispatched and delivered lists
    /// and picks up what the simulation did not start; every `SWEEP_EVERY`th of those reads
    /// every list whole.
    async fn round(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> anyhow::Result<()> {
        let round = self.rounds.fetch_add(1, Ordering::Relaxed);
        let sweep = round.is_multiple_of(Self::SWEEP_EVERY);
        // Lists are newest first: most rounds stop after a page the simulation handled
        // whole. Every SWEEP_EVERY-th sweep reads them whole, for what changed further down
        // (an operator's action, an older order delivered late). Read whole at every sweep,
        // the delivered orders alone (a fifth of them wait 48 h to complete on their own)
        // grew to 2,000 orders with their lines every two seconds.
        let whole = round.is_multiple_of(Self::SWEEP_EVERY * Self::SWEEP_EVERY);
        let offered = |part: &Value| format!("offer:{}", offer_of(part));
        for part in self
            .list("api/v1/fulfilments?status=offered", 10, &offered, whole)
            .await?
        {
            // One decision per offer (a reassigned part is a new offer to a new vendor).
            if !self.first(offered(&part)) {
                continue;
            }
            let r: f64 = rand::rng().random();
            let (action, body) = if r < self.args.accept {
                ("accept", json!({}))
            } else if r < self.args.accept + self.args.reject {
                (
                    "reject",
                    json!({ "reason": "simulated: cannot supply today" }),
                )
            } else {
                self.count("ignore");
                continue;
            };
            let (sim, wait) = (self.clone(), self.delay(self.args.respond_within));
            tasks.spawn(async move {
                tokio::time::sleep(wait).await;
                if sim.vendor_act(&part, action, body).await && action == "accept" {
                    sim.carry(part, "accepted").await;
                }
            });
        }
        if !sweep {
            return Ok(());
        }
        for (status, step) in [("accepted", "dispatch"), ("dispatched", "deliver")] {
            let handled = move |part: &Value| format!("{step}:{}", offer_of(part));
            for part in self
                .list(
                    &format!("api/v1/fulfilments?status={status}"),
                    10,
                    &handled,
                    whole,
                )
                .await?
            {
                tasks.spawn(self.clone().carry(part, status));
            }
        }
        let confirmed =
            |order: &Value| format!("confirm:{}", order["id"].as_str().unwrap_or_default());
        for order in self
            .list("api/v1/orders?status=delivered", 10, &confirmed, whole)
            .await?
        {
            let sim = self.clone();
            tasks.spawn(async move { sim.confirm(order).await });
        }
        Ok(())
    }
}

/// The id of `part`'s latest offer (its own id when it has none): what the simulation keys
/// its decisions by, as a part given back or rejected is a new offer to another vendor.
fn offer_of(part: &Value) -> &str {
    let id = part["id"].as_str().unwrap_or_default();
    part["offers"]
        .as_array()
        .and_then(|o| o.last())
        .and_then(|o| o["id"].as_str())
        .unwrap_or(id)
}

/// Signs in and returns the access token.
async fn login(client: &Client, base: &Url, user: &str, password: &str) -> anyhow::Result<String> {
    let resp = client
        .post(base.join("api/v1/auth/login")?)
        .json(&json!({ "username": user, "password": password }))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    if resp.status() != StatusCode::OK {
        bail!(
            "signing in as {user} failed ({}); pass --username/--password of an admin (run `khaacho seed --demo` for the demo admin)",
            resp.status()
        );
    }
    let body: Value = resp.json().await?;
    body["access_token"]
        .as_str()
        .map(|t| format!("Bearer {t}"))
        .context("login answer has no access_token")
}

/// Mints an API key; returns `(key id, Authorization header)`.
async fn mint(
    client: &Client,
    base: &Url,
    admin: &str,
    body: Value,
) -> anyhow::Result<(String, String)> {
    let url = base.join("api/v1/auth/api-keys")?;
    let v = create(client, url, admin, &body, "creating an API key").await?;
    let key = v["key"].as_str().context("no key in the answer")?;
    let id = v["id"]
        .as_str()
        .or(v["info"]["id"].as_str())
        .unwrap_or_default();
    Ok((id.to_string(), format!("Bearer {key}")))
}

/// Runs the simulation until `--duration` passes or `shutdown` resolves.
pub async fn run_until<F>(args: SimulateArgs, shutdown: F) -> anyhow::Result<SimReport>
where
    F: Future<Output = ()> + Send + 'static,
{
    for (name, p) in [
        ("accept", args.accept),
        ("reject", args.reject),
        ("short", args.short),
        ("give-back", args.give_back),
        ("confirm", args.confirm),
        ("pay", args.pay),
    ] {
        if !(0.0..=1.0).contains(&p) {
            bail!("--{name} must be a share between 0 and 1");
        }
    }
    if args.accept + args.reject > 1.0 {
        bail!("--accept plus --reject must be at most 1");
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!("--rate must be zero or more orders per second");
    }
    let base = ensure_loopback(&args.url)?;
    // The orders' load generator, judged before anything is set up: one it would refuse
    // (a run longer than it allows) would place no order while the parties wait.
    let load_args = if args.rate > 0.0 {
        Some(load_args(&args, &base).context("--rate places orders with `khaacho loadtest`")?)
    } else {
        None
    };
    let client = Client::builder().timeout(Duration::from_secs(10)).build()?;
    let admin = login(&client, &base, &args.username, &args.password).await?;
    let mut minted = Vec::new();
    let (id, staff) = mint(
        &client,
        &base,
        &admin,
        json!({ "name": "simulator: operator", "role": "operator" }),
    )
    .await?;
    minted.push(id);
    let market = market::prepare(&client, &base, &staff, &args.market).await?;
    if market.registered > 0 {
        eprintln!(
            "khaacho simulate: registered {} retailers",
            market.registered
        );
    }
    let mut vendors = HashMap::new();
    for v in market.vendors {
        let (id, auth) = mint(
            &client,
            &base,
            &admin,
            json!({ "name": format!("simulator: vendor {v}"), "role": "vendor", "vendor_id": v }),
        )
        .await?;
        minted.push(id);
        vendors.insert(v, auth);
    }
    let listed = ids(&client, &base, &staff, "api/v1/retailers").await?;
    let keys = in_parallel(listed, |r| {
        let (client, base, admin) = (client.clone(), base.clone(), admin.clone());
        async move {
            let body = json!({ "name": format!("simulator: retailer {r}"), "role": "retailer", "retailer_id": r });
            let (id, auth) = mint(&client, &base, &admin, body).await?;
            Ok((r, id, auth))
        }
    })
    .await?;
    let mut retailers = HashMap::new();
    for (r, id, auth) in keys {
        minted.push(id);
        retailers.insert(r, auth);
    }
    let sim = Arc::new(Sim {
        args: args.clone(),
        base: base.clone(),
        client: client.clone(),
        staff: staff.clone(),
        vendors,
        retailers,
        report: Mutex::new(SimReport::default()),
        seen: Mutex::new(Seen::new()),
        rounds: std::sync::atomic::AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let load = load_args.map(|mut l| {
        l.api_key = Some(staff.trim_start_matches("Bearer ").to_string());
        l.e2e_waiting = vec!["received".into(), "validated".into()];
        let mut rx = stop_rx.clone();
        tokio::spawn(crate::run_until(l, async move {
            let _ = rx.wait_for(|s| *s).await;
        }))
    });
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop.store(true, Ordering::SeqCst);
            let _ = stop_tx.send(true);
        })
    };
    let end = tokio::time::Instant::now() + args.duration;
    let mut tasks = JoinSet::new();
    // A round whose lists the server shed (503 under overload: reads are shed first) is
    // counted and the next one tried; only a server that fails every round for a minute
    // ends the run.
    let mut last_ok = tokio::time::Instant::now();
    while !stop.load(Ordering::SeqCst) && tokio::time::Instant::now() < end {
        match sim.round(&mut tasks).await {
            Ok(()) => last_ok = tokio::time::Instant::now(),
            Err(e) => {
                sim.count("list_rounds_failed");
                tracing_free_warn(&format!("simulation round failed: {e:#}"));
                if last_ok.elapsed() > Duration::from_secs(60) {
                    bail!(
                        "the server failed every one of the simulation's lists for a minute: {e:#}"
                    );
                }
            }
        }
        while tasks.try_join_next().is_some() {}
        tokio::time::sleep(args.poll).await;
    }
    // Actions already scheduled finish (each bounded by its delay and the request timeout).
    let drain = tokio::time::timeout(
        args.respond_within.max(args.ship_within) + Duration::from_secs(15),
        async { while tasks.join_next().await.is_some() {} },
    );
    if drain.await.is_err() {
        tasks.abort_all();
    }
    let load = match load {
        Some(handle) => Some(handle.await??),
        None => None,
    };
    watcher.abort();
    for id in minted.iter().filter(|id| !id.is_empty()) {
        let _ = client
            .delete(base.join(&format!("api/v1/auth/api-keys/{id}"))?)
            .header("authorization", &admin)
            .send()
            .await;
    }
    let mut report = sim.report.lock().unwrap_or_else(|e| e.into_inner()).clone();
    report.load = load;
    report.orders = order_states(&client, &base).await.unwrap_or_default();
    Ok(report)
}

/// The load generator's options for placing `args.rate` orders a second for the run.
fn load_args(args: &SimulateArgs, base: &Url) -> anyhow::Result<crate::LoadtestArgs> {
    let l = <LoadWrap as clap::Parser>::try_parse_from([
        "loadtest",
        "--url",
        base.as_str(),
        "--rate",
        &args.rate.to_string(),
        "--duration",
        &format!("{}ms", args.duration.as_millis()),
        "--e2e-sample",
        "10",
    ])?
    .args;
    crate::plan(&l)?;
    Ok(l)
}

/// The simulation `serve --demo --simulate` runs against `url` in the background, at a pace a
/// person can follow: an order every five seconds, vendors answering within twenty seconds
/// and shipping within thirty; each run lasts the longest the order generator allows (a
/// day), and the caller starts the next.
pub fn demo_args(url: &str) -> Result<SimulateArgs, clap::Error> {
    <SimWrap as clap::Parser>::try_parse_from([
        "simulate",
        "--url",
        url,
        "--duration",
        "24h",
        "--rate",
        "0.2",
        "--respond-within",
        "20s",
        "--ship-within",
        "30s",
        "--poll",
        "2s",
    ])
    .map(|w| w.args)
}

/// `clap` wrapper to build [`SimulateArgs`] with their defaults.
#[derive(clap::Parser)]
struct SimWrap {
    #[command(flatten)]
    args: SimulateArgs,
}

/// `clap` wrapper to build [`crate::LoadtestArgs`] with its defaults.
#[derive(clap::Parser)]
struct LoadWrap {
    #[command(flatten)]
    args: crate::LoadtestArgs,
}

fn tracing_free_warn(msg: &str) {
    eprintln!("warning: {msg}");
}

/// Orders per state from the server's metrics.
async fn order_states(
    client: &Client,
    base: &Url,
) -> anyhow::Result<std::collections::BTreeMap<String, i64>> {
    let text = client
        .get(base.join("metrics")?)
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("khaacho_orders{state=\"")?;
            let (state, value) = rest.split_once("\"} ")?;
            Some((state.to_string(), value.trim().parse::<f64>().ok()? as i64))
        })
        .collect())
}

/// Prints `report` as JSON or for people.
pub fn print_sim_report(report: &SimReport, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!("vendor and retailer actions:");
    for (k, v) in &report.actions {
        println!("  {k:<24} {v}");
    }
    if !report.refused.is_empty() {
        println!("refused (action:status):");
        for (k, v) in &report.refused {
            println!("  {k:<24} {v}");
        }
    }
    println!("orders by state now:");
    for (k, v) in &report.orders {
        println!("  {k:<24} {v}");
    }
    if let Some(load) = &report.load {
        println!("order placement (e2e = 202 → routed, or held/rejected):");
        crate::print_report(load, false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_simulation_parses_and_places_orders_a_day_per_run() {
        let args = demo_args("http://127.0.0.1:8080").expect("the demo options parse");
        assert_eq!(args.duration, Duration::from_secs(24 * 3600));
        let base = Url::parse(&args.url).expect("a URL");
        load_args(&args, &base).expect("the generator takes the demo run");
        assert_eq!(args.rate, 0.2);
        assert_eq!(args.respond_within, Duration::from_secs(20));
    }

    #[test]
    fn a_run_the_order_generator_would_refuse_is_refused_up_front() {
        let mut args = demo_args("http://127.0.0.1:8080").expect("the demo options parse");
        args.duration = Duration::from_secs(48 * 3600);
        let base = Url::parse(&args.url).expect("a URL");
        let e = load_args(&args, &base).expect_err("two days is longer than it allows");
        assert!(format!("{e:#}").contains("at most 24h"), "{e:#}");
    }
}
