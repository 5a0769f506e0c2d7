//! The `application/vnd.amazon.eventstream` framing (prelude, headers,
//! CRCs) of streaming answers such as SubscribeToShard, by the AWS SDKs' own
//! encoder (aws-smithy-eventstream).

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};

pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// One message: string headers (`:message-type`, `:event-type`, …) and a payload.
pub fn message(headers: &[(&'static str, &'static str)], payload: Vec<u8>) -> Vec<u8> {
    let mut message = Message::new(payload);
    for (name, value) in headers {
        message = message.add_header(Header::new(*name, HeaderValue::String((*value).into())));
    }
    let mut out = Vec::with_capacity(message.payload().len() + 128);
    aws_smithy_eventstream::frame::write_message_to(&message, &mut out)
        .expect("event headers are short and payloads far below 4 GiB");
    out
}

/// The payload's content type in an event: the protocol of the request.
fn payload_type(cbor: bool) -> &'static str {
    if cbor {
        crate::cbor::CBOR_CONTENT_TYPE
    } else {
        "application/json"
    }
}

/// The first message of a streaming answer: its (empty) initial response.
pub fn initial_response(cbor: bool) -> Vec<u8> {
    let payload = if cbor { vec![0xa0] } else { b"{}".to_vec() };
    message(
        &[
            (":message-type", "event"),
            (":event-type", "initial-response"),
            (":content-type", payload_type(cbor)),
        ],
        payload,
    )
}

/// An event of type `event_type` (a member of the operation's event-stream
/// shape, e.g. [`crate::kinesis::SUBSCRIBE_TO_SHARD_EVENT`]) with its payload.
pub fn event(event_type: &'static str, cbor: bool, payload: Vec<u8>) -> Vec<u8> {
    message(
        &[
            (":message-type", "event"),
            (":event-type", event_type),
            (":content-type", payload_type(cbor)),
        ],
        payload,
    )
}

/// An error that ends a stream: the exception's name in the headers, its
/// message in the payload.
pub fn exception(cbor: bool, error: &crate::AwsError) -> Vec<u8> {
    let payload = if cbor {
        crate::cbor::encode_cbor_error(error)
    } else {
        serde_json::to_vec(&serde_json::json!({"message": error.message}))
            .expect("JSON values serialize")
    };
    message(
        &[
            (":message-type", "exception"),
            (":exception-type", error.code.name()),
            (":content-type", payload_type(cbor)),
        ],
        payload,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_message_reads_back() {
        let bytes = super::message(&[(":message-type", "event")], b"{}".to_vec());
        let mut buf = &bytes[..];
        let m = aws_smithy_eventstream::frame::read_message_from(&mut buf).unwrap();
        assert_eq!(m.payload().as_ref(), b"{}");
        assert_eq!(m.headers()[0].name().as_str(), ":message-type");
        assert!(buf.is_empty());
    }

    #[test]
    fn exceptions_carry_their_name_and_message() {
        let e = crate::AwsError::new(crate::ErrorCode::ResourceInUseException, "busy");
        let bytes = super::exception(false, &e);
        let mut buf = &bytes[..];
        let m = aws_smithy_eventstream::frame::read_message_from(&mut buf).unwrap();
        assert_eq!(m.payload().as_ref(), br#"{"message":"busy"}"#);
        let header = |name: &str| {
            m.headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_owned())
        };
        assert_eq!(header(":message-type").as_deref(), Some("exception"));
        assert_eq!(
            header(":exception-type").as_deref(),
            Some("ResourceInUseException")
        );
        let cbor = super::initial_response(true);
        let m = aws_smithy_eventstream::frame::read_message_from(&mut &cbor[..]).unwrap();
        assert_eq!(m.payload().as_ref(), [0xa0]);
    }
}
