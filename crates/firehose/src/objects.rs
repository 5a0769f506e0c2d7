//! Objects written to a bucket that is a directory: `<data-dir>/s3/<bucket>/<key>`,
//! readable with ordinary tools. An object is written under
//! `<data-dir>/s3/.sluice-tmp/` (no bucket name starts with a dot), fsynced,
//! renamed to its key and its directory fsynced: a reader sees the whole
//! object or none, and a confirmed object survives power loss.
//!
//! Compression as Firehose's `CompressionFormat`: GZIP (`.gz`), Snappy (the
//! framing format, `.snappy`), HADOOP_SNAPPY (Hadoop's block format:
//! big-endian u32 uncompressed length, u32 compressed length, the raw Snappy
//! block, per 256 KiB; `.hsnappy` as AWS's guide names it), ZIP (`.zip`:
//! an archive of one deflated entry named with a UUID, as a peer emulator
//! reports AWS writes it).

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_aws::firehose::CompressionFormat;
use sluice_log::{Storage, StorageFile};

/// A file of the `Storage` written from the start, in order.
struct File {
    file: Arc<dyn StorageFile>,
    at: u64,
}

impl Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.at)?;
        self.at += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where buckets live under the data directory.
pub const BUCKETS_DIR: &str = "s3";
/// Objects being written, beside the buckets.
const TMP_DIR: &str = ".sluice-tmp";

/// The bucket a `BucketARN` names (`arn:aws:s3:::name`).
pub fn bucket_of(arn: &str) -> Option<&str> {
    let (_, name) = arn.split_once(":::")?;
    Some(name)
}

/// Where `key` of `bucket` lives under `root` (`<data-dir>/s3`), or why a
/// directory cannot hold it: a bucket name that is not a plain directory
/// name; a key with an empty, `.` or `..` path segment (S3 keeps such keys;
/// a directory tree cannot).
pub fn path_of(root: &Path, bucket: &str, key: &str) -> Result<PathBuf, String> {
    let plain =
        |part: &str| !part.is_empty() && part != "." && part != ".." && !part.contains('\\');
    if !plain(bucket) || bucket.contains('/') || bucket.starts_with('.') {
        return Err(format!(
            "bucket name {bucket:?} cannot be a directory under the data directory"
        ));
    }
    let mut path = root.join(bucket);
    for part in key.split('/') {
        if !plain(part) {
            return Err(format!(
                "object key {key:?} has an empty, '.' or '..' segment, which a directory bucket cannot hold"
            ));
        }
        path.push(part);
    }
    Ok(path)
}

/// The extension an object gets: FileExtension if given, else the
/// compression's.
pub fn extension(format: CompressionFormat, file_extension: Option<&str>) -> String {
    if let Some(e) = file_extension.filter(|e| !e.is_empty()) {
        return e.to_owned();
    }
    match format {
        CompressionFormat::Gzip => ".gz",
        CompressionFormat::Zip => ".zip",
        CompressionFormat::Snappy => ".snappy",
        CompressionFormat::HadoopSnappy => ".hsnappy",
        _ => "",
    }
    .to_owned()
}

/// Whether Sluice writes `format`.
pub fn writes(format: CompressionFormat) -> bool {
    matches!(
        format,
        CompressionFormat::Uncompressed
            | CompressionFormat::Gzip
            | CompressionFormat::Zip
            | CompressionFormat::Snappy
            | CompressionFormat::HadoopSnappy
    )
}

/// One object being written: bytes go in uncompressed.
pub struct ObjectWriter {
    storage: Arc<dyn Storage>,
    root: PathBuf,
    tmp: PathBuf,
    body: Body,
    /// Uncompressed bytes taken.
    pub raw_bytes: u64,
}

impl std::fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWriter")
            .field("tmp", &self.tmp)
            .finish()
    }
}

enum Body {
    Plain(BufWriter<File>),
    Gzip(flate2::write::GzEncoder<BufWriter<File>>),
    Snappy(Box<snap::write::FrameEncoder<BufWriter<File>>>),
    Hadoop(Box<HadoopSnappy>),
    Zip(Box<ZipOne>),
    /// Records converted to Parquet (convert.rs).
    Parquet(Box<crate::convert::ParquetOut<BufWriter<File>>>),
}

impl ObjectWriter {
    /// Starts an object under `root` (`<data-dir>/s3`).
    pub fn start(
        storage: Arc<dyn Storage>,
        root: &Path,
        format: CompressionFormat,
    ) -> io::Result<Self> {
        if !writes(format) {
            return Err(io::Error::other(format!(
                "{} compression is not built",
                format.as_str()
            )));
        }
        let (tmp, file) = Self::open(&*storage, root)?;
        let body = match format {
            CompressionFormat::Gzip => Body::Gzip(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::default(),
            )),
            CompressionFormat::Snappy => {
                Body::Snappy(Box::new(snap::write::FrameEncoder::new(file)))
            }
            CompressionFormat::HadoopSnappy => Body::Hadoop(Box::new(HadoopSnappy::new(file))),
            CompressionFormat::Zip => Body::Zip(Box::new(ZipOne::new(file)?)),
            _ => Body::Plain(file),
        };
        Ok(Self {
            storage,
            root: root.to_path_buf(),
            tmp,
            body,
            raw_bytes: 0,
        })
    }

    /// Starts a Parquet object of records converted by `conversion`.
    pub(crate) fn start_parquet(
        storage: Arc<dyn Storage>,
        root: &Path,
        conversion: Arc<crate::convert::Conversion>,
    ) -> io::Result<Self> {
        let (tmp, file) = Self::open(&*storage, root)?;
        match crate::convert::ParquetOut::new(file, conversion) {
            Ok(out) => Ok(Self {
                storage,
                root: root.to_path_buf(),
                tmp,
                body: Body::Parquet(Box::new(out)),
                raw_bytes: 0,
            }),
            Err(e) => {
                let _ = storage.remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Whether records are converted into it.
    pub(crate) fn is_parquet(&self) -> bool {
        matches!(self.body, Body::Parquet(_))
    }

    /// Converts `record` into rows of the Parquet object: `Err` (nothing
    /// written) if it does not convert.
    pub(crate) fn convert(&mut self, record: &[u8]) -> Result<io::Result<()>, String> {
        let Body::Parquet(out) = &mut self.body else {
            return Ok(Err(io::Error::other("not a Parquet object")));
        };
        let written = out.write(record)?;
        self.raw_bytes += record.len() as u64;
        Ok(written)
    }

    /// A new temporary file under `root`, and its writer.
    fn open(storage: &dyn Storage, root: &Path) -> io::Result<(PathBuf, BufWriter<File>)> {
        let dir = root.join(TMP_DIR);
        storage.create_dir_all(&dir)?;
        let tmp = dir.join(format!("{}.part", crate::delivery::uuid()));
        let file = File {
            file: storage.create_file(&tmp)?,
            at: 0,
        };
        Ok((tmp, BufWriter::with_capacity(256 << 10, file)))
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.raw_bytes += bytes.len() as u64;
        match &mut self.body {
            Body::Parquet(_) => Err(io::Error::other("a Parquet object takes converted records")),
            Body::Plain(w) => w.write_all(bytes),
            Body::Gzip(w) => w.write_all(bytes),
            Body::Snappy(w) => w.write_all(bytes),
            Body::Hadoop(w) => w.write(bytes),
            Body::Zip(w) => w.write(bytes),
        }
    }

    /// Closes the body: its last bytes written, the file whole.
    fn close(body: Body) -> io::Result<File> {
        Ok(match body {
            Body::Plain(w) => w.into_inner().map_err(|e| e.into_error())?,
            Body::Gzip(w) => w.finish()?.into_inner().map_err(|e| e.into_error())?,
            Body::Snappy(w) => w
                .into_inner()
                .map_err(|e| io::Error::other(e.to_string()))?
                .into_inner()
                .map_err(|e| e.into_error())?,
            Body::Hadoop(w) => w.finish()?.into_inner().map_err(|e| e.into_error())?,
            Body::Zip(w) => w.finish()?.into_inner().map_err(|e| e.into_error())?,
            Body::Parquet(w) => w.finish()?.into_inner().map_err(|e| e.into_error())?,
        })
    }

    /// Finishes the object and uploads it to `key` of a bucket on an
    /// S3-compatible endpoint (buckets.rs); the temporary file goes either
    /// way. Returns its size as stored.
    pub(crate) fn upload(
        self,
        client: &object_store::aws::AmazonS3,
        key: &object_store::path::Path,
    ) -> io::Result<u64> {
        let tmp = self.tmp.clone();
        let storage = self.storage.clone();
        let done = Self::close(self.body).and_then(|file| {
            crate::block_on(crate::buckets::upload(client, key, &*file.file, file.at))?;
            Ok(file.at)
        });
        let _ = storage.remove_file(&tmp);
        done
    }

    /// Finishes the object and puts it at `path` (from [`path_of`]),
    /// durably. Returns its size as stored.
    pub fn finish(self, path: &Path, durable: &DurableDirs) -> io::Result<u64> {
        let tmp = self.tmp.clone();
        let storage = self.storage.clone();
        let root = self.root.clone();
        let done = (|| {
            let file = Self::close(self.body)?;
            file.file.sync_data()?;
            let size = file.at;
            let dir = path
                .parent()
                .expect("an object path has a bucket directory");
            storage.create_dir_all(dir)?;
            storage.rename(&tmp, path)?;
            storage.sync_dir(dir)?;
            durable.ensure(&*storage, &root, dir)?;
            Ok(size)
        })();
        if done.is_err() {
            let _ = storage.remove_file(&tmp);
        }
        done
    }

    /// Gives the object up (its temporary file goes).
    pub fn abandon(self) {
        let _ = self.storage.remove_file(&self.tmp);
    }
}

/// Directories whose entries (and their ancestors' up to the data
/// directory) are known to be durable: an object renamed into one is
/// durable once its own directory is synced. Shared by every delivery task
/// (a directory another task made may not be synced yet); at most
/// [`DURABLE_DIRS_MAX`] remembered, then forgotten and synced again.
#[derive(Debug, Default)]
pub struct DurableDirs(std::sync::Mutex<std::collections::HashSet<PathBuf>>);

const DURABLE_DIRS_MAX: usize = 100_000;

impl DurableDirs {
    fn known(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<PathBuf>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `dir` (under `root`, which is under the data directory) and
    /// every directory between it and the data directory durable entries of
    /// their parents, from the top down.
    fn ensure(&self, storage: &dyn Storage, root: &Path, dir: &Path) -> io::Result<()> {
        let mut chain = Vec::new();
        {
            let known = self.known();
            let mut d = Some(dir);
            while let Some(at) = d.filter(|at| at.starts_with(root) && !known.contains(*at)) {
                chain.push(at.to_path_buf());
                d = at.parent();
            }
        }
        for d in chain.into_iter().rev() {
            if let Some(parent) = d.parent() {
                storage.sync_dir(parent)?;
            }
            let mut known = self.known();
            if known.len() >= DURABLE_DIRS_MAX {
                known.clear();
            }
            known.insert(d);
        }
        Ok(())
    }
}

/// Removes temporary files a crash left behind.
pub fn clear_tmp(storage: &dyn Storage, root: &Path) {
    let _ = storage.remove_dir_all(&root.join(TMP_DIR));
}

/// A ZIP archive of one deflated entry (named with a UUID), streamed: the
/// local header says a data descriptor follows the data (sizes and CRC
/// are known only at the end); no ZIP64 (an object is at most 128 MiB).
struct ZipOne {
    deflate: flate2::write::DeflateEncoder<BufWriter<File>>,
    crc: flate2::Crc,
    name: Vec<u8>,
}

/// DOS date 1980-01-01 and time 00:00 (the entry's time is not kept).
const DOS_DATE: u16 = (1 << 5) | 1;

impl ZipOne {
    fn new(mut out: BufWriter<File>) -> io::Result<Self> {
        let name = crate::delivery::uuid().into_bytes();
        let mut header = Vec::with_capacity(30 + name.len());
        header.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        header.extend_from_slice(&20u16.to_le_bytes()); // version needed
        header.extend_from_slice(&8u16.to_le_bytes()); // flags: data descriptor
        header.extend_from_slice(&8u16.to_le_bytes()); // deflate
        header.extend_from_slice(&0u16.to_le_bytes()); // time
        header.extend_from_slice(&DOS_DATE.to_le_bytes());
        header.extend_from_slice(&[0; 12]); // CRC and sizes: in the descriptor
        header.extend_from_slice(&(name.len() as u16).to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes()); // extra
        header.extend_from_slice(&name);
        out.write_all(&header)?;
        Ok(Self {
            deflate: flate2::write::DeflateEncoder::new(out, flate2::Compression::default()),
            crc: flate2::Crc::new(),
            name,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.deflate.write_all(bytes)
    }

    fn finish(mut self) -> io::Result<BufWriter<File>> {
        self.deflate.try_finish()?;
        let compressed = u32::try_from(self.deflate.total_out()).map_err(io::Error::other)?;
        let size = u32::try_from(self.deflate.total_in()).map_err(io::Error::other)?;
        let crc = self.crc.sum();
        let mut out = self.deflate.finish()?;
        let local = 30 + self.name.len() as u32;
        let mut tail = Vec::with_capacity(16 + 46 + 22 + self.name.len());
        tail.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
        for v in [crc, compressed, size] {
            tail.extend_from_slice(&v.to_le_bytes());
        }
        let directory_at = local + compressed + 16;
        let mut central = Vec::with_capacity(46 + self.name.len());
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        central.extend_from_slice(&20u16.to_le_bytes()); // needed
        central.extend_from_slice(&8u16.to_le_bytes()); // flags
        central.extend_from_slice(&8u16.to_le_bytes()); // deflate
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&DOS_DATE.to_le_bytes());
        for v in [crc, compressed, size] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&(self.name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // local header at 0
        central.extend_from_slice(&self.name);
        tail.extend_from_slice(&central);
        tail.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        tail.extend_from_slice(&[0; 4]); // disk numbers
        tail.extend_from_slice(&1u16.to_le_bytes());
        tail.extend_from_slice(&1u16.to_le_bytes());
        tail.extend_from_slice(&(central.len() as u32).to_le_bytes());
        tail.extend_from_slice(&directory_at.to_le_bytes());
        tail.extend_from_slice(&0u16.to_le_bytes()); // comment
        out.write_all(&tail)?;
        Ok(out)
    }
}

/// Hadoop's SnappyCodec stream (BlockCompressorStream): per block of up to
/// 256 KiB of input, the input length, then the compressed length and the
/// raw Snappy block, lengths as big-endian u32.
struct HadoopSnappy {
    out: BufWriter<File>,
    block: Vec<u8>,
    encoder: snap::raw::Encoder,
}

const HADOOP_BLOCK: usize = 256 << 10;

impl HadoopSnappy {
    fn new(out: BufWriter<File>) -> Self {
        Self {
            out,
            block: Vec::with_capacity(HADOOP_BLOCK),
            encoder: snap::raw::Encoder::new(),
        }
    }

    fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = (HADOOP_BLOCK - self.block.len()).min(bytes.len());
            self.block.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.block.len() == HADOOP_BLOCK {
                self.flush_block()?;
            }
        }
        Ok(())
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let compressed = self
            .encoder
            .compress_vec(&self.block)
            .map_err(io::Error::other)?;
        let len = |n: usize| {
            u32::try_from(n)
                .map_err(io::Error::other)
                .map(u32::to_be_bytes)
        };
        self.out.write_all(&len(self.block.len())?)?;
        self.out.write_all(&len(compressed.len())?)?;
        self.out.write_all(&compressed)?;
        self.block.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<BufWriter<File>> {
        self.flush_block()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn keys_map_to_paths_or_are_refused() {
        let root = Path::new("/d/s3");
        assert_eq!(
            path_of(root, "b", "2026/12/05/x-1").unwrap(),
            Path::new("/d/s3/b/2026/12/05/x-1")
        );
        for key in ["../x", "a/../b", "a//b", "/a", "a/./b", "a/"] {
            assert!(path_of(root, "b", key).is_err(), "{key}");
        }
        for bucket in ["", ".", "..", ".hidden", "a/b"] {
            assert!(path_of(root, bucket, "k").is_err(), "{bucket}");
        }
    }

    #[test]
    fn bucket_names_from_arns() {
        assert_eq!(bucket_of("arn:aws:s3:::my-bucket"), Some("my-bucket"));
        assert_eq!(bucket_of("arn:aws-cn:s3:::b.c"), Some("b.c"));
        assert_eq!(bucket_of("bucket"), None);
    }

    fn written(format: CompressionFormat, data: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let mut w =
            ObjectWriter::start(Arc::new(sluice_log::OsStorage), dir.path(), format).unwrap();
        for chunk in data.chunks(1000) {
            w.write(chunk).unwrap();
        }
        let path = dir.path().join("b/k");
        let size = w.finish(&path, &DurableDirs::default()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(
            std::fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(),
            0,
            "nothing left in the temporary directory"
        );
        bytes
    }

    fn sample() -> Vec<u8> {
        (0..700_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn gzip_and_snappy_objects_decompress_to_the_records() {
        let data = sample();
        assert_eq!(written(CompressionFormat::Uncompressed, &data), data);
        let gz = written(CompressionFormat::Gzip, &data);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let sn = written(CompressionFormat::Snappy, &data);
        assert_eq!(
            &sn[..10],
            b"\xff\x06\x00\x00sNaPpY",
            "the framing format's stream identifier"
        );
        let mut out = Vec::new();
        snap::read::FrameDecoder::new(&sn[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn hadoop_snappy_is_length_prefixed_blocks() {
        let data = sample();
        let bytes = written(CompressionFormat::HadoopSnappy, &data);
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        let be = |b: &[u8]| u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
        while !rest.is_empty() {
            let raw = be(rest);
            let len = be(&rest[4..]);
            assert!(raw <= HADOOP_BLOCK);
            let block = snap::raw::Decoder::new()
                .decompress_vec(&rest[8..8 + len])
                .unwrap();
            assert_eq!(block.len(), raw);
            out.extend(block);
            rest = &rest[8 + len..];
        }
        assert_eq!(out, data);
    }

    #[test]
    fn zip_is_one_deflated_entry_with_its_sizes_and_crc() {
        let data = sample();
        let zip = written(CompressionFormat::Zip, &data);
        let u16_at = |i: usize| u16::from_le_bytes(zip[i..i + 2].try_into().unwrap()) as usize;
        let u32_at = |i: usize| u32::from_le_bytes(zip[i..i + 4].try_into().unwrap()) as usize;
        assert_eq!(u32_at(0), 0x0403_4b50);
        let name_len = u16_at(26);
        assert_eq!(name_len, 36, "a UUID");
        // The end of the central directory points at the directory, which
        // gives the sizes and CRC.
        let end = zip.len() - 22;
        assert_eq!(u32_at(end), 0x0605_4b50);
        let dir = u32_at(end + 16);
        assert_eq!(u32_at(dir), 0x0201_4b50);
        let (crc, compressed, size) = (u32_at(dir + 16), u32_at(dir + 20), u32_at(dir + 24));
        assert_eq!(size, data.len());
        let body = &zip[30 + name_len..30 + name_len + compressed];
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(body)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let mut check = flate2::Crc::new();
        check.update(&data);
        assert_eq!(check.sum() as usize, crc);
    }

    #[test]
    fn extensions() {
        assert_eq!(extension(CompressionFormat::Gzip, None), ".gz");
        assert_eq!(
            extension(CompressionFormat::Gzip, Some(".json.gz")),
            ".json.gz"
        );
        assert_eq!(extension(CompressionFormat::Uncompressed, Some("")), "");
        assert_eq!(extension(CompressionFormat::Snappy, None), ".snappy");
    }
}
