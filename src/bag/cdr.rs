//! Plain CDR (OMG XCDR version 1), the wire format ROS 2 uses on DDS and in
//! rosbag2 files, written and read without any ROS library.
//!
//! A serialised message is a 4-byte encapsulation header followed by the
//! payload. The header's second byte says the byte order (`00 01` little
//! endian, which is what every ROS 2 middleware on x86/ARM writes; `00 00` big
//! endian, which we only read); the last two bytes are options and ignored.
//! Each primitive is aligned to its own size (8 for `f64`/`u64`, XCDR1 style)
//! counted from the first payload byte, not from the start of the buffer.
//! Strings are a `u32` length that includes the NUL terminator, the UTF-8
//! bytes and the NUL; sequences are a `u32` element count followed by the
//! elements; fixed-size arrays are just the elements.
//!
//! The reader treats its input as untrusted: every length is checked against
//! the bytes that remain before anything is allocated, so corrupt or
//! truncated messages produce a [`BagError`] rather than a panic or a huge
//! allocation.

use super::BagError;

/// Encapsulation header for little-endian plain CDR (`CDR_LE`).
pub const CDR_LE_HEADER: [u8; 4] = [0x00, 0x01, 0x00, 0x00];
const HEADER_LEN: usize = 4;

/// Serialises a message into little-endian plain CDR, header included.
#[derive(Debug, Clone)]
pub struct CdrWriter {
    buf: Vec<u8>,
}

impl Default for CdrWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl CdrWriter {
    pub fn new() -> Self {
        Self::with_capacity(64)
    }

    /// Pre-sizes the buffer; worthwhile for point clouds and images, whose
    /// payload is known before encoding starts.
    pub fn with_capacity(payload_bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER_LEN + payload_bytes);
        buf.extend_from_slice(&CDR_LE_HEADER);
        Self { buf }
    }

    /// Pads with zeros so the next write starts at a multiple of `n` payload bytes.
    fn align(&mut self, n: usize) {
        let pos = self.buf.len() - HEADER_LEN;
        let padded = pos.next_multiple_of(n);
        self.buf.resize(HEADER_LEN + padded, 0);
    }

    fn put<const N: usize>(&mut self, le_bytes: [u8; N]) {
        self.align(N);
        self.buf.extend_from_slice(&le_bytes);
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    pub fn u16(&mut self, v: u16) {
        self.put(v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.put(v.to_le_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.put(v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.put(v.to_le_bytes());
    }
    pub fn f32(&mut self, v: f32) {
        self.put(v.to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.put(v.to_le_bytes());
    }

    /// A sequence length prefix. Lengths beyond `u32::MAX` cannot be
    /// represented in CDR; the ROS message types themselves are bounded far
    /// below that by DDS, so this saturates instead of failing.
    pub fn seq_len(&mut self, len: usize) {
        self.u32(u32::try_from(len).unwrap_or(u32::MAX));
    }

    pub fn string(&mut self, s: &str) {
        self.seq_len(s.len() + 1);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    /// `uint8[]` / `byte[]`: count, then the bytes as one block.
    pub fn bytes(&mut self, data: &[u8]) {
        self.seq_len(data.len());
        self.buf.extend_from_slice(data);
    }

    /// `float64[]`: count, then the elements (aligned only if there is one).
    pub fn f64_seq(&mut self, values: &[f64]) {
        self.seq_len(values.len());
        self.f64_array(values);
    }

    /// `float64[N]`: the elements without a count.
    pub fn f64_array(&mut self, values: &[f64]) {
        values.iter().for_each(|&v| self.f64(v));
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Deserialises plain CDR, either byte order, from an untrusted buffer.
#[derive(Debug, Clone)]
pub struct CdrReader<'a> {
    payload: &'a [u8],
    pos: usize,
    big_endian: bool,
}

macro_rules! read_prim {
    ($($name:ident: $t:ty),* $(,)?) => {$(
        pub fn $name(&mut self) -> Result<$t, BagError> {
            let b = self.take_aligned::<{ std::mem::size_of::<$t>() }>()?;
            Ok(if self.big_endian { <$t>::from_be_bytes(b) } else { <$t>::from_le_bytes(b) })
        }
    )*};
}

impl<'a> CdrReader<'a> {
    /// Checks the encapsulation header and positions the reader on the payload.
    pub fn new(bytes: &'a [u8]) -> Result<Self, BagError> {
        let (header, payload) = bytes.split_at_checked(HEADER_LEN).ok_or(BagError::Truncated {
            offset: 0,
            needed: HEADER_LEN,
            available: bytes.len(),
        })?;
        let big_endian = match [header[0], header[1]] {
            [0x00, 0x00] => true,
            [0x00, 0x01] => false,
            kind => return Err(BagError::UnsupportedEncapsulation(kind)),
        };
        Ok(Self { payload, pos: 0, big_endian })
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.payload.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BagError> {
        let payload = self.payload;
        let slice = self.pos.checked_add(n).and_then(|end| payload.get(self.pos..end)).ok_or(BagError::Truncated {
            offset: self.pos,
            needed: n,
            available: self.remaining(),
        })?;
        self.pos += n;
        Ok(slice)
    }

    fn take_aligned<const N: usize>(&mut self) -> Result<[u8; N], BagError> {
        let padding = self.pos.next_multiple_of(N) - self.pos;
        self.take(padding)?;
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, BagError> {
        Ok(self.take(1)?[0])
    }

    /// Any non-zero byte is `true`, as in C and in every ROS 2 deserialiser.
    pub fn bool(&mut self) -> Result<bool, BagError> {
        Ok(self.u8()? != 0)
    }

    read_prim!(u16: u16, u32: u32, i32: i32, u64: u64, f32: f32, f64: f64);

    /// Reads a sequence count and rejects it unless `count * elem_size` bytes
    /// could still follow, so a corrupt count cannot trigger a huge allocation.
    pub fn seq_len(&mut self, elem_size: usize) -> Result<usize, BagError> {
        let count = self.u32()? as usize;
        let remaining = self.remaining();
        if count.saturating_mul(elem_size.max(1)) > remaining {
            return Err(BagError::LengthTooLarge { offset: self.pos, count, remaining });
        }
        Ok(count)
    }

    pub fn string(&mut self) -> Result<String, BagError> {
        let len = self.seq_len(1)?;
        // Some serialisers write an empty string as length 0 with no terminator.
        if len == 0 {
            return Ok(String::new());
        }
        let offset = self.pos;
        let bytes = self.take(len)?;
        let Some((&0, text)) = bytes.split_last() else {
            return Err(BagError::BadString { offset, reason: "missing NUL terminator" });
        };
        String::from_utf8(text.to_vec()).map_err(|_| BagError::BadString { offset, reason: "invalid UTF-8" })
    }

    pub fn bytes(&mut self) -> Result<Vec<u8>, BagError> {
        let len = self.seq_len(1)?;
        Ok(self.take(len)?.to_vec())
    }

    pub fn f64_seq(&mut self) -> Result<Vec<f64>, BagError> {
        let len = self.seq_len(8)?;
        (0..len).map(|_| self.f64()).collect()
    }

    pub fn f64_array<const N: usize>(&mut self) -> Result<[f64; N], BagError> {
        let mut out = [0.0; N];
        for v in &mut out {
            *v = self.f64()?;
        }
        Ok(out)
    }

    /// Ends decoding. Up to 3 trailing bytes are padding some middlewares add
    /// to round the message up to 4 bytes; more means the bytes were not the
    /// type we decoded them as.
    pub fn finish(self) -> Result<(), BagError> {
        match self.remaining() {
            0..=3 => Ok(()),
            n => Err(BagError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_align_relative_to_payload() {
        let mut w = CdrWriter::new();
        w.u8(7);
        w.u32(0xDEAD_BEEF); // 3 bytes padding
        w.string("abc"); // 4-byte length + "abc\0", ends at payload offset 16
        w.u8(1);
        w.f64(1.5); // 7 bytes padding to offset 24
        let bytes = w.into_bytes();
        assert_eq!(&bytes[..4], &CDR_LE_HEADER);
        assert_eq!(&bytes[4..12], &[7, 0, 0, 0, 0xEF, 0xBE, 0xAD, 0xDE]);
        assert_eq!(&bytes[12..20], &[4, 0, 0, 0, b'a', b'b', b'c', 0]);
        assert_eq!(bytes.len(), 4 + 24 + 8);

        let mut r = CdrReader::new(&bytes).unwrap();
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u32().unwrap(), 0xDEAD_BEEF);
        assert_eq!(r.string().unwrap(), "abc");
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.f64().unwrap(), 1.5);
        r.finish().unwrap();
    }

    #[test]
    fn odd_strings_then_u32_and_f64() {
        for s in ["", "a", "ab", "abcd", "héllo"] {
            let mut w = CdrWriter::new();
            w.string(s);
            w.u32(42);
            w.string(s);
            w.f64(-2.25);
            w.f64_seq(&[]);
            w.bytes(&[]);
            w.u32(9);
            let bytes = w.into_bytes();
            let mut r = CdrReader::new(&bytes).unwrap();
            assert_eq!(r.string().unwrap(), s);
            assert_eq!(r.u32().unwrap(), 42);
            assert_eq!(r.string().unwrap(), s);
            assert_eq!(r.f64().unwrap(), -2.25);
            assert!(r.f64_seq().unwrap().is_empty());
            assert!(r.bytes().unwrap().is_empty());
            assert_eq!(r.u32().unwrap(), 9);
            r.finish().unwrap();
        }
    }

    #[test]
    fn reads_big_endian() {
        // header 00 00, then u8, padding, u32 BE, padding to 8, f64 BE, string
        let mut b = vec![0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0];
        b.extend_from_slice(&2.5f64.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 2, b'x', 0]);
        let mut r = CdrReader::new(&b).unwrap();
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u32().unwrap(), 256);
        assert_eq!(r.f64().unwrap(), 2.5);
        assert_eq!(r.string().unwrap(), "x");
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(CdrReader::new(&[0, 1]), Err(BagError::Truncated { .. })));
        assert!(matches!(CdrReader::new(&[0, 7, 0, 0]), Err(BagError::UnsupportedEncapsulation([0, 7]))));
        let read = |payload: &[u8]| {
            let mut b = CDR_LE_HEADER.to_vec();
            b.extend_from_slice(payload);
            CdrReader::new(&b).unwrap().string()
        };
        assert!(matches!(read(&[2, 0, 0, 0, b'a', b'b']), Err(BagError::BadString { .. })));
        assert!(matches!(read(&[2, 0, 0, 0, 0xFF, 0]), Err(BagError::BadString { .. })));
        assert!(matches!(read(&[9, 0, 0, 0, b'a', 0]), Err(BagError::LengthTooLarge { .. })));
        assert!(matches!(read(&[0xFF, 0xFF, 0xFF, 0xFF]), Err(BagError::LengthTooLarge { .. })));
        assert!(matches!(read(&[1, 0]), Err(BagError::Truncated { .. })));
        let mut r = CdrReader::new(&[0, 1, 0, 0, 1, 2, 3, 4]).unwrap();
        r.u8().unwrap();
        assert!(matches!(r.f64(), Err(BagError::Truncated { .. })));
        assert!(matches!(CdrReader::new(&[0, 1, 0, 0, 1, 2, 3, 4]).unwrap().finish(), Err(BagError::TrailingBytes(4))));
    }
}
