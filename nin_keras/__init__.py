"""nin-keras: Network in Network, Maxout and GAP models for Keras 3."""

from nin_keras import tf_startup as _tf_startup

__version__ = "0.1.0"

# TensorFlow's start-up log lines are hidden from the library as from the command line
# (nothing is imported here; $NIN_KERAS_VERBOSE=1 shows them).
if not _tf_startup.is_verbose():
    _tf_startup.quiet_tensorflow_import()
