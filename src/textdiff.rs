//! A unified diff of two texts (`diff -u` format, 3 lines of context), for
//! `clerk bots diff`. Bot files and playbooks are small (hundreds of lines),
//! so a plain longest-common-subsequence table is fast enough and keeps
//! clerk free of another dependency.

/// One line of the edit script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Keep(usize, usize),
    Del(usize),
    Add(usize),
}

/// Above this many line pairs the table would be too big; such texts are
/// shown as fully replaced (never the case for real playbooks).
const MAX_CELLS: usize = 25_000_000;

fn script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    if n.saturating_mul(m) > MAX_CELLS {
        let mut ops: Vec<Op> = (0..n).map(Op::Del).collect();
        ops.extend((0..m).map(Op::Add));
        return ops;
    }
    // lcs[i][j] = length of the LCS of a[i..] and b[j..].
    let w = m + 1;
    let mut lcs = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i * w + j] = if a[i] == b[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Keep(i, j));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i * w + j + 1] >= lcs[(i + 1) * w + j]) {
            ops.push(Op::Add(j));
            j += 1;
        } else {
            ops.push(Op::Del(i));
            i += 1;
        }
    }
    // Deletions before additions within a change, as `diff` prints them.
    let mut k = 0;
    while k < ops.len() {
        if matches!(ops[k], Op::Keep(..)) {
            k += 1;
            continue;
        }
        let end = ops[k..]
            .iter()
            .position(|o| matches!(o, Op::Keep(..)))
            .map_or(ops.len(), |p| k + p);
        ops[k..end].sort_by_key(|o| matches!(o, Op::Add(_)));
        k = end;
    }
    ops
}

/// `--- old_name` / `+++ new_name` and the hunks; empty when the texts are equal.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    const CONTEXT: usize = 3;
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = script(&a, &b);
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Op::Keep(..)))
        .map(|(k, _)| k)
        .collect();
    if changed.is_empty() {
        return String::new();
    }
    // Group changes whose context overlaps into hunks (ranges of `ops`).
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &k in &changed {
        let start = k.saturating_sub(CONTEXT);
        let end = (k + CONTEXT + 1).min(ops.len());
        match hunks.last_mut() {
            Some(h) if start <= h.1 => h.1 = end,
            _ => hunks.push((start, end)),
        }
    }
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    for (s, e) in hunks {
        let slice = &ops[s..e];
        // Line numbers (1-based) where the hunk starts in each text.
        let (mut ai, mut bi) = (0usize, 0usize);
        for o in &ops[..s] {
            match o {
                Op::Keep(..) => {
                    ai += 1;
                    bi += 1;
                }
                Op::Del(_) => ai += 1,
                Op::Add(_) => bi += 1,
            }
        }
        let a_len = slice.iter().filter(|o| !matches!(o, Op::Add(_))).count();
        let b_len = slice.iter().filter(|o| !matches!(o, Op::Del(_))).count();
        let from = |start: usize, len: usize| {
            if len == 0 {
                format!("{start},0")
            } else if len == 1 {
                format!("{}", start + 1)
            } else {
                format!("{},{len}", start + 1)
            }
        };
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            from(ai, a_len),
            from(bi, b_len)
        ));
        for o in slice {
            match *o {
                Op::Keep(i, _) => out.push_str(&format!(" {}\n", a[i])),
                Op::Del(i) => out.push_str(&format!("-{}\n", a[i])),
                Op::Add(j) => out.push_str(&format!("+{}\n", b[j])),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "x", "y"), "");
    }

    #[test]
    fn a_changed_line_with_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let new = "1\n2\n3\n4\nFIVE\n6\n7\n8\n9\n";
        assert_eq!(
            unified(old, new, "v1", "v2"),
            "--- v1\n+++ v2\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+FIVE\n 6\n 7\n 8\n"
        );
    }

    #[test]
    fn far_apart_changes_are_separate_hunks_and_edges_work() {
        let old: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let new = old.replacen("1\n", "one\n", 1).replace("20\n", "20\n21\n");
        let d = unified(&old, &new, "a", "b");
        assert!(d.contains("@@ -1,4 +1,4 @@\n-1\n+one\n 2\n 3\n 4\n"), "{d}");
        assert!(d.contains("@@ -18,3 +18,4 @@\n 18\n 19\n 20\n+21\n"), "{d}");
        assert_eq!(
            unified("", "x\n", "a", "b"),
            "--- a\n+++ b\n@@ -0,0 +1 @@\n+x\n"
        );
    }
}
