"""On-terminal AI: demand forecast, reorder and expiry-risk suggestions, diversion anomaly.

Head office trains (``models.train``, scikit-learn + skl2onnx, imported only there), exports
ONNX, and signs a model bundle (``models.bundle``). Terminals verify, install and hot-swap
bundles and run them with onnxruntime (``models.runtime``), which is imported lazily inside
functions so that nothing the GUI imports at start-up pays for it.
"""
