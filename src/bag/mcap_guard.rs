//! Checks the lengths nested inside MCAP records before the `mcap` crate
//! parses them.
//!
//! mcap 0.26 bounds each record's own length (`record_length_limit`), but
//! inside a record it trusts the u32 length prefixes of strings, byte arrays
//! and maps: binrw reserves the declared size before it reads, so a 23 KB
//! file could make it allocate 543 MB (found by fuzzing, kept in
//! `fuzz/findings/mcap_bag_oom_543MB`). Here every nested length is checked
//! against the bytes its record really holds, with the field layouts of the
//! MCAP specification (<https://mcap.dev/spec>); compressed chunks are
//! unpacked (at most [`CHUNK_LIMIT`]) and their records checked the same way.
//! A chunk cut off by the end of the file is refused: the linear reader
//! parses a chunk's records as they arrive, before the chunk is whole.
//!
//! Used on the summary section before `SummaryReader` sees it, and on the
//! whole file before the linear scan of an unindexed file. The indexed reader
//! needs no check: it reads message records only, whose header has no
//! nested lengths.

/// Largest chunk (compressed or not) or record the reader agrees to load:
/// far above any real chunk (rosbag2 and we write ~1 MiB, or one message:
/// a raw 4K image is 25 MB), and it caps what a small file can make the
/// reader allocate.
pub(super) const CHUNK_LIMIT: usize = 128 << 20;

const MAGIC: &[u8; 8] = b"\x89MCAP0\r\n";
const OP_FOOTER: u8 = 0x02;
const OP_CHUNK: u8 = 0x06;
/// opcode (1) + length (8) + summary_start, summary_offset_start (8 + 8) + summary_crc (4)
const FOOTER_RECORD_LEN: usize = 1 + 8 + 20;

/// Where a record's nested lengths do not fit it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed MCAP record (opcode 0x{opcode:02x}) at byte {offset}: {reason}")]
pub struct Malformed {
    /// Offset of the record's opcode in the checked bytes (for records
    /// inside a chunk: of the chunk record).
    pub offset: usize,
    pub opcode: u8,
    pub reason: String,
}

/// One field of a record, as laid out on disk (little endian).
#[derive(Clone, Copy)]
enum Field {
    /// Integers and timestamps: this many bytes.
    Fixed(usize),
    /// u32 length + UTF-8 bytes.
    Str,
    /// u32 length + bytes.
    Bytes32,
    /// u64 length + bytes.
    Bytes64,
    /// u32 byte length + (string, string) entries.
    StringMap,
    /// u32 byte length + fixed-size entries (maps of integers, index arrays).
    FixedEntries,
    /// Everything to the end of the record (message data).
    Rest,
}

/// The fields of each record kind of MCAP version 0; `None` for opcodes the
/// spec does not define (readers skip those).
fn layout(opcode: u8) -> Option<&'static [Field]> {
    use Field::*;
    Some(match opcode {
        0x01 => &[Str, Str],                                      // Header: profile, library
        0x02 => &[Fixed(20)],                                     // Footer
        0x03 => &[Fixed(2), Str, Str, Bytes32],                   // Schema: id, name, encoding, data
        0x04 => &[Fixed(4), Str, Str, StringMap],                 // Channel: id, schema id, topic, encoding, metadata
        0x05 => &[Fixed(22), Rest],                               // Message: header, data
        0x06 => &[Fixed(28), Str, Bytes64],                       // Chunk: times, sizes, crc, compression, records
        0x07 => &[Fixed(2), FixedEntries],                        // MessageIndex: channel id, (time, offset) pairs
        0x08 => &[Fixed(32), FixedEntries, Fixed(8), Str, Fixed(16)], // ChunkIndex
        0x09 => &[Fixed(16), Str, Str, Bytes64, Fixed(4)],        // Attachment
        0x0a => &[Fixed(40), Str, Str],                           // AttachmentIndex
        0x0b => &[Fixed(42), FixedEntries],                       // Statistics: counts, times, per-channel counts
        0x0c => &[Str, StringMap],                                // Metadata: name, map
        0x0d => &[Fixed(16), Str],                                // MetadataIndex
        0x0e => &[Fixed(17)],                                     // SummaryOffset
        0x0f => &[Fixed(4)],                                      // DataEnd
        _ => return None,
    })
}

/// Reads a little-endian length prefix of `n` bytes at `at`, if it fits.
fn length_at(bytes: &[u8], at: usize, n: usize) -> Option<usize> {
    let field = bytes.get(at..at.checked_add(n)?)?;
    let mut le = [0u8; 8];
    le[..n].copy_from_slice(field);
    usize::try_from(u64::from_le_bytes(le)).ok()
}

/// Walks one record's content; returns the chunk's (compression, records)
/// when the record is a chunk.
fn check_content<'a>(opcode: u8, content: &'a [u8]) -> Result<Option<(&'a str, &'a [u8])>, String> {
    let Some(fields) = layout(opcode) else { return Ok(None) };
    let mut at = 0usize;
    let mut compression = "";
    let mut chunk_records: &[u8] = &[];
    for field in fields {
        let remaining = content.len() - at;
        let (prefix, body) = match *field {
            Field::Fixed(n) => (n, 0),
            Field::Rest => (remaining, 0),
            Field::Str | Field::Bytes32 | Field::StringMap | Field::FixedEntries => {
                (4, length_at(content, at, 4).ok_or("record ends inside a length")?)
            }
            Field::Bytes64 => (8, length_at(content, at, 8).ok_or("record ends inside a length")?),
        };
        if prefix > remaining || body > remaining - prefix {
            return Err(format!(
                "field at content byte {at} needs {} bytes, the record has {remaining} left",
                prefix.saturating_add(body)
            ));
        }
        let value = &content[at + prefix..at + prefix + body];
        match *field {
            Field::StringMap => check_string_map(value)?,
            Field::Str if opcode == OP_CHUNK => {
                compression = std::str::from_utf8(value).map_err(|_| "compression name is not UTF-8")?;
            }
            Field::Bytes64 if opcode == OP_CHUNK => chunk_records = value,
            _ => {}
        }
        at += prefix + body;
    }
    Ok((opcode == OP_CHUNK).then_some((compression, chunk_records)))
}

fn check_string_map(mut entries: &[u8]) -> Result<(), String> {
    while !entries.is_empty() {
        for _ in 0..2 {
            let len = length_at(entries, 0, 4).ok_or("map ends inside a length")?;
            if len > entries.len() - 4 {
                return Err(format!("map string of {len} bytes, the map has {} left", entries.len() - 4));
            }
            entries = &entries[4 + len..];
        }
    }
    Ok(())
}

/// The declared uncompressed size of a chunk record's content.
fn uncompressed_size(content: &[u8]) -> Option<usize> {
    length_at(content, 16, 8)
}

/// Unpacks a chunk's records, refusing more than the declared size or
/// [`CHUNK_LIMIT`]; `Ok(None)` for compressions the `mcap` crate reports itself.
fn decompress(compression: &str, data: &[u8], declared: usize) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    if declared > CHUNK_LIMIT {
        return Err(format!("chunk declares {declared} bytes uncompressed, the limit is {CHUNK_LIMIT}"));
    }
    // streamed, so memory follows what the data really unpacks to, not what it declares
    let mut out = Vec::new();
    let unpacked = match compression {
        "zstd" => zstd::stream::read::Decoder::new(data)
            .and_then(|decoder| decoder.take(declared as u64 + 1).read_to_end(&mut out)),
        "lz4" => lz4::Decoder::new(data).and_then(|decoder| decoder.take(declared as u64 + 1).read_to_end(&mut out)),
        _ => return Ok(None),
    };
    unpacked.map_err(|e| format!("{compression} chunk: {e}"))?;
    if out.len() != declared {
        return Err(format!("chunk unpacks to {} bytes, it declares {declared}", out.len()));
    }
    Ok(Some(out))
}

/// Checks a sequence of records. A record whose own length runs past the end
/// ends the walk without an error (a file cut off mid-write: the `mcap` crate
/// reports it, without allocating more than the file holds). Inside a chunk
/// a chunk is an error.
pub fn check_records(bytes: &[u8]) -> Result<(), Malformed> {
    check_sequence(bytes, None, false)
}

/// Checks the summary section and the footer (the bytes from the footer's
/// `summary_start` to the closing magic), as `SummaryReader` reads them: one
/// record after another to the end, so a record running past the end is
/// malformed here (a file cut off mid-write has no footer to point here).
pub fn check_summary(bytes: &[u8]) -> Result<(), Malformed> {
    check_sequence(bytes, None, true)
}

fn check_sequence(bytes: &[u8], in_chunk: Option<usize>, whole: bool) -> Result<(), Malformed> {
    let mut at = 0usize;
    while at < bytes.len() {
        let opcode = bytes[at];
        let offset = in_chunk.unwrap_or(at);
        let malformed = |reason: String| Malformed { offset, opcode, reason };
        let cut = |len: Option<usize>| match (in_chunk, len) {
            // a chunk's records are whole: one that runs past its end makes the reader reserve its length
            (Some(_), _) => Err(malformed(format!("a record inside a chunk runs past the chunk's end ({len:?} bytes)"))),
            // the summary reader parses every record up to the end of the file
            (None, _) if whole => Err(malformed(format!("a summary record runs past the end of the file ({len:?} bytes)"))),
            (None, Some(len)) if len > CHUNK_LIMIT => {
                Err(malformed(format!("a record of {len} bytes, the limit is {CHUNK_LIMIT}")))
            }
            // the linear reader parses a chunk's records as they arrive, before the chunk is
            // whole, so the records of a cut-off chunk would reach the parser unchecked (the
            // third fuzz finding: an attachment index in one, declaring a 1.9 GB name)
            (None, Some(len)) if opcode == OP_CHUNK => {
                Err(malformed(format!("a chunk of {len} bytes runs past the end of the file")))
            }
            // a file cut off mid-write: the reader stops at the damage
            (None, _) => Ok(()),
        };
        let Some(len) = length_at(bytes, at + 1, 8) else { return cut(None) };
        let start = at + 9;
        let Some(content) = start.checked_add(len).and_then(|end| bytes.get(start..end)) else { return cut(Some(len)) };
        if opcode == OP_CHUNK && in_chunk.is_some() {
            return Err(malformed("a chunk inside a chunk".into()));
        }
        if let Some((compression, records)) = check_content(opcode, content).map_err(malformed)? {
            // the linear reader reserves the declared size, whatever the compression
            let declared = uncompressed_size(content).unwrap_or(usize::MAX);
            if declared > CHUNK_LIMIT {
                return Err(malformed(format!("chunk declares {declared} bytes uncompressed, the limit is {CHUNK_LIMIT}")));
            }
            let unpacked = if compression.is_empty() {
                None
            } else {
                decompress(compression, records, declared).map_err(malformed)?
            };
            check_sequence(unpacked.as_deref().unwrap_or(records), Some(at), true)?;
        }
        at = start + len;
    }
    Ok(())
}

/// Checks a whole MCAP file in memory (magic, records, magic); the records
/// before a malformed one are left for the reader: returns the byte offset
/// where the bytes stop being safe to parse, and why.
///
/// The closing magic is not cut off first: the reader parses a record that
/// reaches the end of the file whole, so bytes that look like the magic may
/// be its last ones (the fifth fuzz finding); the real magic, 8 bytes with no
/// room for a record length, ends the walk as a cut-off tail.
pub fn check_file(bytes: &[u8]) -> Result<(), Malformed> {
    let records = bytes.strip_prefix(MAGIC.as_slice()).unwrap_or(&[]);
    check_records(records).map_err(|m| Malformed { offset: m.offset + MAGIC.len(), ..m })
}

/// The bytes `SummaryReader` parses in a file of `file_size` bytes whose
/// last [`FOOTER_RECORD_LEN`] + 8 bytes are `tail`: from the footer's
/// `summary_start` to the closing magic (the summary section and the footer;
/// check them with [`check_summary`]); `None` without a footer or summary.
pub fn summary_range(tail: &[u8], file_size: u64) -> Option<std::ops::Range<u64>> {
    let footer = tail.strip_suffix(MAGIC.as_slice())?;
    let footer = footer.get(footer.len().checked_sub(FOOTER_RECORD_LEN)?..)?;
    if footer[0] != OP_FOOTER || length_at(footer, 1, 8)? != 20 {
        return None;
    }
    let start = length_at(footer, 9, 8)? as u64;
    let footer_start = file_size.checked_sub((FOOTER_RECORD_LEN + MAGIC.len()) as u64)?;
    (start > MAGIC.len() as u64 && start <= footer_start).then_some(start..file_size - MAGIC.len() as u64)
}

/// Bytes the caller reads from the end of the file for [`summary_range`].
pub const TAIL_LEN: usize = FOOTER_RECORD_LEN + 8;

#[cfg(test)]
mod tests {
    use super::*;

    fn record(opcode: u8, content: &[u8]) -> Vec<u8> {
        let mut r = vec![opcode];
        r.extend_from_slice(&(content.len() as u64).to_le_bytes());
        r.extend_from_slice(content);
        r
    }

    fn string(s: &[u8]) -> Vec<u8> {
        let mut r = (s.len() as u32).to_le_bytes().to_vec();
        r.extend_from_slice(s);
        r
    }

    fn schema(name_len_claimed: Option<u32>) -> Vec<u8> {
        let mut c = 1u16.to_le_bytes().to_vec();
        let mut name = string(b"sensor_msgs/msg/PointCloud2");
        if let Some(n) = name_len_claimed {
            name[..4].copy_from_slice(&n.to_le_bytes());
        }
        c.extend(name);
        c.extend(string(b"ros2msg"));
        c.extend(string(b"uint32 height"));
        record(0x03, &c)
    }

    fn channel(map: &[u8]) -> Vec<u8> {
        let mut c = vec![1, 0, 1, 0];
        c.extend(string(b"/points"));
        c.extend(string(b"cdr"));
        c.extend((map.len() as u32).to_le_bytes());
        c.extend_from_slice(map);
        record(0x04, &c)
    }

    fn chunk(compression: &str, records: &[u8], stored: &[u8]) -> Vec<u8> {
        let mut c = vec![0u8; 16];
        c.extend((records.len() as u64).to_le_bytes());
        c.extend([0u8; 4]);
        c.extend(string(compression.as_bytes()));
        c.extend((stored.len() as u64).to_le_bytes());
        c.extend_from_slice(stored);
        record(0x06, &c)
    }

    #[test]
    fn well_formed_records_pass() {
        let mut map = string(b"offered_qos_profiles");
        map.extend(string(b""));
        let mut bytes = schema(None);
        bytes.extend(channel(&map));
        bytes.extend(record(0x42, b"unknown opcodes are skipped"));
        assert_eq!(check_records(&bytes), Ok(()));
        let packed = zstd::bulk::compress(&bytes, 3).unwrap();
        assert_eq!(check_records(&chunk("zstd", &bytes, &packed)), Ok(()));
        assert_eq!(check_records(&chunk("", &bytes, &bytes)), Ok(()));
    }

    #[test]
    fn a_string_longer_than_its_record_is_refused() {
        let mut bytes = schema(None);
        let at = bytes.len();
        bytes.extend(schema(Some(543_490_070)));
        let err = check_records(&bytes).unwrap_err();
        assert_eq!((err.offset, err.opcode), (at, 0x03));
        assert!(err.reason.contains("543490074"), "{err}");
    }

    #[test]
    fn map_entries_are_checked_inside_the_map() {
        let mut map = string(b"key");
        map.extend(4_000_000_000u32.to_le_bytes());
        assert!(check_records(&channel(&map)).is_err());
    }

    #[test]
    fn records_inside_compressed_chunks_are_checked() {
        let inner = schema(Some(1 << 30));
        let packed = zstd::bulk::compress(&inner, 3).unwrap();
        let bytes = chunk("zstd", &inner, &packed);
        assert!(check_records(&bytes).unwrap_err().reason.contains("needs"));
        assert!(check_records(&chunk("", &inner, &inner)).is_err());
    }

    #[test]
    fn a_chunk_may_not_declare_more_than_the_limit() {
        let inner = schema(None);
        let packed = zstd::bulk::compress(&inner, 3).unwrap();
        let mut bytes = chunk("zstd", &inner, &packed);
        bytes[9 + 16..9 + 24].copy_from_slice(&((CHUNK_LIMIT as u64) + 1).to_le_bytes());
        assert!(check_records(&bytes).unwrap_err().reason.contains("limit"));
        // uncompressed, or with a compression the guard does not unpack: the reader reserves it all the same
        for compression in ["", "brotli"] {
            let mut bytes = chunk(compression, &inner, &inner);
            bytes[9 + 16..9 + 24].copy_from_slice(&0x9000000677209u64.to_le_bytes());
            assert!(check_records(&bytes).unwrap_err().reason.contains("limit"), "{compression:?}");
        }
    }

    #[test]
    fn a_record_running_past_its_chunk_is_refused() {
        // the second fuzz finding: an inner record declaring ~2.5e15 bytes in a 23 KB bag
        let mut inner = schema(None);
        inner[1..9].copy_from_slice(&2_533_274_797_175_305u64.to_le_bytes());
        let packed = zstd::bulk::compress(&inner, 3).unwrap();
        assert!(check_records(&chunk("zstd", &inner, &packed)).unwrap_err().reason.contains("past the chunk"));
        assert!(check_records(&chunk("", &inner, &inner)).is_err());
        // at the top level a huge cut-off record is refused too, a plausible one is left to the reader
        assert!(check_records(&inner).unwrap_err().reason.contains("limit"));
    }

    #[test]
    fn a_chunk_cut_off_by_the_end_of_the_file_is_refused() {
        // the third fuzz finding: a cut-off uncompressed chunk whose records the reader parses anyway
        let mut name = 1_885_303_655u32.to_le_bytes().to_vec();
        name.extend(b"x");
        let mut inner = vec![0u8; 40];
        inner.extend(name);
        let inner = record(0x0a, &inner);
        let mut bytes = schema(None);
        let at = bytes.len();
        let whole = chunk("", &inner, &inner);
        bytes.extend(&whole[..whole.len() - 3]);
        let err = check_records(&bytes).unwrap_err();
        assert_eq!((err.offset, err.opcode), (at, OP_CHUNK));
        assert!(err.reason.contains("past the end of the file"), "{err}");
        // cut before its length is complete, nothing in it can be parsed: left to the reader
        let mut bytes = schema(None);
        bytes.extend(&whole[..5]);
        assert_eq!(check_records(&bytes), Ok(()));
    }

    #[test]
    fn the_summary_is_read_to_the_end_so_a_record_running_past_it_is_refused() {
        // the fourth fuzz finding: a schema at the end of the summary whose record runs over
        // the footer, which SummaryReader parses anyway (its name declared 704 MB)
        let footer = record(OP_FOOTER, &[0u8; 20]);
        let mut summary = schema(None);
        summary.extend(&footer);
        assert_eq!(check_summary(&summary), Ok(()));
        let mut bytes = schema(None);
        let at = bytes.len();
        let mut over = schema(Some(704_643_099));
        let claimed = over.len() - 9 + footer.len();
        over[1..9].copy_from_slice(&(claimed as u64).to_le_bytes());
        bytes.extend(&over);
        bytes.extend(&footer);
        let err = check_summary(&bytes).unwrap_err();
        assert_eq!((err.offset, err.opcode), (at, 0x03), "{err}");
        // one that runs past the end of the bytes altogether
        let mut cut = schema(None);
        cut.extend(&schema(None)[..10]);
        assert!(check_summary(&cut).unwrap_err().reason.contains("past the end of the file"));
        assert_eq!(check_records(&cut), Ok(()), "outside the summary a cut-off tail is left to the reader");
    }

    #[test]
    fn a_record_ending_in_bytes_like_the_closing_magic_is_checked() {
        // the fifth fuzz finding: a schema whose last 8 bytes are the magic and whose name declares 1.9 GB
        let mut content = 1u16.to_le_bytes().to_vec();
        content.extend(1_912_602_600u32.to_le_bytes());
        content.extend([0u8; 16]);
        content.extend_from_slice(MAGIC);
        let mut file = MAGIC.to_vec();
        file.extend(record(0x03, &content));
        assert!(check_file(&file).is_err(), "the record reaching the end of the file is checked");
        let mut well_formed = MAGIC.to_vec();
        well_formed.extend(schema(None));
        well_formed.extend_from_slice(MAGIC);
        assert_eq!(check_file(&well_formed), Ok(()));
    }

    #[test]
    fn a_truncated_tail_is_left_to_the_reader() {
        let mut bytes = schema(None);
        bytes.extend(&schema(None)[..10]);
        assert_eq!(check_records(&bytes), Ok(()));
    }
}
