//! Checkpoints: for each flow, each file it tracks (path, device, inode,
//! the SHA-256 of its first bytes, the offset below which every record is
//! acknowledged). Written to a temporary file, synced, and renamed over the
//! old one, so a crash (kill -9, power loss) leaves the old or the new
//! checkpoints, never a torn file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::{self, FileId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    /// How many first bytes `head` covers, and their SHA-256 (hex).
    pub head_len: usize,
    pub head: String,
    pub offset: u64,
}

impl FileCheckpoint {
    pub fn new(path: &Path, id: FileId, head: (usize, [u8; 32]), offset: u64) -> Self {
        Self {
            path: path.to_owned(),
            dev: id.0,
            ino: id.1,
            head_len: head.0,
            head: head.1.iter().map(|b| format!("{b:02x}")).collect(),
            offset,
        }
    }

    pub fn id(&self) -> FileId {
        (self.dev, self.ino)
    }

    /// Whether `file` still starts as the checkpointed file did (an inode
    /// number can be reused by a new file).
    pub fn head_matches(&self, file: &mut File) -> bool {
        files::head(file, self.head_len).is_ok_and(|(len, hash)| {
            len == self.head_len
                && hash.iter().map(|b| format!("{b:02x}")).collect::<String>() == self.head
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    version: u32,
    flows: BTreeMap<String, Vec<FileCheckpoint>>,
}

/// The checkpoint file and what it holds.
#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    stored: Stored,
}

impl Checkpoints {
    /// Reads the checkpoints (none if the file is not there).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let stored = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "checkpoints {}: {e} (move it away to start over)",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored {
                version: 1,
                flows: BTreeMap::new(),
            },
            Err(e) => anyhow::bail!("checkpoints {}: {e}", path.display()),
        };
        Ok(Self {
            path: path.to_owned(),
            stored,
        })
    }

    pub fn flow(&self, flow: &str) -> Vec<FileCheckpoint> {
        self.stored.flows.get(flow).cloned().unwrap_or_default()
    }

    /// Replaces a flow's checkpoints, writing the file if they changed.
    pub fn set(&mut self, flow: &str, mut entries: Vec<FileCheckpoint>) -> anyhow::Result<()> {
        entries.sort_by(|a, b| a.path.cmp(&b.path).then(a.ino.cmp(&b.ino)));
        if self.stored.flows.get(flow) == Some(&entries) {
            return Ok(());
        }
        self.stored.flows.insert(flow.to_owned(), entries);
        self.write()
    }

    fn write(&self) -> anyhow::Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("tmp");
        let mut file = File::create(&tmp).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
        file.write_all(&serde_json::to_vec_pretty(&self.stored)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))?;
        File::open(dir)?.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_survive_a_reload_and_a_torn_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let mut cp = Checkpoints::load(&path).unwrap();
        assert!(cp.flow("f").is_empty());
        let log = dir.path().join("app.log");
        std::fs::write(&log, b"hello\n").unwrap();
        let mut f = File::open(&log).unwrap();
        let head = files::head(&mut f, 1024).unwrap();
        let meta = f.metadata().unwrap();
        cp.set(
            "f",
            vec![FileCheckpoint::new(&log, files::id_of(&meta), head, 6)],
        )
        .unwrap();
        // A crash while writing the next one leaves a torn temporary file.
        std::fs::write(path.with_extension("tmp"), b"{\"vers").unwrap();
        let back = Checkpoints::load(&path).unwrap().flow("f");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].offset, 6);
        assert!(back[0].head_matches(&mut f));
        std::fs::write(&log, b"other\n").unwrap();
        assert!(!back[0].head_matches(&mut File::open(&log).unwrap()));
        // A damaged checkpoint file is said, not ignored.
        std::fs::write(&path, b"{").unwrap();
        assert!(Checkpoints::load(&path).is_err());
    }
}
