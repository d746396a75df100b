//! stderr that can never stop the work. Under systemd stderr is the journal;
//! elsewhere it may be a pipe into a log shipper that stalls, a `| head` that
//! has exited, or `/dev/full`. A blocking write there would stop a worker, a
//! signal handler or the exit itself, and `eprintln!` panics on a failed
//! write. So every line (log records and messages to the user alike) goes
//! into a bounded queue, and one thread writes them out: when the queue is
//! full the line is dropped and counted, never waited for, and once stderr
//! takes lines again it is told how many it missed.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Lines held while stderr is slow (about a megabyte of typical lines).
pub const CAPACITY: usize = 4096;

/// One end of the queue: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Sink {
    tx: SyncSender<Vec<u8>>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    /// Lines handed to the queue and not yet written (or given up on).
    pending: AtomicU64,
    /// Lines lost, whether the queue was full or stderr refused them.
    dropped: AtomicU64,
}

impl Sink {
    /// A sink whose lines a new thread writes to `out`.
    pub fn spawn<W: Write + Send + 'static>(out: W, capacity: usize) -> io::Result<Sink> {
        let (tx, rx) = sync_channel(capacity);
        let counters = Arc::new(Counters::default());
        let writer = counters.clone();
        std::thread::Builder::new()
            .name("stderr".into())
            .spawn(move || drain(rx, out, &writer))?;
        Ok(Sink { tx, counters })
    }

    /// Queues `bytes` (one or more whole lines); drops them when the queue
    /// is full.
    pub fn send(&self, bytes: Vec<u8>) {
        self.counters.pending.fetch_add(1, Ordering::SeqCst);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(bytes)
        {
            self.counters.pending.fetch_sub(1, Ordering::SeqCst);
            self.counters.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Lines lost so far.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::SeqCst)
    }

    /// Waits until every queued line is written, or `limit` has passed:
    /// at exit, so the last lines are not lost, but never for long.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.counters.pending.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

/// The writer thread: each line in turn, and after a line that went through
/// with nothing left behind it, a note of the lines lost since the last one.
fn drain<W: Write>(rx: Receiver<Vec<u8>>, mut out: W, counters: &Counters) {
    let mut reported = 0;
    for line in rx {
        let written = out.write_all(&line).and_then(|()| out.flush()).is_ok();
        if !written {
            counters.dropped.fetch_add(1, Ordering::SeqCst);
        }
        let last = counters.pending.load(Ordering::SeqCst) == 1;
        let dropped = counters.dropped.load(Ordering::SeqCst);
        if written && last && dropped > reported {
            let note = format!(
                "minimax-dl: {} log lines dropped: stderr was not taking them\n",
                dropped - reported
            );
            let _ = out.write_all(note.as_bytes()).and_then(|()| out.flush());
            reported = dropped;
        }
        // Only now: `flush` waits for the note too.
        counters.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The process's stderr, started on first use.
pub fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| {
        Sink::spawn(io::stderr(), CAPACITY).unwrap_or_else(|_| {
            // No thread for the writer: a queue nobody drains drops every line.
            let (tx, _) = sync_channel(0);
            Sink {
                tx,
                counters: Arc::default(),
            }
        })
    })
}

/// Writes one line to stderr without ever blocking or panicking.
pub fn line(text: &str) {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(b'\n');
    sink().send(bytes);
}

/// `eprintln!` that can neither block nor panic (see the module docs).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::stderr::line(&format!($($arg)*))
    };
}

/// Writes one line to stdout, never panicking: false when stdout refused
/// it (a closed pipe after `| head`, a full disk). For output that is
/// a report rather than the answer a script reads, where the work goes on
/// whoever reads it.
pub fn stdout_line(text: &str) -> bool {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}

/// `println!` that cannot panic (see [`stdout_line`]).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::stderr::stdout_line("")
    };
    ($($arg:tt)*) => {
        $crate::stderr::stdout_line(&format!($($arg)*))
    };
}

/// An error and its causes as the one line a user reads. Libraries often
/// repeat their cause in their own message (`thiserror`'s `{source}` with a
/// `#[source]` field, an `io::Error` wrapped in a context naming it again),
/// so printing every link of the chain would say the same thing twice: a
/// cause whose text the line already holds is left out. Line breaks inside
/// a message become spaces, and the OS's ` (os error N)` suffix, which says
/// nothing a user can act on, is dropped.
pub fn error_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = plain(&e.to_string());
        if !text.is_empty() && !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        next = e.source();
    }
    line
}

/// One message as plain words on one line (see [`error_line`]).
fn plain(text: &str) -> String {
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    while let Some(start) = text.find(" (os error ") {
        let Some(len) = text[start..].find(')') else {
            break;
        };
        text.replace_range(start..start + len + 1, "");
    }
    text
}

/// The writer `tracing` formats each record into: the record is queued
/// whole when the writer is dropped.
pub struct Record<'a> {
    sink: &'a Sink,
    bytes: Vec<u8>,
}

impl Write for Record<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        if !self.bytes.is_empty() {
            self.sink.send(std::mem::take(&mut self.bytes));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
    type Writer = Record<'a>;

    fn make_writer(&'a self) -> Record<'a> {
        Record {
            sink: self,
            bytes: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {what}: {source}")]
    struct Repeats {
        what: &'static str,
        source: io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Wraps(&'static str, #[source] Repeats);

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Same(&'static str, #[source] io::Error);

    #[test]
    fn an_error_line_says_each_cause_once_on_one_line() {
        let dir = || io::Error::from_raw_os_error(21);
        let cases: [(&(dyn std::error::Error + 'static), &str); 4] = [
            (&dir(), "Is a directory"),
            (
                &Repeats {
                    what: "the key file /k",
                    source: dir(),
                },
                "cannot read the key file /k: Is a directory",
            ),
            (
                &Wraps(
                    "enqueue",
                    Repeats {
                        what: "x",
                        source: io::Error::other("two\nlines"),
                    },
                ),
                "enqueue: cannot read x: two lines",
            ),
            (
                &Same(
                    "invalid socket address",
                    io::Error::other("invalid socket address"),
                ),
                "invalid socket address",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(error_line(err), want);
        }
    }
    use std::sync::Mutex;
    use std::sync::mpsc::{Sender, channel};

    /// A sink that says when a write begins, blocks until told to go on,
    /// then records what it got.
    struct Stalled {
        entered: Sender<()>,
        go: Receiver<()>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.entered.send(());
            let _ = self.go.recv();
            self.got.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_stderr_drops_lines_instead_of_blocking_and_says_how_many_once_it_drains() {
        let (entered, writing) = channel();
        let (go, wait) = channel();
        let got = Arc::new(Mutex::new(Vec::new()));
        let out = Stalled {
            entered,
            go: wait,
            got: got.clone(),
        };
        let sink = Sink::spawn(out, 4).unwrap();
        sink.send(b"line 0\n".to_vec());
        writing.recv().unwrap();
        let started = Instant::now();
        for i in 1..100 {
            sink.send(format!("line {i}\n").into_bytes());
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "sending never waits for the writer"
        );
        // The writer is stuck on line 0 and the queue holds four: 95 are lost.
        assert_eq!(sink.dropped(), 95);
        for _ in 0..6 {
            go.send(()).unwrap();
        }
        assert!(sink.flush(Duration::from_secs(10)));
        let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "line 0\nline 1\nline 2\nline 3\nline 4\n\
             minimax-dl: 95 log lines dropped: stderr was not taking them\n"
        );
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_broken_stderr_loses_the_lines_and_nothing_else() {
        let sink = Sink::spawn(Broken, 4).unwrap();
        sink.send(b"one\n".to_vec());
        sink.send(b"two\n".to_vec());
        assert!(
            sink.flush(Duration::from_secs(10)),
            "the queue still drains"
        );
        assert_eq!(sink.dropped(), 2);
    }
}
