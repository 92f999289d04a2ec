"""B3: masked training overhead (protocol in ../shared/guide/BENCHMARKS.md).

The same small CNN (same initial weights), the same fashion-mosaics images and the same batch
order: plain Keras `model.compile(loss="binary_crossentropy")` + `fit` on fully known labels vs
our `train_round` (masked BCE with per-label positive weights) on labels with 30 % unknown
cells. One warm-up epoch per side (tracing, cache fill), then timed epochs alternating plain / ours
one epoch at a time; the figure is the ratio of the median epoch times.

    python benchmarks/training.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from _report import markdown_table, write_section  # noqa: E402
from ssl_multilabel.data import make_dataset  # noqa: E402
from ssl_multilabel.datasets import fashion_mosaics, random_cells  # noqa: E402
from ssl_multilabel.models import build_classifier  # noqa: E402
from ssl_multilabel.training import train_round  # noqa: E402

SHARED = Path(os.environ.get("SSL_MULTILABEL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
logger = logging.getLogger("benchmarks.training")


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch (from on_epoch_begin to on_epoch_end)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 images, 2 timed epochs per side")
    parser.add_argument("--n", type=int, default=None, help="number of mosaics (default 8,000; 2,000 with --quick)")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per side after the warm-up (default 8)")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    tf.get_logger().setLevel("ERROR")  # predict() of many fresh models warns about retracing
    n = args.n or (2000 if args.quick else 8000)
    epochs = args.epochs or (2 if args.quick else 8)
    batch_size, unknown_fraction = 64, 0.3

    images, full = fashion_mosaics("train", n=n, seed=0, source_dir=SHARED / "data" / "fashion-mnist")
    partial = random_cells(full, 1.0 - unknown_fraction, seed=0)
    # Same images, same seed: both datasets yield the same batch order.
    plain_ds = make_dataset(images, full.values, batch_size=batch_size, shuffle=True, seed=0, cache=True)
    masked_ds = make_dataset(images, partial, batch_size=batch_size, shuffle=True, seed=0, cache=True)
    initial = build_classifier("small_cnn", full.n_labels, images.shape[1:], seed=0)

    def fresh() -> keras.Model:
        model = keras.models.clone_model(initial)
        model.set_weights(initial.get_weights())
        return model

    # Warm-up: one epoch each (tracing, cache fill). The masked side is a real training round.
    plain_model = fresh()
    plain_model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    plain_model.fit(plain_ds, epochs=1, verbose=0)
    masked_model, _ = train_round(fresh(), masked_ds, epochs=1, labels=partial, verbose=0)

    # Timed epochs alternate plain / ours one epoch at a time, so both sides see the same load
    # of this shared machine. Later `fit` calls reuse the compiled train step of each model.
    def timed_epoch(model: keras.Model, dataset) -> float:
        timer = EpochTimer()
        model.fit(dataset, epochs=1, callbacks=[timer], verbose=0)
        return timer.times[0]

    plain_times: list[float] = []
    masked_times: list[float] = []
    for epoch in range(epochs):
        # ABBA order: whichever side runs second in a pair does not always get the same slot.
        if epoch % 2 == 0:
            plain_times.append(timed_epoch(plain_model, plain_ds))
            masked_times.append(timed_epoch(masked_model, masked_ds))
        else:
            masked_times.append(timed_epoch(masked_model, masked_ds))
            plain_times.append(timed_epoch(plain_model, plain_ds))
        print(f"epoch {epoch + 1}/{epochs}: plain {plain_times[-1]:.2f} s, masked {masked_times[-1]:.2f} s", flush=True)

    plain, masked = statistics.median(plain_times), statistics.median(masked_times)
    ratio = masked / plain
    # The fastest epoch of each side is the one least disturbed by other jobs on the machine.
    ratio_min = min(masked_times) / min(plain_times)
    rows = [
        {"side": "plain Keras BCE, all cells known", "median epoch (s)": plain, "fastest epoch (s)": min(plain_times), "images/s": n / plain, "epochs timed": len(plain_times)},
        {"side": "train_round, masked BCE, 30 % unknown", "median epoch (s)": masked, "fastest epoch (s)": min(masked_times), "images/s": n / masked, "epochs timed": len(masked_times)},
    ]
    table = markdown_table(rows)
    print(f"\nB3 epoch-time ratio masked / plain: {ratio:.3f} (fastest epochs: {ratio_min:.3f}; target <= 1.05)\n{table}")
    body = (
        "## B3: masked training overhead\n\n"
        f"**Epoch-time ratio, ours (masked training round) / plain Keras: {ratio:.3f}** (median epochs; "
        f"fastest epochs: {ratio_min:.3f}; target <= 1.05).\n\n"
        f"Small CNN (6 convolutions, {initial.count_params():,} parameters), fashion-mosaics "
        f"{n:,} images 56x56x1, batch {batch_size}, same initial weights and batch order, Adam 1e-3. "
        f"One warm-up epoch per side (the masked side is a `train_round`), then {epochs} timed epochs "
        "per side alternating plain / ours epoch by epoch in ABBA order (each model keeps its compiled "
        "train step); "
        "medians over the timed epochs. The machine is shared: 1-minute load average at the end of "
        f"the run {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.\n\n" + table
    )
    if not args.no_write:
        write_section("B3", body)
    return {"ratio": ratio, "plain": plain, "masked": masked}


if __name__ == "__main__":
    main()
