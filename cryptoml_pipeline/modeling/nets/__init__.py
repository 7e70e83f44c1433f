"""Neural network architectures (``transformer.CryptoTransformer``)."""

from cryptoml_pipeline.modeling.nets.transformer import CryptoTransformer, PositionalEncoding

__all__ = ["CryptoTransformer", "PositionalEncoding"]
