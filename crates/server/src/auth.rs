//! SigV4 at the server's door: what the headers alone settle (the key, the
//! scope, the time, and the signature itself when the client sent the
//! payload's hash), and what needs the body.

use std::collections::BTreeMap;

use sluice_aws::{sigv4, AwsError, ErrorCode, Service};

use sluice_meta::Scope;

use crate::state::State;

/// What is left to check of a signature once the body is in.
pub(crate) enum PendingAuth {
    /// Nothing (no credentials configured).
    None,
    /// The signature was verified against the `x-amz-content-sha256` the
    /// client sent (the headers); the body must hash to it.
    BodyHash(BTreeMap<String, String>),
    /// The signature covers the body's hash: verify it with this secret (and
    /// the headers, as read before the body).
    Verify(Box<(sigv4::Signature, String, BTreeMap<String, String>)>),
}

/// The headers of every request must carry a well-formed SigV4 signature;
/// with credentials configured, all that can be checked without the body is
/// checked here (the key, the scope, the time, and the signature itself when
/// the client sent the payload's hash). Returns the caller's account, and the
/// region its signature is scoped to: one server answers every region, as
/// AWS's endpoints together do, each region's streams apart. With
/// credentials, that region is covered by the signature that is verified.
pub(crate) fn authenticate_head(
    parts: &hyper::http::request::Parts,
    state: &State,
    service: &Service,
) -> Result<(Scope, PendingAuth), AwsError> {
    let headers = header_map(parts);
    let request = request_parts(parts, &headers, &[]);
    let signature = sigv4::parse(&request)?;
    if !sluice_model::is_region(&signature.region) {
        return Err(AwsError::new(
            ErrorCode::InvalidSignatureException,
            format!(
                "Credential should be scoped to a valid region, not '{}'.",
                sigv4::bounded(&signature.region)
            ),
        ));
    }
    let scope = Scope::new(
        state.config.account_for(&signature.access_key),
        signature.region.clone(),
    );
    if state.config.credentials.is_empty() {
        return Ok((scope, PendingAuth::None));
    }
    let credential = state
        .config
        .credentials
        .get(&signature.access_key)
        .ok_or_else(|| {
            AwsError::new(
                ErrorCode::UnrecognizedClientException,
                "The security token included in the request is invalid.",
            )
        })?;
    sigv4::check_scope(&signature, state.now_ms())?;
    // A signature for another service is not one for this server.
    if signature.service != service.signing_name() {
        return Err(service.wrong_service());
    }
    if headers.contains_key("x-amz-content-sha256") {
        if !sigv4::verify(&request, &signature, &credential.secret) {
            return Err(mismatch());
        }
        return Ok((scope, PendingAuth::BodyHash(headers)));
    }
    let secret = credential.secret.clone();
    Ok((
        scope,
        PendingAuth::Verify(Box::new((signature, secret, headers))),
    ))
}

fn mismatch() -> AwsError {
    AwsError::new(
        ErrorCode::InvalidSignatureException,
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
    )
}

/// The checks that need the body (see [`authenticate_head`]).
pub(crate) fn authenticate_body(
    parts: &hyper::http::request::Parts,
    body: &[u8],
    pending: PendingAuth,
) -> Result<(), AwsError> {
    match pending {
        PendingAuth::None => Ok(()),
        PendingAuth::BodyHash(headers) => {
            if sigv4::payload_hash_matches(&request_parts(parts, &headers, body)) {
                Ok(())
            } else {
                Err(AwsError::new(
                    ErrorCode::InvalidSignatureException,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                ))
            }
        }
        PendingAuth::Verify(check) => {
            let (signature, secret, headers) = *check;
            if sigv4::verify(&request_parts(parts, &headers, body), &signature, &secret) {
                Ok(())
            } else {
                Err(mismatch())
            }
        }
    }
}

/// Lowercase names; repeated headers joined with ","; HTTP/2's
/// `:authority` as `host`.
pub(crate) fn header_map(parts: &hyper::http::request::Parts) -> BTreeMap<String, String> {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    if let Some(authority) = parts.uri.authority() {
        headers
            .entry("host".to_owned())
            .or_insert_with(|| authority.to_string());
    }
    headers
}

fn request_parts<'a>(
    parts: &'a hyper::http::request::Parts,
    headers: &'a BTreeMap<String, String>,
    body: &'a [u8],
) -> sigv4::RequestParts<'a> {
    sigv4::RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers,
        body,
    }
}
