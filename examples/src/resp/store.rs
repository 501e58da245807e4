//! The key space behind [`super::Resp`]: one store shared by every connection and thread, split
//! into shards, each behind a lock of its own, so that threads working on different keys do not
//! wait for each other.
//!
//! A key's bytes are hashed once per command ([`Store::key`]); the same hash picks the shard and
//! finds the key in it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use asynchat_core::Bytes;

use super::list::List;
use hashbrown::hash_table::Entry as Slot;
use hashbrown::HashTable;

/// How often the store's expiry cycle runs once any key was given a deadline (Redis's `hz 10`).
/// A cycle with nothing due costs a lock and a look at each shard's earliest deadline.
pub const EXPIRE_EVERY: Duration = Duration::from_millis(100);

/// The most deadlines one cycle takes up (each drops its key, unless the key was since deleted
/// or given another deadline), so that no shard is locked for long; more due are left to a
/// cycle right after.
pub const EXPIRE_PER_CYCLE: usize = 1000;

/// The most shards a store is split into.
pub const MAX_SHARDS: usize = 64;

/// What a key holds: Redis's string, list, set and hash types. The aggregates are boxed, so
/// that a string key (most keys) carries no room for them: every entry would otherwise grow by
/// the 48 bytes of a set's header.
#[derive(Debug, Clone)]
#[allow(
    clippy::box_collection,
    reason = "the box keeps the header of an aggregate out of every string entry"
)]
pub(super) enum Value {
    Str(Bytes),
    List(Box<List>),
    Set(Box<HashSet<Bytes>>),
    Hash(Box<HashMap<Bytes, Bytes>>),
}

impl Value {
    /// An aggregate left empty is no key at all, as in Redis.
    pub(super) fn is_empty_aggregate(&self) -> bool {
        match self {
            Self::Str(_) => false,
            Self::List(l) => l.is_empty(),
            Self::Set(s) => s.is_empty(),
            Self::Hash(h) => h.is_empty(),
        }
    }
}

/// A key's value and deadline.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) value: Value,
    pub(super) expires: Option<Instant>,
}

impl Entry {
    pub(super) fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

/// The key space. Expired keys are dropped when touched, by `DBSIZE`, and by an active expiry
/// cycle, as Redis runs one: every [`EXPIRE_EVERY`] the keys whose deadline has passed are
/// dropped, so that keys never read again do not stay. There is one cycle for the whole store,
/// run by whichever connection finds it due first: on the timer of a connection that set a
/// deadline, or after any connection's command. Only a server with no command and no such
/// connection left runs no cycle (and then nothing grows).
///
/// The keys are split into shards by their hash ([`Store::with_shards`]). A command on one key
/// locks one shard; a command on several (`MSET`, `MGET`, `DEL`, `EXISTS`) locks the shards
/// they fall in, in one order, all at once, so it is atomic as in Redis.
#[derive(Debug)]
pub struct Store {
    shards: Box<[Padded]>,
    hasher: RandomState,
    /// When the next expiry cycle is due, in nanoseconds from `epoch`; [`NO_CYCLE`] until a
    /// key is given a deadline. Claimed by one connection at a time.
    next_cycle: AtomicU64,
    epoch: Instant,
    /// The shard the next cycle starts at: each starts one further, so that deadlines piling
    /// up in one shard cannot use up every cycle's budget before the others are looked at.
    first_shard: AtomicUsize,
}

/// `Store::next_cycle` before any key had a deadline.
const NO_CYCLE: u64 = u64::MAX;

/// What [`Store::run_cycle_if_due`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cycle {
    /// Ran: whether more keys are due than it dropped, and whether any deadline is left.
    Ran { more_due: bool, any_left: bool },
    /// Not due (or run by another connection meanwhile): due next at this instant.
    NotDue(Instant),
}

/// A shard on a cache line pair of its own: two threads locking neighbouring shards would
/// otherwise write to one line.
#[derive(Debug)]
#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// A key's bytes with their hash.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hashed<'k> {
    bytes: &'k [u8],
    hash: u64,
}

impl Store {
    /// An empty store in one shard, ready to share: what a server on one thread wants.
    #[must_use]
    pub fn new() -> Arc<Self> {
        Self::with_shards(1)
    }

    /// An empty store split into `shards` (rounded up to a power of two, at most
    /// [`MAX_SHARDS`]): for a server on several threads, a few times their number keeps two
    /// threads from waiting on one lock most of the time. One shard costs nothing over an
    /// unsplit store; more make a command on several keys take a lock per shard they fall in.
    #[must_use]
    pub fn with_shards(shards: usize) -> Arc<Self> {
        let n = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        let hasher = RandomState::new();
        Arc::new(Self {
            shards: (0..n)
                .map(|_| Padded(Mutex::new(Shard::new(hasher.clone()))))
                .collect(),
            hasher,
            next_cycle: AtomicU64::new(NO_CYCLE),
            epoch: Instant::now(),
            first_shard: AtomicUsize::new(0),
        })
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(NO_CYCLE - 1)
    }

    /// A key was given a deadline at `now`: a cycle is due within [`EXPIRE_EVERY`].
    pub(super) fn schedule_cycle(&self, now: Instant) {
        self.next_cycle
            .fetch_min(self.nanos(now + EXPIRE_EVERY), Ordering::Relaxed);
    }

    /// Whether the expiry cycle is due at `now`: one atomic load, for every command.
    pub(super) fn cycle_due(&self, now: Instant) -> bool {
        // A store whose keys never had a deadline skips reading the clock's distance.
        let due = self.next_cycle.load(Ordering::Relaxed);
        due != NO_CYCLE && self.nanos(now) >= due
    }

    /// Runs the expiry cycle if it is due at `now` and no other connection claimed it first.
    pub(super) fn run_cycle_if_due(&self, now: Instant) -> Cycle {
        let due = self.next_cycle.load(Ordering::Relaxed);
        let next = self.nanos(now + EXPIRE_EVERY);
        let not_due = |due: u64| Cycle::NotDue(self.epoch + Duration::from_nanos(due.min(next)));
        if self.nanos(now) < due {
            return not_due(due);
        }
        if let Err(claimed) =
            self.next_cycle
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
        {
            return not_due(claimed);
        }
        let (more_due, any_left) = self.expire_due(now);
        if more_due {
            self.next_cycle
                .fetch_min(self.nanos(now), Ordering::Relaxed);
        }
        Cycle::Ran { more_due, any_left }
    }

    /// How many shards the keys are split into.
    #[must_use]
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// `bytes` with their hash, to look them up with.
    pub(super) fn key<'k>(&self, bytes: &'k [u8]) -> Hashed<'k> {
        Hashed {
            bytes,
            hash: hash(&self.hasher, bytes),
        }
    }

    fn index(&self, key: &Hashed<'_>) -> usize {
        // Bits the table inside a shard does not use: it takes its bucket from the low bits and
        // a tag from the top seven, so a shard picked by either would crowd its own table.
        (key.hash >> 32) as usize & (self.shards.len() - 1)
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        // Every command leaves its shard consistent before it could panic.
        self.shards[index]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The shard `key` is in, locked.
    pub(super) fn shard(&self, key: &Hashed<'_>) -> MutexGuard<'_, Shard> {
        self.lock(self.index(key))
    }

    /// The shards `keys` are in, each locked once, in index order so that two commands on
    /// several keys never wait for each other in a cycle.
    pub(super) fn lock_for(&self, keys: &[Hashed<'_>]) -> Locked<'_> {
        let wanted = keys.iter().fold(0u64, |set, k| set | 1 << self.index(k));
        self.lock_where(|i| wanted & 1 << i != 0)
    }

    /// Every shard, locked in index order.
    pub(super) fn lock_all(&self) -> Locked<'_> {
        self.lock_where(|_| true)
    }

    fn lock_where(&self, wanted: impl Fn(usize) -> bool) -> Locked<'_> {
        Locked {
            store: self,
            guards: (0..self.shards.len())
                .map(|i| wanted(i).then(|| self.lock(i)))
                .collect(),
        }
    }

    /// Runs the expiry cycle over every shard, one at a time: takes up to [`EXPIRE_PER_CYCLE`]
    /// deadlines that have passed. Whether more are due, and whether any deadline is left.
    fn expire_due(&self, now: Instant) -> (bool, bool) {
        let mut budget = EXPIRE_PER_CYCLE;
        let (mut more_due, mut any_left) = (false, false);
        let n = self.shards.len();
        let first = self.first_shard.fetch_add(1, Ordering::Relaxed);
        for index in (0..n).map(|i| first.wrapping_add(i) % n) {
            let mut shard = self.lock(index);
            budget -= shard.expire_due(now, budget);
            more_due |= shard.next_deadline().is_some_and(|at| at <= now);
            any_left |= shard.next_deadline().is_some();
        }
        (more_due, any_left)
    }

    /// The shard `bytes` fall in.
    #[cfg(test)]
    pub(super) fn shard_of(&self, bytes: &[u8]) -> usize {
        self.index(&self.key(bytes))
    }

    /// Keys held, expired ones included (reading them would drop them).
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.lock_all().shards().map(|s| s.keys.len()).sum()
    }

    /// Deadlines held, stale ones included.
    #[cfg(test)]
    pub(super) fn deadlines(&self) -> usize {
        self.lock_all().shards().map(|s| s.deadlines.len()).sum()
    }
}

/// The hash of a key's bytes. Written as one slice, without the length `Hash for [u8]` writes
/// first: only whole keys are hashed, so no two keys' bytes run into each other, and the
/// hasher runs once instead of twice.
fn hash(hasher: &RandomState, bytes: &[u8]) -> u64 {
    let mut state = hasher.build_hasher();
    state.write(bytes);
    state.finish()
}

/// Some shards of a store, locked.
pub(super) struct Locked<'s> {
    store: &'s Store,
    guards: Vec<Option<MutexGuard<'s, Shard>>>,
}

impl<'s> Locked<'s> {
    /// The shard `key` is in. It must be one of the keys the shards were locked for: a
    /// command names its keys before it locks them.
    pub(super) fn shard(&mut self, key: &Hashed<'_>) -> &mut Shard {
        self.guards[self.store.index(key)]
            .as_deref_mut()
            .expect("the shards of every key a command names are locked before it runs")
    }

    /// Every shard locked.
    pub(super) fn shards(&mut self) -> impl Iterator<Item = &mut Shard> + use<'_, 's> {
        self.guards.iter_mut().filter_map(|g| g.as_deref_mut())
    }
}

/// One shard: its keys, and their deadlines in order. Made only by its store, with the
/// store's hasher: a shard with a hasher of its own would place keys where `Store::key` does
/// not look.
#[derive(Debug)]
pub(super) struct Shard {
    keys: HashTable<(Key, Entry)>,
    /// Every deadline set, earliest first, with the key's hash. An entry whose key was since
    /// deleted, overwritten or given another deadline is stale: dropped when it comes up, or
    /// when the heap is rebuilt. A deadline added never takes it past twice the keys plus
    /// [`EXPIRE_PER_CYCLE`] (keys deleted since leave their entries until they come up or the
    /// next deadline is added).
    deadlines: BinaryHeap<Reverse<(Instant, u64, Key)>>,
    /// The store's hasher, for the table to place keys again as it grows.
    hasher: RandomState,
}

impl Shard {
    fn new(hasher: RandomState) -> Self {
        Self {
            keys: HashTable::new(),
            deadlines: BinaryHeap::new(),
            hasher,
        }
    }

    /// Looks `key` up, dropping it if it has expired: one lookup either way.
    pub(super) fn live(&mut self, key: Hashed<'_>, now: Instant) -> Option<&mut Entry> {
        match self
            .keys
            .find_entry(key.hash, |(k, _)| k.as_bytes() == key.bytes)
        {
            Ok(found) if !found.get().1.live(now) => {
                found.remove();
                None
            }
            Ok(found) => Some(&mut found.into_mut().1),
            Err(_) => None,
        }
    }

    /// The live entry at `key`, made from `new` if there is none: one lookup.
    pub(super) fn live_or_insert(
        &mut self,
        key: Hashed<'_>,
        now: Instant,
        new: impl FnOnce() -> Value,
    ) -> &mut Entry {
        let hasher = &self.hasher;
        let slot = self.keys.entry(
            key.hash,
            |(k, _)| k.as_bytes() == key.bytes,
            |(k, _)| hash(hasher, k.as_bytes()),
        );
        let fresh = || Entry {
            value: new(),
            expires: None,
        };
        match slot {
            Slot::Occupied(found) => {
                let (_, entry) = found.into_mut();
                if !entry.live(now) {
                    *entry = fresh();
                }
                entry
            }
            Slot::Vacant(absent) => &mut absent.insert((Key::new(key.bytes), fresh())).into_mut().1,
        }
    }

    /// Removes `key`, expired or not.
    pub(super) fn remove(&mut self, key: Hashed<'_>) -> Option<Entry> {
        let found = self
            .keys
            .find_entry(key.hash, |(k, _)| k.as_bytes() == key.bytes)
            .ok()?;
        Some(found.remove().0 .1)
    }

    /// Sets `key` to the string `value`: an existing key keeps its own bytes, and its old
    /// value's buffer is reused when nothing else holds it and it fits (a counter rewritten by
    /// `INCR`, a key `SET` again with a value of about the same size). `shared` is the value as
    /// a buffer the store may keep as it is.
    pub(super) fn put(
        &mut self,
        key: Hashed<'_>,
        value: &[u8],
        shared: Option<Bytes>,
        expires: Option<Instant>,
    ) {
        let hasher = &self.hasher;
        let slot = self.keys.entry(
            key.hash,
            |(k, _)| k.as_bytes() == key.bytes,
            |(k, _)| hash(hasher, k.as_bytes()),
        );
        let entry = match slot {
            Slot::Vacant(absent) => {
                let value = shared.unwrap_or_else(|| Bytes::copy_from_slice(value));
                let entry = Entry {
                    value: Value::Str(value),
                    expires,
                };
                absent.insert((Key::new(key.bytes), entry));
                return;
            }
            Slot::Occupied(found) => &mut found.into_mut().1,
        };
        entry.expires = expires;
        let old = std::mem::replace(&mut entry.value, Value::Str(Bytes::new()));
        let new = match (shared, old) {
            (Some(shared), _) => shared,
            (None, Value::Str(old)) => match old.try_into_mut() {
                Ok(mut buf)
                    if buf.capacity() >= value.len() && buf.capacity() <= 2 * value.len() + 64 =>
                {
                    buf.clear();
                    buf.extend_from_slice(value);
                    buf.freeze()
                }
                _ => Bytes::copy_from_slice(value),
            },
            (None, _) => Bytes::copy_from_slice(value),
        };
        entry.value = Value::Str(new);
    }

    /// Notes that `key` expires at `at`, for the expiry cycle.
    pub(super) fn add_deadline(&mut self, at: Instant, key: Hashed<'_>) {
        self.deadlines
            .push(Reverse((at, key.hash, Key::new(key.bytes))));
        if self.deadlines.len() > 2 * self.keys.len() + EXPIRE_PER_CYCLE {
            // Mostly stale (one key given a deadline again and again): rebuilt from the keys.
            let hasher = &self.hasher;
            self.deadlines = self
                .keys
                .iter()
                .filter_map(|(k, e)| {
                    let at = e.expires?;
                    Some(Reverse((at, hash(hasher, k.as_bytes()), k.clone())))
                })
                .collect();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Takes up to `budget` deadlines that have passed, dropping their keys; how many it took.
    fn expire_due(&mut self, now: Instant, budget: usize) -> usize {
        for used in 0..budget {
            if self.next_deadline().is_none_or(|at| at > now) {
                return used;
            }
            let Some(Reverse((at, hash, key))) = self.deadlines.pop() else {
                return used;
            };
            if let Ok(found) = self
                .keys
                .find_entry(hash, |(k, _)| k.as_bytes() == key.as_bytes())
            {
                if found.get().1.expires == Some(at) {
                    found.remove();
                }
            }
        }
        budget
    }

    /// Drops every expired key; how many keys are left.
    pub(super) fn live_len(&mut self, now: Instant) -> usize {
        self.keys.retain(|(_, e)| e.live(now));
        self.keys.len()
    }

    /// Drops every key.
    pub(super) fn clear(&mut self) {
        self.keys.clear();
        self.deadlines.clear();
    }
}

/// The longest key held in the table itself.
const INLINE_KEY: usize = 22;

/// A key as the store holds it: a short one (most keys) inline, so that a lookup compares it
/// where the table's probe already is instead of behind a pointer, in memory of its own that a
/// large key space keeps out of the cache; a longer one boxed. 24 bytes either way.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Boxed(Box<[u8]>),
}

impl Key {
    fn new(key: &[u8]) -> Self {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= INLINE_KEY => {
                let mut bytes = [0; INLINE_KEY];
                bytes[..key.len()].copy_from_slice(key);
                Self::Inline { len, bytes }
            }
            _ => Self::Boxed(key.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Boxed(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_bytes().escape_ascii().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_inline_and_boxed_are_found_by_their_bytes_in_any_shard() {
        assert_eq!(std::mem::size_of::<Key>(), 24);
        let keys: [&[u8]; 5] = [
            b"",
            b"k",
            &[b'x'; INLINE_KEY],
            &[b'y'; INLINE_KEY + 1],
            &[0; 300],
        ];
        for shards in [1, 4, MAX_SHARDS] {
            let store = Store::with_shards(shards);
            let now = Instant::now();
            for (i, key) in keys.iter().enumerate() {
                assert_eq!(Key::new(key).as_bytes(), *key);
                let key = store.key(key);
                store.shard(&key).put(key, &[i as u8], None, None);
            }
            for (i, key) in keys.iter().enumerate() {
                let key = store.key(key);
                let mut shard = store.shard(&key);
                let Some(Entry {
                    value: Value::Str(v),
                    ..
                }) = shard.live(key, now)
                else {
                    panic!("{key:?} not found in {shards} shards");
                };
                assert_eq!(v[..], [i as u8]);
            }
            let missing = store.key(b"kk");
            assert!(store.shard(&missing).live(missing, now).is_none());
            assert_eq!(store.held(), keys.len());
        }
    }

    #[test]
    fn shards_are_a_power_of_two_up_to_the_most() {
        assert_eq!(Store::new().shards(), 1);
        assert_eq!(Store::with_shards(0).shards(), 1);
        assert_eq!(Store::with_shards(3).shards(), 4);
        assert_eq!(Store::with_shards(1000).shards(), MAX_SHARDS);
    }

    #[test]
    fn keys_spread_over_every_shard() {
        let store = Store::with_shards(16);
        for i in 0..1600 {
            let key = format!("key:{i}");
            let key = store.key(key.as_bytes());
            store.shard(&key).put(key, b"v", None, None);
        }
        let mut all = store.lock_all();
        let sizes: Vec<usize> = all.shards().map(|s| s.keys.len()).collect();
        assert!(
            sizes.iter().all(|&n| (50..=150).contains(&n)),
            "1600 keys over 16 shards: {sizes:?}"
        );
    }

    #[test]
    fn a_table_grown_in_a_shard_still_finds_every_key() {
        let store = Store::with_shards(4);
        let now = Instant::now();
        for i in 0..10_000u32 {
            let bytes = i.to_be_bytes();
            let key = store.key(&bytes);
            store.shard(&key).put(key, &bytes, None, None);
        }
        for i in 0..10_000u32 {
            let bytes = i.to_be_bytes();
            let key = store.key(&bytes);
            let mut shard = store.shard(&key);
            assert!(
                matches!(shard.live(key, now), Some(Entry { value: Value::Str(v), .. }) if v[..] == bytes),
                "key {i}"
            );
        }
    }
}
