//! Secrets: the API key, the callback token and the database URL, from the
//! environment, files and systemd credentials (`LoadCredential=`), each
//! checked without ever showing it; and the warning about a file holding a
//! secret that users other than its owner may read.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

use super::file::{FileConfig, read_text};
use super::resolve::Sources;
use super::{ConfigError, MIN_LISTEN_TOKEN};

/// Is a file with these mode bits readable by users other than its owner?
pub(crate) fn readable_by_others(mode: u32) -> bool {
    mode & 0o044 != 0
}

/// The warning for a file holding `what` that others may read, naming the
/// file and the fix; `None` when its mode keeps it private.
pub(crate) fn exposure_warning(path: &Path, mode: u32, what: &str) -> Option<String> {
    readable_by_others(mode).then(|| {
        format!(
            "{} holds {what} and is readable by other users (mode {:04o}): run `chmod 600 {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        )
    })
}

/// The config file (when it holds a secret), the API key file and the
/// database URL file, when users other than their owner may read them.
pub(super) fn exposed_secret_files(config_path: Option<&Path>, file: &FileConfig) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    // Only files: a directory named by mistake is refused when it is read,
    // and `chmod 600` would not be the fix.
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.permissions().mode())
    };
    let mut warnings = Vec::new();
    let secrets = file.secret_keys();
    if let Some(path) = config_path.filter(|_| !secrets.is_empty())
        && let Some(mode) = mode(path)
    {
        let what = format!("a secret (`{}`)", secrets.join("`, `"));
        warnings.extend(exposure_warning(path, mode, &what));
    }
    if let Some(path) = file.api_key_file.as_deref()
        && let Some(mode) = mode(path)
    {
        warnings.extend(exposure_warning(path, mode, "the API key"));
    }
    if let Some(path) = file.callback_token_file.as_deref()
        && let Some(mode) = mode(path)
    {
        warnings.extend(exposure_warning(path, mode, "the callback token"));
    }
    if let Some(path) = file.database_url_file.as_deref()
        && let Some(mode) = mode(path)
    {
        warnings.extend(exposure_warning(path, mode, "the database URL"));
    }
    warnings
}

/// The key from the environment, else the key file, else the systemd
/// credential.
pub(super) fn resolve_api_key(
    src: &Sources<'_>,
    key_file: Option<&Path>,
) -> Result<Option<SecretString>, ConfigError> {
    if let Some(v) = src.env_nonempty("MINIMAX_API_KEY") {
        let origin = "environment variable MINIMAX_API_KEY";
        check_key(v.trim(), origin)?;
        return Ok(Some(SecretString::from(v.trim().to_string())));
    }
    if let Some(path) = key_file {
        return read_key_file(path, &src.file_origin("api_key_file")).map(Some);
    }
    // systemd's LoadCredential=api_key:... puts it here.
    match src.env_nonempty("CREDENTIALS_DIRECTORY") {
        Some(dir) if Path::new(&dir).join("api_key").exists() => read_key_file(
            &Path::new(&dir).join("api_key"),
            "systemd credential api_key",
        )
        .map(Some),
        _ => Ok(None),
    }
}

fn read_key_file(path: &Path, origin: &str) -> Result<SecretString, ConfigError> {
    let text = read_text(path).map_err(|source| ConfigError::KeyFile {
        path: path.to_path_buf(),
        origin: origin.to_string(),
        source,
    })?;
    // Editors on some systems start a UTF-8 file with a byte-order mark.
    let key = text.strip_prefix('\u{feff}').unwrap_or(&text).trim();
    if key.is_empty() {
        return Err(ConfigError::Invalid {
            origin: origin.to_string(),
            message: format!("the API key file {} is empty", path.display()),
        });
    }
    check_key(key, &format!("{origin} (file {})", path.display()))?;
    Ok(SecretString::from(key.to_string()))
}

/// A key is one line of printable ASCII: anything else cannot be sent in an
/// HTTP header, and would fail every job one retry at a time. The message
/// says where the key came from and where the bad character is, never the
/// key.
fn check_key(key: &str, origin: &str) -> Result<(), ConfigError> {
    match key.chars().position(|c| !c.is_ascii_graphic() && c != ' ') {
        None => Ok(()),
        Some(at) => Err(ConfigError::Invalid {
            origin: origin.to_string(),
            message: format!(
                "the API key has a control or non-ASCII character (a line break, tab, ...) at \
                 character {}; a key is one line of printable ASCII: copy it again",
                at + 1
            ),
        }),
    }
}

/// A token (`listen_token`, `callback_token`) long enough not to be
/// guessed, and usable in a header or a URL path as it is.
pub(super) fn check_token(token: &str, origin: String) -> Result<(), ConfigError> {
    let printable = token.chars().all(|c| c.is_ascii_graphic() && c != '/');
    if token.len() < MIN_LISTEN_TOKEN || !printable {
        return Err(ConfigError::Invalid {
            origin,
            message: format!(
                "the token must be at least {MIN_LISTEN_TOKEN} printable ASCII characters \
                 without spaces or slashes (e.g. `openssl rand -hex 16`)"
            ),
        });
    }
    Ok(())
}

/// The callback token: `MINIMAX_DL_CALLBACK_TOKEN` > `callback_token_file`
/// > `callback_token` > the systemd credential `callback_token`.
pub(super) fn resolve_callback_token(
    src: &Sources<'_>,
    file: &FileConfig,
) -> Result<Option<SecretString>, ConfigError> {
    let credential = src
        .env_nonempty("CREDENTIALS_DIRECTORY")
        .map(|dir| Path::new(&dir).join("callback_token"))
        .filter(|p| p.exists());
    let (token, origin) = if let Some(v) = src.env_nonempty("MINIMAX_DL_CALLBACK_TOKEN") {
        (
            v.trim().to_string(),
            "environment variable MINIMAX_DL_CALLBACK_TOKEN".to_string(),
        )
    } else if let Some(path) = file
        .callback_token_file
        .as_deref()
        .or(credential.as_deref())
    {
        let origin = match &file.callback_token_file {
            Some(_) => src.file_origin("callback_token_file"),
            None => "systemd credential callback_token".to_string(),
        };
        let text = read_text(path).map_err(|source| ConfigError::TokenFile {
            path: path.to_path_buf(),
            origin: origin.clone(),
            source,
        })?;
        (
            text.trim_start_matches('\u{feff}').trim().to_string(),
            origin,
        )
    } else if let Some(t) = &file.callback_token {
        (
            t.expose_secret().trim().to_string(),
            src.file_origin("callback_token"),
        )
    } else {
        return Ok(None);
    };
    check_token(&token, origin)?;
    Ok(Some(SecretString::from(token)))
}

/// The database URL from a file: one line (a byte-order mark and the
/// surrounding whitespace, the trailing newline included, are dropped).
/// Errors name the file, never its contents.
pub(super) fn read_url_file(path: &Path, origin: &str) -> Result<String, ConfigError> {
    let text = read_text(path).map_err(|source| ConfigError::UrlFile {
        path: path.to_path_buf(),
        origin: origin.to_string(),
        source,
    })?;
    let url = text.strip_prefix('\u{feff}').unwrap_or(&text).trim();
    if url.is_empty() {
        return Err(ConfigError::Invalid {
            origin: origin.to_string(),
            message: format!("the database URL file {} is empty", path.display()),
        });
    }
    if url.contains('\n') {
        return Err(ConfigError::Invalid {
            origin: origin.to_string(),
            message: format!(
                "the database URL file {} has more than one line: it holds the URL alone",
                path.display()
            ),
        });
    }
    Ok(url.to_string())
}
