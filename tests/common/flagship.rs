//! The flagship job (`playbooks/parking-permits.yaml`) run once in a fresh
//! workspace against the real legacy portal, mail written to files: for
//! tests that look at what a flagship run leaves in the store.

use std::path::PathBuf;

use super::portal::Portal;
use super::{Backend, Workspace};

pub const PORTAL_USER: &str = "permits-bot";
pub const PORTAL_PASSWORD: &str = "Pw-5d1c-Report-Flagship";

/// The portal's reasons for the four requests it rejects.
pub const REJECTIONS: [(&str, &str); 4] = [
    (
        "PR-2026-0007",
        "Vehicle plate must be 4 to 10 capitals, digits or dashes",
    ),
    ("PR-2026-0015", "Postcode must be 4 digits"),
    (
        "PR-2026-0023",
        "Start date must be a real date between 2020-01-01 and 2099-12-31",
    ),
    ("PR-2026-0031", "Email must be a valid address"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A portal with the flagship's credentials.
pub fn portal() -> Portal {
    Portal::start(&["--user", PORTAL_USER, "--password", PORTAL_PASSWORD])
}

/// A workspace with the flagship playbook, its export and its bot, mail to files.
pub fn workspace(backend: Backend) -> Workspace {
    let ws = Workspace::new(backend);
    for (from, to) in [
        (
            "playbooks/parking-permits.yaml",
            "playbooks/parking-permits.yaml",
        ),
        (
            "fixtures/sheets/permit-requests.xlsx",
            "fixtures/sheets/permit-requests.xlsx",
        ),
        ("bots/parking-permits.yaml", "bots/parking-permits.yaml"),
    ] {
        let dest = ws.path().join(to);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(repo().join(from), &dest).unwrap_or_else(|e| panic!("copy {from}: {e}"));
    }
    ws.write(
        "clerk.yaml",
        "mail:\n  transport: file\n  from: clerk@city.example\n",
    );
    ws
}

/// Runs the flagship job once; returns `clerk run --json`'s output.
pub fn run(ws: &Workspace, portal: &Portal) -> serde_json::Value {
    let r = ws.clerk_env(
        &[
            "run",
            "playbooks/parking-permits.yaml",
            "--input",
            &format!("portal_url={}", portal.url),
            "--json",
        ],
        &[
            ("CLERK_SECRET_PORTAL_USER", PORTAL_USER),
            ("CLERK_SECRET_PORTAL_PASSWORD", PORTAL_PASSWORD),
        ],
    );
    assert_eq!(
        r.code(),
        0,
        "the flagship run failed\nstdout: {}\nstderr: {}",
        r.stdout(),
        r.stderr()
    );
    r.json()
}
