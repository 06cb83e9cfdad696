#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;

use crate::{Batch, Budget, Family, KeyGroups, Source, Store, from_ordered, ordered};

const FAMILIES: &[Family] = &[Family::kept("values"), Family::kept("index")];

fn fill(store: &Store, groups: std::ops::RangeInclusive<u32>, per_group: u32, tag: &str) {
    let mut batch = Batch::default();
    for kg in groups {
        for i in 0..per_group {
            let key = format!("k{i:05}");
            batch.put(0, kg, key.as_bytes(), format!("{tag}-{kg}-{i}").as_bytes());
            batch.put(1, kg, format!("i{i:05}").as_bytes(), b"");
        }
    }
    store.write(batch).unwrap();
}

fn contents(store: &Store, groups: KeyGroups) -> BTreeMap<(u32, Vec<u8>), Vec<u8>> {
    store
        .scan(0, groups)
        .unwrap()
        .map(|r| {
            let (kg, k, v) = r.unwrap();
            ((kg, k), v)
        })
        .collect()
}

/// Copies a local checkpoint's files to `to`, as a download would.
fn download(cp: &crate::LocalCheckpoint, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in cp.files() {
        std::fs::copy(&f.path, to.join(&f.name)).unwrap();
    }
}

#[test]
fn reads_what_it_wrote_and_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path(), FAMILIES, &Budget::new(16 << 20)).unwrap();
    fill(&store, 0..=3, 10, "a");
    assert_eq!(store.get(0, 2, b"k00007").unwrap().unwrap(), b"a-2-7");
    assert_eq!(store.get(0, 9, b"k00007").unwrap(), None);
    let mut batch = Batch::default();
    batch.delete(0, 2, b"k00007");
    store.write(batch).unwrap();
    assert_eq!(store.get(0, 2, b"k00007").unwrap(), None);
    let from: Vec<_> = store
        .scan_from(1, 3, b"i00008")
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(from, vec![b"i00008".to_vec(), b"i00009".to_vec()]);
}

#[test]
fn reads_many_keys_at_once_in_the_order_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path(), FAMILIES, &Budget::new(16 << 20)).unwrap();
    let mut batch = Batch::default();
    batch.put(0, 1, b"b", b"1b");
    batch.put(0, 2, b"a", b"2a");
    batch.put(1, 1, b"a", b"other family");
    store.write(batch).unwrap();
    let got = store
        .get_many(0, &[(2, b"a"), (1, b"a"), (1, b"b"), (2, b"a")])
        .unwrap();
    assert_eq!(
        got,
        vec![
            Some(b"2a".to_vec()),
            None,
            Some(b"1b".to_vec()),
            Some(b"2a".to_vec())
        ]
    );
}

#[test]
fn a_prefix_scan_stops_where_the_prefix_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path(), FAMILIES, &Budget::new(16 << 20)).unwrap();
    let mut batch = Batch::default();
    for key in [
        &b"a\xff"[..],
        b"a\xff\x00",
        b"a\xff\xff",
        b"b",
        b"a",
        b"\xff\xff",
    ] {
        batch.put(0, 4, key, b"v");
    }
    batch.put(0, 5, b"a\xff\x01", b"other group");
    store.write(batch).unwrap();
    let scan = |prefix: &[u8]| -> Vec<Vec<u8>> {
        store
            .scan_prefix(0, 4, prefix)
            .unwrap()
            .map(|r| r.unwrap().0)
            .collect()
    };
    assert_eq!(
        scan(b"a\xff"),
        vec![
            b"a\xff".to_vec(),
            b"a\xff\x00".to_vec(),
            b"a\xff\xff".to_vec()
        ]
    );
    assert_eq!(scan(b"\xff"), vec![b"\xff\xff".to_vec()]);
    assert_eq!(scan(b"c"), Vec::<Vec<u8>>::new());
    assert_eq!(scan(b"").len(), 6);
}

#[test]
fn a_later_checkpoint_keeps_the_table_files_nothing_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path(), FAMILIES, &Budget::new(16 << 20)).unwrap();
    fill(&store, 0..=7, 2_000, "a");
    let first = store.checkpoint("chk-1").unwrap();
    let tables = |cp: &crate::LocalCheckpoint| {
        cp.files()
            .iter()
            .filter(|f| f.is_table())
            .map(|f| (f.name.clone(), f.size))
            .collect::<BTreeMap<_, _>>()
    };
    let before = tables(&first);
    assert!(!before.is_empty(), "the checkpoint holds no table file");
    let mut batch = Batch::default();
    batch.put(0, 3, b"new", b"value");
    store.write(batch).unwrap();
    let second = store.checkpoint("chk-2").unwrap();
    let after = tables(&second);
    for (name, size) in &before {
        assert_eq!(
            after.get(name),
            Some(size),
            "table {name} changed or went away"
        );
    }
    let new: u64 = after
        .iter()
        .filter(|(n, _)| !before.contains_key(*n))
        .map(|(_, s)| s)
        .sum();
    let old: u64 = before.values().sum();
    assert!(
        new > 0 && new * 10 < old,
        "new tables {new} bytes, against {old} already checkpointed"
    );
    let dir = second.dir().to_path_buf();
    drop(second);
    assert!(!dir.exists(), "a dropped checkpoint leaves its directory");
}

#[test]
fn restores_another_parallelism_from_each_former_range() {
    let tmp = tempfile::tempdir().unwrap();
    let budget = Budget::new(16 << 20);
    // Two former subtasks: key groups 0..=3 and 4..=7.
    let a = Store::create(&tmp.path().join("a"), FAMILIES, &budget).unwrap();
    fill(&a, 0..=3, 50, "a");
    let b = Store::create(&tmp.path().join("b"), FAMILIES, &budget).unwrap();
    fill(&b, 4..=7, 50, "b");
    let expected: BTreeMap<_, _> = contents(&a, KeyGroups::new(0..=7))
        .into_iter()
        .chain(contents(&b, KeyGroups::new(0..=7)))
        .collect();
    let (ca, cb) = (
        a.checkpoint("chk-1").unwrap(),
        b.checkpoint("chk-1").unwrap(),
    );

    // One subtask now owns 2..=6: most of it from b, the rest from a.
    let sources = |n: &str| {
        let (da, db) = (tmp.path().join(n).join("a"), tmp.path().join(n).join("b"));
        download(&ca, &da);
        download(&cb, &db);
        vec![
            Source {
                dir: da,
                groups: KeyGroups::new(0..=3),
            },
            Source {
                dir: db,
                groups: KeyGroups::new(4..=7),
            },
        ]
    };
    let groups = KeyGroups::new(2..=6);
    let (restored, base) = Store::restore(
        &tmp.path().join("r"),
        FAMILIES,
        &budget,
        groups,
        sources("dl1"),
    )
    .unwrap();
    assert_eq!(base, Some(1), "the source overlapping most is kept whole");
    let want: BTreeMap<_, _> = expected
        .iter()
        .filter(|((kg, _), _)| (2..=6).contains(kg))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(contents(&restored, KeyGroups::new(0..=7)), want);
    let index: Vec<u32> = restored
        .scan(1, KeyGroups::new(0..=7))
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    assert!(index.iter().all(|kg| (2..=6).contains(kg)), "{index:?}");
    assert_eq!(index.len(), 5 * 50);

    // And back to one subtask over everything, from the restored store's own checkpoint.
    let cr = restored.checkpoint("chk-2").unwrap();
    let d = tmp.path().join("dl2");
    download(&cr, &d);
    let (whole, _) = Store::restore(
        &tmp.path().join("w"),
        FAMILIES,
        &budget,
        KeyGroups::new(0..=7),
        vec![Source { dir: d, groups }],
    )
    .unwrap();
    assert_eq!(contents(&whole, KeyGroups::new(0..=7)), want);
}

#[test]
fn compactions_drop_expiring_entries_only_at_or_below_the_horizon() {
    let tmp = tempfile::tempdir().unwrap();
    let families = [Family::expiring("seen"), Family::kept("other")];
    let store = Store::create(tmp.path(), &families, &Budget::new(16 << 20)).unwrap();
    let mut batch = Batch::default();
    for t in 0..100i64 {
        let key = t.to_be_bytes();
        batch.put(0, 1, &key, &ordered(t));
        batch.put(1, 1, &key, &ordered(t));
    }
    store.write(batch).unwrap();
    store.expire_through(49);
    // A lower horizon later changes nothing.
    store.expire_through(10);
    store.raw().flush().unwrap();
    for name in ["seen", "other"] {
        let cf = store.raw().cf_handle(name).unwrap();
        store
            .raw()
            .compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
    }
    let times = |family| -> Vec<i64> {
        store
            .scan(family, KeyGroups::new(0..=3))
            .unwrap()
            .map(|r| from_ordered(&r.unwrap().2).unwrap())
            .collect()
    };
    assert_eq!(times(0), (50..100).collect::<Vec<_>>());
    assert_eq!(
        times(1),
        (0..100).collect::<Vec<_>>(),
        "a kept family keeps all"
    );
}

/// A job that added a family since its checkpoints were taken restores them, into one store
/// or across a rescale (a kept checkpoint and a copied one): the new family starts empty.
#[test]
fn a_family_added_since_the_checkpoint_starts_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let budget = Budget::new(16 << 20);
    let a = Store::create(&tmp.path().join("a"), FAMILIES, &budget).unwrap();
    fill(&a, 0..=3, 20, "a");
    let b = Store::create(&tmp.path().join("b"), FAMILIES, &budget).unwrap();
    fill(&b, 4..=7, 20, "b");
    let (ca, cb) = (a.checkpoint("c").unwrap(), b.checkpoint("c").unwrap());
    let (da, db) = (tmp.path().join("da"), tmp.path().join("db"));
    download(&ca, &da);
    download(&cb, &db);
    let more: &[Family] = &[
        Family::kept("values"),
        Family::kept("index"),
        Family::kept("added"),
    ];
    let (restored, base) = Store::restore(
        &tmp.path().join("r"),
        more,
        &budget,
        KeyGroups::new(0..=7),
        vec![
            Source {
                dir: da,
                groups: KeyGroups::new(0..=3),
            },
            Source {
                dir: db,
                groups: KeyGroups::new(4..=7),
            },
        ],
    )
    .unwrap();
    assert!(base.is_some());
    assert_eq!(contents(&restored, KeyGroups::new(0..=7)).len(), 8 * 20);
    assert_eq!(restored.scan(2, KeyGroups::new(0..=7)).unwrap().count(), 0);
    let mut batch = Batch::default();
    batch.put(2, 1, b"x", b"y");
    restored.write(batch).unwrap();
    assert_eq!(restored.get(2, 1, b"x").unwrap(), Some(b"y".to_vec()));
}

/// The last key of a prefix is found without a scan, and a prefix's keys go in one delete;
/// neither reaches past the prefix or into another key group.
#[test]
fn the_last_key_of_a_prefix_and_a_prefix_deleted_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path(), FAMILIES, &Budget::new(16 << 20)).unwrap();
    let mut batch = Batch::default();
    for key in [
        &b"a"[..],
        b"a\x00",
        b"a\x7f",
        b"a\xff\xff",
        b"b",
        b"\xff\xff",
    ] {
        batch.put(0, 4, key, key);
    }
    batch.put(0, 5, b"a\xff\xff\xff", b"other group");
    batch.put(0, 3, b"a\xff\xff\xff", b"other group");
    store.write(batch).unwrap();
    let last = |prefix: &[u8]| store.last_in_prefix(0, 4, prefix).unwrap().map(|e| e.0);
    assert_eq!(last(b"a"), Some(b"a\xff\xff".to_vec()));
    assert_eq!(last(b"a\x7f"), Some(b"a\x7f".to_vec()));
    assert_eq!(last(b"\xff"), Some(b"\xff\xff".to_vec()));
    assert_eq!(last(b"c"), None);
    assert_eq!(last(b""), Some(b"\xff\xff".to_vec()));

    let mut batch = Batch::default();
    batch.delete_prefix(0, 4, b"a");
    batch.put(0, 4, b"a\x01", b"after the delete");
    store.write(batch).unwrap();
    let left: Vec<Vec<u8>> = store
        .scan(0, KeyGroups::new(0..=7))
        .unwrap()
        .map(|r| r.unwrap().1)
        .collect();
    assert_eq!(
        left,
        [
            b"a\xff\xff\xff".to_vec(),
            b"a\x01".to_vec(),
            b"b".to_vec(),
            b"\xff\xff".to_vec(),
            b"a\xff\xff\xff".to_vec()
        ]
    );
}
