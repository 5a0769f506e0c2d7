//! A service, described once: its model (operations, shapes, errors, the
//! signing name and how requests travel) and which operations answer with an
//! event stream rather than one buffered body. The server routes, signs and
//! encodes from this; Firehose, Kinesis Analytics and Kinesis Video plug in
//! with a model of their own and their handlers.

use crate::model::{ApiModel, Protocol};

#[derive(Debug)]
pub struct Service {
    /// The service's name in logs and messages.
    pub name: &'static str,
    /// Its botocore model, parsed once.
    pub model: fn() -> &'static ApiModel,
    /// Operations whose answer is an `application/vnd.amazon.eventstream`
    /// body, written as events arrive.
    pub streaming: &'static [&'static str],
    /// REST-JSON services' routes, built from the model at first use.
    pub routes: std::sync::OnceLock<crate::rest::Routes>,
}

impl Service {
    pub fn model(&self) -> &'static ApiModel {
        (self.model)()
    }

    /// The service name a SigV4 credential scope must carry.
    pub fn signing_name(&self) -> &'static str {
        self.model().signing_name()
    }

    pub fn protocol(&self) -> Protocol {
        self.model().protocol()
    }

    /// The operation a request names: by `X-Amz-Target` for AWS JSON, by
    /// method and path for REST-JSON.
    pub fn operation(
        &self,
        target: Option<&str>,
        method: &str,
        path: &str,
        query: &str,
    ) -> Result<&'static str, crate::AwsError> {
        let model = self.model();
        match model.protocol() {
            Protocol::Json => crate::target::parse(model, target),
            Protocol::RestJson => {
                let found = self
                    .routes
                    .get_or_init(|| crate::rest::Routes::of(model))
                    .find(method, path, query)?;
                Ok(model
                    .operation(found.operation)
                    .map(|op| op.name.as_str())
                    .expect("routes are built from the model's operations"))
            }
        }
    }

    /// Whether `operation` answers with an event stream.
    pub fn is_streaming(&self, operation: &str) -> bool {
        self.streaming.contains(&operation)
    }

    /// The error a signature scoped to another service gets, in AWS's words.
    pub fn wrong_service(&self) -> crate::AwsError {
        crate::AwsError::new(
            crate::ErrorCode::InvalidSignatureException,
            format!(
                "Credential should be scoped to correct service: '{}'.",
                self.signing_name()
            ),
        )
    }
}

/// Amazon Kinesis Data Streams.
pub static KINESIS: Service = Service {
    name: "Kinesis",
    model: crate::model::kinesis,
    streaming: &["SubscribeToShard"],
    routes: std::sync::OnceLock::new(),
};

/// Amazon Data Firehose (Kinesis Data Firehose), on the same port: the
/// target prefix and the signing name tell it apart.
pub static FIREHOSE: Service = Service {
    name: "Firehose",
    model: crate::model::firehose,
    streaming: &[],
    routes: std::sync::OnceLock::new(),
};

/// The service an `X-Amz-Target` names by its prefix (Kinesis when it
/// names none that Sluice serves, so that the unknown target is Kinesis').
pub fn by_target(target: Option<&str>) -> &'static Service {
    match target.and_then(|t| t.split_once('.')) {
        Some((prefix, _)) if prefix == FIREHOSE.model().target_prefix() => &FIREHOSE,
        _ => &KINESIS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video() -> &'static ApiModel {
        static MODEL: std::sync::OnceLock<ApiModel> = std::sync::OnceLock::new();
        MODEL.get_or_init(|| {
            ApiModel::parse(include_str!("../spec/kinesisvideo-2017-09-30.json")).unwrap()
        })
    }

    /// A REST-JSON service plugs in with its model, as Kinesis Video will.
    #[test]
    fn a_rest_json_service_routes_by_path() {
        static VIDEO: Service = Service {
            name: "Kinesis Video",
            model: video,
            streaming: &[],
            routes: std::sync::OnceLock::new(),
        };
        assert_eq!(VIDEO.signing_name(), "kinesisvideo");
        assert_eq!(
            VIDEO.operation(None, "POST", "/listStreams", ""),
            Ok("ListStreams")
        );
        assert_eq!(
            VIDEO
                .operation(Some("Kinesis_20131202.ListStreams"), "POST", "/", "")
                .unwrap_err()
                .code,
            crate::ErrorCode::UnknownOperationException
        );
    }

    #[test]
    fn kinesis_is_described_by_its_model() {
        assert_eq!(KINESIS.signing_name(), "kinesis");
        assert_eq!(KINESIS.protocol(), Protocol::Json);
        assert!(KINESIS.is_streaming("SubscribeToShard"));
        assert!(!KINESIS.is_streaming("GetRecords"));
        for op in KINESIS.streaming {
            assert!(KINESIS.model().operation(op).is_some(), "{op}");
        }
        assert_eq!(
            KINESIS.operation(Some("Kinesis_20131202.ListStreams"), "POST", "/", ""),
            Ok("ListStreams")
        );
        assert_eq!(
            KINESIS.wrong_service().message,
            "Credential should be scoped to correct service: 'kinesis'."
        );
    }
}
