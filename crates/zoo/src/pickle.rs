//! A reader of PyTorch's legacy checkpoint format (`torch.save` before 1.6, still what many
//! registry packages ship): five pickles — magic number, protocol version, system info, the
//! state dict, the storage keys — followed by each storage's raw little-endian data.
//!
//! The pickle machine here is the small subset `torch.save` writes with protocol 2 (no code
//! runs: `GLOBAL` only names a callable, and only a state dict of tensors is accepted).
//! Tensors come back contiguous, whatever their strides (a checkpoint converted from
//! TensorFlow keeps its `HWIO` storage and views it as `OIHW`).

use std::collections::HashMap;
use std::path::Path;

use thrum_core::{Error, Result, Tensor};

/// The magic number `torch.save` writes first in the legacy format.
const MAGIC: i128 = 0x1950_a86a_20f9_469c_fc6c;
/// The only legacy protocol version there is.
const PROTOCOL_VERSION: i64 = 1001;

#[derive(Clone, Debug, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64 (only the magic number is one).
    Big(i128),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// `module.name`, as `GLOBAL` names it.
    Global(String, String),
    /// `callable(args)`, as `REDUCE` asks for (nothing is called).
    Call(Box<Value>, Vec<Value>),
    /// A persistent id (`BINPERSID`): in a checkpoint, a reference to a storage.
    Persistent(Box<Value>),
    Mark,
}

fn corrupt(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::InvalidValue {
        what: "PyTorch checkpoint".into(),
        value: path.display().to_string(),
        expected: format!("a state dict saved by torch.save (legacy format): {reason}"),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("truncated at byte {} (wanted {n} more)", self.pos))?;
        let bytes: &'a [u8] = self.bytes;
        let slice = &bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> std::result::Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> std::result::Result<String, String> {
        let rest = &self.bytes[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or("unterminated GLOBAL")?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(text)
    }

    fn text(&mut self, n: usize) -> std::result::Result<Value, String> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map(Value::Str).map_err(|_| "a string is not UTF-8".into())
    }

    /// Runs one pickle to its `STOP` and returns the value it built.
    fn pickle(&mut self) -> std::result::Result<Value, String> {
        let mut stack: Vec<Value> = Vec::new();
        let mut memo: HashMap<u32, Value> = HashMap::new();
        let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| "stack underflow".to_string());
        let since_mark = |stack: &mut Vec<Value>| -> std::result::Result<Vec<Value>, String> {
            let mark = stack.iter().rposition(|v| *v == Value::Mark).ok_or("no MARK")?;
            let items = stack.split_off(mark + 1);
            stack.pop();
            Ok(items)
        };
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 2 {
                        return Err(format!("pickle protocol {proto} (this reader knows 2)"));
                    }
                }
                b'.' => return pop(&mut stack),
                b'(' => stack.push(Value::Mark),
                b'N' => stack.push(Value::None),
                0x88 => stack.push(Value::Bool(true)),
                0x89 => stack.push(Value::Bool(false)),
                b'K' => stack.push(Value::Int(i64::from(self.u8()?))),
                b'M' => stack.push(Value::Int(i64::from(self.u16()?))),
                b'J' => stack.push(Value::Int(i64::from(self.u32()? as i32))),
                0x8a => {
                    let n = usize::from(self.u8()?);
                    if n > 16 {
                        return Err(format!("a {n}-byte integer"));
                    }
                    let bytes = self.take(n)?;
                    let mut value: i128 = 0;
                    for (i, &b) in bytes.iter().enumerate() {
                        value |= i128::from(b) << (8 * i);
                    }
                    if n > 0 && n < 16 && bytes[n - 1] & 0x80 != 0 {
                        value -= 1i128 << (8 * n);
                    }
                    stack.push(match i64::try_from(value) {
                        Ok(v) => Value::Int(v),
                        Err(_) => Value::Big(value),
                    });
                }
                b'G' => {
                    let b = self.take(8)?;
                    let bits = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                    stack.push(Value::Float(f64::from_bits(bits)));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.text(n)?;
                    stack.push(v);
                }
                b'U' => {
                    let n = usize::from(self.u8()?);
                    let v = self.text(n)?;
                    stack.push(v);
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.text(n)?;
                    stack.push(v);
                }
                b')' => stack.push(Value::Tuple(Vec::new())),
                b']' => stack.push(Value::List(Vec::new())),
                b'}' => stack.push(Value::Dict(Vec::new())),
                b't' => {
                    let items = since_mark(&mut stack)?;
                    stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if stack.len() < n {
                        return Err("stack underflow".into());
                    }
                    let items = stack.split_off(stack.len() - n);
                    stack.push(Value::Tuple(items));
                }
                b'q' => {
                    let key = u32::from(self.u8()?);
                    memo.insert(key, stack.last().cloned().ok_or("PUT on an empty stack")?);
                }
                b'r' => {
                    let key = self.u32()?;
                    memo.insert(key, stack.last().cloned().ok_or("PUT on an empty stack")?);
                }
                b'h' | b'j' => {
                    let key = if op == b'h' { u32::from(self.u8()?) } else { self.u32()? };
                    let v = memo.get(&key).cloned().ok_or(format!("GET of unknown memo {key}"))?;
                    stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    stack.push(Value::Global(module, name));
                }
                b'R' => {
                    let args = pop(&mut stack)?;
                    let callable = pop(&mut stack)?;
                    let Value::Tuple(args) = args else {
                        return Err("REDUCE without an argument tuple".into());
                    };
                    // An OrderedDict is a dict: SETITEM(S) fill it as one.
                    let value = match &callable {
                        Value::Global(m, n)
                            if m == "collections" && n == "OrderedDict" && args.is_empty() =>
                        {
                            Value::Dict(Vec::new())
                        }
                        _ => Value::Call(Box::new(callable), args),
                    };
                    stack.push(value);
                }
                b'Q' => {
                    let id = pop(&mut stack)?;
                    stack.push(Value::Persistent(Box::new(id)));
                }
                b's' | b'u' => {
                    let items = if op == b's' {
                        let v = pop(&mut stack)?;
                        let k = pop(&mut stack)?;
                        vec![k, v]
                    } else {
                        since_mark(&mut stack)?
                    };
                    if items.len() % 2 != 0 {
                        return Err("SETITEMS with an odd number of items".into());
                    }
                    let Some(Value::Dict(dict)) = stack.last_mut() else {
                        return Err("SETITEM on something that is not a dict".into());
                    };
                    let mut items = items.into_iter();
                    while let (Some(k), Some(v)) = (items.next(), items.next()) {
                        dict.push((k, v));
                    }
                }
                b'a' | b'e' => {
                    let items =
                        if op == b'a' { vec![pop(&mut stack)?] } else { since_mark(&mut stack)? };
                    let Some(Value::List(list)) = stack.last_mut() else {
                        return Err("APPEND on something that is not a list".into());
                    };
                    list.extend(items);
                }
                // BUILD sets an object's state (a tensor's `_backward_hooks`): nothing to keep.
                b'b' => {
                    pop(&mut stack)?;
                }
                other => {
                    return Err(format!(
                        "pickle opcode 0x{other:02x} at byte {at}, which a checkpoint of tensors \
                         does not use"
                    ));
                }
            }
        }
    }
}

/// Element type of a storage, from its class name.
fn element_size(class: &str) -> Option<(usize, bool)> {
    match class {
        "FloatStorage" => Some((4, true)),
        "DoubleStorage" | "LongStorage" => Some((8, false)),
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => Some((2, false)),
        "IntStorage" => Some((4, false)),
        "ByteStorage" | "CharStorage" | "BoolStorage" => Some((1, false)),
        _ => None,
    }
}

struct TensorRef {
    storage: String,
    offset: usize,
    shape: Vec<usize>,
    strides: Vec<usize>,
    float: bool,
}

fn ints(value: &Value) -> Option<Vec<usize>> {
    match value {
        Value::Tuple(items) => items
            .iter()
            .map(|v| match v {
                Value::Int(i) => usize::try_from(*i).ok(),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, …)` → where the tensor's data is.
fn tensor_ref(value: &Value) -> std::result::Result<TensorRef, String> {
    let Value::Call(callable, args) = value else {
        return Err("a value that is not a tensor".into());
    };
    if !matches!(&**callable, Value::Global(m, n) if m == "torch._utils" && n == "_rebuild_tensor_v2")
    {
        return Err(format!(
            "{callable:?} where a tensor (torch._utils._rebuild_tensor_v2) was expected"
        ));
    }
    let (Some(Value::Persistent(id)), Some(Value::Int(offset)), Some(shape), Some(strides)) =
        (args.first(), args.get(1), args.get(2).and_then(ints), args.get(3).and_then(ints))
    else {
        return Err("a tensor whose storage, offset, size or stride is malformed".into());
    };
    let Value::Tuple(id) = &**id else {
        return Err("a storage reference that is not a tuple".into());
    };
    let (Some(Value::Str(kind)), Some(Value::Global(_, class)), Some(Value::Str(key))) =
        (id.first(), id.get(1), id.get(2))
    else {
        return Err("a storage reference that is not ('storage', class, key, …)".into());
    };
    if kind != "storage" || shape.len() != strides.len() {
        return Err("a storage reference that is not ('storage', class, key, …)".into());
    }
    let (_, float) = element_size(class).ok_or(format!("a storage of type {class}"))?;
    Ok(TensorRef {
        storage: key.clone(),
        offset: usize::try_from(*offset).map_err(|_| "a negative offset")?,
        shape,
        strides,
        float,
    })
}

/// Reads the float tensors of a legacy-format PyTorch state dict by name (integer tensors,
/// such as BatchNorm's `num_batches_tracked`, are skipped). Refuses with a reason anything
/// else: the newer zip format, a pickle that is not a state dict, a truncated file.
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::read(path, e))?;
    if bytes.starts_with(b"PK") {
        return Err(corrupt(path, "this is the zip format of torch >= 1.6, not the legacy one"));
    }
    parse(&bytes).map_err(|reason| corrupt(path, reason))
}

fn parse(bytes: &[u8]) -> std::result::Result<HashMap<String, Tensor>, String> {
    let mut r = Reader { bytes, pos: 0 };
    let magic = r.pickle().map_err(|e| format!("no magic number ({e})"))?;
    if magic != Value::Big(MAGIC) {
        return Err("the magic number of torch.save is not there".into());
    }
    if r.pickle()? != Value::Int(PROTOCOL_VERSION) {
        return Err(format!("a protocol version other than {PROTOCOL_VERSION}"));
    }
    let _system = r.pickle()?;
    let Value::Dict(entries) = r.pickle()? else {
        return Err("the saved object is not a dict of tensors (a state dict)".into());
    };
    let Value::List(keys) = r.pickle()? else {
        return Err("no list of storage keys after the state dict".into());
    };
    let mut references = Vec::with_capacity(entries.len());
    for (name, value) in &entries {
        let Value::Str(name) = name else {
            return Err("a state dict key that is not a string".into());
        };
        let tensor = tensor_ref(value).map_err(|e| format!("`{name}`: {e}"))?;
        references.push((name.clone(), tensor));
    }
    // Storage classes by key, to know each one's element size.
    let mut classes: HashMap<&str, &str> = HashMap::new();
    for (_, value) in &entries {
        if let Value::Call(_, args) = value
            && let Some(Value::Persistent(id)) = args.first()
            && let Value::Tuple(id) = &**id
            && let (Some(Value::Global(_, class)), Some(Value::Str(key))) = (id.get(1), id.get(2))
        {
            classes.insert(key, class);
        }
    }
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in &keys {
        let Value::Str(key) = key else { return Err("a storage key that is not a string".into()) };
        let class =
            classes.get(key.as_str()).ok_or(format!("storage {key} that no tensor uses"))?;
        let (size, _) = element_size(class).ok_or(format!("a storage of type {class}"))?;
        let b = r.take(8)?;
        let numel = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let len = usize::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(size))
            .ok_or(format!("storage {key} of {numel} elements"))?;
        storages.insert(key.clone(), r.take(len)?);
    }
    if r.pos != bytes.len() {
        return Err(format!("{} bytes after the last storage", bytes.len() - r.pos));
    }
    let mut tensors = HashMap::new();
    for (name, t) in references {
        if !t.float {
            continue;
        }
        let data =
            storages.get(&t.storage).ok_or(format!("`{name}`: storage {} missing", t.storage))?;
        let floats = data.len() / 4;
        let beyond = || format!("`{name}`: a view beyond its storage of {floats} elements");
        let count = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(beyond)?;
        // The furthest element the view reaches must lie inside the storage (checked
        // arithmetic: the sizes come from the file).
        let reach = t.shape.iter().zip(&t.strides).try_fold(t.offset, |at, (&d, &s)| {
            d.saturating_sub(1).checked_mul(s).and_then(|step| at.checked_add(step))
        });
        if count > 0 && reach.is_none_or(|last| last >= floats) {
            return Err(beyond());
        }
        let read = |i: usize| {
            let b = &data[4 * i..4 * i + 4];
            f32::from_le_bytes([b[0], b[1], b[2], b[3]])
        };
        let mut values = Vec::with_capacity(count);
        let mut index = vec![0usize; t.shape.len()];
        for _ in 0..count {
            let at = t.offset + index.iter().zip(&t.strides).map(|(i, s)| i * s).sum::<usize>();
            values.push(read(at));
            for axis in (0..index.len()).rev() {
                index[axis] += 1;
                if index[axis] < t.shape[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        let tensor = Tensor::from_vec(t.shape.clone(), values).map_err(|e| e.to_string())?;
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The first three pickles of a legacy checkpoint: magic number, protocol, system info.
    fn header() -> Vec<u8> {
        let mut bytes = vec![0x80, 0x02, 0x8a, 0x0a];
        bytes.extend(&MAGIC.to_le_bytes()[..10]);
        bytes.push(b'.');
        bytes.extend([0x80, 0x02, b'M', 0xe9, 0x03, b'.']);
        bytes.extend([0x80, 0x02, b'}', b'.']);
        bytes
    }

    /// One f32 tensor `w` of shape [2, 3] stored transposed (strides 1, 2), as a checkpoint
    /// converted from TensorFlow keeps its storage.
    fn checkpoint() -> Vec<u8> {
        let mut b = header();
        b.extend([0x80, 0x02, b'c']);
        b.extend(b"collections\nOrderedDict\n");
        b.extend([b')', b'R', b'X', 1, 0, 0, 0, b'w']);
        b.push(b'c');
        b.extend(b"torch._utils\n_rebuild_tensor_v2\n");
        b.push(b'(');
        // Persistent id ('storage', torch.FloatStorage, '7', 'cpu', 6, None).
        b.extend([b'(', b'X', 7, 0, 0, 0]);
        b.extend(b"storage");
        b.push(b'c');
        b.extend(b"torch\nFloatStorage\n");
        b.extend([b'X', 1, 0, 0, 0, b'7', b'X', 3, 0, 0, 0]);
        b.extend(b"cpu");
        b.extend([b'K', 6, b'N', b't', b'Q']);
        b.extend([b'K', 0, b'K', 2, b'K', 3, 0x86, b'K', 1, b'K', 2, 0x86, 0x89, b'}', b't', b'R']);
        b.extend([b's', b'.']);
        b.extend([0x80, 0x02, b']', b'X', 1, 0, 0, 0, b'7', b'a', b'.']);
        b.extend(6u64.to_le_bytes());
        for v in [0f32, 3.0, 1.0, 4.0, 2.0, 5.0] {
            b.extend(v.to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_a_strided_tensor_contiguous() {
        let tensors = parse(&checkpoint()).unwrap();
        let w = &tensors["w"];
        assert_eq!(w.shape(), &[2, 3]);
        assert_eq!(w.as_slice::<f32>().unwrap(), &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn refuses_what_is_not_a_state_dict_or_is_cut_short() {
        let mut list = header();
        list.extend([0x80, 0x02, b']', b'.']);
        let err = parse(&list).unwrap_err();
        assert!(err.contains("not a dict of tensors"), "{err}");
        let full = checkpoint();
        let err = parse(&full[..full.len() - 5]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        let err = parse(b"not a pickle at all").unwrap_err();
        assert!(err.contains("magic") || err.contains("opcode"), "{err}");
        let mut extra = full.clone();
        extra.extend([1, 2, 3]);
        assert!(parse(&extra).unwrap_err().contains("after the last storage"));
    }

    #[test]
    fn zip_checkpoints_are_named_as_such() {
        let dir = std::env::temp_dir().join(format!("thrum-pickle-{}", std::process::id()));
        std::fs::write(&dir, b"PK\x03\x04rest").unwrap();
        let err = read_state_dict(&dir).unwrap_err().to_string();
        let _ = std::fs::remove_file(&dir);
        assert!(err.contains("zip format"), "{err}");
    }
}
