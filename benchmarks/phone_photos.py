"""B7-phone: the photo recipe on photos stored the way phones store them (sideways, with an EXIF tag).

    python benchmarks/phone_photos.py --seeds 0 1 2                       # this checkout (about 15 minutes)
    python benchmarks/phone_photos.py --seeds 0 1 2 --checkout OTHER_DIR  # another checkout's code
    python benchmarks/phone_photos.py --report-only

A phone stores a portrait or upside-down shot as the sensor saw it and writes in the EXIF
Orientation tag how to turn it upright; viewers (and PIL's `ImageOps.exif_transpose`) apply the
tag, TensorFlow's decoders do not. Two folders are made from `../shared/data/miml-scenes` (2,000
photos, 5 labels), every photo re-encoded as JPEG (quality 95):
- `upright`: the photos as they are;
- `sideways`: each photo stored as a phone would, with tag 1 (40 %), 6 (30 %: stored turned a
  quarter counter-clockwise), 8 (20 %) or 3 (10 %: upside down), drawn with a fixed seed.
Both share one split: 1,500 training photos whose labels CSV keeps 10 % of the cells (the others
blank) and 500 test photos with every cell known (`data.test_csv`). Each folder runs
`recipes/photos.py` as shipped (a subprocess, as a user runs it; only the data and the local
weights file set), then `ssl-multilabel predict` with the exported model on the test photos,
scored with scikit-learn. Results per (checkout commit, folder) in
`benchmarks/results/phone_photos.json` (a recorded run is not run again).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import markdown_table, mean_sd, save_merged, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PHOTOS = SHARED / "data" / "miml-scenes"
WEIGHTS = SHARED / "weights" / "mobilenet_v1_0.75_224_imagenet_notop.weights.h5"
RESULTS = ROOT / "benchmarks" / "results" / "phone_photos.json"
FOLDERS = ("upright", "sideways")
TAGS, TAG_SHARES = (1, 6, 8, 3), (0.4, 0.3, 0.2, 0.1)
KNOWN_FRACTION, N_TRAIN = 0.1, 1500


def make_folders(out: Path) -> None:
    """The two photo folders with `train.csv` and `test.csv` (see the module docstring)."""
    from PIL import Image

    # How the upright picture is stored under each tag (the inverse of exif_transpose).
    stored = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    labels = pd.read_csv(PHOTOS / "labels.csv").rename(columns={"image": "id"})
    rng = np.random.default_rng(5)
    tags = rng.choice(TAGS, size=len(labels), p=TAG_SHARES)
    for folder in FOLDERS:
        (out / folder).mkdir(parents=True)
    for name, tag in zip(labels["id"], tags):
        with Image.open(PHOTOS / "images" / name) as image:
            image = image.convert("RGB")
            image.save(out / "upright" / name, quality=95)
            exif = Image.Exif()
            if tag != 1:
                exif[0x0112] = int(tag)
                image = image.transpose(stored[int(tag)])
            image.save(out / "sideways" / name, quality=95, exif=exif)
    rng = np.random.default_rng(11)
    order = rng.permutation(len(labels))
    train, test = labels.iloc[order[:N_TRAIN]], labels.iloc[order[N_TRAIN:]]
    names = list(labels.columns[1:])
    values = train[names].to_numpy(dtype=float, copy=True)
    values[rng.random(values.shape) >= KNOWN_FRACTION] = np.nan
    blanked = pd.DataFrame(values, columns=names).astype("Int64")
    blanked.insert(0, "id", train["id"].to_numpy())
    for folder in FOLDERS:
        blanked.to_csv(out / folder / "train.csv", index=False)
        test.to_csv(out / folder / "test.csv", index=False)


def run_folder(checkout: Path, folder: Path, run_dir: Path, seed: int) -> dict:
    """`recipes/photos.py` of `checkout` on `folder` (recipe seed `seed`), then its `predict` on the test photos."""
    from sklearn.metrics import average_precision_score

    env = {**os.environ, "PYTHONPATH": str(checkout)}
    started = time.perf_counter()
    subprocess.run([sys.executable, str(checkout / "recipes" / "photos.py"), "--out", str(run_dir),
                    "--set", f"data.labels_csv={folder / 'train.csv'}", "--set", f"data.image_dir={folder}",
                    "--set", f"data.test_csv={folder / 'test.csv'}", "--set", f"data.test_image_dir={folder}",
                    "--set", f"supervised.weights={WEIGHTS}", "--set", f"seed={seed}"],
                   env=env, cwd=checkout, check=True, capture_output=True)
    recipe_s = time.perf_counter() - started
    test = pd.read_csv(folder / "test.csv")
    images = folder.parent / f"{folder.name}_test_photos"
    if not images.is_dir():
        images.mkdir()
        for name in test["id"]:
            os.symlink(folder / name, images / name)
    scores = run_dir.parent / f"{run_dir.name}_scores.csv"
    subprocess.run([sys.executable, "-m", "ssl_multilabel.cli", "predict", "--model",
                    str(run_dir / "export" / "model.keras"), "--images", str(images), "--out", str(scores),
                    "--overwrite"],
                   env=env, cwd=checkout, check=True, capture_output=True)  # cwd: `-m` imports from it first
    predicted = pd.read_csv(scores).set_index("id").loc[test["id"]]
    names = list(test.columns[1:])
    predict_map = float(np.mean([average_precision_score(test[n], predicted[n]) for n in names]))

    def step_map(step: str) -> float:
        return json.loads((run_dir / "steps" / step / "metrics.json").read_text())["mAP"]

    return {"teacher test mAP": step_map("02_evaluate_supervised"), "recipe test mAP": step_map("06_evaluate"),
            "predict test mAP (scikit-learn)": predict_map, "recipe s": recipe_s}


def report(results: dict) -> str:
    rows = [dict(zip(("code", "folder", "seed"), key.split(" | ")), **record) for key, record in results.items()]
    codes = list(dict.fromkeys(row["code"] for row in rows))  # in the order of the records

    def cell(values: list[float], scale: float = 1.0) -> str:
        m, sd, n = mean_sd([scale * v for v in values])
        return f"{m:.3f} ± {sd:.3f}" if n > 1 else f"{m:.3f}"

    summary = []
    for code in codes:
        seeds = sorted({r["seed"] for r in rows if r["code"] == code
                        and all(f"{code} | {f} | {r['seed']}" in results for f in FOLDERS)})
        if not seeds:
            continue
        mine = {f: [results[f"{code} | {f} | {s}"]["recipe test mAP"] for s in seeds] for f in FOLDERS}
        summary.append({"code": code, "seeds": len(seeds), **{f"{f}: recipe test mAP": cell(mine[f]) for f in FOLDERS},
                        "sideways - upright (points, paired)": cell(
                            [b - a for a, b in zip(mine["upright"], mine["sideways"])], 100.0)})
    return (
        "## B7-phone: photos stored sideways with an EXIF orientation tag\n\n"
        "The photo recipe as shipped on two copies of the MIML photos: `upright`, and `sideways`, where 60 % "
        "of the photos are stored as a phone stores them (turned a quarter either way or upside down, with the "
        "EXIF tag that says how to turn them back). 1,500 training photos with 10 % of the cells known, 500 "
        "fully labeled test photos; test mAP of the recipe's teacher head and of its final model (both "
        "evaluated by the recipe on `data.test_csv`), and of `ssl-multilabel predict` on the test photos "
        "scored with scikit-learn. 'code': the commit whose code ran.\n\n"
        f"{markdown_table(summary)}\n\n{markdown_table(rows)}\n\n"
        "Before 2026-12-06 (commit 7796bb0) the pipeline ignored the tag: training, the feature cache and "
        "`predict` saw the stored pixels. Since then every photo is turned upright after decoding, as PIL's "
        "`exif_transpose` does, so the `sideways` folder scores as the `upright` one. Seeds are recipe seeds (the "
        "known cells are the same in every run); ± is the sample standard deviation over them. Small differences "
        "between the two folders under the new code come from the JPEG re-encoding of the turned pixels, and "
        "between the two codes on `upright` from the 46 photos of at least 448 px on both sides that the new code "
        "decodes at half scale.\n\n"
        "The records were made by `python benchmarks/phone_photos.py --seeds 0 1 2` (this checkout) and "
        "`python benchmarks/phone_photos.py --seeds 0 1 2 --checkout DIR`, DIR a checkout of 7796bb0 "
        "(`git worktree add DIR 7796bb0`)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the checkout whose code runs (default: this one)")
    parser.add_argument("--folders", nargs="+", default=list(FOLDERS), choices=FOLDERS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="recipe seeds (default 0)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only; do not touch docs/benchmarks.md")
    args = parser.parse_args(argv)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if not args.report_only:
        if not (PHOTOS / "labels.csv").is_file() or not WEIGHTS.is_file():
            raise SystemExit(f"Needs {PHOTOS} and {WEIGHTS}.")
        checkout = args.checkout.resolve()
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain", "--", "ssl_multilabel", "recipes"],
                               check=True, capture_output=True, text=True).stdout.strip()
        commit += "+uncommitted" if dirty else ""
        with tempfile.TemporaryDirectory(prefix="b7_phone_") as tmp:
            make_folders(Path(tmp))
            for seed in args.seeds:
                for folder in args.folders:
                    key = f"{commit} | {folder} | seed {seed}"
                    if key in results:
                        continue
                    record = run_folder(checkout, Path(tmp) / folder, Path(tmp) / "runs" / f"{folder}_{seed}", seed)
                    results = save_merged(RESULTS, {key: record}, results)
                    print(f"{key}: {record}", flush=True)
    text = report(results)
    print(text)
    if not args.no_write:
        write_section("B7-phone", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
