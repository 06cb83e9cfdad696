//! The Nexmark source's checks: its settings, and the schema it fixes (written out in the
//! job, as for Kafka's `format: raw`, so a reader of the manifest sees every column).

use super::FieldError;
use crate::pipeline::{FieldType, NexmarkSpec, SourceSpec};

/// The columns of a Nexmark event, in order: which kind of event (`event_type`: 0 person,
/// 1 auction, 2 bid), the fields of each kind (null in events of the other kinds), and the
/// event time and padding all kinds share. Flink's Nexmark puts the three kinds in one
/// table the same way (as nested rows); queries read them through views.
pub const NEXMARK_COLUMNS: [(&str, FieldType); 23] = [
    ("event_type", FieldType::Int64),
    ("person_id", FieldType::Int64),
    ("person_name", FieldType::String),
    ("person_email_address", FieldType::String),
    ("person_credit_card", FieldType::String),
    ("person_city", FieldType::String),
    ("person_state", FieldType::String),
    ("auction_id", FieldType::Int64),
    ("auction_item_name", FieldType::String),
    ("auction_description", FieldType::String),
    ("auction_initial_bid", FieldType::Int64),
    ("auction_reserve", FieldType::Int64),
    ("auction_expires", FieldType::Timestamp),
    ("auction_seller", FieldType::Int64),
    ("auction_category", FieldType::Int64),
    ("bid_auction", FieldType::Int64),
    ("bid_bidder", FieldType::Int64),
    ("bid_price", FieldType::Int64),
    ("bid_channel", FieldType::String),
    ("bid_url", FieldType::String),
    ("date_time", FieldType::Timestamp),
    ("extra", FieldType::String),
    ("event_id", FieldType::Int64),
];

/// The generator's settings, and `source.schema` equal to [`NEXMARK_COLUMNS`].
pub(super) fn check_source(n: &NexmarkSpec, src: &SourceSpec, errs: &mut Vec<FieldError>) {
    use crate::pipeline::{MAX_BATCH_SIZE, MAX_SPLITS};
    for (field, bad, why) in [
        (
            "splits",
            n.splits == 0 || n.splits > MAX_SPLITS,
            format!("must be between 1 and {MAX_SPLITS}"),
        ),
        (
            "batchSize",
            n.batch_size == 0 || n.batch_size > MAX_BATCH_SIZE,
            format!("must be between 1 and {MAX_BATCH_SIZE}"),
        ),
        (
            "eventsPerSecond",
            n.events_per_second == 0,
            "must be at least 1".to_string(),
        ),
        (
            "rate",
            n.rate == Some(0),
            "must be at least 1 (omit it for no limit)".to_string(),
        ),
    ] {
        if bad {
            errs.push(FieldError::new(format!("source.nexmark.{field}"), why));
        }
    }
    super::source::fixed_schema(src, &NEXMARK_COLUMNS, "the nexmark source", errs);
}
