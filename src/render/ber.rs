//! BER to DER, so that PKCS#12 files written by other tools can be read by a strict decoder.
//!
//! PFX files from Windows and Java are often BER: indefinite lengths, octet strings cut into
//! constructed pieces, lengths in more bytes than needed. The `der` crate reads only DER, so
//! each structure of a PFX passes through [`to_der`] before it is decoded. Only the encoding of
//! lengths and octet strings is changed; the contents of primitive values are copied as they
//! are, so a DER input comes out byte for byte the same.

/// Nesting deeper than this is refused: real PFX files nest about ten levels.
const MAX_DEPTH: usize = 48;

/// Tag of a universal OCTET STRING, primitive and constructed.
const OCTET_STRING: u8 = 0x04;
const CONSTRUCTED: u8 = 0x20;

/// Why bytes are not one BER element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BerError {
    /// The input ends inside an element.
    #[error("the data ends inside an element")]
    Truncated,
    /// Something other than BER: a bad length, an end marker out of place, nesting too deep.
    #[error("the data is not BER: {0}")]
    Invalid(&'static str),
}

/// Re-encodes one BER element (the whole input) as DER.
pub fn to_der(input: &[u8]) -> Result<Vec<u8>, BerError> {
    let mut reader = Reader { input, pos: 0 };
    let mut out = Vec::with_capacity(input.len());
    reader.element(&mut out, 0)?;
    if reader.pos != input.len() {
        return Err(BerError::Invalid("data follows the element"));
    }
    Ok(out)
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

/// The length octets of an element.
enum Length {
    Definite(usize),
    Indefinite,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, BerError> {
        let byte = *self.input.get(self.pos).ok_or(BerError::Truncated)?;
        self.pos += 1;
        Ok(byte)
    }

    fn take(&mut self, len: usize) -> Result<&[u8], BerError> {
        let end = self.pos.checked_add(len).ok_or(BerError::Truncated)?;
        let bytes = self.input.get(self.pos..end).ok_or(BerError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    /// The identifier octets, copied as they are (multi-byte tag numbers included).
    fn tag(&mut self) -> Result<Vec<u8>, BerError> {
        let first = self.byte()?;
        let mut tag = vec![first];
        if first & 0x1f == 0x1f {
            loop {
                let next = self.byte()?;
                tag.push(next);
                if next & 0x80 == 0 {
                    break;
                }
                if tag.len() > 6 {
                    return Err(BerError::Invalid("a tag number is too large"));
                }
            }
        }
        Ok(tag)
    }

    fn length(&mut self) -> Result<Length, BerError> {
        let first = self.byte()?;
        if first < 0x80 {
            return Ok(Length::Definite(usize::from(first)));
        }
        if first == 0x80 {
            return Ok(Length::Indefinite);
        }
        let count = usize::from(first & 0x7f);
        if count > 4 {
            return Err(BerError::Invalid("a length does not fit in four bytes"));
        }
        let mut len = 0usize;
        for _ in 0..count {
            len = (len << 8) | usize::from(self.byte()?);
        }
        if len > self.input.len() {
            return Err(BerError::Truncated);
        }
        Ok(Length::Definite(len))
    }

    /// Reads one element and writes its DER form to `out`.
    fn element(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), BerError> {
        if depth > MAX_DEPTH {
            return Err(BerError::Invalid("elements are nested too deeply"));
        }
        let tag = self.tag()?;
        let constructed = tag[0] & CONSTRUCTED != 0;
        let length = self.length()?;

        if !constructed {
            let Length::Definite(len) = length else {
                return Err(BerError::Invalid(
                    "a primitive element has an indefinite length",
                ));
            };
            let content = self.take(len)?;
            out.extend_from_slice(&tag);
            push_length(out, content.len());
            out.extend_from_slice(content);
            return Ok(());
        }

        let content = self.children(length, depth)?;
        if tag == [OCTET_STRING | CONSTRUCTED] {
            // DER has no constructed octet strings: the pieces become one primitive string.
            let joined = join_octet_strings(&content)?;
            out.push(OCTET_STRING);
            push_length(out, joined.len());
            out.extend_from_slice(&joined);
        } else {
            out.extend_from_slice(&tag);
            push_length(out, content.len());
            out.extend_from_slice(&content);
        }
        Ok(())
    }

    /// The DER of every child of a constructed element, concatenated.
    fn children(&mut self, length: Length, depth: usize) -> Result<Vec<u8>, BerError> {
        let mut content = Vec::new();
        match length {
            Length::Definite(len) => {
                let end = self.pos.checked_add(len).ok_or(BerError::Truncated)?;
                if end > self.input.len() {
                    return Err(BerError::Truncated);
                }
                let mut inner = Reader {
                    input: &self.input[..end],
                    pos: self.pos,
                };
                while inner.pos < end {
                    inner.element(&mut content, depth + 1)?;
                }
                self.pos = end;
            }
            Length::Indefinite => loop {
                if self.input.get(self.pos..self.pos + 2) == Some(&[0, 0]) {
                    self.pos += 2;
                    break;
                }
                if self.pos >= self.input.len() {
                    return Err(BerError::Truncated);
                }
                self.element(&mut content, depth + 1)?;
            },
        }
        Ok(content)
    }
}

/// The contents of a run of DER primitive octet strings, concatenated.
fn join_octet_strings(der: &[u8]) -> Result<Vec<u8>, BerError> {
    let mut joined = Vec::with_capacity(der.len());
    let mut reader = Reader { input: der, pos: 0 };
    while reader.pos < der.len() {
        if reader.tag()? != [OCTET_STRING] {
            return Err(BerError::Invalid(
                "a constructed octet string holds something else",
            ));
        }
        let Length::Definite(len) = reader.length()? else {
            return Err(BerError::Invalid("an octet string piece has no length"));
        };
        joined.extend_from_slice(reader.take(len)?);
    }
    Ok(joined)
}

/// Writes `len` in the fewest octets, as DER requires.
fn push_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_passes_through_unchanged() {
        let der = crate::render::fixtures::fixture("ki-chain4.modern.p12");
        assert_eq!(to_der(&der).unwrap(), der);
    }

    #[test]
    fn indefinite_lengths_and_pieces_become_der() {
        // SEQUENCE (indefinite) { OCTET STRING (constructed, indefinite) { "ab", "c" }, NULL }
        let ber = [
            0x30, 0x80, 0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x04, 0x01, b'c', 0x00, 0x00, 0x05,
            0x00, 0x00, 0x00,
        ];
        assert_eq!(
            to_der(&ber).unwrap(),
            [0x30, 0x07, 0x04, 0x03, b'a', b'b', b'c', 0x05, 0x00]
        );
    }

    #[test]
    fn long_form_lengths_are_shortened() {
        let ber = [0x04, 0x84, 0x00, 0x00, 0x00, 0x01, 0xff];
        assert_eq!(to_der(&ber).unwrap(), [0x04, 0x01, 0xff]);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 0x05, 0x00],
            &[0x30, 0x80, 0x05, 0x00],
            &[0x04, 0x80, 0x00, 0x00],
            &[0x24, 0x03, 0x02, 0x01, 0x00],
            &[0x05, 0x00, 0x05],
            &[0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ] {
            assert!(to_der(bad).is_err(), "{bad:?}");
        }
        let deep: Vec<u8> = std::iter::repeat_n([0x30, 0x80], 100).flatten().collect();
        assert_eq!(
            to_der(&deep),
            Err(BerError::Invalid("elements are nested too deeply"))
        );
    }
}
