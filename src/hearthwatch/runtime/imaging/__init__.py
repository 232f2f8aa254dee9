"""Images in: encoded bytes checked and decoded on the host (:mod:`.decode`, on a thread pool
by :mod:`.decode_pool`) or on the device (:mod:`.device_decode`, batched nvJPEG), and
preprocessed into model-input batches (:mod:`.preprocess`: resize on the host or the device,
scale, normalise, the shape rule; :mod:`.letterbox`). One EXIF-orientation rule for every path.

Threading: everything here is a pure function, safe from any thread, except
:class:`~.decode_pool.DecodePool`, which is thread-safe (its coroutines may be awaited on any
loop) and owns a thread pool until its ``shutdown``.
"""
