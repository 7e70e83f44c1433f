"""Neural network architectures: the spec's ``CryptoTransformer`` and ``MultiScaleLSTMCNN``."""

from cryptoml_pipeline.modeling.nets.lstm_cnn import MultiScaleLSTMCNN, regression_to_signal
from cryptoml_pipeline.modeling.nets.transformer import CryptoTransformer, PositionalEncoding

__all__ = ["CryptoTransformer", "MultiScaleLSTMCNN", "PositionalEncoding", "regression_to_signal"]
