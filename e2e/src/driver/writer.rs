//! Writing a Mount's files into the volume the way Kubernetes' atomic writer does.
//!
//! The driver hands `MountResponse.files` to a copy of kubelet's atomic writer. Its rules are part
//! of the contract (PROTOCOL.md, "What the driver does with the response"): every path is checked
//! first and one bad path rejects the whole set; the files go into a fresh timestamped folder with
//! exactly the mode asked for; a `..data` symlink is swapped to that folder in one rename; each
//! first path component is a top-level symlink into `..data`; the previous folder and links that
//! are no longer used are removed. Contents are compared, not modes, so a mode-only change is not
//! written.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::pb::File;

/// The symlink to the current timestamped folder.
const DATA_DIR: &str = "..data";
/// The symlink made beside `..data` and renamed over it.
const DATA_TMP: &str = "..data_tmp";
/// Kubernetes' limits on a payload path and on each of its elements.
const MAX_PATH: usize = 4096;
const MAX_ELEMENT: usize = 255;

/// Checks a file path as the atomic writer does; the error says why it is refused.
pub fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("invalid path: must not be empty".into());
    }
    if path.starts_with('/') {
        return Err(format!("invalid path {path:?}: must be relative path"));
    }
    if path.len() > MAX_PATH {
        return Err(format!(
            "invalid path: must be less than or equal to {MAX_PATH} characters"
        ));
    }

    let elements: Vec<&str> = path.split('/').collect();
    for element in &elements {
        if *element == ".." {
            return Err(format!("invalid path {path:?}: must not contain '..'"));
        }
        if element.len() > MAX_ELEMENT {
            return Err(format!(
                "invalid path {path:?}: must not contain path elements longer than \
                 {MAX_ELEMENT} characters"
            ));
        }
    }
    if elements[0].starts_with("..") {
        return Err(format!("invalid path {path:?}: must not start with '..'"));
    }
    // `filepath.Clean` would change it: an empty element (`a//b`, `a/`) or a `.` one (`./a`).
    if elements.iter().any(|e| e.is_empty() || *e == ".") {
        return Err(format!("invalid path {path:?}: must be a clean path"));
    }
    Ok(())
}

/// Writes `files` into the volume at `target` (created if missing), replacing what an earlier
/// call wrote, atomically as kubelet's atomic writer does.
///
/// Nothing is written when any path is invalid (`InvalidInput`). When a path appears twice, the
/// last file wins, as in the driver's map. Directories are made 0755; each file gets exactly
/// `mode & 0o777`, whatever the umask (mode 0 gives a 0000 file).
pub fn write_volume(target: &Path, files: &[File]) -> io::Result<()> {
    let mut payload: BTreeMap<&str, &File> = BTreeMap::new();
    for file in files {
        validate_path(&file.path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        payload.insert(&file.path, file);
    }
    fs::create_dir_all(target)?;

    // What the current folder holds, and which of it the new payload no longer uses.
    let data_link = target.join(DATA_DIR);
    let old_dir: Option<PathBuf> = fs::read_link(&data_link).ok();
    let old_paths = match &old_dir {
        Some(dir) => walk(&target.join(dir), "")?,
        None => BTreeSet::new(),
    };
    let new_paths = with_parents(payload.keys().copied());
    let stale: Vec<&String> = old_paths.difference(&new_paths).collect();

    // Only contents count: a mode-only change is not written.
    let changed = old_dir.is_none()
        || payload.iter().any(|(path, file)| {
            fs::read(data_link.join(path)).map_or(true, |old| old != file.contents)
        });
    if !changed && stale.is_empty() {
        return Ok(());
    }

    let new_dir = new_timestamped_dir(target)?;
    let mut dirs = fs::DirBuilder::new();
    dirs.recursive(true).mode(0o755);
    for (path, file) in &payload {
        let full = target.join(&new_dir).join(path);
        if let Some(parent) = full.parent() {
            dirs.create(parent)?;
        }
        fs::write(&full, &file.contents)?;
        fs::set_permissions(&full, fs::Permissions::from_mode(file.mode as u32 & 0o777))?;
    }

    // The swap: a fresh `..data_tmp` link renamed over `..data` in one step.
    let tmp_link = target.join(DATA_TMP);
    remove_if_present(&tmp_link)?;
    symlink(&new_dir, &tmp_link)?;
    fs::rename(&tmp_link, &data_link)?;

    // One top-level link per first component; existing links already point into `..data`.
    let top_level: BTreeSet<&str> = payload.keys().map(|p| first_component(p)).collect();
    for name in &top_level {
        let link = target.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR).join(name), &link)?;
        }
    }
    for path in stale.iter().filter(|p| !p.contains('/')) {
        remove_if_present(&target.join(path))?;
    }

    if let Some(old) = old_dir.filter(|old| *old != new_dir) {
        fs::remove_dir_all(target.join(old))?;
    }
    Ok(())
}

fn first_component(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// Every path and every parent folder of it, relative.
fn with_parents<'a>(paths: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for path in paths {
        let mut end = 0;
        for element in path.split('/') {
            end += element.len();
            all.insert(path[..end].to_owned());
            end += 1;
        }
    }
    all
}

/// The relative paths of all files and folders under `dir`.
fn walk(dir: &Path, prefix: &str) -> io::Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if entry.file_type()?.is_dir() {
            found.extend(walk(&entry.path(), &relative)?);
        }
        found.insert(relative);
    }
    Ok(found)
}

/// Creates `..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN` (UTC) in `target`, mode 0755, and returns its name.
fn new_timestamped_dir(target: &Path) -> io::Result<PathBuf> {
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );

    // The nanoseconds make the name unique; bump them in the unlikely case of a clash.
    let mut nanos = now.nanosecond();
    loop {
        let name = PathBuf::from(format!("{stamp}.{nanos:09}"));
        match fs::create_dir(target.join(&name)) {
            Ok(()) => {
                fs::set_permissions(target.join(&name), fs::Permissions::from_mode(0o755))?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => nanos += 1,
            Err(e) => return Err(e),
        }
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, mode: i32, contents: &str) -> File {
        File {
            path: path.to_owned(),
            mode,
            contents: contents.as_bytes().to_vec(),
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn layout_is_timestamped_folder_data_link_and_top_level_links() {
        let target = tempfile::tempdir().unwrap();
        let files = [
            file("s1", 0o644, "one"),
            file("certs/tls.crt", 0o600, "crt"),
        ];
        write_volume(target.path(), &files).unwrap();

        let names = entries(target.path());
        assert_eq!(names.len(), 4, "{names:?}");
        // "..2…" sorts before "..data".
        let ts = &names[0];
        assert_eq!(names[1], "..data");
        assert!(ts.starts_with(".."), "{ts}");
        assert_eq!(ts.len(), "..2024_01_02_15_04_05.123456789".len(), "{ts}");
        assert_eq!(&names[2..], ["certs", "s1"]);

        let data = target.path().join("..data");
        assert_eq!(fs::read_link(&data).unwrap(), PathBuf::from(ts));
        assert_eq!(
            fs::read_link(target.path().join("s1")).unwrap(),
            PathBuf::from("..data/s1")
        );
        assert_eq!(
            fs::read_link(target.path().join("certs")).unwrap(),
            PathBuf::from("..data/certs")
        );
        assert_eq!(
            fs::read_to_string(target.path().join("certs/tls.crt")).unwrap(),
            "crt"
        );
        assert_eq!(mode(&target.path().join(ts)), 0o755);
    }

    #[test]
    fn modes_are_exact_whatever_the_umask() {
        let target = tempfile::tempdir().unwrap();
        let files = [
            file("rw", 0o666, "a"),
            file("exec", 0o777, "b"),
            file("none", 0, "c"),
            file("high", 0o4755, "d"),
        ];
        write_volume(target.path(), &files).unwrap();

        assert_eq!(mode(&target.path().join("rw")), 0o666);
        assert_eq!(mode(&target.path().join("exec")), 0o777);
        assert_eq!(mode(&target.path().join("none")), 0o000);
        assert_eq!(mode(&target.path().join("high")), 0o755);
    }

    #[test]
    fn second_write_swaps_and_cleans_up() {
        let target = tempfile::tempdir().unwrap();
        write_volume(
            target.path(),
            &[file("a", 0o644, "1"), file("d/b", 0o644, "2")],
        )
        .unwrap();
        let first = fs::read_link(target.path().join("..data")).unwrap();

        write_volume(
            target.path(),
            &[file("a", 0o644, "3"), file("c", 0o644, "4")],
        )
        .unwrap();
        let second = fs::read_link(target.path().join("..data")).unwrap();

        assert_ne!(first, second);
        assert!(!target.path().join(&first).exists(), "old folder removed");
        let names = entries(target.path());
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(names.contains(&"a".to_owned()) && names.contains(&"c".to_owned()));
        assert!(!names.contains(&"d".to_owned()), "stale link removed");
        assert_eq!(fs::read_to_string(target.path().join("a")).unwrap(), "3");
    }

    #[test]
    fn same_contents_are_not_rewritten_even_with_a_new_mode() {
        let target = tempfile::tempdir().unwrap();
        write_volume(target.path(), &[file("a", 0o644, "same")]).unwrap();
        let first = fs::read_link(target.path().join("..data")).unwrap();

        write_volume(target.path(), &[file("a", 0o600, "same")]).unwrap();

        assert_eq!(fs::read_link(target.path().join("..data")).unwrap(), first);
        assert_eq!(mode(&target.path().join("a")), 0o644);
    }

    #[test]
    fn removing_a_file_alone_still_swaps() {
        let target = tempfile::tempdir().unwrap();
        write_volume(
            target.path(),
            &[file("a", 0o644, "1"), file("b", 0o644, "2")],
        )
        .unwrap();
        write_volume(target.path(), &[file("a", 0o644, "1")]).unwrap();

        assert!(!target.path().join("b").exists());
        assert!(fs::symlink_metadata(target.path().join("b")).is_err());
    }

    #[test]
    fn one_bad_path_rejects_the_whole_set() {
        let long_element = "x".repeat(256);
        let long_path = vec!["x"; 2100].join("/");
        let bad = [
            "",
            "/abs",
            "a/../b",
            "..",
            "..a",
            "..data/x",
            "./a",
            "a//b",
            "a/",
            "a/.",
            ".",
            long_element.as_str(),
            long_path.as_str(),
        ];
        for path in bad {
            let target = tempfile::tempdir().unwrap();
            let files = [file("good", 0o644, "g"), file(path, 0o644, "b")];
            let err = write_volume(target.path(), &files).unwrap_err();

            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{path:?}");
            assert!(
                entries(target.path()).is_empty(),
                "nothing written for {path:?}"
            );
        }
    }

    #[test]
    fn odd_but_valid_paths_are_accepted() {
        for path in ["a..b", ".hidden", "a/..b", "a/b/c", &"x".repeat(255)] {
            assert_eq!(validate_path(path), Ok(()), "{path:?}");
        }
    }

    #[test]
    fn duplicate_path_keeps_the_last() {
        let target = tempfile::tempdir().unwrap();
        write_volume(
            target.path(),
            &[file("a", 0o644, "1"), file("a", 0o600, "2")],
        )
        .unwrap();

        assert_eq!(fs::read_to_string(target.path().join("a")).unwrap(), "2");
        assert_eq!(mode(&target.path().join("a")), 0o600);
    }
}
