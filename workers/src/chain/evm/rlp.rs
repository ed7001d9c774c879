//! The minimal RLP encoder a legacy transaction needs: byte strings,
//! unsigned integers (big-endian, no leading zeros, zero is the empty
//! string) and lists. See the Ethereum yellow paper, appendix B.

/// RLP of the byte string `bytes`.
pub fn bytes(bytes: &[u8]) -> Vec<u8> {
    match bytes {
        [b] if *b < 0x80 => vec![*b],
        _ => {
            let mut out = length_prefix(0x80, bytes.len());
            out.extend_from_slice(bytes);
            out
        }
    }
}

/// RLP of the unsigned integer whose big-endian bytes are `be` (leading
/// zeros are dropped, so 0 is the empty string `0x80`).
pub fn uint_be(be: &[u8]) -> Vec<u8> {
    let first = be.iter().position(|b| *b != 0).unwrap_or(be.len());
    bytes(&be[first..])
}

/// RLP of a `u128` (covers `u64` and smaller).
pub fn uint(v: u128) -> Vec<u8> {
    uint_be(&v.to_be_bytes())
}

/// RLP of the list whose items are the already encoded `items`.
pub fn list(items: &[Vec<u8>]) -> Vec<u8> {
    let len = items.iter().map(Vec::len).sum();
    let mut out = length_prefix(0xc0, len);
    for item in items {
        out.extend_from_slice(item);
    }
    out
}

/// The prefix of a string (`offset` 0x80) or list (0xc0) of `len` bytes.
fn length_prefix(offset: u8, len: usize) -> Vec<u8> {
    if len < 56 {
        // len < 56 fits a u8 with the offset
        vec![offset + len as u8]
    } else {
        let be = (len as u64).to_be_bytes();
        let first = be.iter().position(|b| *b != 0).unwrap_or(be.len() - 1);
        let len_bytes = &be[first..];
        let mut out = vec![offset + 55 + len_bytes.len() as u8];
        out.extend_from_slice(len_bytes);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[u8]) -> String {
        hex::encode(v)
    }

    // Vectors from the RLP page of ethereum.org and the yellow paper.
    #[test]
    fn strings() {
        assert_eq!(h(&bytes(b"dog")), "83646f67");
        assert_eq!(h(&bytes(b"")), "80");
        assert_eq!(h(&bytes(&[0x00])), "00");
        assert_eq!(h(&bytes(&[0x0f])), "0f");
        assert_eq!(h(&bytes(&[0x7f])), "7f");
        assert_eq!(h(&bytes(&[0x80])), "8180");
        assert_eq!(h(&bytes(&[0x04, 0x00])), "820400");
        let lorem = b"Lorem ipsum dolor sit amet, consectetur adipisicing elit";
        assert_eq!(lorem.len(), 56);
        assert_eq!(h(&bytes(lorem)), format!("b838{}", h(lorem)));
        let long = vec![0xaa; 1024];
        assert_eq!(h(&bytes(&long)[..3]), "b90400");
    }

    #[test]
    fn integers() {
        assert_eq!(h(&uint(0)), "80");
        assert_eq!(h(&uint(15)), "0f");
        assert_eq!(h(&uint(127)), "7f");
        assert_eq!(h(&uint(128)), "8180");
        assert_eq!(h(&uint(1024)), "820400");
        assert_eq!(h(&uint(20_000_000_000)), "8504a817c800");
        assert_eq!(h(&uint_be(&[0, 0, 0])), "80");
        assert_eq!(h(&uint_be(&[0, 1, 0])), "820100");
    }

    #[test]
    fn lists() {
        assert_eq!(h(&list(&[])), "c0");
        assert_eq!(
            h(&list(&[bytes(b"cat"), bytes(b"dog")])),
            "c88363617483646f67"
        );
        // the set-theoretic representation of three: [ [], [[]], [ [], [[]] ] ]
        let empty = list(&[]);
        let one = list(std::slice::from_ref(&empty));
        let two = list(&[empty.clone(), one.clone()]);
        assert_eq!(h(&list(&[empty, one, two])), "c7c0c1c0c3c0c1c0");
        let items: Vec<Vec<u8>> = (0..60).map(|_| uint(1)).collect();
        assert_eq!(h(&list(&items)[..2]), "f83c");
    }
}
