"""Predict a folder of images with the deployed model, to a CSV (or JSON).

Runs the bundle that script 5 exported (model.onnx through onnxruntime, no torch: it works wherever the service
works) on files, folders (recursively) and glob patterns, in batches, with a progress bar. Writes one row per file:
path, label, probability, error, and p_<class> for every class; the probabilities are the service's. An
unreadable file gets a row with its error filled in and the rest empty, and is listed on the console.

    .venv/bin/python scripts/predict.py PATH [PATH ...] --set datasetName=NAME [--out predictions.csv] [--json]
        [--model-dir DIR] [--cam DIR] [--engine ray]
"""
from pathlib import Path

import numpy as np

import PARAMETERS
from libraries import bundle, layout, predict, settings
from libraries.artifacts import save_csv, save_json, save_parquet, save_png
from libraries.errors import UserError


def add_arguments(parser):
    parser.add_argument("sources", nargs="*", metavar="PATH", help="image file(s), folder(s) or glob pattern(s)")
    parser.add_argument("--out", default=None, help="the file to write (default: predictions.csv here, or "
                        "predictions.json with --json); its ending picks the format: .csv, .json, or .parquet for big "
                        "outputs")
    parser.add_argument("--json", action="store_true", help="write JSON (a list of rows) instead of CSV")
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="'ray': run on Ray Data, on the "
                        "cluster that RAY_ADDRESS names or a local one (the same CSV; every node must see the files)")
    parser.add_argument("--model-dir", default=None, help="the bundle to use (default: the dataset's, from script 5)")
    parser.add_argument("--cam", default=None, metavar="DIR", help="also write, per image, where the model looked: the "
                        "class activation map of the predicted class over the image, as DIR/<row>_<name>_<class>.png "
                        "(<row>: the file's row in the output; needs the dataset's trained artifacts, not only a bundle)")


def main():
    P, args = settings.parse(PARAMETERS, description=__doc__, add_arguments=add_arguments)
    if not args.sources:
        raise UserError("name at least one image file, folder or glob pattern to predict")
    out = Path(args.out or ("predictions.json" if args.json else "predictions.csv"))
    kind = "json" if args.json or out.suffix.lower() == ".json" else "parquet" if out.suffix.lower() == ".parquet" else "csv"
    if args.json and out.suffix.lower() not in (".json", ""):
        raise UserError(f"--json writes JSON, but --out {out} names another format: use a .json name, or drop --json "
                        f"(the name's ending picks the format: .csv, .json or .parquet)")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: name the file to write, e.g. "
                        f"--out {out / ('predictions.json' if args.json else 'predictions.csv')}")
    explainer = cam_explainer(P, args) if args.cam else None  # a mistake there stops the run before any work
    model = bundle.read(Path(args.model_dir) if args.model_dir else layout.dataset_paths(P).bundle)
    print(f"model: {model.describe()}")
    files, probabilities, errors, speed, missing = predict.predict_sources(model, args.sources, P.run_mbSize,
                                                                               engine=args.engine)
    for message in missing:
        print(f"warning: {message}")
    rows = predict.prediction_rows(files, probabilities, errors, model.labels)
    if kind == "json":
        save_json(out, predict.with_nulls(rows))
    elif kind == "parquet":  # for outputs too big for a CSV
        save_parquet(out, predict.with_nulls(rows), predict.columns(model.labels))
    else:
        save_csv(out, rows, predict.columns(model.labels))
    for row in rows:
        if row["error"]:
            print(f"unreadable: {row['path']}: {row['error']}")
    bad = sum(1 for row in rows if row["error"])
    print(f"predicted {len(rows) - bad} image(s) at {speed:.0f} img/s, {bad} unreadable; wrote {out}")
    if explainer:
        write_cams(explainer, Path(args.cam), rows, model.labels, P.run_mbSize)


def cam_explainer(P, args):
    """What --cam explains: the dataset's network and head, as script 5 evaluated them (a bundle holds neither)."""
    if args.model_dir:
        raise UserError("--cam needs the dataset's trained network, which a bundle (--model-dir) does not hold: "
                        "drop --model-dir and name the dataset with --set datasetName=...")
    from libraries import explain  # torch, only here: predicting needs onnxruntime alone

    return explain.Explainer.from_paths(layout.dataset_paths(P))


def write_cams(explainer, folder: Path, rows: list[dict], labels: list[str], batch_size: int) -> None:
    """The class activation map of each image's predicted class over the image, at the image's own proportions, as
    <row>_<name>_<class>.png (<row>: its row in the output, 1 for the first)."""
    from PIL import Image

    from libraries import explain

    good = [(number, row) for number, row in enumerate(rows, 1) if not row["error"]]
    maps = explain.overlays(explainer, [Path(row["path"]) for _, row in good], [labels.index(row["label"]) for _, row in good],
                            batch_size)
    folder.mkdir(parents=True, exist_ok=True)
    for (number, row), image in zip(good, maps):
        with Image.open(row["path"]) as original:
            width, height = original.size
        scale = min(1.0, 1024 / max(width, height))
        shaped = Image.fromarray(image).resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR)
        save_png(folder / f"{number:04d}_{Path(row['path']).stem}_{row['label']}.png", np.asarray(shaped))
    print(f"wrote {len(maps)} class activation map(s) ({explainer.kind}: "
          f"{'Grad-CAM' if explainer.kind == 'dnn' else 'the SVM weights over the last feature map'}) to {folder}")


if __name__ == "__main__":
    settings.run(main)
