//! The Nexmark benchmark's source: persons, auctions and bids of an online auction, made the
//! way Apache Beam's reference generator (`NexmarkGenerator`) makes them, so that published
//! Nexmark queries and figures apply.
//!
//! What is kept from the reference: the mix (of every 50 events, 1 person, 3 auctions, 46
//! bids, by event number), the id ranges (person and auction ids grow with the stream from
//! 1000; a bid's auction is one of the last 100 auctions or a "hot" one, its bidder one of the
//! last 1000 persons or a hot one; a seller likewise), prices (`10^(6u)` cents), five
//! categories, auction expiry within twice the time 100 auctions take to arrive, and event
//! time advancing `eventsPerSecond` per second from a fixed base. What differs: values come
//! from a counter-based random function of (seed, event number) instead of Java's
//! `Random`, so event `i` is the same at any parallelism and after any restore without
//! replaying the events before it; and `extra` is short (the reference pads events to
//! 100-500 bytes), which makes the generator cheaper, not the queries different.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;
use weir_crds::{FieldSpec, NexmarkSpec};

use super::{CountedSplits, Poll, SourceReader, SplitState};
use crate::error::Result;
use crate::ids::Millis;

const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
const BID_PROPORTION: u64 = 46;
const TOTAL_PROPORTION: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
const FIRST_PERSON_ID: i64 = 1000;
const FIRST_AUCTION_ID: i64 = 1000;
const FIRST_CATEGORY_ID: i64 = 10;
const NUM_CATEGORIES: u64 = 5;
const NUM_ACTIVE_PEOPLE: u64 = 1000;
const NUM_IN_FLIGHT_AUCTIONS: u64 = 100;
const PERSON_ID_LEAD: u64 = 10;
const AUCTION_ID_LEAD: u64 = 10;
/// One in this many bids (and sellers, bidders) is not "hot" (the reference's defaults).
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_SELLER_RATIO: u64 = 4;
const HOT_BIDDER_RATIO: u64 = 4;
/// Hot auctions and persons are multiples of this.
const HOT_ID_STEP: u64 = 100;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const CHANNELS: u64 = 10_000;
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
/// Event time of event 0: 2025-01-01T00:00:00Z.
const BASE_TIME_MS: i64 = 1_735_689_600_000;

/// `event_type` of each kind.
pub const PERSON: i64 = 0;
/// `event_type` of an auction.
pub const AUCTION: i64 = 1;
/// `event_type` of a bid.
pub const BID: i64 = 2;

/// The kind of event `n`.
#[must_use]
pub fn kind_of(n: u64) -> i64 {
    let rem = n % TOTAL_PROPORTION;
    if rem < PERSON_PROPORTION {
        PERSON
    } else if rem < PERSON_PROPORTION + AUCTION_PROPORTION {
        AUCTION
    } else {
        BID
    }
}

/// Base-0 id of the newest person at or before event `n`.
fn last_person(n: u64) -> u64 {
    // With one person per 50 events it is the epoch; the reference's general form is
    // `epoch * PERSON_PROPORTION + min(offset, PERSON_PROPORTION - 1)`.
    n / TOTAL_PROPORTION * PERSON_PROPORTION
}

/// Base-0 id of the newest auction at or before event `n` (0 before the first).
fn last_auction(n: u64) -> u64 {
    let mut epoch = n / TOTAL_PROPORTION;
    let mut offset = n % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        if epoch == 0 {
            return 0;
        }
        epoch -= 1;
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

/// Random values of one event: splitmix64 over (seed, event, draw).
struct Draws {
    state: u64,
}

impl Draws {
    fn new(seed: u64, n: u64) -> Self {
        Self {
            state: seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, bound)`; `bound` > 0.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn word(&mut self, out: &mut String, max_len: u64) {
        let len = 3 + self.below(max_len.saturating_sub(2));
        for _ in 0..len {
            out.push(char::from(b'a' + (self.below(26) as u8)));
        }
    }

    fn price(&mut self) -> i64 {
        (10f64.powf(self.unit() * 6.0) * 100.0).round() as i64
    }

    /// A recent person: one of the last `NUM_ACTIVE_PEOPLE`, or one of the next few (as in
    /// the reference, some bids name a person who does not exist yet).
    fn person_near(&mut self, n: u64) -> u64 {
        let people = last_person(n) + 1;
        let active = people.min(NUM_ACTIVE_PEOPLE);
        let pick = self.below(active + PERSON_ID_LEAD);
        people - active + pick
    }

    /// A recent auction: one of the last `NUM_IN_FLIGHT_AUCTIONS` (or a few just ahead).
    fn auction_near(&mut self, n: u64) -> u64 {
        let max = last_auction(n);
        let min = max.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
        min + self.below(max - min + 1 + AUCTION_ID_LEAD)
    }
}

/// The records this source emits: [`weir_crds::NEXMARK_COLUMNS`], a kind's own columns
/// nullable (they are null in events of the other kinds).
#[must_use]
pub fn schema() -> SchemaRef {
    let shared = ["event_type", "date_time", "extra", "event_id"];
    let fields: Vec<FieldSpec> = weir_crds::NEXMARK_COLUMNS
        .iter()
        .map(|(name, t)| FieldSpec {
            name: (*name).to_string(),
            data_type: *t,
            nullable: !shared.contains(name),
        })
        .collect();
    crate::schema::source_schema(&fields)
}

/// Builds batches of events by number.
#[derive(Debug, Clone)]
pub struct NexmarkGenerator {
    schema: SchemaRef,
    seed: u64,
    events_per_second: u64,
    /// Events in all, when bounded.
    pub events: Option<u64>,
}

impl NexmarkGenerator {
    /// A generator for `spec`, emitting `schema` (the validated Nexmark columns).
    #[must_use]
    pub fn new(spec: &NexmarkSpec, schema: SchemaRef) -> Self {
        Self {
            schema,
            seed: spec.seed,
            events_per_second: spec.events_per_second.max(1),
            events: spec.events,
        }
    }

    /// Event time of event `n`.
    #[must_use]
    pub fn time_of(&self, n: u64) -> Millis {
        let ms = u128::from(n) * 1000 / u128::from(self.events_per_second);
        BASE_TIME_MS.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// The events numbered `ids`, in that order.
    ///
    /// # Errors
    /// Arrow errors (none in practice: the columns match the schema).
    pub fn batch(&self, ids: &[u64]) -> Result<RecordBatch> {
        let mut b = Builders::new(ids.len());
        let mut text = String::new();
        for &n in ids {
            let mut r = Draws::new(self.seed, n);
            let kind = kind_of(n);
            let time = self.time_of(n);
            b.event_type.append_value(kind);
            match kind {
                PERSON => {
                    b.person_id
                        .append_value(FIRST_PERSON_ID + last_person(n) as i64);
                    text.clear();
                    text.push_str(FIRST_NAMES[r.below(FIRST_NAMES.len() as u64) as usize]);
                    text.push(' ');
                    text.push_str(LAST_NAMES[r.below(LAST_NAMES.len() as u64) as usize]);
                    b.person_name.append_value(&text);
                    text.clear();
                    r.word(&mut text, 7);
                    text.push('@');
                    r.word(&mut text, 7);
                    text.push_str(".com");
                    b.person_email.append_value(&text);
                    text.clear();
                    for g in 0..4 {
                        if g > 0 {
                            text.push(' ');
                        }
                        text.push_str(&format!("{:04}", r.below(10_000)));
                    }
                    b.person_card.append_value(&text);
                    b.person_city
                        .append_value(US_CITIES[r.below(US_CITIES.len() as u64) as usize]);
                    b.person_state
                        .append_value(US_STATES[r.below(US_STATES.len() as u64) as usize]);
                    b.auction_nulls();
                    b.bid_nulls();
                }
                AUCTION => {
                    b.person_nulls();
                    b.auction_id
                        .append_value(FIRST_AUCTION_ID + last_auction(n) as i64);
                    text.clear();
                    r.word(&mut text, 20);
                    b.auction_item.append_value(&text);
                    text.clear();
                    r.word(&mut text, 100);
                    b.auction_description.append_value(&text);
                    let initial = r.price();
                    b.auction_initial_bid.append_value(initial);
                    b.auction_reserve.append_value(initial + r.price());
                    // Within twice the time the next in-flight auctions take to arrive.
                    let ahead = NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION / AUCTION_PROPORTION;
                    let horizon = (self.time_of(n + ahead) - time).max(1) as u64;
                    b.auction_expires
                        .append_value(time + 1 + r.below(2 * horizon) as i64);
                    let seller = if r.below(HOT_SELLER_RATIO) > 0 {
                        last_person(n) / HOT_ID_STEP * HOT_ID_STEP
                    } else {
                        r.person_near(n)
                    };
                    b.auction_seller
                        .append_value(FIRST_PERSON_ID + seller as i64);
                    b.auction_category
                        .append_value(FIRST_CATEGORY_ID + r.below(NUM_CATEGORIES) as i64);
                    b.bid_nulls();
                }
                _ => {
                    b.person_nulls();
                    b.auction_nulls();
                    let auction = if r.below(HOT_AUCTION_RATIO) > 0 {
                        last_auction(n) / HOT_ID_STEP * HOT_ID_STEP
                    } else {
                        r.auction_near(n)
                    };
                    b.bid_auction
                        .append_value(FIRST_AUCTION_ID + auction as i64);
                    let bidder = if r.below(HOT_BIDDER_RATIO) > 0 {
                        last_person(n) / HOT_ID_STEP * HOT_ID_STEP + 1
                    } else {
                        r.person_near(n)
                    };
                    b.bid_bidder.append_value(FIRST_PERSON_ID + bidder as i64);
                    b.bid_price.append_value(r.price());
                    text.clear();
                    if r.below(2) > 0 {
                        let i = r.below(HOT_CHANNELS.len() as u64) as usize;
                        b.bid_channel.append_value(HOT_CHANNELS[i]);
                        text.push_str("https://www.nexmark.com/hot/item.htm?query=1&channel_id=");
                        text.push_str(&i.to_string());
                    } else {
                        let c = r.below(CHANNELS);
                        b.bid_channel.append_value(format!("channel-{c}"));
                        text.push_str("https://www.nexmark.com/");
                        for _ in 0..3 {
                            r.word(&mut text, 5);
                            text.push('/');
                        }
                        text.push_str("item.htm?query=1&channel_id=");
                        text.push_str(&c.to_string());
                    }
                    b.bid_url.append_value(&text);
                }
            }
            b.date_time.append_value(time);
            text.clear();
            r.word(&mut text, 8);
            b.extra.append_value(&text);
            b.event_id
                .append_value(i64::try_from(n).unwrap_or(i64::MAX));
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), b.finish())?)
    }
}

/// One builder per column, in the order of `NEXMARK_COLUMNS`.
struct Builders {
    event_type: Int64Builder,
    person_id: Int64Builder,
    person_name: StringBuilder,
    person_email: StringBuilder,
    person_card: StringBuilder,
    person_city: StringBuilder,
    person_state: StringBuilder,
    auction_id: Int64Builder,
    auction_item: StringBuilder,
    auction_description: StringBuilder,
    auction_initial_bid: Int64Builder,
    auction_reserve: Int64Builder,
    auction_expires: TimestampMillisecondBuilder,
    auction_seller: Int64Builder,
    auction_category: Int64Builder,
    bid_auction: Int64Builder,
    bid_bidder: Int64Builder,
    bid_price: Int64Builder,
    bid_channel: StringBuilder,
    bid_url: StringBuilder,
    date_time: TimestampMillisecondBuilder,
    extra: StringBuilder,
    event_id: Int64Builder,
}

impl Builders {
    fn new(n: usize) -> Self {
        let i = || Int64Builder::with_capacity(n);
        let s = || StringBuilder::with_capacity(n, n * 8);
        let t = || TimestampMillisecondBuilder::with_capacity(n);
        Self {
            event_type: i(),
            person_id: i(),
            person_name: s(),
            person_email: s(),
            person_card: s(),
            person_city: s(),
            person_state: s(),
            auction_id: i(),
            auction_item: s(),
            auction_description: s(),
            auction_initial_bid: i(),
            auction_reserve: i(),
            auction_expires: t(),
            auction_seller: i(),
            auction_category: i(),
            bid_auction: i(),
            bid_bidder: i(),
            bid_price: i(),
            bid_channel: s(),
            bid_url: s(),
            date_time: t(),
            extra: s(),
            event_id: i(),
        }
    }

    fn person_nulls(&mut self) {
        self.person_id.append_null();
        for s in [
            &mut self.person_name,
            &mut self.person_email,
            &mut self.person_card,
            &mut self.person_city,
            &mut self.person_state,
        ] {
            s.append_null();
        }
    }

    fn auction_nulls(&mut self) {
        self.auction_id.append_null();
        self.auction_item.append_null();
        self.auction_description.append_null();
        self.auction_initial_bid.append_null();
        self.auction_reserve.append_null();
        self.auction_expires.append_null();
        self.auction_seller.append_null();
        self.auction_category.append_null();
    }

    fn bid_nulls(&mut self) {
        self.bid_auction.append_null();
        self.bid_bidder.append_null();
        self.bid_price.append_null();
        self.bid_channel.append_null();
        self.bid_url.append_null();
    }

    fn finish(mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.event_type.finish()),
            Arc::new(self.person_id.finish()),
            Arc::new(self.person_name.finish()),
            Arc::new(self.person_email.finish()),
            Arc::new(self.person_card.finish()),
            Arc::new(self.person_city.finish()),
            Arc::new(self.person_state.finish()),
            Arc::new(self.auction_id.finish()),
            Arc::new(self.auction_item.finish()),
            Arc::new(self.auction_description.finish()),
            Arc::new(self.auction_initial_bid.finish()),
            Arc::new(self.auction_reserve.finish()),
            Arc::new(self.auction_expires.finish()),
            Arc::new(self.auction_seller.finish()),
            Arc::new(self.auction_category.finish()),
            Arc::new(self.bid_auction.finish()),
            Arc::new(self.bid_bidder.finish()),
            Arc::new(self.bid_price.finish()),
            Arc::new(self.bid_channel.finish()),
            Arc::new(self.bid_url.finish()),
            Arc::new(self.date_time.finish()),
            Arc::new(self.extra.finish()),
            Arc::new(self.event_id.finish()),
        ]
    }
}

/// A subtask's share of the events: its splits, event `i` in split `i mod splits`.
#[derive(Debug)]
pub struct NexmarkReader {
    generator: NexmarkGenerator,
    splits: CountedSplits,
}

impl NexmarkReader {
    /// Reader over `splits` (positions restored or fresh).
    #[must_use]
    pub fn new(
        generator: NexmarkGenerator,
        total_splits: u32,
        batch_size: u32,
        splits: Vec<SplitState>,
    ) -> Self {
        Self {
            generator,
            splits: CountedSplits::new(total_splits, batch_size, splits),
        }
    }
}

impl SourceReader for NexmarkReader {
    fn poll(&mut self) -> Result<Poll> {
        let Some((s, ids)) = self.splits.next_batch(self.generator.events) else {
            return Ok(Poll::Finished);
        };
        if let Some(&last) = ids.last() {
            s.max_event_time = s.max_event_time.max(self.generator.time_of(last));
        }
        Ok(Poll::Batch {
            data: self.generator.batch(&ids)?,
            side: None,
        })
    }

    fn snapshot(&self) -> Vec<SplitState> {
        self.splits.snapshot()
    }
}

#[cfg(test)]
mod tests;
