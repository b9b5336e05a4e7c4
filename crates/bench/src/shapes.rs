//! djl-bench's `--input-shapes` grammar: `(1,3,224,224)f`, several inputs `(1,128)l,(1,128)l`,
//! or a bare `1,3,224,224` for one f32 input.
//!
//! Dtype suffixes (djl-bench's): `f` f32 (default), `d` f64, `s` f16, `i` i32, `l` i64,
//! `b` i8, `u` u8, `B` bool.

use std::fmt;

use thrum_core::DType;

/// One input's shape and dtype.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InputShape {
    /// Dimensions, batch axis included.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
}

impl fmt::Display for InputShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.shape.iter().map(usize::to_string).collect();
        write!(f, "({}){}", dims.join(","), suffix(self.dtype).unwrap_or('?'))
    }
}

/// A malformed shape list, with the position of the offending character.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid --input-shapes: {message}\n  {text}\n  {caret:>width$}", caret = "^", width = position + 1)]
pub struct ShapeError {
    /// The whole text.
    pub text: String,
    /// Character index of the problem.
    pub position: usize,
    /// What was expected there.
    pub message: String,
}

const SUFFIXES: &str = "f (f32), d (f64), s (f16), i (i32), l (i64), b (i8), u (u8), B (bool)";

fn dtype_of(c: char) -> Option<DType> {
    Some(match c {
        'f' => DType::F32,
        'd' => DType::F64,
        's' => DType::F16,
        'i' => DType::I32,
        'l' => DType::I64,
        'b' => DType::I8,
        'u' => DType::U8,
        'B' => DType::Bool,
        _ => return None,
    })
}

fn suffix(dtype: DType) -> Option<char> {
    "fdsilbuB".chars().find(|&c| dtype_of(c) == Some(dtype))
}

/// The djl-bench suffix of `dtype` (`f` for f32…), if it has one.
pub fn dtype_suffix(dtype: DType) -> Option<char> {
    suffix(dtype)
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> ShapeError {
        ShapeError { text: self.text.into(), position: self.pos, message: message.into() }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn number(&mut self) -> Result<usize, ShapeError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error(match self.peek() {
                Some('-') => "dimensions cannot be negative".to_string(),
                Some(c) => format!("expected a dimension (a non-negative integer), found `{c}`"),
                None => "expected a dimension, found the end".to_string(),
            }));
        }
        let digits: String = self.chars[start..self.pos].iter().collect();
        digits.parse().map_err(|_| ShapeError {
            text: self.text.into(),
            position: start,
            message: format!("dimension `{digits}` is too large"),
        })
    }

    /// `dims` up to (not including) `end`: numbers separated by commas or spaces.
    fn dims(&mut self, end: Option<char>) -> Result<Vec<usize>, ShapeError> {
        let mut dims = Vec::new();
        loop {
            self.skip_spaces();
            if self.peek() == end {
                return Ok(dims);
            }
            if !dims.is_empty() {
                if self.peek() == Some(',') {
                    self.pos += 1;
                    self.skip_spaces();
                } else if !self.chars[self.pos - 1].is_whitespace() {
                    return Err(self.error(match end {
                        Some(e) => format!("expected `,` or `{e}`"),
                        None => "expected `,` between dimensions".into(),
                    }));
                }
            }
            dims.push(self.number()?);
        }
    }

    fn shapes(&mut self) -> Result<Vec<InputShape>, ShapeError> {
        let mut shapes = Vec::new();
        loop {
            self.skip_spaces();
            match self.peek() {
                None if !shapes.is_empty() => return Ok(shapes),
                None => return Err(self.error("expected `(` to start a shape")),
                Some('(') => self.pos += 1,
                Some(c) => {
                    return Err(self.error(format!("expected `(` to start a shape, found `{c}`")));
                }
            }
            let shape = self.dims(Some(')'))?;
            if self.peek() != Some(')') {
                return Err(self.error("expected `)` to close the shape"));
            }
            self.pos += 1;
            let dtype = match self.peek() {
                Some(c) if c.is_alphabetic() => {
                    let dtype = dtype_of(c).ok_or_else(|| {
                        self.error(format!("unknown dtype suffix `{c}`; suffixes are {SUFFIXES}"))
                    })?;
                    self.pos += 1;
                    dtype
                }
                _ => DType::F32,
            };
            shapes.push(InputShape { shape, dtype });
            self.skip_spaces();
            match self.peek() {
                Some(',') => self.pos += 1,
                None => return Ok(shapes),
                Some('(') => {}
                Some(c) => {
                    return Err(
                        self.error(format!("expected `,` before the next shape, found `{c}`"))
                    );
                }
            }
        }
    }
}

/// Parses a djl-bench shape list.
pub fn parse_input_shapes(text: &str) -> Result<Vec<InputShape>, ShapeError> {
    let mut parser = Parser { text, chars: text.chars().collect(), pos: 0 };
    if text.contains('(') {
        return parser.shapes();
    }
    let shape = parser.dims(None)?;
    if shape.is_empty() {
        return Err(parser.error("expected a shape such as (1,3,224,224)f"));
    }
    Ok(vec![InputShape { shape, dtype: DType::F32 }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(shape: &[usize], dtype: DType) -> InputShape {
        InputShape { shape: shape.to_vec(), dtype }
    }

    #[test]
    fn parses_djl_bench_examples() {
        assert_eq!(
            parse_input_shapes("(1,3,224,224)f").unwrap(),
            vec![one(&[1, 3, 224, 224], DType::F32)]
        );
        assert_eq!(
            parse_input_shapes("(1,128)l,(1,128)l").unwrap(),
            vec![one(&[1, 128], DType::I64), one(&[1, 128], DType::I64)]
        );
        assert_eq!(
            parse_input_shapes("1,3,224,224").unwrap(),
            vec![one(&[1, 3, 224, 224], DType::F32)]
        );
        assert_eq!(
            parse_input_shapes(" ( 2 , 4 )  ( 3 )B").unwrap(),
            vec![one(&[2, 4], DType::F32), one(&[3], DType::Bool)]
        );
        assert_eq!(parse_input_shapes("(1)s,(1)d,(1)i,(1)b,(1)u").unwrap().len(), 5);
    }

    #[test]
    fn errors_point_at_the_character() {
        let err = parse_input_shapes("(1,3,x24,224)f").unwrap_err();
        assert_eq!(err.position, 5);
        assert_eq!(
            err.to_string(),
            "invalid --input-shapes: expected a dimension (a non-negative integer), found `x`\n  (1,3,x24,224)f\n       ^"
        );
        assert_eq!(parse_input_shapes("(1,3)q").unwrap_err().position, 5);
        assert!(parse_input_shapes("(1,3)q").unwrap_err().message.contains("l (i64)"));
        assert_eq!(parse_input_shapes("(1,3").unwrap_err().message, "expected `,` or `)`");
        assert_eq!(
            parse_input_shapes("(1,-3)").unwrap_err().message,
            "dimensions cannot be negative"
        );
        assert_eq!(parse_input_shapes("(1)(2)x").unwrap_err().position, 6);
        assert!(parse_input_shapes("").is_err());
        assert!(
            parse_input_shapes("(99999999999999999999999)")
                .unwrap_err()
                .message
                .contains("too large")
        );
    }

    #[test]
    fn display_round_trips() {
        let shapes = parse_input_shapes("(1,128)l,(2,3)f").unwrap();
        let text: Vec<String> = shapes.iter().map(ToString::to_string).collect();
        assert_eq!(parse_input_shapes(&text.join(",")).unwrap(), shapes);
    }
}
