//! Replacing a file so that a crash leaves either the old or the new content, never a mix:
//! the state file and the journal's rewrite both go through here.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replaces `path` with `body`, mode 0600: a crash leaves either the old or the new content.
pub(crate) fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A new file of a name nobody can guess, created exclusively and never through a link:
    // a link planted in the directory must not make keywarden write (or chmod) another file.
    // A run killed mid-write leaves this one file behind.
    let unique = format!(
        "{}.{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let tmp = dir.join(format!(".{name}.{unique}.tmp"));
    let result = (|| {
        // Who was warned about which key, and when, is nobody else's business.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_link_planted_at_a_temporary_name_is_never_followed() {
        let dir = std::env::temp_dir().join(format!("kw-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        // Where an older keywarden put its temporary file: a link planted there must not be
        // written through (nor the file it names chmod'ed).
        std::os::unix::fs::symlink(&victim, dir.join(".state.json.tmp")).unwrap();
        let state = dir.join("state.json");
        write_atomically(&state, b"{}").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "{}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
