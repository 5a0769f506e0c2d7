//! The architecture's rule: AWS member names are spelled only in the
//! protocol crates. Every string literal in the other crates' sources that
//! is exactly a member name of a model (what a request or answer carries by
//! that name) fails this test. Messages that mention a member in prose
//! ("Either StreamName or StreamARN must be provided.") are words, not
//! keys, and pass; tests that act as clients (`tests/` folders) may spell
//! requests as they like.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Member names of every structure that is not an error's body.
fn member_names(model_json: &str) -> BTreeSet<String> {
    let model: Value = serde_json::from_str(model_json).unwrap();
    let shapes = model["shapes"].as_object().unwrap();
    shapes
        .values()
        .filter(|s| s["type"] == "structure" && s["exception"] != true)
        .flat_map(|s| s["members"].as_object().unwrap().iter())
        .filter(|(_, m)| shapes[m["shape"].as_str().unwrap()]["exception"] != true)
        .map(|(name, _)| name.clone())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The string literals of a line (plain "…" literals; escapes kept as written).
fn literals(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'/') {
            break;
        }
        if bytes[i] == b'\'' && bytes.get(i + 2) == Some(&b'\'') {
            i += 3;
            continue;
        }
        if bytes[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            out.push(&line[start..j.min(line.len())]);
            i = j + 1;
            continue;
        }
        i += 1;
    }
    out
}

#[test]
fn no_member_name_is_spelled_outside_the_protocol_crates() {
    let names = member_names(sluice_aws::model::KINESIS_MODEL_JSON);
    assert!(names.contains("StreamName") && names.contains("ShardIterator"));
    assert!(
        !names.contains("message"),
        "errors' bodies are the envelope's"
    );
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let dir = entry.unwrap().path();
        let protocol = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains("aws") || n.contains("protocol"));
        if dir.join("src").is_dir() && !protocol {
            rust_files(&dir.join("src"), &mut files);
        }
    }
    assert!(files.len() > 20, "found the other crates' sources");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for literal in literals(line) {
                if names.contains(literal) {
                    found.push(format!("{}:{}: \"{literal}\"", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "AWS member names outside the protocol crates (use sluice_aws's typed shapes):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scanner_finds_literals() {
    assert_eq!(
        literals(r#"json!({"StreamName": s, "a\"b": 1}) // "ShardId""#),
        ["StreamName", "a\\\"b"]
    );
    assert_eq!(literals(r#"let c = '"'; "x""#), ["x"]);
}
