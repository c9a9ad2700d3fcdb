"""Neural-network building blocks of zip2zip models."""

from zip2zip.nn.hyper_embedding import HyperEmbedding, RowTable
from zip2zip.nn.hyper_encoder import HyperEncoder, MeanHyperEncoder

__all__ = ["HyperEmbedding", "HyperEncoder", "MeanHyperEncoder", "RowTable"]
