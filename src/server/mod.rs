//! The web dashboard of `clerk serve --http ADDR` (off unless asked): runs,
//! one run (the same content as `clerk report`), work items, bots, the audit
//! chain and users, server-rendered with the minijinja templates under
//! `templates/`; plus `/healthz` and `/metrics` for operations.
//!
//! - [`auth`]: roles, argon2id hashes, tokens, the sign-in rate limit.
//! - `web`: sessions, CSRF and role checks, sign-in and sign-out.
//! - `pages`: the HTML pages and the operator's changes.
//! - `ops`: `/healthz` and `/metrics` (Prometheus text format).
//!
//! Every change made through the dashboard goes through the same functions
//! as the CLI (`scheduler::admin`) with the signed-in user as the actor, so
//! its audit event is the same; a refused change is an audit event too.

pub mod auth;
mod ops;
mod pages;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::routing::{get, post};
use minijinja::Environment;
use tokio_util::sync::CancellationToken;

use crate::audit::Recorder;
use crate::store::Store;

/// What the dashboard needs from `clerk serve`.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// `127.0.0.1:8480`.
    pub addr: String,
    pub workspace: PathBuf,
    pub bots_dir: PathBuf,
}

/// Shared by every request.
pub(crate) struct App {
    pub store: Store,
    pub recorder: Recorder,
    pub opts: HttpOptions,
    pub env: Environment<'static>,
    pub limits: auth::RateLimit,
    /// `host:pid:` — the prefix of this process's worker id in leases.
    pub process_prefix: String,
}

/// A running dashboard; [`Dashboard::stop`] ends it.
pub struct Dashboard {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Dashboard {
    /// Stops accepting connections and waits for open requests to finish.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// This process's holder name in the store's leases: `clerk serve` holds
/// them under its random instance id.
pub fn process_prefix() -> String {
    crate::process::instance_id().to_string()
}

fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    crate::report::render::add_templates(&mut env);
    for (name, src) in [
        ("layout.html", include_str!("templates/layout.html")),
        ("login.html", include_str!("templates/login.html")),
        ("runs.html", include_str!("templates/runs.html")),
        ("run.html", include_str!("templates/run.html")),
        ("items.html", include_str!("templates/items.html")),
        ("bots.html", include_str!("templates/bots.html")),
        ("audit.html", include_str!("templates/audit.html")),
        ("users.html", include_str!("templates/users.html")),
        ("message.html", include_str!("templates/message.html")),
    ] {
        if let Err(e) = env.add_template(name, src) {
            tracing::error!("dashboard template {name} does not parse: {e}");
        }
    }
    env
}

/// Starts the dashboard on `opts.addr`. Refuses to start when the store has
/// no users (there is no default password), saying how to add one.
pub async fn start(
    store: Store,
    recorder: Recorder,
    opts: HttpOptions,
    process_prefix: String,
) -> anyhow::Result<Dashboard> {
    let users = store.list_users().await?;
    if users.is_empty() {
        anyhow::bail!(
            "the dashboard has no users, and there is no default password: add one first with \
             `clerk users add NAME --role admin` (auditor, operator or admin), then start \
             `clerk serve --http {}` again",
            opts.addr
        );
    }
    let listener = tokio::net::TcpListener::bind(&opts.addr)
        .await
        .with_context(|| format!("cannot listen on {} for the dashboard", opts.addr))?;
    let addr = listener.local_addr()?;
    let app = Arc::new(App {
        store,
        recorder,
        opts,
        env: templates(),
        limits: auth::RateLimit::default(),
        process_prefix,
    });
    let router = router(app);
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { token.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "the dashboard stopped");
        }
    });
    tracing::info!(url = %format!("http://{addr}/"), "dashboard listening");
    Ok(Dashboard { addr, stop, task })
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(web::login_page).post(web::login))
        .route("/logout", post(web::logout))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/runs/{id}/report.html", get(pages::run_report))
        .route("/items", get(pages::items))
        .route("/items/retry", post(pages::retry_item))
        .route("/bots", get(pages::bots))
        .route("/bots/{name}/pause", post(pages::pause))
        .route("/bots/{name}/resume", post(pages::resume))
        .route("/bots/{name}/run", post(pages::run_now))
        .route("/audit", get(pages::audit))
        .route("/audit/export.jsonl", get(pages::export))
        .route("/users", get(pages::users).post(pages::add_user))
        .route("/users/{name}/remove", post(pages::remove_user))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .with_state(app)
}

#[cfg(test)]
mod tests {
    /// The Bots page lists the workers: host, labels, live or stale,
    /// heartbeat age and runs in flight.
    #[test]
    fn bots_page_shows_the_workers() {
        let env = super::templates();
        let t = env.get_template("bots.html").unwrap();
        let worker = |host: &str, live: bool| {
            serde_json::json!({
                "instance_id": format!("ID-{host}"), "host": host, "pid": 7, "version": "0.1.0",
                "labels": ["vpn"], "live": live, "heartbeat_age_s": 1.5, "runs_in_flight": 3,
                "started_at": "2026-12-02T02:40:11.000000Z", "stopped_at": null,
            })
        };
        let html = t
            .render(serde_json::json!({
                "me": { "name": "ops", "role": "admin", "can_operate": true, "csrf": "x" },
                "bots": [],
                "workers": [worker("ops-1", true), worker("ops-2", false)],
            }))
            .unwrap();
        assert!(html.contains("<table id=\"workers\">"), "{html}");
        assert!(html.contains("data-worker=\"ID-ops-1\""), "{html}");
        assert!(html.contains("<code>vpn</code>"), "{html}");
        assert!(
            html.contains(">live<") && html.contains(">stale<"),
            "{html}"
        );
        assert!(
            html.contains("1.5 s ago") && html.contains("<td>3</td>"),
            "{html}"
        );
    }
}
