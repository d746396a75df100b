//! Lease owner names (`host:pidns:pid:tag-N`) and whether an owner is a
//! dead process of this host, which lets a restarted daemon take its
//! leases before they expire.

use crate::queue::now_millis;

/// `host:pidns:pid:tag`, unique per process run and readable in `show`.
/// Host and pid namespace let a restarted daemon tell that a lease's owner
/// is a dead process on this same machine (see [`owner_is_dead`]).
pub(crate) fn worker_identity() -> String {
    let tag: u32 = (now_millis() as u32) ^ std::process::id().rotate_left(16);
    format!(
        "{}:{}:{}:{tag:08x}",
        host_name(),
        pid_namespace(),
        std::process::id()
    )
}

/// The host's name (`gethostname`, which works where `/proc/sys` is hidden)
/// and the start of `/etc/machine-id`, which tells apart hosts that share a
/// name.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it on success (and we stop at the first NUL regardless).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_string()
    };
    let machine = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let machine: String = machine.trim().chars().take(12).collect();
    format!("{name}.{machine}").replace(':', "_")
}

/// Does process `pid` exist? `kill(pid, 0)` answers even where `/proc`
/// hides other users' processes: EPERM means it exists.
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 performs the permission and existence checks only.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|l| {
            let text = l.to_string_lossy().into_owned();
            text.split(['[', ']']).nth(1).map(str::to_string)
        })
        .unwrap_or_else(|| "0".into())
}

/// The `(host, pid namespace, pid)` a lease owner names, if it has that form.
pub(crate) fn parse_owner(owner: &str) -> Option<(&str, &str, u32)> {
    let mut parts = owner.split(':');
    let (host, ns, pid, _tag) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((host, ns, pid.parse().ok()?))
}

/// Is `owner` a process of this host and pid namespace that no longer
/// exists? Only then may its leases be taken before they expire; an owner
/// elsewhere (another host sharing the queue) is always waited for.
pub(crate) fn owner_is_dead(owner: &str) -> bool {
    let Some((host, ns, pid)) = parse_owner(owner) else {
        return false;
    };
    host == host_name()
        && ns == pid_namespace()
        && pid != std::process::id()
        && !process_exists(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_name_host_namespace_and_pid() {
        let me = worker_identity();
        let (host, ns, pid) = parse_owner(&me).unwrap();
        assert_eq!(
            (host, ns, pid),
            (
                host_name().as_str(),
                pid_namespace().as_str(),
                std::process::id()
            )
        );
        assert!(!owner_is_dead(&me), "this process is alive");
        assert_eq!(parse_owner("a:b:c"), None);
        assert_eq!(parse_owner("a:b:notapid:t"), None);
    }

    #[test]
    fn only_dead_local_owners_are_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = format!("{}:{}:{pid}:00000000", host_name(), pid_namespace());
        assert!(owner_is_dead(&dead));
        let elsewhere = format!("another-host:{}:{pid}:00000000", pid_namespace());
        assert!(!owner_is_dead(&elsewhere));
        assert!(!owner_is_dead("garbage"));
    }
}
