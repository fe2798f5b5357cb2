//! The dashboard's pages (runs, one run, items, bots, audit, users) and the
//! changes an operator or admin makes from them. Changes reuse what the CLI
//! calls (`scheduler::admin`), with the signed-in user as the actor.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::App;
use super::auth::{self, Role};
use super::web::{CsrfForm, Viewer, message, record, render, require, require_change, store_down};
use crate::audit::NewEvent;
use crate::report::{ReportOptions, model};
use crate::scheduler::{Bot, admin, load_bots_dir};
use crate::store::{ItemFilter, ItemState, QueuedRun, RunSearch, SchedBatch};

const PAGE_SIZE: i64 = 25;
const STATUSES: [&str; 11] = [
    "queued",
    "running",
    "succeeded",
    "succeeded_with_exceptions",
    "failed",
    "timed_out",
    "cancelled",
    "interrupted",
    "skipped",
    "expired",
    "in_doubt",
];

fn see_other(to: &str) -> Response {
    let mut r = Redirect::to(to).into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    r
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

pub(crate) async fn home() -> Response {
    see_other("/runs")
}

#[derive(Deserialize, Default, Debug)]
pub(crate) struct RunsQuery {
    bot: Option<String>,
    status: Option<String>,
    actor: Option<String>,
    from: Option<String>,
    to: Option<String>,
    item: Option<String>,
    page: Option<i64>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `YYYY-MM-DD` (a day in this machine's zone) → its start, as stored (UTC).
fn day_start(day: &str, plus_days: i64) -> Option<String> {
    let d = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?
        + chrono::Days::new(plus_days as u64);
    let local = d
        .and_hms_opt(0, 0, 0)?
        .and_local_timezone(chrono::Local)
        .earliest()?;
    Some(crate::store::time::format_ts(
        &local.with_timezone(&chrono::Utc),
    ))
}

fn bots_of(app: &App) -> Vec<Bot> {
    let (bots, diags) = load_bots_dir(&app.opts.bots_dir);
    if !diags.is_empty() {
        tracing::warn!(
            problems = diags.len(),
            "dashboard: the bots folder has problems"
        );
    }
    bots
}

pub(crate) async fn runs(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<RunsQuery>,
) -> Response {
    let me = match require(&app, &headers, "/runs").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let page = q.page.unwrap_or(1).max(1);
    let from = non_empty(&q.from);
    let to = non_empty(&q.to);
    for (name, v) in [("from", &from), ("to", &to)] {
        if let Some(d) = v
            && day_start(d, 0).is_none()
        {
            return message(
                &app,
                StatusCode::BAD_REQUEST,
                Some(&me),
                "Bad date",
                &format!("`{name}` must be a date like 2026-03-01, not `{d}`"),
            );
        }
    }
    let search = RunSearch {
        bot: non_empty(&q.bot),
        status: non_empty(&q.status),
        actor: non_empty(&q.actor),
        from: from.as_deref().and_then(|d| day_start(d, 0)),
        to: to.as_deref().and_then(|d| day_start(d, 1)),
        item: non_empty(&q.item),
        offset: (page - 1) * PAGE_SIZE,
        limit: PAGE_SIZE,
    };
    let (rows, total) = match app.store.search_runs(&search).await {
        Ok(x) => x,
        Err(e) => return store_down(&app, Some(&me), e),
    };
    let runs: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "bot": r.bot,
                "playbook": r.playbook,
                "status": r.status,
                "actor": r.actor,
                "attempt": r.attempt,
                "queued": ts(r.queued_at),
                "started": r.started_at.map(ts),
                "duration": match (r.started_at, r.finished_at) {
                    (Some(s), Some(f)) => Some(format!("{:.1} s", (f - s).num_milliseconds() as f64 / 1000.0)),
                    _ => None,
                },
                "error": r.error,
            })
        })
        .collect();
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let query = |p: i64| {
        let mut parts = Vec::new();
        for (k, v) in [
            ("bot", &q.bot),
            ("status", &q.status),
            ("actor", &q.actor),
            ("from", &q.from),
            ("to", &q.to),
            ("item", &q.item),
        ] {
            if let Some(v) = non_empty(v) {
                parts.push(format!("{k}={}", urlencode(&v)));
            }
        }
        parts.push(format!("page={p}"));
        format!("/runs?{}", parts.join("&"))
    };
    let bots: Vec<String> = bots_of(&app).into_iter().map(|b| b.name).collect();
    render(
        &app,
        "runs.html",
        Some(&me),
        "runs",
        json!({
            "runs": runs,
            "total": total,
            "page": page,
            "pages": pages,
            "prev": (page > 1).then(|| query(page - 1)),
            "next": (page < pages).then(|| query(page + 1)),
            "f": {
                "bot": q.bot, "status": q.status, "actor": q.actor,
                "from": q.from, "to": q.to, "item": q.item,
            },
            "bots": bots,
            "statuses": STATUSES,
        }),
    )
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) async fn run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let me = match require(&app, &headers, &format!("/runs/{id}")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let run = match app.store.get_run(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return message(
                &app,
                StatusCode::NOT_FOUND,
                Some(&me),
                "No such run",
                &format!("There is no run `{id}`."),
            );
        }
        Err(e) => return store_down(&app, Some(&me), e),
    };
    let report = match model::build(
        &app.store,
        &run,
        &app.opts.workspace,
        &ReportOptions::default(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return store_down(&app, Some(&me), format!("{e:#}")),
    };
    render(&app, "run.html", Some(&me), "runs", json!({ "r": report }))
}

pub(crate) async fn run_report(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let me = match require(&app, &headers, &format!("/runs/{id}")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let run = match app.store.get_run(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => return message(&app, StatusCode::NOT_FOUND, Some(&me), "No such run", &id),
        Err(e) => return store_down(&app, Some(&me), e),
    };
    let html = match model::build(
        &app.store,
        &run,
        &app.opts.workspace,
        &ReportOptions::default(),
    )
    .await
    .and_then(|r| crate::report::render::standalone(&r))
    {
        Ok(h) => h,
        Err(e) => return store_down(&app, Some(&me), format!("{e:#}")),
    };
    let mut resp = html.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"run-{}.html\"", run.id)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

#[derive(Deserialize, Default)]
pub(crate) struct ItemsQuery {
    state: Option<String>,
    key: Option<String>,
}

/// At most this many items are listed (newest change first).
const MAX_ITEMS: usize = 500;

pub(crate) async fn items(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ItemsQuery>,
) -> Response {
    let me = match require(&app, &headers, "/items").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let state = match non_empty(&q.state) {
        Some(s) => match ItemState::parse(&s) {
            Some(st) => Some(st),
            None => {
                return message(
                    &app,
                    StatusCode::BAD_REQUEST,
                    Some(&me),
                    "Bad state",
                    &format!("`{s}` is not an item state"),
                );
            }
        },
        None => None,
    };
    let filter = ItemFilter {
        state,
        key: non_empty(&q.key),
        items_only: true,
        ..Default::default()
    };
    let all = ItemFilter {
        items_only: true,
        ..Default::default()
    };
    let (list, counts) =
        match tokio::join!(app.store.list_items(&filter), app.store.list_items(&all)) {
            (Ok(l), Ok(all)) => (l, all),
            (Err(e), _) | (_, Err(e)) => return store_down(&app, Some(&me), e),
        };
    let mut per_state: Vec<(String, usize)> = ItemState::ALL
        .iter()
        .map(|s| {
            (
                s.as_str().to_string(),
                counts.iter().filter(|i| i.state == *s).count(),
            )
        })
        .collect();
    per_state.retain(|(_, n)| *n > 0);
    let shown = list.len().min(MAX_ITEMS);
    let rows: Vec<Value> = list
        .iter()
        .rev()
        .take(MAX_ITEMS)
        .map(|i| {
            json!({
                "run": i.run_id, "lineage": i.lineage, "step": i.step_id, "key": i.item_key,
                "state": i.state.as_str(), "error": i.error, "kind": i.error_kind,
                "attempts": i.attempts, "at": ts(i.updated_at),
                "retryable": matches!(i.state, ItemState::BusinessException | ItemState::InDoubt),
            })
        })
        .collect();
    render(
        &app,
        "items.html",
        Some(&me),
        "items",
        json!({
            "items": rows, "counts": per_state, "total": list.len(), "shown": shown,
            "f": { "state": q.state, "key": q.key },
        }),
    )
}

#[derive(Deserialize)]
pub(crate) struct RetryForm {
    csrf: Option<String>,
    lineage: String,
    key: String,
}

/// Retries a work item that ended as a business exception or in doubt (a
/// person fixed the cause): the ledger puts it back to `pending`
/// (`admin.item_requeued`, by the signed-in operator) and, for a bot's job,
/// a run continuing the same lineage is queued; it skips the items already
/// done and enters the pending ones.
pub(crate) async fn retry_item(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<RetryForm>,
) -> Response {
    let what = format!("retry item {} of {}", f.key, f.lineage);
    let me = match require_change(&app, &headers, f.csrf.as_deref(), Role::Operator, &what).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let requeued = match app
        .store
        .requeue_items(
            std::slice::from_ref(&f.key),
            Some(&f.lineage),
            &me.name,
            Some("retried from the dashboard"),
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return store_down(&app, Some(&me), e),
    };
    let Some(item) = requeued.first() else {
        return message(
            &app,
            StatusCode::CONFLICT,
            Some(&me),
            "Nothing to retry",
            &format!(
                "Item {} of {} is not a business exception or in doubt (any more).",
                f.key, f.lineage
            ),
        );
    };
    let run = match app.store.get_run(&item.run_id).await {
        Ok(r) => r,
        Err(e) => return store_down(&app, Some(&me), e),
    };
    let bot = run
        .as_ref()
        .and_then(|r| r.bot.as_ref())
        .and_then(|b| bots_of(&app).into_iter().find(|x| &x.name == b));
    let (Some(run), Some(bot)) = (run, bot) else {
        return message(
            &app,
            StatusCode::OK,
            Some(&me),
            "Item requeued",
            &format!(
                "Item {} is pending again in {}. It is not a bot's job, so no run was queued: `clerk runs resume` continues it.",
                f.key, f.lineage
            ),
        );
    };
    let id = ulid::Ulid::new().to_string();
    let due = crate::store::time::now_micros();
    let event = NewEvent::new("run.queued", &me.name).detail(json!({
        "bot": bot.name,
        "playbook": run.playbook,
        "retry_of": run.id,
        "attempt": run.attempt + 1,
        "items": [f.key],
        "manual": true,
        "via": "web",
        "inputs": run.inputs,
    }));
    let batch = SchedBatch {
        runs: vec![QueuedRun {
            id: id.clone(),
            bot: bot.name.clone(),
            playbook: run.playbook.clone(),
            inputs: run.inputs.clone(),
            scheduled_for: None,
            due_at: due,
            overlap: bot.overlap.as_str().into(),
            actor: me.name.clone(),
            attempt: run.attempt + 1,
            retry_of: Some(run.id.clone()),
            event: app.recorder.redact_event(event),
        }],
        ..Default::default()
    };
    match app.store.write_sched_batch(&batch).await {
        Ok(_) => see_other(&format!("/runs/{id}")),
        Err(e) => store_down(&app, Some(&me), e),
    }
}

pub(crate) async fn bots(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let me = match require(&app, &headers, "/bots").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let bots = bots_of(&app);
    let list = match admin::list(&app.store, &bots, &app.opts.workspace).await {
        Ok(l) => l,
        Err(e) => return store_down(&app, Some(&me), format!("{e:#}")),
    };
    let workers = match app.store.workers(crate::store::workers::LIVE_WITHIN).await {
        Ok(w) => w,
        Err(e) => return store_down(&app, Some(&me), format!("{e:#}")),
    };
    let workers: Vec<_> = workers
        .into_iter()
        .filter(|w| w.stopped_at.is_none())
        .collect();
    render(
        &app,
        "bots.html",
        Some(&me),
        "bots",
        json!({ "bots": list, "workers": workers }),
    )
}

async fn change_bot(
    app: &App,
    headers: &HeaderMap,
    name: &str,
    csrf: Option<&str>,
    op: &str,
) -> Response {
    let what = format!("{op} bot {name}");
    let me = match require_change(app, headers, csrf, Role::Operator, &what).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(bot) = bots_of(app).into_iter().find(|b| b.name == name) else {
        return message(
            app,
            StatusCode::NOT_FOUND,
            Some(&me),
            "No such bot",
            &format!("There is no valid bot `{name}`."),
        );
    };
    let result = match op {
        "pause" => admin::set_paused(&app.store, &bot.name, true, &me.name)
            .await
            .map(|_| None),
        "resume" => admin::set_paused(&app.store, &bot.name, false, &me.name)
            .await
            .map(|_| None),
        _ => admin::run_now(&app.recorder, &bot, &[], &me.name, &app.opts.workspace)
            .await
            .map(Some),
    };
    match result {
        Ok(None) => see_other("/bots"),
        Ok(Some(Ok(id))) => see_other(&format!("/runs/{id}")),
        Ok(Some(Err(problems))) => message(
            app,
            StatusCode::BAD_REQUEST,
            Some(&me),
            "Cannot run the bot",
            &problems,
        ),
        Err(e) => store_down(app, Some(&me), format!("{e:#}")),
    }
}

pub(crate) async fn pause(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    change_bot(&app, &headers, &name, f.csrf.as_deref(), "pause").await
}

pub(crate) async fn resume(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    change_bot(&app, &headers, &name, f.csrf.as_deref(), "resume").await
}

pub(crate) async fn run_now(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    change_bot(&app, &headers, &name, f.csrf.as_deref(), "run").await
}

pub(crate) async fn audit(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let me = match require(&app, &headers, "/audit").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let verify = model::verify_chain(&app.store).await;
    render(
        &app,
        "audit.html",
        Some(&me),
        "audit",
        json!({ "verify": verify }),
    )
}

#[derive(Deserialize)]
pub(crate) struct ExportQuery {
    run: Option<String>,
    format: Option<String>,
}

pub(crate) async fn export(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ExportQuery>,
) -> Response {
    let me = match require(&app, &headers, "/audit").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let format = match q
        .format
        .as_deref()
        .unwrap_or("jsonl")
        .parse::<crate::audit::ExportFormat>()
    {
        Ok(f) => f,
        Err(e) => {
            return message(
                &app,
                StatusCode::BAD_REQUEST,
                Some(&me),
                "Bad format",
                &format!("{e:#}"),
            );
        }
    };
    let run = non_empty(&q.run);
    // The exporter writes to a `dyn Write`, which is not `Send`: it runs on
    // a blocking thread of its own.
    let store = app.store.clone();
    let which = run.clone();
    let handle = tokio::runtime::Handle::current();
    let exported = tokio::task::spawn_blocking(move || {
        let mut buf: Vec<u8> = Vec::new();
        handle
            .block_on(crate::audit::export(
                &store,
                which.as_deref(),
                format,
                &mut buf,
            ))
            .map(|_| buf)
    })
    .await;
    let buf = match exported {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return store_down(&app, Some(&me), format!("{e:#}")),
        Err(e) => return store_down(&app, Some(&me), e),
    };
    record(
        &app,
        NewEvent::new("web.export", &me.name)
            .target(run.as_deref().unwrap_or("all"))
            .outcome("ok")
            .detail(json!({ "run": run, "format": format.to_string(), "bytes": buf.len() })),
    )
    .await;
    let mut resp = buf.into_response();
    let h = resp.headers_mut();
    let (ctype, ext) = match format {
        crate::audit::ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        crate::audit::ExportFormat::Jsonl => ("application/x-ndjson", "jsonl"),
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"clerk-audit.{ext}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

pub(crate) async fn users(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let me = match require(&app, &headers, "/users").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !me.is_admin {
        return message(
            &app,
            StatusCode::FORBIDDEN,
            Some(&me),
            "Not allowed",
            "Only admins manage users.",
        );
    }
    match app.store.list_users().await {
        Ok(list) => render(
            &app,
            "users.html",
            Some(&me),
            "users",
            json!({ "users": list }),
        ),
        Err(e) => store_down(&app, Some(&me), e),
    }
}

#[derive(Deserialize)]
pub(crate) struct AddUserForm {
    csrf: Option<String>,
    name: String,
    role: String,
    password: String,
}

pub(crate) async fn add_user(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<AddUserForm>,
) -> Response {
    let me: Viewer = match require_change(
        &app,
        &headers,
        f.csrf.as_deref(),
        Role::Admin,
        &format!("add user {}", f.name),
    )
    .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(role) = Role::parse(&f.role) else {
        return message(
            &app,
            StatusCode::BAD_REQUEST,
            Some(&me),
            "Bad role",
            "auditor, operator or admin",
        );
    };
    if f.password.chars().count() < auth::MIN_PASSWORD || f.name.trim().is_empty() {
        return message(
            &app,
            StatusCode::BAD_REQUEST,
            Some(&me),
            "Cannot add the user",
            &format!(
                "A name and a password of at least {} characters are needed.",
                auth::MIN_PASSWORD
            ),
        );
    }
    let password = f.password.clone();
    let hash = match tokio::task::spawn_blocking(move || auth::hash_password(&password)).await {
        Ok(Ok(h)) => h,
        _ => {
            return message(
                &app,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(&me),
                "Cannot hash the password",
                "",
            );
        }
    };
    let event = NewEvent::new("admin.user_added", &me.name)
        .target(f.name.as_str())
        .outcome("ok")
        .detail(json!({ "user": f.name, "role": role.as_str(), "via": "web" }));
    match app
        .store
        .add_user(f.name.trim(), role.as_str(), &hash, event)
        .await
    {
        Ok(true) => see_other("/users"),
        Ok(false) => message(
            &app,
            StatusCode::CONFLICT,
            Some(&me),
            "User exists",
            &format!("`{}` exists already.", f.name),
        ),
        Err(e) => store_down(&app, Some(&me), e),
    }
}

pub(crate) async fn remove_user(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let me = match require_change(
        &app,
        &headers,
        f.csrf.as_deref(),
        Role::Admin,
        &format!("remove user {name}"),
    )
    .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let event = NewEvent::new("admin.user_removed", &me.name)
        .target(name.as_str())
        .outcome("ok")
        .detail(json!({ "user": name, "via": "web" }));
    match app.store.remove_user(&name, event).await {
        Ok(_) => see_other("/users"),
        Err(e) => store_down(&app, Some(&me), e),
    }
}
