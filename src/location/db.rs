//! Where the queue is (pure): the database location as written in the
//! configuration, whether it selects PostgreSQL, how it may be shown (no
//! password), and which locations can never hold a queue. Checked by
//! `config` at load, opened by `queue`.

use std::path::PathBuf;

/// Which database holds the queue: a SQLite file path or `sqlite:` URL, or a
/// `postgres://` / `postgresql://` URL. The raw text may hold a password:
/// show it only through [`DbLocation::redacted`] (its `Debug` does).
#[derive(Clone, PartialEq, Eq)]
pub struct DbLocation(pub String);

impl std::fmt::Debug for DbLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DbLocation").field(&self.redacted()).finish()
    }
}

impl DbLocation {
    /// A PostgreSQL URL (`postgres://` or `postgresql://`, any case) selects
    /// the PostgreSQL store; anything else is a SQLite path or URL.
    pub fn is_postgres(&self) -> bool {
        is_postgres_url(&self.0)
    }

    /// The location as it may be shown: a URL (PostgreSQL's, or one with a
    /// scheme we refuse, which may carry a password too) without its
    /// password, a SQLite location as written.
    pub fn redacted(&self) -> String {
        if self.is_postgres() || self.0.contains("://") {
            redact_url(&self.0)
        } else {
            self.0.clone()
        }
    }

    pub(crate) fn sqlite_path(&self) -> PathBuf {
        let raw = self.0.as_str();
        let stripped = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
            .unwrap_or(raw);
        let stripped = stripped.split('?').next().unwrap_or(stripped);
        PathBuf::from(stripped)
    }
}

/// `postgres://` or `postgresql://`, in any case (sqlx accepts both).
pub(crate) fn is_postgres_url(raw: &str) -> bool {
    let lower = raw.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// The URL as it may be shown: the password of the user part, and the value
/// of every query pair whose key looks like `password` (misspelt,
/// percent-encoded or not), replaced by `***`. Pure, and works on
/// text that is not a valid URL too: the user part ends at the last `@`
/// before the query, so a password with an unescaped `/` or `@` is still
/// hidden.
pub(crate) fn redact_url(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(at) => raw.split_at(at + 3),
        None => ("", raw),
    };
    let (main, query) = match rest.find(['?', '#']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let main = match main.rfind('@') {
        Some(at) => {
            let (user_part, host_part) = main.split_at(at);
            match user_part.find(':') {
                Some(colon) => format!("{}:***{host_part}", &user_part[..colon]),
                None => main.to_string(),
            }
        }
        None => main.to_string(),
    };
    format!("{scheme}{main}{}", redact_query(query))
}

/// `?a=1&password=x#frag` with the value of every key with `pass` in it hidden.
fn redact_query(query: &str) -> String {
    let Some(lead) = query.chars().next() else {
        return String::new();
    };
    let pairs = query[1..]
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if looks_like_password(&percent_decode(key)) => {
                format!("{key}=***")
            }
            _ => pair.to_string(),
        });
    format!("{lead}{}", pairs.collect::<Vec<_>>().join("&"))
}

/// `password`, and its misspellings and abbreviations (`pasword`, `passwd`,
/// `pwd`): sqlx logs an unknown key with its value, so a typo must be
/// hidden too.
fn looks_like_password(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("pas") || key.contains("pw")
}

/// `%XX` escapes decoded (invalid ones kept as written), as sqlx reads keys.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a location can never hold a queue (pure): a queue must outlive the
/// command, so it needs a file; and a `scheme://` we do not know
/// (`postgress://`, `mysql://`, `https://`) is a typo or another database,
/// never a relative path to create.
pub(crate) fn check_location(raw: &str) -> Result<(), &'static str> {
    if unknown_scheme(raw) {
        return Err(
            "has a scheme minimax-dl does not know: give a SQLite path (or sqlite:PATH) or a postgres:// or postgresql:// URL",
        );
    }
    let path = DbLocation(raw.to_string()).sqlite_path();
    let path = path.to_string_lossy();
    if path.trim().is_empty() {
        return Err("is empty: give the path of the queue's SQLite file");
    }
    if path == ":memory:" || raw.contains("mode=memory") {
        return Err(
            "is an in-memory database, gone when the command exits: give the path of a SQLite file",
        );
    }
    Ok(())
}

/// Whether `raw` starts with `scheme://` (RFC 3986 scheme characters) for
/// a scheme other than `sqlite`, `postgres` and `postgresql`. Pure.
pub(crate) fn unknown_scheme(raw: &str) -> bool {
    let Some((scheme, _)) = raw.trim_start().split_once("://") else {
        return false;
    };
    let is_scheme = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let known = ["sqlite", "postgres", "postgresql"];
    is_scheme && !known.iter().any(|k| scheme.eq_ignore_ascii_case(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_locations_accept_paths_and_urls() {
        assert_eq!(
            DbLocation("/tmp/q.db".into()).sqlite_path(),
            PathBuf::from("/tmp/q.db")
        );
        assert_eq!(
            DbLocation("sqlite:///tmp/q.db".into()).sqlite_path(),
            PathBuf::from("/tmp/q.db")
        );
        assert_eq!(
            DbLocation("sqlite:q.db?mode=rwc".into()).sqlite_path(),
            PathBuf::from("q.db")
        );
    }

    #[test]
    fn locations_that_cannot_hold_a_queue_are_refused() {
        for bad in [
            "",
            "  ",
            "sqlite:",
            "sqlite::memory:",
            ":memory:",
            "sqlite://",
        ] {
            assert!(check_location(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_location("sqlite:q.db?mode=memory").is_err());
        for unknown in [
            "postgress://u@h/db",
            "mysql://u:pw@h/db",
            "https://example.com/q.db",
            " HTTP://x",
            "file:///tmp/q.db",
        ] {
            assert!(check_location(unknown).is_err(), "{unknown:?} accepted");
        }
        for good in [
            "/tmp/q.db",
            "sqlite:///tmp/q.db",
            "q.db",
            "sqlite:q.db?mode=rwc",
            "SQLite:///tmp/q.db",
            "postgres://u@h/db",
            "PostgreSQL://u@h/db",
            "dir/odd://name.db",
            "./q://b",
        ] {
            assert!(check_location(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn postgres_urls_are_told_from_sqlite_locations() {
        for pg in [
            "postgres://h/db",
            "postgresql://u@h/db",
            "POSTGRES://h",
            " postgres://h",
        ] {
            assert!(is_postgres_url(pg), "{pg}");
        }
        for other in [
            "/tmp/q.db",
            "sqlite:///tmp/q.db",
            "postgres.db",
            "postgres:/h",
            "q.db",
        ] {
            assert!(!is_postgres_url(other), "{other}");
        }
    }

    #[test]
    fn passwords_never_survive_redaction() {
        let cases = [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            // Percent-encoded, and characters a password should have escaped.
            ("postgres://u:p%40ss%2Fw@h/db", "postgres://u:***@h/db"),
            (
                "postgresql://u:p/ss@w@h/db?sslmode=verify-full",
                "postgresql://u:***@h/db?sslmode=verify-full",
            ),
            // In the query, in any position, in any case.
            (
                "postgres://h/db?user=u&password=secret",
                "postgres://h/db?user=u&password=***",
            ),
            (
                "postgres://h/db?password=secret&sslmode=require",
                "postgres://h/db?password=***&sslmode=require",
            ),
            (
                "postgres://h/db?PASSWORD=secret",
                "postgres://h/db?PASSWORD=***",
            ),
            (
                "postgres://h/db?pass%77ord=secret",
                "postgres://h/db?pass%77ord=***",
            ),
            (
                "postgres://h/db?pasword=secret&x=1",
                "postgres://h/db?pasword=***&x=1",
            ),
            (
                "postgres://u:a@h/db?password=b#c",
                "postgres://u:***@h/db?password=***",
            ),
            ("postgres://:secret@h/db", "postgres://:***@h/db"),
        ];
        for (raw, shown) in cases {
            assert_eq!(redact_url(raw), shown, "{raw}");
            assert!(!redact_url(raw).contains("secret"), "{raw}");
        }
    }
}
