//! The part of TensorFlow's C API (`tensorflow/c/c_api.h`, `tf_tensor.h`, `tf_tstring.h`)
//! thrum uses, resolved from the library at run time, and RAII owners of its objects. Every
//! call that reports through a `TF_Status` goes through [`Api::status`], which turns a non-OK
//! code into the status message.

use std::ffi::{CStr, CString, c_char, c_int, c_void};

use thrum_core::{DType, Tensor, TensorData};

/// Opaque C API objects.
pub(crate) enum TfStatus {}
pub(crate) enum TfGraph {}
pub(crate) enum TfSession {}
pub(crate) enum TfSessionOptions {}
pub(crate) enum TfImportOptions {}
pub(crate) enum TfOperation {}
pub(crate) enum TfTensor {}

/// `TF_Buffer`.
#[repr(C)]
pub(crate) struct TfBuffer {
    pub(crate) data: *const c_void,
    pub(crate) length: usize,
    pub(crate) data_deallocator: Option<unsafe extern "C" fn(*mut c_void, usize)>,
}

/// `TF_Output`: an operation's output.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct TfOutput {
    pub(crate) oper: *mut TfOperation,
    pub(crate) index: c_int,
}

/// `TF_TString` (`tf_tstring.h`): 24 bytes, small strings inline; only ever touched through
/// the library's `TF_String*` functions.
#[repr(C, align(8))]
pub(crate) struct TfTString {
    _raw: [u8; 24],
}

/// Function pointers into libtensorflow_cc. Field names follow the C names without `TF_`.
pub(crate) struct Api {
    pub(crate) version: unsafe extern "C" fn() -> *const c_char,
    new_status: unsafe extern "C" fn() -> *mut TfStatus,
    delete_status: unsafe extern "C" fn(*mut TfStatus),
    get_code: unsafe extern "C" fn(*const TfStatus) -> c_int,
    message: unsafe extern "C" fn(*const TfStatus) -> *const c_char,
    pub(crate) new_graph: unsafe extern "C" fn() -> *mut TfGraph,
    pub(crate) delete_graph: unsafe extern "C" fn(*mut TfGraph),
    pub(crate) new_session_options: unsafe extern "C" fn() -> *mut TfSessionOptions,
    pub(crate) delete_session_options: unsafe extern "C" fn(*mut TfSessionOptions),
    pub(crate) set_config:
        unsafe extern "C" fn(*mut TfSessionOptions, *const c_void, usize, *mut TfStatus),
    pub(crate) new_session: unsafe extern "C" fn(
        *mut TfGraph,
        *const TfSessionOptions,
        *mut TfStatus,
    ) -> *mut TfSession,
    #[allow(clippy::type_complexity)]
    pub(crate) load_session_from_saved_model: unsafe extern "C" fn(
        *const TfSessionOptions,
        *const TfBuffer,
        *const c_char,
        *const *const c_char,
        c_int,
        *mut TfGraph,
        *mut TfBuffer,
        *mut TfStatus,
    ) -> *mut TfSession,
    pub(crate) close_session: unsafe extern "C" fn(*mut TfSession, *mut TfStatus),
    pub(crate) delete_session: unsafe extern "C" fn(*mut TfSession, *mut TfStatus),
    #[allow(clippy::type_complexity)]
    pub(crate) session_run: unsafe extern "C" fn(
        *mut TfSession,
        *const TfBuffer,
        *const TfOutput,
        *const *mut TfTensor,
        c_int,
        *const TfOutput,
        *mut *mut TfTensor,
        c_int,
        *const *const TfOperation,
        c_int,
        *mut TfBuffer,
        *mut TfStatus,
    ),
    pub(crate) new_buffer_from_string: unsafe extern "C" fn(*const c_void, usize) -> *mut TfBuffer,
    pub(crate) delete_buffer: unsafe extern "C" fn(*mut TfBuffer),
    pub(crate) new_import_options: unsafe extern "C" fn() -> *mut TfImportOptions,
    pub(crate) delete_import_options: unsafe extern "C" fn(*mut TfImportOptions),
    pub(crate) graph_import_graph_def:
        unsafe extern "C" fn(*mut TfGraph, *const TfBuffer, *const TfImportOptions, *mut TfStatus),
    pub(crate) graph_operation_by_name:
        unsafe extern "C" fn(*mut TfGraph, *const c_char) -> *mut TfOperation,
    pub(crate) graph_next_operation:
        unsafe extern "C" fn(*mut TfGraph, *mut usize) -> *mut TfOperation,
    pub(crate) operation_name: unsafe extern "C" fn(*mut TfOperation) -> *const c_char,
    pub(crate) operation_op_type: unsafe extern "C" fn(*mut TfOperation) -> *const c_char,
    pub(crate) operation_num_outputs: unsafe extern "C" fn(*mut TfOperation) -> c_int,
    pub(crate) operation_output_type: unsafe extern "C" fn(TfOutput) -> c_int,
    pub(crate) operation_output_num_consumers: unsafe extern "C" fn(TfOutput) -> c_int,
    pub(crate) graph_get_tensor_num_dims:
        unsafe extern "C" fn(*mut TfGraph, TfOutput, *mut TfStatus) -> c_int,
    pub(crate) graph_get_tensor_shape:
        unsafe extern "C" fn(*mut TfGraph, TfOutput, *mut i64, c_int, *mut TfStatus),
    allocate_tensor: unsafe extern "C" fn(c_int, *const i64, c_int, usize) -> *mut TfTensor,
    pub(crate) delete_tensor: unsafe extern "C" fn(*mut TfTensor),
    tensor_type: unsafe extern "C" fn(*const TfTensor) -> c_int,
    num_dims: unsafe extern "C" fn(*const TfTensor) -> c_int,
    dim: unsafe extern "C" fn(*const TfTensor, c_int) -> i64,
    tensor_byte_size: unsafe extern "C" fn(*const TfTensor) -> usize,
    tensor_data: unsafe extern "C" fn(*const TfTensor) -> *mut c_void,
    string_init: unsafe extern "C" fn(*mut TfTString),
    string_copy: unsafe extern "C" fn(*mut TfTString, *const c_char, usize),
    string_get_data_pointer: unsafe extern "C" fn(*const TfTString) -> *const c_char,
    string_get_size: unsafe extern "C" fn(*const TfTString) -> usize,
}

// SAFETY: the struct holds plain function pointers into a library that stays loaded for the
// life of the process; the C API functions may be called from any thread.
unsafe impl Send for Api {}
// SAFETY: as above; the pointers are never written after loading.
unsafe impl Sync for Api {}

fn resolve<T: Copy>(library: &libloading::Library, name: &str) -> std::result::Result<T, String> {
    let symbol = format!("{name}\0");
    // SAFETY: `T` is the function-pointer type the C headers declare for `name` (the field
    // types above mirror them); the library outlives the pointer (it is never unloaded).
    unsafe { library.get::<T>(symbol.as_bytes()) }.map(|s| *s).map_err(|_| {
        format!("it does not export `{name}`, so it is not TensorFlow's C API library")
    })
}

impl Api {
    /// Resolves every function thrum uses from `library`.
    pub(crate) fn resolve(library: &libloading::Library) -> std::result::Result<Api, String> {
        Ok(Api {
            version: resolve(library, "TF_Version")?,
            new_status: resolve(library, "TF_NewStatus")?,
            delete_status: resolve(library, "TF_DeleteStatus")?,
            get_code: resolve(library, "TF_GetCode")?,
            message: resolve(library, "TF_Message")?,
            new_graph: resolve(library, "TF_NewGraph")?,
            delete_graph: resolve(library, "TF_DeleteGraph")?,
            new_session_options: resolve(library, "TF_NewSessionOptions")?,
            delete_session_options: resolve(library, "TF_DeleteSessionOptions")?,
            set_config: resolve(library, "TF_SetConfig")?,
            new_session: resolve(library, "TF_NewSession")?,
            load_session_from_saved_model: resolve(library, "TF_LoadSessionFromSavedModel")?,
            close_session: resolve(library, "TF_CloseSession")?,
            delete_session: resolve(library, "TF_DeleteSession")?,
            session_run: resolve(library, "TF_SessionRun")?,
            new_buffer_from_string: resolve(library, "TF_NewBufferFromString")?,
            delete_buffer: resolve(library, "TF_DeleteBuffer")?,
            new_import_options: resolve(library, "TF_NewImportGraphDefOptions")?,
            delete_import_options: resolve(library, "TF_DeleteImportGraphDefOptions")?,
            graph_import_graph_def: resolve(library, "TF_GraphImportGraphDef")?,
            graph_operation_by_name: resolve(library, "TF_GraphOperationByName")?,
            graph_next_operation: resolve(library, "TF_GraphNextOperation")?,
            operation_name: resolve(library, "TF_OperationName")?,
            operation_op_type: resolve(library, "TF_OperationOpType")?,
            operation_num_outputs: resolve(library, "TF_OperationNumOutputs")?,
            operation_output_type: resolve(library, "TF_OperationOutputType")?,
            operation_output_num_consumers: resolve(library, "TF_OperationOutputNumConsumers")?,
            graph_get_tensor_num_dims: resolve(library, "TF_GraphGetTensorNumDims")?,
            graph_get_tensor_shape: resolve(library, "TF_GraphGetTensorShape")?,
            allocate_tensor: resolve(library, "TF_AllocateTensor")?,
            delete_tensor: resolve(library, "TF_DeleteTensor")?,
            tensor_type: resolve(library, "TF_TensorType")?,
            num_dims: resolve(library, "TF_NumDims")?,
            dim: resolve(library, "TF_Dim")?,
            tensor_byte_size: resolve(library, "TF_TensorByteSize")?,
            tensor_data: resolve(library, "TF_TensorData")?,
            string_init: resolve(library, "TF_StringInit")?,
            string_copy: resolve(library, "TF_StringCopy")?,
            string_get_data_pointer: resolve(library, "TF_StringGetDataPointer")?,
            string_get_size: resolve(library, "TF_StringGetSize")?,
        })
    }

    /// The library's version (`2.21.0`).
    pub(crate) fn version_string(&self) -> String {
        // SAFETY: TF_Version returns a static NUL-terminated string.
        unsafe { CStr::from_ptr((self.version)()) }.to_string_lossy().into_owned()
    }

    /// Runs `f` with a fresh status and returns its value, or the status message when the code
    /// is not OK.
    pub(crate) fn status<T>(&self, f: impl FnOnce(*mut TfStatus) -> T) -> Result<T, String> {
        let status = Status { api: self, ptr: self.new_status_checked()? };
        let value = f(status.ptr);
        // SAFETY: `status.ptr` is a live status the call above wrote.
        let code = unsafe { (self.get_code)(status.ptr) };
        if code == 0 {
            return Ok(value);
        }
        // SAFETY: as above; TF_Message returns a string owned by the status, copied here.
        let message = unsafe { CStr::from_ptr((self.message)(status.ptr)) };
        Err(format!("{} ({})", message.to_string_lossy().trim(), code_name(code)))
    }

    fn new_status_checked(&self) -> Result<*mut TfStatus, String> {
        // SAFETY: TF_NewStatus allocates a status; it is deleted by `Status::drop`.
        let ptr = unsafe { (self.new_status)() };
        if ptr.is_null() { Err("TF_NewStatus failed".into()) } else { Ok(ptr) }
    }

    /// A C string of `text`, or an error naming `what` when it contains a NUL byte.
    pub(crate) fn c_string(text: &str, what: &str) -> Result<CString, String> {
        CString::new(text).map_err(|_| format!("{what} `{text}` contains a NUL byte"))
    }

    /// A name the C API returned, as a Rust string.
    ///
    /// # Safety
    /// `ptr` is NUL-terminated and valid for the call.
    pub(crate) unsafe fn name(ptr: *const c_char) -> String {
        if ptr.is_null() {
            return String::new();
        }
        // SAFETY: the caller's contract.
        unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
    }

    /// A new TF tensor holding a copy of `tensor` (dtype `code`).
    pub(crate) fn tensor_from(
        &self,
        tensor: &Tensor,
        code: c_int,
    ) -> Result<OwnedTensor<'_>, String> {
        let dims = thrum_core::kit::dims_i64(tensor.shape()).map_err(|e| e.to_string())?;
        match tensor.data() {
            TensorData::Bytes(strings) => {
                let len = strings.len() * std::mem::size_of::<TfTString>();
                let owned = self.allocate(code, &dims, len)?;
                let data = owned.data_ptr() as *mut TfTString;
                for (k, s) in strings.iter().enumerate() {
                    // SAFETY: the tensor holds `strings.len()` TF_TStrings (allocated above for
                    // exactly that many); each is initialised and then given a copy of `s`.
                    unsafe {
                        (self.string_init)(data.add(k));
                        (self.string_copy)(data.add(k), s.as_ptr().cast(), s.len());
                    }
                }
                Ok(owned)
            }
            _ => {
                let bytes = tensor.raw_bytes().ok_or("no raw bytes")?;
                let owned = self.allocate(code, &dims, bytes.len())?;
                if !bytes.is_empty() {
                    // SAFETY: the TF tensor was allocated with `bytes.len()` bytes; the two
                    // buffers do not overlap.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            bytes.as_ptr(),
                            owned.data_ptr().cast(),
                            bytes.len(),
                        )
                    };
                }
                Ok(owned)
            }
        }
    }

    fn allocate(&self, code: c_int, dims: &[i64], len: usize) -> Result<OwnedTensor<'_>, String> {
        // SAFETY: dims points to `dims.len()` values; TF_AllocateTensor returns a tensor owned
        // by the caller (deleted by OwnedTensor::drop), or null.
        let ptr = unsafe { (self.allocate_tensor)(code, dims.as_ptr(), dims.len() as c_int, len) };
        if ptr.is_null() {
            return Err(format!("TensorFlow could not allocate a {len}-byte tensor"));
        }
        Ok(OwnedTensor { api: self, ptr })
    }

    /// Takes ownership of a tensor the library returned.
    pub(crate) fn own(&self, ptr: *mut TfTensor) -> OwnedTensor<'_> {
        OwnedTensor { api: self, ptr }
    }
}

/// TensorFlow's name for a status code.
fn code_name(code: c_int) -> &'static str {
    match code {
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "status",
    }
}

struct Status<'a> {
    api: &'a Api,
    ptr: *mut TfStatus,
}

impl Drop for Status<'_> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from TF_NewStatus and is deleted once.
        unsafe { (self.api.delete_status)(self.ptr) }
    }
}

/// A TF tensor thrum owns.
pub(crate) struct OwnedTensor<'a> {
    api: &'a Api,
    pub(crate) ptr: *mut TfTensor,
}

impl OwnedTensor<'_> {
    fn data_ptr(&self) -> *mut c_void {
        // SAFETY: `ptr` is a live tensor.
        unsafe { (self.api.tensor_data)(self.ptr) }
    }

    /// A thrum tensor with a copy of this one's data; `None` for a dtype thrum has not.
    pub(crate) fn to_tensor(&self) -> Result<Tensor, String> {
        let api = self.api;
        // SAFETY: `ptr` is a live tensor for every call below.
        let (code, rank) = unsafe { ((api.tensor_type)(self.ptr), (api.num_dims)(self.ptr)) };
        let dims: Vec<i64> = (0..rank)
            // SAFETY: as above; `k` < rank.
            .map(|k| unsafe { (api.dim)(self.ptr, k) })
            .collect();
        let dtype = crate::dtype_of(code).ok_or_else(|| {
            format!("an output of dtype {}, which thrum has no type for", crate::dtype_name(code))
        })?;
        // A negative dimension or an overflowing count is an error: the count bounds the reads
        // below.
        let (shape, count) =
            thrum_core::kit::shape_from_i64(dtype, &dims).map_err(|e| e.to_string())?;
        // SAFETY: as above.
        let size = unsafe { (api.tensor_byte_size)(self.ptr) };
        let data = self.data_ptr();
        if dtype == DType::Bytes {
            let needed = count.checked_mul(std::mem::size_of::<TfTString>());
            if needed.is_none_or(|n| size < n) {
                return Err(format!("a string output of {size} bytes for {count} strings"));
            }
            let strings = (0..count)
                .map(|k| {
                    // SAFETY: the tensor holds `count` TF_TStrings (checked against its size);
                    // each string's data pointer is valid for its size while the tensor lives.
                    unsafe {
                        let s = (data as *const TfTString).add(k);
                        let p = (api.string_get_data_pointer)(s);
                        let n = (api.string_get_size)(s);
                        if n == 0 {
                            Vec::new()
                        } else {
                            std::slice::from_raw_parts(p.cast::<u8>(), n).to_vec()
                        }
                    }
                })
                .collect::<Vec<_>>();
            return Tensor::from_shared(shape, std::sync::Arc::new(strings))
                .map_err(|e| e.to_string());
        }
        let bytes: &[u8] = if size == 0 {
            &[]
        } else {
            // SAFETY: the tensor's data is `size` bytes, valid while `self` lives; it is
            // copied into the new tensor before this returns.
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size) }
        };
        Tensor::from_le_bytes(dtype, &shape, bytes).map_err(|e| e.to_string())
    }
}

impl Drop for OwnedTensor<'_> {
    fn drop(&mut self) {
        // SAFETY: `ptr` is a tensor thrum owns (allocated here or handed over by
        // TF_SessionRun), deleted once.
        unsafe { (self.api.delete_tensor)(self.ptr) }
    }
}
