"""Making a model fast on the host's device: the device choice (:mod:`.device`), optimisation
passes with automatic fall back (:mod:`.optimize`: precision, channels_last, cuDNN benchmark,
``torch.compile``), CUDA graphs at bucketed batch sizes (:mod:`.graphs`) and the side stream
that overlaps a batch's preparation with the model (:mod:`.streams`).

Threading: the functions are safe from any thread. An
:class:`~.optimize.OptimizedModule` and its :class:`~.graphs.BucketedGraphs` are used by one
thread at a time (their model's serving thread; warm-up before serving starts): a capture or a
fall back changes them. A :class:`~.streams.Prepared` batch is made on one thread and handed
once to the thread that runs the model.
"""
