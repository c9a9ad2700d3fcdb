"""Generation with zip2zip models.

streaming.py     for transformers' generate(): a streamer that prints the text of codes as
                 they arrive, stopping on text or a base-token budget, base ids only
static_loop.py   the static KV cache, CUDA graphs and the loop that runs a step ahead
static.py        StaticGenerator: the fast loop, for a base model or a zip2zip model
sampling.py      temperature, top-k and top-p draws for the fast loop, as transformers draws them
fields.py        the codebook fields of left-padded prompt codes
speculative.py   hypertoken speculation: prompt lookup at the base-token level, drafts cut into
                 codes by the codebook, verified in one pass; the same codes as greedy decoding
bench.py         ``zip2zip bench generate``: the two side by side
peers.py         ``zip2zip bench generate --peers``: against prompt lookup decoding, in generate()
same_text.py     ``zip2zip bench generate --same-text``: both models fed the base model's answers
"""

from zip2zip.generation.sampling import SamplingConfig, sample_next
from zip2zip.generation.speculative import SpeculationStats, SpeculativeOutput, speculative_generate
from zip2zip.generation.static import BaseStaticGenerator, StaticGenerator, Zip2ZipStaticGenerator
from zip2zip.generation.static_loop import GenerationOutput
from zip2zip.generation.streaming import BaseIdsOnly, CodeTextStopping, Zip2ZipStreamer

__all__ = [
    "BaseIdsOnly",
    "BaseStaticGenerator",
    "CodeTextStopping",
    "GenerationOutput",
    "SamplingConfig",
    "SpeculationStats",
    "SpeculativeOutput",
    "StaticGenerator",
    "Zip2ZipStaticGenerator",
    "Zip2ZipStreamer",
    "sample_next",
    "speculative_generate",
]
