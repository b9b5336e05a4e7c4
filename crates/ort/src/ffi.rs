//! The C API calls thrum makes itself (the `ort` crate wraps the rest). Every call returns an
//! `OrtStatusPtr` that goes through [`check`], which turns it into an error with ONNX Runtime's
//! message and releases it.

use std::ffi::{CStr, c_char, c_void};
use std::ptr::{self, NonNull};

use ort::AsPointer;
use ort::session::Session;
use ort::sys::{
    ONNXTensorElementDataType, OrtAllocator, OrtAllocatorType, OrtIoBinding, OrtMemType,
    OrtMemoryInfo, OrtRunOptions, OrtStatusPtr, OrtValue,
};
use ort::value::DynValue;
use thrum_core::{NativeCode, NativeError};

/// ONNX Runtime's code and message for a failed call; `Ok` for a null (success) status.
pub(crate) fn check(status: OrtStatusPtr) -> Result<(), NativeError> {
    let status = status.0;
    if status.is_null() {
        return Ok(());
    }
    let api = ort::api();
    // SAFETY: `status` is a non-null status returned by ONNX Runtime; GetErrorCode reads it, and
    // GetErrorMessage returns a NUL-terminated string owned by it, copied before the status is
    // released (once, here).
    unsafe {
        let code = (api.GetErrorCode)(status);
        let message = CStr::from_ptr((api.GetErrorMessage)(status)).to_string_lossy().into_owned();
        (api.ReleaseStatus)(status);
        Err(NativeError::with_code(native_code(code), message))
    }
}

/// ONNX Runtime's error code, named as in `onnxruntime_c_api.h`.
pub(crate) fn native_code(code: ort::sys::OrtErrorCode) -> NativeCode {
    use ort::sys::OrtErrorCode as C;
    let name = match code {
        C::ORT_OK => "ORT_OK",
        C::ORT_FAIL => "ORT_FAIL",
        C::ORT_INVALID_ARGUMENT => "ORT_INVALID_ARGUMENT",
        C::ORT_NO_SUCHFILE => "ORT_NO_SUCHFILE",
        C::ORT_NO_MODEL => "ORT_NO_MODEL",
        C::ORT_ENGINE_ERROR => "ORT_ENGINE_ERROR",
        C::ORT_RUNTIME_EXCEPTION => "ORT_RUNTIME_EXCEPTION",
        C::ORT_INVALID_PROTOBUF => "ORT_INVALID_PROTOBUF",
        C::ORT_MODEL_LOADED => "ORT_MODEL_LOADED",
        C::ORT_NOT_IMPLEMENTED => "ORT_NOT_IMPLEMENTED",
        C::ORT_INVALID_GRAPH => "ORT_INVALID_GRAPH",
        C::ORT_EP_FAIL => "ORT_EP_FAIL",
        C::ORT_MODEL_LOAD_CANCELED => "ORT_MODEL_LOAD_CANCELED",
        C::ORT_MODEL_REQUIRES_COMPILATION => "ORT_MODEL_REQUIRES_COMPILATION",
        C::ORT_NOT_FOUND => "ORT_NOT_FOUND",
        #[allow(unreachable_patterns)]
        _ => "ORT_UNKNOWN",
    };
    NativeCode { name, value: code as i64 }
}

/// Names of the execution providers the loaded library was built with
/// (`CPUExecutionProvider`…).
pub(crate) fn available_providers() -> Result<Vec<String>, NativeError> {
    let api = ort::api();
    let mut names: *mut *mut c_char = ptr::null_mut();
    let mut count: i32 = 0;
    // SAFETY: out-pointers to locals; ONNX Runtime fills them with an array it owns.
    check(unsafe { (api.GetAvailableProviders)(&mut names, &mut count) })?;
    if names.is_null() {
        return Ok(Vec::new());
    }
    let count = usize::try_from(count).unwrap_or(0);
    // SAFETY: `names` holds `count` NUL-terminated strings until ReleaseAvailableProviders.
    let list = unsafe {
        std::slice::from_raw_parts(names, count)
            .iter()
            .map(|&n| CStr::from_ptr(n).to_string_lossy().into_owned())
            .collect()
    };
    // SAFETY: releases exactly the array returned above, once.
    check(unsafe { (api.ReleaseAvailableProviders)(names, count as i32) })?;
    Ok(list)
}

/// An `OrtValue` this crate owns, released on drop.
pub(crate) struct OwnedValue(NonNull<OrtValue>);

impl OwnedValue {
    pub(crate) fn ptr(&self) -> *const OrtValue {
        self.0.as_ptr()
    }

    /// Hands the value to the `ort` crate's wrapper (for string tensors), which releases it.
    pub(crate) fn into_dyn(self, session: &Session) -> DynValue {
        let ptr = self.0;
        std::mem::forget(self);
        // SAFETY: `ptr` is a live value allocated by the session's allocator, owned by us until
        // now; `from_ptr` takes that ownership over (we forgot ours above).
        unsafe { DynValue::from_ptr(ptr, Some(session.allocator())) }
    }
}

impl Drop for OwnedValue {
    fn drop(&mut self) {
        // SAFETY: the value is live and owned by this guard; released once.
        unsafe { (ort::api().ReleaseValue)(self.0.as_ptr()) }
    }
}

/// CPU memory info for input tensors that wrap thrum's buffers, created once per model.
pub(crate) struct CpuMemory(NonNull<OrtMemoryInfo>);

// SAFETY: an OrtMemoryInfo is an immutable description once created; ONNX Runtime only reads it.
unsafe impl Send for CpuMemory {}
// SAFETY: as above.
unsafe impl Sync for CpuMemory {}

impl CpuMemory {
    pub(crate) fn new() -> Result<CpuMemory, NativeError> {
        let mut info: *mut OrtMemoryInfo = ptr::null_mut();
        // SAFETY: out-pointer to a local, filled on success.
        check(unsafe {
            (ort::api().CreateCpuMemoryInfo)(
                OrtAllocatorType::OrtArenaAllocator,
                OrtMemType::OrtMemTypeDefault,
                &mut info,
            )
        })?;
        NonNull::new(info)
            .map(CpuMemory)
            .ok_or_else(|| "ONNX Runtime returned no memory info".into())
    }
}

impl Drop for CpuMemory {
    fn drop(&mut self) {
        // SAFETY: created by CreateCpuMemoryInfo, released once.
        unsafe { (ort::api().ReleaseMemoryInfo)(self.0.as_ptr()) }
    }
}

/// A tensor value over `data` in place (no copy). The value must be dropped before `data`.
pub(crate) fn tensor_over<T: Copy>(
    memory: &CpuMemory,
    data: &[T],
    shape: &[i64],
    element: ONNXTensorElementDataType,
) -> Result<OwnedValue, NativeError> {
    let mut value: *mut OrtValue = ptr::null_mut();
    // SAFETY: `data` is valid for `size_of_val(data)` bytes and outlives the value (callers drop
    // the value first); ONNX Runtime reads inputs and never writes them, so the `*mut` the C
    // signature asks for is not used to mutate; `shape` is valid for its length.
    check(unsafe {
        (ort::api().CreateTensorWithDataAsOrtValue)(
            memory.0.as_ptr(),
            data.as_ptr().cast::<c_void>().cast_mut(),
            std::mem::size_of_val(data),
            shape.as_ptr(),
            shape.len(),
            element,
            &mut value,
        )
    })?;
    NonNull::new(value).map(OwnedValue).ok_or_else(|| "ONNX Runtime returned no tensor".into())
}

/// Element type, shape and data pointer of a tensor value.
pub(crate) struct TensorParts {
    pub(crate) element: ONNXTensorElementDataType,
    pub(crate) shape: Vec<usize>,
    pub(crate) count: usize,
    pub(crate) data: *const c_void,
}

/// Reads a tensor value's element type, shape and data.
pub(crate) fn tensor_parts(value: &OwnedValue) -> Result<TensorParts, NativeError> {
    let api = ort::api();
    let mut info = ptr::null_mut();
    // SAFETY: `value` is a live tensor value; `info` is released below on every path.
    check(unsafe { (api.GetTensorTypeAndShape)(value.ptr(), &mut info) })?;
    let read = || -> Result<(ONNXTensorElementDataType, Vec<i64>), NativeError> {
        let mut element = ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
        let mut rank = 0usize;
        // SAFETY: `info` is the live type-and-shape info obtained above; out-pointers to locals.
        check(unsafe { (api.GetTensorElementType)(info, &mut element) })?;
        // SAFETY: as above.
        check(unsafe { (api.GetDimensionsCount)(info, &mut rank) })?;
        let mut dims = vec![0i64; rank];
        // SAFETY: `dims` has room for `rank` values.
        check(unsafe { (api.GetDimensions)(info, dims.as_mut_ptr(), rank) })?;
        Ok((element, dims))
    };
    let result = read();
    // SAFETY: releases the info obtained above, once.
    unsafe { (api.ReleaseTensorTypeAndShapeInfo)(info) };
    let (element, dims) = result?;
    // A negative dimension (ONNX Runtime's "unknown") or an overflowing count is an error, not
    // a silent empty tensor: the count bounds the read below. The dtype only sizes the check;
    // strings are counted one byte each.
    let sizing = crate::convert::dtype_of(element).unwrap_or(thrum_core::DType::U8);
    let (shape, count) = thrum_core::kit::shape_from_i64(sizing, &dims)
        .map_err(|e| NativeError::message(e.to_string()))?;
    let mut data: *mut c_void = ptr::null_mut();
    // SAFETY: `value` is a live tensor; ONNX Runtime returns a pointer to its buffer, valid
    // while the value lives (we only read it).
    check(unsafe { (api.GetTensorMutableData)(value.ptr().cast_mut(), &mut data) })?;
    Ok(TensorParts { element, shape, count, data })
}

/// Options for every run of a model, created once (ONNX Runtime otherwise builds default
/// options on each call).
pub(crate) struct RunOptions(NonNull<OrtRunOptions>);

// SAFETY: ONNX Runtime only reads run options during `Run`; thrum never changes them after
// creation (no `RunOptionsSetTerminate`), so sharing them between concurrent runs is sound.
unsafe impl Send for RunOptions {}
// SAFETY: as above.
unsafe impl Sync for RunOptions {}

impl RunOptions {
    pub(crate) fn new() -> Result<RunOptions, NativeError> {
        let mut options: *mut OrtRunOptions = ptr::null_mut();
        // SAFETY: out-pointer to a local, filled on success.
        check(unsafe { (ort::api().CreateRunOptions)(&mut options) })?;
        NonNull::new(options)
            .map(RunOptions)
            .ok_or_else(|| "ONNX Runtime returned no run options".into())
    }
}

impl Drop for RunOptions {
    fn drop(&mut self) {
        // SAFETY: created by CreateRunOptions, released once.
        unsafe { (ort::api().ReleaseRunOptions)(self.0.as_ptr()) }
    }
}

/// ONNX Runtime's default CPU allocator: process-wide, owned by ONNX Runtime, never released.
fn default_allocator() -> Result<*mut OrtAllocator, NativeError> {
    let mut allocator: *mut OrtAllocator = ptr::null_mut();
    // SAFETY: out-pointer to a local; the allocator returned is owned by ONNX Runtime and lives
    // as long as the library.
    check(unsafe { (ort::api().GetAllocatorWithDefaultOptions)(&mut allocator) })?;
    if allocator.is_null() {
        return Err("ONNX Runtime returned no default allocator".into());
    }
    Ok(allocator)
}

/// A tensor value with its own buffer, allocated by ONNX Runtime's default CPU allocator
/// (uninitialised contents), and a pointer to that buffer, valid while the value lives.
pub(crate) fn allocate_tensor(
    shape: &[i64],
    element: ONNXTensorElementDataType,
) -> Result<(OwnedValue, *mut c_void), NativeError> {
    let allocator = default_allocator()?;
    let mut value: *mut OrtValue = ptr::null_mut();
    // SAFETY: `allocator` is ONNX Runtime's live default allocator; `shape` is valid for its
    // length; out-pointer to a local.
    check(unsafe {
        (ort::api().CreateTensorAsOrtValue)(
            allocator,
            shape.as_ptr(),
            shape.len(),
            element,
            &mut value,
        )
    })?;
    let value = NonNull::new(value)
        .map(OwnedValue)
        .ok_or_else(|| "ONNX Runtime returned no tensor".to_string())?;
    let mut data: *mut c_void = ptr::null_mut();
    // SAFETY: `value` is a live tensor we own; the pointer stays valid while it lives.
    check(unsafe { (ort::api().GetTensorMutableData)(value.ptr().cast_mut(), &mut data) })?;
    Ok((value, data))
}

/// An IoBinding on one session: inputs and outputs bound by name, kept across runs, so a run
/// skips the per-call name lookups and feed/fetch set-up of `Run`. It must be dropped before
/// its session.
pub(crate) struct IoBinding(NonNull<OrtIoBinding>);

// SAFETY: an IoBinding is not tied to the thread that created it; thrum keeps each one inside a
// per-thread predictor and touches it only through `&mut self`, so it is never used from two
// threads at once.
unsafe impl Send for IoBinding {}

impl IoBinding {
    pub(crate) fn new(session: &Session) -> Result<IoBinding, NativeError> {
        let mut binding: *mut OrtIoBinding = ptr::null_mut();
        // SAFETY: the session pointer is valid for `session`'s lifetime, which callers make
        // outlive the binding; out-pointer to a local.
        check(unsafe { (ort::api().CreateIoBinding)(session.ptr().cast_mut(), &mut binding) })?;
        NonNull::new(binding)
            .map(IoBinding)
            .ok_or_else(|| "ONNX Runtime returned no IoBinding".into())
    }

    /// Binds `value` to the input `name`; the binding holds its own reference to the value,
    /// but not to the buffer of a view, which must stay alive until the next run is over.
    pub(crate) fn bind_input(
        &mut self,
        name: *const c_char,
        value: *const OrtValue,
    ) -> Result<(), NativeError> {
        // SAFETY: the binding is live; `name` is a NUL-terminated string owned by the model and
        // `value` a live value (ONNX Runtime takes its own reference).
        check(unsafe { (ort::api().BindInput)(self.0.as_ptr(), name, value) })
    }

    /// Binds the output `name` to `value`, which the next runs write into (it must have the
    /// shape the output will have).
    pub(crate) fn bind_output(
        &mut self,
        name: *const c_char,
        value: &OwnedValue,
    ) -> Result<(), NativeError> {
        // SAFETY: as in `bind_input`; ONNX Runtime keeps its own reference to the value.
        check(unsafe { (ort::api().BindOutput)(self.0.as_ptr(), name, value.ptr()) })
    }

    /// Lets ONNX Runtime allocate the output `name` in CPU memory on each run.
    pub(crate) fn bind_output_to_cpu(
        &mut self,
        name: *const c_char,
        memory: &CpuMemory,
    ) -> Result<(), NativeError> {
        // SAFETY: the binding and the memory info are live; `name` as in `bind_input`.
        check(unsafe { (ort::api().BindOutputToDevice)(self.0.as_ptr(), name, memory.0.as_ptr()) })
    }

    /// Forgets every bound output.
    pub(crate) fn clear_outputs(&mut self) {
        // SAFETY: the binding is live.
        unsafe { (ort::api().ClearBoundOutputs)(self.0.as_ptr()) }
    }

    /// Runs `session` on the bound inputs into the bound outputs.
    pub(crate) fn run(
        &mut self,
        session: &Session,
        options: &RunOptions,
    ) -> Result<(), NativeError> {
        // SAFETY: the binding was created on this session (callers keep the pair together);
        // every bound input is live: owned buffers are held by the binding's owner and views by
        // the caller across this call.
        check(unsafe {
            (ort::api().RunWithBinding)(
                session.ptr().cast_mut(),
                options.0.as_ptr(),
                self.0.as_ptr(),
            )
        })
    }

    /// The values of the bound outputs after a run, in binding order.
    pub(crate) fn outputs(&self) -> Result<Vec<OwnedValue>, NativeError> {
        let allocator = default_allocator()?;
        let mut values: *mut *mut OrtValue = ptr::null_mut();
        let mut count = 0usize;
        // SAFETY: the binding is live; ONNX Runtime fills `values` with an array of `count`
        // new values, allocated by `allocator`, which we now own.
        check(unsafe {
            (ort::api().GetBoundOutputValues)(self.0.as_ptr(), allocator, &mut values, &mut count)
        })?;
        if values.is_null() {
            return Ok(Vec::new());
        }
        // SAFETY: `values` holds `count` value pointers; each is taken over once, then the array
        // itself is freed with the allocator that allocated it.
        let owned: Vec<Option<OwnedValue>> = unsafe {
            let list = std::slice::from_raw_parts(values, count)
                .iter()
                .map(|&v| NonNull::new(v).map(OwnedValue))
                .collect();
            if let Some(free) = (*allocator).Free {
                free(allocator, values.cast::<c_void>());
            }
            list
        };
        owned
            .into_iter()
            .map(|v| v.ok_or_else(|| NativeError::from("ONNX Runtime returned a null output")))
            .collect()
    }
}

impl Drop for IoBinding {
    fn drop(&mut self) {
        // SAFETY: created by CreateIoBinding, released once (before its session: see the type).
        unsafe { (ort::api().ReleaseIoBinding)(self.0.as_ptr()) }
    }
}

/// Runs `session` on `inputs`, which may happen from several threads at once: ONNX Runtime's
/// `Run` is thread-safe on one session (the `ort` crate's `run` takes `&mut self` as a
/// precaution for some accelerator providers; thrum offers concurrent runs on the CPU provider
/// only, and tests them).
pub(crate) fn run(
    session: &Session,
    options: &RunOptions,
    input_names: &[*const c_char],
    inputs: &[*const OrtValue],
    output_names: &[*const c_char],
) -> Result<Vec<OwnedValue>, NativeError> {
    let api = ort::api();
    // `Run` reads as many names as values: the two must agree here, not only in the caller.
    if input_names.len() != inputs.len() {
        return Err(NativeError::from("as many input names as input values are needed"));
    }
    let mut outputs: Vec<*mut OrtValue> = vec![ptr::null_mut(); output_names.len()];
    // SAFETY: the session pointer is valid for `session`'s lifetime; the name arrays hold valid
    // NUL-terminated strings owned by the model; `inputs` point to live values the caller keeps
    // alive across the call; `outputs` has room for `output_names.len()` pointers, which ONNX
    // Runtime fills with values the caller now owns.
    check(unsafe {
        (api.Run)(
            session.ptr().cast_mut(),
            options.0.as_ptr(),
            input_names.as_ptr(),
            inputs.as_ptr(),
            inputs.len(),
            output_names.as_ptr(),
            output_names.len(),
            outputs.as_mut_ptr(),
        )
    })?;
    // Wrap every pointer first, so that all are released even if one is null.
    let owned: Vec<Option<OwnedValue>> =
        outputs.into_iter().map(|p| NonNull::new(p).map(OwnedValue)).collect();
    owned
        .into_iter()
        .map(|v| v.ok_or_else(|| NativeError::from("ONNX Runtime returned a null output")))
        .collect()
}
