//! SigV4: checks that a request carries a well-formed signature and, when
//! credentials are configured, that the signature is right.
//!
//! Verification rebuilds the canonical request from what was received (method,
//! path, query, the headers the client says it signed, the body's SHA-256) and
//! recomputes the HMAC chain with the configured secret. Both the header form
//! (`Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`)
//! and the query-string form (`X-Amz-Algorithm`, `X-Amz-Credential`, …) are
//! accepted. Hand-written rather than `aws-sigv4`, which signs outgoing
//! requests: verifying needs the canonical request of a *received* one.

use std::collections::BTreeMap;

use crate::{AwsError, ErrorCode};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What the server needs to know about one request.
#[derive(Debug)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// Lowercase names; repeated headers already joined with ",".
    pub headers: &'a BTreeMap<String, String>,
    pub body: &'a [u8],
}

/// The parsed signature of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
    pub amz_date: String,
    /// Query-string form: how long the signature is good for, in seconds.
    pub expires_s: Option<u64>,
}

fn incomplete(message: impl Into<String>) -> AwsError {
    AwsError::new(ErrorCode::IncompleteSignatureException, message)
}

/// Most bytes of a client's input an error message repeats.
const ECHO_MAX_BYTES: usize = 200;

/// `text` as an error message may repeat it: cut to [`ECHO_MAX_BYTES`].
pub fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= ECHO_MAX_BYTES {
        return text.into();
    }
    let mut end = ECHO_MAX_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end]).into()
}

/// The query-string parameters of a presigned request, in the order AWS
/// lists the missing ones.
const QUERY_AUTH: [&str; 5] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-SignedHeaders",
    "X-Amz-Date",
];

/// Finds and parses the signature; errors if there is none or it is
/// malformed, listing everything missing as AWS does (kinesalite's
/// connection tests, recorded against AWS).
pub fn parse(req: &RequestParts<'_>) -> Result<Signature, AwsError> {
    let query = query_params(req.query.unwrap_or_default());
    let header = req.headers.get("authorization");
    // As AWS reads it: an empty parameter is a missing one, and only an
    // algorithm makes a request presigned.
    let given = |p: &str| query.get(p).is_some_and(|v| !v.is_empty());
    if header.is_some() && given("X-Amz-Algorithm") {
        return Err(AwsError::new(
            ErrorCode::InvalidSignatureException,
            "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
        ));
    }
    if let Some(auth) = header {
        let rest = auth.strip_prefix(ALGORITHM).ok_or_else(|| {
            incomplete(format!(
                "Unsupported authorization type. Authorization={}",
                bounded(auth)
            ))
        })?;
        let mut fields = BTreeMap::new();
        for part in rest.split(',') {
            if let Some((k, v)) = part.trim().split_once('=') {
                fields.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        let amz_date = req
            .headers
            .get("x-amz-date")
            .or_else(|| req.headers.get("date"));
        let mut missing: Vec<String> = ["Credential", "Signature", "SignedHeaders"]
            .iter()
            .filter(|f| !fields.contains_key(**f))
            .map(|f| format!("Authorization header requires '{f}' parameter."))
            .collect();
        if amz_date.is_none() {
            missing.push(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                    .to_owned(),
            );
        }
        if !missing.is_empty() {
            return Err(incomplete(format!(
                "{} Authorization={}",
                missing.join(" "),
                bounded(auth)
            )));
        }
        let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
        return build(
            field("Credential"),
            field("SignedHeaders"),
            field("Signature"),
            amz_date.cloned().unwrap_or_default(),
            None,
        );
    }
    if given("X-Amz-Algorithm") {
        let missing: String = QUERY_AUTH
            .iter()
            .filter(|p| !given(p))
            .map(|p| format!("AWS query-string parameters must include '{p}'. "))
            .collect();
        if !missing.is_empty() {
            return Err(incomplete(format!(
                "{missing}Re-examine the query-string parameters."
            )));
        }
        let field = |name: &str| query.get(name).cloned().unwrap_or_default();
        if field("X-Amz-Algorithm") != ALGORITHM {
            return Err(incomplete(format!(
                "Unsupported algorithm. X-Amz-Algorithm={}",
                bounded(&field("X-Amz-Algorithm"))
            )));
        }
        let expires = query.get("X-Amz-Expires").cloned().ok_or_else(|| {
            incomplete("AWS query-string parameters must include 'X-Amz-Expires'. Re-examine the query-string parameters.")
        })?;
        let expires_s = expires
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=PRESIGNED_EXPIRES_MAX_S).contains(s))
            .ok_or_else(|| {
                incomplete(format!(
                    "X-Amz-Expires must be a number of seconds from 1 to {PRESIGNED_EXPIRES_MAX_S}, not {}.",
                    bounded(&expires)
                ))
            })?;
        return build(
            field("X-Amz-Credential"),
            field("X-Amz-SignedHeaders"),
            field("X-Amz-Signature"),
            field("X-Amz-Date"),
            Some(expires_s),
        );
    }
    Err(AwsError::new(
        ErrorCode::MissingAuthenticationTokenException,
        "Missing Authentication Token",
    ))
}

fn build(
    credential: String,
    signed: String,
    signature: String,
    amz_date: String,
    expires_s: Option<u64>,
) -> Result<Signature, AwsError> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = parts[..] else {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid region, service and aws4_request. Credential={}",
            bounded(&credential)
        )));
    };
    Ok(Signature {
        access_key: access_key.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: signed.split(';').map(str::to_owned).collect(),
        signature,
        amz_date,
        expires_s,
    })
}

/// How far a signature's time may be from the server's (AWS: 15 minutes).
pub const SKEW_MAX_MS: u64 = 15 * 60 * 1000;
/// The longest a presigned request stays good (AWS: 7 days).
pub const PRESIGNED_EXPIRES_MAX_S: u64 = 7 * 24 * 3600;

/// Whether the body hashes to the `x-amz-content-sha256` the client sent
/// (true if it sent none).
pub fn payload_hash_matches(req: &RequestParts<'_>) -> bool {
    req.headers
        .get("x-amz-content-sha256")
        .is_none_or(|claimed| *claimed == hex(&Sha256::digest(req.body)))
}

/// Checks what the signature covers before its value, from the headers
/// alone: that `host` is signed, and the time. (The body's hash is checked
/// with [`payload_hash_matches`] once the body is in.)
pub fn check_scope(sig: &Signature, now_ms: u64) -> Result<(), AwsError> {
    let invalid = |m: String| AwsError::new(ErrorCode::InvalidSignatureException, m);
    if !sig
        .signed_headers
        .iter()
        .any(|h| h == "host" || h == ":authority")
    {
        return Err(incomplete("'Host' must be a signed header.".to_owned()));
    }
    let at = parse_amz_date(&sig.amz_date)
        .ok_or_else(|| incomplete(format!("Invalid X-Amz-Date: {}", bounded(&sig.amz_date))))?;
    if !sig.amz_date.starts_with(&sig.date) {
        return Err(invalid(
            "The credential date does not match X-Amz-Date.".into(),
        ));
    }
    if let Some(expires_s) = sig.expires_s {
        // Presigned: good from its time (give or take the skew) until it expires.
        if at > now_ms.saturating_add(SKEW_MAX_MS) {
            return Err(invalid(format!(
                "Signature not yet current: {} is still later than the server's time plus 15 minutes.",
                sig.amz_date
            )));
        }
        if now_ms > at.saturating_add(expires_s * 1000) {
            return Err(invalid(format!(
                "Signature expired: the request was signed at {} to be good for {expires_s} seconds.",
                sig.amz_date
            )));
        }
        return Ok(());
    }
    if at.abs_diff(now_ms) > SKEW_MAX_MS {
        return Err(invalid(format!(
            "Signature expired: {} is outside the allowed skew of 15 minutes from the server's time.",
            sig.amz_date
        )));
    }
    Ok(())
}

/// `20150830T123600Z` as milliseconds since the epoch.
fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000).max(0)).ok()
}

/// Recomputes the signature with `secret`; true if it matches.
pub fn verify(req: &RequestParts<'_>, sig: &Signature, secret: &str) -> bool {
    let canonical = canonical_request(req, sig);
    let scope = format!("{}/{}/{}/aws4_request", sig.date, sig.region, sig.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        sig.amz_date,
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), sig.date.as_bytes());
    for part in [
        sig.region.as_bytes(),
        sig.service.as_bytes(),
        b"aws4_request".as_slice(),
    ] {
        key = hmac(&key, part);
    }
    let expected = hex(&hmac(&key, string_to_sign.as_bytes()));
    // Constant-time comparison.
    expected.len() == sig.signature.len()
        && expected
            .bytes()
            .zip(sig.signature.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn canonical_request(req: &RequestParts<'_>, sig: &Signature) -> String {
    let mut query: Vec<(String, String)> = req
        .query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k)),
                uri_encode(&percent_decode(v)),
            )
        })
        .filter(|(k, _)| !(sig.expires_s.is_some() && k == "X-Amz-Signature"))
        .collect();
    query.sort();
    let query: Vec<String> = query.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let headers: String = sig
        .signed_headers
        .iter()
        .map(|name| {
            // Some SDKs (JavaScript v3) sign the HTTP/2 pseudo-header `:authority`
            // even over HTTP/1.1, where the same value travels as `host`.
            let lookup = if name == ":authority" {
                "host"
            } else {
                name.as_str()
            };
            let value = req
                .headers
                .get(lookup)
                .map(String::as_str)
                .unwrap_or_default();
            format!(
                "{name}:{}\n",
                value.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        })
        .collect();
    let payload_hash = req
        .headers
        .get("x-amz-content-sha256")
        .cloned()
        .unwrap_or_else(|| hex(&Sha256::digest(req.body)));
    let path: String = req
        .path
        .split('/')
        .map(|seg| uri_encode(&percent_decode(seg)))
        .collect::<Vec<_>>()
        .join("/");
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        if path.is_empty() { "/" } else { &path },
        query.join("&"),
        headers,
        sig.signed_headers.join(";"),
        payload_hash
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn query_params(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex_at = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex_at(i + 1), hex_at(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// SigV4's encoding: everything but unreserved characters, uppercase hex.
fn uri_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is missing, in AWS's words and order (kinesalite's connection
    /// tests, recorded against AWS).
    #[test]
    fn missing_parts_are_listed_as_aws_lists_them() {
        let refusal = |headers: &[(&str, &str)], query: Option<&str>| {
            let headers: BTreeMap<String, String> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let e = parse(&RequestParts {
                method: "POST",
                path: "/",
                query,
                headers: &headers,
                body: b"",
            })
            .unwrap_err();
            (e.code.name(), e.message)
        };
        let incomplete = |m: &str| ("IncompleteSignatureException", m.to_owned());
        assert_eq!(
            refusal(&[], None),
            (
                "MissingAuthenticationTokenException",
                "Missing Authentication Token".to_owned()
            )
        );
        assert_eq!(
            refusal(&[("authorization", "AWS4-HMAC-SHA256")], None),
            incomplete("Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=AWS4-HMAC-SHA256")
        );
        assert_eq!(
            refusal(
                &[("authorization", "AWS4-HMAC-SHA256 Signature=b, Credential=a"), ("x-amz-date", "20260101T000000Z")],
                None
            ),
            incomplete("Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256 Signature=b, Credential=a")
        );
        assert_eq!(
            refusal(&[("authorization", "AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request, Signature=b, SignedHeaders=host")], Some("X-Amz-Algorithm=a")),
            ("InvalidSignatureException", "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.".to_owned())
        );
        assert_eq!(
            refusal(&[], Some("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20260101T000000Z")),
            incomplete("AWS query-string parameters must include 'X-Amz-Credential'. AWS query-string parameters must include 'X-Amz-Signature'. AWS query-string parameters must include 'X-Amz-SignedHeaders'. Re-examine the query-string parameters.")
        );
        assert_eq!(
            refusal(&[], Some("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=&X-Amz-Signature=x")),
            incomplete("AWS query-string parameters must include 'X-Amz-Credential'. AWS query-string parameters must include 'X-Amz-SignedHeaders'. AWS query-string parameters must include 'X-Amz-Date'. Re-examine the query-string parameters.")
        );
        // Without an algorithm, the query does not sign the request.
        assert_eq!(
            refusal(&[], Some("X-Amz-Signature=x")),
            (
                "MissingAuthenticationTokenException",
                "Missing Authentication Token".to_owned()
            )
        );
    }

    /// The "get-vanilla" case of AWS's SigV4 test suite.
    #[test]
    fn aws_test_suite_get_vanilla() {
        let headers = BTreeMap::from([
            ("host".to_owned(), "example.amazonaws.com".to_owned()),
            ("x-amz-date".to_owned(), "20150830T123600Z".to_owned()),
            (
                "authorization".to_owned(),
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31".to_owned(),
            ),
        ]);
        let req = RequestParts {
            method: "GET",
            path: "/",
            query: None,
            headers: &headers,
            body: b"",
        };
        let sig = parse(&req).unwrap();
        assert_eq!(sig.access_key, "AKIDEXAMPLE");
        assert!(verify(
            &req,
            &sig,
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
        ));
        assert!(!verify(&req, &sig, "wrong"));
    }

    #[test]
    fn amz_dates_and_scope_checks() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160_000));
        assert_eq!(parse_amz_date("20150830T123600"), None);
        assert_eq!(parse_amz_date("20151330T123600Z"), None);
        let mut headers = BTreeMap::from([
            ("host".to_owned(), "example.amazonaws.com".to_owned()),
            ("x-amz-date".to_owned(), "20150830T123600Z".to_owned()),
            ("authorization".to_owned(), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=00".to_owned()),
        ]);
        let now = 1_440_938_160_000;
        let req = RequestParts {
            method: "POST",
            path: "/",
            query: None,
            headers: &headers,
            body: b"{}",
        };
        let sig = parse(&req).unwrap();
        check_scope(&sig, now).unwrap();
        check_scope(&sig, now + SKEW_MAX_MS).unwrap();
        assert_eq!(
            check_scope(&sig, now + SKEW_MAX_MS + 1).unwrap_err().code,
            ErrorCode::InvalidSignatureException
        );
        headers.insert("x-amz-content-sha256".into(), "00".into());
        let req = RequestParts {
            method: "POST",
            path: "/",
            query: None,
            headers: &headers,
            body: b"{}",
        };
        assert!(!payload_hash_matches(&req));
        headers.remove("x-amz-content-sha256");
        headers.insert("authorization".into(), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=x-amz-date, Signature=00".into());
        let req = RequestParts {
            method: "POST",
            path: "/",
            query: None,
            headers: &headers,
            body: b"{}",
        };
        let sig = parse(&req).unwrap();
        assert_eq!(
            check_scope(&sig, now).unwrap_err().code,
            ErrorCode::IncompleteSignatureException
        );
    }

    #[test]
    fn malformed_and_missing_signatures() {
        let mut headers = BTreeMap::new();
        let req = RequestParts {
            method: "POST",
            path: "/",
            query: None,
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            parse(&req).unwrap_err().code,
            ErrorCode::MissingAuthenticationTokenException
        );
        headers.insert(
            "authorization".into(),
            "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00".into(),
        );
        headers.insert("x-amz-date".into(), "20150830T123600Z".into());
        let req = RequestParts {
            method: "POST",
            path: "/",
            query: None,
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            parse(&req).unwrap_err().code,
            ErrorCode::IncompleteSignatureException
        );
        headers.insert(
            "authorization".into(),
            "AWS4-HMAC-SHA256 Credential=A/2015/us-east-1, SignedHeaders=host, Signature=00".into(),
        );
        let req = RequestParts {
            method: "POST",
            path: "/",
            query: None,
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            parse(&req).unwrap_err().code,
            ErrorCode::IncompleteSignatureException
        );
        headers.insert("authorization".into(), "Basic abc".into());
        let req = RequestParts {
            method: "POST",
            path: "/",
            query: None,
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            parse(&req).unwrap_err().code,
            ErrorCode::IncompleteSignatureException
        );
    }
}
