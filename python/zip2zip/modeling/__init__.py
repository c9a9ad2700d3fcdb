"""The zip2zip model: `Zip2ZipConfig` and `Zip2ZipForCausalLM`.

configuration.py   Zip2ZipConfig (registered with transformers' AutoConfig)
model.py           Zip2ZipForCausalLM: construction, LoRA, forward
generate.py        transformers' generate() over codes (per-row codebook states)
serialization.py   saving and loading (full weights, or encoders + LoRA adapter)
lora.py            LoRA target modules per architecture, peft helpers
loss_terms.py      the interface of extra training loss terms
outputs.py         what forward returns
"""

from zip2zip.modeling.configuration import POSITION_MODES, Zip2ZipConfig
from zip2zip.modeling.generate import GenerationState
from zip2zip.modeling.lora import LORA_TARGETS, lora_target_modules
from zip2zip.modeling.loss_terms import LossInputs, LossTerm
from zip2zip.modeling.model import Zip2ZipForCausalLM
from zip2zip.modeling.outputs import Zip2ZipCausalLMOutput
from zip2zip.modeling.serialization import ADAPTER_FOLDER, ENCODERS_FILE

__all__ = [
    "ADAPTER_FOLDER",
    "ENCODERS_FILE",
    "LORA_TARGETS",
    "POSITION_MODES",
    "GenerationState",
    "LossInputs",
    "LossTerm",
    "Zip2ZipCausalLMOutput",
    "Zip2ZipConfig",
    "Zip2ZipForCausalLM",
    "lora_target_modules",
]
