//! AWS-shaped errors: `{"__type": "<ExceptionName>", "message": "..."}` with an
//! HTTP status. The names and statuses are a contract, pinned by tests.

use std::fmt;

/// Every error name Sluice answers with, Kinesis' own and the protocol's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // Protocol-level errors.
    ValidationException,
    SerializationException,
    UnknownOperationException,
    MissingAuthenticationTokenException,
    InvalidSignatureException,
    UnrecognizedClientException,
    IncompleteSignatureException,
    RequestEntityTooLargeException,
    InternalFailure,
    // Kinesis' modeled exceptions.
    AccessDeniedException,
    ExpiredIteratorException,
    ExpiredNextTokenException,
    InternalFailureException,
    InvalidArgumentException,
    KmsAccessDeniedException,
    KmsDisabledException,
    KmsInvalidStateException,
    KmsNotFoundException,
    KmsOptInRequired,
    KmsThrottlingException,
    LimitExceededException,
    ProvisionedThroughputExceededException,
    ResourceInUseException,
    ResourceNotFoundException,
    // Firehose's modeled exceptions (the others it shares with Kinesis).
    ConcurrentModificationException,
    InvalidKmsResourceException,
    InvalidSourceException,
    ServiceUnavailableException,
}

impl ErrorCode {
    /// Every error name, for looking one up by name.
    pub const ALL: [ErrorCode; 28] = {
        use ErrorCode::*;
        [
            ValidationException,
            SerializationException,
            UnknownOperationException,
            MissingAuthenticationTokenException,
            InvalidSignatureException,
            UnrecognizedClientException,
            IncompleteSignatureException,
            RequestEntityTooLargeException,
            InternalFailure,
            AccessDeniedException,
            ExpiredIteratorException,
            ExpiredNextTokenException,
            InternalFailureException,
            InvalidArgumentException,
            KmsAccessDeniedException,
            KmsDisabledException,
            KmsInvalidStateException,
            KmsNotFoundException,
            KmsOptInRequired,
            KmsThrottlingException,
            LimitExceededException,
            ProvisionedThroughputExceededException,
            ResourceInUseException,
            ResourceNotFoundException,
            ConcurrentModificationException,
            InvalidKmsResourceException,
            InvalidSourceException,
            ServiceUnavailableException,
        ]
    };

    /// The error named `name` (as AWS spells it), if Sluice has it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.name() == name)
    }

    /// The `__type` AWS sends.
    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            ValidationException => "ValidationException",
            SerializationException => "SerializationException",
            UnknownOperationException => "UnknownOperationException",
            MissingAuthenticationTokenException => "MissingAuthenticationTokenException",
            InvalidSignatureException => "InvalidSignatureException",
            UnrecognizedClientException => "UnrecognizedClientException",
            IncompleteSignatureException => "IncompleteSignatureException",
            RequestEntityTooLargeException => "RequestEntityTooLargeException",
            InternalFailure => "InternalFailure",
            AccessDeniedException => "AccessDeniedException",
            ExpiredIteratorException => "ExpiredIteratorException",
            ExpiredNextTokenException => "ExpiredNextTokenException",
            InternalFailureException => "InternalFailureException",
            InvalidArgumentException => "InvalidArgumentException",
            KmsAccessDeniedException => "KMSAccessDeniedException",
            KmsDisabledException => "KMSDisabledException",
            KmsInvalidStateException => "KMSInvalidStateException",
            KmsNotFoundException => "KMSNotFoundException",
            KmsOptInRequired => "KMSOptInRequired",
            KmsThrottlingException => "KMSThrottlingException",
            LimitExceededException => "LimitExceededException",
            ProvisionedThroughputExceededException => "ProvisionedThroughputExceededException",
            ResourceInUseException => "ResourceInUseException",
            ResourceNotFoundException => "ResourceNotFoundException",
            ConcurrentModificationException => "ConcurrentModificationException",
            InvalidKmsResourceException => "InvalidKMSResourceException",
            InvalidSourceException => "InvalidSourceException",
            ServiceUnavailableException => "ServiceUnavailableException",
        }
    }

    /// The HTTP status AWS answers with. Kinesis answers a POST's signing
    /// problems with 400, in JSON, like any client error (kinesalite's
    /// connection tests, recorded against AWS).
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InternalFailure | InternalFailureException => 500,
            RequestEntityTooLargeException => 413,
            _ => 400,
        }
    }

    /// Whether the caller's credentials or signature were refused.
    pub fn is_auth(self) -> bool {
        use ErrorCode::*;
        matches!(
            self,
            MissingAuthenticationTokenException
                | InvalidSignatureException
                | UnrecognizedClientException
                | IncompleteSignatureException
        )
    }
}

/// The longest error message, in bytes (AWS's are a few hundred at most).
pub const MESSAGE_MAX_BYTES: usize = 1024;

/// An error as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub code: ErrorCode,
    pub message: String,
}

impl AwsError {
    /// Messages longer than [`MESSAGE_MAX_BYTES`] are cut, so that no input
    /// a message repeats can make an answer large.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MESSAGE_MAX_BYTES {
            let mut end = MESSAGE_MAX_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("...");
        }
        Self { code, message }
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The key AWS puts the message under, if there is one: none for an
    /// empty message (UnknownOperationException, an undecodable body),
    /// `Message` for the deserializer's SerializationException, `message`
    /// for the rest (kinesalite's tests, recorded against AWS).
    pub fn message_key(&self) -> Option<&'static str> {
        match (self.message.is_empty(), self.code) {
            (true, _) => None,
            (false, ErrorCode::SerializationException) => Some("Message"),
            (false, _) => Some("message"),
        }
    }

    /// The AWS JSON 1.1 body.
    pub fn to_json(&self) -> Vec<u8> {
        let mut body = serde_json::Map::new();
        body.insert("__type".into(), self.code.name().into());
        if let Some(key) = self.message_key() {
            body.insert(key.into(), self.message.clone().into());
        }
        serde_json::to_vec(&body).expect("serializing a map of strings cannot fail")
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl std::error::Error for AwsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_and_statuses() {
        let e = AwsError::new(
            ErrorCode::ResourceNotFoundException,
            "Stream s under account 000000000000 not found.",
        );
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["__type"], "ResourceNotFoundException");
        assert_eq!(
            v["message"],
            "Stream s under account 000000000000 not found."
        );
        assert_eq!(e.status(), 400);
        assert_eq!(ErrorCode::InternalFailure.status(), 500);
        assert_eq!(ErrorCode::KmsOptInRequired.name(), "KMSOptInRequired");
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_name(code.name()), Some(code));
        }
        assert_eq!(ErrorCode::from_name("NoSuchException"), None);
    }
}
