//! The `khaacho` command: every role and tool of the platform in one binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use khaacho::app::App;
use khaacho::config::Settings;
use khaacho::server::{self, Roles};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

// glibc malloc showed up high in the intake profile (many small, short-lived allocations
// across the runtime's threads); mimalloc handles that pattern better.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "khaacho",
    version,
    about = "Order platform for wholesale trade in Nepal"
)]
struct Cli {
    /// Configuration file (default: ./khaacho.toml when present).
    #[arg(long, global = true, env = "KHAACHO_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// API, workers and scheduler in one process (the embedded default).
    Serve {
        /// Load the demo data set first when the database has no products.
        #[arg(long)]
        demo: bool,
        /// Also play the demo's vendors and retailers in the background (`khaacho simulate`
        /// at an order every few seconds), so orders move through every state.
        #[arg(long)]
        simulate: bool,
    },
    /// Only the HTTP API (scale out behind a load balancer).
    Api,
    /// Only the queue workers and the scheduler.
    Worker,
    /// Apply database migrations and create partitions, then exit.
    Migrate,
    /// Load data.
    Seed {
        /// The demo data set: products, vendors with offers, retailers.
        #[arg(long)]
        demo: bool,
    },
    /// Catalogue CSV import and export.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Administration: the job queue.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Load-test a running server (loopback only).
    Loadtest(khaacho_loadgen::LoadtestArgs),
    /// Play vendors and retailers against a running server (loopback only): accept, reject
    /// or ignore offers, give a few back, dispatch, deliver (some short), confirm and pay, while placing
    /// orders; reports what happened and 202 → routed.
    Simulate(khaacho_loadgen::simulate::SimulateArgs),
    /// Talk to a local server as a phone through WhatsApp: each line of stdin is posted as a
    /// signed Twilio webhook (channels.twilio_auth_token, channels.public_url as the server
    /// has them) and the replies from the outbox are printed.
    Chat {
        /// The phone writing, e.g. `+9779800000001` (a retailer's or vendor's phone).
        #[arg(long)]
        phone: String,
        /// The running server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// The channels' inbound benchmark against a running server (loopback only): signed
    /// Twilio webhooks open loop from the retailers' phones, then the processing followed in
    /// the database until every message is handled.
    LoadtestMessages(khaacho::channels::flood::FloodArgs),
    /// The live-updates benchmark against a running server (loopback only): opens many
    /// WebSockets subscribed to `orders`, places orders one at a time and times each one's
    /// event on every socket.
    LoadtestWs(khaacho::live::bench::WsBenchArgs),
    /// Parse order messages offline against a catalogue CSV (no database needed).
    Parse {
        /// Catalogue CSV: `sku,name,aliases,unit,pack_size,price_npr,category`.
        #[arg(long)]
        catalog: PathBuf,
        /// JSON lines `{"id","text"}`; without it, one message is read from stdin.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Where to write JSON lines (default stdout).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Create or update products from a CSV file (all rows or none).
    Import {
        /// CSV with header `sku,name,aliases,unit,pack_size,price_npr,category`.
        file: PathBuf,
    },
    /// Write every product as CSV (to stdout without a file).
    Export {
        /// Output file.
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// List jobs.
    Jobs {
        /// `queued`, `running` or `dead`.
        #[arg(long)]
        status: Option<String>,
        /// Job kind.
        #[arg(long)]
        kind: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Put a dead job back in its queue.
    RetryJob {
        /// Job id.
        id: Uuid,
    },
    /// Delete a dead job.
    DiscardJob {
        /// Job id.
        id: Uuid,
    },
    /// Create a user (the way to make the first admin; prints a generated password once
    /// unless --password-stdin).
    CreateUser {
        /// Login name.
        #[arg(long)]
        username: String,
        /// `admin`, `operator`, `vendor` or `retailer`.
        #[arg(long)]
        role: String,
        /// Optional e-mail (also accepted at login).
        #[arg(long)]
        email: Option<String>,
        /// Tenant of a retailer user.
        #[arg(long)]
        retailer_id: Option<Uuid>,
        /// Tenant of a vendor user.
        #[arg(long)]
        vendor_id: Option<Uuid>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Create an API key scoped to a role and tenant; prints the key once on stdout.
    CreateApiKey {
        /// What it is for.
        #[arg(long)]
        name: String,
        /// `admin`, `operator`, `vendor` or `retailer`.
        #[arg(long)]
        role: String,
        /// Tenant of a retailer key.
        #[arg(long)]
        retailer_id: Option<Uuid>,
        /// Tenant of a vendor key.
        #[arg(long)]
        vendor_id: Option<Uuid>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Loadtest(args) = cli.command {
        let json = args.json;
        if args.find_capacity {
            let report = khaacho_loadgen::find_capacity(args).await?;
            return khaacho_loadgen::print_capacity(&report, json);
        }
        let report = khaacho_loadgen::run(args).await?;
        return khaacho_loadgen::print_report(&report, json);
    }
    if let Command::Simulate(args) = cli.command {
        let json = args.json;
        let report = khaacho_loadgen::simulate::run_until(args, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        return khaacho_loadgen::simulate::print_sim_report(&report, json);
    }
    if let Command::Parse {
        catalog,
        input,
        output,
    } = cli.command
    {
        return parse_files(&catalog, input.as_deref(), output.as_deref());
    }
    let settings = Settings::load(cli.config.as_deref())?;
    if let Command::Chat { phone, url } = &cli.command {
        // No logging set up: the terminal is the conversation.
        let app = App::connect(settings.clone()).await?;
        let (token, _) = app
            .auth()
            .keys
            .issue(Uuid::now_v7(), khaacho::auth::Role::Operator, None)
            .context("issuing a token to read the outbox")?;
        let chat = khaacho::channels::chat::Chat::new(&settings, url, phone, token)?;
        let stdin = tokio::io::BufReader::new(tokio::io::stdin());
        return chat.run(stdin, &mut std::io::stdout()).await;
    }
    // Held to the end: dropping it flushes the trace exporter.
    let _telemetry = khaacho::telemetry::init_logging(&settings)?;
    let app = App::connect(settings).await?;
    match cli.command {
        Command::Serve { demo, simulate } => {
            if demo && khaacho::catalog::repo::count_products(app.db()).await? == 0 {
                let r = khaacho::seed::demo_with_credit(&app).await?;
                tracing::info!(
                    products = r.products,
                    vendors = r.vendors,
                    retailers = r.retailers,
                    offers = r.offers,
                    credit_accounts = r.credit_accounts,
                    "demo data loaded"
                );
            }
            if demo && khaacho::auth::repo::count_users(app.db()).await? == 0 {
                khaacho::auth::cli::print_demo_access(
                    &khaacho::auth::cli::demo_access(&app).await?,
                );
            }
            if simulate {
                demo_simulation(app.settings().listen);
            }
            serve(
                app,
                Roles {
                    api: true,
                    workers: true,
                },
            )
            .await
        }
        Command::Api => {
            serve(
                app,
                Roles {
                    api: true,
                    workers: false,
                },
            )
            .await
        }
        Command::Worker => {
            serve(
                app,
                Roles {
                    api: false,
                    workers: true,
                },
            )
            .await
        }
        Command::Migrate => {
            println!("migrations applied ({})", app.db().kind());
            Ok(())
        }
        Command::Seed { demo } => {
            anyhow::ensure!(demo, "say which data set to load: `khaacho seed --demo`");
            let r = khaacho::seed::demo_with_credit(&app).await?;
            println!(
                "demo data: {} products upserted, {} vendors, {} retailers, {} offers and {} credit accounts with histories created",
                r.products, r.vendors, r.retailers, r.offers, r.credit_accounts
            );
            khaacho::auth::cli::print_demo_access(&khaacho::auth::cli::demo_access(&app).await?);
            Ok(())
        }
        Command::Catalog { command } => catalog(&app, command).await,
        Command::Admin { command } => admin(&app, command).await,
        Command::LoadtestMessages(args) => {
            let report = khaacho::channels::flood::run(&app, &args).await?;
            khaacho::channels::flood::print(&report, &args);
            Ok(())
        }
        Command::LoadtestWs(args) => {
            let report = khaacho::live::bench::run(&app, &args).await?;
            khaacho::live::bench::print(&report, args.json);
            Ok(())
        }
        Command::Loadtest(_)
        | Command::Simulate(_)
        | Command::Parse { .. }
        | Command::Chat { .. } => Ok(()),
    }
}

fn parse_files(
    catalog: &std::path::Path,
    input: Option<&std::path::Path>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use std::io::{BufReader, BufWriter, Read, Write};
    let file =
        std::fs::File::open(catalog).with_context(|| format!("reading {}", catalog.display()))?;
    let catalog = khaacho_parser::Catalog::from_csv(BufReader::new(file))
        .map_err(|e| anyhow::anyhow!("{}: {e}", catalog.display()))?;
    let mut out: Box<dyn Write> = match output {
        Some(p) => Box::new(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    match input {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
            khaacho_parser::run_jsonl(&catalog, BufReader::new(f), &mut out)?;
        }
        None => {
            // One message on stdin: wrap it as a single JSON line with id "stdin".
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            let line =
                serde_json::json!({ "id": "stdin", "text": text.trim_end_matches(['\n', '\r']) })
                    .to_string();
            khaacho_parser::run_jsonl(&catalog, line.as_bytes(), &mut out)?;
        }
    }
    out.flush().context("writing output")
}

/// Runs `khaacho simulate` against this process in the background at a pace a person can
/// follow ([`khaacho_loadgen::simulate::demo_args`]), run after run until the process stops.
fn demo_simulation(listen: std::net::SocketAddr) {
    let host = if listen.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        listen.ip()
    };
    let url = format!("http://{}", std::net::SocketAddr::new(host, listen.port()));
    let args = match khaacho_loadgen::simulate::demo_args(&url) {
        Ok(args) => args,
        Err(e) => {
            tracing::warn!(error = %e, "the demo simulation's options did not parse");
            return;
        }
    };
    tokio::spawn(async move {
        // Let the listener come up first.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        loop {
            tracing::info!(%url, "demo simulation playing vendors and retailers");
            let run = khaacho_loadgen::simulate::run_until(args.clone(), std::future::pending());
            if let Err(e) = run.await {
                tracing::warn!(error = format!("{e:#}"), "demo simulation stopped");
                return;
            }
        }
    });
}

async fn serve(app: App, roles: Roles) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    server::cancel_on_signal(shutdown.clone());
    server::run(app, roles, None, shutdown).await
}

async fn catalog(app: &App, command: CatalogCommand) -> anyhow::Result<()> {
    match command {
        CatalogCommand::Import { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            match khaacho::catalog::service::import_csv(app, &bytes).await {
                Ok(n) => {
                    println!("{n} products imported");
                    Ok(())
                }
                Err(khaacho::catalog::service::CatalogError::Invalid(errors)) => {
                    for e in &errors {
                        eprintln!("{}: {}", e.field, e.message);
                    }
                    anyhow::bail!(
                        "{} problem(s) in {}; nothing was imported",
                        errors.len(),
                        file.display()
                    )
                }
                Err(e) => Err(anyhow::Error::new(e).context("importing the catalogue")),
            }
        }
        CatalogCommand::Export { file } => {
            let csv = khaacho::catalog::service::export_csv(app).await?;
            match file {
                Some(f) => {
                    std::fs::write(&f, csv).with_context(|| format!("writing {}", f.display()))
                }
                None => {
                    use std::io::Write;
                    std::io::stdout()
                        .write_all(&csv)
                        .context("writing to stdout")
                }
            }
        }
    }
}

async fn admin(app: &App, command: AdminCommand) -> anyhow::Result<()> {
    use khaacho::base::audit::Entry;
    use khaacho::queue::admin;
    match command {
        AdminCommand::Jobs {
            status,
            kind,
            limit,
        } => {
            let jobs = admin::list(
                app.db(),
                &admin::JobFilter {
                    status,
                    kind,
                    before: None,
                    limit,
                },
            )
            .await?;
            for j in jobs {
                println!(
                    "{}\t{}\t{}\tattempts {}/{}\t{}",
                    j.id,
                    j.kind,
                    j.status,
                    j.attempts,
                    j.max_attempts,
                    j.last_error.unwrap_or_default()
                );
            }
            Ok(())
        }
        AdminCommand::RetryJob { id } => {
            let mut tx = app.db().begin().await?;
            let queue = admin::retry_dead(&mut tx, id).await?;
            let Some(queue) = queue else {
                anyhow::bail!("no dead job has id {id}");
            };
            let entry = Entry::new("cli", Some("admin"), "job.retry").on("job", id);
            khaacho::base::audit::record_tx(&mut tx, &entry).await?;
            tx.commit().await?;
            admin::wake_queue(app.db(), &queue).await?;
            println!("job {id} re-queued");
            Ok(())
        }
        AdminCommand::DiscardJob { id } => {
            let mut tx = app.db().begin().await?;
            anyhow::ensure!(
                admin::discard_dead(&mut tx, id).await?,
                "no dead job has id {id}"
            );
            let entry = Entry::new("cli", Some("admin"), "job.discard").on("job", id);
            khaacho::base::audit::record_tx(&mut tx, &entry).await?;
            tx.commit().await?;
            println!("job {id} discarded");
            Ok(())
        }
        AdminCommand::CreateUser {
            username,
            role,
            email,
            retailer_id,
            vendor_id,
            password_stdin,
        } => {
            khaacho::auth::cli::create_user(
                app,
                username,
                email,
                &role,
                retailer_id,
                vendor_id,
                password_stdin,
            )
            .await
        }
        AdminCommand::CreateApiKey {
            name,
            role,
            retailer_id,
            vendor_id,
        } => khaacho::auth::cli::create_api_key(app, name, &role, retailer_id, vendor_id).await,
    }
}
