//! The agent against Sluice in-process: real files, rotated by rename and
//! by copytruncate, restarts from checkpoints.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_agent::config::AgentConfig;
use sluice_aws::kinesis as k;
use sluice_client::consumer::{self, Batch, ConsumerConfig, Handler, StartingPosition};
use sluice_client::{Api, Target};
use sluice_server::{Config, Server};

async fn start() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        enforce_limits: false,
        ..Config::default()
    };
    let server = Server::start(config, Arc::new(sluice_model::SystemClock))
        .await
        .unwrap();
    (server, dir)
}

fn target(server: &Server) -> Target {
    Target {
        endpoint: format!("http://{}", server.local_addr()),
        region: "us-east-1".into(),
        access_key: "AKIDAGENT".into(),
        secret_key: "secret".into(),
        session_token: None,
    }
}

async fn create(server: &Server, stream: &str) {
    let mut api = Api::connect(Arc::new(target(server))).await.unwrap();
    let _: serde_json::Value = api
        .call(
            "CreateStream",
            &k::CreateStreamInput {
                stream_name: stream.into(),
                shard_count: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Vec<u8>>>>);

impl Handler for Collect {
    async fn records(&mut self, batch: Batch) -> anyhow::Result<()> {
        self.0
            .lock()
            .unwrap()
            .extend(batch.records.into_iter().map(|r| r.data));
        Ok(())
    }
}

async fn stream_records(server: &Server, stream: &str) -> Vec<String> {
    let collect = Collect::default();
    let mut config = ConsumerConfig::new(stream, StartingPosition::TrimHorizon);
    config.idle_poll = Duration::from_millis(5);
    consumer::consume(target(server), config, collect.clone())
        .await
        .unwrap();
    let mut out: Vec<String> = collect
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|d| {
            // The agent sends lines with their newline.
            let d = d.strip_suffix(b"\n").unwrap_or(d);
            String::from_utf8_lossy(d).into_owned()
        })
        .collect();
    out.sort();
    out
}

/// Waits until the stream holds `n` records (the agent's buffer age is at
/// least a second), or gives up after a minute.
async fn until_count(server: &Server, stream: &str, n: usize) -> Vec<String> {
    for _ in 0..600 {
        let got = stream_records(server, stream).await;
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stream_records(server, stream).await
}

struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<Arc<sluice_agent::Stats>>>,
}

fn run(server: &Server, json: &str, checkpoints: &Path) -> Running {
    let config = AgentConfig::parse(json).unwrap();
    let options = sluice_agent::Options {
        checkpoints: checkpoints.to_owned(),
        poll: Duration::from_millis(20),
        kinesis: target(server),
        firehose: target(server),
        progress: None,
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move { sluice_agent::run(&config, options, rx).await });
    Running { stop, task }
}

impl Running {
    async fn stop(self) -> Arc<sluice_agent::Stats> {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap()
    }
}

fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for line in lines {
        writeln!(f, "{line}").unwrap();
    }
}

fn lines(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i:05}")).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_rename_and_by_copytruncate_loses_nothing() {
    let (server, dir) = start().await;
    create(&server, "logs").await;
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let app = logs.join("app.log");
    std::fs::write(&app, "old line, before the agent\n").unwrap();
    let json = format!(
        r#"{{"flows":[{{"filePattern":"{}/app.log*","kinesisStream":"logs","maxBufferAgeMillis":1000}}]}}"#,
        logs.display()
    );
    let cp = dir.path().join("cp.json");
    let agent = run(&server, &json, &cp);
    // END_OF_FILE: what was there before is not sent. Wait for the agent
    // to have seen the file (its checkpoint) before writing.
    for _ in 0..500 {
        if std::fs::read_to_string(&cp).is_ok_and(|t| t.contains("app.log")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut want = Vec::new();
    let first = lines("first", 0..300);
    append(&app, first.clone());
    want.extend(first);
    // Rename and create.
    std::fs::rename(&app, logs.join("app.log.1")).unwrap();
    let second = lines("second", 0..300);
    append(&app, second.clone());
    want.extend(second);
    until_count(&server, "logs", want.len()).await;
    // Copytruncate: the copy matches the pattern too.
    let third = lines("third", 0..200);
    append(&app, third.clone());
    want.extend(third);
    until_count(&server, "logs", want.len()).await;
    std::fs::copy(&app, logs.join("app.log.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    let fourth = lines("fourth", 0..200);
    append(&app, fourth.clone());
    want.extend(fourth);
    let got = until_count(&server, "logs", want.len()).await;
    let stats = agent.stop().await;
    assert_eq!(got, sorted(want.clone()), "each line once");
    assert_eq!(stats.failed.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(stream_records(&server, "logs").await.len(), want.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_checkpoint() {
    let (server, dir) = start().await;
    create(&server, "resume").await;
    let log = dir.path().join("r.log");
    append(&log, ["# a header line".to_string()]);
    append(&log, lines("a", 0..100));
    let json = format!(
        r#"{{"flows":[{{"filePattern":"{}","kinesisStream":"resume","initialPosition":"START_OF_FILE",
            "skipHeaderLines":1,"maxBufferAgeMillis":1000,"partitionKeyOption":"DETERMINISTIC"}}]}}"#,
        log.display()
    );
    let cp = dir.path().join("cp.json");
    let agent = run(&server, &json, &cp);
    until_count(&server, "resume", 100).await;
    agent.stop().await;
    // Written while the agent is down.
    append(&log, lines("b", 0..100));
    let agent = run(&server, &json, &cp);
    let got = until_count(&server, "resume", 200).await;
    agent.stop().await;
    let mut want = lines("a", 0..100);
    want.extend(lines("b", 0..100));
    assert_eq!(got, sorted(want));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_line_records_and_truncation() {
    let (server, dir) = start().await;
    create(&server, "multi").await;
    let log = dir.path().join("m.log");
    let json = format!(
        r#"{{"flows":[{{"filePattern":"{}","kinesisStream":"multi","initialPosition":"START_OF_FILE",
            "multiLineStartPattern":"^\\[","maxBufferAgeMillis":1000,"truncatedRecordTerminator":"<cut>"}}]}}"#,
        log.display()
    );
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!("[{i}] error\n  at frame one\n  at frame two\n"));
    }
    // One record longer than a Kinesis record.
    text.push_str(&format!("[big] {}\n", "x".repeat(1_100_000)));
    text.push_str("[end] the last one\n");
    std::fs::write(&log, &text).unwrap();
    let cp = dir.path().join("cp.json");
    let agent = run(&server, &json, &cp);
    let got = until_count(&server, "multi", 51).await;
    agent.stop().await;
    assert_eq!(
        got.len(),
        51,
        "the last record waits for a start line that does not come"
    );
    let frames: Vec<&String> = got.iter().filter(|r| r.contains("at frame two")).collect();
    assert_eq!(frames.len(), 50);
    assert!(frames.iter().all(|r| r.matches('\n').count() == 2));
    let big = got.iter().find(|r| r.starts_with("[big]")).unwrap();
    assert!(big.ends_with("<cut>") && big.len() <= 1 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_processing_options_convert_each_record() {
    let (server, dir) = start().await;
    create(&server, "json").await;
    let log = dir.path().join("access.log");
    let json = format!(
        r#"{{"flows":[{{"filePattern":"{}","kinesisStream":"json","initialPosition":"START_OF_FILE",
            "maxBufferAgeMillis":1000,"dataProcessingOptions":[
              {{"optionName":"LOGTOJSON","logFormat":"COMMONAPACHELOG"}},
              {{"optionName":"ADDMETADATA","metadata":{{"host":"web-1"}}}}]}}]}}"#,
        log.display()
    );
    std::fs::write(
        &log,
        "10.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] \"GET /a.gif HTTP/1.0\" 200 2326\nnot a log line\n\
         10.0.0.2 - - [10/Oct/2000:13:55:37 -0700] \"GET /b HTTP/1.1\" 404 -\n",
    )
    .unwrap();
    let agent = run(&server, &json, &dir.path().join("cp.json"));
    let got = until_count(&server, "json", 2).await;
    let stats = agent.stop().await;
    assert_eq!(
        stats.skipped.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the line that is not a log"
    );
    assert_eq!(
        got,
        [
            r#"{"metadata":{"host":"web-1"},"data":"{\"host\":\"10.0.0.1\",\"ident\":null,\"authuser\":\"frank\",\"datetime\":\"10/Oct/2000:13:55:36 -0700\",\"request\":\"GET /a.gif HTTP/1.0\",\"response\":\"200\",\"bytes\":\"2326\"}"}"#,
            r#"{"metadata":{"host":"web-1"},"data":"{\"host\":\"10.0.0.2\",\"ident\":null,\"authuser\":null,\"datetime\":\"10/Oct/2000:13:55:37 -0700\",\"request\":\"GET /b HTTP/1.1\",\"response\":\"404\",\"bytes\":null}"}"#,
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_files_give_their_last_record_and_a_quick_rewrite_is_noticed() {
    let (server, dir) = start().await;
    create(&server, "quick").await;
    let logs = dir.path().join("q");
    std::fs::create_dir(&logs).unwrap();
    let app = logs.join("ml.log");
    let json = format!(
        r#"{{"flows":[{{"filePattern":"{}/ml.log*","kinesisStream":"quick","initialPosition":"START_OF_FILE",
            "multiLineStartPattern":"^M ","maxBufferAgeMillis":1000}}]}}"#,
        logs.display()
    );
    append(&app, (1..=100).map(|i| format!("M {i}")));
    let agent = run(&server, &json, &dir.path().join("cp.json"));
    until_count(&server, "quick", 99).await;
    // Renamed, still matched: its last record is whole now.
    std::fs::rename(&app, logs.join("ml.log.1")).unwrap();
    append(&app, (101..=120).map(|i| format!("M {i}")));
    until_count(&server, "quick", 119).await;
    // Copytruncate, and more written at once than the file held before.
    std::fs::copy(&app, logs.join("ml.log.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&app, (121..=180).map(|i| format!("M {i}")));
    append(&app, ["M end".to_string()]);
    let got = until_count(&server, "quick", 180).await;
    agent.stop().await;
    let mut want: Vec<String> = (1..=180).map(|i| format!("M {i}")).collect();
    want.sort();
    assert_eq!(got, want, "each record once");
}
