//! Label resolution on a big legacy form: a generated table-layout page of
//! 2,000 fields captioned only by the table cell to their left (no
//! `<label>`), in one real headless Chromium.
//!
//! Run with `cargo bench --bench label_lookup`. Prints, per lookup:
//! - the resolver's own time in the page (`performance.now()` around
//!   `__clerkResolve`): a cold lookup (the page's caption index is built:
//!   the first lookup on a page, or after the page changed), then warm
//!   lookups of the first, middle and last field, a
//!   case-insensitive match, and for a miss (both passes over every rule,
//!   plus the captions and did-you-mean of the error);
//! - a whole clerk `browser.fill { label }` step (WebDriver round trip,
//!   argument checks, audit note) on the last field.
//!
//! Target (issue 15): under 20 ms per lookup.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use clerk::actions::browser::session;
use clerk::actions::{ActionContext, AuditNote, RunInfo, RunResources, StepInfo};
use clerk::audit::Recorder;
use clerk::config::Config;
use clerk::secrets::Secrets;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const FIELDS: usize = 2000;
const REPEAT: usize = 20;

fn page() -> String {
    let mut rows = String::new();
    for i in 1..=FIELDS {
        let input = match i % 10 {
            3 => format!("<select name=\"s{i}\"><option>A</option><option>B</option></select>"),
            7 => format!(
                "<input type=\"checkbox\" name=\"c{i}\"> <font size=\"2\">Confirm {i:04}</font>"
            ),
            _ => format!("<input type=\"text\" name=\"x{i}\" size=\"20\">"),
        };
        rows.push_str(&format!(
            "<tr><td align=\"right\"><font size=\"2\">Field {i:04}:</font></td><td>{input}</td></tr>\n"
        ));
    }
    format!(
        "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.0 Transitional//EN\"><html><head><title>Big form</title></head>\
         <body><form><table border=\"0\" cellpadding=\"2\">\n{rows}</table></form></body></html>"
    )
}

/// Times `n` resolver lookups inside the page; returns min and median ms.
const IN_PAGE: &str = "var loc = arguments[0], n = arguments[1], cold = arguments[2], last = null, t = []; \
    for (var i = 0; i < n; i++) { \
      if (cold && document.__clerkLabelIndex) { document.__clerkLabelIndex.stale = true; } \
      var t0 = performance.now(); \
      last = window.__clerkResolve(loc, { op: 'find', need: 'visible', explain: true }); \
      t.push(performance.now() - t0); } \
    t.sort(function (a, b) { return a - b; }); \
    return { min: t[0], median: t[Math.floor(t.length / 2)], ok: !!(last && last.ok), message: last && last.message };";

struct Harness {
    run: RunInfo,
    step: StepInfo,
    config: Config,
    secrets: Arc<Secrets>,
    resources: RunResources,
    recorder: Recorder,
    journal: clerk::engine::journal::StoreJournal,
    cancel: CancellationToken,
}

impl Harness {
    fn ctx(&self) -> ActionContext<'_> {
        ActionContext {
            run: &self.run,
            step: &self.step,
            config: &self.config,
            secrets: &self.secrets,
            resources: &self.resources,
            recorder: &self.recorder,
            journal: &self.journal,
            cancel: &self.cancel,
            timeout: None,
            note: AuditNote::default(),
        }
    }

    async fn action(&self, name: &str, args: Value) -> Value {
        let def = clerk::actions::find(name).expect("registered action");
        let mut ctx = self.ctx();
        match (def.run)(&mut ctx, args).await {
            Ok(v) => v,
            Err(e) => panic!("{name} failed: {:#}", e.error),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::write(root.join("big.html"), page())?;
    let url = format!("file://{}", root.join("big.html").display());
    let config = Config::load(Path::new("/nonexistent-clerk-bench"))?;
    let store = clerk::store::Store::open(&format!("sqlite://{}/bench.db", root.display())).await?;
    let recorder = Recorder::new(store, Arc::new(|s: &str| s.to_string()));
    let h = Harness {
        run: RunInfo {
            id: "bench".into(),
            workspace: root.to_path_buf(),
            playbook: root.join("bench.yaml"),
            actor: "bench".into(),
            bot: None,
            artifacts_dir: root.join("artifacts"),
            lineage: "run:bench".into(),
        },
        step: StepInfo {
            path: "1".into(),
            name: None,
            attempt: 1,
            sensitive: false,
            id: "1".into(),
            item_key: None,
        },
        config,
        secrets: Arc::new(Secrets::load(root)?),
        resources: RunResources::default(),
        journal: clerk::engine::journal::StoreJournal::new(recorder.store().clone()),
        recorder,
        cancel: CancellationToken::new(),
    };
    h.action("browser.open", json!({ "url": url })).await;
    let client = session::handle(&h.ctx())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .client;
    println!(
        "page: {FIELDS} fields in a table layout, captions in the cell to the left, no <label>"
    );

    let cases = [
        (
            "COLD: first lookup on the page (builds the index)",
            "Field 2000",
        ),
        ("first field (exact)", "Field 0001"),
        ("middle field (exact)", "Field 1001"),
        ("last field (exact)", "Field 2000"),
        ("last field (case/colon-insensitive)", "field 2000 :"),
        ("a checkbox by the text after it", "Confirm 1997"),
        ("a miss (error with captions + did-you-mean)", "Feild 2000x"),
    ];
    // Warm-up.
    client
        .execute(
            IN_PAGE,
            vec![
                json!({ "kind": "label", "value": "Field 0500" }),
                json!(20),
                json!(true),
            ],
        )
        .await?;
    for (what, label) in cases {
        let n = if what.starts_with("a miss") {
            5
        } else {
            REPEAT
        };
        let v = client
            .execute(
                IN_PAGE,
                vec![
                    json!({ "kind": "label", "value": label }),
                    json!(n),
                    json!(what.starts_with("COLD")),
                ],
            )
            .await?;
        println!(
            "in-page lookup, {what:<46} median {:>7.2} ms   min {:>7.2} ms   (found: {})",
            v["median"].as_f64().unwrap_or(f64::NAN),
            v["min"].as_f64().unwrap_or(f64::NAN),
            v["ok"]
        );
        if what.starts_with("a miss") {
            let m = v["message"].as_str().unwrap_or("");
            println!("    message: {}...", &m[..m.len().min(160)]);
        }
    }
    let mut samples = Vec::new();
    for i in 0..REPEAT {
        let t = Instant::now();
        h.action(
            "browser.fill",
            json!({ "label": "Field 2000", "value": format!("v{i}") }),
        )
        .await;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    println!(
        "clerk browser.fill {{ label: 'Field 2000' }} (whole step)       median {:>7.2} ms   min {:>7.2} ms",
        samples[samples.len() / 2],
        samples[0]
    );
    h.resources.close_all().await;
    Ok(())
}
