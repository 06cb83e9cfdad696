//! State on disk (`stateBackend: {type: disk}`): a dedup job killed with `kill -9` at random
//! moments and restarted at other parallelisms (2 -> 3 -> 1) emits every distinct id exactly
//! once, and a session-window job so treated emits every session once with its count, both
//! against oracles computed from the generator's definition; checkpoints upload table files
//! once and share them; retention deletes exactly the tables no kept checkpoint refers to,
//! and every kept checkpoint still restores.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{SEED, START, fresh_bucket, s3_endpoint, spawn_runtime, wait_exit_within};
use weir_runtime::checkpoint::layout::Layout;
use weir_runtime::checkpoint::restore;
use weir_runtime::storage::Storage;

const COUNT: u64 = 60_000;
const USERS: u64 = 40_000;

/// The distinct users the generator emits: its definition of field 1 of record `i`
/// (SplitMix64 of seed and index), written here without the engine.
fn oracle() -> BTreeSet<String> {
    (0..COUNT)
        .map(|i| format!("u-{}", common::rnd(1, i) % USERS))
        .collect()
}

fn job_yaml(
    name: &str,
    parallelism: u32,
    storage: &str,
    s3: &str,
    out: &Path,
    state: &Path,
    rate: u64,
) -> String {
    format!(
        "name: {name}
parallelism: {parallelism}
checkpoint:
  interval: 200ms
  timeout: 30s
  storage: \"{storage}\"
  retained: 2
{s3}stateBackend:
  type: disk
  dir: \"{state}\"
  memory: 32Mi
source:
  datagen:
    seed: {SEED}
    count: {COUNT}
    rate: {rate}
    splits: 4
    batchSize: 500
    fields:
      seq: {{sequence: {{}}}}
      user: {{key: {{cardinality: {USERS}, prefix: u-}}}}
      ts: {{eventTime: {{start: \"{START}\", step: 1ms, disorder: 100ms}}}}
  schema:
    - {{name: seq, type: int64}}
    - {{name: user, type: string}}
    - {{name: ts, type: timestamp}}
  eventTime: {{field: ts, maxOutOfOrderness: 200ms}}
transforms:
  - dedup: {{keyBy: [user], ttl: 1h}}
sinks:
  - file: {{path: \"{out}\"}}
",
        state = state.display(),
        out = out.display(),
    )
}

/// Kill the job in `file` at random moments after each run's first checkpoint, restarting it
/// at parallelisms 2 -> 3 -> 1 -> 2 (`yaml(parallelism, records/s)`, slow enough that the job
/// outlasts the kills), then run it to its end; returns the kills that landed. Checks
/// that `operator` kept its state in a store under `state` (the killed runs leave theirs).
fn kill_rescale_and_finish(
    file: &Path,
    log: &Path,
    (state, operator): (&Path, &str),
    yaml: &dyn Fn(u32, u64) -> String,
) -> u32 {
    let mut rng = common::fault_seed();
    let mut kills = 0;
    // The moments a random kill rarely hits: a store's tables half uploaded, and retention
    // half done (some shared tables deleted, their checkpoints not yet).
    // Slower than the runs below, so that input remains until the crash point is reached even
    // when a restore at a new parallelism is slow to checkpoint: at 5 000 records/s what the
    // first run left lasted 11 s, and one run met a 16 s first checkpoint after a rescale and
    // finished before retention deleted anything. The time limit only guards against a hang:
    // with other suites running beside this one, a restore at 3 took 40 s to its first
    // checkpoint and had not reached retention at 60 s.
    for (parallelism, point) in [(2, "during-state-upload:3"), (3, "during-retention:1")] {
        std::fs::write(file, yaml(parallelism, 2_000)).unwrap();
        common::run_until_crash(
            file,
            &[("WEIR_CRASH_AT", point)],
            Duration::from_secs(180),
            log,
        );
    }
    for parallelism in [2u32, 2, 3, 3, 1, 1, 2, 2] {
        std::fs::write(file, yaml(parallelism, 5_000)).unwrap();
        // Each run restores what the one before left, however slow the machine.
        kills += common::kill_after_a_checkpoint(file, log, &mut rng, 1, 0..700);
    }
    assert!(kills >= 6, "only {kills} kills landed while the job ran");
    let on_disk = common::stores(state);
    assert!(
        on_disk.contains(operator),
        "{operator} kept no store under {}: {on_disk:?}",
        state.display()
    );
    std::fs::write(file, yaml(2, 1_000_000)).unwrap();
    run_to_end(file, log, Duration::from_secs(180), true);
    let text = std::fs::read_to_string(log).unwrap();
    assert!(
        text.matches("restoring").count() >= 5,
        "expected a restore after most kills:\n{}",
        common::log_tail(log)
    );
    // A run restarted at the same parallelism finds its stores' tables where the killed run
    // left them, and downloads only the rest.
    assert!(
        text.contains("restore took tables from the previous run's local state"),
        "no restart reused the local tables:\n{}",
        common::log_tail(log)
    );
    kills
}

/// Where the job checkpoints, and its `s3:` block: a fresh bucket `bucket` on the real S3
/// server when the stack runs (CI), local files under `tmp` otherwise.
fn checkpoint_storage(rt: &tokio::runtime::Runtime, tmp: &Path, bucket: &str) -> (String, String) {
    match s3_endpoint("disk_state") {
        Some(ep) => (
            format!("s3://{}/chk", rt.block_on(fresh_bucket(&ep, bucket))),
            format!("  s3: {{endpoint: \"{ep}\", region: us-east-1, pathStyle: true}}\n"),
        ),
        None => (
            format!("file://{}", tmp.join("chk").display()),
            String::new(),
        ),
    }
}

/// Run the job in `file` to its end, within `limit`; `ok`: whether it must succeed.
fn run_to_end(file: &Path, log: &Path, limit: Duration, ok: bool) {
    let mut child = spawn_runtime(file, &[], &[], log);
    let status = wait_exit_within(&mut child, limit);
    assert!(
        status.is_some_and(|s| s.success() == ok),
        "run of {} ended {status:?}, expected success {ok}:\n{}",
        file.display(),
        common::log_tail(log)
    );
}

/// Lines in the file sink's committed files under `dir`, without parsing them.
fn committed_lines(dir: &Path) -> usize {
    committed_files(dir)
        .map(|path| {
            std::fs::read(path)
                .map(|b| b.iter().filter(|&&c| c == b'\n').count())
                .unwrap_or(0)
        })
        .sum()
}

/// Users in the committed output, with how often each appears.
fn output(dir: &Path) -> BTreeMap<String, u32> {
    let mut seen = BTreeMap::new();
    for path in committed_files(dir) {
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            *seen
                .entry(v["user"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
    }
    seen
}

/// The file sink's committed output files under `dir` (those not yet committed wait in its
/// `.pending/` directory, which this does not descend into).
fn committed_files(dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
}

/// Every kept checkpoint of the job's one lineage, with the shared tables it refers to. One
/// that does not restore fails the test with every checkpoint id found and the runs' retention
/// warnings from `log`: whether it was one retention should have deleted (a pass that failed)
/// or one it keeps (a lost table) is then in the failure message.
async fn kept(storage: &Storage, log: &Path) -> (String, BTreeMap<u64, BTreeSet<String>>) {
    let all = storage.list("").await.unwrap();
    let shared_dir = all
        .iter()
        .find_map(|k| {
            k.find("/shared/")
                .map(|i| k[..i + "/shared/".len()].to_string())
        })
        .expect("no table was ever uploaded to a shared/ directory");
    let metadata: Vec<&String> = all
        .iter()
        .filter(|k| k.ends_with("/_metadata") && k.contains("/chk-"))
        .collect();
    let mut out = BTreeMap::new();
    for k in &metadata {
        let dir = &k[..k.len() - "_metadata".len()];
        let (id, _) = Layout::parse_checkpoint(k).unwrap();
        let r = match restore::load(storage, dir).await {
            Ok(r) => r,
            Err(e) => {
                let ids: BTreeSet<u64> = metadata
                    .iter()
                    .filter_map(|k| Layout::parse_checkpoint(k).map(|(id, _)| id.0))
                    .collect();
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let warnings: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains("retention cleanup failed"))
                    .collect();
                panic!(
                    "checkpoint {} does not restore: {e}\ncheckpoints with _metadata: {ids:?} \
                     (retained: 2)\nretention warnings in the runs' log: {warnings:#?}",
                    id.0
                );
            }
        };
        let tables: BTreeSet<String> = r
            .metadata
            .state_files
            .iter()
            .flat_map(|f| f.shared.iter().cloned())
            .collect();
        // What `_metadata` lists is what the state files refer to.
        let in_state: BTreeSet<String> = r
            .tasks
            .iter()
            .flat_map(|(_, s)| s.disk.iter())
            .flat_map(|d| d.tables.iter().map(|t| t.object.clone()))
            .collect();
        assert_eq!(tables, in_state, "checkpoint {}", id.0);
        // Its size counts the tables it refers to, as restoring it reads them.
        let table_bytes: u64 = r
            .tasks
            .iter()
            .flat_map(|(_, s)| s.disk.iter())
            .flat_map(|d| d.tables.iter().map(|t| t.size))
            .sum();
        let files: u64 = r.metadata.state_files.iter().map(|f| f.size).sum();
        assert_eq!(
            r.metadata.state_size(),
            files + table_bytes,
            "checkpoint {}",
            id.0
        );
        // What it wrote is not bounded by its size: that counts the tables sent ahead of it
        // since the one before, also those compaction then replaced (see the retention test).
        out.insert(id.0, tables);
    }
    (shared_dir, out)
}

#[test]
fn dedup_on_disk_survives_kills_and_rescales_and_shares_its_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (storage_uri, s3) = checkpoint_storage(&rt, tmp.path(), "disk-state");
    let out = tmp.path().join("out");
    let state = tmp.path().join("state");
    let log = tmp.path().join("runtime.log");
    let file = tmp.path().join("dedup.yaml");
    let kills = kill_rescale_and_finish(&file, &log, (&state, "dedup-0"), &|parallelism, rate| {
        job_yaml("dedup", parallelism, &storage_uri, &s3, &out, &state, rate)
    });

    let got = output(&out);
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "users emitted more than once: {twice:?}");
    let want = oracle();
    let got: BTreeSet<String> = got.into_keys().collect();
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "after {kills} kills: {} users expected, {} emitted; missing {missing:?}, unexpected {extra:?}",
        want.len(),
        got.len()
    );

    // The kept checkpoints' tables are all there and each still restores.
    let storage = rt
        .block_on(Storage::open(
            &storage_uri,
            &weir_crds::S3Spec {
                endpoint: std::env::var("WEIR_S3_ENDPOINT").ok(),
                region: Some("us-east-1".into()),
                path_style: Some(true),
                ca_pem_env: None,
            },
        ))
        .unwrap();
    let (shared_dir, checkpoints) = rt.block_on(kept(&storage, &log));
    assert_eq!(checkpoints.len(), 2, "retained: 2");
    let stored: BTreeSet<String> = rt
        .block_on(storage.list(&shared_dir))
        .unwrap()
        .into_iter()
        .collect();
    for (id, tables) in &checkpoints {
        // (The last ones may hold none: the end of input expires every user, and RocksDB
        // drops the emptied tables.)
        let lost: Vec<_> = tables.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "checkpoint {id} refers to deleted tables {lost:?}"
        );
    }
    // The killed runs' unfinished checkpoints uploaded tables no checkpoint refers to: the
    // final run swept them at its start.
    let referenced: BTreeSet<String> = checkpoints.values().flatten().cloned().collect();
    let orphans: Vec<_> = stored.difference(&referenced).take(5).collect();
    assert!(
        orphans.is_empty(),
        "tables left that no kept checkpoint refers to: {orphans:?}"
    );
    for dir in checkpoints.keys() {
        restores(&rt, &storage, *dir, &shared_dir, tmp.path());
    }
}

const SESSION_USERS: u64 = 3_000;
const GAP_MS: i64 = 2_000;

/// Sessions per (user, start): (end, records), computed without the engine: each record's
/// user and event time by the generator's definition (time `START + i ms` less a lag below
/// 100 ms), and a user's times cut into sessions wherever the next one is `GAP_MS` or more
/// after the last.
fn session_oracle() -> BTreeMap<(String, i64), (i64, i64)> {
    let mut times: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for i in 0..COUNT {
        let user = format!("u-{}", common::rnd(1, i) % SESSION_USERS);
        let ts = common::START_MS + i as i64 - (common::rnd(2, i) % 100) as i64;
        times.entry(user).or_default().push(ts);
    }
    let mut out = BTreeMap::new();
    for (user, mut ts) in times {
        ts.sort_unstable();
        let (mut start, mut last, mut n) = (ts[0], ts[0], 0);
        for t in ts {
            if t >= last + GAP_MS {
                out.insert((user.clone(), start), (last + GAP_MS, n));
                (start, n) = (t, 0);
            }
            last = t;
            n += 1;
        }
        out.insert((user, start), (last + GAP_MS, n));
    }
    out
}

#[test]
fn session_windows_on_disk_survive_kills_and_rescales() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (storage_uri, s3) = checkpoint_storage(&rt, tmp.path(), "disk-sessions");
    let out = tmp.path().join("out");
    let state = tmp.path().join("state");
    let log = tmp.path().join("runtime.log");
    let file = tmp.path().join("sessions.yaml");
    let kills = kill_rescale_and_finish(&file, &log, (&state, "window-0"), &|parallelism, rate| {
        job_yaml("sessions", parallelism, &storage_uri, &s3, &out, &state, rate)
            .replace(
                &format!("cardinality: {USERS}"),
                &format!("cardinality: {SESSION_USERS}"),
            )
            .replace(
                "  - dedup: {keyBy: [user], ttl: 1h}",
                &format!(
                    "  - window: {{session: {{gap: {GAP_MS}ms}}, keyBy: [user], aggregates: {{n: count(*)}}}}"
                ),
            )
    });
    let mut got = BTreeMap::new();
    let mut twice = Vec::new();
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        if e.path().extension().is_none_or(|x| x != "jsonl") {
            continue;
        }
        for line in std::fs::read_to_string(e.path()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let key = (
                v["user"].as_str().unwrap().to_string(),
                common::parse_ts(v["window_start"].as_str().unwrap()),
            );
            let row = (
                common::parse_ts(v["window_end"].as_str().unwrap()),
                v["n"].as_i64().unwrap(),
            );
            if got.insert(key.clone(), row).is_some() {
                twice.push(key);
            }
        }
    }
    let want = session_oracle();
    let merged = want.values().filter(|(_, n)| *n > 1).count();
    assert!(
        merged > 1_000 && want.len() - merged > 1_000,
        "the oracle should hold both merged and lone sessions: {merged} of {}",
        want.len()
    );
    common::assert_same_rows(
        &format!("after {kills} kills"),
        &want,
        &got,
        &twice.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>(),
    );
}

/// Download checkpoint `id`'s stores as a restore does and open them: every user kept holds a
/// time, and a store marks at most one horizon per key group.
fn restores(
    rt: &tokio::runtime::Runtime,
    storage: &Storage,
    id: u64,
    shared_dir: &str,
    tmp: &Path,
) {
    let lineage = &shared_dir[..shared_dir.len() - "shared/".len()];
    let dir = format!("{lineage}chk-{id}/");
    let r = rt.block_on(restore::load(storage, &dir)).unwrap();
    let snaps: Vec<_> = r.tasks.iter().flat_map(|(_, s)| s.disk.iter()).collect();
    assert!(!snaps.is_empty(), "checkpoint {id} holds no disk state");
    let into = tmp.join(format!("verify-{id}"));
    let fetched = rt
        .block_on(weir_runtime::state::fetch::fetch(
            storage, &snaps, &into, shared_dir, None,
        ))
        .unwrap();
    let budget = weir_state::Budget::new(16 << 20);
    for (i, f) in fetched.into_iter().enumerate() {
        let (store, _) = weir_state::Store::restore(
            &into.join(format!("store-{i}")),
            &[
                weir_state::Family::expiring("seen"),
                weir_state::Family::kept("horizons"),
            ],
            &budget,
            f.source.groups,
            vec![f.source.clone()],
        )
        .unwrap();
        let all = weir_state::KeyGroups::new(0..=127);
        for user in store.scan(0, all).unwrap() {
            let (_, _, time) = user.unwrap();
            assert!(
                weir_state::from_ordered(&time).is_some(),
                "checkpoint {id}, store {i}: a user without its time"
            );
        }
        let groups = f.source.groups;
        let marked = store.scan(1, all).unwrap().count() as u32;
        assert!(
            marked <= groups.last - groups.first + 1,
            "checkpoint {id}, store {i}: {marked} horizons"
        );
    }
}

#[test]
fn retention_deletes_exactly_the_tables_no_kept_checkpoint_refers_to() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let storage_uri = format!("file://{}", tmp.path().join("chk").display());
    let (out, state, log) = (
        tmp.path().join("out"),
        tmp.path().join("state"),
        tmp.path().join("log"),
    );
    let file = tmp.path().join("gc.yaml");
    // About 15 checkpoints, each flushing new tables; RocksDB's compactions replace them.
    std::fs::write(
        &file,
        job_yaml("gc", 1, &storage_uri, "", &out, &state, 20_000),
    )
    .unwrap();
    run_to_end(&file, &log, Duration::from_secs(120), true);
    assert_eq!(output(&out).len(), oracle().len());
    let storage = rt
        .block_on(Storage::open(&storage_uri, &weir_crds::S3Spec::default()))
        .unwrap();
    let (shared_dir, checkpoints) = rt.block_on(kept(&storage, &log));
    let referenced: BTreeSet<String> = checkpoints.values().flatten().cloned().collect();
    let stored: BTreeSet<String> = rt
        .block_on(storage.list(&shared_dir))
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        stored,
        referenced,
        "shared tables left: {} stored, {} referenced by the {} kept checkpoints",
        stored.len(),
        referenced.len(),
        checkpoints.len()
    );
    let completed = std::fs::read_to_string(&log)
        .unwrap()
        .matches("checkpoint completed")
        .count();
    assert!(completed >= 8, "only {completed} checkpoints completed");
    // Incremental: most checkpoints write less than the state they hold.
    let number = |line: &str, field: &str| -> u64 {
        let rest = &line[line.find(field).unwrap() + field.len()..];
        let digits: String = rest
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    let sizes: Vec<(u64, u64)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("checkpoint completed"))
        .map(|l| (number(l, "size_bytes"), number(l, "written_bytes")))
        .collect();
    // Not each one: what a checkpoint wrote counts the tables sent ahead of it since the one
    // before, also those compaction then replaced before the barrier. Slowed down (a busy
    // machine), compaction has time to rewrite more of the state between two barriers, and a
    // checkpoint can write more than it holds.
    let incremental = sizes
        .iter()
        .filter(|(size, written)| written * 2 < *size)
        .count();
    assert!(
        incremental * 2 >= sizes.len(),
        "checkpoints writing less than half their size: {incremental} of {}: {sizes:?}",
        sizes.len()
    );
    for id in checkpoints.keys() {
        restores(&rt, &storage, *id, &shared_dir, tmp.path());
    }

    // Restoring a disk checkpoint by its URI (another job, --restore-from) is refused: its
    // tables belong to this job's shared directory.
    let newest_id = *checkpoints.keys().next_back().unwrap();
    let lineage = &shared_dir[..shared_dir.len() - "shared/".len()];
    let uri = storage.uri(&format!("{lineage}chk-{newest_id}/"));
    let Err(err) = rt.block_on(restore::from_uri(&uri, &weir_crds::S3Spec::default())) else {
        panic!("a disk checkpoint restored by URI");
    };
    assert!(err.to_string().contains("Start from a savepoint"), "{err}");

    // The same job with its state in memory cannot read the disk checkpoint: refused by
    // name before anything is downloaded (a savepoint is the way between backends).
    let yaml = std::fs::read_to_string(&file).unwrap();
    let memory = tmp.path().join("memory.yaml");
    std::fs::write(&memory, yaml.replace("type: disk", "type: memory")).unwrap();
    run_to_end(&memory, &log, Duration::from_secs(60), false);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("dedup-0")
            && text.contains("restore it with the disk backend, or from a savepoint"),
        "the refusal should name the operator and the way out:\n{}",
        common::log_tail(&log)
    );

    // A table of the newest checkpoint gone: the next start refuses it by name, as any
    // unreadable checkpoint, instead of restoring a store without it.
    let (newest, tables) = checkpoints.iter().next_back().unwrap();
    let gone = tables.iter().next().unwrap();
    rt.block_on(storage.delete_prefix(gone)).unwrap();
    run_to_end(&file, &log, Duration::from_secs(60), false);
    let text = std::fs::read_to_string(&log).unwrap();
    let tail = &text[text
        .rfind("cannot be read")
        .unwrap_or(0)
        .saturating_sub(200)..];
    let name = gone.rsplit('/').next().unwrap();
    assert!(
        tail.contains(&format!("checkpoint, {newest}"))
            && tail.contains(name)
            && tail.contains("missing"),
        "the refusal should name checkpoint {newest} and table {name}:\n{tail}"
    );
}

/// A savepoint of state on disk is stored in parts, never whole in memory: each subtask's
/// dedup state streams into parts beside its state file. The savepoint restores into the
/// memory backend at parallelism 3 and onto disk at 1, each subtask reading only the parts
/// holding its key groups, and both runs finish with the oracle's output: every user once.
/// Mutation: restore only the first part of each subtask, and users come out twice.
#[test]
fn a_savepoint_of_disk_state_is_stored_in_parts_and_restores_into_either_backend() {
    use weir_runtime::checkpoint::coordinator::{Outcome, Request};
    use weir_runtime::job::{RunOptions, start};
    // Enough users, with long names, that each subtask's state fills several 4 MiB parts.
    const USERS_SP: u64 = 600_000;
    const COUNT_SP: u64 = 1_500_000;
    const PREFIX: &str = "a-user-whose-name-is-long-enough-to-fill-parts-";
    // About two fifths of the users the generator emits by its end (about 550 000): enough
    // that each subtask's state fills several parts, and still part-way through the input.
    const SAVEPOINT_USERS: usize = 250_000;
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (storage_uri, s3) = checkpoint_storage(&rt, tmp.path(), "disk-savepoint");
    let out = tmp.path().join("out");
    let state = tmp.path().join("state");
    let yaml = |backend: &str, out: &Path, rate: u64| {
        job_yaml("spdedup", 2, &storage_uri, &s3, out, &state, rate)
            .replace(&format!("count: {COUNT}"), &format!("count: {COUNT_SP}"))
            .replace(
                &format!("cardinality: {USERS}, prefix: u-"),
                &format!("cardinality: {USERS_SP}, prefix: {PREFIX}"),
            )
            .replace("type: disk", &format!("type: {backend}"))
            .replace("interval: 200ms", "interval: 1s")
    };
    // The savepoint is taken once `users` distinct users are in the output (so at least as
    // many are in its state), not after a fixed time: a machine busy with other work runs the
    // job slower, and a savepoint taken by the clock would then hold too little state.
    let run = |yaml: String, opts: RunOptions, savepoint_at: Option<(&Path, usize)>| {
        rt.block_on(async move {
            let plan = weir_runtime::plan_source("spdedup.yaml", &yaml).unwrap();
            let running = start(plan, opts).await.unwrap();
            if let Some((out, users)) = savepoint_at {
                let waiting = std::time::Instant::now();
                while committed_lines(out) < users {
                    assert!(
                        waiting.elapsed() < Duration::from_secs(120),
                        "{} of {users} users in the output after 120 s",
                        committed_lines(out)
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                running
                    .requests
                    .send(Request::Stop { savepoint: true })
                    .await
                    .unwrap();
            }
            running.wait().await.unwrap()
        })
    };
    let Outcome::Stopped {
        savepoint: Some(sp),
    } = run(
        yaml("disk", &out, 200_000),
        RunOptions::default(),
        Some((&out, SAVEPOINT_USERS)),
    )
    else {
        panic!("no savepoint")
    };
    let partial = output(&out).len();

    // Its state files list parts, several per subtask, each in the savepoint's directory.
    let s3_spec = weir_crds::S3Spec {
        endpoint: std::env::var("WEIR_S3_ENDPOINT").ok(),
        region: Some("us-east-1".into()),
        path_style: Some(true),
        ca_pem_env: None,
    };
    let r = rt.block_on(restore::from_uri(&sp, &s3_spec)).unwrap();
    for (task, s) in r.tasks.iter().filter(|(_, s)| !s.parts.is_empty()) {
        assert!(s.parts.len() >= 2, "{task}: {} parts", s.parts.len());
        assert!(s.operators.iter().all(|(_, g)| g.is_empty()), "{task}");
    }
    let parts: usize = r.tasks.iter().map(|(_, s)| s.parts.len()).sum();
    assert!(parts >= 4, "{parts} parts in the savepoint");
    let parts_bytes: u64 = r.metadata.state_files.iter().map(|f| f.parts_bytes).sum();
    assert!(parts_bytes > 8 << 20, "{parts_bytes} bytes of parts");

    // Two branches from it, each with a copy of the output so far.
    let out_b = tmp.path().join("out-b");
    common::branch_output(&out, &out_b);
    let want: BTreeSet<String> = (0..COUNT_SP)
        .map(|i| format!("{PREFIX}{}", common::rnd(1, i) % USERS_SP))
        .collect();
    assert!(
        partial >= SAVEPOINT_USERS && partial < want.len(),
        "the savepoint should be part-way: {partial} of {} users before it",
        want.len()
    );
    for (backend, p, out) in [("memory", 3u32, &out), ("disk", 1, &out_b)] {
        let opts = common::from_savepoint(&sp, p, format!("{storage_uri}-{backend}"));
        let ended = run(yaml(backend, out, 1_000_000_000), opts, None);
        assert_eq!(ended, Outcome::Finished, "{backend}");
        let got = output(out);
        let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).take(3).collect();
        assert!(
            twice.is_empty(),
            "{backend} at {p}: users emitted twice across the savepoint: {twice:?}"
        );
        let got: BTreeSet<String> = got.into_keys().collect();
        assert!(
            got == want,
            "{backend} at {p}: {} users emitted, the oracle {}",
            got.len(),
            want.len()
        );
    }
}
