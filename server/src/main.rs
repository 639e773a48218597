//! `facegate`: the server and the command line around FaceGate's engine.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use server::api::ApiLimits;
use server::auth::AdminAuth;
use server::commands::{engine, gallery_bench, migrate, people};
use server::config::{ServeArgs, StoreKind};
use server::conn;
use server::http::{self, AppState};
use server::keys::ApiKeys;
use server::limit::RateLimiter;
use server::service::Service;
use server::site::Site;
use server::store::Store;
use server::store::firebase::{FirebaseConfig, FirebaseStore};
use server::store::sqlite::SqliteStore;
use server::tls::{self, TlsListener};
use server::vision::{DetectorKind, Engine};
use server::web::WebBackend;
use tracing_subscriber::EnvFilter;

/// Face-recognition check-in: the web server and its command line.
#[derive(Parser, Debug)]
#[command(name = "facegate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the check-in app, the admin pages and the JSON API.
    Serve(Box<ServeArgs>),
    /// Enrol a folder of photos: one sub-folder per person, named after them.
    Enroll(Box<people::EnrollArgs>),
    /// Say who is in each image (nothing is logged).
    Identify(Box<people::IdentifyArgs>),
    /// List everyone enrolled.
    People(people::PeopleArgs),
    /// Print the check-in log (`--csv` for spreadsheets).
    Checkins(people::CheckInsArgs),
    /// Print the faces found in images (boxes, scores, landmarks) as JSON.
    Detect(engine::DetectArgs),
    /// Print the embedding of the largest face in each image as JSON.
    Embed(engine::EmbedArgs),
    /// Compare the largest faces of two photos: same person or not.
    Verify(engine::VerifyArgs),
    /// Time each stage of the face engine next to onnxruntime.
    Bench(engine::BenchArgs),
    /// Time gallery search (10k to 1M rows) and start-up with 10k people.
    BenchGallery(gallery_bench::GalleryBenchArgs),
    /// Copy everything from the embedded store into Firebase, or back (resumable).
    Migrate(migrate::MigrateArgs),
    /// Create, list and revoke API keys for the JSON API.
    Keys(people::KeysArgs),
    /// Read a password on standard input and print its Argon2 hash, for
    /// FACEGATE_ADMIN_PASSWORD_HASH.
    HashPassword,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    match Cli::parse().command {
        Command::Serve(args) => serve(*args),
        Command::Enroll(args) => people::run_enroll(*args),
        Command::Identify(args) => people::run_identify(*args),
        Command::People(args) => people::run_people(args),
        Command::Checkins(args) => people::run_check_ins(args),
        Command::Detect(args) => engine::run_detect(args),
        Command::Embed(args) => engine::run_embed(args),
        Command::Verify(args) => engine::run_verify(args),
        Command::Bench(args) => engine::run_bench(args),
        Command::BenchGallery(args) => gallery_bench::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Keys(args) => people::run_keys(args),
        Command::HashPassword => hash_password(),
    }
}

fn hash_password() -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password).context("cannot read the password")?;
    let password = password.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(password.chars().count() >= 8, "the password must have at least 8 characters");
    let hash = server::auth::hash_password(password)?;
    writeln!(std::io::stdout().lock(), "{hash}").context("cannot write the hash")?;
    Ok(())
}

#[tokio::main]
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let site = Site::open(&args.site_root)?;
    // The port first, so that a busy one is reported at once; connections
    // made while the models and the gallery load wait in the backlog.
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    server::vision::set_inference_threads(args.engine.inference_threads);
    let models_dir = args.engine.models_dir();
    let engine = tokio::task::spawn_blocking(move || Engine::load(&models_dir, &DetectorKind::ALL))
        .await
        .context("loading the models failed")??;
    let data_dir = args.store.data_dir();
    let store: Arc<dyn Store> = match args.store_kind {
        StoreKind::Sqlite => Arc::new(
            SqliteStore::open(&data_dir)
                .with_context(|| format!("cannot open the store in {}", data_dir.display()))?,
        ),
        StoreKind::Firebase => {
            let config = FirebaseConfig::from_env().context("Firebase is not configured")?;
            Arc::new(FirebaseStore::connect(config).await.context("cannot reach Firebase")?)
        }
    };
    tracing::info!(store = %store.backend(), "store opened");
    let service = Arc::new(
        Service::start(engine, store, args.service_config())
            .await
            .context("cannot start the service")?,
    );
    let auth = AdminAuth::from_config_or_data_dir(args.admin_password_hash.as_deref(), &data_dir)?;

    let limits = ApiLimits { max_image_bytes: args.max_image_mib << 20, ..ApiLimits::default() };
    let tls = match (&args.tls_cert, &args.tls_key, args.tls_self_signed) {
        (Some(cert), Some(key), _) => Some(tls::config_from_pem(cert, key)?),
        (_, _, true) => {
            let (cert, key) = tls::self_signed(&data_dir.join("tls"), &args.tls_names)?;
            Some(tls::config_from_pem(&cert, &key)?)
        }
        _ => None,
    };
    let check_in_limit = Arc::new(RateLimiter::new(args.check_in_rate, args.check_in_burst));
    let keys = Arc::new(ApiKeys::open(&data_dir)?);
    let backend = WebBackend {
        service: service.clone(),
        auth: Arc::new(auth),
        check_in_limit: check_in_limit.clone(),
        keys: keys.clone(),
        max_upload_bytes: limits.max_enrol_bytes,
        secure_cookies: tls.is_some(),
    };
    let state = AppState {
        leptos: site.leptos_options(args.addr),
        assets: site.assets(),
        started: Instant::now(),
        service,
        backend: Arc::new(backend),
        limits,
        check_in_limit,
        keys: keys.clone(),
    };
    let app = http::router(state);
    let connection_limits = args.connection_limits();
    match tls {
        Some(config) => {
            let host =
                args.tls_names.first().cloned().unwrap_or_else(|| args.addr.ip().to_string());
            tracing::info!(
                "FaceGate is listening on https://{host}:{} (open this address on the phone)",
                args.addr.port()
            );
            let listener = TlsListener::new(listener, config)?;
            conn::serve(listener, app, connection_limits, shutdown_signal()).await;
            Ok(())
        }
        None => {
            // The address bound, which differs from `--addr` for port 0.
            let local = listener.local_addr().context("cannot read the listening address")?;
            tracing::info!("FaceGate is listening on http://{local}");
            if args.ngrok {
                let config = server::tunnel::TunnelConfig {
                    domain: args.ngrok_domain.clone(),
                    server: args.ngrok_server.clone(),
                };
                tokio::spawn(run_tunnel(local, config));
            }
            conn::serve(listener, app, connection_limits, shutdown_signal()).await;
            Ok(())
        }
    }
}

/// Opens the ngrok tunnel and holds it open; a failure is reported and the
/// local server goes on.
async fn run_tunnel(local: std::net::SocketAddr, config: server::tunnel::TunnelConfig) {
    match server::tunnel::open(local, &config).await {
        Ok(tunnel) => {
            tracing::info!(
                "FaceGate is also reachable at {} through ngrok (open this address on the phone)",
                tunnel.url()
            );
            if let Err(e) = tunnel.closed().await {
                tracing::warn!("the ngrok tunnel closed: {e:#}; FaceGate keeps serving locally");
            }
        }
        Err(e) => tracing::warn!(
            "the ngrok tunnel could not be opened: {e:#}; FaceGate keeps serving on http://{local}"
        ),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, SIGTERM still stops the server.
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
