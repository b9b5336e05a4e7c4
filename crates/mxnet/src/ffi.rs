//! The part of MXNet's C API (`include/mxnet/c_api.h`, 1.9) thrum uses, resolved from the
//! library at run time, and RAII owners of its handles. Every call goes through [`Api::call`],
//! which turns a non-zero status into an error carrying `MXGetLastError()`.

use std::ffi::{CStr, CString, c_char, c_int, c_void};

use thrum_core::{DType, Error, Result, Tensor, TensorData};

use crate::ENGINE;

/// An opaque MXNet handle (symbol, NDArray, cached op).
pub(crate) type Handle = *mut c_void;

type StrArray = *const *const c_char;

/// Function pointers into libmxnet. Field names follow the C names without the `MX` prefix.
pub(crate) struct Api {
    get_last_error: unsafe extern "C" fn() -> *const c_char,
    pub(crate) get_version: unsafe extern "C" fn(*mut c_int) -> c_int,
    pub(crate) symbol_create_from_json: unsafe extern "C" fn(*const c_char, *mut Handle) -> c_int,
    pub(crate) symbol_free: unsafe extern "C" fn(Handle) -> c_int,
    /// `NNSymbolListInputNames`: option 0 lists every input (arguments and auxiliary states)
    /// in the order a cached op takes them.
    pub(crate) symbol_list_input_names:
        unsafe extern "C" fn(Handle, c_int, *mut u32, *mut StrArray) -> c_int,
    pub(crate) symbol_list_outputs: unsafe extern "C" fn(Handle, *mut u32, *mut StrArray) -> c_int,
    pub(crate) ndarray_create:
        unsafe extern "C" fn(*const u32, u32, c_int, c_int, c_int, c_int, *mut Handle) -> c_int,
    pub(crate) ndarray_copy_from_cpu: unsafe extern "C" fn(Handle, *const c_void, usize) -> c_int,
    pub(crate) ndarray_copy_to_cpu: unsafe extern "C" fn(Handle, *mut c_void, usize) -> c_int,
    pub(crate) ndarray_get_shape:
        unsafe extern "C" fn(Handle, *mut c_int, *mut *const c_int) -> c_int,
    pub(crate) ndarray_get_dtype: unsafe extern "C" fn(Handle, *mut c_int) -> c_int,
    pub(crate) ndarray_get_storage_type: unsafe extern "C" fn(Handle, *mut c_int) -> c_int,
    pub(crate) ndarray_free: unsafe extern "C" fn(Handle) -> c_int,
    // Used by the test that checks thrum's own params writer against MXNet's.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) ndarray_save:
        unsafe extern "C" fn(*const c_char, u32, *mut Handle, StrArray) -> c_int,
    pub(crate) ndarray_load: unsafe extern "C" fn(
        *const c_char,
        *mut u32,
        *mut *mut Handle,
        *mut u32,
        *mut StrArray,
    ) -> c_int,
    /// `MXCreateCachedOpEX`; the last argument asks for the thread-safe cached op.
    pub(crate) create_cached_op:
        unsafe extern "C" fn(Handle, c_int, StrArray, StrArray, *mut Handle, bool) -> c_int,
    pub(crate) invoke_cached_op:
        unsafe extern "C" fn(Handle, c_int, *mut Handle, *mut c_int, *mut *mut Handle) -> c_int,
    pub(crate) free_cached_op: unsafe extern "C" fn(Handle) -> c_int,
    /// `MXSetNumOMPThreads`: `omp_set_num_threads` on the calling thread.
    pub(crate) set_num_omp_threads: unsafe extern "C" fn(c_int) -> c_int,
}

// SAFETY: the struct holds plain function pointers into a library that stays loaded for the
// life of the process; MXNet's C API functions may be called from any thread.
unsafe impl Send for Api {}
// SAFETY: as above; the pointers are never written after loading.
unsafe impl Sync for Api {}

fn resolve<T: Copy>(library: &libloading::Library, name: &str) -> std::result::Result<T, String> {
    let symbol = format!("{name}\0");
    // SAFETY: `T` is the function-pointer type c_api.h declares for `name` (the field types
    // above mirror the header); the library outlives the pointer (it is never unloaded).
    unsafe { library.get::<T>(symbol.as_bytes()) }
        .map(|s| *s)
        .map_err(|_| format!("it does not export `{name}`, so it is not libmxnet 1.9"))
}

impl Api {
    /// Resolves every function thrum uses from `library`.
    pub(crate) fn resolve(library: &libloading::Library) -> std::result::Result<Api, String> {
        Ok(Api {
            get_last_error: resolve(library, "MXGetLastError")?,
            get_version: resolve(library, "MXGetVersion")?,
            symbol_create_from_json: resolve(library, "MXSymbolCreateFromJSON")?,
            symbol_free: resolve(library, "MXSymbolFree")?,
            symbol_list_input_names: resolve(library, "NNSymbolListInputNames")?,
            symbol_list_outputs: resolve(library, "MXSymbolListOutputs")?,
            ndarray_create: resolve(library, "MXNDArrayCreateEx")?,
            ndarray_copy_from_cpu: resolve(library, "MXNDArraySyncCopyFromCPU")?,
            ndarray_copy_to_cpu: resolve(library, "MXNDArraySyncCopyToCPU")?,
            ndarray_get_shape: resolve(library, "MXNDArrayGetShapeEx")?,
            ndarray_get_dtype: resolve(library, "MXNDArrayGetDType")?,
            ndarray_get_storage_type: resolve(library, "MXNDArrayGetStorageType")?,
            ndarray_free: resolve(library, "MXNDArrayFree")?,
            ndarray_save: resolve(library, "MXNDArraySave")?,
            ndarray_load: resolve(library, "MXNDArrayLoad")?,
            create_cached_op: resolve(library, "MXCreateCachedOpEX")?,
            invoke_cached_op: resolve(library, "MXInvokeCachedOp")?,
            free_cached_op: resolve(library, "MXFreeCachedOp")?,
            set_num_omp_threads: resolve(library, "MXSetNumOMPThreads")?,
        })
    }

    /// Runs one C API call: a non-zero status becomes an error with MXNet's message, which
    /// `wrap` turns into the right error kind for the caller.
    pub(crate) fn call(&self, status: c_int, wrap: impl FnOnce(String) -> Error) -> Result<()> {
        if status == 0 {
            return Ok(());
        }
        // SAFETY: MXGetLastError returns the calling thread's last error message, a
        // NUL-terminated string owned by MXNet, valid until the next call on this thread.
        let message =
            unsafe { CStr::from_ptr((self.get_last_error)()) }.to_string_lossy().into_owned();
        Err(wrap(clean(&message)))
    }
}

/// MXNet's message without its source location prefix and C++ stack trace.
fn clean(message: &str) -> String {
    let text = message.split("Stack trace").next().unwrap_or(message);
    let text: Vec<&str> = text
        .lines()
        .map(|l| match l.find("] ") {
            // "[07:12:08] src/operator/nn/./convolution-inl.h:120: Check failed: ..."
            Some(i) if l.starts_with('[') => {
                l[i + 2..].split_once(": ").map_or(&l[i + 2..], |(_, rest)| rest)
            }
            _ => l,
        })
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    text.join(" ")
}

/// Strings returned by MXNet as owned Rust strings.
///
/// # Safety
/// `array` must point to `n` valid NUL-terminated strings.
unsafe fn strings(n: u32, array: StrArray) -> Vec<String> {
    (0..n as usize)
        // SAFETY: guaranteed by the caller.
        .map(|i| unsafe { CStr::from_ptr(*array.add(i)) }.to_string_lossy().into_owned())
        .collect()
}

pub(crate) fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::InvalidValue {
        what: what.into(),
        value: s.into(),
        expected: "text without NUL bytes".into(),
    })
}

/// MXNet's dtype codes (mshadow's type flags).
pub(crate) fn dtype_code(dtype: DType) -> Option<c_int> {
    crate::dtype_code(dtype)
}

fn dtype_of_code(code: c_int) -> Option<DType> {
    thrum_core::kit::dtype_from(crate::DTYPE_CODES, &code)
}

/// An owned symbol (graph).
pub(crate) struct Symbol {
    api: &'static Api,
    handle: Handle,
}

// SAFETY: a symbol is immutable once created; MXNet's symbol functions used here only read it.
unsafe impl Send for Symbol {}
// SAFETY: as above.
unsafe impl Sync for Symbol {}

impl Symbol {
    pub(crate) fn from_json(
        api: &'static Api,
        json: &str,
        wrap: impl FnOnce(String) -> Error,
    ) -> Result<Symbol> {
        let text = cstring(json, "symbol JSON")?;
        let mut handle: Handle = std::ptr::null_mut();
        // SAFETY: `text` is a valid C string; `handle` receives a new symbol on success.
        api.call(unsafe { (api.symbol_create_from_json)(text.as_ptr(), &mut handle) }, wrap)?;
        Ok(Symbol { api, handle })
    }

    /// Every input (arguments then auxiliary states, interleaved as the graph has them), in
    /// the order a cached op takes them.
    pub(crate) fn inputs(&self) -> Result<Vec<String>> {
        let (mut n, mut names): (u32, StrArray) = (0, std::ptr::null());
        // SAFETY: `self.handle` is a live symbol; MXNet fills `n` and `names` with
        // thread-local storage valid until the next call on this thread.
        let status =
            unsafe { (self.api.symbol_list_input_names)(self.handle, 0, &mut n, &mut names) };
        self.api.call(status, internal)?;
        // SAFETY: MXNet returned `n` strings in `names`.
        Ok(unsafe { strings(n, names) })
    }

    pub(crate) fn outputs(&self) -> Result<Vec<String>> {
        let (mut n, mut names): (u32, StrArray) = (0, std::ptr::null());
        // SAFETY: as in `inputs`.
        let status = unsafe { (self.api.symbol_list_outputs)(self.handle, &mut n, &mut names) };
        self.api.call(status, internal)?;
        // SAFETY: MXNet returned `n` strings in `names`.
        Ok(unsafe { strings(n, names) })
    }

    pub(crate) fn handle(&self) -> Handle {
        self.handle
    }
}

impl Drop for Symbol {
    fn drop(&mut self) {
        // SAFETY: the handle is live and owned by this value; freed once.
        unsafe { (self.api.symbol_free)(self.handle) };
    }
}

fn internal(message: String) -> Error {
    Error::inference(ENGINE, "mxnet", message)
}

/// An owned dense CPU NDArray.
pub(crate) struct NDArray {
    api: &'static Api,
    handle: Handle,
}

// SAFETY: an NDArray handle may be used from any thread: MXNet's engine orders reads and
// writes of its variable. thrum never writes an NDArray that another thread reads.
unsafe impl Send for NDArray {}
// SAFETY: shared use is read-only (inputs of cached ops, copies to the host).
unsafe impl Sync for NDArray {}

macro_rules! with_slice {
    ($data:expr, |$v:ident| $body:expr, $other:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::U16($v) => $body,
            TensorData::U32($v) => $body,
            TensorData::U64($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::F16($v) => $body,
            TensorData::BF16($v) => $body,
            TensorData::F32($v) => $body,
            TensorData::F64($v) => $body,
            _ => $other,
        }
    };
}

impl NDArray {
    /// A new CPU array holding a copy of `tensor`.
    pub(crate) fn from_tensor(
        api: &'static Api,
        tensor: &Tensor,
        wrap: impl Fn(String) -> Error,
    ) -> Result<NDArray> {
        let code = dtype_code(tensor.dtype())
            .ok_or_else(|| wrap(format!("MXNet has no {} arrays", tensor.dtype())))?;
        let shape: Vec<u32> = tensor
            .shape()
            .iter()
            .map(|&d| {
                u32::try_from(d)
                    .map_err(|_| wrap(format!("dimension {d} exceeds MXNet's 32-bit shapes")))
            })
            .collect::<Result<_>>()?;
        let mut handle: Handle = std::ptr::null_mut();
        // SAFETY: `shape` has `shape.len()` entries; device 1 (CPU) id 0; no delayed
        // allocation; `handle` receives a new array on success.
        let status = unsafe {
            (api.ndarray_create)(shape.as_ptr(), shape.len() as u32, 1, 0, 0, code, &mut handle)
        };
        api.call(status, &wrap)?;
        let array = NDArray { api, handle };
        let n = tensor.len();
        let status = with_slice!(
            tensor.data(),
            // SAFETY: the slice holds `n` elements of the array's dtype; MXNet copies them
            // synchronously before returning.
            |v| unsafe { (api.ndarray_copy_from_cpu)(array.handle, v.as_ptr().cast(), n) },
            return Err(wrap(format!("MXNet has no {} arrays", tensor.dtype())))
        );
        api.call(status, &wrap)?;
        Ok(array)
    }

    pub(crate) fn shape(&self) -> Result<Vec<usize>> {
        let (mut ndim, mut dims): (c_int, *const c_int) = (0, std::ptr::null());
        // SAFETY: live handle; MXNet fills `ndim` and points `dims` at thread-local storage.
        let status = unsafe { (self.api.ndarray_get_shape)(self.handle, &mut ndim, &mut dims) };
        self.api.call(status, internal)?;
        // A negative rank or dimension is MXNet's "unknown": an error, never a silent 0.
        let ndim = usize::try_from(ndim)
            .map_err(|_| internal(format!("an array of unknown rank ({ndim})")))?;
        // SAFETY: MXNet returned `ndim` dimensions at `dims`.
        let raw: Vec<i64> = (0..ndim).map(|i| i64::from(unsafe { *dims.add(i) })).collect();
        raw.iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<Vec<usize>, _>>()
            .map_err(|_| internal(format!("an array of unknown shape {raw:?}")))
    }

    pub(crate) fn dtype(&self) -> Result<Option<DType>> {
        let mut code: c_int = -1;
        // SAFETY: live handle; MXNet writes the dtype code.
        self.api.call(unsafe { (self.api.ndarray_get_dtype)(self.handle, &mut code) }, internal)?;
        Ok(dtype_of_code(code))
    }

    /// MXNet's storage type: 0 dense, 1 row-sparse, 2 CSR.
    pub(crate) fn storage_type(&self) -> Result<c_int> {
        let mut stype: c_int = -1;
        // SAFETY: live handle; MXNet writes the storage type.
        let status = unsafe { (self.api.ndarray_get_storage_type)(self.handle, &mut stype) };
        self.api.call(status, internal)?;
        Ok(stype)
    }

    /// A host copy; waits for pending writes (MXNet's sync copy does).
    pub(crate) fn to_tensor(&self, wrap: impl Fn(String) -> Error) -> Result<Tensor> {
        let shape = self.shape()?;
        let dtype = self.dtype()?;
        // Checked before anything is allocated from it.
        let n = thrum_core::tensor::checked_len(dtype.unwrap_or(DType::U8), &shape)?;
        macro_rules! copy {
            ($t:ty) => {{
                let mut data: Vec<$t> = vec![<$t>::default(); n];
                // SAFETY: `data` has room for `n` elements of the array's dtype.
                let status = unsafe {
                    (self.api.ndarray_copy_to_cpu)(self.handle, data.as_mut_ptr().cast(), n)
                };
                self.api.call(status, &wrap)?;
                Tensor::from_vec(shape, data)
            }};
        }
        match dtype {
            Some(DType::F32) => copy!(f32),
            Some(DType::F64) => copy!(f64),
            Some(DType::F16) => copy!(thrum_core::half::f16),
            Some(DType::BF16) => copy!(thrum_core::half::bf16),
            Some(DType::U8) => copy!(u8),
            Some(DType::I8) => copy!(i8),
            Some(DType::I16) => copy!(i16),
            Some(DType::I32) => copy!(i32),
            Some(DType::I64) => copy!(i64),
            Some(DType::U16) => copy!(u16),
            Some(DType::U32) => copy!(u32),
            Some(DType::U64) => copy!(u64),
            // MXNet's bool buffer may hold any byte (a `.params` file is copied in as it is);
            // a Rust `bool` must be 0 or 1: copy bytes, decoded as `b != 0`.
            Some(DType::Bool) => {
                let mut raw = vec![0u8; n];
                // SAFETY: `raw` has room for `n` one-byte bools.
                let status = unsafe {
                    (self.api.ndarray_copy_to_cpu)(self.handle, raw.as_mut_ptr().cast(), n)
                };
                self.api.call(status, &wrap)?;
                Tensor::from_le_bytes(DType::Bool, &shape, &raw)
            }
            _ => Err(wrap("output of a dtype thrum does not have".into())),
        }
    }

    /// A new array with a copy of this one's contents.
    pub(crate) fn duplicate(&self, wrap: impl Fn(String) -> Error) -> Result<NDArray> {
        NDArray::from_tensor(self.api, &self.to_tensor(&wrap)?, wrap)
    }

    pub(crate) fn handle(&self) -> Handle {
        self.handle
    }

    /// Takes ownership of a handle MXNet returned.
    ///
    /// # Safety
    /// `handle` must be a live NDArray handle that nothing else frees.
    pub(crate) unsafe fn from_raw(api: &'static Api, handle: Handle) -> NDArray {
        NDArray { api, handle }
    }

    /// Loads a `.params` file: `(name, array)` pairs, names as saved (`arg:NAME`, `aux:NAME`).
    pub(crate) fn load_file(
        api: &'static Api,
        path: &std::path::Path,
        wrap: impl Fn(String) -> Error,
    ) -> Result<Vec<(String, NDArray)>> {
        let file = cstring(&path.to_string_lossy(), "params path")?;
        let (mut n, mut arrays, mut n_names, mut names): (u32, *mut Handle, u32, StrArray) =
            (0, std::ptr::null_mut(), 0, std::ptr::null());
        // SAFETY: `file` is a C string; MXNet fills the counts and points the arrays at
        // thread-local storage; each returned handle is a new NDArray we now own.
        let status = unsafe {
            (api.ndarray_load)(file.as_ptr(), &mut n, &mut arrays, &mut n_names, &mut names)
        };
        api.call(status, &wrap)?;
        // SAFETY: MXNet returned `n` handles; take ownership before anything can fail.
        let owned: Vec<NDArray> =
            (0..n as usize).map(|i| unsafe { NDArray::from_raw(api, *arrays.add(i)) }).collect();
        // SAFETY: MXNet returned `n_names` strings.
        let keys = unsafe { strings(n_names, names) };
        if keys.len() != owned.len() {
            return Err(wrap(format!(
                "`{}` holds {} arrays but {} names; thrum needs named parameters (arg:NAME, aux:NAME)",
                path.display(),
                owned.len(),
                keys.len()
            )));
        }
        Ok(keys.into_iter().zip(owned).collect())
    }

    /// Saves `(name, array)` pairs with MXNet's own writer.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn save_file(
        api: &'static Api,
        path: &std::path::Path,
        arrays: &[(String, NDArray)],
        wrap: impl Fn(String) -> Error,
    ) -> Result<()> {
        let file = cstring(&path.to_string_lossy(), "params path")?;
        let keys: Vec<CString> =
            arrays.iter().map(|(k, _)| cstring(k, "parameter name")).collect::<Result<_>>()?;
        let key_ptrs: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr()).collect();
        let mut handles: Vec<Handle> = arrays.iter().map(|(_, a)| a.handle).collect();
        // SAFETY: `handles` and `key_ptrs` hold `arrays.len()` live handles and C strings.
        let status = unsafe {
            (api.ndarray_save)(
                file.as_ptr(),
                handles.len() as u32,
                handles.as_mut_ptr(),
                key_ptrs.as_ptr(),
            )
        };
        api.call(status, wrap)
    }
}

impl Drop for NDArray {
    fn drop(&mut self) {
        // SAFETY: the handle is live and owned by this value; freed once.
        unsafe { (self.api.ndarray_free)(self.handle) };
    }
}

/// An owned cached op (a symbol prepared for repeated forward calls).
pub(crate) struct CachedOp {
    api: &'static Api,
    handle: Handle,
}

// SAFETY: a cached op may be moved to another thread; concurrent use is restricted to the
// thread-safe kind, which MXNet makes safe (`SharedPredictor`).
unsafe impl Send for CachedOp {}
// SAFETY: only the thread-safe cached op (created with thread_safe = true) is shared.
unsafe impl Sync for CachedOp {}

impl CachedOp {
    pub(crate) fn new(
        api: &'static Api,
        symbol: &Symbol,
        flags: &[(&str, &str)],
        thread_safe: bool,
        wrap: impl FnOnce(String) -> Error,
    ) -> Result<CachedOp> {
        let keys: Vec<CString> =
            flags.iter().map(|(k, _)| cstring(k, "flag")).collect::<Result<_>>()?;
        let vals: Vec<CString> =
            flags.iter().map(|(_, v)| cstring(v, "flag")).collect::<Result<_>>()?;
        let key_ptrs: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr()).collect();
        let val_ptrs: Vec<*const c_char> = vals.iter().map(|v| v.as_ptr()).collect();
        let mut handle: Handle = std::ptr::null_mut();
        // SAFETY: live symbol; `flags.len()` keys and values as C strings; `handle` receives
        // a new cached op on success.
        let status = unsafe {
            (api.create_cached_op)(
                symbol.handle(),
                flags.len() as c_int,
                key_ptrs.as_ptr(),
                val_ptrs.as_ptr(),
                &mut handle,
                thread_safe,
            )
        };
        api.call(status, wrap)?;
        Ok(CachedOp { api, handle })
    }

    /// One forward call; `inputs` in the symbol's input order. Returns new arrays we own.
    pub(crate) fn invoke(
        &self,
        inputs: &[Handle],
        wrap: impl Fn(String) -> Error,
    ) -> Result<Vec<NDArray>> {
        let mut inputs = inputs.to_vec();
        let mut n_out: c_int = 0;
        let mut outputs: *mut Handle = std::ptr::null_mut();
        // SAFETY: every input handle is live for the call; a null `outputs` asks MXNet to
        // allocate the outputs, returned as new handles in thread-local storage.
        let status = unsafe {
            (self.api.invoke_cached_op)(
                self.handle,
                inputs.len() as c_int,
                inputs.as_mut_ptr(),
                &mut n_out,
                &mut outputs,
            )
        };
        self.api.call(status, &wrap)?;
        let n = usize::try_from(n_out).unwrap_or(0);
        // SAFETY: MXNet returned `n` new handles; we take ownership of each once.
        Ok((0..n).map(|i| unsafe { NDArray::from_raw(self.api, *outputs.add(i)) }).collect())
    }
}

impl Drop for CachedOp {
    fn drop(&mut self) {
        // SAFETY: the handle is live and owned by this value; freed once.
        unsafe { (self.api.free_cached_op)(self.handle) };
    }
}
