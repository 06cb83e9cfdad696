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
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
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
        // u64 while it cannot overflow (every realistic run), the same quotient as u128's.
        let ms = match n.checked_mul(1000) {
            Some(x) => u128::from(x / self.events_per_second),
            None => u128::from(n) * 1000 / u128::from(self.events_per_second),
        };
        BASE_TIME_MS.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// The events numbered `ids`, in that order.
    ///
    /// # Errors
    /// Arrow errors (none in practice: the columns match the schema).
    pub fn batch(&self, ids: &[u64]) -> Result<RecordBatch> {
        let mut c = Columns::new(ids.len());
        let mut text = String::new();
        for &n in ids {
            let mut r = Draws::new(self.seed, n);
            let kind = kind_of(n);
            let time = self.time_of(n);
            c.event_type.push(kind);
            match kind {
                PERSON => {
                    c.person_id.push(FIRST_PERSON_ID + last_person(n) as i64);
                    text.clear();
                    text.push_str(FIRST_NAMES[r.below(FIRST_NAMES.len() as u64) as usize]);
                    text.push(' ');
                    text.push_str(LAST_NAMES[r.below(LAST_NAMES.len() as u64) as usize]);
                    c.person_name.push(&text);
                    text.clear();
                    r.word(&mut text, 7);
                    text.push('@');
                    r.word(&mut text, 7);
                    text.push_str(".com");
                    c.person_email.push(&text);
                    text.clear();
                    for g in 0..4 {
                        if g > 0 {
                            text.push(' ');
                        }
                        push_four_digits(&mut text, r.below(10_000));
                    }
                    c.person_card.push(&text);
                    c.person_city
                        .push(US_CITIES[r.below(US_CITIES.len() as u64) as usize]);
                    c.person_state
                        .push(US_STATES[r.below(US_STATES.len() as u64) as usize]);
                    c.auction_absent();
                    c.bid_absent();
                }
                AUCTION => {
                    c.person_absent();
                    c.auction_id.push(FIRST_AUCTION_ID + last_auction(n) as i64);
                    text.clear();
                    r.word(&mut text, 20);
                    c.auction_item.push(&text);
                    text.clear();
                    r.word(&mut text, 100);
                    c.auction_description.push(&text);
                    let initial = r.price();
                    c.auction_initial_bid.push(initial);
                    c.auction_reserve.push(initial + r.price());
                    // Within twice the time the next in-flight auctions take to arrive.
                    let ahead = NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION / AUCTION_PROPORTION;
                    let horizon = (self.time_of(n + ahead) - time).max(1) as u64;
                    c.auction_expires
                        .push(time + 1 + r.below(2 * horizon) as i64);
                    let seller = if r.below(HOT_SELLER_RATIO) > 0 {
                        last_person(n) / HOT_ID_STEP * HOT_ID_STEP
                    } else {
                        r.person_near(n)
                    };
                    c.auction_seller.push(FIRST_PERSON_ID + seller as i64);
                    c.auction_category
                        .push(FIRST_CATEGORY_ID + r.below(NUM_CATEGORIES) as i64);
                    c.bid_absent();
                }
                _ => {
                    c.person_absent();
                    c.auction_absent();
                    let auction = if r.below(HOT_AUCTION_RATIO) > 0 {
                        last_auction(n) / HOT_ID_STEP * HOT_ID_STEP
                    } else {
                        r.auction_near(n)
                    };
                    c.bid_auction.push(FIRST_AUCTION_ID + auction as i64);
                    let bidder = if r.below(HOT_BIDDER_RATIO) > 0 {
                        last_person(n) / HOT_ID_STEP * HOT_ID_STEP + 1
                    } else {
                        r.person_near(n)
                    };
                    c.bid_bidder.push(FIRST_PERSON_ID + bidder as i64);
                    c.bid_price.push(r.price());
                    text.clear();
                    if r.below(2) > 0 {
                        let i = r.below(HOT_CHANNELS.len() as u64) as usize;
                        c.bid_channel.push(HOT_CHANNELS[i]);
                        text.push_str("https://www.nexmark.com/hot/item.htm?query=1&channel_id=");
                        push_decimal(&mut text, i as u64);
                    } else {
                        let ch = r.below(CHANNELS);
                        c.bid_channel.push_parts("channel-", ch);
                        text.push_str("https://www.nexmark.com/");
                        for _ in 0..3 {
                            r.word(&mut text, 5);
                            text.push('/');
                        }
                        text.push_str("item.htm?query=1&channel_id=");
                        push_decimal(&mut text, ch);
                    }
                    c.bid_url.push(&text);
                }
            }
            c.date_time.push(time);
            text.clear();
            r.word(&mut text, 8);
            c.extra.push(&text);
            c.event_id.push(i64::try_from(n).unwrap_or(i64::MAX));
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), c.finish()?)?)
    }
}

/// The decimal digits of `v`: `digits[start..]`.
fn decimal(mut v: u64) -> ([u8; 20], usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return (digits, start);
        }
    }
}

/// `v` in decimal, without the allocation `to_string` makes.
fn push_decimal(out: &mut String, v: u64) {
    let (digits, start) = decimal(v);
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

/// `v` (below 10 000) as four digits, zero-padded.
fn push_four_digits(out: &mut String, v: u64) {
    for div in [1000, 100, 10, 1] {
        out.push(char::from(b'0' + (v / div % 10) as u8));
    }
}

/// A string column under construction: its offsets and bytes, as Arrow lays them out.
struct Text {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
}

impl Text {
    fn new(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            offsets,
            bytes: Vec::with_capacity(bytes),
        }
    }

    fn end(&mut self) {
        // A batch holds at most a few thousand events of under 200 bytes each.
        self.offsets
            .push(i32::try_from(self.bytes.len()).unwrap_or(i32::MAX));
    }

    fn push(&mut self, s: &str) {
        self.bytes.extend_from_slice(s.as_bytes());
        self.end();
    }

    /// `prefix` then `v` in decimal.
    fn push_parts(&mut self, prefix: &str, v: u64) {
        let (digits, start) = decimal(v);
        self.bytes.extend_from_slice(prefix.as_bytes());
        self.bytes.extend_from_slice(&digits[start..]);
        self.end();
    }

    /// A row of another kind: no bytes; the kind's validity makes it null.
    fn absent(&mut self) {
        self.end();
    }

    fn finish(self, nulls: Option<NullBuffer>) -> Result<ArrayRef> {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        Ok(Arc::new(StringArray::try_new(
            offsets,
            Buffer::from_vec(self.bytes),
            nulls,
        )?))
    }
}

/// One column per field of `NEXMARK_COLUMNS`, as plain vectors. A kind's own columns hold a
/// placeholder (0, no bytes) in the other kinds' events and share one validity bitmap, made
/// once per batch from the event types: appending a null to each of 16 Arrow builders for
/// every event took a sixth of q0's time.
struct Columns {
    event_type: Vec<i64>,
    person_id: Vec<i64>,
    person_name: Text,
    person_email: Text,
    person_card: Text,
    person_city: Text,
    person_state: Text,
    auction_id: Vec<i64>,
    auction_item: Text,
    auction_description: Text,
    auction_initial_bid: Vec<i64>,
    auction_reserve: Vec<i64>,
    auction_expires: Vec<i64>,
    auction_seller: Vec<i64>,
    auction_category: Vec<i64>,
    bid_auction: Vec<i64>,
    bid_bidder: Vec<i64>,
    bid_price: Vec<i64>,
    bid_channel: Text,
    bid_url: Text,
    date_time: Vec<i64>,
    extra: Text,
    event_id: Vec<i64>,
}

impl Columns {
    fn new(n: usize) -> Self {
        let i = || Vec::with_capacity(n);
        // Bytes per row of the kind, times that kind's share of the events (1, 3 and 46 of 50).
        let person = |b: usize| Text::new(n, n * b / 50 + 16);
        let auction = |b: usize| Text::new(n, n * b * 3 / 50 + 16);
        let bid = |b: usize| Text::new(n, n * b * 46 / 50 + 16);
        Self {
            event_type: i(),
            person_id: i(),
            person_name: person(16),
            person_email: person(20),
            person_card: person(19),
            person_city: person(12),
            person_state: person(2),
            auction_id: i(),
            auction_item: auction(20),
            auction_description: auction(100),
            auction_initial_bid: i(),
            auction_reserve: i(),
            auction_expires: i(),
            auction_seller: i(),
            auction_category: i(),
            bid_auction: i(),
            bid_bidder: i(),
            bid_price: i(),
            bid_channel: bid(14),
            bid_url: bid(80),
            date_time: i(),
            extra: Text::new(n, n * 8),
            event_id: i(),
        }
    }

    fn person_absent(&mut self) {
        self.person_id.push(0);
        for t in [
            &mut self.person_name,
            &mut self.person_email,
            &mut self.person_card,
            &mut self.person_city,
            &mut self.person_state,
        ] {
            t.absent();
        }
    }

    fn auction_absent(&mut self) {
        for v in [
            &mut self.auction_id,
            &mut self.auction_initial_bid,
            &mut self.auction_reserve,
            &mut self.auction_expires,
            &mut self.auction_seller,
            &mut self.auction_category,
        ] {
            v.push(0);
        }
        self.auction_item.absent();
        self.auction_description.absent();
    }

    fn bid_absent(&mut self) {
        for v in [
            &mut self.bid_auction,
            &mut self.bid_bidder,
            &mut self.bid_price,
        ] {
            v.push(0);
        }
        self.bid_channel.absent();
        self.bid_url.absent();
    }

    fn finish(self) -> Result<Vec<ArrayRef>> {
        let kinds = &self.event_type;
        let of = |k: i64| {
            Some(NullBuffer::new(BooleanBuffer::collect_bool(
                kinds.len(),
                |i| kinds[i] == k,
            )))
        };
        let (person, auction, bid) = (of(PERSON), of(AUCTION), of(BID));
        let int = |v: Vec<i64>, nulls: &Option<NullBuffer>| -> ArrayRef {
            Arc::new(Int64Array::new(ScalarBuffer::from(v), nulls.clone()))
        };
        let time = |v: Vec<i64>, nulls: &Option<NullBuffer>| -> ArrayRef {
            Arc::new(TimestampMillisecondArray::new(
                ScalarBuffer::from(v),
                nulls.clone(),
            ))
        };
        Ok(vec![
            int(self.event_type, &None),
            int(self.person_id, &person),
            self.person_name.finish(person.clone())?,
            self.person_email.finish(person.clone())?,
            self.person_card.finish(person.clone())?,
            self.person_city.finish(person.clone())?,
            self.person_state.finish(person.clone())?,
            int(self.auction_id, &auction),
            self.auction_item.finish(auction.clone())?,
            self.auction_description.finish(auction.clone())?,
            int(self.auction_initial_bid, &auction),
            int(self.auction_reserve, &auction),
            time(self.auction_expires, &auction),
            int(self.auction_seller, &auction),
            int(self.auction_category, &auction),
            int(self.bid_auction, &bid),
            int(self.bid_bidder, &bid),
            int(self.bid_price, &bid),
            self.bid_channel.finish(bid.clone())?,
            self.bid_url.finish(bid.clone())?,
            time(self.date_time, &None),
            self.extra.finish(None)?,
            int(self.event_id, &None),
        ])
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
