//! `sluice ctl`: offline tools on a data directory (check, repair, dump).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum Ctl {
    /// Verify every segment of every shard log: headers, frame checksums, continuity.
    /// Exits 1 if anything is damaged (bad bytes with valid data after them, which
    /// the server quarantines); a torn tail (bad bytes at the very end of a shard's
    /// newest segment, left by a crash), which the next start cuts off, is only reported.
    Check {
        /// The data directory (the one given to `serve --data-dir`), or its `log/`.
        dir: PathBuf,
    },
    /// Make damaged shard logs readable again, keeping every valid record: damaged
    /// bytes are marked skipped (the records in them are lost; all others keep their
    /// sequence numbers), a segment header hit by one changed byte is mended. Stop
    /// the server first; run `ctl check` to see what is damaged.
    Repair {
        /// The data directory (the one given to `serve --data-dir`), or its `log/`.
        dir: PathBuf,
        /// If the journal is damaged (acknowledged entries fail their
        /// checksums, which `ctl check` reports), cut it at the damage: the
        /// records from there on, in every shard, are lost, and their
        /// sequence numbers will be given to new records. Without it, repair
        /// refuses a damaged journal.
        #[arg(long)]
        cut_journal: bool,
    },
    /// Print every shard log, segment, frame and record.
    Dump {
        /// The data directory (the one given to `serve --data-dir`), or its `log/`.
        dir: PathBuf,
        /// How many bytes of each record's data to show, in hex.
        #[arg(long, default_value_t = 16)]
        preview_bytes: usize,
    },
}

pub fn run(command: Ctl) -> anyhow::Result<ExitCode> {
    match command {
        Ctl::Check { dir } => {
            let root = sluice_log::inspect::log_root(&dir)?;
            let report = sluice_log::inspect::check(&root)?;
            let mut out = std::io::stdout().lock();
            let records: u64 = report.segments.iter().map(|s| s.records).sum();
            let bytes: u64 = report.segments.iter().map(|s| s.bytes).sum();
            writeln!(
                out,
                "{} shard logs, {} segments, {} records, {} data bytes",
                report.shards,
                report.segments.len(),
                records,
                bytes
            )?;
            if report.journal_entries > 0 {
                writeln!(
                    out,
                    "journal: {} frames ({} bytes) written since the last checkpoint, replayed into their segments at the next start (not counted above)",
                    report.journal_entries, report.journal_bytes
                )?;
            }
            for s in report.torn_tails() {
                writeln!(
                    out,
                    "torn tail (left by a crash; cut off at the next start): {}: {}",
                    s.path.display(),
                    s.problem.as_deref().unwrap_or_default()
                )?;
            }
            let mut corrupt = 0;
            let mut journal = false;
            for s in report.corruptions() {
                let problem = s.problem.as_deref().unwrap_or_default();
                if problem.starts_with("journal damage") {
                    journal = true;
                } else {
                    corrupt += 1;
                }
                writeln!(out, "CORRUPT: {}: {problem}", s.path.display())?;
            }
            if journal {
                writeln!(
                    out,
                    "the journal is damaged: the server refuses to start. Restore the file, or run `sluice ctl repair --cut-journal {}` to cut the journal at the damage (the records journaled from there on are lost, in every shard)",
                    dir.display()
                )?;
            }
            if journal && corrupt == 0 {
                return Ok(ExitCode::from(1));
            }
            if corrupt > 0 {
                writeln!(
                    out,
                    "{corrupt} damaged segments: the server quarantines their shards (readable up to the damage); `sluice ctl repair {}` skips the damage and keeps the rest",
                    dir.display()
                )?;
                return Ok(ExitCode::from(1));
            }
            writeln!(out, "ok")?;
            Ok(ExitCode::SUCCESS)
        }
        Ctl::Repair { dir, cut_journal } => {
            let root = sluice_log::inspect::log_root(&dir)?;
            // The server's lock, held throughout: repairing under a running
            // server would race its appends, and no server starts meanwhile.
            let data_dir = if root.ends_with("log") {
                root.parent().unwrap_or(&root).to_path_buf()
            } else {
                root.clone()
            };
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(data_dir.join("LOCK"))?;
            match lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                    "{} is in use by a running Sluice server: stop it first",
                    dir.display()
                ),
                Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
            }
            let report = sluice_log::inspect::repair(
                std::sync::Arc::new(sluice_log::OsStorage),
                &root,
                cut_journal,
            )?;
            let mut out = std::io::stdout().lock();
            if let Some(cut) = &report.journal_cut {
                writeln!(
                    out,
                    "journal cut at the damage: {cut}. The acknowledged records written from there on are lost, in every shard"
                )?;
            }
            for r in &report.repaired {
                writeln!(
                    out,
                    "shard log {}: {} bytes from sequence number {} up to (not including) {}: {}",
                    r.shard,
                    r.bytes,
                    sluice_model::SequenceNumber(r.from_sequence),
                    sluice_model::SequenceNumber(r.to_sequence),
                    r.what
                )?;
            }
            writeln!(
                out,
                "{} shard logs, {} repairs",
                report.shards,
                report.repaired.len()
            )?;
            if report.failed > 0 {
                writeln!(out, "{} could not be repaired (see above)", report.failed)?;
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Ctl::Dump { dir, preview_bytes } => {
            let root = sluice_log::inspect::log_root(&dir)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let names = shard_names(&root)?;
            sluice_log::inspect::dump(&root, &mut out, preview_bytes, &names)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Each shard log's stream and shard, from the catalog next to the log
/// (`stream NAME (account A, REGION) shardId-...`); empty if there is none.
fn shard_names(
    log_root: &std::path::Path,
) -> anyhow::Result<std::collections::HashMap<u64, String>> {
    // Only a data directory's `log/` has the catalog beside it.
    let Some(data_dir) = log_root
        .parent()
        .filter(|_| log_root.file_name().is_some_and(|n| n == "log"))
    else {
        return Ok(Default::default());
    };
    let path = data_dir.join("catalog.json");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let catalog = sluice_meta::Catalog::from_snapshot(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(catalog
        .streams()
        .flat_map(|stream| {
            stream.shards.iter().map(move |shard| {
                (
                    shard.log_id,
                    format!(
                        "stream {} (account {}, {}) {}",
                        stream.name,
                        stream.account,
                        stream.region,
                        sluice_meta::shard_id(shard.index)
                    ),
                )
            })
        })
        .collect())
}
