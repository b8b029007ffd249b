"""TensorFlow's threads, set before its first op by every component that trains or serves
a Keras model: on a 2-core machine its default pools oversubscribe the cores."""


def configure_tensorflow(threads: int) -> None:
    """Bounded intra-op threads and one inter-op thread; a process whose TensorFlow is
    already initialized (tests) keeps its settings."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
