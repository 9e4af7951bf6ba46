//! The `objects` parameter: the list of Key Vault objects a volume mounts.
//!
//! The Go provider's shape is a YAML document whose `array` holds *strings*, each itself a
//! YAML document; items written directly as mappings are accepted too. Each item becomes an
//! [`ObjectSpec`] whose every field is already checked, so nothing later re-reads YAML.

use std::fmt;

use serde_norway::{Mapping, Value};

use super::{Place, RequestError, paths};

/// Longest Key Vault object name.
const MAX_NAME: usize = 127;

/// Which Key Vault collection an object lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// `/secrets`: plain secrets and the secrets that back certificates.
    Secret,
    /// `/keys`: the public half of a key.
    Key,
    /// `/certificates`: the leaf certificate.
    Cert,
}

impl ObjectType {
    /// The name used in object ids and parameters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Key => "key",
            Self::Cert => "cert",
        }
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a secret's value is decoded before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Written as stored.
    Utf8,
    /// Standard base64 with padding, line breaks ignored.
    Base64,
    /// Hexadecimal, either case.
    Hex,
}

/// The form a certificate-backed secret is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Private key(s) then certificates, as PEM.
    Pem,
    /// The PKCS#12 archive.
    Pfx,
}

/// One object of the `objects` list, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSpec {
    /// Position in the list, for messages.
    pub index: usize,
    /// Name in Key Vault.
    pub name: String,
    /// Collection.
    pub kind: ObjectType,
    /// Pinned version; `None` means the latest.
    pub version: Option<String>,
    /// `objectVersionHistory`: above 1, that many versions are mounted as a folder.
    pub history: u32,
    /// `objectFormat`.
    pub format: Format,
    /// `objectEncoding`.
    pub encoding: Encoding,
    /// File mode.
    pub mode: u32,
    /// File path in the volume: the alias, else the name.
    pub path: String,
}

impl ObjectSpec {
    /// The id the driver stores the version under: `<type>/<name>`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// The fields of one item, as text, before validation.
#[derive(Default)]
struct RawObject {
    name: String,
    kind: String,
    alias: String,
    version: String,
    history: String,
    format: String,
    encoding: String,
    permission: String,
}

/// Parses the `objects` parameter; `default_mode` comes from the request's `permission`.
pub fn parse(text: &str, default_mode: u32) -> Result<Vec<ObjectSpec>, RequestError> {
    let items = items(text)?;
    if items.is_empty() {
        return Err(RequestError::invalid(
            Place::Parameter("objects"),
            "no objects are listed: add at least one item under `array`",
        ));
    }

    let specs = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| object(index, item, default_mode))
        .collect::<Result<Vec<_>, _>>()?;

    let paths: Vec<&str> = specs.iter().map(|s| s.path.as_str()).collect();
    if let Some((first, second)) = paths::find_conflict(&paths) {
        let reason = if first == second {
            format!("two objects are written to the same path {first:?}")
        } else {
            format!("{first:?} and {second:?} would make one path both a file and a folder")
        };
        return Err(RequestError::invalid(Place::Parameter("objects"), reason));
    }
    Ok(specs)
}

const SHAPE: &str = "expected a YAML mapping with key `array` holding a list of objects, \
                     each a mapping (or a string holding one) with objectName and objectType";

/// Largest `objects` value accepted: about a thousand objects.
const MAX_OBJECTS_BYTES: usize = 256 * 1024;

/// Deepest nesting of flow collections accepted; real lists nest two or three levels.
const MAX_FLOW_DEPTH: usize = 16;

/// The deepest nesting of `[`/`{` in `text`, counting brackets inside quotes too: a
/// conservative bound, since no object field needs that many brackets.
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for byte in text.bytes() {
        match byte {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Splits the document into its items, each a mapping.
fn items(text: &str) -> Result<Vec<Mapping>, RequestError> {
    let place = Place::Parameter("objects");
    if text.trim().is_empty() {
        return Err(RequestError::invalid(
            place,
            "the parameter is missing or empty",
        ));
    }
    // The YAML parser's time grows with the square of the nesting depth, and the value comes
    // from a namespace's SecretProviderClass: bound both before parsing.
    if text.len() > MAX_OBJECTS_BYTES {
        return Err(RequestError::invalid(
            place,
            format!(
                "is {} bytes, above the limit of {MAX_OBJECTS_BYTES}",
                text.len()
            ),
        ));
    }
    if flow_depth(text) > MAX_FLOW_DEPTH {
        return Err(RequestError::invalid(
            place,
            format!("nests [ ] or {{ }} deeper than {MAX_FLOW_DEPTH} levels"),
        ));
    }
    let doc: Value = serde_norway::from_str(text)
        .map_err(|e| RequestError::invalid(place.clone(), format!("not valid YAML: {e}")))?;

    let Some(array) = doc.as_mapping().and_then(|m| m.get("array")) else {
        return Err(RequestError::invalid(place, SHAPE));
    };
    let list = match array {
        Value::Sequence(list) => list,
        Value::Null => return Ok(Vec::new()),
        _ => return Err(RequestError::invalid(place, SHAPE)),
    };

    list.iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Mapping(map) if !map.contains_key("array") => Ok(map.clone()),
            Value::String(nested) => match serde_norway::from_str::<Value>(nested) {
                Ok(Value::Mapping(map)) if !map.contains_key("array") => Ok(map),
                Ok(_) => Err(RequestError::invalid(Place::item(index), SHAPE)),
                Err(e) => Err(RequestError::invalid(
                    Place::item(index),
                    format!("not valid YAML: {e}"),
                )),
            },
            _ => Err(RequestError::invalid(Place::item(index), SHAPE)),
        })
        .collect()
}

/// Reads the known fields of one item as text; unknown fields are ignored, as Go does.
fn raw(index: usize, map: &Mapping) -> Result<RawObject, RequestError> {
    let mut raw = RawObject::default();
    for (key, value) in map {
        let Some(key) = key.as_str() else {
            return Err(RequestError::invalid(
                Place::item(index),
                "a field name is not text",
            ));
        };
        let text = match value {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            _ => {
                return Err(RequestError::invalid(
                    Place::item(index),
                    format!("field {key} must be a single value, not a list or mapping"),
                ));
            }
        };
        let slot = match key {
            "objectName" => &mut raw.name,
            "objectType" => &mut raw.kind,
            "objectAlias" => &mut raw.alias,
            "objectVersion" => &mut raw.version,
            "objectVersionHistory" => &mut raw.history,
            "objectFormat" => &mut raw.format,
            "objectEncoding" => &mut raw.encoding,
            "filePermission" => &mut raw.permission,
            other => {
                tracing::debug!(
                    object.index = index,
                    field = other,
                    "ignoring unknown field"
                );
                continue;
            }
        };
        *slot = text;
    }
    Ok(raw)
}

/// Validates one item.
fn object(index: usize, map: Mapping, default_mode: u32) -> Result<ObjectSpec, RequestError> {
    let raw = raw(index, &map)?;
    let name = raw.name;
    let at = |field: &'static str| Place::Object {
        index,
        name: (!name.is_empty()).then(|| name.clone()),
        field,
    };

    if name.is_empty() {
        return Err(RequestError::invalid(at("objectName"), "is required"));
    }
    let name_ok =
        name.len() <= MAX_NAME && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !name_ok {
        return Err(RequestError::invalid(
            at("objectName"),
            format!("must be 1 to {MAX_NAME} letters, digits or dashes"),
        ));
    }

    let kind = match raw.kind.to_ascii_lowercase().as_str() {
        "secret" => ObjectType::Secret,
        "key" => ObjectType::Key,
        "cert" => ObjectType::Cert,
        "" => return Err(RequestError::invalid(at("objectType"), "is required")),
        other => {
            return Err(RequestError::invalid(
                at("objectType"),
                format!("{other:?} is not one of secret, key, cert"),
            ));
        }
    };

    let version = match raw.version.as_str() {
        "" => None,
        v if v.eq_ignore_ascii_case("latest") => None,
        v if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) => Some(v.to_owned()),
        v => {
            return Err(RequestError::invalid(
                at("objectVersion"),
                format!("{v:?} is not a Key Vault version (32 hexadecimal digits) or \"latest\""),
            ));
        }
    };

    let history = match raw.history.as_str() {
        "" => 0,
        text => text.parse::<u32>().map_err(|_| {
            RequestError::invalid(
                at("objectVersionHistory"),
                format!("{text:?} is not a whole number of versions"),
            )
        })?,
    };

    let format = match raw.format.to_ascii_lowercase().as_str() {
        "" | "pem" => Format::Pem,
        "pfx" if kind == ObjectType::Secret => Format::Pfx,
        "pfx" => return Err(only_for_secrets(at("objectFormat"), kind)),
        other => {
            return Err(RequestError::invalid(
                at("objectFormat"),
                format!("{other:?} is not one of pem, pfx"),
            ));
        }
    };

    let encoding = match raw.encoding.to_ascii_lowercase().as_str() {
        "" | "utf-8" | "utf8" => Encoding::Utf8,
        "base64" if kind == ObjectType::Secret => Encoding::Base64,
        "hex" if kind == ObjectType::Secret => Encoding::Hex,
        "base64" | "hex" => return Err(only_for_secrets(at("objectEncoding"), kind)),
        other => {
            return Err(RequestError::invalid(
                at("objectEncoding"),
                format!("{other:?} is not one of utf-8, base64, hex"),
            ));
        }
    };

    let mode = match raw.permission.as_str() {
        "" => default_mode,
        text => parse_mode(text).ok_or_else(|| {
            RequestError::invalid(
                at("filePermission"),
                format!("{text:?} is not an octal file mode between 0000 and 0777"),
            )
        })?,
    };

    let path = if raw.alias.is_empty() {
        name.clone()
    } else {
        raw.alias
    };
    paths::check(&path).map_err(|reason| {
        let field = if path == name {
            "objectName"
        } else {
            "objectAlias"
        };
        RequestError::invalid(at(field), reason)
    })?;

    Ok(ObjectSpec {
        index,
        name,
        kind,
        version,
        history,
        format,
        encoding,
        mode,
        path,
    })
}

fn only_for_secrets(place: Place, kind: ObjectType) -> RequestError {
    RequestError::invalid(
        place,
        format!("applies only to objectType secret, not {kind}"),
    )
}

/// Parses an octal mode such as `0400` or `644`; `None` when it is not one or exceeds 0777.
fn parse_mode(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Vec<ObjectSpec> {
        parse(text, 0o644).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse_err(text: &str) -> String {
        parse(text, 0o644).expect_err("accepted").to_string()
    }

    #[test]
    fn reads_the_go_providers_nested_strings() {
        let specs = parse_ok(
            "array:\n  - |\n    objectName: db-conn\n    objectType: secret\n  - |\n    \
             objectName: tls\n    objectType: CERT\n    objectAlias: certs/tls.pem\n    \
             filePermission: \"0400\"\n",
        );

        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].path, "db-conn");
        assert_eq!(specs[0].mode, 0o644);
        assert_eq!(specs[0].id(), "secret/db-conn");
        assert_eq!(specs[1].kind, ObjectType::Cert);
        assert_eq!(specs[1].path, "certs/tls.pem");
        assert_eq!(specs[1].mode, 0o400);
    }

    #[test]
    fn reads_mapping_items_and_every_field() {
        let specs = parse_ok(
            "array:\n  - objectName: s\n    objectType: secret\n    objectVersion: \
             0123456789abcdef0123456789ABCDEF\n    objectVersionHistory: 3\n    \
             objectEncoding: HEX\n    objectFormat: pfx\n    filePermission: 600\n    \
             unknownField: ignored\n",
        );

        let s = &specs[0];
        assert_eq!(
            s.version.as_deref(),
            Some("0123456789abcdef0123456789ABCDEF")
        );
        assert_eq!(
            (s.history, s.encoding, s.format, s.mode),
            (3, Encoding::Hex, Format::Pfx, 0o600)
        );
    }

    #[test]
    fn latest_means_no_pinned_version() {
        let specs =
            parse_ok("array:\n  - {objectName: a, objectType: key, objectVersion: latest}\n");
        assert_eq!(specs[0].version, None);
    }

    #[test]
    fn rejects_other_shapes() {
        for text in [
            "- objectName: a",
            "array: 3",
            "array:\n  - 4\n",
            "other: []",
            "  ",
        ] {
            let message = parse_err(text);
            assert!(message.starts_with("parameter objects") || message.starts_with("objects["));
        }
        assert_eq!(
            parse_err("array: []"),
            "parameter objects: no objects are listed: add at least one item under `array`"
        );
    }

    #[test]
    fn errors_name_the_object_and_field() {
        let cases = [
            (
                "{objectType: secret}",
                "objects[0]: objectName: is required",
            ),
            (
                "{objectName: a, objectType: blob}",
                "objects[0] (a): objectType: \"blob\" is not one of secret, key, cert",
            ),
            (
                "{objectName: a, objectType: secret, filePermission: \"0999\"}",
                "objects[0] (a): filePermission: \"0999\" is not an octal file mode between \
                 0000 and 0777",
            ),
            (
                "{objectName: a, objectType: secret, filePermission: \"1777\"}",
                "objects[0] (a): filePermission: \"1777\" is not an octal file mode between \
                 0000 and 0777",
            ),
            (
                "{objectName: a, objectType: secret, objectAlias: ../../etc/passwd}",
                "objects[0] (a): objectAlias: \"../../etc/passwd\" starts with \"..\"",
            ),
            (
                "{objectName: a, objectType: key, objectEncoding: base64}",
                "objects[0] (a): objectEncoding: applies only to objectType secret, not key",
            ),
            (
                "{objectName: a_b, objectType: key}",
                "objects[0] (a_b): objectName: must be 1 to 127 letters, digits or dashes",
            ),
            (
                "{objectName: a, objectType: secret, objectVersion: v1}",
                "objects[0] (a): objectVersion: \"v1\" is not a Key Vault version (32 \
                 hexadecimal digits) or \"latest\"",
            ),
        ];
        for (item, expected) in cases {
            assert_eq!(parse_err(&format!("array:\n  - {item}\n")), expected);
        }
    }

    #[test]
    fn deep_nesting_and_huge_values_are_refused_before_parsing() {
        let deep = format!("array: {}", "[".repeat(100_000));
        let started = std::time::Instant::now();
        assert_eq!(
            parse_err(&deep),
            "parameter objects: nests [ ] or { } deeper than 16 levels"
        );
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        let dashes = format!("array:\n  {}a\n", "- ".repeat(60_000));
        let started = std::time::Instant::now();
        assert!(parse(&dashes, 0o644).is_err());
        assert!(
            started.elapsed() < std::time::Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        let huge = format!(
            "array:\n  - {{objectName: a, objectType: secret}}\n#{}",
            "x".repeat(300_000)
        );
        assert!(
            parse_err(&huge).starts_with("parameter objects: is 300"),
            "{}",
            parse_err(&huge)
        );
    }

    #[test]
    fn rejects_clashing_paths() {
        let message = parse_err(
            "array:\n  - {objectName: a, objectType: secret}\n  - {objectName: b, objectType: \
             key, objectAlias: a}\n",
        );
        assert_eq!(
            message,
            "parameter objects: two objects are written to the same path \"a\""
        );
    }
}
