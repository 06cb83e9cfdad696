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
//! from a counter-based random function of (seed, event number, field) instead of Java's
//! `Random`, so event `i` is the same at any parallelism and after any restore without
//! replaying the events before it, and a field nothing reads need not be drawn; prices come
//! from a table and a series rather than the C library's `pow`, so they are the same on every
//! machine; and `extra` is short (the reference pads events to 100-500 bytes), which makes the
//! generator cheaper, not the queries different.

use std::cell::OnceCell;
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
use crate::operator::StandIns;

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

/// Where each field draws (see [`Draws::at`]), per kind. A field has slots of its own, so a
/// field nothing reads costs nothing, not even its draws, and the others keep their values. A
/// word of up to `m` letters takes `1 + ceil(m / 8)` slots (its length, then 8 letters a
/// draw).
mod slot {
    // A person's.
    pub const FIRST_NAME: u64 = 0;
    pub const LAST_NAME: u64 = 1;
    /// Two words of up to 7 letters: 2..=5.
    pub const EMAIL: u64 = 2;
    /// Four groups of digits: 6..=9.
    pub const CARD: u64 = 6;
    pub const CITY: u64 = 10;
    pub const STATE: u64 = 11;
    // An auction's.
    /// Up to 20 letters: 0..=3.
    pub const ITEM: u64 = 0;
    /// Up to 100 letters: 4..=17.
    pub const DESCRIPTION: u64 = 4;
    pub const INITIAL_BID: u64 = 18;
    pub const RESERVE: u64 = 19;
    pub const EXPIRES: u64 = 20;
    pub const SELLER_HOT: u64 = 21;
    pub const SELLER: u64 = 22;
    pub const CATEGORY: u64 = 23;
    // A bid's.
    pub const AUCTION_HOT: u64 = 0;
    pub const AUCTION: u64 = 1;
    pub const BIDDER_HOT: u64 = 2;
    pub const BIDDER: u64 = 3;
    pub const PRICE: u64 = 4;
    pub const CHANNEL_HOT: u64 = 5;
    pub const CHANNEL: u64 = 6;
    /// Three words of up to 5 letters: 7..=12.
    pub const URL: u64 = 7;
    // Every kind's.
    /// Up to 8 letters: 30..=31.
    pub const EXTRA: u64 = 30;
}

/// Spreads event numbers: an odd multiplier, so that distinct events start far apart.
const EVENT_STEP: u64 = 0x9E37_79B9_7F4A_7C15;
/// wyrand's increment and mixing constant.
const SLOT_STEP: u64 = 0xA076_1D64_78BD_642F;
const MIX: u64 = 0xE703_7ED1_A0B4_28DB;

/// Random values of one event: draw `slot` of event `n` is wyrand's output at
/// `(seed ^ n)·φ + (slot + 1)·step`, a function of (seed, event, slot) alone. Event numbers
/// and slots step by different multipliers so that one event's slots are not the next one's
/// (with a shared step and seed 0, slot 1 of event `n` would be slot 0 of event `n + 1`).
#[derive(Clone, Copy)]
struct Draws {
    base: u64,
}

impl Draws {
    fn new(seed: u64, n: u64) -> Self {
        Self {
            base: (seed ^ n).wrapping_mul(EVENT_STEP),
        }
    }

    /// One 64×64-bit product, its halves folded (wyrand's mix): one multiplication where
    /// splitmix64 makes two, and no shifts.
    fn at(self, slot: u64) -> u64 {
        let x = self.base.wrapping_add((slot + 1).wrapping_mul(SLOT_STEP));
        let p = u128::from(x) * u128::from(x ^ MIX);
        (p >> 64) as u64 ^ p as u64
    }

    /// Uniform in `[0, bound)`: the high word of draw × `bound`, a multiplication where `%`
    /// would divide (the divisions were about a tenth of the generator's time).
    fn below(self, slot: u64, bound: u64) -> u64 {
        ((u128::from(self.at(slot)) * u128::from(bound)) >> 64) as u64
    }

    /// A word of 3 to `max_len` lowercase letters: its length from `slot`, then eight
    /// letters from each slot after it, one per byte of the draw (`b·26/256`: each letter 9
    /// or 10 chances in 256). The eight are made and stored at once and the word cut to its
    /// length, so no loop runs per letter.
    fn word(self, slot: u64, out: &mut Vec<u8>, max_len: u64) {
        let len = 3 + self.below(slot, max_len.saturating_sub(2)) as usize;
        let start = out.len();
        for s in 0..len.div_ceil(8) as u64 {
            let letters = self
                .at(slot + 1 + s)
                .to_le_bytes()
                .map(|b| b'a' + ((u16::from(b) * 26) >> 8) as u8);
            out.extend_from_slice(&letters);
        }
        out.truncate(start + len);
    }

    /// A price in cents, `10^(6u)` dollars for a uniform `u` ([`price_of`]).
    fn price(self, slot: u64) -> i64 {
        price_of(self.at(slot))
    }

    /// A recent person: one of the last `NUM_ACTIVE_PEOPLE`, or one of the next few (as in
    /// the reference, some bids name a person who does not exist yet).
    fn person_near(self, slot: u64, n: u64) -> u64 {
        let people = last_person(n) + 1;
        let active = people.min(NUM_ACTIVE_PEOPLE);
        let pick = self.below(slot, active + PERSON_ID_LEAD);
        people - active + pick
    }

    /// A recent auction: one of the last `NUM_IN_FLIGHT_AUCTIONS` (or a few just ahead).
    fn auction_near(self, slot: u64, n: u64) -> u64 {
        let max = last_auction(n);
        let min = max.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
        min + self.below(slot, max - min + 1 + AUCTION_ID_LEAD)
    }
}

/// A price's step: `10^6` in [`PRICE_STEPS`] steps, as an exponent of `e`.
const PRICE_STEP: f64 = 6.0 * std::f64::consts::LN_10 / PRICE_STEPS as f64;
const PRICE_STEPS: usize = 1024;

/// `100 · e^(i · PRICE_STEP)` (cents) for each step `i`, computed when compiling from `e^x`'s
/// series, whose terms are all positive.
const PRICE_TABLE: [f64; PRICE_STEPS] = {
    let mut t = [0.0; PRICE_STEPS];
    let mut i = 0;
    while i < PRICE_STEPS {
        let x = i as f64 * PRICE_STEP;
        let (mut sum, mut term, mut k) = (1.0, 1.0, 1);
        while k < 90 {
            term = term * x / k as f64;
            sum += term;
            k += 1;
        }
        t[i] = 100.0 * sum;
        i += 1;
    }
    t
};

/// The reference's `round(10^(6u) · 100)` of the 53-bit fraction `u` of `draw`: its top 10
/// bits pick a step of [`PRICE_TABLE`], and four terms of a series give `e^(PRICE_STEP · f)`
/// for the 43 bits below (relative error under 10^-11). It costs a fraction of the C
/// library's `exp`, and it is only IEEE arithmetic, so that prices are the same on every
/// machine and C library.
fn price_of(draw: u64) -> i64 {
    let step = (draw >> 54) as usize;
    let t = ((draw >> 11) & ((1 << 43) - 1)) as i64 as f64 * (PRICE_STEP / (1u64 << 43) as f64);
    // `1 + t + t²/2 + t³/6 + t⁴/24`, in two halves that do not wait for each other.
    let t2 = t * t;
    let e = (1.0 + t) + t2 * ((0.5 + t * (1.0 / 6.0)) + t2 * (1.0 / 24.0));
    (PRICE_TABLE[step] * e + 0.5) as i64
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
    /// What fills the columns nothing reads (see [`crate::operator::StandIns`]).
    stand_ins: StandIns,
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
            stand_ins: StandIns::default(),
        }
    }

    /// Only `columns` (positions) are read after the source: a kind's own columns not among
    /// them are null throughout, and `extra` empty. Each field draws from slots of its own,
    /// so the columns read hold what they would have and the others are not drawn at all.
    /// Writing strings is most of what an event costs, and Arrow checks every offset of a
    /// string column it is given.
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
    pub fn batch(&mut self, ids: &[u64]) -> Result<RecordBatch> {
        let mut c = Columns::new(ids.len(), &self.written);
        for (row, &n) in ids.iter().enumerate() {
            let r = Draws::new(self.seed, n);
            let kind = kind_of(n);
            let time = self.time_of(n);
            c.event_type.push(kind);
            match kind {
                PERSON => c.person(row, n, r),
                AUCTION => {
                    // Within twice the time the next in-flight auctions take to arrive.
                    let expires = c.auction_expires.written().then(|| {
                        let ahead = NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION / AUCTION_PROPORTION;
                        let horizon = (self.time_of(n + ahead) - time).max(1) as u64;
                        time + 1 + r.below(slot::EXPIRES, 2 * horizon) as i64
                    });
                    c.auction(row, n, r, expires);
                }
                _ => c.bid(row, n, r),
            }
            c.date_time.push(time);
            c.extra.word(r, slot::EXTRA, 8);
            c.extra.end(row);
            c.event_id.push(i64::try_from(n).unwrap_or(i64::MAX));
        }
        // A column nothing reads is a stand-in: null for a kind's own (nullable) column,
        // empty for `extra`.
        let columns = c
            .finish()?
            .into_iter()
            .enumerate()
            .map(|(i, column)| match column {
                Some(column) => Ok(column),
                None => self.stand_ins.get(i, self.schema.field(i), ids.len()),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// A kind's validity, made when first asked for: `None` for a column every event has.
type Validity<'a> = Option<&'a dyn Fn() -> NullBuffer>;

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

    /// A word of `r`'s from `slot`, as part of the value ([`Draws::word`]).
    fn word(&mut self, r: Draws, slot: u64, max_len: u64) {
        if self.written {
            r.word(slot, &mut self.bytes, max_len);
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

    /// The column of `rows` rows, the last ones empty if no value ended there: with the
    /// kind's validity for a kind's own column (`own`), else valid throughout. `None` when
    /// nothing reads it.
    fn finish(mut self, rows: usize, own: Validity<'_>) -> Result<Option<ArrayRef>> {
        if !self.written {
            return Ok(None);
        }
        self.offsets.resize(rows + 1, self.last);
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        Ok(Some(Arc::new(StringArray::try_new(
            offsets,
            Buffer::from_vec(self.bytes),
            own.map(|nulls| nulls()),
        )?)))
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

    /// Person `n`'s own columns, in row `row`.
    fn person(&mut self, row: usize, n: u64, r: Draws) {
        self.person_id
            .set(row, FIRST_PERSON_ID + last_person(n) as i64);
        let pick = |slot, of: &[&'static str]| of[r.below(slot, of.len() as u64) as usize];
        let name = &mut self.person_name;
        if name.written {
            name.part(pick(slot::FIRST_NAME, &FIRST_NAMES));
            name.part(" ");
            name.push(row, pick(slot::LAST_NAME, &LAST_NAMES));
        }
        let email = &mut self.person_email;
        if email.written {
            email.word(r, slot::EMAIL, 7);
            email.part("@");
            email.word(r, slot::EMAIL + 2, 7);
            email.push(row, ".com");
        }
        let card = &mut self.person_card;
        if card.written {
            for g in 0..4 {
                if g > 0 {
                    card.part(" ");
                }
                card.four_digits(r.below(slot::CARD + g, 10_000));
            }
            card.end(row);
        }
        if self.person_city.written {
            self.person_city.push(row, pick(slot::CITY, &US_CITIES));
        }
        if self.person_state.written {
            self.person_state.push(row, pick(slot::STATE, &US_STATES));
        }
    }

    /// Auction `n`'s own columns, in row `row`, with its expiry if it is read.
    fn auction(&mut self, row: usize, n: u64, r: Draws, expires: Option<Millis>) {
        self.auction_id
            .set(row, FIRST_AUCTION_ID + last_auction(n) as i64);
        self.auction_item.word(r, slot::ITEM, 20);
        self.auction_item.end(row);
        self.auction_description.word(r, slot::DESCRIPTION, 100);
        self.auction_description.end(row);
        let reserve = self.auction_reserve.written();
        if reserve || self.auction_initial_bid.written() {
            let initial = r.price(slot::INITIAL_BID);
            self.auction_initial_bid.set(row, initial);
            if reserve {
                self.auction_reserve
                    .set(row, initial + r.price(slot::RESERVE));
            }
        }
        if let Some(t) = expires {
            self.auction_expires.set(row, t);
        }
        if self.auction_seller.written() {
            let seller = if r.below(slot::SELLER_HOT, HOT_SELLER_RATIO) > 0 {
                last_person(n) / HOT_ID_STEP * HOT_ID_STEP
            } else {
                r.person_near(slot::SELLER, n)
            };
            self.auction_seller
                .set(row, FIRST_PERSON_ID + seller as i64);
        }
        if self.auction_category.written() {
            let category = r.below(slot::CATEGORY, NUM_CATEGORIES);
            self.auction_category
                .set(row, FIRST_CATEGORY_ID + category as i64);
        }
    }

    /// Bid `n`'s own columns, in row `row`.
    fn bid(&mut self, row: usize, n: u64, r: Draws) {
        if self.bid_auction.written() {
            let auction = if r.below(slot::AUCTION_HOT, HOT_AUCTION_RATIO) > 0 {
                last_auction(n) / HOT_ID_STEP * HOT_ID_STEP
            } else {
                r.auction_near(slot::AUCTION, n)
            };
            self.bid_auction.set(row, FIRST_AUCTION_ID + auction as i64);
        }
        if self.bid_bidder.written() {
            let bidder = if r.below(slot::BIDDER_HOT, HOT_BIDDER_RATIO) > 0 {
                last_person(n) / HOT_ID_STEP * HOT_ID_STEP + 1
            } else {
                r.person_near(slot::BIDDER, n)
            };
            self.bid_bidder.set(row, FIRST_PERSON_ID + bidder as i64);
        }
        if self.bid_price.written() {
            self.bid_price.set(row, r.price(slot::PRICE));
        }
        let (channel, url) = (&mut self.bid_channel, &mut self.bid_url);
        if !channel.written && !url.written {
            return;
        }
        if r.below(slot::CHANNEL_HOT, 2) > 0 {
            let i = r.below(slot::CHANNEL, HOT_CHANNELS.len() as u64) as usize;
            channel.push(row, HOT_CHANNELS[i]);
            url.part("https://www.nexmark.com/hot/item.htm?query=1&channel_id=");
            url.decimal(i as u64);
        } else {
            let ch = r.below(slot::CHANNEL, CHANNELS);
            channel.part("channel-");
            channel.decimal(ch);
            channel.end(row);
            url.part("https://www.nexmark.com/");
            for w in 0..3 {
                url.word(r, slot::URL + 2 * w, 5);
                url.part("/");
            }
            url.part("item.htm?query=1&channel_id=");
            url.decimal(ch);
        }
        url.end(row);
    }

    /// The columns, in [`weir_crds::NEXMARK_COLUMNS`]' order; `None` for each nothing reads.
    fn finish(self) -> Result<Vec<Option<ArrayRef>>> {
        let event_type = Int64Array::new(ScalarBuffer::from(self.event_type), None);
        let kinds = event_type.values();
        let rows = kinds.len();
        // Each kind's validity, made only if one of its columns is read.
        let validity = |cell: &OnceCell<NullBuffer>, k: i64| {
            cell.get_or_init(|| {
                NullBuffer::new(BooleanBuffer::collect_bool(rows, |i| kinds[i] == k))
            })
            .clone()
        };
        let (p, a, b) = (OnceCell::new(), OnceCell::new(), OnceCell::new());
        let person: &dyn Fn() -> NullBuffer = &|| validity(&p, PERSON);
        let auction: &dyn Fn() -> NullBuffer = &|| validity(&a, AUCTION);
        let bid: &dyn Fn() -> NullBuffer = &|| validity(&b, BID);
        // A kind's column nothing reads was left empty ([`Slots`]).
        let int = |v: Vec<i64>, own: Validity<'_>| -> Option<ArrayRef> {
            (v.len() == rows).then(|| {
                Arc::new(Int64Array::new(ScalarBuffer::from(v), own.map(|f| f()))) as ArrayRef
            })
        };
        let time = |v: Vec<i64>, own: Validity<'_>| -> Option<ArrayRef> {
            (v.len() == rows).then(|| {
                Arc::new(TimestampMillisecondArray::new(
                    ScalarBuffer::from(v),
                    own.map(|f| f()),
                )) as ArrayRef
            })
        };
        Ok(vec![
            Some(Arc::new(event_type.clone())),
            int(self.person_id.0, Some(person)),
            self.person_name.finish(rows, Some(person))?,
            self.person_email.finish(rows, Some(person))?,
            self.person_card.finish(rows, Some(person))?,
            self.person_city.finish(rows, Some(person))?,
            self.person_state.finish(rows, Some(person))?,
            int(self.auction_id.0, Some(auction)),
            self.auction_item.finish(rows, Some(auction))?,
            self.auction_description.finish(rows, Some(auction))?,
            int(self.auction_initial_bid.0, Some(auction)),
            int(self.auction_reserve.0, Some(auction)),
            time(self.auction_expires.0, Some(auction)),
            int(self.auction_seller.0, Some(auction)),
            int(self.auction_category.0, Some(auction)),
            int(self.bid_auction.0, Some(bid)),
            int(self.bid_bidder.0, Some(bid)),
            int(self.bid_price.0, Some(bid)),
            self.bid_channel.finish(rows, Some(bid))?,
            self.bid_url.finish(rows, Some(bid))?,
            time(self.date_time, None),
            self.extra.finish(rows, None)?,
            int(self.event_id, None),
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
