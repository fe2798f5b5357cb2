//! Validation never panics: thousands of random and mutated YAML documents go
//! through the playbook loader, which must answer with a result or diagnostics.

use std::path::Path;

use clerk::actions::Registry;
use clerk::playbook::load_str;

/// A small deterministic PRNG (xorshift64*), so failures are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const TOKENS: &[&str] = &[
    "name:",
    "steps:",
    "- ",
    "  ",
    "    ",
    "\n",
    "log:",
    "wait:",
    "set:",
    "file.read:",
    "file.write:",
    "for_each:",
    "as:",
    "if:",
    "retry:",
    "timeout:",
    "on_error:",
    "save_as:",
    "output:",
    "inputs:",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "&a ",
    "*a",
    "!!str ",
    "!!int ",
    "|",
    ">",
    "'",
    "\"",
    "{{",
    "}}",
    "{%",
    "%}",
    "#",
    "~",
    "null",
    "true",
    "1e999",
    "-1",
    "0x1F",
    "2s",
    "soon",
    "attempts: 0",
    "attempts: 3",
    "delay: 1ms",
    "backoff: 99",
    "path: x",
    "text: y",
    "type: number",
    "default:",
    "é",
    "\u{0}",
    "\t",
    "---",
    "...",
    "? ",
    "%YAML 1.2",
    "{{ inputs.x }}",
    "{{ secrets.y | upper }}",
    "{{ a.b[0] }}",
    "{{ (",
    "loop.index",
    "continue",
    "fail",
    "steps: []",
];

fn seeds() -> Vec<String> {
    let mut out = vec![
        "name: a\nsteps:\n  - log: hi\n".to_string(),
        "name: b\ninputs:\n  n: { type: number, default: 2 }\nsteps:\n  - for_each: \"{{ [1, 2] }}\"\n    retry: { attempts: 2, delay: 1ms }\n    steps:\n      - log: \"{{ item * inputs.n }}\"\n    on_error: continue\n".to_string(),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_to_string(e.path()) {
                out.push(t);
            }
        }
    }
    out
}

fn mutate(rng: &mut Rng, doc: &str) -> String {
    let mut bytes = doc.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                let len = rng.below(20).min(bytes.len() - i);
                bytes.drain(i..i + len);
            }
            2 => {
                let i = rng.below(bytes.len() + 1);
                let tok = rng.pick(TOKENS).as_bytes().to_vec();
                bytes.splice(i..i, tok);
            }
            3 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                let j = rng.below(bytes.len());
                let (a, b) = (i.min(j), i.max(j));
                let chunk = bytes[a..b].to_vec();
                bytes.splice(a..a, chunk);
            }
            _ => bytes.truncate(rng.below(bytes.len() + 1)),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn random_doc(rng: &mut Rng) -> String {
    (0..rng.below(60)).map(|_| rng.pick(TOKENS)).collect()
}

#[test]
fn validation_never_panics_on_random_and_mutated_documents() {
    let seeds = seeds();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut rejected = 0;
    let total = 20_000;
    for i in 0..total {
        let doc = if i % 3 == 0 {
            random_doc(&mut rng)
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed)
        };
        let result = std::panic::catch_unwind(|| load_str(&doc, Path::new("fuzz.yaml"), &Registry));
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(diags)) => {
                rejected += 1;
                for d in &diags.0 {
                    let line = d.to_string();
                    assert!(
                        line.starts_with("fuzz.yaml:"),
                        "diagnostic without a position: {line}"
                    );
                    assert!(!line.contains("Error {"), "debug dump: {line}");
                }
            }
            Err(_) => panic!("validation panicked on document #{i}:\n{doc:?}"),
        }
    }
    // The corpus must actually exercise the error paths.
    assert!(
        rejected > total / 2,
        "only {rejected} of {total} documents were rejected"
    );
}
