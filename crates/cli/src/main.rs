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
    /// Offline tools that work on a data directory (stop the server first).
    Ctl {
        #[command(subcommand)]
        command: Ctl,
    },
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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
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
