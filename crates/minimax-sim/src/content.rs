//! Deterministic object content, validators and URL signatures.
//!
//! Everything here is a pure function of the simulator seed, the file id and
//! the object version, so a test can verify a downloaded file (or any slice
//! of it) without the simulator ever holding a whole file in memory.

use sha2::{Digest, Sha256};

/// The additive constant of splitmix64 (the golden ratio in 64-bit fixed point).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Size of the scratch buffer used when hashing generated content.
const HASH_BUF: usize = 1 << 20;

/// One splitmix64 step: a fast, well-mixing bijection on `u64`.
#[inline(always)]
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The per-object key the content words are derived from.
#[inline]
fn content_key(seed: u64, file_id: i64, version: u64) -> u64 {
    splitmix64(
        splitmix64(seed)
            ^ splitmix64((file_id as u64) ^ 0x5EED_F11E_1D00_0000)
            ^ splitmix64(version.wrapping_mul(0xA24B_AED4_963E_E407)),
    )
}

/// Content word number `index` (bytes `8*index .. 8*index+8`, little endian).
#[inline(always)]
fn word(key: u64, index: u64) -> [u8; 8] {
    splitmix64(key ^ index).to_le_bytes()
}

/// Fills `buf` with the bytes of object `(seed, file_id, version)` starting at
/// byte `offset`.
///
/// The content is pseudo-random (incompressible, so a client cannot get away
/// with accidentally serving zeros) yet computable at any offset, which is
/// what lets the CDN answer arbitrary ranges and lets tests check any slice of
/// a multi-gigabyte download. Filling at offset `k` gives exactly the bytes a
/// fill from 0 has at `k..`.
pub fn fill_content(seed: u64, file_id: i64, version: u64, offset: u64, buf: &mut [u8]) {
    let key = content_key(seed, file_id, version);
    let mut out: &mut [u8] = buf;
    let mut pos = offset;

    // Unaligned head: the tail end of one word.
    let skip = (pos % 8) as usize;
    if skip != 0 && !out.is_empty() {
        let w = word(key, pos / 8);
        let n = (8 - skip).min(out.len());
        out[..n].copy_from_slice(&w[skip..skip + n]);
        out = &mut out[n..];
        pos = pos.wrapping_add(n as u64);
    }

    // Aligned body: whole words.
    let first = pos / 8;
    let mut chunks = out.chunks_exact_mut(8);
    let mut index = first;
    for chunk in chunks.by_ref() {
        chunk.copy_from_slice(&word(key, index));
        index = index.wrapping_add(1);
    }

    // Tail: the head of one word.
    let rem = chunks.into_remainder();
    if !rem.is_empty() {
        let w = word(key, index);
        let n = rem.len();
        rem.copy_from_slice(&w[..n]);
    }
}

/// Lower-case hex SHA-256 of the first `len` bytes of object
/// `(seed, file_id, version)`, so tests can verify a downloaded file.
///
/// Generates in 1 MiB pieces; memory use does not grow with `len`.
pub fn content_sha256(seed: u64, file_id: i64, version: u64, len: u64) -> String {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BUF.min(usize::try_from(len).unwrap_or(HASH_BUF))];
    let mut offset = 0u64;
    while offset < len {
        let n = (len - offset).min(buf.len() as u64) as usize;
        fill_content(seed, file_id, version, offset, &mut buf[..n]);
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    hex::encode(hasher.finalize())
}

/// Strong entity tag of an object version, quoted, OSS style (upper-case hex).
///
/// It covers the size too, so a configuration change can never present
/// different bytes under an old tag.
pub(crate) fn etag(seed: u64, file_id: i64, version: u64, size: u64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"minimax-sim etag\0");
    hasher.update(seed.to_le_bytes());
    hasher.update(file_id.to_le_bytes());
    hasher.update(version.to_le_bytes());
    hasher.update(size.to_le_bytes());
    let digest = hasher.finalize();
    format!("\"{}\"", hex::encode_upper(&digest[..16]))
}

/// Signature of a download URL: a keyed hash of (seed, file_id, expires).
///
/// Hex, 40 characters (the length of the HMAC-SHA1 real OSS URLs carry).
pub(crate) fn url_signature(seed: u64, file_id: i64, expires: u64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"minimax-sim url signature\0");
    hasher.update(seed.to_le_bytes());
    hasher.update(file_id.to_le_bytes());
    hasher.update(expires.to_le_bytes());
    let digest = hasher.finalize();
    hex::encode(&digest[..20])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_is_deterministic() {
        let mut a = vec![0u8; 1000];
        let mut b = vec![0u8; 1000];
        fill_content(42, 7, 0, 0, &mut a);
        fill_content(42, 7, 0, 0, &mut b);
        assert_eq!(a, b);
        // Not trivially constant.
        assert!(a.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn fill_is_offset_independent() {
        let mut whole = vec![0u8; 4096];
        fill_content(9, 123_456_789_012_345, 3, 0, &mut whole);
        for start in [0usize, 1, 2, 3, 7, 8, 9, 15, 16, 17, 1000, 4095] {
            for len in [0usize, 1, 2, 5, 7, 8, 9, 16, 17, 100] {
                if start + len > whole.len() {
                    continue;
                }
                let mut part = vec![0u8; len];
                fill_content(9, 123_456_789_012_345, 3, start as u64, &mut part);
                assert_eq!(part, whole[start..start + len], "start {start} len {len}");
            }
        }
    }

    #[test]
    fn fill_at_huge_offsets_does_not_panic() {
        let mut buf = [0u8; 32];
        fill_content(1, 1, 0, u64::MAX - 5, &mut buf);
        fill_content(1, 1, 0, 5 * (1 << 30) + 3, &mut buf);
    }

    #[test]
    fn inputs_change_content() {
        let mut base = [0u8; 64];
        fill_content(42, 1, 0, 0, &mut base);
        for (seed, id, version) in [(43, 1, 0), (42, 2, 0), (42, 1, 1), (42, -1, 0)] {
            let mut other = [0u8; 64];
            fill_content(seed, id, version, 0, &mut other);
            assert_ne!(base, other, "{seed} {id} {version}");
        }
    }

    #[test]
    fn sha256_matches_direct_hash() {
        for len in [0u64, 1, 7, 8, 1000, HASH_BUF as u64 + 13] {
            let mut buf = vec![0u8; len as usize];
            fill_content(5, 6, 7, 0, &mut buf);
            assert_eq!(
                content_sha256(5, 6, 7, len),
                hex::encode(Sha256::digest(&buf))
            );
        }
        assert_eq!(
            content_sha256(0, 0, 0, 0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn etag_and_signature_shape() {
        let tag = etag(42, 1, 0, 10);
        assert_eq!(tag.len(), 34);
        assert!(tag.starts_with('"') && tag.ends_with('"'));
        assert_ne!(tag, etag(42, 1, 1, 10));
        assert_ne!(tag, etag(42, 1, 0, 11));
        let sig = url_signature(42, 1, 1000);
        assert_eq!(sig.len(), 40);
        assert_ne!(sig, url_signature(42, 1, 1001));
        assert_ne!(sig, url_signature(42, 2, 1000));
        assert_ne!(sig, url_signature(43, 1, 1000));
    }
}
