//! `zip2zip._core`: the Python face of `zip2zip-core`.
//!
//! This crate only converts arguments, releases the GIL around real work and maps errors; the
//! codec lives in `zip2zip-core`. The Python package wraps these functions to validate and
//! normalise arguments (`python/zip2zip/codec.py`).

use std::borrow::Cow;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyTuple};
use zip2zip_core::{step_batch, CodeSink, CodebookConfig, CodecError, CodecState, Encoding};

create_exception!(
    zip2zip._core,
    Zip2ZipError,
    PyValueError,
    "Base class of every zip2zip codec error (a ValueError)."
);
create_exception!(
    zip2zip._core,
    InvalidIdError,
    Zip2ZipError,
    "A base id is negative or not below vocab_size."
);
create_exception!(
    zip2zip._core,
    InvalidCodeError,
    Zip2ZipError,
    "A code is out of range or not a hypertoken the state knows."
);
create_exception!(
    zip2zip._core,
    ConfigError,
    Zip2ZipError,
    "A codebook configuration that the codec cannot honour."
);
create_exception!(
    zip2zip._core,
    StateError,
    Zip2ZipError,
    "Serialized codec state that is truncated or inconsistent, or a CodecState in use by another thread."
);

create_exception!(
    zip2zip._core,
    TokenizerError,
    Zip2ZipError,
    "The base tokenizer failed, or its JSON did not load."
);

mod text;

pub(crate) type Int32Array<'py> = Bound<'py, PyArray1<i32>>;
pub(crate) type Int32Table<'py> = Bound<'py, PyArray2<i32>>;

/// Below this many ids a call keeps the GIL: releasing it costs more than the work.
pub(crate) const DETACH_THRESHOLD: usize = 4096;

/// Runs `work` with the GIL released when `size` reaches `threshold`, else holding it: for
/// small inputs releasing and re-taking the GIL costs more than the work.
pub(crate) fn detach_if_large<T, F>(py: Python<'_>, size: usize, threshold: usize, work: F) -> T
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    if size >= threshold {
        py.detach(work)
    } else {
        work()
    }
}

pub(crate) fn to_py_err(error: CodecError) -> PyErr {
    let message = error.to_string();
    match error.root() {
        CodecError::IdOutOfRange { .. } => InvalidIdError::new_err(message),
        CodecError::CodeOutOfRange { .. } | CodecError::UnknownCode { .. } => {
            InvalidCodeError::new_err(message)
        }
        CodecError::InvalidConfig(_) => ConfigError::new_err(message),
        CodecError::Tokenizer(_) => TokenizerError::new_err(message),
        CodecError::InvalidState(_) | CodecError::InBatch { .. } => StateError::new_err(message),
    }
}

/// The ids of a one-dimensional int32 or int64 NumPy array (what the Python layer passes),
/// copied out of the array while the GIL is held. Work then reads the copy, with or without the
/// GIL: another thread that writes into the caller's array meanwhile cannot change ids after
/// they were validated (that made a validated stream invalid halfway through: a panic, or a
/// codebook holding the new values).
pub(crate) enum IdArray {
    I32(Vec<i32>),
    I64(Vec<i64>),
}

/// A borrowed view of an [`IdArray`], usable without the GIL.
#[derive(Clone, Copy)]
pub(crate) enum IdSlice<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl IdArray {
    /// Copies an int32 or int64 array as it is; converts anything else (lists, tensors, other
    /// dtypes, strided views) with `zip2zip._ids.as_id_array`, which also validates it.
    pub(crate) fn extract(object: &Bound<'_, PyAny>, what: &str) -> PyResult<Self> {
        if let Some(array) = Self::extract_exact(object) {
            return Ok(array);
        }
        let converted = object
            .py()
            .import("zip2zip._ids")?
            .getattr("as_id_array")?
            .call1((object, what))?;
        Self::extract_exact(&converted).ok_or_else(|| {
            PyTypeError::new_err(format!(
                "{what} could not be converted to an int32 or int64 array"
            ))
        })
    }

    fn extract_exact(object: &Bound<'_, PyAny>) -> Option<Self> {
        let contiguous = |array: &Bound<'_, PyAny>| {
            array
                .cast::<numpy::PyUntypedArray>()
                .is_ok_and(|a| a.is_c_contiguous())
        };
        if !contiguous(object) {
            return None;
        }
        // Only C-contiguous arrays come here, so as_slice succeeds.
        if let Ok(array) = object.extract::<PyReadonlyArray1<'_, i64>>() {
            return array
                .as_slice()
                .ok()
                .map(|values| Self::I64(values.to_vec()));
        }
        if let Ok(array) = object.extract::<PyReadonlyArray1<'_, i32>>() {
            return array
                .as_slice()
                .ok()
                .map(|values| Self::I32(values.to_vec()));
        }
        None
    }

    pub(crate) fn slice(&self) -> PyResult<IdSlice<'_>> {
        Ok(match self {
            Self::I32(values) => IdSlice::I32(values),
            Self::I64(values) => IdSlice::I64(values),
        })
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::I32(array) => array.len(),
            Self::I64(array) => array.len(),
        }
    }
}

pub(crate) fn int32_array(py: Python<'_>, values: Vec<u32>) -> Bound<'_, PyArray1<i32>> {
    // Every code and id is below 2^31 (the config guarantees it), so the bits are the same.
    bytemuck::cast_vec::<u32, i32>(values).into_pyarray(py)
}

pub(crate) fn phrase_table(
    py: Python<'_>,
    phrases: Vec<u32>,
    width: u32,
) -> PyResult<Bound<'_, PyArray2<i32>>> {
    let rows = phrases.len() / width as usize;
    int32_array(py, phrases).reshape([rows, width as usize])
}

/// Fixed parameters of a codebook: `vocab_size` (V), `max_codebook_size` (K),
/// `max_subtokens` (S) and the disabled ids that never join a hypertoken.
#[pyclass(name = "CodebookConfig", module = "zip2zip._core", frozen, eq, hash)]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct PyCodebookConfig {
    pub(crate) inner: Arc<CodebookConfig>,
}

fn non_negative(name: &str, value: i64) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| {
        ConfigError::new_err(format!(
            "invalid codebook config: {name} must be non-negative, got {value}"
        ))
    })
}

/// A config number: an int (not a bool) that fits 64 bits and is not negative; an int beyond
/// 64 bits is a `ConfigError` like any other out-of-range size, anything else a `TypeError`.
fn config_int(name: &str, value: &Bound<'_, PyAny>) -> PyResult<u64> {
    let not_an_integer = || -> PyResult<PyErr> {
        Ok(PyTypeError::new_err(format!(
            "invalid codebook config: {name} must be an integer, got {}",
            value.repr()?
        )))
    };
    if value.is_instance_of::<PyBool>() {
        return Err(not_an_integer()?);
    }
    match value.extract::<i64>() {
        Ok(number) => non_negative(name, number),
        // An integer (a Python int, a NumPy integer) that does not fit 64 bits.
        Err(_) if value.hasattr("__index__")? => Err(ConfigError::new_err(format!(
            "invalid codebook config: {name} is out of range, got {}",
            value.repr()?
        ))),
        Err(_) => Err(not_an_integer()?),
    }
}

#[pymethods]
impl PyCodebookConfig {
    #[new]
    #[pyo3(
        signature = (vocab_size, max_codebook_size = None, max_subtokens = None, disabled_ids = None),
        text_signature = "(vocab_size, max_codebook_size=2048, max_subtokens=4, disabled_ids=None)"
    )]
    fn new(
        vocab_size: &Bound<'_, PyAny>,
        max_codebook_size: Option<&Bound<'_, PyAny>>,
        max_subtokens: Option<&Bound<'_, PyAny>>,
        disabled_ids: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let or_default = |name: &str, value: Option<&Bound<'_, PyAny>>, default: u64| match value {
            Some(value) => config_int(name, value),
            None => Ok(default),
        };
        let mut disabled = Vec::new();
        if let Some(ids) = disabled_ids {
            for item in ids.try_iter()? {
                disabled.push(config_int("a disabled id", &item?)?);
            }
        }
        let config = CodebookConfig::new(
            config_int("vocab_size", vocab_size)?,
            or_default("max_codebook_size", max_codebook_size, 2048)?,
            or_default("max_subtokens", max_subtokens, 4)?,
            disabled,
        )
        .map_err(to_py_err)?;
        Ok(Self {
            inner: Arc::new(config),
        })
    }

    /// V: the number of base ids; hypertoken ids start here.
    #[getter]
    fn vocab_size(&self) -> u32 {
        self.inner.vocab_size()
    }

    /// K: the most entries a codebook may hold.
    #[getter]
    fn max_codebook_size(&self) -> u32 {
        self.inner.max_codebook_size()
    }

    /// S: the longest phrase, in base ids, that one hypertoken may stand for.
    #[getter]
    fn max_subtokens(&self) -> u32 {
        self.inner.max_subtokens()
    }

    /// The disabled base ids, sorted, without repeats.
    #[getter]
    fn disabled_ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.disabled_ids())
    }

    fn __repr__(&self) -> String {
        let ids = self.inner.disabled_ids();
        let shown: Vec<String> = ids.iter().take(8).map(u32::to_string).collect();
        let more = match ids.len() {
            1 => ",".to_string(),
            0..=8 => String::new(),
            n => format!(", ... ({n} in all)"),
        };
        format!(
            "CodebookConfig(vocab_size={}, max_codebook_size={}, max_subtokens={}, disabled_ids=({}{}))",
            self.inner.vocab_size(),
            self.inner.max_codebook_size(),
            self.inner.max_subtokens(),
            shown.join(", "),
            more
        )
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let py = slf.py();
        let inner = &slf.get().inner;
        let args = (
            inner.vocab_size(),
            inner.max_codebook_size(),
            inner.max_subtokens(),
            PyTuple::new(py, inner.disabled_ids())?,
        );
        Ok((slf.get_type().into_any(), args.into_pyobject(py)?))
    }
}

/// Streaming codebook state: encodes base ids and tracks code streams with one LZW machine.
///
/// The state sits behind a read-write lock instead of PyO3's borrow flag: a call on a large
/// input releases the GIL while it holds the state, and another thread's call on the same state
/// then gets a `StateError` that says so (PyO3's own flag would raise a bare `RuntimeError:
/// Already borrowed`). Reads (`phrase`, `decode` with a state, the getters) may overlap.
#[pyclass(name = "CodecState", module = "zip2zip._core", frozen, eq)]
pub(crate) struct PyCodecState {
    inner: RwLock<CodecState>,
}

const IN_USE: &str =
    "this CodecState is in use by another thread (a call on a large input releases \
the GIL while it holds the state); give each thread its own copy (state.copy())";

fn in_use<T>(error: TryLockError<T>) -> PyErr {
    match error {
        TryLockError::WouldBlock => StateError::new_err(IN_USE),
        // Calls that write the state return errors instead of panicking; a poisoned lock would
        // mean a bug, and the state may be half-written.
        TryLockError::Poisoned(_) => {
            StateError::new_err("a call on this CodecState panicked while writing it, so it may be half-written: make a new one")
        }
    }
}

impl PartialEq for PyCodecState {
    fn eq(&self, other: &Self) -> bool {
        if std::ptr::eq(self, other) {
            return true;
        }
        match (self.read(), other.read()) {
            (Ok(a), Ok(b)) => *a == *b,
            _ => false,
        }
    }
}

impl PyCodecState {
    pub(crate) fn from_state(state: CodecState) -> Self {
        Self {
            inner: RwLock::new(state),
        }
    }

    /// The state for reading; `StateError` while another thread writes it.
    pub(crate) fn read(&self) -> PyResult<RwLockReadGuard<'_, CodecState>> {
        self.inner.try_read().map_err(in_use)
    }

    /// The state for writing; `StateError` while another thread reads or writes it.
    fn write(&self) -> PyResult<RwLockWriteGuard<'_, CodecState>> {
        self.inner.try_write().map_err(in_use)
    }
}

#[pymethods]
impl PyCodecState {
    #[new]
    fn new(config: PyRef<'_, PyCodebookConfig>) -> Self {
        Self::from_state(CodecState::new(Arc::clone(&config.inner)))
    }

    #[getter]
    fn config(&self) -> PyResult<PyCodebookConfig> {
        Ok(PyCodebookConfig {
            inner: Arc::clone(self.read()?.config()),
        })
    }

    #[getter]
    fn installed(&self) -> PyResult<u32> {
        Ok(self.read()?.installed())
    }

    #[getter]
    fn next_id(&self) -> PyResult<u32> {
        Ok(self.read()?.next_id())
    }

    #[getter]
    fn is_full(&self) -> PyResult<bool> {
        Ok(self.read()?.is_full())
    }

    #[getter]
    fn pending_code(&self) -> PyResult<Option<u32>> {
        Ok(self.read()?.pending_code())
    }

    #[getter]
    fn pending<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<i32>>> {
        Ok(int32_array(py, self.read()?.pending_phrase()))
    }

    fn feed_ids<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<i32>>> {
        let ids = IdArray::extract(ids, "ids")?;
        let slice = ids.slice()?;
        let mut guard = self.write()?;
        let inner = &mut *guard;
        let work = move || {
            let mut codes = Vec::new();
            let sink = CodeSink {
                codes: &mut codes,
                installed: None,
            };
            match slice {
                IdSlice::I32(values) => inner.feed_ids(values, sink),
                IdSlice::I64(values) => inner.feed_ids(values, sink),
            }
            .map(|()| codes)
        };
        let codes = detach_if_large(py, ids.len(), DETACH_THRESHOLD, work);
        Ok(int32_array(py, codes.map_err(to_py_err)?))
    }

    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<i32>>> {
        let mut codes = Vec::new();
        self.write()?.finish(CodeSink {
            codes: &mut codes,
            installed: None,
        });
        Ok(int32_array(py, codes))
    }

    fn feed_codes<'py>(
        &self,
        py: Python<'py>,
        codes: &Bound<'py, PyAny>,
    ) -> PyResult<(Int32Array<'py>, Int32Array<'py>)> {
        let codes = IdArray::extract(codes, "codes")?;
        let slice = codes.slice()?;
        let mut guard = self.write()?;
        let first_new = guard.next_id();
        let inner = &mut *guard;
        let work = move || {
            let mut ids = Vec::new();
            match slice {
                IdSlice::I32(values) => inner.feed_codes(values, &mut ids),
                IdSlice::I64(values) => inner.feed_codes(values, &mut ids),
            }
            .map(|added| (ids, added))
        };
        let result = detach_if_large(py, codes.len(), DETACH_THRESHOLD, work);
        let (ids, added) = result.map_err(to_py_err)?;
        let new_ids: Vec<u32> = (first_new..first_new + added).collect();
        Ok((int32_array(py, ids), int32_array(py, new_ids)))
    }

    fn phrase<'py>(&self, py: Python<'py>, code: i64) -> PyResult<Bound<'py, PyArray1<i32>>> {
        Ok(int32_array(
            py,
            self.read()?.phrase(code).map_err(to_py_err)?,
        ))
    }

    #[pyo3(signature = (start = 0, end = None, pad = 0))]
    fn phrases<'py>(
        &self,
        py: Python<'py>,
        start: u32,
        end: Option<u32>,
        pad: i32,
    ) -> PyResult<(Int32Table<'py>, Int32Array<'py>)> {
        let end = end.unwrap_or(u32::MAX);
        let state = self.read()?;
        let (phrases, lengths) = state.phrases(start, end, pad as u32);
        Ok((
            phrase_table(py, phrases, state.config().max_subtokens())?,
            int32_array(py, lengths),
        ))
    }

    fn reset(&self) -> PyResult<()> {
        self.write()?.reset();
        Ok(())
    }

    fn copy(&self) -> PyResult<Self> {
        Ok(Self::from_state(self.read()?.clone()))
    }

    fn __copy__(&self) -> PyResult<Self> {
        self.copy()
    }

    fn __deepcopy__(&self, _memo: &Bound<'_, PyAny>) -> PyResult<Self> {
        self.copy()
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.read()?.to_bytes()))
    }

    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Ok(Self::from_state(
            CodecState::from_bytes(data).map_err(to_py_err)?,
        ))
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let py = slf.py();
        let from_bytes = slf.get_type().getattr("from_bytes")?;
        let data = slf.get().to_bytes(py)?;
        Ok((from_bytes, PyTuple::new(py, [data])?))
    }

    fn __repr__(&self) -> PyResult<String> {
        let state = self.read()?;
        let config = state.config();
        Ok(format!(
            "CodecState(vocab_size={}, max_codebook_size={}, max_subtokens={}, installed={}, pending={:?})",
            config.vocab_size(),
            config.max_codebook_size(),
            config.max_subtokens(),
            state.installed(),
            state.pending_phrase()
        ))
    }
}

pub(crate) type EncodingArrays<'py> = (
    Int32Array<'py>,
    Int32Array<'py>,
    Int32Table<'py>,
    Int32Array<'py>,
);

/// Codec states of a batch of generated sequences, stepped together: one call reads one code
/// into every row and returns what the decoding step needs.
#[pyclass(name = "CodecBatch", module = "zip2zip._core")]
pub(crate) struct PyCodecBatch {
    states: Vec<CodecState>,
}

/// Arrays one [`PyCodecBatch::step`] returns: phrase lengths, installed counts, and the created
/// entries' rows, slots, phrases and lengths.
type StepArrays<'py> = (
    Int32Array<'py>,
    Int32Array<'py>,
    Int32Array<'py>,
    Int32Array<'py>,
    Int32Table<'py>,
    Int32Array<'py>,
);

#[pymethods]
impl PyCodecBatch {
    #[new]
    fn new(states: Vec<PyRef<'_, PyCodecState>>) -> PyResult<Self> {
        let states = states
            .iter()
            .map(|s| Ok(s.read()?.clone()))
            .collect::<PyResult<Vec<CodecState>>>()?;
        if let Some(first) = states.first() {
            if states.iter().any(|s| s.config() != first.config()) {
                return Err(ConfigError::new_err(
                    "every state of a CodecBatch must have the same codebook config",
                ));
            }
        }
        Ok(Self { states })
    }

    fn __len__(&self) -> usize {
        self.states.len()
    }

    /// A copy of row `index`'s state.
    fn state(&self, index: usize) -> PyResult<PyCodecState> {
        match self.states.get(index) {
            Some(state) => Ok(PyCodecState::from_state(state.clone())),
            None => Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "row {index} is out of range for a batch of {}",
                self.states.len()
            ))),
        }
    }

    #[getter]
    fn installed<'py>(&self, py: Python<'py>) -> Int32Array<'py> {
        int32_array(py, self.states.iter().map(CodecState::installed).collect())
    }

    fn step<'py>(
        &mut self,
        py: Python<'py>,
        codes: &Bound<'py, PyAny>,
    ) -> PyResult<StepArrays<'py>> {
        let codes = IdArray::extract(codes, "codes")?;
        if codes.len() != self.states.len() {
            return Err(PyValueError::new_err(format!(
                "step needs one code per row: got {} codes for {} rows",
                codes.len(),
                self.states.len()
            )));
        }
        let step = match codes.slice()? {
            IdSlice::I32(values) => step_batch(&mut self.states, values),
            IdSlice::I64(values) => step_batch(&mut self.states, values),
        }
        .map_err(to_py_err)?;
        let width = self
            .states
            .first()
            .map_or(1, |s| s.config().max_subtokens());
        Ok((
            int32_array(py, step.code_lengths),
            int32_array(py, step.installed),
            int32_array(py, step.created_rows),
            int32_array(py, step.created_slots),
            phrase_table(py, step.phrases, width)?,
            int32_array(py, step.lengths),
        ))
    }

    fn __repr__(&self) -> String {
        format!("CodecBatch(rows={})", self.states.len())
    }
}

pub(crate) fn encoding_arrays<'py>(
    py: Python<'py>,
    encoding: Encoding,
    width: u32,
) -> PyResult<EncodingArrays<'py>> {
    Ok((
        int32_array(py, encoding.codes),
        int32_array(py, encoding.installed),
        phrase_table(py, encoding.phrases, width)?,
        int32_array(py, encoding.lengths),
    ))
}

/// Encodes one sequence from an empty state: `(codes, installed, phrases, lengths)`.
#[pyfunction]
fn encode_ids<'py>(
    py: Python<'py>,
    config: PyRef<'py, PyCodebookConfig>,
    ids: &Bound<'py, PyAny>,
) -> PyResult<EncodingArrays<'py>> {
    let ids = IdArray::extract(ids, "ids")?;
    let slice = ids.slice()?;
    let config = Arc::clone(&config.inner);
    let width = config.max_subtokens();
    let work = || match slice {
        IdSlice::I32(values) => zip2zip_core::encode_ids(&config, values),
        IdSlice::I64(values) => zip2zip_core::encode_ids(&config, values),
    };
    let encoding = detach_if_large(py, ids.len(), DETACH_THRESHOLD, work);
    encoding_arrays(py, encoding.map_err(to_py_err)?, width)
}

/// Decodes one code stream from an empty state to base ids.
#[pyfunction]
fn decode_ids<'py>(
    py: Python<'py>,
    config: PyRef<'py, PyCodebookConfig>,
    codes: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<i32>>> {
    let codes = IdArray::extract(codes, "codes")?;
    let slice = codes.slice()?;
    let config = Arc::clone(&config.inner);
    let work = || match slice {
        IdSlice::I32(values) => zip2zip_core::decode_ids(&config, values),
        IdSlice::I64(values) => zip2zip_core::decode_ids(&config, values),
    };
    let ids = detach_if_large(py, codes.len(), DETACH_THRESHOLD, work);
    Ok(int32_array(py, ids.map_err(to_py_err)?))
}

/// A batch of id sequences as one element type: int32 when all are, else int64 (int32 ones are
/// widened, a copy that only mixed batches pay).
pub(crate) enum BatchSlices<'a> {
    I32(Vec<&'a [i32]>),
    I64(Vec<Cow<'a, [i64]>>),
}

pub(crate) fn batch_slices(arrays: &[IdArray]) -> PyResult<BatchSlices<'_>> {
    let slices = arrays
        .iter()
        .map(IdArray::slice)
        .collect::<PyResult<Vec<_>>>()?;
    let narrow: Option<Vec<&[i32]>> = slices
        .iter()
        .map(|s| {
            if let IdSlice::I32(v) = s {
                Some(*v)
            } else {
                None
            }
        })
        .collect();
    Ok(match narrow {
        Some(narrow) => BatchSlices::I32(narrow),
        None => BatchSlices::I64(
            slices
                .into_iter()
                .map(|s| match s {
                    IdSlice::I64(v) => Cow::Borrowed(v),
                    IdSlice::I32(v) => Cow::Owned(v.iter().map(|&x| i64::from(x)).collect()),
                })
                .collect(),
        ),
    })
}

pub(crate) fn extract_batch<'py>(
    sequences: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<Vec<IdArray>> {
    sequences
        .try_iter()?
        .map(|item| IdArray::extract(&item?, what))
        .collect()
}

/// Encodes many sequences in parallel with the GIL released.
#[pyfunction]
fn encode_batch<'py>(
    py: Python<'py>,
    config: PyRef<'py, PyCodebookConfig>,
    sequences: &Bound<'py, PyAny>,
) -> PyResult<Vec<EncodingArrays<'py>>> {
    let arrays = extract_batch(sequences, "ids")?;
    let slices = batch_slices(&arrays)?;
    let config = Arc::clone(&config.inner);
    let width = config.max_subtokens();
    let encodings = py
        .detach(|| match &slices {
            BatchSlices::I32(values) => zip2zip_core::encode_batch(&config, values),
            BatchSlices::I64(values) => zip2zip_core::encode_batch(&config, values),
        })
        .map_err(to_py_err)?;
    encodings
        .into_iter()
        .map(|encoding| encoding_arrays(py, encoding, width))
        .collect()
}

/// Decodes many code streams in parallel with the GIL released.
#[pyfunction]
fn decode_batch<'py>(
    py: Python<'py>,
    config: PyRef<'py, PyCodebookConfig>,
    sequences: &Bound<'py, PyAny>,
) -> PyResult<Vec<Bound<'py, PyArray1<i32>>>> {
    let arrays = extract_batch(sequences, "codes")?;
    let slices = batch_slices(&arrays)?;
    let config = Arc::clone(&config.inner);
    let decoded = py
        .detach(|| match &slices {
            BatchSlices::I32(values) => zip2zip_core::decode_batch(&config, values),
            BatchSlices::I64(values) => zip2zip_core::decode_batch(&config, values),
        })
        .map_err(to_py_err)?;
    Ok(decoded
        .into_iter()
        .map(|ids| int32_array(py, ids))
        .collect())
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("Zip2ZipError", py.get_type::<Zip2ZipError>())?;
    m.add("InvalidIdError", py.get_type::<InvalidIdError>())?;
    m.add("InvalidCodeError", py.get_type::<InvalidCodeError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("StateError", py.get_type::<StateError>())?;
    m.add("TokenizerError", py.get_type::<TokenizerError>())?;
    m.add_class::<text::PyHyperTokenizer>()?;
    m.add_class::<text::PyTextStream>()?;
    m.add_class::<PyCodebookConfig>()?;
    m.add_class::<PyCodecState>()?;
    m.add_class::<PyCodecBatch>()?;
    m.add_function(wrap_pyfunction!(encode_ids, m)?)?;
    m.add_function(wrap_pyfunction!(decode_ids, m)?)?;
    m.add_function(wrap_pyfunction!(encode_batch, m)?)?;
    m.add_function(wrap_pyfunction!(decode_batch, m)?)?;
    Ok(())
}
