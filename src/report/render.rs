//! Renders a [`Report`] with the minijinja templates under
//! `src/report/templates/` (compiled in): the standalone file of
//! `clerk report`, and the same body for the dashboard's run page.

use minijinja::{Environment, context};

use super::model::Report;

/// The report's stylesheet and script, inlined into every report.
pub const CSS: &str = include_str!("templates/report.css");
pub const JS: &str = include_str!("templates/report.js");

/// Adds the report templates (`report/report.html`, `report/body.html`,
/// `report/actions.html`) to `env`, so another page can include the body.
pub fn add_templates(env: &mut Environment<'static>) {
    for (name, src) in [
        ("report/report.html", include_str!("templates/report.html")),
        ("report/body.html", include_str!("templates/body.html")),
        (
            "report/actions.html",
            include_str!("templates/actions.html"),
        ),
    ] {
        // The templates are part of the binary and checked by the tests; a
        // syntax error in one is a build defect, reported at render time.
        if let Err(e) = env.add_template(name, src) {
            tracing::error!("report template {name} does not parse: {e}");
        }
    }
}

/// The whole report as one self-contained HTML document.
pub fn standalone(report: &Report) -> anyhow::Result<String> {
    let mut env = Environment::new();
    add_templates(&mut env);
    let tmpl = env.get_template("report/report.html")?;
    let html = tmpl.render(context! {
        r => report,
        css => CSS,
        js => JS,
        version => env!("CARGO_PKG_VERSION"),
    })?;
    Ok(html)
}
