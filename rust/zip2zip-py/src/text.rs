//! Bindings of the text layer: `HyperTokenizer` and `TextStream`.

use std::sync::Arc;

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::PyTuple;
use zip2zip_core::{HyperTokenizer, TextEncoding, TextStream};

use crate::{
    batch_slices, detach_if_large, encoding_arrays, extract_batch, int32_array, to_py_err,
    BatchSlices, EncodingArrays, IdArray, IdSlice, PyCodebookConfig, PyCodecState,
    DETACH_THRESHOLD,
};

/// Texts longer than this many bytes are tokenized with the GIL released.
const DETACH_TEXT_BYTES: usize = 16 * 1024;

type TextArrays<'py> = (Bound<'py, PyArray1<i32>>, EncodingArrays<'py>);

fn text_arrays<'py>(
    py: Python<'py>,
    encoding: TextEncoding,
    width: u32,
) -> PyResult<TextArrays<'py>> {
    Ok((
        int32_array(py, encoding.ids),
        encoding_arrays(py, encoding.encoding, width)?,
    ))
}

/// A base tokenizer (from its `tokenizer.json`) and a codebook config: text to codes and back.
#[pyclass(name = "HyperTokenizer", module = "zip2zip._core", frozen)]
pub(crate) struct PyHyperTokenizer {
    inner: Arc<HyperTokenizer>,
    json: String,
}

#[pymethods]
impl PyHyperTokenizer {
    #[new]
    fn new(tokenizer_json: String, config: PyRef<'_, PyCodebookConfig>) -> PyResult<Self> {
        let inner = HyperTokenizer::from_json(&tokenizer_json, Arc::clone(&config.inner))
            .map_err(to_py_err)?;
        Ok(Self {
            inner: Arc::new(inner),
            json: tokenizer_json,
        })
    }

    #[getter]
    fn config(&self) -> PyCodebookConfig {
        PyCodebookConfig {
            inner: Arc::clone(self.inner.config()),
        }
    }

    /// The base tokenizer's JSON, as given.
    #[getter]
    fn tokenizer_json(&self) -> &str {
        &self.json
    }

    #[pyo3(signature = (text, add_special_tokens = true))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        text: PyBackedStr,
        add_special_tokens: bool,
    ) -> PyResult<TextArrays<'py>> {
        let work = || self.inner.encode(&text, add_special_tokens);
        let encoding = detach_if_large(py, text.len(), DETACH_TEXT_BYTES, work);
        text_arrays(
            py,
            encoding.map_err(to_py_err)?,
            self.inner.config().max_subtokens(),
        )
    }

    #[pyo3(signature = (texts, add_special_tokens = true))]
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<PyBackedStr>,
        add_special_tokens: bool,
    ) -> PyResult<Vec<TextArrays<'py>>> {
        let encodings = py
            .detach(|| self.inner.encode_batch(&texts, add_special_tokens))
            .map_err(to_py_err)?;
        let width = self.inner.config().max_subtokens();
        encodings
            .into_iter()
            .map(|encoding| text_arrays(py, encoding, width))
            .collect()
    }

    #[pyo3(signature = (ids, skip_special_tokens = false))]
    fn decode_base(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        skip_special_tokens: bool,
    ) -> PyResult<String> {
        let ids = IdArray::extract(ids, "ids")?;
        let slice = ids.slice()?;
        let work = || match slice {
            IdSlice::I32(values) => self.inner.decode_base(values, skip_special_tokens),
            IdSlice::I64(values) => self.inner.decode_base(values, skip_special_tokens),
        };
        let text = detach_if_large(py, ids.len(), DETACH_THRESHOLD, work);
        text.map_err(to_py_err)
    }

    #[pyo3(signature = (codes, state = None, skip_special_tokens = false))]
    fn decode(
        &self,
        py: Python<'_>,
        codes: &Bound<'_, PyAny>,
        state: Option<PyRef<'_, PyCodecState>>,
        skip_special_tokens: bool,
    ) -> PyResult<String> {
        let codes = IdArray::extract(codes, "codes")?;
        let slice = codes.slice()?;
        let guard = state.as_ref().map(|state| state.read()).transpose()?;
        let state = guard.as_deref();
        let work = || match slice {
            IdSlice::I32(values) => self.inner.decode(values, state, skip_special_tokens),
            IdSlice::I64(values) => self.inner.decode(values, state, skip_special_tokens),
        };
        let text = detach_if_large(py, codes.len(), DETACH_THRESHOLD, work);
        text.map_err(to_py_err)
    }

    #[pyo3(signature = (sequences, skip_special_tokens = false))]
    fn decode_batch(
        &self,
        py: Python<'_>,
        sequences: &Bound<'_, PyAny>,
        skip_special_tokens: bool,
    ) -> PyResult<Vec<String>> {
        let arrays = extract_batch(sequences, "codes")?;
        let slices = batch_slices(&arrays)?;
        py.detach(|| match &slices {
            BatchSlices::I32(values) => self.inner.decode_batch(values, skip_special_tokens),
            BatchSlices::I64(values) => self.inner.decode_batch(values, skip_special_tokens),
        })
        .map_err(to_py_err)
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let py = slf.py();
        let this = slf.get();
        let args = (this.json.clone(), this.config()).into_pyobject(py)?;
        Ok((slf.get_type().into_any(), args))
    }
}

/// Streaming detokenizer: codes in, text out as soon as whole characters are known.
#[pyclass(name = "TextStream", module = "zip2zip._core")]
pub(crate) struct PyTextStream {
    tokenizer: Arc<HyperTokenizer>,
    inner: TextStream,
}

#[pymethods]
impl PyTextStream {
    #[new]
    #[pyo3(signature = (tokenizer, state = None, skip_special_tokens = false))]
    fn new(
        tokenizer: PyRef<'_, PyHyperTokenizer>,
        state: Option<PyRef<'_, PyCodecState>>,
        skip_special_tokens: bool,
    ) -> PyResult<Self> {
        let state = match state {
            Some(state) => {
                let state = state.read()?;
                if state.config() != tokenizer.inner.config()
                    && **state.config() != **tokenizer.inner.config()
                {
                    return Err(to_py_err(zip2zip_core::CodecError::InvalidConfig(
                        "the state was made with another codebook config than the tokenizer's"
                            .into(),
                    )));
                }
                state.clone()
            }
            None => zip2zip_core::CodecState::new(Arc::clone(tokenizer.inner.config())),
        };
        Ok(Self {
            tokenizer: Arc::clone(&tokenizer.inner),
            inner: TextStream::new(state, skip_special_tokens),
        })
    }

    /// Reads codes; returns the text they complete (possibly empty).
    fn step(&mut self, codes: &Bound<'_, PyAny>) -> PyResult<String> {
        let codes = IdArray::extract(codes, "codes")?;
        match codes.slice()? {
            IdSlice::I32(values) => self.inner.step(&self.tokenizer, values),
            IdSlice::I64(values) => self.inner.step(&self.tokenizer, values),
        }
        .map_err(to_py_err)
    }

    /// Ends the stream: returns the text still held back (a trailing partial character, as the
    /// base tokenizer decodes it). Streaming may go on afterwards.
    fn flush(&mut self) -> PyResult<String> {
        self.inner.flush(&self.tokenizer).map_err(to_py_err)
    }

    /// A copy of the codebook state after the codes read so far.
    #[getter]
    fn state(&self) -> PyCodecState {
        PyCodecState::from_state(self.inner.state().clone())
    }
}
