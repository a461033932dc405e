//! A restricted unpickler for PyTorch state dicts, with `torch.load(weights_only=True)`
//! semantics: it builds containers (dicts, lists, tuples), numbers, strings, storages
//! and tensors, and refuses every other object. The classes and functions a pickle may
//! name are an allow-list checked when the name is read (`GLOBAL`, `STACK_GLOBAL`),
//! before anything could be called; nothing is ever executed, the allowed callables are
//! interpreted here.
//!
//! Protocols 2 to 5 (torch.save writes protocol 2); the text opcodes of protocol 0 and
//! the opcodes that instantiate arbitrary classes (`INST`, `OBJ`, `EXT*`) are refused.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

/// The element types of PyTorch's typed storages, by their `torch.*Storage` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDtype {
    /// `torch.float16`.
    F16,
    /// `torch.bfloat16`.
    BF16,
    /// `torch.float32`.
    F32,
    /// `torch.float64`.
    F64,
    /// `torch.int64`.
    I64,
    /// `torch.int32`.
    I32,
    /// `torch.int16`.
    I16,
    /// `torch.int8`.
    I8,
    /// `torch.uint8`.
    U8,
    /// `torch.bool`.
    Bool,
}

impl StorageDtype {
    /// The dtype of storage class `torch.{name}`.
    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::I8 | Self::U8 | Self::Bool => 1,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::F32 | Self::I32 => 4,
            Self::F64 | Self::I64 => 8,
        }
    }

    /// PyTorch's name (`float32`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
            Self::F32 => "float32",
            Self::F64 => "float64",
            Self::I64 => "int64",
            Self::I32 => "int32",
            Self::I16 => "int16",
            Self::I8 => "int8",
            Self::U8 => "uint8",
            Self::Bool => "bool",
        }
    }
}

/// A tensor as the pickle describes it: a view into a storage record of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorView {
    /// The storage's record name (`archive/data/<key>`).
    pub key: String,
    /// Element type.
    pub dtype: StorageDtype,
    /// Elements the storage holds, as the pickle declares.
    pub storage_len: u64,
    /// First element of the view.
    pub offset: u64,
    /// Shape.
    pub size: Vec<u64>,
    /// Strides in elements.
    pub stride: Vec<u64>,
}

/// The callables and classes a state dict may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensor,
    /// `torch._utils._rebuild_parameter` (and `_with_state`): the tensor itself.
    RebuildParameter,
    /// A `torch.*Storage` class.
    Storage(StorageDtype),
}

impl Global {
    /// The allowed global `module.name`, if it is one.
    fn resolve(module: &str, name: &str) -> Option<Self> {
        match (module, name) {
            ("collections", "OrderedDict") => Some(Self::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Self::RebuildTensor),
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                Some(Self::RebuildParameter)
            }
            ("torch", storage) => StorageDtype::from_class(storage).map(Self::Storage),
            _ => None,
        }
    }
}

/// A mutable container, shared as Python shares it (the memo hands out references).
pub type Shared<T> = Rc<RefCell<T>>;

/// What the unpickler builds.
#[derive(Debug, Clone)]
pub enum Value {
    /// `None`.
    None,
    /// A bool (its value is not needed by a state dict).
    Bool,
    /// An int that fits 64 bits.
    Int(i64),
    /// A float (a learning rate, say; not needed).
    Float,
    /// A str.
    Str(Rc<str>),
    /// bytes (not needed).
    Bytes,
    /// A tuple.
    Tuple(Rc<[Value]>),
    /// A list.
    List(Shared<Vec<Value>>),
    /// A dict or OrderedDict, in insertion order.
    Dict(Shared<Vec<(Value, Value)>>),
    /// An allowed global, not yet called.
    Global(GlobalRef),
    /// A storage reference (`BINPERSID` of `('storage', class, key, location, numel)`).
    Storage {
        /// Element type.
        dtype: StorageDtype,
        /// Record key.
        key: Rc<str>,
        /// Elements.
        len: u64,
    },
    /// A tensor.
    Tensor(Rc<TensorView>),
}

/// An allowed global (opaque outside this module).
#[derive(Debug, Clone, Copy)]
pub struct GlobalRef(Global);

impl Value {
    /// A short description for error messages (`a list`, `an int`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Bool => "a bool",
            Self::Int(_) => "an int",
            Self::Float => "a float",
            Self::Str(_) => "a str",
            Self::Bytes => "bytes",
            Self::Tuple(_) => "a tuple",
            Self::List(_) => "a list",
            Self::Dict(_) => "a dict",
            Self::Global(_) => "a class or function",
            Self::Storage { .. } => "a storage",
            Self::Tensor(_) => "a tensor",
        }
    }
}

/// Why a pickle was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickleError {
    /// The pickle names a class or function outside the allow-list.
    Forbidden {
        /// `module.name`.
        object: String,
    },
    /// A malformed or unsupported pickle.
    Malformed {
        /// Byte offset of the opcode.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Forbidden { object } => write!(f, "refers to {object:?}"),
            Self::Malformed { offset, reason } => write!(f, "at byte {offset}: {reason}"),
        }
    }
}

/// The unpickler's state: the byte stream, the stack, the mark stack and the memo.
struct Machine<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Offset of the opcode being run (for errors).
    op_at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

type Step<T> = std::result::Result<T, PickleError>;

/// Unpickles `bytes` (a `data.pkl` record) under the allow-list.
///
/// # Errors
/// [`PickleError::Forbidden`] for any global outside the allow-list,
/// [`PickleError::Malformed`] for truncated or malformed streams and unsupported opcodes.
pub fn unpickle(bytes: &[u8]) -> Step<Value> {
    let mut machine = Machine {
        bytes,
        at: 0,
        op_at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        machine.op_at = machine.at;
        let op = machine.take(1)?[0];
        if op == b'.' {
            return machine.pop();
        }
        machine.run(op)?;
    }
}

impl<'a> Machine<'a> {
    fn malformed<T>(&self, reason: impl Into<String>) -> Step<T> {
        Err(PickleError::Malformed {
            offset: self.op_at,
            reason: reason.into(),
        })
    }

    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return self.malformed(format!(
                "truncated: {n} byte(s) needed, {} left",
                self.bytes.len() - self.at
            ));
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Step<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Step<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Step<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Step<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// A length that must fit in what is left of the stream.
    fn length(&mut self, len: u64) -> Step<usize> {
        match usize::try_from(len) {
            Ok(n) if n <= self.bytes.len() - self.at => Ok(n),
            _ => self.malformed(format!("length {len} runs past the end of the pickle")),
        }
    }

    fn text(&mut self, len: u64) -> Step<Value> {
        let n = self.length(len)?;
        let raw = self.take(n)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(Value::Str(s.into())),
            Err(_) => self.malformed("a string that is not UTF-8"),
        }
    }

    fn blob(&mut self, len: u64) -> Step<Value> {
        let n = self.length(len)?;
        self.take(n)?;
        Ok(Value::Bytes)
    }

    fn pop(&mut self) -> Step<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.malformed("stack underflow");
        }
        Ok(self.stack.pop().expect("checked non-empty"))
    }

    fn top(&mut self) -> Step<&mut Value> {
        if self.stack.is_empty() {
            return self.malformed("stack underflow");
        }
        Ok(self.stack.last_mut().expect("checked non-empty"))
    }

    /// The values pushed since the last `MARK`, which is removed.
    fn pop_mark(&mut self) -> Step<Vec<Value>> {
        let Some(mark) = self.marks.pop() else {
            return self.malformed("no MARK on the stack");
        };
        Ok(self.stack.split_off(mark))
    }

    fn memo_get(&mut self, index: u32) -> Step<()> {
        match self.memo.get(&index) {
            Some(v) => {
                self.stack.push(v.clone());
                Ok(())
            }
            None => self.malformed(format!("memo entry {index} was never stored")),
        }
    }

    fn memo_put(&mut self, index: u32) -> Step<()> {
        let value = self.top()?.clone();
        self.memo.insert(index, value);
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Step<()> {
        match Global::resolve(module, name) {
            Some(g) => {
                self.stack.push(Value::Global(GlobalRef(g)));
                Ok(())
            }
            None => Err(PickleError::Forbidden {
                object: shortened(&format!("{module}.{name}")),
            }),
        }
    }

    fn line(&mut self) -> Step<&'a str> {
        let rest = &self.bytes[self.at..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return self.malformed("GLOBAL without a newline");
        };
        let line = &rest[..end];
        self.at += end + 1;
        match std::str::from_utf8(line) {
            Ok(s) => Ok(s),
            Err(_) => self.malformed("a GLOBAL name that is not UTF-8"),
        }
    }

    fn int_bytes(&mut self, n: u64) -> Step<Value> {
        if n > 8 {
            return self.malformed(format!("an integer of {n} bytes (more than 64 bits)"));
        }
        let raw = self.take(n as usize)?;
        let negative = raw.last().is_some_and(|&b| b & 0x80 != 0);
        let mut buf = [if negative { 0xff } else { 0 }; 8];
        buf[..raw.len()].copy_from_slice(raw);
        Ok(Value::Int(i64::from_le_bytes(buf)))
    }

    /// Runs one opcode (all but `STOP`).
    fn run(&mut self, op: u8) -> Step<()> {
        let value = match op {
            0x80 => {
                let protocol = self.u8()?;
                if !(2..=5).contains(&protocol) {
                    return self.malformed(format!("pickle protocol {protocol} (2 to 5 read)"));
                }
                return Ok(());
            }
            0x95 => {
                let len = self.u64()?;
                self.length(len)?;
                return Ok(());
            }
            b'(' => {
                self.marks.push(self.stack.len());
                return Ok(());
            }
            b'0' => {
                self.pop()?;
                return Ok(());
            }
            b'1' => {
                self.pop_mark()?;
                return Ok(());
            }
            b'2' => self.top()?.clone(),
            b'N' => Value::None,
            0x88 | 0x89 => Value::Bool,
            b'J' => Value::Int(i64::from(self.u32()? as i32)),
            b'K' => Value::Int(i64::from(self.u8()?)),
            b'M' => Value::Int(i64::from(self.u16()?)),
            0x8a => {
                let n = self.u8()?;
                self.int_bytes(u64::from(n))?
            }
            0x8b => {
                let n = self.u32()?;
                self.int_bytes(u64::from(n))?
            }
            b'G' => {
                self.take(8)?;
                Value::Float
            }
            b'X' => {
                let n = self.u32()?;
                self.text(u64::from(n))?
            }
            0x8c => {
                let n = self.u8()?;
                self.text(u64::from(n))?
            }
            0x8d => {
                let n = self.u64()?;
                self.text(n)?
            }
            b'T' | b'B' => {
                let n = self.u32()?;
                self.blob(u64::from(n))?
            }
            b'U' | b'C' => {
                let n = self.u8()?;
                self.blob(u64::from(n))?
            }
            0x8e => {
                let n = self.u64()?;
                self.blob(n)?
            }
            b')' => Value::Tuple(Rc::from([])),
            b't' => Value::Tuple(self.pop_mark()?.into()),
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let floor = self.marks.last().copied().unwrap_or(0);
                if self.stack.len() < floor + n {
                    return self.malformed("stack underflow");
                }
                let items = self.stack.split_off(self.stack.len() - n);
                Value::Tuple(items.into())
            }
            b']' => Value::List(Rc::default()),
            b'l' => Value::List(Rc::new(RefCell::new(self.pop_mark()?))),
            b'}' => Value::Dict(Rc::default()),
            b'd' => {
                let items = self.pop_mark()?;
                let dict = Rc::new(RefCell::new(Vec::new()));
                self.set_items(&dict, items)?;
                Value::Dict(dict)
            }
            _ => return self.run_structural(op),
        };
        self.stack.push(value);
        Ok(())
    }

    /// The opcodes that change containers, the memo, globals and calls.
    fn run_structural(&mut self, op: u8) -> Step<()> {
        match op {
            b'a' => {
                let item = self.pop()?;
                self.append(vec![item])
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.append(items)
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_top(vec![key, value])
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_top(items)
            }
            b'q' => {
                let i = self.u8()?;
                self.memo_put(u32::from(i))
            }
            b'r' => {
                let i = self.u32()?;
                self.memo_put(i)
            }
            0x94 => {
                let i = u32::try_from(self.memo.len()).unwrap_or(u32::MAX);
                self.memo_put(i)
            }
            b'h' => {
                let i = self.u8()?;
                self.memo_get(u32::from(i))
            }
            b'j' => {
                let i = self.u32()?;
                self.memo_get(i)
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.global(module, name)
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => self.global(&m, &n),
                    _ => self.malformed("STACK_GLOBAL of non-strings"),
                }
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let value = self.call(&callable, &args)?;
                self.stack.push(value);
                Ok(())
            }
            0x81 => {
                let args = self.pop()?;
                let class = self.pop()?;
                match class {
                    Value::Global(GlobalRef(Global::OrderedDict)) => {
                        self.stack.push(Value::Dict(Rc::default()));
                        Ok(())
                    }
                    _ => self.malformed(format!("NEWOBJ of {} with {}", class.kind(), args.kind())),
                }
            }
            b'b' => {
                // BUILD: the state of an OrderedDict is its `_metadata` attribute (module
                // versions), which a state dict does not need; nothing else is built.
                let _state = self.pop()?;
                match self.top()? {
                    Value::Dict(_) => Ok(()),
                    other => {
                        let kind = other.kind();
                        self.malformed(format!("BUILD of {kind}"))
                    }
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                let storage = self.storage(&pid)?;
                self.stack.push(storage);
                Ok(())
            }
            b'i' | b'o' | b'P' | 0x82..=0x84 => {
                let name = match op {
                    b'i' => "INST",
                    b'o' => "OBJ",
                    b'P' => "PERSID",
                    _ => "EXT",
                };
                self.malformed(format!(
                    "opcode {name}, which instantiates objects a state dict does not hold"
                ))
            }
            _ => self.malformed(format!("unsupported opcode 0x{op:02x}")),
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Step<()> {
        match self.top()? {
            Value::List(list) => {
                list.borrow_mut().extend(items);
                Ok(())
            }
            other => {
                let kind = other.kind();
                self.malformed(format!("APPEND to {kind}"))
            }
        }
    }

    fn set_top(&mut self, items: Vec<Value>) -> Step<()> {
        let dict = match self.top()? {
            Value::Dict(dict) => Rc::clone(dict),
            other => {
                let kind = other.kind();
                return self.malformed(format!("SETITEM on {kind}"));
            }
        };
        self.set_items(&dict, items)
    }

    fn set_items(&self, dict: &Shared<Vec<(Value, Value)>>, items: Vec<Value>) -> Step<()> {
        if !items.len().is_multiple_of(2) {
            return self.malformed("a dict with an odd number of keys and values");
        }
        let mut dict = dict.borrow_mut();
        let mut items = items.into_iter();
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            dict.push((k, v));
        }
        Ok(())
    }

    /// A persistent id: `('storage', torch.XStorage, key, location, numel)`.
    fn storage(&self, pid: &Value) -> Step<Value> {
        let Value::Tuple(t) = pid else {
            return self.malformed(format!("a persistent id that is {}", pid.kind()));
        };
        match &t[..] {
            [Value::Str(tag), Value::Global(GlobalRef(Global::Storage(dtype))), Value::Str(key), _, Value::Int(len)]
                if &**tag == "storage" && *len >= 0 =>
            {
                Ok(Value::Storage {
                    dtype: *dtype,
                    key: Rc::clone(key),
                    len: *len as u64,
                })
            }
            _ => self
                .malformed("a persistent id that is not ('storage', class, key, location, numel)"),
        }
    }

    fn call(&self, callable: &Value, args: &Value) -> Step<Value> {
        let (Value::Global(GlobalRef(global)), Value::Tuple(args)) = (callable, args) else {
            return self.malformed(format!(
                "REDUCE of {} with {}",
                callable.kind(),
                args.kind()
            ));
        };
        match (global, &args[..]) {
            (Global::OrderedDict, []) => Ok(Value::Dict(Rc::default())),
            (Global::RebuildParameter, [data @ Value::Tensor(_), ..]) => Ok(data.clone()),
            (Global::RebuildTensor, [storage, offset, size, stride, ..]) => {
                self.rebuild_tensor(storage, offset, size, stride)
            }
            _ => self.malformed(format!(
                "a call of {global:?} with {} argument(s)",
                args.len()
            )),
        }
    }

    fn rebuild_tensor(
        &self,
        storage: &Value,
        offset: &Value,
        size: &Value,
        stride: &Value,
    ) -> Step<Value> {
        let Value::Storage { dtype, key, len } = storage else {
            return self.malformed(format!("_rebuild_tensor_v2 of {}", storage.kind()));
        };
        let Some(offset) = as_count(offset) else {
            return self.malformed("a tensor offset that is not a non-negative int");
        };
        let (Some(size), Some(stride)) = (counts(size), counts(stride)) else {
            return self
                .malformed("a tensor size or stride that is not a tuple of non-negative ints");
        };
        if size.len() != stride.len() {
            return self.malformed(format!(
                "a tensor of {} dimension(s) with {} stride(s)",
                size.len(),
                stride.len()
            ));
        }
        Ok(Value::Tensor(Rc::new(TensorView {
            key: key.to_string(),
            dtype: *dtype,
            storage_len: *len,
            offset,
            size,
            stride,
        })))
    }
}

/// At most 200 characters of a name taken from the file (a hostile one may be as long as
/// the file).
fn shortened(name: &str) -> String {
    match name.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &name[..at]),
        None => name.to_owned(),
    }
}

fn as_count(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

fn counts(v: &Value) -> Option<Vec<u64>> {
    match v {
        Value::Tuple(items) => items.iter().map(as_count).collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dict_of_ints_unpickles_in_order() {
        // pickle.dumps({"b": 1, "a": -2}, protocol=2)
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00bq\x01K\x01X\x01\x00\x00\x00aq\x02J\xfe\xff\xff\xffu.";
        let Value::Dict(d) = unpickle(bytes).unwrap() else {
            panic!("not a dict")
        };
        let d = d.borrow();
        assert!(matches!((&d[0].0, &d[0].1), (Value::Str(k), Value::Int(1)) if &**k == "b"));
        assert!(matches!((&d[1].0, &d[1].1), (Value::Str(k), Value::Int(-2)) if &**k == "a"));
    }

    #[test]
    fn globals_outside_the_allow_list_are_refused_when_named() {
        // pickle.dumps(os.system, protocol=2) names posix.system.
        let bytes = b"\x80\x02cposix\nsystem\nq\x00.";
        assert_eq!(
            unpickle(bytes).unwrap_err(),
            PickleError::Forbidden {
                object: "posix.system".into()
            }
        );
    }

    #[test]
    fn truncation_and_underflow_are_errors_not_panics() {
        assert!(matches!(
            unpickle(b"\x80\x02X\xff\xff\xff\x7fab"),
            Err(PickleError::Malformed { .. })
        ));
        assert!(matches!(
            unpickle(b"\x80\x02s."),
            Err(PickleError::Malformed { .. })
        ));
        assert!(matches!(
            unpickle(b"\x80\x02(u."),
            Err(PickleError::Malformed { .. })
        ));
        assert!(matches!(unpickle(b""), Err(PickleError::Malformed { .. })));
        assert!(matches!(
            unpickle(b"\x80\x02h\x05."),
            Err(PickleError::Malformed { .. })
        ));
    }

    #[test]
    fn long1_reads_twos_complement() {
        // pickle.dumps(-(2**40), protocol=2) = LONG1 6 bytes.
        let bytes = b"\x80\x02\x8a\x06\x00\x00\x00\x00\x00\xff.";
        assert!(matches!(unpickle(bytes).unwrap(), Value::Int(v) if v == -(1 << 40)));
    }
}
