"""Model zoo: registry, presets, weight download and training recipes (``nin_keras.zoo``)."""
