//! What users write, and worse: the example manifests, the install
//! manifests and the `--config` file, each as it is and in seeded
//! mutations (bytes flipped, lines dropped, doubled or cut, values replaced
//! by hostile ones), through every parser and compiler that reads them
//! (`lb_userspace::fuzzing`). Each must come back with diagnostics, never
//! panic. The same entry points are `cargo fuzz` targets (`fuzz/`, run
//! for longer by `cargo xtask fuzz`). `LB_FUZZ_COUNT` sets the mutations
//! per file (default 150).

use std::path::{Path, PathBuf};

use lb_userspace::fuzzing::{config_file, manifests_file};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEED: u64 = 0x6c62_7573_6572;

/// Values that have broken parsers before, somewhere.
const HOSTILE: &[&str] = &[
    "",
    "-1",
    "0",
    "4294967296",
    "99999999999999999999999",
    "1e309",
    "NaN",
    "~",
    "[",
    "{}",
    "[]",
    "\"\\u0000\"",
    "'",
    "/a/..%2f..%2fetc/passwd",
    "(?P<x>a",
    "(a+)+$",
    "*.*.example.com",
    "256.256.256.256",
    "192.168.1.200-192.168.1.150",
    "::1/129",
    "10.0.0.0/33",
    "${jndi:ldap://x}",
    "$(rm -rf /)",
    "\"\\r\\nInjected: yes\"",
    "&anchor",
    "*anchor",
    "!!binary AAAA",
    "<<: *x",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn mutate(rng: &mut ChaCha8Rng, text: &str) -> Vec<u8> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for _ in 0..rng.random_range(1..=4) {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let at = rng.random_range(0..lines.len());
        match rng.random_range(0..6) {
            0 => {
                lines.remove(at);
            }
            1 => {
                let line = lines[at].clone();
                lines.insert(at, line);
            }
            // A value replaced by a hostile one.
            2 | 3 => {
                let hostile = HOSTILE[rng.random_range(0..HOSTILE.len())];
                let line = &lines[at];
                lines[at] = match line.split_once(": ") {
                    Some((key, _)) => format!("{key}: {hostile}"),
                    None => match line.split_once("- ") {
                        Some((indent, _)) => format!("{indent}- {hostile}"),
                        None => hostile.to_string(),
                    },
                };
            }
            // Indentation shifted.
            4 => lines[at] = format!("{}{}", " ".repeat(rng.random_range(0..4)), lines[at].trim_start()),
            _ => {
                let cut = rng.random_range(0..=lines[at].len());
                let cut = (0..=cut).rev().find(|&i| lines[at].is_char_boundary(i)).unwrap_or(0);
                lines[at].truncate(cut);
            }
        }
    }
    let mut bytes = lines.join("\n").into_bytes();
    // Now and then, raw bytes flipped (also into invalid UTF-8).
    if rng.random_bool(0.2) && !bytes.is_empty() {
        for _ in 0..rng.random_range(1..=3) {
            let at = rng.random_range(0..bytes.len());
            bytes[at] ^= 1 << rng.random_range(0..8);
        }
    }
    bytes
}

fn mutations_per_file() -> usize {
    std::env::var("LB_FUZZ_COUNT").ok().and_then(|v| v.parse().ok()).unwrap_or(150)
}

#[test]
fn manifests_and_their_mutations_give_diagnostics_not_panics() {
    let root = repo_root();
    let mut files = yaml_files(&root.join("manifests/examples"));
    files.extend(yaml_files(&root.join("manifests")));
    assert!(files.len() >= 10, "the examples and install manifests are found: {files:?}");
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut all = String::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        manifests_file(text.as_bytes());
        for _ in 0..mutations_per_file() {
            manifests_file(&mutate(&mut rng, &text));
        }
        all.push_str(&text);
        all.push_str("\n---\n");
    }
    // Everything at once, so that objects meet their references.
    manifests_file(all.as_bytes());
    for _ in 0..mutations_per_file() {
        manifests_file(&mutate(&mut rng, &all));
    }
}

#[test]
fn config_files_and_their_mutations_give_errors_not_panics() {
    let config = "addressPools:\n  - name: lan\n    addresses: [192.168.1.240/29, 192.168.1.250-192.168.1.254]\n    \
                  autoAssign: true\n    avoidBuggyIPs: false\ningressStatus: service\n";
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    config_file(config.as_bytes());
    for _ in 0..mutations_per_file() * 10 {
        config_file(&mutate(&mut rng, config));
    }
}
