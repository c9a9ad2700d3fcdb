"""What differs between the transformers versions zip2zip supports, in one place.

transformers 5.24 renamed the generation cache from ``past_key_values`` to ``cache``: model
``forward`` methods take ``cache=``, model outputs carry ``.cache``, and ``generate()`` hands
``cache=`` to ``prepare_inputs_for_generation`` and rejects model keyword arguments that no
signature names. Older releases use ``past_key_values`` throughout. The new release still accepts
the old name, but with a deprecation warning on every use.

zip2zip accepts both names from its callers on every version and speaks to transformers in the
name the installed release uses (`CACHE_NAME`), so neither name warns.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from transformers.modeling_outputs import CausalLMOutputWithPast

from zip2zip.errors import ModelInputError

_Output = TypeVar("_Output", bound=CausalLMOutputWithPast)


def _native_cache_name() -> str:
    fields = {field.name for field in dataclasses.fields(CausalLMOutputWithPast)}
    return "cache" if "cache" in fields else "past_key_values"


CACHE_NAME: str = _native_cache_name()
"""The keyword the installed transformers uses for the KV cache: ``cache`` or ``past_key_values``."""


def pick_cache(cache: Any = None, past_key_values: Any = None) -> Any:
    """The cache a caller passed under either name (``None`` if neither).

    Raises:
        ModelInputError: both names were given a cache.
    """
    if cache is not None and past_key_values is not None:
        raise ModelInputError("pass the KV cache as cache= or as past_key_values=, not both")
    return cache if cache is not None else past_key_values


def pop_cache(kwargs: dict[str, Any]) -> Any:
    """Remove the cache from ``kwargs`` under either name and return it (``None`` if absent).

    Raises:
        ModelInputError: both names were given a cache.
    """
    return pick_cache(kwargs.pop("cache", None), kwargs.pop("past_key_values", None))


def cache_kwargs(cache: Any) -> dict[str, Any]:
    """``{CACHE_NAME: cache}``: the cache as a keyword argument for the installed transformers."""
    return {CACHE_NAME: cache}


def output_cache(outputs: Any) -> Any:
    """The cache a transformers model output carries (``None`` if none), read without the
    deprecated attribute."""
    getter = getattr(outputs, "get", None)
    if getter is None:
        return None
    return getter(CACHE_NAME)


def causal_lm_output(
    cache: Any = None,
    *,
    output_class: type[_Output] = CausalLMOutputWithPast,  # type: ignore[assignment]
    **fields: Any,
) -> _Output:
    """An ``output_class`` (``CausalLMOutputWithPast`` or a subclass) with the cache under the
    installed release's field name."""
    return output_class(**fields, **cache_kwargs(cache))
