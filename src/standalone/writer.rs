//! Writes a set of files into a folder the way kubelet's atomic writer lays out a volume, so
//! readers never see half of a set and can watch `..data` for changes.
//!
//! Layout: the files live in a fresh folder `..<UTC timestamp>`; the symlink `..data` points at
//! it and is replaced by a rename, which is atomic; each first path component has a top-level
//! symlink `name → ..data/name`. Only what this writer made is ever removed: its timestamped
//! folders and top-level links that point into `..data`. Paths were checked when the request
//! was parsed, and are checked again here, so nothing outside the target is ever written.
//!
//! Known shortcoming: two processes writing the same target are not locked against each
//! other; they share `..data_tmp`, so one may fail or leave a timestamped folder behind. An
//! advisory lock on the target (flock) would fix it.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::request::paths;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file to write.
#[derive(Debug)]
pub struct Entry<'a> {
    /// Path relative to the target.
    pub path: &'a str,
    /// Mode, applied exactly.
    pub mode: u32,
    /// Contents.
    pub contents: &'a [u8],
}

/// Replaces the files in `target` with `entries`, atomically.
pub fn write(target: &Path, entries: &[Entry<'_>]) -> io::Result<()> {
    for entry in entries {
        paths::check(entry.path)
            .map_err(|reason| io::Error::new(io::ErrorKind::InvalidInput, reason))?;
    }
    fs::create_dir_all(target)?;
    let previous = fs::read_link(target.join(DATA)).ok();

    let folder = fresh_folder(target)?;
    if let Err(error) = fill(&target.join(&folder), entries) {
        let _ = fs::remove_dir_all(target.join(&folder));
        return Err(error);
    }

    let tmp = target.join(DATA_TMP);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    symlink(&folder, &tmp)?;
    fs::rename(&tmp, target.join(DATA))?;

    link_top_level(target, entries)?;
    if let Some(previous) = previous.filter(|p| *p != folder && is_ours(p)) {
        fs::remove_dir_all(target.join(previous))?;
    }
    Ok(())
}

/// Writes every entry under `folder`, creating sub-folders 0755 and setting each mode exactly.
fn fill(folder: &Path, entries: &[Entry<'_>]) -> io::Result<()> {
    for entry in entries {
        let file = folder.join(entry.path);
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent)?;
            fs::set_permissions(parent, fs::Permissions::from_mode(0o755))?;
        }
        // Created owner-only, so the contents are never readable with looser bits; the
        // exact mode follows.
        let mut created = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)?;
        created.write_all(entry.contents)?;
        // Set after writing: the umask must not decide, and mode 0 must stay 0.
        fs::set_permissions(&file, fs::Permissions::from_mode(entry.mode & 0o777))?;
    }
    Ok(())
}

/// Adds a link for every first component and removes our links that are no longer used. An
/// entry in the way that this writer did not make is an error, never overwritten.
fn link_top_level(target: &Path, entries: &[Entry<'_>]) -> io::Result<()> {
    let wanted: BTreeSet<&str> = entries
        .iter()
        .filter_map(|e| e.path.split('/').next())
        .collect();
    for name in &wanted {
        let link = target.join(name);
        let expected = Path::new(DATA).join(name);
        match fs::read_link(&link) {
            Ok(points_to) if points_to == expected => {}
            Ok(_) | Err(_) if fs::symlink_metadata(&link).is_ok() => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and was not made by this writer", link.display()),
                ));
            }
            _ => symlink(&expected, &link)?,
        }
    }

    for dirent in fs::read_dir(target)? {
        let name = dirent?.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("..") || wanted.contains(name) {
            continue;
        }
        let link = target.join(name);
        if fs::read_link(&link).is_ok_and(|to| to.starts_with(DATA)) {
            fs::remove_file(link)?;
        }
    }
    Ok(())
}

/// Whether a `..data` target is one of this writer's timestamped folders.
fn is_ours(folder: &Path) -> bool {
    let name = folder.to_string_lossy();
    folder.components().count() == 1 && name.starts_with("..2") && name.len() > 20
}

/// Creates `..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN` in `target` (UTC) and returns its name.
fn fresh_folder(target: &Path) -> io::Result<PathBuf> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (year, month, day) = civil_date(secs / 86_400);
    let time = secs % 86_400;
    let stamp = format!(
        "..{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}",
        time / 3600,
        time / 60 % 60,
        time % 60
    );

    for bump in 0..1000 {
        let name = PathBuf::from(format!("{stamp}.{:09}", now.subsec_nanos() + bump));
        match fs::create_dir(target.join(&name)) {
            Ok(()) => {
                fs::set_permissions(target.join(&name), fs::Permissions::from_mode(0o755))?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free timestamped folder name",
    ))
}

/// Year, month and day of a count of days since 1970-01-01 (proleptic Gregorian calendar).
fn civil_date(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so that leap days fall at the end of each 400-year era.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(path: &'a str, mode: u32, contents: &'a str) -> Entry<'a> {
        Entry {
            path,
            mode,
            contents: contents.as_bytes(),
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn lays_out_the_volume_like_kubelet() {
        let dir = tempfile_dir("layout");
        write(
            &dir,
            &[
                entry("db", 0o644, "one"),
                entry("tls/key.pem", 0o400, "k"),
                entry("zero", 0, ""),
            ],
        )
        .unwrap();

        assert_eq!(fs::read_to_string(dir.join("db")).unwrap(), "one");
        assert_eq!(
            fs::read_link(dir.join("tls")).unwrap(),
            Path::new("..data/tls")
        );
        assert_eq!(
            (mode(&dir.join("tls/key.pem")), mode(&dir.join("zero"))),
            (0o400, 0)
        );
        assert!(
            fs::read_link(dir.join("..data"))
                .unwrap()
                .to_string_lossy()
                .starts_with("..20")
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_second_write_swaps_and_cleans_up() {
        let dir = tempfile_dir("swap");
        write(&dir, &[entry("a", 0o644, "1"), entry("b", 0o644, "2")]).unwrap();
        let first = fs::read_link(dir.join("..data")).unwrap();

        write(&dir, &[entry("a", 0o644, "3")]).unwrap();

        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "3");
        assert!(
            fs::symlink_metadata(dir.join("b")).is_err(),
            "stale link removed"
        );
        assert!(!dir.join(first).exists(), "old folder removed");
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}"); // a, ..data, one timestamped folder
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn never_touches_what_it_did_not_make() {
        let dir = tempfile_dir("foreign");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("notes.txt"), "mine").unwrap();
        write(&dir, &[entry("a", 0o644, "1")]).unwrap();
        assert_eq!(fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine");

        let clash = write(&dir, &[entry("notes.txt", 0o644, "x")]).unwrap_err();
        assert_eq!(clash.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine");
        for bad in ["../escape", "/etc/passwd", "a/../../b"] {
            assert_eq!(
                write(&dir, &[entry(bad, 0o644, "x")]).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_791), (2026, 12, 4));
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "akv-writer-{name}-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }
}
