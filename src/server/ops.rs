//! `/healthz` and `/metrics` (Prometheus text format, written by
//! `prometheus-client`). Both are unauthenticated, like a load balancer or a
//! Prometheus server expects; they show counts and states, never run data.
//!
//! The numbers come from the store at scrape time, so every `clerk serve` on
//! one store reports the same totals and nothing is lost on a restart.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::json;

use super::App;

/// How long a health or metrics query may wait for the store.
const STORE_TIMEOUT: Duration = Duration::from_secs(3);
/// The scheduler renews its lease every few seconds with this time to live.
const SCHEDULER_LEASE_TTL_S: f64 = 15.0;
/// A scheduler whose lease was last renewed longer ago than this is stuck.
const MAX_TICK_AGE_S: f64 = 15.0;

async fn timed<T, E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(STORE_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "the store did not answer within {} s",
            STORE_TIMEOUT.as_secs()
        )),
    }
}

/// `200 {"status":"ok",...}` when the store answers and either this process
/// holds a fresh scheduler lease or another live scheduler does (this one is
/// a worker only); `503 {"status":"unhealthy",...}` with the reason otherwise.
pub(crate) async fn healthz(State(app): State<Arc<App>>) -> Response {
    let mut problems: Vec<String> = Vec::new();
    let store_ok = match timed(app.store.ping()).await {
        Ok(()) => true,
        Err(e) => {
            problems.push(format!("store unreachable: {e}"));
            false
        }
    };
    let mut scheduler = json!({ "role": "unknown" });
    if store_ok {
        match timed(app.store.leases("scheduler")).await {
            Ok(leases) => {
                let now = Utc::now();
                let lease = leases.into_iter().find(|l| l.name == "scheduler");
                match lease {
                    Some(l) => {
                        let age = SCHEDULER_LEASE_TTL_S
                            - (l.expires_at - now).num_milliseconds() as f64 / 1000.0;
                        let mine = l.holder.starts_with(&app.process_prefix);
                        let live = l.expires_at > now;
                        scheduler = json!({
                            "role": if mine { "scheduler" } else { "worker-only" },
                            "holder": l.holder,
                            "last_tick_age_s": (age * 10.0).round() / 10.0,
                        });
                        if !live {
                            problems.push(format!(
                                "the scheduler lease of {} expired {:.0} s ago: no scheduler is firing bots",
                                l.holder,
                                age - SCHEDULER_LEASE_TTL_S
                            ));
                        } else if mine && age > MAX_TICK_AGE_S {
                            problems.push(format!("this scheduler's last tick was {age:.0} s ago"));
                        }
                    }
                    None => {
                        scheduler = json!({ "role": "none" });
                        problems.push("no scheduler holds the lease yet".into());
                    }
                }
            }
            Err(e) => problems.push(format!("cannot read the scheduler lease: {e}")),
        }
    }
    // Mailbox triggers (evidence-mail): each one's last contact with its
    // IMAP server, unhealthy past its limit (docs/mail.md).
    let mut triggers = Vec::new();
    if store_ok {
        let (bots, _) = crate::scheduler::load_bots_dir(&app.opts.bots_dir);
        let imap_timeout = crate::config::Config::load(&app.opts.workspace)
            .map(|c| c.imap.timeout)
            .unwrap_or(crate::config::ImapConfig::default().timeout);
        match timed(crate::scheduler::trigger::health(
            &app.store,
            &bots,
            imap_timeout,
        ))
        .await
        {
            Ok((list, mut p)) => {
                triggers = list;
                problems.append(&mut p);
            }
            Err(e) => problems.push(format!("cannot read the mailbox triggers' state: {e}")),
        }
    }
    let (workers, warnings) = if store_ok {
        workers_health(&app).await
    } else {
        (json!(null), Vec::new())
    };
    let healthy = problems.is_empty();
    let body = json!({
        "triggers": triggers,
        "status": if !healthy { "unhealthy" } else if warnings.is_empty() { "ok" } else { "degraded" },
        "store": { "ok": store_ok, "url": app.store.url() },
        "scheduler": scheduler,
        "workers": workers,
        "problems": problems,
        "warnings": warnings,
        "checked_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// The workers on the store (live/stale counts) and, as warnings (the
/// process itself is healthy: a restart would not help), every bot whose
/// `runs_on` labels no live worker has.
async fn workers_health(app: &App) -> (serde_json::Value, Vec<String>) {
    let list = match timed(app.store.workers(crate::store::workers::LIVE_WITHIN)).await {
        Ok(l) => l,
        Err(e) => return (json!(null), vec![format!("cannot read the workers: {e}")]),
    };
    let live: Vec<_> = list.iter().filter(|w| w.live).cloned().collect();
    let stale = list
        .iter()
        .filter(|w| !w.live && w.stopped_at.is_none())
        .count();
    let dir = app.opts.bots_dir.clone();
    let bots = tokio::task::spawn_blocking(move || crate::scheduler::load_bots_dir(&dir).0)
        .await
        .unwrap_or_default();
    let mut warnings = Vec::new();
    let mut unrunnable = Vec::new();
    for b in &bots {
        if let Some(why) = crate::scheduler::registry::no_worker_reason(&b.runs_on, &live) {
            warnings.push(format!("bot {}: {why}", b.name));
            unrunnable.push(b.name.clone());
        }
    }
    let workers = json!({
        "live": live.len(),
        "stale": stale,
        "labels": live.iter().map(|w| json!({ "host": w.host, "instance": w.instance_id, "labels": w.labels })).collect::<Vec<_>>(),
        "bots_without_worker": unrunnable,
    });
    (workers, warnings)
}

type Labels = Vec<(String, String)>;

/// Firing lateness buckets, in seconds.
const LATENESS_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

pub(crate) async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut reg = Registry::with_prefix("clerk");
    let up = Gauge::<i64>::default();
    reg.register(
        "store_up",
        "1 if the store answered this scrape",
        up.clone(),
    );
    let sessions = Gauge::<i64>::default();
    reg.register(
        "browser_sessions_open",
        "Browser sessions open in this clerk serve process",
        sessions.clone(),
    );
    sessions.set(
        crate::actions::browser::session::OPEN_SESSIONS
            .load(std::sync::atomic::Ordering::SeqCst)
            .max(0),
    );

    let collected = collect(&app).await;
    match collected {
        Ok(c) => {
            up.set(1);
            let runs = Family::<Labels, Gauge<i64>>::default();
            reg.register("runs", "Runs in the store, by status", runs.clone());
            for (status, n) in c.runs {
                runs.get_or_create(&vec![("status".into(), status)]).set(n);
            }
            let items = Family::<Labels, Gauge<i64>>::default();
            reg.register(
                "work_items",
                "Work items in the ledger by state",
                items.clone(),
            );
            for (state, n) in c.items {
                items.get_or_create(&vec![("state".into(), state)]).set(n);
            }
            let queue = Gauge::<i64>::default();
            reg.register(
                "queue_depth",
                "Runs queued and not yet started",
                queue.clone(),
            );
            queue.set(c.queued);
            let events = Counter::<u64>::default();
            reg.register(
                "audit_events",
                "Audit events written to the chain",
                events.clone(),
            );
            events.inc_by(c.events.max(0) as u64);
            let lateness = Histogram::new(LATENESS_BUCKETS);
            reg.register(
                "firing_lateness_seconds",
                "How long after its scheduled time each bot firing started",
                lateness.clone(),
            );
            for l in c.lateness {
                lateness.observe(l);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: store unavailable");
            up.set(0);
        }
    }
    let mut text = String::new();
    if let Err(e) = encode(&mut text, &reg) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}"),
        )
            .into_response();
    }
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

struct Collected {
    runs: Vec<(String, i64)>,
    items: Vec<(String, i64)>,
    queued: i64,
    events: i64,
    lateness: Vec<f64>,
}

async fn collect(app: &App) -> Result<Collected, String> {
    let store = &app.store;
    let runs =
        timed(store.group_counts("SELECT status, COUNT(*) FROM runs GROUP BY status")).await?;
    let items = timed(store.group_counts(
        "SELECT state, COUNT(*) FROM work_items WHERE item_key <> '' GROUP BY state",
    ))
    .await?;
    let queued = runs
        .iter()
        .find(|(s, _)| s == "queued")
        .map_or(0, |(_, n)| *n);
    let events = timed(store.last_event_id()).await?;
    let lateness = timed(store.firing_lateness()).await?;
    Ok(Collected {
        runs,
        items,
        queued,
        events,
        lateness,
    })
}
