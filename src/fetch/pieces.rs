//! Which pieces of a segmented download are complete. Pure: the encoding
//! stored in the queue and the arithmetic of pieces are unit-tested here.

/// A file cut into equal pieces (the last one shorter), each fetched with
/// one Range request and recorded once it is complete and fsynced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieceMap {
    piece_size: u64,
    total: u64,
    done: Vec<bool>,
}

/// Smallest and largest piece: small enough that pieces in flight stay near
/// the hashed prefix, large enough that a request per piece costs little.
pub(crate) const MIN_PIECE: u64 = 4 * 1024 * 1024;
pub(crate) const MAX_PIECE: u64 = 64 * 1024 * 1024;

/// Piece size for a file of `total` bytes fetched over `segments`
/// connections: about 16 pieces per connection.
pub(crate) fn piece_size_for(total: u64, segments: u32) -> u64 {
    (total / (u64::from(segments.max(1)) * 16)).clamp(MIN_PIECE, MAX_PIECE)
}

impl PieceMap {
    pub fn new(total: u64, piece_size: u64) -> PieceMap {
        let piece_size = piece_size.max(1);
        let count = total.div_ceil(piece_size) as usize;
        PieceMap {
            piece_size,
            total,
            done: vec![false; count],
        }
    }

    /// A map whose pieces wholly inside the first `prefix` bytes are done
    /// (a single-stream partial file taken over by a segmented download).
    pub fn with_prefix(total: u64, piece_size: u64, prefix: u64) -> PieceMap {
        let mut map = PieceMap::new(total, piece_size);
        for i in 0..map.count() {
            if map.range(i).1 <= prefix {
                map.done[i] = true;
            }
        }
        map
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn piece_size(&self) -> u64 {
        self.piece_size
    }

    pub fn count(&self) -> usize {
        self.done.len()
    }

    /// Byte range `[start, end)` of piece `i`.
    pub fn range(&self, i: usize) -> (u64, u64) {
        let start = i as u64 * self.piece_size;
        (start, (start + self.piece_size).min(self.total))
    }

    pub fn mark_done(&mut self, i: usize) {
        if let Some(d) = self.done.get_mut(i) {
            *d = true;
        }
    }

    pub fn is_done(&self, i: usize) -> bool {
        self.done.get(i).copied().unwrap_or(false)
    }

    pub fn pending(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.count()).filter(|&i| !self.done[i])
    }

    pub fn all_done(&self) -> bool {
        self.done.iter().all(|d| *d)
    }

    /// Bytes from 0 up to the first piece not done.
    pub fn contiguous_bytes(&self) -> u64 {
        match self.done.iter().position(|d| !d) {
            Some(i) => self.range(i).0,
            None => self.total,
        }
    }

    pub fn done_bytes(&self) -> u64 {
        (0..self.count())
            .filter(|&i| self.done[i])
            .map(|i| {
                let (s, e) = self.range(i);
                e - s
            })
            .sum()
    }

    /// `piece_size/total/ranges`, ranges of done piece indexes like `0-37,40`.
    pub fn encode(&self) -> String {
        let mut ranges = Vec::new();
        let mut i = 0;
        while i < self.count() {
            if self.done[i] {
                let start = i;
                while i + 1 < self.count() && self.done[i + 1] {
                    i += 1;
                }
                ranges.push(if start == i {
                    start.to_string()
                } else {
                    format!("{start}-{i}")
                });
            }
            i += 1;
        }
        format!("{}/{}/{}", self.piece_size, self.total, ranges.join(","))
    }

    pub fn decode(text: &str) -> Option<PieceMap> {
        let mut parts = text.splitn(3, '/');
        let piece_size: u64 = parts.next()?.parse().ok()?;
        let total: u64 = parts.next()?.parse().ok()?;
        let ranges = parts.next()?;
        if piece_size == 0 {
            return None;
        }
        let mut map = PieceMap::new(total, piece_size);
        for range in ranges.split(',').filter(|r| !r.is_empty()) {
            let (a, b) = match range.split_once('-') {
                Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
                None => {
                    let a = range.parse::<usize>().ok()?;
                    (a, a)
                }
            };
            if a > b || b >= map.count() {
                return None;
            }
            for i in a..=b {
                map.done[i] = true;
            }
        }
        Some(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_file_exactly() {
        let map = PieceMap::new(10, 4);
        assert_eq!(map.count(), 3);
        assert_eq!(
            (map.range(0), map.range(1), map.range(2)),
            ((0, 4), (4, 8), (8, 10))
        );
        assert_eq!(PieceMap::new(0, 4).count(), 0);
        assert!(PieceMap::new(0, 4).all_done());
    }

    #[test]
    fn contiguous_prefix_stops_at_the_first_gap() {
        let mut map = PieceMap::new(10, 4);
        map.mark_done(1);
        assert_eq!(map.contiguous_bytes(), 0);
        assert_eq!(map.done_bytes(), 4);
        map.mark_done(0);
        assert_eq!(map.contiguous_bytes(), 8);
        map.mark_done(2);
        assert_eq!(map.contiguous_bytes(), 10);
        assert!(map.all_done());
    }

    #[test]
    fn encoding_round_trips_and_rejects_nonsense() {
        let mut map = PieceMap::new(100, 10);
        for i in [0, 1, 2, 5, 7, 8, 9] {
            map.mark_done(i);
        }
        let text = map.encode();
        assert_eq!(text, "10/100/0-2,5,7-9");
        assert_eq!(PieceMap::decode(&text), Some(map));
        assert_eq!(PieceMap::decode("10/100/"), Some(PieceMap::new(100, 10)));
        for bad in ["", "x/1/0", "0/10/0", "10/100/5-3", "10/100/10", "10/100/a"] {
            assert_eq!(PieceMap::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_prefix_marks_only_whole_pieces() {
        let map = PieceMap::with_prefix(100, 10, 35);
        assert_eq!(map.contiguous_bytes(), 30);
        assert!(!map.is_done(3));
    }

    #[test]
    fn piece_size_is_clamped() {
        assert_eq!(piece_size_for(1 << 30, 8), 8 * 1024 * 1024);
        assert_eq!(piece_size_for(1 << 20, 8), MIN_PIECE);
        assert_eq!(piece_size_for(1 << 40, 8), MAX_PIECE);
    }
}
