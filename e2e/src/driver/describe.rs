//! A human-readable listing of a volume, for the demo and for failing tests.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Longest contents shown on one line.
const PREVIEW: usize = 120;

/// Lists the files a pod would see in the volume at `target`: every path reached through the
/// top-level links (the `..` entries are the writer's own), sorted, with mode, size and — only
/// for paths listed in `non_sensitive` — contents.
///
/// ```text
/// -rw-r--r-- 0644       5  s1  "hello"
/// drwxr-xr-x 0755          certs/
/// -rw------- 0600    1234  certs/tls.key
/// ```
pub fn describe_volume(target: &Path, non_sensitive: &[&str]) -> String {
    let mut out = String::new();
    describe_dir(target, "", non_sensitive, &mut out);
    if out.is_empty() {
        out.push_str("(empty volume)\n");
    }
    out
}

fn describe_dir(dir: &Path, prefix: &str, non_sensitive: &[&str], out: &mut String) {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => {
            let _ = writeln!(out, "(cannot list {}: {e})", dir.display());
            return;
        }
    };
    names.sort();

    for name in names {
        if prefix.is_empty() && name.starts_with("..") {
            continue;
        }
        let path = dir.join(&name);
        let relative = format!("{prefix}{name}");

        // `metadata` follows the top-level symlinks, as a reader in the pod does.
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => {
                let _ = writeln!(out, "?????????? ????          {relative}  ({e})");
                continue;
            }
        };
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            let _ = writeln!(out, "d{} {mode:04o}          {relative}/", rwx(mode));
            describe_dir(&path, &format!("{relative}/"), non_sensitive, out);
            continue;
        }

        let _ = write!(
            out,
            "-{} {mode:04o} {:>7}  {relative}",
            rwx(mode),
            meta.len()
        );
        if non_sensitive.contains(&relative.as_str()) {
            let _ = write!(out, "  {}", preview(&path));
        }
        out.push('\n');
    }
}

/// `rwxr-xr-x` for the permission bits.
fn rwx(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 0o7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// The contents as a quoted, escaped string, or a note for binary data.
fn preview(path: &Path) -> String {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => return format!("(unreadable: {e})"),
    };
    match std::str::from_utf8(&bytes) {
        Ok(text) => {
            let shown: String = text.chars().take(PREVIEW).collect();
            let more = if shown.len() < text.len() { "…" } else { "" };
            format!("\"{}\"{more}", shown.escape_debug())
        }
        Err(_) => format!("({} bytes of binary data)", bytes.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{pb::File, write_volume};

    #[test]
    fn lists_files_with_modes_sizes_and_chosen_contents() {
        let target = tempfile::tempdir().unwrap();
        let files = [
            File {
                path: "s1".into(),
                mode: 0o644,
                contents: b"hello\n".to_vec(),
            },
            File {
                path: "certs/tls.key".into(),
                mode: 0o600,
                contents: b"PRIVATE".to_vec(),
            },
        ];
        write_volume(target.path(), &files).unwrap();

        let text = describe_volume(target.path(), &["s1"]);
        assert_eq!(
            text,
            "drwxr-xr-x 0755          certs/\n\
             -rw------- 0600       7  certs/tls.key\n\
             -rw-r--r-- 0644       6  s1  \"hello\\n\"\n"
        );
        assert!(!text.contains("PRIVATE"));
    }

    #[test]
    fn empty_volume_says_so() {
        let target = tempfile::tempdir().unwrap();
        assert_eq!(describe_volume(target.path(), &[]), "(empty volume)\n");
    }
}
