//! Every fuzz target over its corpus (`fuzz/corpus/<target>/`, including
//! inputs that once crashed), then a short seeded mutation run from it:
//! what `tools/test` runs of the fuzzing. Long runs: see fuzz/README.md.

use std::path::Path;

/// Mutated inputs per target and run (seeded, so a failure reproduces).
const MUTATIONS: usize = 20_000;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).expect("corpus file")).collect()
}

/// xorshift64*: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Interesting bytes for text protocols.
const DICT: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\0",
    b"%00",
    b"%",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked",
    b"\n",
    b"@**",
    b"**",
    b"#**",
    b">",
    b"|",
    b"```",
    b"[",
    b"](",
    b"\"",
    b"{",
    b"}",
    b"\\",
    b"\xff",
    b"\xe2\x80",
    b"narrow=",
    b"event_types=",
    b"&",
    b"=",
    b"-1",
    b"99999999999999999999",
];

fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            1 => {
                let piece = DICT[rng.below(DICT.len())];
                out.splice(at..at, piece.iter().copied());
            }
            2 if at < out.len() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(32)).min(out.len());
                let copy = out[start..end].to_vec();
                out.splice(at..at, copy);
            }
            _ => out.truncate(at),
        }
    }
    out
}

#[test]
fn every_target_survives_its_corpus_and_a_seeded_mutation_run() {
    for (name, target) in squall_fuzz::TARGETS {
        let seeds = corpus(name);
        assert!(!seeds.is_empty(), "{name}: empty corpus");
        for seed in &seeds {
            target(seed);
        }
        let mut rng = Rng(0x5eed_0000 + name.len() as u64);
        for _ in 0..MUTATIONS {
            let seed = &seeds[rng.below(seeds.len())];
            let input = mutate(seed, &mut rng);
            let caught = std::panic::catch_unwind(|| target(&input));
            assert!(caught.is_ok(), "{name} panicked on {:?}", String::from_utf8_lossy(&input));
        }
    }
}
