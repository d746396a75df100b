//! Where the bucket's credentials and endpoint come from, resolved once
//! when the engine is built. The standard AWS chain, in this order:
//!
//! 1. the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!    `AWS_SESSION_TOKEN` (and every other `AWS_*` setting object_store
//!    knows: `AWS_REGION`, `AWS_ENDPOINT_URL`, web identity, containers);
//! 2. systemd credentials (`LoadCredential=aws_access_key_id:…`,
//!    `aws_secret_access_key`, optionally `aws_session_token`), as the
//!    daemon's own secrets are;
//! 3. `AWS_PROFILE` (or `default`) in the shared credentials file
//!    (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`);
//! 4. otherwise object_store's own chain: instance metadata (IMDS).
//!
//! Secrets never leave this module except into the S3 client: errors name
//! the file or variable, never a value.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

/// A key pair (and session token) found outside the environment.
pub(crate) struct StaticKeys {
    pub key_id: String,
    pub secret: SecretString,
    pub token: Option<SecretString>,
    /// Where they came from, for messages: "systemd credentials",
    /// "profile default in ~/.aws/credentials".
    pub origin: String,
}

/// Why the credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CredentialsError {
    #[error("cannot read {what} {}: {source}", .path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin} has {found} but not {missing}")]
    Incomplete {
        origin: String,
        found: &'static str,
        missing: &'static str,
    },
    #[error("AWS_PROFILE={profile} names no profile in {}", .path.display())]
    NoProfile { profile: String, path: PathBuf },
}

/// The keys of steps 2 and 3, when the environment holds none. `None`:
/// leave it to the environment or to instance metadata.
pub(crate) fn static_keys(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<StaticKeys>, CredentialsError> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if set("AWS_ACCESS_KEY_ID").is_some() || set("AWS_SECRET_ACCESS_KEY").is_some() {
        return Ok(None);
    }
    if let Some(dir) = set("CREDENTIALS_DIRECTORY")
        && let Some(keys) = systemd_keys(Path::new(&dir))?
    {
        return Ok(Some(keys));
    }
    let file = set("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|home| Path::new(&home).join(".aws/credentials")));
    let profile = set("AWS_PROFILE");
    match file {
        Some(file) if file.exists() || profile.is_some() => profile_keys(
            &file,
            profile.as_deref().unwrap_or("default"),
            profile.is_some(),
        ),
        _ => Ok(None),
    }
}

fn read_secret(path: &Path, what: &'static str) -> Result<String, CredentialsError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim_start_matches('\u{feff}').trim().to_string())
        .map_err(|source| CredentialsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
}

fn systemd_keys(dir: &Path) -> Result<Option<StaticKeys>, CredentialsError> {
    let id = dir.join("aws_access_key_id");
    let secret = dir.join("aws_secret_access_key");
    let origin = "systemd credentials".to_string();
    match (id.exists(), secret.exists()) {
        (false, false) => return Ok(None),
        (true, false) => {
            return Err(CredentialsError::Incomplete {
                origin,
                found: "aws_access_key_id",
                missing: "aws_secret_access_key",
            });
        }
        (false, true) => {
            return Err(CredentialsError::Incomplete {
                origin,
                found: "aws_secret_access_key",
                missing: "aws_access_key_id",
            });
        }
        (true, true) => {}
    }
    let token = dir.join("aws_session_token");
    let token = match token.exists() {
        true => Some(read_secret(&token, "the systemd credential")?.into()),
        false => None,
    };
    Ok(Some(StaticKeys {
        key_id: read_secret(&id, "the systemd credential")?,
        secret: read_secret(&secret, "the systemd credential")?.into(),
        token,
        origin,
    }))
}

fn profile_keys(
    file: &Path,
    profile: &str,
    named: bool,
) -> Result<Option<StaticKeys>, CredentialsError> {
    let text = read_secret(file, "the AWS credentials file")?;
    let Some(section) = ini_section(&text, profile) else {
        return match named {
            true => Err(CredentialsError::NoProfile {
                profile: profile.to_string(),
                path: file.to_path_buf(),
            }),
            false => Ok(None),
        };
    };
    let value = |key: &str| {
        section
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.to_string())
    };
    let origin = format!("profile {profile} in {}", file.display());
    let (Some(key_id), Some(secret)) = (value("aws_access_key_id"), value("aws_secret_access_key"))
    else {
        return Err(CredentialsError::Incomplete {
            origin,
            found: "a section",
            missing: "aws_access_key_id and aws_secret_access_key",
        });
    };
    Ok(Some(StaticKeys {
        key_id,
        secret: secret.into(),
        token: value("aws_session_token").map(Into::into),
        origin,
    }))
}

/// The `key = value` lines of `[name]` in an INI text (AWS's shared files:
/// `#` and `;` comments, whitespace around `=`).
fn ini_section<'a>(text: &'a str, name: &str) -> Option<Vec<(&'a str, &'a str)>> {
    let mut found = None;
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.trim() == name;
            if inside {
                found.get_or_insert_with(Vec::new);
            }
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            found
                .get_or_insert_with(Vec::new)
                .push((k.trim(), v.trim()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env_of(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn the_environment_wins_and_is_left_to_the_client() {
        let env = env_of(&[("AWS_ACCESS_KEY_ID", "AKIA".into())]);
        assert!(static_keys(&env).unwrap().is_none());
    }

    #[test]
    fn systemd_credentials_are_read_and_a_half_pair_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("aws_access_key_id"), "id1\n").unwrap();
        let env = env_of(&[("CREDENTIALS_DIRECTORY", dir.path().display().to_string())]);
        let e = static_keys(&env).err().unwrap().to_string();
        assert!(e.contains("not aws_secret_access_key"), "{e}");
        std::fs::write(dir.path().join("aws_secret_access_key"), "s3cr3t\n").unwrap();
        let keys = static_keys(&env).unwrap().unwrap();
        assert_eq!(keys.key_id, "id1");
        assert_eq!(keys.secret.expose_secret(), "s3cr3t");
        assert!(keys.token.is_none());
        assert_eq!(keys.origin, "systemd credentials");
    }

    #[test]
    fn a_named_profile_is_read_from_the_shared_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id=d\naws_secret_access_key=ds\n\n# archive\n[archive]\n aws_access_key_id = a \naws_secret_access_key = as\naws_session_token=tok\n",
        )
        .unwrap();
        let path = file.display().to_string();
        let env = env_of(&[
            ("AWS_SHARED_CREDENTIALS_FILE", path.clone()),
            ("AWS_PROFILE", "archive".into()),
        ]);
        let keys = static_keys(&env).unwrap().unwrap();
        assert_eq!(keys.key_id, "a");
        assert_eq!(keys.secret.expose_secret(), "as");
        assert_eq!(keys.token.unwrap().expose_secret(), "tok");
        let env = env_of(&[("AWS_SHARED_CREDENTIALS_FILE", path.clone())]);
        assert_eq!(static_keys(&env).unwrap().unwrap().key_id, "d");
        let env = env_of(&[
            ("AWS_SHARED_CREDENTIALS_FILE", path),
            ("AWS_PROFILE", "nope".into()),
        ]);
        let e = static_keys(&env).err().unwrap().to_string();
        assert!(e.contains("AWS_PROFILE=nope names no profile"), "{e}");
        assert!(!e.contains("as") || !e.contains("tok"), "no secret in {e}");
    }

    #[test]
    fn nothing_found_leaves_it_to_instance_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_of(&[("HOME", dir.path().display().to_string())]);
        assert!(static_keys(&env).unwrap().is_none());
    }
}
