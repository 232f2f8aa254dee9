"""Detection: the :class:`~.detections.Detections` type, and the detector sources,
plugins keyed by ``type`` (their settings in :mod:`.settings`, pydantic only, no torch) that
load a detection model and expose it through the :class:`~.base.Detector` hooks (``prepare``,
``forward``, ``finish``): OpenCV HOG, torchvision, Hugging Face RT-DETR, ONNX and TorchScript
YOLO exports.

Threading: :class:`~.detections.Detections` and the configs are immutable data, thread-safe.
A :class:`~.base.Detector` runs on its model's serving threads: ``prepare`` on the batcher's
worker thread, ``forward`` and ``finish`` there or on the device thread (with overlap), one
batch per hook at a time; its hooks are not for concurrent calls.
"""
