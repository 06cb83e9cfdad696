//! The variable-length integers of Avro and Protobuf, written and read by hand from their
//! specifications, so tests can build and check values independently of the libraries the
//! engine uses. Avro's `int`/`long` (and the index path of Confluent's Protobuf frame) are
//! zigzag varints; Protobuf's tags and lengths are plain varints.

/// Appends `n` as a base-128 varint, least significant group first.
pub fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a varint at `at`, moving `at` past it.
///
/// # Panics
/// When the value ends inside the varint (a test failure).
pub fn read_varint(b: &[u8], at: &mut usize) -> u64 {
    let (mut n, mut shift) = (0u64, 0);
    loop {
        let byte = b[*at];
        *at += 1;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return n;
        }
        shift += 7;
    }
}

/// Appends `n` zigzag-encoded (Avro `long`).
pub fn long(n: i64, out: &mut Vec<u8>) {
    varint(((n << 1) ^ (n >> 63)) as u64, out);
}

/// Reads a zigzag varint (Avro `long`).
///
/// # Panics
/// As [`read_varint`].
pub fn read_long(b: &[u8], at: &mut usize) -> i64 {
    let z = read_varint(b, at);
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

/// Appends an Avro string: its length as a `long`, then the bytes.
pub fn string(s: &str, out: &mut Vec<u8>) {
    long(s.len() as i64, out);
    out.extend_from_slice(s.as_bytes());
}

/// Reads an Avro string.
///
/// # Panics
/// As [`read_varint`], or on text that is not UTF-8.
pub fn read_string(b: &[u8], at: &mut usize) -> String {
    let len = read_long(b, at) as usize;
    *at += len;
    String::from_utf8(b[*at - len..*at].to_vec()).expect("UTF-8 text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_longs_match_the_avro_specifications_examples() {
        for (n, bytes) in [
            (0, vec![0]),
            (-1, vec![1]),
            (1, vec![2]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 1]),
        ] {
            let mut out = Vec::new();
            long(n, &mut out);
            assert_eq!(out, bytes, "{n}");
            assert_eq!(read_long(&out, &mut 0), n);
        }
    }
}
