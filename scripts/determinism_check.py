"""Train a recipe for a few steps from scratch and print the weights digest (RELIABILITY.md).

Run it twice with the same arguments and compare the digests: equal digests mean bit-identical
weights and optimizer state. The test split is cut to 256 images to save time; the digest is
taken before the test evaluation, so that does not change it.

Usage:
    python scripts/determinism_check.py OUT_DIR [--recipe nin_mnist_fast] [--steps 12]
        [--op-determinism] [--single-thread]

``--op-determinism`` calls ``tf.config.experimental.enable_op_determinism()``;
``--single-thread`` sets TensorFlow's intra- and inter-op thread pools to one thread (the same as
``TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1``). Both must happen before any TF op runs,
which is why this is a script of its own.
"""

import argparse
import shutil
import time

import tensorflow as tf

parser = argparse.ArgumentParser()
parser.add_argument("out", help="run folder (deleted first: every run starts from scratch)")
parser.add_argument("--recipe", default="nin_mnist_fast")
parser.add_argument("--steps", type=int, default=12)
parser.add_argument("--op-determinism", action="store_true")
parser.add_argument("--single-thread", action="store_true")
args = parser.parse_args()
if args.single_thread:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
if args.op_determinism:
    tf.config.experimental.enable_op_determinism()

from nin_keras.train import load_recipe, train  # noqa: E402  (after the threading setup)

shutil.rmtree(args.out, ignore_errors=True)
recipe = load_recipe(args.recipe)
recipe = {**recipe, "dataset": {**recipe["dataset"], "test_examples": 256}}
start = time.time()
result = train(recipe, args.out, max_steps=args.steps, verbose=0)
print(f"{result.weights_digest} {time.time() - start:.1f} s", flush=True)
