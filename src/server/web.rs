//! Sessions, CSRF and roles for the dashboard, and the sign-in / sign-out
//! handlers. The session cookie is HttpOnly and SameSite=Strict and carries a
//! random token whose SHA-256 is what the store keeps; every form sends the
//! session's CSRF token back; a refused change is an audit event.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::Value as JValue;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::App;
use super::auth::{self, RateLimit, Role};
use crate::audit::NewEvent;

const SESSION_COOKIE: &str = "clerk_session";
const LOGIN_COOKIE: &str = "clerk_login";
/// How long a dashboard session lasts.
const SESSION_HOURS: i64 = 12;

/// The signed-in user of a request.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Viewer {
    pub name: String,
    pub role: String,
    pub csrf: String,
    pub can_operate: bool,
    pub is_admin: bool,
    #[serde(skip)]
    pub token_hash: String,
    #[serde(skip)]
    pub level: Option<Role>,
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(resp: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Renders a template with the common context (`me`, `nav`).
pub(crate) fn render(
    app: &App,
    name: &str,
    me: Option<&Viewer>,
    nav: &str,
    ctx: serde_json::Value,
) -> Response {
    render_status(app, StatusCode::OK, name, me, nav, ctx)
}

pub(crate) fn render_status(
    app: &App,
    status: StatusCode,
    name: &str,
    me: Option<&Viewer>,
    nav: &str,
    ctx: serde_json::Value,
) -> Response {
    let result = app.env.get_template(name).and_then(|t| {
        t.render(minijinja::context! {
            me => me,
            nav => nav,
            report_css => crate::report::render::CSS,
            report_js => crate::report::render::JS,
            ..JValue::from_serialize(&ctx)
        })
    });
    match result {
        Ok(html) => {
            let mut r = (status, Html(html)).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; \
                     script-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
                ),
            );
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::error!(template = name, error = %format!("{e:#}"), "cannot render a dashboard page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot render page {name}: {e}"),
            )
                .into_response()
        }
    }
}

/// A plain page with a title and a sentence.
pub(crate) fn message(
    app: &App,
    status: StatusCode,
    me: Option<&Viewer>,
    title: &str,
    text: &str,
) -> Response {
    render_status(
        app,
        status,
        "message.html",
        me,
        "",
        json!({ "title": title, "text": text }),
    )
}

/// A store error as a 503 page (the store may be down).
pub(crate) fn store_down(app: &App, me: Option<&Viewer>, e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "dashboard: store error");
    message(
        app,
        StatusCode::SERVICE_UNAVAILABLE,
        me,
        "The store is not answering",
        &format!("{e}"),
    )
}

/// The signed-in user, if the session cookie names a live session.
pub(crate) async fn viewer(app: &App, headers: &HeaderMap) -> Result<Option<Viewer>, Response> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let hash = auth::token_hash(&token);
    let session = match app.store.session(&hash).await {
        Ok(s) => s,
        Err(e) => return Err(store_down(app, None, e)),
    };
    Ok(session.map(|s| {
        let level = Role::parse(&s.user.role);
        Viewer {
            name: s.user.name,
            role: s.user.role,
            csrf: s.csrf,
            can_operate: level.is_some_and(|r| r >= Role::Operator),
            is_admin: level == Some(Role::Admin),
            token_hash: hash,
            level,
        }
    }))
}

/// The signed-in user, or a redirect to the sign-in page.
pub(crate) async fn require(
    app: &App,
    headers: &HeaderMap,
    here: &str,
) -> Result<Viewer, Response> {
    match viewer(app, headers).await? {
        Some(v) => Ok(v),
        None => Err(Redirect::to(&format!("/login?next={}", urlencode(here))).into_response()),
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks a change (a POST): signed in, the form's CSRF token, and at least
/// `needed`. A refusal is recorded in the audit trail and answered 403.
pub(crate) async fn require_change(
    app: &App,
    headers: &HeaderMap,
    csrf: Option<&str>,
    needed: Role,
    what: &str,
) -> Result<Viewer, Response> {
    let Some(v) = viewer(app, headers).await? else {
        return Err(message(
            app,
            StatusCode::UNAUTHORIZED,
            None,
            "Not signed in",
            "Sign in first: /login",
        ));
    };
    let csrf_ok = csrf.is_some_and(|c| auth::same_secret(c, &v.csrf));
    let role_ok = v.level.is_some_and(|r| r >= needed);
    if csrf_ok && role_ok {
        return Ok(v);
    }
    let reason = if !csrf_ok {
        "the form's CSRF token is missing or wrong".to_string()
    } else {
        format!(
            "role {} may not do this (needs {} or higher)",
            v.role,
            needed.as_str()
        )
    };
    let event = NewEvent::new("web.denied", &v.name)
        .target(what)
        .outcome("denied")
        .error(reason.as_str())
        .detail(
            json!({ "user": v.name, "role": v.role, "needed": needed.as_str(), "change": what }),
        );
    if let Err(e) = app.recorder.record(event).await {
        tracing::error!(error = %format!("{e:#}"), "cannot record a refused dashboard change");
    }
    tracing::warn!(user = %v.name, change = what, "dashboard change refused: {reason}");
    Err(message(
        app,
        StatusCode::FORBIDDEN,
        Some(&v),
        "Not allowed",
        &format!("Refused: {reason}. The attempt was recorded in the audit trail."),
    ))
}

/// Records a change made through the dashboard (best effort: the change
/// itself already carries its own audit event where the store writes one).
pub(crate) async fn record(app: &App, event: NewEvent) {
    if let Err(e) = app.recorder.record(event).await {
        tracing::error!(error = %format!("{e:#}"), "cannot record a dashboard event");
    }
}

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

/// Only a local path may be a redirect target.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/runs".into(),
    }
}

fn login_form(
    app: &App,
    status: StatusCode,
    next: &str,
    user: &str,
    error: Option<&str>,
) -> Response {
    let token = auth::random_token();
    let mut resp = render_status(
        app,
        status,
        "login.html",
        None,
        "login",
        json!({ "csrf": token, "next": next, "user": user, "error": error }),
    );
    set_cookie(
        &mut resp,
        &format!("{LOGIN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/login; Max-Age=1800"),
    );
    resp
}

pub(crate) async fn login_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    match viewer(&app, &headers).await {
        Ok(Some(_)) => Redirect::to(&safe_next(q.next.as_deref())).into_response(),
        Ok(None) => login_form(
            &app,
            StatusCode::OK,
            &safe_next(q.next.as_deref()),
            "",
            None,
        ),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    user: String,
    password: String,
    csrf: Option<String>,
    next: Option<String>,
}

/// An argon2id hash of a random string, checked against when the user does
/// not exist, so that a wrong name takes as long as a wrong password.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| auth::hash_password(&auth::random_token()).unwrap_or_default())
}

pub(crate) async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let client = peer.ip().to_string();
    let cookie_token = cookie(&headers, LOGIN_COOKIE);
    let csrf_ok = match (&cookie_token, &f.csrf) {
        (Some(c), Some(t)) => auth::same_secret(c, t),
        _ => false,
    };
    if !csrf_ok {
        return login_form(
            &app,
            StatusCode::FORBIDDEN,
            &next,
            &f.user,
            Some("The sign-in form expired or did not come from this dashboard; try again."),
        );
    }
    if let Some(wait) = app.limits.blocked(&f.user, &client) {
        record(
            &app,
            NewEvent::new("web.login", &f.user)
                .target(f.user.as_str())
                .outcome("rate_limited")
                .detail(json!({ "user": f.user, "client": client })),
        )
        .await;
        let minutes = wait.as_secs().div_ceil(60);
        return login_form(
            &app,
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            &f.user,
            Some(&format!(
                "Too many failed sign-ins ({} within {} minutes) for this user or address: try again in {minutes} minute(s).",
                RateLimit::MAX_FAILURES,
                RateLimit::WINDOW.as_secs() / 60
            )),
        );
    }
    let found = match app.store.user_password_hash(&f.user).await {
        Ok(u) => u,
        Err(e) => return store_down(&app, None, e),
    };
    let hash = found
        .as_ref()
        .map(|(_, h)| h.clone())
        .unwrap_or_else(|| dummy_hash().to_string());
    let password = f.password.clone();
    let matches = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let user = match (found, matches) {
        (Some((u, _)), true) => u,
        _ => {
            app.limits.failed(&f.user, &client);
            record(
                &app,
                NewEvent::new("web.login", &f.user)
                    .target(f.user.as_str())
                    .outcome("failed")
                    .error("wrong user name or password")
                    .detail(json!({ "user": f.user, "client": client })),
            )
            .await;
            return login_form(
                &app,
                StatusCode::UNAUTHORIZED,
                &next,
                &f.user,
                Some("Wrong user name or password."),
            );
        }
    };
    app.limits.succeeded(&user.name);
    let token = auth::random_token();
    let csrf = auth::random_token();
    let expires = chrono::Utc::now() + chrono::Duration::hours(SESSION_HOURS);
    if let Err(e) = app
        .store
        .create_session(&auth::token_hash(&token), &user.name, &csrf, expires)
        .await
    {
        return store_down(&app, None, e);
    }
    record(
        &app,
        NewEvent::new("web.login", &user.name)
            .target(user.name.as_str())
            .outcome("ok")
            .detail(json!({ "user": user.name, "role": user.role, "client": client })),
    )
    .await;
    let mut resp = Redirect::to(&next).into_response();
    *resp.status_mut() = StatusCode::SEE_OTHER;
    set_cookie(
        &mut resp,
        &format!(
            "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            SESSION_HOURS * 3600
        ),
    );
    set_cookie(
        &mut resp,
        &format!("{LOGIN_COOKIE}=; HttpOnly; SameSite=Strict; Path=/login; Max-Age=0"),
    );
    resp
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    pub csrf: Option<String>,
}

pub(crate) async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let v = match require_change(&app, &headers, f.csrf.as_deref(), Role::Auditor, "logout").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = app.store.delete_session(&v.token_hash).await {
        return store_down(&app, Some(&v), e);
    }
    record(
        &app,
        NewEvent::new("web.logout", &v.name)
            .target(v.name.as_str())
            .outcome("ok")
            .detail(json!({ "user": v.name })),
    )
    .await;
    let mut resp = Redirect::to("/login").into_response();
    *resp.status_mut() = StatusCode::SEE_OTHER;
    set_cookie(
        &mut resp,
        &format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    resp
}
