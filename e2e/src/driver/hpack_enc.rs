//! An HPACK encoder (RFC 7541) that makes the indexing choices of Go's
//! `golang.org/x/net/http2/hpack`, the encoder inside grpc-go.
//!
//! This matters for the `:authority` problem: Go sends a field it has not seen before as a
//! literal *with incremental indexing*, so the socket path crosses the wire once per connection
//! and later requests refer to it by a dynamic-table index. The `hpack` crate's encoder never
//! indexes a field whose name is already known, so it cannot reproduce that; its decoder is what
//! the tests check this encoder against. Strings are sent raw, never Huffman-coded (Go Huffman-
//! codes when that is shorter); the decoded fields are the same.

use std::collections::VecDeque;

/// RFC 7541, Appendix A.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The dynamic table size both ends start with.
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// RFC 7541's per-entry overhead in the table size.
const ENTRY_OVERHEAD: usize = 32;

/// A stateful HPACK encoder for one connection's requests.
#[derive(Debug)]
pub struct HpackEncoder {
    /// Newest first, as HPACK numbers them.
    dynamic: VecDeque<(String, String)>,
    size: usize,
    max_size: usize,
    /// A table size change to announce at the start of the next block.
    pending_update: Option<usize>,
}

impl Default for HpackEncoder {
    fn default() -> Self {
        HpackEncoder {
            dynamic: VecDeque::new(),
            size: 0,
            max_size: DEFAULT_TABLE_SIZE,
            pending_update: None,
        }
    }
}

impl HpackEncoder {
    /// A new encoder with the default 4096-byte table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Follows the peer's `SETTINGS_HEADER_TABLE_SIZE`: the next block starts with a size update.
    pub fn set_max_table_size(&mut self, size: usize) {
        if size == self.max_size {
            return;
        }
        self.max_size = size;
        self.evict(0);
        self.pending_update = Some(size);
    }

    /// Encodes one header block. Names must already be lowercase.
    pub fn encode(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(size) = self.pending_update.take() {
            encode_int(&mut out, 0x20, 5, size);
        }

        for &(name, value) in fields {
            let (index, exact) = self.search(name, value);
            if exact {
                encode_int(&mut out, 0x80, 7, index);
                continue;
            }

            // Go indexes every field that fits in the table (none of ours is marked sensitive).
            let indexing = entry_size(name, value) <= self.max_size;
            let (first, prefix) = if indexing { (0x40, 6) } else { (0x00, 4) };
            encode_int(&mut out, first, prefix, index);
            if index == 0 {
                encode_str(&mut out, name);
            }
            encode_str(&mut out, value);
            if indexing {
                self.add(name, value);
            }
        }
        out
    }

    /// The best index for a field and whether it matches name and value: an exact match in
    /// the static table, then in the dynamic table, else the first name match (static first).
    /// Index 0 means "not found".
    fn search(&self, name: &str, value: &str) -> (usize, bool) {
        let mut name_match = 0;
        for (i, (n, v)) in STATIC_TABLE.iter().enumerate() {
            if *n == name {
                if *v == value {
                    return (i + 1, true);
                }
                if name_match == 0 {
                    name_match = i + 1;
                }
            }
        }
        for (i, (n, v)) in self.dynamic.iter().enumerate() {
            if n == name {
                let index = STATIC_TABLE.len() + 1 + i;
                if v == value {
                    return (index, true);
                }
                if name_match == 0 {
                    name_match = index;
                }
            }
        }
        (name_match, false)
    }

    fn add(&mut self, name: &str, value: &str) {
        let size = entry_size(name, value);
        self.evict(size);
        self.dynamic.push_front((name.to_owned(), value.to_owned()));
        self.size += size;
    }

    /// Drops the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            let Some((n, v)) = self.dynamic.pop_back() else {
                break;
            };
            self.size -= entry_size(&n, &v);
        }
    }
}

fn entry_size(name: &str, value: &str) -> usize {
    name.len() + value.len() + ENTRY_OVERHEAD
}

/// RFC 7541, 5.1: an integer in a `prefix`-bit prefix, the first byte's high bits from `first`.
fn encode_int(out: &mut Vec<u8>, first: u8, prefix: u8, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// RFC 7541, 5.2: a string literal, not Huffman-coded.
fn encode_str(out: &mut Vec<u8>, s: &str) {
    encode_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(decoder: &mut hpack::Decoder<'_>, block: &[u8]) -> Vec<(String, String)> {
        decoder
            .decode(block)
            .unwrap()
            .into_iter()
            .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    }

    const REQUEST: [(&str, &str); 7] = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/v1alpha1.CSIDriverProvider/Mount"),
        (
            ":authority",
            "/var/run/secrets-store-csi-providers/azure.sock",
        ),
        ("content-type", "application/grpc"),
        ("user-agent", "grpc-go/1.2.3"),
        ("te", "trailers"),
    ];

    fn owned(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn first_block_indexes_new_fields_and_decodes() {
        let mut encoder = HpackEncoder::new();
        let mut decoder = hpack::Decoder::new();
        let block = encoder.encode(&REQUEST);

        // :method POST and :scheme http are static entries 3 and 6.
        assert_eq!(&block[..2], &[0x83, 0x86]);
        // :path is a literal with incremental indexing on static name 4.
        assert_eq!(block[2], 0x44);
        assert_eq!(decode(&mut decoder, &block), owned(&REQUEST));
    }

    #[test]
    fn second_block_refers_to_the_dynamic_table() {
        let mut encoder = HpackEncoder::new();
        let mut decoder = hpack::Decoder::new();
        decode(&mut decoder, &encoder.encode(&REQUEST));

        let again = encoder.encode(&REQUEST);
        // Five fields were added (newest first: te=62 … :path=66); all seven are now indexed.
        assert_eq!(
            again,
            vec![
                0x83,
                0x86,
                0x80 | 66,
                0x80 | 65,
                0x80 | 64,
                0x80 | 63,
                0x80 | 62
            ]
        );
        assert_eq!(decode(&mut decoder, &again), owned(&REQUEST));
    }

    #[test]
    fn changed_value_reuses_the_name_and_evicts_in_order() {
        let mut encoder = HpackEncoder::new();
        let mut decoder = hpack::Decoder::new();
        let big = "x".repeat(2000);
        for round in 0..6 {
            let value = format!("{round}{big}");
            let fields = [("grpc-timeout", "1S"), ("x-big", value.as_str())];
            let block = encoder.encode(&fields);
            assert_eq!(decode(&mut decoder, &block), owned(&fields));
        }
        assert!(encoder.size <= DEFAULT_TABLE_SIZE);
    }

    #[test]
    fn oversized_field_is_not_indexed() {
        let mut encoder = HpackEncoder::new();
        let mut decoder = hpack::Decoder::new();
        let huge = "y".repeat(5000);
        let fields = [("x-huge", huge.as_str())];

        let block = encoder.encode(&fields);
        assert_eq!(block[0], 0x00, "literal without indexing, new name");
        assert_eq!(decode(&mut decoder, &block), owned(&fields));
        assert!(encoder.dynamic.is_empty());
    }

    #[test]
    fn table_size_update_is_announced() {
        let mut encoder = HpackEncoder::new();
        let mut decoder = hpack::Decoder::new();
        decode(&mut decoder, &encoder.encode(&REQUEST));

        encoder.set_max_table_size(100);
        let block = encoder.encode(&REQUEST);
        assert_eq!(
            block[0], 0x3f,
            "size update 100 needs the continuation byte"
        );
        assert_eq!(decode(&mut decoder, &block), owned(&REQUEST));
    }

    #[test]
    fn static_table_matches_the_decoder() {
        for (i, (name, value)) in STATIC_TABLE.iter().enumerate() {
            // The hpack crate's own table misspells entry 15 as "accept-" (RFC: accept-charset).
            if i + 1 == 15 {
                continue;
            }
            let mut decoder = hpack::Decoder::new();
            let index = u8::try_from(i + 1).unwrap();
            assert_eq!(
                decode(&mut decoder, &[0x80 | index]),
                owned(&[(name, value)]),
                "entry {}",
                i + 1
            );
        }
    }

    #[test]
    fn integers_use_the_prefix_then_continuation_bytes() {
        let mut out = Vec::new();
        encode_int(&mut out, 0, 5, 10);
        encode_int(&mut out, 0, 5, 1337);
        encode_int(&mut out, 0x80, 7, 127);
        // RFC 7541, C.1.1 and C.1.2.
        assert_eq!(out, vec![10, 31, 154, 10, 0xff, 0]);
    }
}
