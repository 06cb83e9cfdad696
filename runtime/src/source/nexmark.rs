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
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray, new_null_array,
};
use datafusion::arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
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

    /// A word of 3 to `max_len` lowercase letters. Up to 13 letters come from one draw, as
    /// the base-26 digits of its fraction, rather than a draw and a division per letter.
    fn word(&mut self, out: &mut Vec<u8>, max_len: u64) {
        let mut left = 3 + self.below(max_len.saturating_sub(2));
        while left > 0 {
            let mut x = self.next();
            for _ in 0..left.min(13) {
                let t = u128::from(x) * 26;
                out.push(b'a' + (t >> 64) as u8);
                x = t as u64;
            }
            left = left.saturating_sub(13);
        }
    }

    /// The draws [`Self::word`] makes, without the word: a column nothing reads still takes
    /// them, so that the columns after it in the event hold the same values.
    fn skip_word(&mut self, max_len: u64) {
        let mut left = 3 + self.below(max_len.saturating_sub(2));
        while left > 0 {
            self.next();
            left = left.saturating_sub(13);
        }
    }

    /// The reference's `round(10^(6u) * 100)`, as `e^(6u ln 10)`: the same distribution for
    /// a third of the time `powf` takes; positive, so adding a half and truncating rounds.
    /// When nothing reads it (`needed` false) only its draw is made: the exponential is a
    /// tenth of an event's cost.
    fn price(&mut self, needed: bool) -> i64 {
        let u = self.unit();
        if !needed {
            return 0;
        }
        ((u * 6.0 * std::f64::consts::LN_10).exp() * 100.0 + 0.5) as i64
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
    /// Which columns to write, by position; the others are left null or empty.
    written: [bool; COLUMNS],
}

/// Columns of an event ([`weir_crds::NEXMARK_COLUMNS`]).
const COLUMNS: usize = weir_crds::NEXMARK_COLUMNS.len();

impl NexmarkGenerator {
    /// A generator for `spec`, emitting `schema` (the validated Nexmark columns).
    #[must_use]
    pub fn new(spec: &NexmarkSpec, schema: SchemaRef) -> Self {
        Self {
            schema,
            seed: spec.seed,
            events_per_second: spec.events_per_second.max(1),
            events: spec.events,
            written: [true; COLUMNS],
        }
    }

    /// Only `columns` (positions) are read after the source: a kind's own columns not among
    /// them are null throughout, and `extra` empty. Their random values are still drawn
    /// where a later column depends on the draws, so the columns read hold what they would
    /// have. Writing strings is most of what an event costs, and Arrow checks every offset
    /// of a string column it is given.
    pub fn read_only(&mut self, columns: &[usize]) {
        for (i, w) in self.written.iter_mut().enumerate() {
            *w = columns.contains(&i);
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
        let mut c = Columns::new(ids.len(), &self.written);
        for (row, &n) in ids.iter().enumerate() {
            let mut r = Draws::new(self.seed, n);
            let kind = kind_of(n);
            let time = self.time_of(n);
            c.event_type.push(kind);
            match kind {
                PERSON => {
                    c.person_id
                        .set(row, FIRST_PERSON_ID + last_person(n) as i64);
                    let name = &mut c.person_name;
                    name.part(FIRST_NAMES[r.below(FIRST_NAMES.len() as u64) as usize]);
                    name.part(" ");
                    name.push(row, LAST_NAMES[r.below(LAST_NAMES.len() as u64) as usize]);
                    let email = &mut c.person_email;
                    email.word(&mut r, 7);
                    email.part("@");
                    email.word(&mut r, 7);
                    email.push(row, ".com");
                    let card = &mut c.person_card;
                    for g in 0..4 {
                        if g > 0 {
                            card.part(" ");
                        }
                        card.four_digits(r.below(10_000));
                    }
                    card.end(row);
                    c.person_city
                        .push(row, US_CITIES[r.below(US_CITIES.len() as u64) as usize]);
                    c.person_state
                        .push(row, US_STATES[r.below(US_STATES.len() as u64) as usize]);
                }
                AUCTION => {
                    c.auction_id
                        .set(row, FIRST_AUCTION_ID + last_auction(n) as i64);
                    c.auction_item.word(&mut r, 20);
                    c.auction_item.end(row);
                    c.auction_description.word(&mut r, 100);
                    c.auction_description.end(row);
                    let reserve = c.auction_reserve.written();
                    let initial = r.price(reserve || c.auction_initial_bid.written());
                    c.auction_initial_bid.set(row, initial);
                    c.auction_reserve.set(row, initial + r.price(reserve));
                    // Within twice the time the next in-flight auctions take to arrive.
                    let ahead = NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION / AUCTION_PROPORTION;
                    let horizon = (self.time_of(n + ahead) - time).max(1) as u64;
                    c.auction_expires
                        .set(row, time + 1 + r.below(2 * horizon) as i64);
                    let seller = if r.below(HOT_SELLER_RATIO) > 0 {
                        last_person(n) / HOT_ID_STEP * HOT_ID_STEP
                    } else {
                        r.person_near(n)
                    };
                    c.auction_seller.set(row, FIRST_PERSON_ID + seller as i64);
                    c.auction_category
                        .set(row, FIRST_CATEGORY_ID + r.below(NUM_CATEGORIES) as i64);
                }
                _ => {
                    let auction = if r.below(HOT_AUCTION_RATIO) > 0 {
                        last_auction(n) / HOT_ID_STEP * HOT_ID_STEP
                    } else {
                        r.auction_near(n)
                    };
                    c.bid_auction.set(row, FIRST_AUCTION_ID + auction as i64);
                    let bidder = if r.below(HOT_BIDDER_RATIO) > 0 {
                        last_person(n) / HOT_ID_STEP * HOT_ID_STEP + 1
                    } else {
                        r.person_near(n)
                    };
                    c.bid_bidder.set(row, FIRST_PERSON_ID + bidder as i64);
                    c.bid_price.set(row, r.price(c.bid_price.written()));
                    let url = &mut c.bid_url;
                    // The URL's words are the bid's last draws but `extra`'s: when neither is
                    // read they need not be made (nor skipped).
                    let last = !url.written && !c.extra.written;
                    if r.below(2) > 0 {
                        let i = r.below(HOT_CHANNELS.len() as u64) as usize;
                        c.bid_channel.push(row, HOT_CHANNELS[i]);
                        url.part("https://www.nexmark.com/hot/item.htm?query=1&channel_id=");
                        url.decimal(i as u64);
                    } else {
                        let ch = r.below(CHANNELS);
                        c.bid_channel.part("channel-");
                        c.bid_channel.decimal(ch);
                        c.bid_channel.end(row);
                        url.part("https://www.nexmark.com/");
                        for _ in 0..if last { 0 } else { 3 } {
                            url.word(&mut r, 5);
                            url.part("/");
                        }
                        url.part("item.htm?query=1&channel_id=");
                        url.decimal(ch);
                    }
                    url.end(row);
                }
            }
            c.date_time.push(time);
            // The event's last draws: none at all when nothing reads them.
            if c.extra.written {
                c.extra.word(&mut r, 8);
                c.extra.end(row);
            }
            c.event_id.push(i64::try_from(n).unwrap_or(i64::MAX));
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), c.finish()?)?)
    }
}

/// A string column under construction: its offsets and bytes, as Arrow lays them out.
/// Rows of the other kinds are empty, written when the next value ends (or at the finish),
/// so they cost nothing per event. A column nothing reads is not written at all: null in
/// every row when it may be (a kind's own columns), else empty, so that Arrow need not check
/// an offset per row of a column nobody looks at.
struct Text {
    written: bool,
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    /// Where the last value ended.
    last: i32,
}

impl Text {
    fn new(rows: usize, bytes: usize, written: bool) -> Self {
        let mut offsets = Vec::with_capacity(if written { rows + 1 } else { 1 });
        offsets.push(0);
        Self {
            written,
            offsets,
            bytes: Vec::with_capacity(if written { bytes } else { 0 }),
            last: 0,
        }
    }

    /// Ends the value of row `row`, after the empty rows since the last value.
    fn end(&mut self, row: usize) {
        if !self.written {
            return;
        }
        self.offsets.resize(row + 1, self.last);
        // A batch holds at most a few thousand events of under 200 bytes each.
        self.last = i32::try_from(self.bytes.len()).unwrap_or(i32::MAX);
        self.offsets.push(self.last);
    }

    /// Row `row`'s value, whole.
    fn push(&mut self, row: usize, s: &str) {
        self.part(s);
        self.end(row);
    }

    /// Part of the value being written (which [`Self::end`] ends).
    fn part(&mut self, s: &str) {
        if self.written {
            self.bytes.extend_from_slice(s.as_bytes());
        }
    }

    /// A word of `r`'s, as part of the value ([`Draws::word`]).
    fn word(&mut self, r: &mut Draws, max_len: u64) {
        if self.written {
            r.word(&mut self.bytes, max_len);
        } else {
            r.skip_word(max_len);
        }
    }

    /// `v` in decimal, as part of the value, without the allocation `to_string` makes.
    fn decimal(&mut self, v: u64) {
        if self.written {
            self.part(itoa::Buffer::new().format(v));
        }
    }

    /// `v` (below 10 000) as four digits, zero-padded, as part of the value.
    fn four_digits(&mut self, v: u64) {
        if !self.written {
            return;
        }
        for div in [1000, 100, 10, 1] {
            self.bytes.push(b'0' + (v / div % 10) as u8);
        }
    }

    /// The column of `rows` rows, the last ones empty if no value ended there.
    fn finish(mut self, rows: usize, nulls: Option<NullBuffer>) -> Result<ArrayRef> {
        if !self.written && nulls.is_some() {
            return Ok(new_null_array(&DataType::Utf8, rows));
        }
        self.offsets.resize(rows + 1, self.last);
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        Ok(Arc::new(StringArray::try_new(
            offsets,
            Buffer::from_vec(self.bytes),
            nulls,
        )?))
    }
}

/// An integer column of one kind: zero in the other kinds' rows (null by the kind's
/// validity), set by row. Empty when nothing reads it: the column is then null throughout.
struct Slots(Vec<i64>);

impl Slots {
    fn set(&mut self, row: usize, v: i64) {
        if let Some(slot) = self.0.get_mut(row) {
            *slot = v;
        }
    }

    /// Whether something reads the column.
    fn written(&self) -> bool {
        !self.0.is_empty()
    }
}

/// One column per field of `NEXMARK_COLUMNS`, as plain vectors. A kind's own columns hold a
/// placeholder (0, no bytes) in the other kinds' events and share one validity bitmap, made
/// once per batch from the event types: appending a null to each of 16 Arrow builders for
/// every event took a sixth of q0's time.
struct Columns {
    event_type: Vec<i64>,
    person_id: Slots,
    person_name: Text,
    person_email: Text,
    person_card: Text,
    person_city: Text,
    person_state: Text,
    auction_id: Slots,
    auction_item: Text,
    auction_description: Text,
    auction_initial_bid: Slots,
    auction_reserve: Slots,
    auction_expires: Slots,
    auction_seller: Slots,
    auction_category: Slots,
    bid_auction: Slots,
    bid_bidder: Slots,
    bid_price: Slots,
    bid_channel: Text,
    bid_url: Text,
    date_time: Vec<i64>,
    extra: Text,
    event_id: Vec<i64>,
}

impl Columns {
    /// Columns for `n` events, writing the columns `written` (by position) marks.
    fn new(n: usize, written: &[bool; COLUMNS]) -> Self {
        let i = || Vec::with_capacity(n);
        // Whether the column of that name is written (a name not in the schema: yes).
        let on = |name: &str| {
            weir_crds::NEXMARK_COLUMNS
                .iter()
                .position(|(c, _)| *c == name)
                .is_none_or(|i| written[i])
        };
        let slots = |name: &str| Slots(if on(name) { vec![0; n] } else { Vec::new() });
        // Bytes per row of the kind, times that kind's share of the events (1, 3 and 46 of 50).
        let person = |b: usize, name: &str| Text::new(n, n * b / 50 + 16, on(name));
        let auction = |b: usize, name: &str| Text::new(n, n * b * 3 / 50 + 16, on(name));
        let bid = |b: usize, name: &str| Text::new(n, n * b * 46 / 50 + 16, on(name));
        Self {
            event_type: i(),
            person_id: slots("person_id"),
            person_name: person(16, "person_name"),
            person_email: person(20, "person_email_address"),
            person_card: person(19, "person_credit_card"),
            person_city: person(12, "person_city"),
            person_state: person(2, "person_state"),
            auction_id: slots("auction_id"),
            auction_item: auction(20, "auction_item_name"),
            auction_description: auction(100, "auction_description"),
            auction_initial_bid: slots("auction_initial_bid"),
            auction_reserve: slots("auction_reserve"),
            auction_expires: slots("auction_expires"),
            auction_seller: slots("auction_seller"),
            auction_category: slots("auction_category"),
            bid_auction: slots("bid_auction"),
            bid_bidder: slots("bid_bidder"),
            bid_price: slots("bid_price"),
            bid_channel: bid(14, "bid_channel"),
            bid_url: bid(80, "bid_url"),
            date_time: i(),
            extra: Text::new(n, n * 8, on("extra")),
            event_id: i(),
        }
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
        let rows = kinds.len();
        // A kind's column nothing reads was left empty ([`Slots`]): null throughout.
        let int = |v: Vec<i64>, nulls: &Option<NullBuffer>| -> ArrayRef {
            if v.len() != rows {
                return new_null_array(&DataType::Int64, rows);
            }
            Arc::new(Int64Array::new(ScalarBuffer::from(v), nulls.clone()))
        };
        let time = |v: Vec<i64>, nulls: &Option<NullBuffer>| -> ArrayRef {
            if v.len() != rows {
                return new_null_array(&crate::schema::timestamp_type(), rows);
            }
            Arc::new(TimestampMillisecondArray::new(
                ScalarBuffer::from(v),
                nulls.clone(),
            ))
        };
        Ok(vec![
            int(self.event_type, &None),
            int(self.person_id.0, &person),
            self.person_name.finish(rows, person.clone())?,
            self.person_email.finish(rows, person.clone())?,
            self.person_card.finish(rows, person.clone())?,
            self.person_city.finish(rows, person.clone())?,
            self.person_state.finish(rows, person.clone())?,
            int(self.auction_id.0, &auction),
            self.auction_item.finish(rows, auction.clone())?,
            self.auction_description.finish(rows, auction.clone())?,
            int(self.auction_initial_bid.0, &auction),
            int(self.auction_reserve.0, &auction),
            time(self.auction_expires.0, &auction),
            int(self.auction_seller.0, &auction),
            int(self.auction_category.0, &auction),
            int(self.bid_auction.0, &bid),
            int(self.bid_bidder.0, &bid),
            int(self.bid_price.0, &bid),
            self.bid_channel.finish(rows, bid.clone())?,
            self.bid_url.finish(rows, bid.clone())?,
            time(self.date_time, &None),
            self.extra.finish(rows, None)?,
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

    fn read_only(&mut self, columns: &[usize]) {
        self.generator.read_only(columns);
    }
}

#[cfg(test)]
mod tests;
