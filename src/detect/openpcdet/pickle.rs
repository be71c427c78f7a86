//! A bounded reader of the Python pickle subset that `torch.save` writes
//! (protocol 2, and the newer opcodes of protocols 3-5 for good measure).
//!
//! Nothing is executed: a global (`torch._utils._rebuild_tensor_v2`,
//! `collections.OrderedDict`, a storage class) is kept as its name, and
//! `REDUCE`/`NEWOBJ` of a callable becomes an [`Value::Object`] holding the
//! callable and its arguments. The caller (see `pth`) recognises the few
//! callables a checkpoint needs; everything else stays an inert value.
//! Persistent ids (`BINPERSID`, how torch refers to tensor storages) are
//! kept as [`Value::PersistentId`].
//!
//! Bounds, for files from outside: every value built or copied from the memo
//! counts against a node budget, containers nest at most [`MAX_DEPTH`]
//! deep (so dropping a value cannot overflow the stack), and every length
//! read from the stream is checked against the bytes left.
//!
//! Deviation from Python: `BINGET` returns a copy of the memoised value as it
//! was when `BINPUT` stored it, not a shared reference, so a container fetched
//! from the memo misses items added after it was memoised. torch's state
//! dicts never fetch a container twice (only strings, globals, storage ids
//! and finished tuples), which is all this reader is for.

use std::collections::HashMap;

/// Containers nested deeper than this are refused.
pub const MAX_DEPTH: usize = 64;
/// Values built or copied in one pickle (a 60 MB OpenPCDet checkpoint: about 10^4).
pub const MAX_NODES: usize = 20_000_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Key-value pairs in insertion order (dict and OrderedDict alike).
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    Global { module: String, name: String },
    /// `callable(*args)`, never called; `state` is what `BUILD` gave it.
    Object { callable: Box<Value>, args: Box<Value>, state: Option<Box<Value>> },
    PersistentId(Box<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i128),
            _ => None,
        }
    }

    /// The value of string key `key` of a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// `module.name` when this is that global.
    pub fn is_global(&self, module: &str, name: &str) -> bool {
        matches!(self, Value::Global { module: m, name: n } if m == module && n == name)
    }

    /// Nesting depth (a scalar is 0) and node count.
    fn measure(&self) -> (usize, usize) {
        let children: Box<dyn Iterator<Item = &Value>> = match self {
            Value::List(v) | Value::Tuple(v) | Value::Set(v) => Box::new(v.iter()),
            Value::Dict(items) => Box::new(items.iter().flat_map(|(k, v)| [k, v])),
            Value::Object { callable, args, state } => Box::new([callable.as_ref(), args.as_ref()].into_iter().chain(state.as_deref())),
            Value::PersistentId(v) => Box::new(std::iter::once(v.as_ref())),
            _ => return (0, 1),
        };
        children.fold((1, 1), |(d, n), c| {
            let (cd, cn) = c.measure();
            (d.max(cd + 1), n + cn)
        })
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleError {
    #[error("pickle ends early at byte {0}")]
    Truncated(usize),
    #[error("pickle opcode 0x{op:02x} at byte {at} is not supported")]
    Opcode { op: u8, at: usize },
    #[error("pickle at byte {at}: {problem}")]
    Malformed { at: usize, problem: String },
    #[error("pickle exceeds a bound: {0}")]
    Bound(String),
}

enum Item {
    Value(Value),
    Mark,
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    memo: HashMap<u32, Value>,
    nodes: usize,
}

/// Parses one pickle starting at `data[0]`; returns the value and the number
/// of bytes it took (the byte after `STOP`).
pub fn parse(data: &[u8]) -> Result<(Value, usize), PickleError> {
    let mut m = Machine { data, pos: 0, stack: Vec::new(), memo: HashMap::new(), nodes: 0 };
    let value = m.run()?;
    Ok((value, m.pos))
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or(PickleError::Truncated(self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le(&mut self, n: usize) -> Result<u64, PickleError> {
        Ok(self.take(n)?.iter().rev().fold(0u64, |acc, &b| (acc << 8) | b as u64))
    }

    fn len(&mut self, width: usize) -> Result<usize, PickleError> {
        let n = self.le(width)?;
        usize::try_from(n).ok().filter(|&n| n <= self.data.len() - self.pos).ok_or(PickleError::Truncated(self.pos))
    }

    fn malformed(&self, problem: impl Into<String>) -> PickleError {
        PickleError::Malformed { at: self.pos, problem: problem.into() }
    }

    fn count(&mut self, nodes: usize) -> Result<(), PickleError> {
        self.nodes += nodes;
        if self.nodes > MAX_NODES {
            return Err(PickleError::Bound(format!("more than {MAX_NODES} values")));
        }
        Ok(())
    }

    /// Pushes `v`, refusing it if it nests too deep.
    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        self.count(1)?;
        self.stack.push(Item::Value(v));
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(Item::Value(v)) => Ok(v),
            Some(Item::Mark) => Err(self.malformed("a mark where a value was expected")),
            None => Err(self.malformed("stack underflow")),
        }
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let at = self.pos;
        match self.stack.last_mut() {
            Some(Item::Value(v)) => Ok(v),
            _ => Err(PickleError::Malformed { at, problem: "no value on the stack".into() }),
        }
    }

    /// The values above the topmost mark (mark removed).
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self.stack.iter().rposition(|i| matches!(i, Item::Mark)).ok_or_else(|| self.malformed("no mark"))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items.into_iter().map(|i| match i {
            Item::Value(v) => v,
            Item::Mark => unreachable!("marks above the topmost mark"),
        }).collect())
    }

    /// Checks that `children` may go into a container (depth bound).
    fn nestable(&self, children: &[&Value]) -> Result<(), PickleError> {
        for c in children {
            if c.measure().0 + 1 > MAX_DEPTH {
                return Err(PickleError::Bound(format!("containers nested deeper than {MAX_DEPTH}")));
            }
        }
        Ok(())
    }

    fn string(&mut self, width: usize) -> Result<Value, PickleError> {
        let n = self.len(width)?;
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes).map_err(|e| self.malformed(format!("string is not UTF-8: {e}")))?;
        Ok(Value::Str(s.to_string()))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or(PickleError::Truncated(self.pos))?;
        let s = std::str::from_utf8(&rest[..end]).map_err(|e| self.malformed(format!("global name is not UTF-8: {e}")))?.to_string();
        self.pos += end + 1;
        Ok(s)
    }

    fn long(&mut self, n: usize) -> Result<Value, PickleError> {
        if n > 16 {
            return Err(self.malformed(format!("an integer of {n} bytes")));
        }
        let bytes = self.take(n)?;
        if bytes.is_empty() {
            return Ok(Value::Int(0));
        }
        let negative = bytes[n - 1] & 0x80 != 0;
        let mut buf = [if negative { 0xff } else { 0 }; 16];
        buf[..n].copy_from_slice(bytes);
        Ok(Value::Int(i128::from_le_bytes(buf)))
    }

    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        let v = self.top()?.clone();
        let (_, nodes) = v.measure();
        self.count(nodes)?;
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<(), PickleError> {
        let v = self.memo.get(&key).cloned().ok_or_else(|| self.malformed(format!("memo key {key} was never stored")))?;
        let (_, nodes) = v.measure();
        self.count(nodes)?;
        self.push(v)
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(self.malformed(format!("protocol {proto}")));
                    }
                }
                0x95 => {
                    self.le(8)?; // FRAME: a size hint
                }
                b'.' => return self.pop(),
                b'(' => {
                    self.count(1)?;
                    self.stack.push(Item::Mark)
                }
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                0x8f => self.push(Value::Set(Vec::new()))?,
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = self.le(4)? as u32 as i32;
                    self.push(Value::Int(v as i128))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i128))?
                }
                b'M' => {
                    let v = self.le(2)?;
                    self.push(Value::Int(v as i128))?
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let v = self.long(n)?;
                    self.push(v)?
                }
                0x8b => {
                    let n = self.len(4)?;
                    let v = self.long(n)?;
                    self.push(v)?
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().expect("8 bytes"));
                    self.push(Value::Float(v))?
                }
                b'X' => {
                    let v = self.string(4)?;
                    self.push(v)?
                }
                0x8c => {
                    let v = self.string(1)?;
                    self.push(v)?
                }
                0x8d => {
                    let v = self.string(8)?;
                    self.push(v)?
                }
                // Python 2 byte strings (SHORT_BINSTRING, BINSTRING) and bytes
                b'U' | b'T' | b'C' | b'B' | 0x8e => {
                    let width = match op {
                        b'U' | b'C' => 1,
                        b'T' | b'B' => 4,
                        _ => 8,
                    };
                    let n = self.len(width)?;
                    let bytes = self.take(n)?.to_vec();
                    self.push(Value::Bytes(bytes))?
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.nestable(&items.iter().collect::<Vec<_>>())?;
                    self.push(Value::Tuple(items))?
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.nestable(&items.iter().collect::<Vec<_>>())?;
                    self.push(Value::List(items))?
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = self.pairs(items)?;
                    self.push(Value::Dict(d))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(self.malformed("stack underflow"));
                    }
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.nestable(&items.iter().collect::<Vec<_>>())?;
                    self.push(Value::Tuple(items))?
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend(vec![v])?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend(items)?
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    self.extend(items)?
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.nestable(&items.iter().collect::<Vec<_>>())?;
                    self.push(Value::Set(items))?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![(k, v)])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.set_items(pairs)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global { module, name })?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => self.push(Value::Global { module, name })?,
                        _ => return Err(self.malformed("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.nestable(&[&args, &callable])?;
                    self.push(Value::Object { callable: Box::new(callable), args: Box::new(args), state: None })?
                }
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.nestable(&[&args, &kwargs, &callable])?;
                    let args = Value::Tuple(vec![args, kwargs]);
                    self.push(Value::Object { callable: Box::new(callable), args: Box::new(args), state: None })?
                }
                b'b' => {
                    let state = self.pop()?;
                    self.nestable(&[&state])?;
                    // other targets, e.g. an OrderedDict's attributes (a state dict's `_metadata`), are not needed
                    if let Value::Object { state: slot, .. } = self.top()? {
                        *slot = Some(Box::new(state));
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.nestable(&[&pid])?;
                    self.push(Value::PersistentId(Box::new(pid)))?
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.le(4)? as u32;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.le(4)? as u32;
                    self.memo_get(k)?
                }
                b'0' => {
                    self.stack.pop().ok_or_else(|| self.malformed("stack underflow"))?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    let (_, nodes) = v.measure();
                    self.count(nodes)?;
                    self.push(v)?
                }
                _ => return Err(PickleError::Opcode { op, at }),
            }
        }
    }

    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>, PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("an odd number of dict items"));
        }
        self.nestable(&items.iter().collect::<Vec<_>>())?;
        let mut it = items.into_iter();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    fn extend(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        self.nestable(&items.iter().collect::<Vec<_>>())?;
        let at = self.pos;
        match self.top()? {
            Value::List(v) | Value::Set(v) => v.extend(items),
            // list subclasses built by REDUCE: keep the items beside the call
            Value::Object { state, .. } => *state = Some(Box::new(Value::List(items))),
            _ => return Err(PickleError::Malformed { at, problem: "APPEND to a value that is not a list".into() }),
        }
        Ok(())
    }

    fn set_items(&mut self, pairs: Vec<(Value, Value)>) -> Result<(), PickleError> {
        for (k, v) in &pairs {
            self.nestable(&[k, v])?;
        }
        let at = self.pos;
        let top = self.top()?;
        // an OrderedDict (or another dict subclass) built by REDUCE becomes a plain dict
        if let Value::Object { callable, .. } = top {
            if callable.is_global("collections", "OrderedDict") {
                *top = Value::Dict(Vec::new());
            }
        }
        match top {
            Value::Dict(d) => d.extend(pairs),
            _ => return Err(PickleError::Malformed { at, problem: "SETITEM on a value that is not a dict".into() }),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_scalars_containers_globals_and_memo() {
        // pickle.dumps({'a': [1, -2, 300, 70000], 'b': (1.5, None, True), 'c': 'xy'}, protocol=2) by hand
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'X', 1, 0, 0, 0, b'a', b'q', 1, b']', b'q', 2, b'(', b'K', 1, b'J'];
        p.extend((-2i32).to_le_bytes());
        p.extend([b'M', 0x2c, 0x01, 0x8a, 3, 0x70, 0x11, 0x01, b'e', b'X', 1, 0, 0, 0, b'b', b'G']);
        p.extend(1.5f64.to_be_bytes());
        p.extend([b'N', 0x88, 0x87, b'X', 1, 0, 0, 0, b'c', b'X', 2, 0, 0, 0, b'x', b'y', b'u', b'.']);
        let (v, used) = parse(&p).unwrap();
        assert_eq!(used, p.len());
        assert_eq!(v.get("a"), Some(&Value::List(vec![Value::Int(1), Value::Int(-2), Value::Int(300), Value::Int(70000)])));
        assert_eq!(v.get("b"), Some(&Value::Tuple(vec![Value::Float(1.5), Value::None, Value::Bool(true)])));
        assert_eq!(v.get("c").and_then(Value::as_str), Some("xy"));
        // the memoised key string fetched again
        let q = [0x80, 2, b'X', 1, 0, 0, 0, b'k', b'q', 7, b'h', 7, 0x86, b'.'];
        assert_eq!(parse(&q).unwrap().0, Value::Tuple(vec![Value::Str("k".into()), Value::Str("k".into())]));
    }

    #[test]
    fn broken_or_hostile_pickles_are_errors() {
        assert!(matches!(parse(&[0x80, 2, b'X', 9, 0, 0, 0, b'a']), Err(PickleError::Truncated(_))));
        assert!(matches!(parse(&[0x80, 2, b'i']), Err(PickleError::Opcode { op: b'i', .. })));
        assert!(matches!(parse(&[0x80, 2, b'h', 3, b'.']), Err(PickleError::Malformed { .. })));
        assert!(matches!(parse(&[b'.']), Err(PickleError::Malformed { .. })));
        // 100 nested lists
        let mut deep = vec![0x80, 2];
        deep.extend(std::iter::repeat_n(b']', 100));
        deep.extend(std::iter::repeat_n(b'a', 99));
        deep.push(b'.');
        assert!(matches!(parse(&deep), Err(PickleError::Bound(_))));
        // marks alone count against the budget too
        let mut marks = vec![0x80, 2];
        marks.extend(std::iter::repeat_n(b'(', MAX_NODES + 1));
        assert!(matches!(parse(&marks), Err(PickleError::Bound(_))));
        // a list doubled by the memo 40 times: 2^40 values
        let mut bomb = vec![0x80, 2, b']', b'K', 1, b'a'];
        for _ in 0..40 {
            bomb.extend([b'q', 0, b'h', 0, 0x86]);
        }
        bomb.push(b'.');
        assert!(matches!(parse(&bomb), Err(PickleError::Bound(_))));
    }
}
