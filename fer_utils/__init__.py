"""fer_utils: data, models, training, evaluation and explanation behind the FER2013 Jupyter Book."""

import os
import sys


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with the process's stderr closed, so its C++ start-up lines reach no notebook or log, and
    keep its Python logger to errors.

    They are written before TensorFlow reads TF_CPP_MIN_LOG_LEVEL (absl logs to fd 2 until it is initialised),
    and a Jupyter kernel shows fd 2 as a stderr output in whichever cell first imports TensorFlow.
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    # Its Python warnings (e.g. "triggered tf.function retracing") go to stdout in a kernel, so a page would show them.
    tensorflow.get_logger().setLevel("ERROR")


_import_tensorflow_quietly()
