//! API calls in the last minute, counted per second: the rate gate's window
//! as this process sees it (pure: the caller says which second it is).

/// Seconds the window spans, as the API's per-minute limit does.
pub const WINDOW_SECS: u64 = 60;

/// A ring of per-second counts; a slot is reused when its second is over a
/// minute old.
#[derive(Debug)]
pub struct CallWindow {
    /// (second, calls in it), indexed by second modulo the window.
    slots: [(u64, u64); WINDOW_SECS as usize],
}

impl Default for CallWindow {
    fn default() -> CallWindow {
        CallWindow {
            slots: [(0, 0); WINDOW_SECS as usize],
        }
    }
}

impl CallWindow {
    pub fn record(&mut self, second: u64) {
        let slot = &mut self.slots[(second % WINDOW_SECS) as usize];
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 += 1;
    }

    /// Calls in the minute ending with second `now` (inclusive).
    pub fn count(&self, now: u64) -> u64 {
        self.slots
            .iter()
            .filter(|(second, _)| *second <= now && now - *second < WINDOW_SECS)
            .map(|(_, calls)| calls)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_leave_the_window_a_minute_after_they_were_made() {
        let mut w = CallWindow::default();
        w.record(10);
        w.record(10);
        w.record(40);
        assert_eq!(w.count(40), 3);
        assert_eq!(w.count(69), 3, "second 10 is still inside at 69");
        assert_eq!(w.count(70), 1, "second 10 left at 70");
        assert_eq!(w.count(100), 0);
    }

    #[test]
    fn a_reused_slot_forgets_its_old_second() {
        let mut w = CallWindow::default();
        w.record(5);
        w.record(65);
        assert_eq!(w.count(65), 1, "second 5's call is gone, not added");
    }
}
