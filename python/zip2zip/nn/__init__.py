"""Neural-network building blocks of zip2zip models."""

from zip2zip.nn.hyper_embedding import HyperEmbedding
from zip2zip.nn.hyper_encoder import HyperEncoder

__all__ = ["HyperEmbedding", "HyperEncoder"]
