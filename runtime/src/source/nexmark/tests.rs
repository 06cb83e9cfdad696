use std::collections::BTreeSet;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Int64Type, TimestampMillisecondType};
use weir_crds::NexmarkSpec;

use super::*;

fn spec(events: u64) -> NexmarkSpec {
    serde_yaml::from_str(&format!(
        "events: {events}\neventsPerSecond: 1000\nsplits: 3\n"
    ))
    .expect("spec")
}

fn col<'a>(
    b: &'a RecordBatch,
    name: &str,
) -> &'a datafusion::arrow::array::PrimitiveArray<Int64Type> {
    b.column_by_name(name)
        .expect(name)
        .as_primitive::<Int64Type>()
}

#[test]
fn the_mix_ids_and_time_follow_the_reference_generator() {
    let mut g = NexmarkGenerator::new(&spec(5_000), schema());
    let ids: Vec<u64> = (0..5_000).collect();
    let b = g.batch(&ids).expect("batch");
    let kinds = col(&b, "event_type");
    let count = |k: i64| kinds.iter().filter(|v| *v == Some(k)).count();
    // 1 person, 3 auctions, 46 bids in every 50 events.
    assert_eq!(
        (count(PERSON), count(AUCTION), count(BID)),
        (100, 300, 4_600)
    );
    // Person and auction ids are consecutive from 1000, in stream order.
    let persons: Vec<i64> = col(&b, "person_id").iter().flatten().collect();
    assert_eq!(persons, (1000..1100).collect::<Vec<_>>());
    let auctions: Vec<i64> = col(&b, "auction_id").iter().flatten().collect();
    assert_eq!(auctions, (1000..1300).collect::<Vec<_>>());
    // A bid names an auction and a bidder that exist by then or soon after, and mostly
    // recent ones; hot auctions (multiples of 100 from the first) get many bids.
    let mut per_auction = std::collections::BTreeMap::new();
    for i in 0..b.num_rows() {
        if kinds.value(i) != BID {
            continue;
        }
        let n = i as u64;
        let a = col(&b, "bid_auction").value(i) - 1000;
        let p = col(&b, "bid_bidder").value(i) - 1000;
        assert!(
            a >= 0 && (a as u64) <= last_auction(n) + AUCTION_ID_LEAD,
            "bid {n} on {a}"
        );
        assert!(
            p >= 0 && (p as u64) <= last_person(n) + PERSON_ID_LEAD + 1,
            "bid {n} by {p}"
        );
        *per_auction.entry(a).or_insert(0u32) += 1;
        assert!(col(&b, "bid_price").value(i) >= 100);
    }
    let hottest = per_auction.iter().max_by_key(|(_, c)| **c).map(|(a, _)| *a);
    assert_eq!(hottest.map(|a| a % 100), Some(0), "{per_auction:?}");
    let categories: BTreeSet<i64> = col(&b, "auction_category").iter().flatten().collect();
    assert_eq!(categories, (10..15).collect());
    // Event time: eventsPerSecond events per second from the base time.
    let t = b
        .column_by_name("date_time")
        .expect("date_time")
        .as_primitive::<TimestampMillisecondType>();
    assert_eq!(t.value(4_999) - t.value(0), 4_999);
    assert_eq!(t.null_count(), 0);
    // Each kind's columns hold a value in exactly its events, and text that looks like it;
    // the other kinds' events are null there.
    for (i, (name, _)) in weir_crds::NEXMARK_COLUMNS.iter().enumerate() {
        let kind = match name.split('_').next() {
            Some("person") => Some(PERSON),
            Some("auction") => Some(AUCTION),
            Some("bid") => Some(BID),
            _ => None,
        };
        let c = b.column(i);
        for row in 0..b.num_rows() {
            let own = kind.is_none_or(|k| kinds.value(row) == k);
            assert_eq!(c.is_valid(row), own, "{name} of event {row}");
            if let (true, Some(text)) = (own, c.as_string_opt::<i32>()) {
                let v = text.value(row);
                assert!(v.len() >= 2 && v.is_ascii(), "{name} of event {row}: {v:?}");
            }
        }
    }
    let urls = b
        .column_by_name("bid_url")
        .expect("bid_url")
        .as_string::<i32>();
    let channels = b
        .column_by_name("bid_channel")
        .expect("bid_channel")
        .as_string::<i32>();
    for row in (0..b.num_rows()).filter(|&r| kinds.value(r) == BID) {
        let (url, channel) = (urls.value(row), channels.value(row));
        assert!(url.starts_with("https://www.nexmark.com/"), "{url}");
        let id = url.rsplit("channel_id=").next().expect("an id");
        match HOT_CHANNELS.iter().position(|h| *h == channel) {
            Some(i) => assert_eq!(id, i.to_string(), "{channel} {url}"),
            None => assert_eq!(format!("channel-{id}"), channel, "{url}"),
        }
    }
    let extra = b.column_by_name("extra").expect("extra").as_string::<i32>();
    for v in extra.iter().flatten() {
        assert!(
            (3..=8).contains(&v.len()) && v.bytes().all(|c| c.is_ascii_lowercase()),
            "{v:?}"
        );
    }
}

#[test]
fn an_event_is_the_same_whoever_generates_it() {
    let mut g = NexmarkGenerator::new(&spec(100), schema());
    let all = g.batch(&(0..100).collect::<Vec<_>>()).expect("all");
    let some = g.batch(&[7, 42, 99]).expect("some");
    for (j, i) in [7usize, 42, 99].into_iter().enumerate() {
        assert_eq!(all.slice(i, 1), some.slice(j, 1), "event {i}");
    }
    let mut other_seed = NexmarkGenerator::new(
        &NexmarkSpec {
            seed: 1,
            ..spec(100)
        },
        schema(),
    );
    assert_ne!(other_seed.batch(&[42]).expect("b"), some.slice(1, 1));
}

#[test]
fn the_reader_emits_each_event_once_and_resumes_from_its_positions() {
    let g = NexmarkGenerator::new(&spec(1_000), schema());
    let drain = |r: &mut NexmarkReader, limit: usize| {
        let mut seen = Vec::new();
        for _ in 0..limit {
            match r.poll().expect("poll") {
                Poll::Batch { data, .. } => seen.extend(col(&data, "event_id").iter().flatten()),
                Poll::Finished => break,
                Poll::Idle => {}
            }
        }
        seen
    };
    let mut first = NexmarkReader::new(g.clone(), 3, 64, (0..3).map(SplitState::new).collect());
    let mut seen = drain(&mut first, 4);
    let positions = first.snapshot();
    let mut resumed = NexmarkReader::new(g, 3, 64, positions);
    seen.extend(drain(&mut resumed, usize::MAX));
    seen.sort_unstable();
    assert_eq!(seen, (0..1_000).collect::<Vec<i64>>());
}

/// Columns nothing reads are left null (a kind's own) or empty (`extra`), and every column
/// read holds what it holds when all are written: the draws of a word left out are still
/// made.
#[test]
fn columns_left_out_are_null_or_empty_and_the_others_unchanged() {
    let ids: Vec<u64> = (0..3_000).collect();
    let whole = NexmarkGenerator::new(&spec(3_000), schema())
        .batch(&ids)
        .expect("batch");
    let names: Vec<&str> = weir_crds::NEXMARK_COLUMNS.iter().map(|c| c.0).collect();
    let at = |n: &str| names.iter().position(|c| *c == n).expect(n);
    // One of each kind's strings read, those before and after it in the event not.
    for read in [
        vec!["event_type", "person_credit_card", "auction_expires"],
        vec!["bid_url", "auction_description", "date_time"],
        vec!["extra", "person_city", "bid_channel"],
        // Prices: the reserve is the initial bid plus a second price.
        vec!["auction_reserve", "bid_price", "auction_seller"],
        vec!["auction_initial_bid", "auction_category", "bid_bidder"],
    ]
    .into_iter()
    // And each column alone.
    .chain(names.iter().map(|n| vec![*n]))
    {
        let mut g = NexmarkGenerator::new(&spec(3_000), schema());
        let columns: Vec<usize> = read.iter().map(|n| at(n)).collect();
        g.read_only(&columns);
        let part = g.batch(&ids).expect("batch");
        for (i, name) in names.iter().enumerate() {
            let (got, want) = (part.column(i), whole.column(i));
            let of_a_kind = part.schema().field(i).is_nullable();
            if columns.contains(&i) {
                assert_eq!(got.as_ref(), want.as_ref(), "{name} read {read:?}");
            } else if of_a_kind {
                // A kind's own column nobody reads: null throughout, values or not.
                assert_eq!(got.null_count(), got.len(), "{name} is written");
                assert!(want.null_count() < want.len());
            } else if let Some(s) = got.as_string_opt::<i32>() {
                // `extra`, which may not be null: empty.
                assert_eq!(got.nulls(), want.nulls(), "{name}: nulls");
                assert!(s.iter().flatten().all(str::is_empty), "{name} is written");
                let written = want.as_string::<i32>();
                assert!(written.iter().flatten().any(|v| !v.is_empty()));
            } else {
                assert_eq!(got.as_ref(), want.as_ref(), "{name}, shared");
            }
        }
    }
}

/// Prices are `round(10^(6u) · 100)` as the reference computes it with `Math.pow`, to within
/// a cent or a billionth, over the whole range of draws.
#[test]
fn prices_follow_the_reference_formula() {
    let mut x = 0x1234_5678_9abc_def0_u64;
    let draws = [0, u64::MAX, 1 << 63, (1 << 54) - 1, 1 << 54]
        .into_iter()
        .chain((0..100_000).map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            x
        }));
    for d in draws {
        let u = (d >> 11) as f64 / (1u64 << 53) as f64;
        let want = (10f64.powf(6.0 * u) * 100.0).round();
        let got = price_of(d) as f64;
        assert!(
            (got - want).abs() <= 1.0_f64.max(want * 1e-9),
            "draw {d:#x}: {got} against {want}"
        );
    }
    assert_eq!(price_of(0), 100);
    assert_eq!(price_of(u64::MAX), 100_000_000);
}

/// No two fields of a kind draw from the same slot, nor any field from `extra`'s: a shared
/// slot would tie two columns' values together.
#[test]
fn each_field_draws_from_slots_of_its_own() {
    // A word of up to `m` letters takes its length's slot and one per 8 letters.
    let word = |first: u64, m: u64| first..first + 1 + m.div_ceil(8);
    let one = |s: u64| s..s + 1;
    let extra = word(slot::EXTRA, 8);
    let kinds = [
        vec![
            one(slot::FIRST_NAME),
            one(slot::LAST_NAME),
            word(slot::EMAIL, 7),
            word(slot::EMAIL + 2, 7),
            slot::CARD..slot::CARD + 4,
            one(slot::CITY),
            one(slot::STATE),
        ],
        vec![
            word(slot::ITEM, 20),
            word(slot::DESCRIPTION, 100),
            one(slot::INITIAL_BID),
            one(slot::RESERVE),
            one(slot::EXPIRES),
            one(slot::SELLER_HOT),
            one(slot::SELLER),
            one(slot::CATEGORY),
        ],
        vec![
            one(slot::AUCTION_HOT),
            one(slot::AUCTION),
            one(slot::BIDDER_HOT),
            one(slot::BIDDER),
            one(slot::PRICE),
            one(slot::CHANNEL_HOT),
            one(slot::CHANNEL),
            word(slot::URL, 5),
            word(slot::URL + 2, 5),
            word(slot::URL + 4, 5),
        ],
    ];
    for fields in kinds {
        let mut taken = BTreeSet::new();
        for s in fields.into_iter().chain([extra.clone()]).flatten() {
            assert!(taken.insert(s), "slot {s} twice");
        }
    }
}
