"""nin-keras: Network in Network, Maxout and GAP models for Keras 3."""

__version__ = "0.1.0"
