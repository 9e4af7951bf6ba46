//! The driver's rules for file paths, checked before any network call.
//!
//! Kubernetes' atomic writer rejects a whole response when one path is unclean, so a bad
//! alias must fail here, naming the object, rather than after every object was fetched.

/// Longest path the atomic writer accepts, in bytes.
const MAX_PATH: usize = 4096;

/// Longest path element the atomic writer accepts, in bytes.
const MAX_ELEMENT: usize = 255;

/// Checks `path` as the driver's writer would; the error says what is wrong with it.
pub fn check(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if path.starts_with('/') {
        return Err(format!(
            "{path:?} is absolute; use a path relative to the volume"
        ));
    }
    if path.len() > MAX_PATH {
        return Err(format!("the path is longer than {MAX_PATH} bytes"));
    }
    if path.starts_with("..") {
        return Err(format!("{path:?} starts with \"..\""));
    }
    if path.contains('\0') {
        return Err(format!("{path:?} contains a NUL byte"));
    }

    for element in path.split('/') {
        match element {
            "" => return Err(format!("{path:?} is not clean: it has an empty element")),
            "." => return Err(format!("{path:?} is not clean: it has a \".\" element")),
            ".." => return Err(format!("{path:?} has a \"..\" element")),
            _ if element.len() > MAX_ELEMENT => {
                return Err(format!(
                    "{path:?} has an element longer than {MAX_ELEMENT} bytes"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Finds two paths that cannot live in one volume: the same path twice, or a path that is a
/// file for one object and a folder for another. Returns the pair, in input order.
pub fn find_conflict<'a>(paths: &[&'a str]) -> Option<(&'a str, &'a str)> {
    let mut sorted: Vec<(usize, &str)> = paths.iter().copied().enumerate().collect();
    sorted.sort_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(&b.0)));

    // After sorting, a path's descendants follow it, though not always directly ("a-b"
    // sorts between "a" and "a/b"), so compare each path with every later one that shares
    // its prefix.
    for (i, &(first_index, first)) in sorted.iter().enumerate() {
        for &(second_index, second) in &sorted[i + 1..] {
            if !second.starts_with(first) {
                break;
            }
            let clash = second.len() == first.len() || second.as_bytes()[first.len()] == b'/';
            if clash {
                let (a, b) = if first_index < second_index {
                    (first, second)
                } else {
                    (second, first)
                };
                return Some((a, b));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_clean_relative_paths() {
        for path in [
            "a",
            "a/b",
            "tls/cert.pem",
            "a..b",
            "x/.hidden",
            "..data-not",
        ] {
            let result = check(path);
            if path.starts_with("..") {
                assert!(result.is_err(), "{path}");
            } else {
                assert_eq!(result, Ok(()), "{path}");
            }
        }
    }

    #[test]
    fn rejects_what_the_atomic_writer_rejects() {
        let long_element = "x".repeat(256);
        let long_path = "a/".repeat(2049);
        for path in [
            "",
            "/etc/passwd",
            "../escape",
            "a/../b",
            "a/..",
            "./a",
            "a//b",
            "a/",
            "a/./b",
            "..",
            long_element.as_str(),
            long_path.as_str(),
        ] {
            assert!(check(path).is_err(), "{path:?} was accepted");
        }
    }

    #[test]
    fn finds_duplicates_and_file_folder_clashes() {
        assert_eq!(find_conflict(&["a", "b", "a"]), Some(("a", "a")));
        assert_eq!(find_conflict(&["a/b", "a-b", "a"]), Some(("a/b", "a")));
        assert_eq!(find_conflict(&["a", "ab", "a-b", "b/a"]), None);
    }
}
