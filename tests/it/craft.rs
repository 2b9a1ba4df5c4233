//! Crafted inputs shared by the test modules: byte streams built by hand so a test can make
//! a file that claims more than it holds (a zlib stream of hundreds of MB of zeros in a few
//! MB, PNG chunks with any content).

/// A zlib stream of `n` zero bytes (fixed-Huffman deflate: one literal, then matches of 258
/// at distance 1), without holding `n` bytes anywhere.
pub fn zlib_zeros(n: u64) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u32,
        len: u32,
    }
    impl Bits {
        fn put(&mut self, value: u32, bits: u32) {
            // LSB first
            self.acc |= value << self.len;
            self.len += bits;
            while self.len >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.len -= 8;
            }
        }
        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u32, bits: u32) {
            for i in (0..bits).rev() {
                self.put((code >> i) & 1, 1);
            }
        }
    }
    let mut w = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        len: 0,
    };
    w.put(1, 1); // final block
    w.put(1, 2); // fixed Huffman
    w.code(0x30, 8); // literal 0
    let matches = (n - 1) / 258;
    let rest = (n - 1) % 258;
    for _ in 0..matches {
        w.code(0b1100_0101, 8); // length 258 (code 285)
        w.code(0, 5); // distance 1
    }
    for _ in 0..rest {
        w.code(0x30, 8);
    }
    w.code(0, 7); // end of block
    if w.len > 0 {
        w.put(0, 8 - w.len);
    }
    let (a, b) = (1u32, (n % 65521) as u32);
    w.out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    w.out
}

/// A PNG chunk: length, type, data, CRC-32 of type and data.
pub fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    c.extend_from_slice(&body);
    c.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    c
}
