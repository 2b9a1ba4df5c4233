//! A bounded pre-pass over an encoded gallery body: walks the postcard bytes without
//! allocating, so a crafted file cannot make the decoder allocate more than a small multiple
//! of its own size.
//!
//! Consumes the body bytes of a format-1 gallery (after the header, before the CRC); produces
//! the table sizes ([`Skim`]) or a sentence naming the first table that does not fit: a count
//! that claims more entries than the bytes that remain could hold, or tables (with the search
//! index their image count and key widths call for) whose decoded form would take more than
//! [`MEMORY_FACTOR`] times the file's size in memory (an empty name costs
//! one byte on disk but a hundred in memory: a 100 MB file of empty names would need ~10 GB).
//!
//! postcard lays out the body as: enum tag, then each field in order; a string or byte blob
//! is a varint length and the bytes, a sequence a varint count and its items, integers
//! varints, `bool` one byte, `Option` a tag byte and the value.

use super::{quant, Storage};

/// The decoded tables and the search factors may take at most this many times the file's
/// size in memory (plus [`MEMORY_SLACK`]). A real gallery needs little more than 1x (the
/// stored vectors and one f32 factor per vector).
pub const MEMORY_FACTOR: u64 = 6;

/// Fixed allowance for small galleries, whose per-entry overheads dominate: 4 MiB.
pub const MEMORY_SLACK: u64 = 4 << 20;

/// Estimated memory per entry of a named table beyond the name itself: the `String` in the
/// table, its copy in the name lookup with the hash slot, and the duplicate check's slot.
const PER_NAME: u64 = 96;
/// Estimated memory per image beyond its id and genes (the entry, the lookups).
const PER_IMAGE: u64 = 160;

/// Decoded bytes of one syndrome's PP4 thresholds (four `Option<f32>`).
const PER_PP4: u64 = 32;

/// Table sizes found by [`skim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skim {
    /// Rows of each table: keys, syndromes, genes, subjects, images.
    pub counts: [u64; 5],
    /// Length of the embeddings blob.
    pub embedding_bytes: u64,
    /// Estimated memory of the decoded gallery with its search index, in bytes.
    pub memory_bytes: u64,
}

/// A cursor over the body that never reads past the end.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.at) as u64
    }

    fn byte(&mut self, what: &str) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| format!("the file ends inside {what}"))?;
        self.at += 1;
        Ok(b)
    }

    /// A postcard varint of at most `max_bytes` bytes (5 for u32, 10 for u64/usize).
    fn varint(&mut self, max_bytes: u32, what: &str) -> Result<u64, String> {
        let mut v: u64 = 0;
        for i in 0..max_bytes {
            let b = self.byte(what)?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("{what}: a number is encoded with too many bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        u32::try_from(self.varint(5, what)?).map_err(|_| format!("{what}: a number above 2^32"))
    }

    /// Skips `n` bytes.
    fn skip(&mut self, n: u64, what: &str) -> Result<(), String> {
        if n > self.remaining() {
            return Err(format!(
                "{what} claims {n} bytes but only {} remain",
                self.remaining()
            ));
        }
        self.at += n as usize;
        Ok(())
    }

    /// Skips a string; returns its length.
    fn string(&mut self, what: &str) -> Result<u64, String> {
        let n = self.varint(10, what)?;
        self.skip(n, what)?;
        Ok(n)
    }

    fn bool(&mut self, what: &str) -> Result<(), String> {
        match self.byte(what)? {
            0 | 1 => Ok(()),
            b => Err(format!("{what}: {b} is not a boolean")),
        }
    }

    /// An `Option<f32>`: a tag byte, then four little-endian bytes.
    fn option_f32(&mut self, what: &str) -> Result<(), String> {
        match self.byte(what)? {
            0 => Ok(()),
            1 => self.skip(4, what),
            b => Err(format!("{what}: bad option tag {b}")),
        }
    }

    fn option_u32(&mut self, what: &str) -> Result<(), String> {
        match self.byte(what)? {
            0 => Ok(()),
            1 => self.u32(what).map(|_| ()),
            b => Err(format!("{what}: bad option tag {b}")),
        }
    }

    /// A sequence count, checked against the bytes that remain: every item takes at least
    /// `min_item` bytes.
    fn count(&mut self, table: &str, min_item: u64) -> Result<u64, String> {
        let n = self.varint(10, table)?;
        let fits = self.remaining() / min_item.max(1);
        if n > fits {
            return Err(format!(
                "the {table} table claims {n} entries but the {} bytes that remain hold at most {fits}",
                self.remaining()
            ));
        }
        Ok(n)
    }
}

/// Walks a body (`Body::V1`, or `Body::V2` with its PP4 table) and checks its tables against the remaining bytes,
/// each other and the memory budget for a file of `file_len` bytes. The error is a sentence
/// that starts with "cannot decode the gallery body" (the bytes do not hold a body) or
/// "inconsistent tables" (they do, but the tables disagree or would not fit in memory).
pub fn skim(body: &[u8], file_len: u64) -> Result<Skim, String> {
    let tables = |e: String| format!("inconsistent tables: {e}");
    let (widths, storage, counts, blob, memory) =
        walk(body).map_err(|e| format!("cannot decode the gallery body: {e}"))?;
    check(widths, storage, counts, blob, memory, file_len).map_err(tables)
}

type Walked = (Vec<u32>, Storage, [u64; 5], u64, u64);

/// Walks the body; returns the key widths, the storage, the table counts, the blob length and
/// the memory estimate of everything but the embeddings and the index.
fn walk(body: &[u8]) -> Result<Walked, String> {
    let mut c = Cursor { bytes: body, at: 0 };
    // 0: format 1; 1: format 2 (a PP4 table after the syndromes)
    let with_pp4 = match c.u32("the body tag")? {
        0 => false,
        1 => true,
        _ => return Err("unknown body layout".into()),
    };
    c.string("the bundle id")?;
    c.string("the gallery version")?;
    c.u32("the revision")?;
    // key: model name (>= 1 byte), flip, gray, width (>= 1 byte)
    let keys = c.count("keys", 4)?;
    let mut widths: Vec<u32> = Vec::new();
    let mut memory: u64 = 0;
    for _ in 0..keys {
        let name = c.string("a key's model name")?;
        c.bool("a key's flip flag")?;
        c.bool("a key's gray flag")?;
        widths.push(c.u32("a key's width")?);
        memory = memory.saturating_add(PER_NAME + 2 * name);
    }
    let storage = match c.u32("the storage")? {
        0 => Storage::F16,
        1 => Storage::I8,
        s => return Err(format!("unknown vector storage {s}")),
    };
    let mut counts = [keys, 0, 0, 0, 0];
    // syndromes and genes: name (>= 1 byte), option tag (>= 1 byte)
    for (slot, table) in [(1usize, "syndromes"), (2, "genes")] {
        let n = c.count(table, 2)?;
        for _ in 0..n {
            let name = c.string(table)?;
            c.option_u32(table)?;
            memory = memory.saturating_add(PER_NAME + 2 * name);
        }
        counts[slot] = n;
        if slot == 1 && with_pp4 {
            // four optional thresholds (>= 1 byte each) per syndrome
            let pp4 = c.count("PP4 thresholds", 4)?;
            for _ in 0..pp4 {
                for _ in 0..4 {
                    c.option_f32("PP4 thresholds")?;
                }
            }
            memory = memory.saturating_add(PER_PP4.saturating_mul(pp4));
        }
    }
    let subjects = c.count("subjects", 1)?;
    for _ in 0..subjects {
        let name = c.string("subjects")?;
        memory = memory.saturating_add(PER_NAME + 2 * name);
    }
    counts[3] = subjects;
    // image: id (>= 1 byte), subject, syndrome (>= 1 byte each), gene count (>= 1 byte)
    let images = c.count("images", 4)?;
    for _ in 0..images {
        let id = c.string("images")?;
        c.u32("an image's subject")?;
        c.u32("an image's syndrome")?;
        let genes = c.count("an image's genes", 1)?;
        for _ in 0..genes {
            c.u32("an image's genes")?;
        }
        memory = memory.saturating_add(PER_IMAGE + 2 * id + 4 * genes);
    }
    counts[4] = images;
    let blob = c.varint(10, "the embeddings")?;
    c.skip(blob, "the embeddings")?;
    if c.remaining() != 0 {
        return Err(format!("{} unexpected bytes after the body", c.remaining()));
    }
    Ok((widths, storage, counts, blob, memory))
}

/// The memory budget: the decoded tables, the blob and the f32 factors the images and keys
/// call for (whether the blob matches them is the decoder's next check, made
/// before the index is allocated).
fn check(
    widths: Vec<u32>,
    storage: Storage,
    counts: [u64; 5],
    blob: u64,
    mut memory: u64,
    file_len: u64,
) -> Result<Skim, String> {
    let images = counts[4];
    for &w in &widths {
        quant::vector_bytes(storage, w).ok_or("a key width is impossibly large")?;
    }
    // the stored blob, plus one f32 normalising factor per stored vector
    memory = memory.saturating_add(blob).saturating_add(
        (widths.len() as u64)
            .saturating_mul(images)
            .saturating_mul(4),
    );
    let budget = file_len
        .saturating_mul(MEMORY_FACTOR)
        .saturating_add(MEMORY_SLACK);
    if memory > budget {
        return Err(format!(
            "the tables ({} keys, {} syndromes, {} genes, {} subjects, {} images) would take \
             about {} MB in memory, more than {MEMORY_FACTOR} times the file's {} bytes; the \
             file is crafted or corrupt",
            counts[0],
            counts[1],
            counts[2],
            counts[3],
            counts[4],
            memory / 1_000_000,
            file_len
        ));
    }
    Ok(Skim {
        counts,
        embedding_bytes: blob,
        memory_bytes: memory,
    })
}
