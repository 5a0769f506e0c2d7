//! `X-Amz-Target: Kinesis_20131202.<Operation>`.

use crate::error::{AwsError, ErrorCode};
use crate::model::ApiModel;

/// The operation a target header names, checked against the model.
pub fn parse<'m>(model: &'m ApiModel, target: Option<&str>) -> Result<&'m str, AwsError> {
    let unknown = || AwsError::new(ErrorCode::UnknownOperationException, "");
    let target = target.ok_or_else(unknown)?;
    let (prefix, operation) = target.split_once('.').ok_or_else(unknown)?;
    if prefix != model.target_prefix() {
        return Err(unknown());
    }
    model
        .operation(operation)
        .map(|op| op.name.as_str())
        .ok_or_else(unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let m = crate::kinesis();
        assert_eq!(
            parse(m, Some("Kinesis_20131202.PutRecords")),
            Ok("PutRecords")
        );
        for bad in [
            None,
            Some(""),
            Some("PutRecords"),
            Some("Kinesis_20131202.Nope"),
            Some("Firehose_20150804.PutRecord"),
        ] {
            assert_eq!(
                parse(m, bad).unwrap_err().code,
                ErrorCode::UnknownOperationException,
                "{bad:?}"
            );
        }
    }
}
