//! Per-action overhead of clerk's browser actions over bare fantoccini calls,
//! on one real headless Chromium (started by clerk's own session code).
//!
//! Run with `cargo bench --bench browser_overhead`. It prints, per variant,
//! the median and mean time of one field fill, and of "open a simple local
//! form, fill three fields, submit" (the figure usually quoted for Selenium
//! and Robot Framework), then clerk's overhead:
//! - over the *same* single WebDriver round trip done bare (the cost of the
//!   registry, argument checking, locator resolution and audit note), and
//! - over the idiomatic bare fantoccini fill (find + clear + send_keys).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clerk::actions::browser::session;
use clerk::actions::{ActionContext, AuditNote, RunInfo, RunResources, StepInfo};
use clerk::audit::Recorder;
use clerk::config::Config;
use clerk::secrets::Secrets;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ROUNDS: usize = 10;
const PER_ROUND: usize = 20;
const FORM_ROUNDS: usize = 15;

const FORM: &str = r#"<!DOCTYPE html><html><head><title>Form</title></head><body>
<form action="done.html" method="get">
<p><label for="f1">Applicant name</label> <input id="f1" name="a"></p>
<p><label for="f2">Postcode</label> <input id="f2" name="b"></p>
<p><label>Email <input id="f3" name="c"></label></p>
<p><button type="submit">Submit case</button></p>
</form></body></html>"#;

const DONE: &str = r#"<!DOCTYPE html><html><head><title>Done</title></head><body>
<p class="case-ref">CASE-000001</p></body></html>"#;

/// The same work clerk's fill does, as one bare script (no locator machinery).
const BARE_FILL: &str = "var e = document.getElementById(arguments[0]); e.focus(); e.value = arguments[1]; \
     e.dispatchEvent(new Event('input', {bubbles: true})); \
     e.dispatchEvent(new Event('change', {bubbles: true})); return true;";

struct Stats {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Stats {
    fn new(name: &'static str) -> Self {
        Stats {
            name,
            samples: Vec::new(),
        }
    }

    fn median(&self) -> f64 {
        let mut v: Vec<f64> = self.samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            return 0.0;
        }
        v[v.len() / 2]
    }

    fn mean(&self) -> f64 {
        let n = self.samples.len().max(1) as f64;
        self.samples
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .sum::<f64>()
            / n
    }

    fn print(&self) {
        println!(
            "{:<44} median {:>7.2} ms   mean {:>7.2} ms   (n={})",
            self.name,
            self.median(),
            self.mean(),
            self.samples.len()
        );
    }
}

struct Harness {
    run: RunInfo,
    step: StepInfo,
    config: Config,
    secrets: Arc<Secrets>,
    resources: RunResources,
    recorder: Recorder,
    cancel: CancellationToken,
}

impl Harness {
    /// Runs one registered action exactly as the engine does (minus the audit write).
    async fn action(&self, name: &str, args: Value) -> Value {
        let def = clerk::actions::find(name).expect("registered action");
        let mut ctx = ActionContext {
            run: &self.run,
            step: &self.step,
            config: &self.config,
            secrets: &self.secrets,
            resources: &self.resources,
            recorder: &self.recorder,
            journal: &clerk::engine::journal::StoreJournal::new(self.recorder.store().clone()),
            cancel: &self.cancel,
            timeout: None,
            note: AuditNote::default(),
        };
        match (def.run)(&mut ctx, args).await {
            Ok(v) => v,
            Err(e) => panic!("{name} failed: {:#}", e.error),
        }
    }
}

async fn bare_fill_idiomatic(c: &Client, id: &str, value: &str) {
    let el = c.find(Locator::Id(id)).await.expect("find");
    el.clear().await.expect("clear");
    el.send_keys(value).await.expect("send_keys");
}

async fn bare_fill_script(c: &Client, id: &str, value: &str) {
    c.execute(BARE_FILL, vec![json!(id), json!(value)])
        .await
        .expect("execute");
}

fn pct(clerk: f64, bare: f64) -> f64 {
    (clerk - bare) / bare * 100.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::write(root.join("form.html"), FORM)?;
    std::fs::write(root.join("done.html"), DONE)?;
    let form_url = format!("file://{}", root.join("form.html").display());

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
        recorder,
        cancel: CancellationToken::new(),
    };

    let started = Instant::now();
    h.action("browser.open", json!({ "url": form_url })).await;
    println!(
        "browser start + first page: {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let client = {
        let ctx_probe = ActionContext {
            run: &h.run,
            step: &h.step,
            config: &h.config,
            secrets: &h.secrets,
            resources: &h.resources,
            recorder: &h.recorder,
            journal: &clerk::engine::journal::StoreJournal::new(h.recorder.store().clone()),
            cancel: &h.cancel,
            timeout: None,
            note: AuditNote::default(),
        };
        session::handle(&ctx_probe)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .client
    };

    // --- one fill, repeated on the same page
    let mut idiomatic = Stats::new("bare fantoccini: find + clear + send_keys");
    let mut script = Stats::new("bare fantoccini: one execute (same work)");
    let mut by_id = Stats::new("clerk browser.fill { id }");
    let mut by_label = Stats::new("clerk browser.fill { label }");
    // Warm-up (JIT, connection reuse).
    for i in 0..10 {
        bare_fill_idiomatic(&client, "f1", &format!("warm {i}")).await;
        bare_fill_script(&client, "f1", "warm").await;
        h.action(
            "browser.fill",
            json!({ "label": "Applicant name", "value": "warm" }),
        )
        .await;
    }
    for round in 0..ROUNDS {
        for i in 0..PER_ROUND {
            let value = format!("Applicant {round}-{i}");
            let t = Instant::now();
            bare_fill_idiomatic(&client, "f1", &value).await;
            idiomatic.samples.push(t.elapsed());

            let t = Instant::now();
            bare_fill_script(&client, "f1", &value).await;
            script.samples.push(t.elapsed());

            let t = Instant::now();
            h.action("browser.fill", json!({ "id": "f1", "value": value }))
                .await;
            by_id.samples.push(t.elapsed());

            let t = Instant::now();
            h.action(
                "browser.fill",
                json!({ "label": "Applicant name", "value": value }),
            )
            .await;
            by_label.samples.push(t.elapsed());
        }
    }
    let check = client
        .execute("return document.getElementById('f1').value", vec![])
        .await?;
    assert_eq!(
        check,
        json!(format!("Applicant {}-{}", ROUNDS - 1, PER_ROUND - 1))
    );

    // --- open the form, fill three fields, submit, read the confirmation
    let mut form_bare = Stats::new("bare fantoccini: open, 3 fills, submit");
    let mut form_clerk = Stats::new("clerk actions: open, 3 fills, submit");
    for round in 0..FORM_ROUNDS {
        let t = Instant::now();
        client.goto(&form_url).await?;
        for (id, v) in [
            ("f1", "Zoë O'Brien"),
            ("f2", "1000"),
            ("f3", "zoe@example.org"),
        ] {
            bare_fill_idiomatic(&client, id, v).await;
        }
        client.find(Locator::Css("button")).await?.click().await?;
        let r = client
            .wait()
            .for_element(Locator::Css(".case-ref"))
            .await?
            .text()
            .await?;
        assert_eq!(r, "CASE-000001");
        if round > 0 {
            form_bare.samples.push(t.elapsed());
        }

        let t = Instant::now();
        h.action("browser.open", json!({ "url": form_url })).await;
        h.action(
            "browser.fill",
            json!({ "label": "Applicant name", "value": "Zoë O'Brien" }),
        )
        .await;
        h.action(
            "browser.fill",
            json!({ "label": "Postcode", "value": "1000" }),
        )
        .await;
        h.action(
            "browser.fill",
            json!({ "label": "Email", "value": "zoe@example.org" }),
        )
        .await;
        h.action("browser.click", json!({ "text": "Submit case" }))
            .await;
        let r = h
            .action("browser.read_text", json!({ "css": ".case-ref" }))
            .await;
        assert_eq!(r, json!("CASE-000001"));
        if round > 0 {
            form_clerk.samples.push(t.elapsed());
        }
    }

    println!();
    println!(
        "one field fill ({} samples each, interleaved):",
        ROUNDS * PER_ROUND
    );
    for s in [&idiomatic, &script, &by_id, &by_label] {
        s.print();
    }
    println!();
    println!("a simple local form (open, 3 fills, submit, read result):");
    form_bare.print();
    form_clerk.print();
    println!();
    println!(
        "clerk fill {{ label }} vs the same single round trip done bare: {:+.1} % (median), {:+.1} % (mean)",
        pct(by_label.median(), script.median()),
        pct(by_label.mean(), script.mean())
    );
    println!(
        "clerk fill {{ id }}    vs the same single round trip done bare: {:+.1} % (median)",
        pct(by_id.median(), script.median())
    );
    println!(
        "clerk fill {{ label }} vs idiomatic bare fantoccini fill:        {:+.1} % (median)",
        pct(by_label.median(), idiomatic.median())
    );
    println!(
        "clerk form vs bare fantoccini form:                             {:+.1} % (median)",
        pct(form_clerk.median(), form_bare.median())
    );
    println!("target: < 10 % overhead per action");

    h.resources.close_all().await;
    Ok(())
}
