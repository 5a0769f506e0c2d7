//! `sluice`: the command-line entry point.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kinesis-compatible streaming-data platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Kinesis-compatible server.
    Serve(ServeArgs),
    /// Offline tools that work on a data directory (stop the server first).
    Ctl {
        #[command(subcommand)]
        command: Ctl,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:4567")]
    listen: std::net::SocketAddr,
    /// Where streams and records are stored; created if missing.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    data_dir: PathBuf,
    /// The region in ARNs.
    #[arg(long, env = "SLUICE_REGION", default_value = "us-east-1")]
    region: String,
    /// How long a new stream stays CREATING before it is ACTIVE, in milliseconds.
    #[arg(long, env = "SLUICE_STREAM_CREATING_MS", default_value_t = 0)]
    stream_creating_ms: u64,
    /// Acknowledge writes once fsynced (`sync`), or once written and fsynced at most
    /// this many milliseconds later (a number).
    #[arg(long, env = "SLUICE_FSYNC", default_value = "sync")]
    fsync: String,
    /// Verify SigV4 signatures against these credentials, `ACCESS_KEY:SECRET_KEY`
    /// (repeat, or comma-separate in the variable). Without any, every
    /// well-formed signature is accepted.
    #[arg(
        long = "credentials",
        env = "SLUICE_CREDENTIALS",
        value_delimiter = ','
    )]
    credentials: Vec<String>,
    /// Limits profile: `aws` or `off` (limits are not enforced yet; accepted for compatibility).
    #[arg(long, env = "SLUICE_LIMITS", default_value = "aws", value_parser = ["aws", "off"])]
    limits: String,
}

#[derive(Debug, Subcommand)]
enum Ctl {
    /// Verify every segment of every shard log: headers, frame checksums, continuity.
    /// Exits 1 if anything is corrupt (a torn tail, which the next open cuts off, is only reported).
    Check {
        /// The data directory (the one given to `serve --data-dir`).
        dir: PathBuf,
    },
    /// Print every shard log, segment, frame and record.
    Dump {
        dir: PathBuf,
        /// How many bytes of each record's data to show, in hex.
        #[arg(long, default_value_t = 16)]
        preview_bytes: usize,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let durability = match args.fsync.as_str() {
        "sync" => sluice_log::Durability::Sync,
        ms => sluice_log::Durability::Interval {
            fsync_interval_ms: ms.parse().map_err(|_| {
                anyhow::anyhow!("--fsync takes `sync` or a number of milliseconds, not {ms:?}")
            })?,
        },
    };
    let mut credentials = std::collections::BTreeMap::new();
    for pair in &args.credentials {
        let (access, secret) = pair.split_once(':').ok_or_else(|| {
            anyhow::anyhow!("--credentials takes ACCESS_KEY:SECRET_KEY, not {pair:?}")
        })?;
        credentials.insert(access.to_owned(), secret.to_owned());
    }
    let config = sluice_server::Config {
        credentials,
        listen: args.listen,
        data_dir: args.data_dir,
        region: args.region,
        stream_creating_ms: args.stream_creating_ms,
        durability,
        ..sluice_server::Config::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server =
            sluice_server::Server::start(config, std::sync::Arc::new(sluice_model::SystemClock))
                .await?;
        println!("sluice listening on {}", server.local_addr());
        std::io::stdout().flush()?;
        // Stop cleanly on Ctrl-C or SIGTERM (what service managers and tests send).
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        server.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Ctl {
            command: Ctl::Check { dir },
        } => {
            let report = sluice_log::inspect::check(&dir)?;
            let records: u64 = report.segments.iter().map(|s| s.records).sum();
            let bytes: u64 = report.segments.iter().map(|s| s.bytes).sum();
            println!(
                "{} shard logs, {} segments, {} records, {} data bytes",
                report.shards,
                report.segments.len(),
                records,
                bytes
            );
            for s in report.torn_tails() {
                println!(
                    "torn tail (cut off at next open): {}: {}",
                    s.path.display(),
                    s.problem.as_deref().unwrap_or_default()
                );
            }
            let mut corrupt = 0;
            for s in report.corruptions() {
                corrupt += 1;
                println!(
                    "CORRUPT: {}: {}",
                    s.path.display(),
                    s.problem.as_deref().unwrap_or_default()
                );
            }
            if corrupt > 0 {
                println!("{corrupt} corrupt segments");
                return Ok(ExitCode::from(1));
            }
            println!("ok");
            Ok(ExitCode::SUCCESS)
        }
        Command::Ctl {
            command: Ctl::Dump { dir, preview_bytes },
        } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            sluice_log::inspect::dump(&dir, &mut out, preview_bytes)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
