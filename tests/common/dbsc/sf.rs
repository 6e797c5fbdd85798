//! RFC 9651 structured fields: the subset DBSC's headers use (lists, inner lists, parameters,
//! strings, tokens, integers, booleans), strict as a browser's parser is.

/// A bare item of a structured field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bare {
    Token(String),
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Bare {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Bare::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A member of a structured-field list: an item (one bare item) or an inner list, with params.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub items: Vec<Bare>,
    pub inner_list: bool,
    pub params: Vec<(String, Bare)>,
}

impl Member {
    pub fn param(&self, key: &str) -> Option<&Bare> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn param_str(&self, key: &str) -> Option<&str> {
        self.param(key).and_then(Bare::as_str)
    }
}

/// Parses an RFC 9651 list (members: items or inner lists, with parameters). `None` on any
/// syntax error, as a strict receiver would.
pub fn parse_sf_list(input: &str) -> Option<Vec<Member>> {
    let mut p = Sf {
        s: input.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    p.skip(b' ');
    while p.i < p.s.len() {
        out.push(p.member()?);
        p.skip_ows();
        if p.i == p.s.len() {
            break;
        }
        p.eat(b',')?;
        p.skip_ows();
        if p.i == p.s.len() {
            return None; // a trailing comma
        }
    }
    Some(out)
}

struct Sf<'a> {
    s: &'a [u8],
    i: usize,
}

impl Sf<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek() == Some(b)).then(|| self.i += 1)
    }
    fn skip(&mut self, b: u8) {
        while self.peek() == Some(b) {
            self.i += 1;
        }
    }
    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn member(&mut self) -> Option<Member> {
        let (items, inner_list) = if self.eat(b'(').is_some() {
            let mut items = Vec::new();
            loop {
                self.skip(b' ');
                if self.eat(b')').is_some() {
                    break;
                }
                items.push(self.bare()?);
                // Parameters on inner-list items are legal; DBSC uses none, so they are dropped.
                self.params()?;
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return None;
                }
            }
            (items, true)
        } else {
            (vec![self.bare()?], false)
        };
        Some(Member {
            items,
            inner_list,
            params: self.params()?,
        })
    }

    fn params(&mut self) -> Option<Vec<(String, Bare)>> {
        let mut params = Vec::new();
        while self.eat(b';').is_some() {
            self.skip(b' ');
            let key = self.key()?;
            let value = if self.eat(b'=').is_some() {
                self.bare()?
            } else {
                Bare::Bool(true)
            };
            params.retain(|(k, _)| *k != key);
            params.push((key, value));
        }
        Some(params)
    }

    fn key(&mut self) -> Option<String> {
        let start = self.i;
        match self.peek()? {
            b'a'..=b'z' | b'*' => self.i += 1,
            _ => return None,
        }
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')
        ) {
            self.i += 1;
        }
        Some(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn bare(&mut self) -> Option<Bare> {
        match self.peek()? {
            b'"' => self.string(),
            b'?' => {
                self.i += 1;
                let v = match self.peek()? {
                    b'0' => false,
                    b'1' => true,
                    _ => return None,
                };
                self.i += 1;
                Some(Bare::Bool(v))
            }
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                self.i += 1;
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()?
                    .parse()
                    .ok()
                    .map(Bare::Int)
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'*' => {
                let start = self.i;
                self.i += 1;
                while self
                    .peek()
                    .is_some_and(|b| is_tchar(b) || b == b':' || b == b'/')
                {
                    self.i += 1;
                }
                Some(Bare::Token(
                    String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
                ))
            }
            _ => None,
        }
    }

    fn string(&mut self) -> Option<Bare> {
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            let b = self.peek()?;
            self.i += 1;
            match b {
                b'"' => return Some(Bare::Str(out)),
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    if e != b'"' && e != b'\\' {
                        return None;
                    }
                    out.push(e as char);
                }
                0x20..=0x7e => out.push(b as char),
                _ => return None,
            }
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
