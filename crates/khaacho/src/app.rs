//! The application handle shared by HTTP handlers, jobs and the CLI.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::auth::Auth;
use crate::base::db::Db;
use crate::base::group_commit::GroupCommit;
use crate::catalog::cache::CatalogCache;
use crate::channels::inbound::InboundWriter;
use crate::config::Settings;
use crate::fulfilment::batch::PartActionWriter;
use crate::orders::backpressure::Backpressure;
use crate::orders::confirmations::ConfirmationWriter;
use crate::orders::intake::{Intake, IntakeWriter};
use crate::queue::{QueueHost, QueueSettings};

/// Cheap-to-clone handle on the process's shared state: the database, settings and caches.
/// Nothing here is per-node truth, so any number of API processes can run side by side.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    settings: Settings,
    catalog: CatalogCache,
    intake_writer: OnceLock<GroupCommit<IntakeWriter>>,
    inbound_writer: OnceLock<GroupCommit<InboundWriter>>,
    part_actions: OnceLock<GroupCommit<PartActionWriter>>,
    confirmations: OnceLock<GroupCommit<ConfirmationWriter>>,
    work: OnceLock<tokio::runtime::Handle>,
    backpressure: Backpressure,
    agents: khaacho_agents::AgentChain,
    auth: Auth,
    clock: crate::base::time::Clock,
    volumes: crate::fulfilment::facts::VolumeCache,
    outbox: crate::channels::outbox::Sender,
    webhooks: crate::webhooks::sender::Deliverer,
    sla: crate::base::sla::SlaRecorder,
    mode: crate::base::mode::Mode,
    live: crate::live::hub::Hub,
}

impl App {
    /// Wraps an open database with the given settings and security state.
    pub fn new(db: Db, settings: Settings, auth: Auth) -> Self {
        // Install the metrics recorder before anything records.
        crate::telemetry::metrics_handle();
        let catalog = CatalogCache::new(Duration::from_secs(30));
        // Settings::validate already built the chain once, so this cannot fail for loaded
        // settings; hand-made settings with a broken chain get the local parser only.
        let agents = khaacho_agents::AgentChain::from_config(&settings.agents)
            .unwrap_or_else(|_| khaacho_agents::AgentChain::local_only());
        let backpressure = Backpressure::new(settings.backpressure.clone());
        let outbox = crate::channels::outbox::Sender::new(&settings.channels);
        let webhooks = crate::webhooks::sender::Deliverer::new(&settings.webhooks);
        let live = crate::live::hub::Hub::new(db.clone(), settings.live.clone());
        Self {
            inner: Arc::new(Inner {
                db,
                settings,
                catalog,
                intake_writer: OnceLock::new(),
                inbound_writer: OnceLock::new(),
                part_actions: OnceLock::new(),
                confirmations: OnceLock::new(),
                work: OnceLock::new(),
                backpressure,
                agents,
                auth,
                clock: Default::default(),
                volumes: Default::default(),
                outbox,
                webhooks,
                sla: Default::default(),
                mode: Default::default(),
                live,
            }),
        }
    }

    /// Connects to the configured database and applies migrations.
    pub async fn connect(settings: Settings) -> anyhow::Result<Self> {
        let db = Db::connect(settings.database_url(), settings.db_max_connections).await?;
        db.migrate().await?;
        crate::maintenance::ensure_partitions(&db).await?;
        let auth = Auth::load(&db, &settings).await?;
        let app = Self::new(db, settings, auth);
        app.mode().refresh(app.db()).await?;
        Ok(app)
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The order intake, for any channel (its group-commit writer starts on first use,
    /// inside the runtime).
    pub fn intake(&self) -> Intake<'_> {
        let writer = self.inner.intake_writer.get_or_init(|| {
            GroupCommit::start_on(IntakeWriter::new(self.inner.db.clone()), &self.work())
        });
        Intake {
            db: &self.inner.db,
            catalog: &self.inner.catalog,
            limits: &self.inner.settings.pipeline,
            writer,
            pressure: &self.inner.backpressure,
        }
    }

    /// The group commit of inbound channel messages (started on first use, inside the
    /// runtime).
    pub fn inbound_messages(&self) -> &GroupCommit<InboundWriter> {
        self.inner.inbound_writer.get_or_init(|| {
            GroupCommit::start_on(InboundWriter::new(self.inner.db.clone()), &self.work())
        })
    }

    /// The group commit of vendors' accepts, dispatches and deliveries (started on first
    /// use, inside the runtime; `fulfilment::batch`).
    pub fn part_actions(&self) -> &GroupCommit<PartActionWriter> {
        self.inner.part_actions.get_or_init(|| {
            GroupCommit::start_on(
                PartActionWriter {
                    postgres: self.inner.db.is_postgres(),
                },
                &self.work(),
            )
        })
    }

    /// The group commit of retailers' confirmations of receipt (started on first use, inside
    /// the runtime; `orders::confirmations`).
    pub fn confirmations(&self) -> &GroupCommit<ConfirmationWriter> {
        self.inner.confirmations.get_or_init(|| {
            GroupCommit::start_on(
                ConfirmationWriter {
                    postgres: self.inner.db.is_postgres(),
                },
                &self.work(),
            )
        })
    }

    /// Runs this app's group commits on `work` (the process's work runtime, `base::work`);
    /// `false` when they already have a runtime — a group commit started before, or an
    /// earlier call — and stay there.
    pub fn run_work_on(&self, work: tokio::runtime::Handle) -> bool {
        self.inner.work.set(work).is_ok()
    }

    /// The runtime the group commits run on: the one [`App::run_work_on`] named, or else the
    /// current runtime, fixed by the first group commit to start.
    pub fn work(&self) -> tokio::runtime::Handle {
        self.inner
            .work
            .get_or_init(tokio::runtime::Handle::current)
            .clone()
    }

    /// The order-text parser chain (LLM providers, then the local parser).
    pub fn agents(&self) -> &khaacho_agents::AgentChain {
        &self.inner.agents
    }

    /// Keys, refresh tokens and the rate limiter.
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// The clock deadlines are judged by (wall time; tests move it forward).
    pub fn clock(&self) -> &crate::base::time::Clock {
        &self.inner.clock
    }

    /// 30-day vendor volumes per product, as routing last read them.
    pub fn volumes(&self) -> &crate::fulfilment::facts::VolumeCache {
        &self.inner.volumes
    }

    /// The Twilio client of the outbox sender (one resilience stack per process).
    pub fn outbox(&self) -> &crate::channels::outbox::Sender {
        &self.inner.outbox
    }

    /// The webhook sender's HTTP client and resilience stacks (one per process).
    pub fn webhooks(&self) -> &crate::webhooks::sender::Deliverer {
        &self.inner.webhooks
    }

    /// This process's rolling record of HTTP requests (`GET /api/v1/sla`).
    pub fn sla(&self) -> &crate::base::sla::SlaRecorder {
        &self.inner.sla
    }

    /// This process's copy of the operating mode (safe mode, degradation level).
    pub fn mode(&self) -> &crate::base::mode::Mode {
        &self.inner.mode
    }

    /// This process's live-updates hub (`/api/v1/ws`).
    pub fn live(&self) -> &crate::live::hub::Hub {
        &self.inner.live
    }

    /// The catalogue view used by the intake.
    pub fn catalog(&self) -> &CatalogCache {
        &self.inner.catalog
    }
}

impl QueueHost for App {
    fn db(&self) -> &Db {
        &self.inner.db
    }

    fn queue_settings(&self) -> &QueueSettings {
        &self.inner.settings.queue
    }

    fn paused(&self, queue: &str) -> bool {
        self.inner.mode.paused(queue)
    }
}

/// What this application's jobs run with.
pub type JobContext = crate::queue::JobContext<App>;
