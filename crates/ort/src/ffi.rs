//! The C API calls thrum makes itself (the `ort` crate wraps the rest). Every call returns an
//! `OrtStatusPtr` that goes through [`check`], which turns it into an error with ONNX Runtime's
//! message and releases it.

use std::ffi::{CStr, c_char, c_void};
use std::ptr::{self, NonNull};

use ort::AsPointer;
use ort::session::Session;
use ort::sys::{
    ONNXTensorElementDataType, OrtAllocatorType, OrtMemType, OrtMemoryInfo, OrtStatusPtr, OrtValue,
};
use ort::value::DynValue;

/// ONNX Runtime's message for a failed call; `Ok` for a null (success) status.
pub(crate) fn check(status: OrtStatusPtr) -> Result<(), String> {
    let status = status.0;
    if status.is_null() {
        return Ok(());
    }
    let api = ort::api();
    // SAFETY: `status` is a non-null status returned by ONNX Runtime; GetErrorMessage returns a
    // NUL-terminated string owned by it, copied before the status is released (once, here).
    unsafe {
        let message = CStr::from_ptr((api.GetErrorMessage)(status)).to_string_lossy().into_owned();
        (api.ReleaseStatus)(status);
        Err(message)
    }
}

/// Names of the execution providers the loaded library was built with
/// (`CPUExecutionProvider`…).
pub(crate) fn available_providers() -> Result<Vec<String>, String> {
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
    pub(crate) fn new() -> Result<CpuMemory, String> {
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
) -> Result<OwnedValue, String> {
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
pub(crate) fn tensor_parts(value: &OwnedValue) -> Result<TensorParts, String> {
    let api = ort::api();
    let mut info = ptr::null_mut();
    // SAFETY: `value` is a live tensor value; `info` is released below on every path.
    check(unsafe { (api.GetTensorTypeAndShape)(value.ptr(), &mut info) })?;
    let read = || -> Result<(ONNXTensorElementDataType, Vec<i64>), String> {
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
    let shape: Vec<usize> = dims.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
    let count = shape.iter().product();
    let mut data: *mut c_void = ptr::null_mut();
    // SAFETY: `value` is a live tensor; ONNX Runtime returns a pointer to its buffer, valid
    // while the value lives (we only read it).
    check(unsafe { (api.GetTensorMutableData)(value.ptr().cast_mut(), &mut data) })?;
    Ok(TensorParts { element, shape, count, data })
}

/// Runs `session` on `inputs`, which may happen from several threads at once: ONNX Runtime's
/// `Run` is thread-safe on one session (the `ort` crate's `run` takes `&mut self` as a
/// precaution for some accelerator providers; thrum offers concurrent runs on the CPU provider
/// only, and tests them).
pub(crate) fn run(
    session: &Session,
    input_names: &[*const c_char],
    inputs: &[*const OrtValue],
    output_names: &[*const c_char],
) -> Result<Vec<OwnedValue>, String> {
    let api = ort::api();
    let mut outputs: Vec<*mut OrtValue> = vec![ptr::null_mut(); output_names.len()];
    // SAFETY: the session pointer is valid for `session`'s lifetime; the name arrays hold valid
    // NUL-terminated strings owned by the model; `inputs` point to live values the caller keeps
    // alive across the call; `outputs` has room for `output_names.len()` pointers, which ONNX
    // Runtime fills with values the caller now owns.
    check(unsafe {
        (api.Run)(
            session.ptr().cast_mut(),
            ptr::null(),
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
        .map(|v| v.ok_or_else(|| "ONNX Runtime returned a null output".to_string()))
        .collect()
}
