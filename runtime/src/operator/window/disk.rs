//! Per-key windows on disk (the `disk` state backend), for the per-key layout in
//! [`super::session`].
//!
//! Family [`WINDOWS`] maps (key, start) to the window's end and accumulators; family
//! [`TIMERS`] orders (end, start, key) within each key group, so that a watermark finds what
//! it fires by scanning each group's front. A batch reads each key it touches once, merges in
//! memory ([`Work`]) and writes the key's windows back in one write.

use foldhash::{HashMap, HashMapExt};

use super::{KeyWindows, Window};
use crate::error::{Error, Result};
use crate::ids::Millis;
use crate::keys::key_group;
use crate::operator::{Capture, KeyedPieces, KeyedState, PieceSink};
use crate::state::disk::{
    DiskState, Family, Fetched, Place, from_ordered, length_prefixed, ordered,
    split_length_prefixed,
};

const FAMILIES: &[Family] = &[Family::kept("windows"), Family::kept("timers")];
const WINDOWS: usize = 0;
const TIMERS: usize = 1;

/// The windows of one subtask in a store.
pub(super) struct DiskWindows {
    state: DiskState,
    /// No window ends before this (a lower bound on `end - 1`): watermarks below it need no
    /// scan.
    next_fire: Millis,
}

/// The keys one batch touched: their windows as read, then as merged.
pub(super) struct Work {
    keys: HashMap<Vec<u8>, Touched>,
}

struct Touched {
    kg: u32,
    /// `(start, end)` of the windows stored before the batch.
    before: Vec<(Millis, Millis)>,
    windows: KeyWindows,
}

fn corrupt(message: impl Into<String>) -> Error {
    Error::State {
        operator: "window".into(),
        message: message.into(),
    }
}

fn window_key(key: &[u8], start: Millis) -> Vec<u8> {
    let mut k = length_prefixed(key, 8);
    k.extend_from_slice(&ordered(start));
    k
}

/// The key and start of a [`WINDOWS`] entry.
fn split_window_key(k: &[u8]) -> Result<(&[u8], Millis)> {
    let short = || corrupt("a stored window key is cut short");
    let (key, rest) = split_length_prefixed(k).ok_or_else(short)?;
    Ok((key, from_ordered(rest).ok_or_else(short)?))
}

fn timer_key(end: Millis, start: Millis, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + key.len());
    k.extend_from_slice(&ordered(end));
    k.extend_from_slice(&ordered(start));
    k.extend_from_slice(key);
    k
}

fn decode_window(v: &[u8]) -> Result<Window> {
    postcard::from_bytes(v).map_err(|e| corrupt(format!("a stored window does not decode: {e}")))
}

fn encode_window(w: &Window) -> Result<Vec<u8>> {
    postcard::to_stdvec(w).map_err(|e| corrupt(e.to_string()))
}

impl DiskWindows {
    pub(super) fn create(place: Place) -> Result<Self> {
        Ok(Self {
            state: DiskState::create(place, FAMILIES)?,
            next_fire: Millis::MAX,
        })
    }

    /// Start a batch.
    pub(super) fn batch(&self) -> Work {
        Work {
            keys: HashMap::new(),
        }
    }

    /// Every window of `key` in key group `kg`, by start.
    fn read(store: &weir_state::Store, kg: u32, key: &[u8]) -> Result<KeyWindows> {
        let mut windows = KeyWindows::new();
        for entry in store.scan_prefix(WINDOWS, kg, &length_prefixed(key, 0))? {
            let (k, v) = entry?;
            let (_, start) = split_window_key(&k)?;
            windows.insert(start, decode_window(&v)?);
        }
        Ok(windows)
    }

    /// Write what a batch changed: each touched key's windows replace those it had.
    pub(super) fn write(&mut self, work: Work) -> Result<()> {
        let mut batch = weir_state::Batch::default();
        for (key, t) in work.keys {
            for (start, end) in &t.before {
                if !t.windows.contains_key(start) {
                    batch.delete(WINDOWS, t.kg, &window_key(&key, *start));
                }
                batch.delete(TIMERS, t.kg, &timer_key(*end, *start, &key));
            }
            for (start, w) in &t.windows {
                batch.put(WINDOWS, t.kg, &window_key(&key, *start), &encode_window(w)?);
                batch.put(TIMERS, t.kg, &timer_key(w.end, *start, &key), &[]);
                self.next_fire = self.next_fire.min(w.end - 1);
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        Ok(self.state.store().write(batch)?)
    }

    /// Remove and return every window that `watermark` completes, in the order the memory
    /// layout fires them: by end, start, key.
    pub(super) fn fire(&mut self, watermark: Millis) -> Result<Vec<(Vec<u8>, Millis, Window)>> {
        if watermark < self.next_fire {
            return Ok(Vec::new());
        }
        let groups = self.state.groups();
        let store = self.state.store();
        let mut next = Millis::MAX;
        let mut fired = Vec::new();
        for kg in groups.first..=groups.last {
            let mut batch = weir_state::Batch::default();
            for entry in store.scan_from(TIMERS, kg, &[])? {
                let (k, _) = entry?;
                let short = || corrupt("a stored timer is cut short");
                let end = from_ordered(&k).ok_or_else(short)?;
                if end - 1 > watermark {
                    next = next.min(end - 1);
                    break;
                }
                let start = from_ordered(k.get(8..).ok_or_else(short)?).ok_or_else(short)?;
                let key = k.get(16..).ok_or_else(short)?;
                let wk = window_key(key, start);
                let window = store
                    .get(WINDOWS, kg, &wk)?
                    .ok_or_else(|| corrupt("a timer without its window"))?;
                batch.delete(TIMERS, kg, &k);
                batch.delete(WINDOWS, kg, &wk);
                fired.push((key.to_vec(), start, decode_window(&window)?));
            }
            if !batch.is_empty() {
                store.write(batch)?;
            }
        }
        self.next_fire = next;
        fired.sort_by(|a, b| (a.2.end, a.1, &a.0).cmp(&(b.2.end, b.1, &b.0)));
        Ok(fired)
    }

    /// Every key's windows, streamed per key group as the memory layout encodes them (a key's
    /// windows are adjacent in the store: its key is length-prefixed).
    fn encode_store(
        store: &weir_state::Store,
        groups: weir_state::KeyGroups,
        sink: PieceSink<'_>,
    ) -> Result<()> {
        let mut pieces = KeyedPieces::new("window", sink);
        let mut current: Option<(u32, Vec<u8>, KeyWindows)> = None;
        for entry in store.scan(WINDOWS, groups)? {
            let (kg, k, v) = entry?;
            let (key, start) = split_window_key(&k)?;
            let window = decode_window(&v)?;
            match &mut current {
                Some((_, last, windows)) if last.as_slice() == key => {
                    windows.insert(start, window);
                }
                _ => {
                    if let Some((kg, key, windows)) = current.take() {
                        pieces.push(kg, &key, &windows)?;
                    }
                    current = Some((kg, key.to_vec(), KeyWindows::from([(start, window)])));
                }
            }
        }
        if let Some((kg, key, windows)) = current {
            pieces.push(kg, &key, &windows)?;
        }
        pieces.finish()
    }

    pub(super) fn encode(&self) -> Result<KeyedState> {
        crate::operator::gather(|sink| {
            Self::encode_store(self.state.store(), self.state.groups(), sink)
        })
    }

    /// See [`crate::operator::Operator::capture`]: a savepoint streams a frozen copy off the
    /// task; a checkpoint hard-links the store for the uploader.
    pub(super) fn capture(&self, portable: bool) -> Result<Capture> {
        crate::operator::capture_store(&self.state, portable, FAMILIES, Self::encode_store)
    }

    /// Store restored windows (from a savepoint, or a checkpoint of the memory backend).
    pub(super) fn put_all(
        &mut self,
        restored: Vec<(Vec<u8>, KeyWindows)>,
        max_parallelism: u32,
    ) -> Result<()> {
        let mut work = self.batch();
        for (key, windows) in restored {
            let kg = key_group(&key, max_parallelism);
            let before = Self::read(self.state.store(), kg, &key)?
                .iter()
                .map(|(s, w)| (*s, w.end))
                .collect();
            work.keys.insert(
                key,
                Touched {
                    kg,
                    before,
                    windows,
                },
            );
        }
        self.write(work)
    }

    /// Where the store lives, closing it (a restored store opens in its place).
    pub(super) fn into_place(self) -> Place {
        self.state.place().clone()
    }

    /// A store restored at `place` from downloaded checkpoints.
    pub(super) fn restored(place: Place, fetched: Vec<Fetched>) -> Result<Self> {
        Ok(Self {
            state: DiskState::restore(place, FAMILIES, fetched)?,
            // Unknown until a scan: the first watermark looks.
            next_fire: Millis::MIN,
        })
    }

    /// The first stored key and its windows (or nothing): a sample to check a restored
    /// store against the job.
    pub(super) fn sample(&self) -> Result<(Vec<Vec<u8>>, Vec<Window>)> {
        let store = self.state.store();
        let Some(first) = store.scan(WINDOWS, self.state.groups())?.next() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let (_, k, v) = first?;
        let (key, _) = split_window_key(&k)?;
        Ok((vec![key.to_vec()], vec![decode_window(&v)?]))
    }
}

impl Work {
    /// The windows of `key` as this batch has them, read from the store on first touch.
    pub(super) fn windows(
        &mut self,
        disk: &DiskWindows,
        key: &[u8],
        max_parallelism: u32,
    ) -> Result<&mut KeyWindows> {
        if !self.keys.contains_key(key) {
            let kg = key_group(key, max_parallelism);
            let windows = DiskWindows::read(disk.state.store(), kg, key)?;
            let before = windows.iter().map(|(s, w)| (*s, w.end)).collect();
            self.keys.insert(
                key.to_vec(),
                Touched {
                    kg,
                    before,
                    windows,
                },
            );
        }
        self.keys
            .get_mut(key)
            .map(|t| &mut t.windows)
            .ok_or_else(|| Error::internal("window batch lost a key"))
    }
}
