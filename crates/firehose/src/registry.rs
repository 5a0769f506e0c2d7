//! The delivery streams of every account and region, as stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_aws::firehose as f;
use sluice_meta::Scope;

/// Every delivery stream, by `account/region/name` (none of them contains
/// `/`), so that one scope's streams are a contiguous range in name order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    streams: BTreeMap<String, DeliveryStream>,
}

fn key(scope: &Scope, name: &str) -> String {
    format!("{}/{}/{name}", scope.account, scope.region)
}

impl Registry {
    pub fn get(&self, scope: &Scope, name: &str) -> Option<&DeliveryStream> {
        self.streams.get(&key(scope, name))
    }

    pub(crate) fn get_mut(&mut self, scope: &Scope, name: &str) -> Option<&mut DeliveryStream> {
        self.streams.get_mut(&key(scope, name))
    }

    pub(crate) fn insert(&mut self, stream: DeliveryStream) {
        let k = key(&stream.scope(), &stream.name);
        self.streams.insert(k, stream);
    }

    pub(crate) fn remove(&mut self, scope: &Scope, name: &str) -> Option<DeliveryStream> {
        self.streams.remove(&key(scope, name))
    }

    /// Every delivery stream of every scope.
    pub fn all(&self) -> impl Iterator<Item = &DeliveryStream> {
        self.streams.values()
    }

    /// How many delivery streams there are, in every scope.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// One scope's delivery streams in name order.
    pub fn of<'a>(&'a self, scope: &Scope) -> impl Iterator<Item = &'a DeliveryStream> + 'a {
        let prefix = key(scope, "");
        self.streams
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, s)| s)
    }
}

/// One delivery stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryStream {
    pub account: String,
    pub region: String,
    pub name: String,
    pub kind: f::DeliveryStreamType,
    pub source: Option<f::SourceDescription>,
    pub created_ms: u64,
    /// The last configuration change, if there was one since creation.
    pub updated_ms: Option<u64>,
    /// Starts at 1; one more with every configuration change.
    pub version: u64,
    /// Server-side encryption, as state (see the crate's documentation).
    pub encryption: f::DeliveryStreamEncryptionConfiguration,
    pub destination: Destination,
    pub tags: BTreeMap<String, Option<String>>,
    /// When encryption was started or stopped, within the last day (AWS
    /// allows 25 such calls per delivery stream in 24 hours).
    #[serde(default)]
    pub encryption_changes_ms: Vec<u64>,
}

impl DeliveryStream {
    pub fn scope(&self) -> Scope {
        Scope::new(self.account.clone(), self.region.clone())
    }

    pub fn arn(&self) -> String {
        format!(
            "arn:{}:firehose:{}:{}:deliverystream/{}",
            sluice_model::partition(&self.region),
            self.region,
            self.account,
            self.name
        )
    }
}

/// The one destination, as configured (its secrets too: the description
/// leaves them out), updates merged in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Destination {
    S3(Box<f::S3DestinationConfiguration>),
    ExtendedS3(Box<f::ExtendedS3DestinationConfiguration>),
    HttpEndpoint(Box<f::HttpEndpointDestinationConfiguration>),
}

/// Destinations are numbered as AWS numbers them; a delivery stream has one.
pub const DESTINATION_ID: &str = "destinationId-000000000001";
