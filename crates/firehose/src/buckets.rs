//! Buckets on an S3-compatible endpoint: Sluice's configuration maps a
//! bucket name (or `*`, every bucket not named) to an endpoint URL with its
//! credentials, and objects of those buckets are uploaded there through
//! the `object_store` crate (SigV4, multipart uploads, retries) instead of
//! written under the data directory.
//!
//! The form, in `--firehose-s3` or the configuration file's `firehose_s3`:
//! `BUCKET=URL`, the URL `http[s]://[ACCESS_KEY:SECRET_KEY@]HOST[:PORT][/]`
//! with optional query parameters `region` (default `us-east-1`),
//! `path_style` (`true`, the default: `HOST/BUCKET/KEY`; `false`:
//! `BUCKET.HOST/KEY`) and `session_token`. Without credentials in the URL,
//! the standard `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_SESSION_TOKEN` variables give them.
//!
//! An object is written (and compressed) to a temporary file under the
//! data directory as for a directory bucket, then uploaded: in one PUT up
//! to [`PART_BYTES`], else as a multipart upload of parts that size, read
//! from the file one at a time, so memory does not grow with the object.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt as _, PutPayload};
use sluice_log::StorageFile;

/// A part of a multipart upload (S3 takes 5 MiB to 5 GiB, all but the last
/// at least 5 MiB); objects up to this size are one PUT.
pub const PART_BYTES: u64 = 8 << 20;

/// Buckets named by `*` get a client each, up to this many; then the
/// clients are made again as needed.
const CLIENTS_MAX: usize = 1024;

/// Where one bucket (or `*`) lives.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteBucket {
    /// The bucket's name, or `*` for every bucket not named otherwise.
    pub bucket: String,
    /// The endpoint, without credentials or query: `http://127.0.0.1:9000`.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// `HOST/BUCKET/KEY` rather than `BUCKET.HOST/KEY`.
    pub path_style: bool,
}

impl std::fmt::Debug for RemoteBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("RemoteBucket")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

impl RemoteBucket {
    /// Reads `BUCKET=URL` (module docs); `env` looks up the standard AWS
    /// variables when the URL has no credentials.
    pub fn parse(spec: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let (bucket, url) = spec
            .split_once('=')
            .filter(|(b, u)| !b.is_empty() && !u.is_empty())
            .ok_or_else(|| format!("--firehose-s3 takes BUCKET=URL, not {:?}", redact(spec)))?;
        if bucket != "*" && !is_bucket_name(bucket) {
            return Err(format!(
                "--firehose-s3: {bucket:?} is not a bucket name (3-63 lowercase letters, digits, dots and hyphens) or *"
            ));
        }
        let parsed = url::Url::parse(url).map_err(|e| {
            format!(
                "--firehose-s3: {bucket}'s URL does not parse: {e} (a secret key with '/', '+' or '@' in it is written percent-encoded: %2F, %2B, %40)"
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!(
                "--firehose-s3: {bucket}'s URL must be http:// or https:// with a host"
            ));
        }
        if !matches!(parsed.path(), "" | "/") || parsed.fragment().is_some() {
            return Err(format!(
                "--firehose-s3: {bucket}'s URL must name an endpoint without a path"
            ));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| format!("--firehose-s3: {bucket}'s credentials are not UTF-8"))
        };
        let (mut region, mut path_style, mut session_token) = ("us-east-1".to_owned(), true, None);
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "region" if sluice_model::is_region(&v) => region = v.into_owned(),
                "path_style" if v == "true" || v == "false" => path_style = v == "true",
                "session_token" if !v.is_empty() => session_token = Some(v.into_owned()),
                "region" | "path_style" | "session_token" => {
                    return Err(format!(
                        "--firehose-s3: {bucket}'s URL has {k}={v:?}; region is a region (us-east-1), path_style true or false, session_token not empty"
                    ))
                }
                _ => {
                    return Err(format!(
                        "--firehose-s3: {bucket}'s URL has {k:?}; it takes region (us-east-1), path_style (true or false) and session_token"
                    ))
                }
            }
        }
        let (access_key_id, secret_access_key) = if parsed.username().is_empty() {
            let (Some(key), Some(secret)) =
                (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
            else {
                return Err(format!(
                    "--firehose-s3: {bucket}'s URL has no ACCESS_KEY:SECRET_KEY@ and AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"
                ));
            };
            session_token = session_token.or_else(|| env("AWS_SESSION_TOKEN"));
            (key, secret)
        } else {
            let secret = parsed.password().ok_or_else(|| {
                format!("--firehose-s3: {bucket}'s URL has an access key and no secret key")
            })?;
            (decode(parsed.username())?, decode(secret)?)
        };
        let mut endpoint = format!("{}://{}", parsed.scheme(), parsed.host_str().unwrap_or(""));
        if let Some(port) = parsed.port() {
            endpoint.push_str(&format!(":{port}"));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            session_token,
            path_style,
        })
    }

    fn client(&self, bucket: &str, timeout: Duration) -> Result<AmazonS3, String> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&self.endpoint)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .with_virtual_hosted_style_request(!self.path_style)
            .with_allow_http(true)
            // A failed upload is the delivery's failure, retried by the
            // delivery task with its own backoff; the client retries a
            // little within one attempt.
            .with_retry(object_store::RetryConfig {
                backoff: object_store::BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
            })
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_allow_http(true)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(timeout),
            );
        if let Some(token) = &self.session_token {
            builder = builder.with_token(token);
        }
        if !self.path_style {
            // Virtual-hosted style: the bucket goes in front of the host.
            let url = url::Url::parse(&self.endpoint).map_err(|e| e.to_string())?;
            let mut endpoint = format!(
                "{}://{bucket}.{}",
                url.scheme(),
                url.host_str().unwrap_or("")
            );
            if let Some(port) = url.port() {
                endpoint.push_str(&format!(":{port}"));
            }
            builder = builder.with_endpoint(endpoint);
        }
        builder
            .build()
            .map_err(|e| format!("bucket {bucket} at {}: {e}", self.endpoint))
    }
}

/// Whether `name` is an S3 bucket name as Firehose's BucketARN can carry
/// one: 3-63 lowercase letters, digits, dots and hyphens, starting and
/// ending with a letter or digit.
fn is_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// `spec` with anything between `://` and `@` hidden.
fn redact(spec: &str) -> String {
    match (spec.find("://"), spec.rfind('@')) {
        (Some(at), Some(end)) if end > at => format!("{}://***{}", &spec[..at], &spec[end..]),
        _ => spec.to_owned(),
    }
}

/// The configured remote buckets and their clients.
#[derive(Debug, Default)]
pub(crate) struct Remotes {
    /// How long the endpoint has to answer a request.
    timeout: Duration,
    named: HashMap<String, Arc<AmazonS3>>,
    any: Option<RemoteBucket>,
    /// Clients made for buckets `*` stands for.
    made: Mutex<HashMap<String, Arc<AmazonS3>>>,
}

impl Remotes {
    pub fn new(buckets: &[RemoteBucket], timeout: Duration) -> Result<Self, String> {
        let mut remotes = Self {
            timeout,
            ..Self::default()
        };
        for b in buckets {
            if b.bucket == "*" {
                if remotes.any.replace(b.clone()).is_some() {
                    return Err("--firehose-s3 names * twice".into());
                }
            } else if remotes
                .named
                .insert(b.bucket.clone(), Arc::new(b.client(&b.bucket, timeout)?))
                .is_some()
            {
                return Err(format!("--firehose-s3 names bucket {} twice", b.bucket));
            }
        }
        Ok(remotes)
    }

    /// The client of `bucket`, or `None` if it is a directory under the
    /// data directory.
    pub fn client(&self, bucket: &str) -> Option<Result<Arc<AmazonS3>, String>> {
        if let Some(c) = self.named.get(bucket) {
            return Some(Ok(c.clone()));
        }
        let any = self.any.as_ref()?;
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = made.get(bucket) {
            return Some(Ok(c.clone()));
        }
        if made.len() >= CLIENTS_MAX {
            made.clear();
        }
        Some(any.client(bucket, self.timeout).map(|c| {
            let c = Arc::new(c);
            made.insert(bucket.to_owned(), c.clone());
            c
        }))
    }
}

/// The key of an object in a remote bucket, or why it cannot be one (an
/// empty, `.` or `..` segment, which the client refuses).
pub(crate) fn key_of(key: &str) -> Result<Key, String> {
    if key.starts_with('/') || key.ends_with('/') {
        return Err(format!(
            "object key {key:?} starts or ends with '/', which Sluice does not upload"
        ));
    }
    Key::parse(key).map_err(|e| format!("object key {key:?} cannot be uploaded: {e}"))
}

/// An upload's error in a line: the S3 error code and message when the
/// endpoint answered one (the client's text carries the whole XML body).
fn said(e: object_store::Error) -> io::Error {
    let text = e.to_string();
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_owned())
    };
    match tag("Code") {
        Some(code) => io::Error::other(format!(
            "the S3 endpoint answered {code}: {}",
            tag("Message").unwrap_or_default()
        )),
        None => io::Error::other(text.lines().next().unwrap_or_default().to_owned()),
    }
}

/// Uploads the first `size` bytes of `file` to `key`: one PUT, or a
/// multipart upload (aborted if a part fails).
pub(crate) async fn upload(
    client: &AmazonS3,
    key: &Key,
    file: &dyn StorageFile,
    size: u64,
) -> io::Result<()> {
    let read = |at: u64| -> io::Result<PutPayload> {
        let len = (size - at).min(PART_BYTES) as usize;
        let mut buf = vec![0; len];
        let n = file.read_full_at(&mut buf, at)?;
        if n != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the object's temporary file is shorter than written",
            ));
        }
        Ok(PutPayload::from(buf))
    };
    if size <= PART_BYTES {
        client.put(key, read(0)?).await.map_err(said)?;
        return Ok(());
    }
    let mut upload = client.put_multipart(key).await.map_err(said)?;
    let mut at = 0;
    let parts = async {
        while at < size {
            let part = read(at)?;
            at += part.content_length() as u64;
            upload.put_part(part).await.map_err(said)?;
        }
        upload.complete().await.map_err(said)?;
        Ok::<_, io::Error>(())
    }
    .await;
    if parts.is_err() {
        let _ = upload.abort().await;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1);

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_a_bucket_with_credentials_in_the_url() {
        let b = RemoteBucket::parse(
            "logs=http://AKID:se%2Fcret@127.0.0.1:9000/?region=eu-west-1",
            no_env,
        )
        .unwrap();
        assert_eq!(b.bucket, "logs");
        assert_eq!(b.endpoint, "http://127.0.0.1:9000");
        assert_eq!(b.region, "eu-west-1");
        assert_eq!(b.access_key_id, "AKID");
        assert_eq!(b.secret_access_key, "se/cret");
        assert!(b.path_style);
        assert!(!format!("{b:?}").contains("se/cret"));
    }

    #[test]
    fn takes_credentials_from_the_environment() {
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("K".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("S".to_owned()),
            "AWS_SESSION_TOKEN" => Some("T".to_owned()),
            _ => None,
        };
        let b = RemoteBucket::parse("*=https://s3.example.com?path_style=false", env).unwrap();
        assert_eq!(b.bucket, "*");
        assert_eq!(b.endpoint, "https://s3.example.com");
        assert_eq!(
            (b.access_key_id.as_str(), b.secret_access_key.as_str()),
            ("K", "S")
        );
        assert_eq!(b.session_token.as_deref(), Some("T"));
        assert!(!b.path_style);
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for spec in [
            "logs",
            "=http://k:s@h",
            "Logs=http://k:s@h",
            "logs=ftp://k:s@h",
            "logs=http://k:s@h/path",
            "logs=http://k:s@h?colour=red",
            "logs=http://k:s@h?region=Nowhere",
            "logs=http://k@h",
            "logs=http://h",
        ] {
            let e = RemoteBucket::parse(spec, no_env).unwrap_err();
            assert!(!e.contains(":s@"), "{e} shows the secret");
        }
        let e = RemoteBucket::parse("logs", no_env).unwrap_err();
        assert!(e.contains("BUCKET=URL"), "{e}");
        // A secret key with '/' in it, as AWS's have: say how to write it.
        let e = RemoteBucket::parse("logs=http://k:ab/cd+ef@127.0.0.1:9000", no_env).unwrap_err();
        assert!(e.contains("%2F"), "{e}");
        let e = RemoteBucket::parse("logs=http://k:s@h?path_style=maybe", no_env).unwrap_err();
        assert!(e.contains("path_style=\"maybe\""), "{e}");
    }

    #[test]
    fn names_each_bucket_once() {
        let b = RemoteBucket::parse("logs=http://k:s@127.0.0.1:1", no_env).unwrap();
        assert!(Remotes::new(&[b.clone(), b], T).is_err());
        let any = RemoteBucket::parse("*=http://k:s@127.0.0.1:1", no_env).unwrap();
        let remotes = Remotes::new(std::slice::from_ref(&any), T).unwrap();
        assert!(remotes.client("other").is_some_and(|c| c.is_ok()));
        assert!(Remotes::new(&[], T).unwrap().client("other").is_none());
    }

    #[test]
    fn keys_are_checked() {
        assert!(key_of("a/b=1/c.gz").is_ok());
        for bad in ["/a", "a/", "a//b", "a/./b", "a/../b"] {
            assert!(key_of(bad).is_err(), "{bad}");
        }
    }
}
