//! Credentials and region as the AWS CLI and SDKs find them: the
//! environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_DEFAULT_REGION`), then the shared
//! files of profile `AWS_PROFILE` (or `default`): `~/.aws/credentials`
//! (`AWS_SHARED_CREDENTIALS_FILE`) and `~/.aws/config` (`AWS_CONFIG_FILE`,
//! sections `[profile NAME]` and `[default]`).
//!
//! Only static keys are read (no SSO, no assume-role, no instance metadata):
//! enough for Sluice, and for AWS with keys in the environment or files.
//! Written here rather than taken from `aws-config`, which would bring the
//! whole SDK runtime (and its HTTP stack) for two INI files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What was found; `None` where nothing said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
}

/// Looks in the process environment and the shared files.
pub fn discover() -> Found {
    discover_with(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

/// [`discover`] with the environment given (tests).
pub fn discover_with(env: impl Fn(&str) -> Option<String>) -> Found {
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let home = env("HOME").map(PathBuf::from);
    let file = |var: &str, name: &str| {
        env(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
    };
    let credentials = file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
        .map(|p| section(&p, &profile))
        .unwrap_or_default();
    let config_section = if profile == "default" {
        "default".to_owned()
    } else {
        format!("profile {profile}")
    };
    let config = file("AWS_CONFIG_FILE", "config")
        .map(|p| section(&p, &config_section))
        .unwrap_or_default();
    let from_files = |key: &str| {
        credentials
            .get(key)
            .or_else(|| config.get(key))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    // Keys come as a pair from one place, as the SDKs take them.
    let (access_key, secret_key, session_token) =
        match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(a), Some(s)) => (Some(a), Some(s), env("AWS_SESSION_TOKEN")),
            _ => (
                from_files("aws_access_key_id"),
                from_files("aws_secret_access_key"),
                from_files("aws_session_token"),
            ),
        };
    Found {
        access_key,
        secret_key,
        session_token,
        region: env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| config.get("region").filter(|v| !v.is_empty()).cloned()),
    }
}

/// The `key = value` lines of section `[name]` of an INI file; empty if the
/// file or section is missing.
fn section(path: &Path, name: &str) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    parse_section(&text, name)
}

fn parse_section(text: &str, name: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.split_whitespace().collect::<Vec<_>>().join(" ") == name;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_then_profile_files() {
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = AKDEF\naws_secret_access_key = sdef\n\n\
             [work]\n# a comment\naws_access_key_id=AKWORK\naws_secret_access_key=swork\naws_session_token = tok\n",
        )
        .unwrap();
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = eu-west-1\n[profile  work]\nregion = ap-south-1\n",
        )
        .unwrap();
        let home = dir.path().to_str().unwrap().to_owned();
        let with = |vars: &[(&str, &str)]| {
            let mut map: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            map.insert("HOME".into(), home.clone());
            discover_with(move |k| map.get(k).cloned())
        };
        let found = with(&[]);
        assert_eq!(found.access_key.as_deref(), Some("AKDEF"));
        assert_eq!(found.region.as_deref(), Some("eu-west-1"));
        assert_eq!(found.session_token, None);
        let work = with(&[("AWS_PROFILE", "work")]);
        assert_eq!(
            work,
            Found {
                access_key: Some("AKWORK".into()),
                secret_key: Some("swork".into()),
                session_token: Some("tok".into()),
                region: Some("ap-south-1".into()),
            }
        );
        let env = with(&[
            ("AWS_ACCESS_KEY_ID", "AKENV"),
            ("AWS_SECRET_ACCESS_KEY", "senv"),
            ("AWS_DEFAULT_REGION", "us-west-2"),
        ]);
        assert_eq!(env.access_key.as_deref(), Some("AKENV"));
        assert_eq!(env.secret_key.as_deref(), Some("senv"));
        assert_eq!(env.region.as_deref(), Some("us-west-2"));
        // Half a pair in the environment: the files' pair is used.
        let half = with(&[("AWS_ACCESS_KEY_ID", "AKENV")]);
        assert_eq!(half.access_key.as_deref(), Some("AKDEF"));
        let none = discover_with(|_| None);
        assert_eq!(none, Found::default());
    }
}
