//! The fuzz targets' checks (tests/support/fuzz_checks.rs, also run by cargo-fuzz from
//! crates/configsync/fuzz) in every `cargo test -p configsync`: first every committed seed
//! (fuzz/seeds/TARGET), then seeded mutations of the seeds with the targets' dictionaries
//! (byte flips, insertions, deletions, dictionary tokens, splices). `FUZZ_CASES` sets the
//! number of mutations per target (default 300); a failure prints the seed and the input.
//! `FUZZ_CORPUS=1` also replays every input local fuzz runs kept (fuzz/corpus/TARGET,
//! gitignored; bench/fuzz.sh fills it): off by default, so that the result of `cargo test`
//! does not depend on what a checkout happens to hold.

#[path = "support/fuzz_checks.rs"]
mod fuzz_checks;

use fuzz_checks::Open;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of a directory, sorted (none when it does not exist).
fn inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(PathBuf, Vec<u8>)> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect();
    v.sort();
    v
}

/// A libFuzzer dictionary: one `"token"` a line, with `\\`, `\"` and `\xNN` escapes (none
/// when the file does not exist).
fn dictionary(name: &str) -> Vec<Vec<u8>> {
    let Ok(text) = std::fs::read_to_string(fuzz_dir().join("dicts").join(name)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        let (Some(start), Some(end)) = (l.find('"'), l.rfind('"')) else {
            continue;
        };
        if l.starts_with('#') || end <= start {
            continue;
        }
        let body = &l.as_bytes()[start + 1..end];
        let mut tok = Vec::new();
        let mut i = 0;
        while i < body.len() {
            match (body[i], body.get(i + 1)) {
                (b'\\', Some(b'x')) if i + 3 < body.len() => {
                    let hex = std::str::from_utf8(&body[i + 2..i + 4]).unwrap_or("");
                    tok.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 4;
                }
                (b'\\', Some(&c)) => {
                    tok.push(c);
                    i += 2;
                }
                (c, _) => {
                    tok.push(c);
                    i += 1;
                }
            }
        }
        out.push(tok);
    }
    out
}

/// xorshift64*: a fixed seed, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, dict: &[Vec<u8>], others: &[(PathBuf, Vec<u8>)]) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(7) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 => input.insert(at, (rng.next() & 0xff) as u8),
            2 if !input.is_empty() => {
                let i = rng.below(input.len());
                let n = rng.below(input.len() - i + 1).min(16);
                input.drain(i..i + n);
            }
            3 | 4 if !dict.is_empty() => {
                let tok = &dict[rng.below(dict.len())];
                input.splice(at..at, tok.iter().copied());
            }
            5 if !input.is_empty() => {
                let i = rng.below(input.len());
                let n = rng.below(input.len() - i + 1).min(64);
                let part = input[i..i + n].to_vec();
                input.splice(at..at, part);
            }
            6 if !others.is_empty() => {
                let o = &others[rng.below(others.len())].1;
                let i = rng.below(o.len() + 1);
                let n = rng.below(o.len() - i + 1);
                input.splice(at..at, o[i..i + n].iter().copied());
            }
            _ => input.push((rng.next() & 0xff) as u8),
        }
    }
}

fn cases() -> usize {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// Replays the target's seeds (and its local corpus with `FUZZ_CORPUS=1`), then mutations of
/// the seeds with the target's dictionary (fuzz/dicts/TARGET.dict) when it has one.
fn run(target: &str, seed: u64, check: fn(&[u8], Open)) {
    let seeds = inputs(&fuzz_dir().join("seeds").join(target));
    assert!(!seeds.is_empty(), "no seeds for {target}");
    let corpus = if std::env::var_os("FUZZ_CORPUS").is_some_and(|v| v == "1") {
        inputs(&fuzz_dir().join("corpus").join(target))
    } else {
        Vec::new()
    };
    for (path, data) in seeds.iter().chain(&corpus) {
        let r = std::panic::catch_unwind(|| check(data, Open::KNOWN));
        assert!(r.is_ok(), "{target}: {} fails", path.display());
    }
    let dict = dictionary(&format!("{target}.dict"));
    let mut rng = Rng(seed);
    for case in 0..cases() {
        let mut input = seeds[rng.below(seeds.len())].1.clone();
        mutate(&mut rng, &mut input, &dict, &seeds);
        let r = std::panic::catch_unwind(|| check(&input, Open::KNOWN));
        assert!(
            r.is_ok(),
            "{target}: mutation {case} (seed {seed:#x}) fails on {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

#[test]
fn call() {
    run("call", 0x7a4d_e301, fuzz_checks::check_call);
}

#[test]
fn answer() {
    run("answer", 0x5eed_a115, fuzz_checks::check_answer);
}

#[test]
fn area() {
    run("area", 0x0a4e_a000, fuzz_checks::check_area_bytes);
}

#[test]
fn plan() {
    run("plan", 0x9_1a4e, |data, open| {
        let _ = fuzz_checks::check_plan(data, open);
    });
}

/// Random programs too: the plan target reads any bytes as a program.
#[test]
fn plan_random_programs() {
    let mut rng = Rng(0xdead_beef);
    for _ in 0..cases() {
        let n = rng.below(96);
        let data: Vec<u8> = (0..n).map(|_| (rng.next() >> 24) as u8).collect();
        fuzz_checks::check_plan(&data, Open::KNOWN);
    }
}
