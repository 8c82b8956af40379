//! A strict, bounded JSON syntax check run before any payload is read.
//!
//! serde-json-core skips unknown values leniently (a bare `hello` passes as a value) and
//! recurses without a limit, while serde_json is strict and stops at 128 levels. Checking the
//! syntax first (RFC 8259, one object at the top, at most [`MAX_DEPTH`] levels of nesting,
//! numbers within the range of `f64`)
//! means both decoders accept exactly the same documents, and no payload can exhaust the
//! scale's stack. Recursion here is bounded by [`MAX_DEPTH`]; the check never allocates.

use crate::error::ContractError;

/// Deepest nesting of objects and arrays accepted, counting the payload object itself. The
/// contract needs 2 (`params` inside a command); the rest is room for unknown future fields.
pub const MAX_DEPTH: usize = 8;

/// `Ok` when `bytes` is exactly one JSON object (with optional surrounding whitespace).
pub fn check(bytes: &[u8]) -> Result<(), ContractError> {
    let mut p = Parser { bytes, pos: 0 };
    p.skip_ws();
    if p.peek() != Some(b'{') {
        return Err(ContractError::Malformed);
    }
    p.value(1)?;
    p.skip_ws();
    if p.pos == bytes.len() {
        Ok(())
    } else {
        Err(ContractError::Malformed)
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

type Step = Result<(), ContractError>;

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Step {
        if self.next() == Some(b) {
            Ok(())
        } else {
            Err(ContractError::Malformed)
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Step {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(ContractError::Malformed),
        }
    }

    fn object(&mut self, depth: usize) -> Step {
        if depth > MAX_DEPTH {
            return Err(ContractError::Malformed);
        }
        self.expect(b'{')?;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            self.string()?;
            self.skip_ws();
            self.expect(b':')?;
            self.value(depth + 1)?;
            self.skip_ws();
            match self.next() {
                Some(b',') => {}
                Some(b'}') => return Ok(()),
                _ => return Err(ContractError::Malformed),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Step {
        if depth > MAX_DEPTH {
            return Err(ContractError::Malformed);
        }
        self.expect(b'[')?;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.value(depth + 1)?;
            self.skip_ws();
            match self.next() {
                Some(b',') => {}
                Some(b']') => return Ok(()),
                _ => return Err(ContractError::Malformed),
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Step {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(ContractError::Malformed)
        }
    }

    fn digits(&mut self) -> Step {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        if self.pos > start {
            Ok(())
        } else {
            Err(ContractError::Malformed)
        }
    }

    fn number(&mut self) -> Step {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits()?,
            _ => return Err(ContractError::Malformed),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits()?;
        }
        // A literal beyond f64 (`1e999`) would be infinity to one JSON crate and an error to
        // the other; it is no number the contract can carry either way.
        let literal = core::str::from_utf8(&self.bytes[start..self.pos])
            .map_err(|_| ContractError::Malformed)?;
        match literal.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(()),
            _ => Err(ContractError::Malformed),
        }
    }

    fn hex4(&mut self) -> Result<u16, ContractError> {
        let mut value = 0u16;
        for _ in 0..4 {
            let digit = match self.next() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(ContractError::Malformed),
            };
            value = value << 4 | u16::from(digit);
        }
        Ok(value)
    }

    fn string(&mut self) -> Step {
        self.expect(b'"')?;
        let start = self.pos;
        loop {
            match self.next() {
                // Unterminated, or a raw control character (JSON requires them escaped).
                None | Some(0x00..=0x1F) => return Err(ContractError::Malformed),
                Some(b'"') => break,
                Some(b'\\') => match self.next() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                    Some(b'u') => {
                        let unit = self.hex4()?;
                        if (0xD800..0xDC00).contains(&unit) {
                            // A high surrogate must be followed by an escaped low surrogate.
                            self.expect(b'\\')?;
                            self.expect(b'u')?;
                            if !(0xDC00..0xE000).contains(&self.hex4()?) {
                                return Err(ContractError::Malformed);
                            }
                        } else if (0xDC00..0xE000).contains(&unit) {
                            return Err(ContractError::Malformed);
                        }
                    }
                    _ => return Err(ContractError::Malformed),
                },
                Some(_) => {}
            }
        }
        // Raw bytes must be UTF-8 (escapes are ASCII, so checking the whole span is enough).
        core::str::from_utf8(&self.bytes[start..self.pos - 1])
            .map(drop)
            .map_err(|_| ContractError::Malformed)
    }
}

/// Unescape the contents of a JSON string (without its quotes) that [`check`] already accepted.
/// `None` when the result does not fit `N` bytes.
pub(crate) fn unescape<const N: usize>(raw: &str) -> Option<heapless::String<N>> {
    let mut out = heapless::String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        let c = if c == '\\' {
            match chars.next()? {
                'b' => '\u{8}',
                'f' => '\u{c}',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'u' => {
                    let unit = hex4(&mut chars)?;
                    let code = if (0xD800..0xDC00).contains(&unit) {
                        // `check` guarantees the `\uDC00`–`\uDFFF` that follows.
                        chars.next()?;
                        chars.next()?;
                        let low = hex4(&mut chars)?;
                        0x10000 + ((unit - 0xD800) << 10) + (low.checked_sub(0xDC00)?)
                    } else {
                        unit
                    };
                    char::from_u32(code)?
                }
                other => other,
            }
        } else {
            c
        };
        out.push(c).ok()?;
    }
    Some(out)
}

fn hex4(chars: &mut core::str::Chars<'_>) -> Option<u32> {
    let mut value = 0;
    for _ in 0..4 {
        value = value << 4 | chars.next()?.to_digit(16)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_well_formed_objects() {
        for ok in [
            r"{}",
            " { \"a\" : 1 }\n",
            r#"{"a":[1,-2.5e+3,0.0,true,false,null,"x\n\u00e9\ud83c\udf7a",{"b":[]}]}"#,
            r#"{"name":"Pils — Helles"}"#,
            r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":{}}}}}}}}"#,
        ] {
            assert_eq!(check(ok.as_bytes()), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "[]",
            "1",
            "\"s\"",
            "{",
            "{}}",
            "{} {}",
            r#"{"a":hello}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":+1}"#,
            r#"{"a":1e}"#,
            r#"{"a":1e999}"#,
            r#"{"a":-1e309}"#,
            r#"{"a":tru}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r"{a:1}",
            r#"{"a":[1,]}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{}}}}}}}}}"#,
        ] {
            assert_eq!(
                check(bad.as_bytes()),
                Err(ContractError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(check(b"{\"a\":\"\xff\"}"), Err(ContractError::Malformed));
    }

    #[test]
    fn unescapes_what_it_accepts() {
        let u = |s: &str| unescape::<16>(s).map(|s| std::string::String::from(s.as_str()));
        assert_eq!(u(r"plain").as_deref(), Some("plain"));
        assert_eq!(u(r#"a\"b\\c\/"#).as_deref(), Some("a\"b\\c/"));
        assert_eq!(u(r"\b\f\n\r\t").as_deref(), Some("\u{8}\u{c}\n\r\t"));
        assert_eq!(u(r"\u00e9\ud83c\udf7a").as_deref(), Some("é🍺"));
        assert_eq!(u(r"0123456789abcdefg"), None);
        assert_eq!(u(r"\u00e9").map(|s| s.len()), Some(2));
    }

    #[test]
    fn deep_nesting_is_rejected_without_recursing() {
        let mut deep = std::vec::Vec::new();
        deep.extend_from_slice(b"{\"a\":");
        deep.extend(core::iter::repeat_n(b'[', 100_000));
        assert_eq!(check(&deep), Err(ContractError::Malformed));
    }
}
