"""Exporters to SavedModel, TFLite and ONNX, parity checks and the Predictor (``nin_keras.export``)."""
