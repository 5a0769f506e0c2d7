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

/// The string literals of a source file, with the line each starts on:
/// plain ("…", escapes kept as written) and raw (r"…", r#"…"#), across
/// lines; comments and character literals skipped.
fn literals(text: &str) -> Vec<(usize, String)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let count_lines = |from: usize, to: usize| b[from..to].iter().filter(|&&c| c == b'\n').count();
    while i < b.len() {
        match b[i] {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
                line += count_lines(i, end);
                i = end;
            }
            // A character literal ('"', '\'', '\"'), not a lifetime.
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 3,
            b'\'' if b.get(i + 1) == Some(&b'\\') && b.get(i + 3) == Some(&b'\'') => i += 4,
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                let open = i + 1 + hashes;
                if b.get(open) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let end = text[open + 1..]
                    .find(&close)
                    .map_or(b.len(), |e| open + 1 + e);
                out.push((line, text[open + 1..end].to_owned()));
                line += count_lines(i, end);
                i = (end + close.len()).min(b.len());
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let end = j.min(b.len());
                out.push((line, text[i + 1..end].to_owned()));
                line += count_lines(i, end);
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// The member names a literal spells: the whole literal, or a JSON key
/// inside it (`"Name"`, or `\"Name\"` in a plain literal).
fn spelled<'a>(literal: &str, names: &'a BTreeSet<String>) -> Vec<&'a str> {
    if let Some(name) = names.get(literal) {
        return vec![name.as_str()];
    }
    names
        .iter()
        .filter(|n| {
            literal.contains(&format!("\"{n}\"")) || literal.contains(&format!("\\\"{n}\\\""))
        })
        .map(String::as_str)
        .collect()
}

#[test]
fn no_member_name_is_spelled_outside_the_protocol_crates() {
    let mut names = member_names(sluice_aws::model::KINESIS_MODEL_JSON);
    names.extend(member_names(sluice_aws::model::FIREHOSE_MODEL_JSON));
    assert!(names.contains("StreamName") && names.contains("ShardIterator"));
    assert!(names.contains("DeliveryStreamName"), "Firehose's names too");
    assert!(
        !names.contains("message"),
        "errors' bodies are the envelope's"
    );
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let dir = entry.unwrap().path();
        let protocol = dir.file_name().and_then(|n| n.to_str()) == Some("aws-protocol");
        if protocol {
            continue;
        }
        for sources in ["src", "benches", "examples"] {
            if dir.join(sources).is_dir() {
                rust_files(&dir.join(sources), &mut files);
            }
        }
        if dir.join("build.rs").is_file() {
            files.push(dir.join("build.rs"));
        }
    }
    assert!(files.len() > 20, "found the other crates' sources");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, literal) in literals(&text) {
            for name in spelled(&literal, &names) {
                found.push(format!("{}:{line}: {name}", file.display()));
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
    let texts =
        |source: &str| -> Vec<String> { literals(source).into_iter().map(|(_, t)| t).collect() };
    assert_eq!(
        texts(r#"json!({"StreamName": s, "a\"b": 1}) // "ShardId""#),
        ["StreamName", "a\\\"b"]
    );
    assert_eq!(texts(r#"let c = '"'; let d = '\"'; "x""#), ["x"]);
    assert_eq!(texts("/* \"ShardId\" */ 'a: loop {} \"y\""), ["y"]);
    // Raw strings with quotes inside, and literals across lines.
    let raw = "let a = r#\"{\"StreamName\":1}\"#;\nlet b = \"one\ntwo\";\n\"z\"";
    assert_eq!(
        literals(raw),
        [
            (1, "{\"StreamName\":1}".to_owned()),
            (2, "one\ntwo".to_owned()),
            (4, "z".to_owned())
        ]
    );
    let names: BTreeSet<String> = ["StreamName".to_owned(), "Data".to_owned()].into();
    assert_eq!(spelled("StreamName", &names), ["StreamName"]);
    assert_eq!(spelled(r#"{"StreamName":1}"#, &names), ["StreamName"]);
    assert_eq!(spelled(r#"{\"Data\":1}"#, &names), ["Data"]);
    assert!(spelled("Either StreamName or StreamARN must be provided.", &names).is_empty());
}
