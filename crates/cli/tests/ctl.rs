//! `sluice ctl check` and `sluice ctl dump` on data directories written by the log.

use std::process::Command;
use std::sync::Arc;

use sluice_log::{AppendRecord, Log, LogOptions, OsStorage, ShardLogId};
use sluice_model::ManualClock;

fn sluice(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn write_log(dir: &std::path::Path) {
    let options = LogOptions {
        segment_bytes: 300,
        ..LogOptions::default()
    };
    let log = Log::open(
        Arc::new(OsStorage),
        dir,
        options,
        Arc::new(ManualClock::new(1_700_000_000_000)),
    )
    .unwrap();
    for id in 0..2 {
        let shard = log.create_shard(ShardLogId(id), 1).unwrap();
        for i in 0..5u8 {
            let data = vec![i; 100];
            shard
                .append(&[AppendRecord {
                    partition_key: b"user-1",
                    data: &data,
                    flags: 0,
                }])
                .unwrap();
        }
    }
    log.shard(ShardLogId(1)).unwrap().close().unwrap();
    // What a clean shutdown does: the segments hold everything.
    log.checkpoint().unwrap();
}

#[test]
fn check_counts_what_the_journal_holds_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        Arc::new(OsStorage),
        dir.path(),
        LogOptions::default(),
        Arc::new(ManualClock::new(1)),
    )
    .unwrap();
    let shard = log.create_shard(ShardLogId(0), 1).unwrap();
    for _ in 0..3 {
        shard
            .append(&[AppendRecord {
                partition_key: b"k",
                data: b"journaled",
                flags: 0,
            }])
            .unwrap();
    }
    drop((shard, log)); // no checkpoint: as after kill -9
    let (code, out) = sluice(&["ctl", "check", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("journal: 3 frames"), "{out}");
}

#[test]
fn check_passes_on_a_healthy_log_and_fails_on_corruption() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let path = dir.path().to_str().unwrap();
    let (code, out) = sluice(&["ctl", "check", path]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("2 shard logs") && out.contains("10 records") && out.contains("ok"),
        "{out}"
    );

    // Flip a byte inside the first (sealed) segment of shard 0.
    let seg = dir
        .path()
        .join("shards/0000000000000000/00000000000000000000.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[100] ^= 0x10;
    std::fs::write(&seg, bytes).unwrap();
    let (code, out) = sluice(&["ctl", "check", path]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("CORRUPT") && out.contains("checksum"), "{out}");
}

#[test]
fn dump_prints_frames_records_and_the_close() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let (code, out) = sluice(&[
        "ctl",
        "dump",
        dir.path().to_str().unwrap(),
        "--preview-bytes",
        "4",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("shard log 0000000000000001"), "{out}");
    assert!(
        out.contains("key \"user-1\" data_len 100 data 04040404…"),
        "{out}"
    );
    assert!(
        out.contains("Close") && out.contains("ending_sequence"),
        "{out}"
    );
    assert!(out.contains("timestamp_ms 1700000000000"), "{out}");
}

#[test]
fn a_missing_directory_is_an_error_not_a_panic() {
    let (code, out) = sluice(&["ctl", "check", "/nonexistent/sluice-data"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("error:"), "{out}");
}

#[test]
fn serve_reads_a_toml_config_and_flags_override_it() {
    use std::io::{BufRead, BufReader, Read, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-file");
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:1\"\ndata_dir = {:?}\nregion = \"eu-west-1\"\nfsync = 20\nlimits = \"off\"\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("ok"),
        "{out}"
    );
    assert!(
        data.join("catalog.json").exists() || data.join("log").exists(),
        "the file's data_dir was used"
    );

    std::fs::write(&config, "bogus = 1\n").unwrap();
    let (code, out) = sluice(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(out.contains("unknown field"), "{out}");
}

/// `sluice serve` on `data_dir`: the child and its address.
fn serve(data_dir: &std::path::Path) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--listen", "127.0.0.1:0", "--limits", "off"])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().rsplit(' ').next().unwrap().to_owned())
}

/// One JSON 1.1 request; the status line and body.
fn call(addr: &str, operation: &str, body: &str) -> String {
    use std::io::{Read, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Amz-Target: Kinesis_20131202.{operation}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Date: 20260101T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{operation}: {out}");
    out
}

#[test]
fn dump_names_each_shard_logs_stream_and_shard() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve(dir.path());
    call(
        &addr,
        "CreateStream",
        r#"{"StreamName":"orders","ShardCount":2}"#,
    );
    call(
        &addr,
        "PutRecord",
        r#"{"StreamName":"orders","PartitionKey":"k","Data":"aGk="}"#,
    );
    // SIGTERM: a clean stop, which checkpoints the journal into the segments.
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
    let (code, out) = sluice(&["ctl", "dump", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("stream orders (account 000000000000, us-east-1) shardId-000000000000"),
        "{out}"
    );
    assert!(
        out.contains("stream orders (account 000000000000, us-east-1) shardId-000000000001"),
        "{out}"
    );
    assert!(out.contains("key \"k\" data_len 2"), "{out}");
}

#[test]
fn dump_into_a_reader_that_goes_away_is_not_an_error() {
    use std::io::{BufRead, BufReader, Read};
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        Arc::new(OsStorage),
        dir.path(),
        LogOptions::default(),
        Arc::new(ManualClock::new(1)),
    )
    .unwrap();
    let shard = log.create_shard(ShardLogId(0), 1).unwrap();
    // Far more than a pipe holds.
    let records: Vec<AppendRecord<'_>> = (0..5_000)
        .map(|_| AppendRecord {
            partition_key: b"a-partition-key",
            data: b"0123456789",
            flags: 0,
        })
        .collect();
    for _ in 0..4 {
        shard.append(&records).unwrap();
    }
    log.checkpoint().unwrap();
    drop(log);
    // `sluice ctl dump DIR | head -1`.
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["ctl", "dump", dir.path().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("shard log "), "{first}");
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
