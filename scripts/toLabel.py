"""Which unlabelled images to label next: rank them by how unsure the deployed model is (active learning).

Runs the deployed bundle that script 5 exported (model.onnx, through onnxruntime) on every image in FOLDER
(recursively; files and glob patterns work too), and writes to_label.csv: the images nearest the decision boundary
(smallest margin between the two most probable classes) first, with the predicted class and every class's
probability; unreadable files come last, each with its reason. Label them with a click in
notebooks/showImages.ipynb (the file moves into its class folder, logged and undoable), then rerun scripts 1-5.

    .venv/bin/python scripts/toLabel.py FOLDER --set datasetName=NAME [--out to_label.csv] [--model-dir DIR] [--top 10]
"""
from pathlib import Path

import PARAMETERS
from libraries import bundle, layout, predict, settings
from libraries.artifacts import save_csv


def add_arguments(parser):
    parser.add_argument("sources", nargs="+", metavar="FOLDER", help="folder(s), file(s) or glob pattern(s) of unlabelled images")
    parser.add_argument("--out", default=None, help="the CSV to write (default: to_label.csv in the dataset's results folder)")
    parser.add_argument("--model-dir", default=None, help="the bundle to use (default: the dataset's, from script 5)")
    parser.add_argument("--top", type=int, default=10, help="how many of the first to print (default 10)")


def main():
    P, args = settings.parse(PARAMETERS, description=__doc__, add_arguments=add_arguments)
    paths = layout.dataset_paths(P)
    model = bundle.read(Path(args.model_dir) if args.model_dir else paths.bundle)
    files, probabilities, errors, speed, missing = predict.predict_sources(model, args.sources, P.run_mbSize)
    for message in missing:
        print(f"warning: {message}")
    rows = predict.to_label_rows(files, probabilities, errors, model.labels)
    out = Path(args.out) if args.out else paths.to_label
    save_csv(out, rows, predict.columns(model.labels, predict.TO_LABEL_FIRST, predict.TO_LABEL_THEN))
    for row in rows:
        if row["error"]:
            print(f"unreadable: {row['path']}: {row['error']}")
    ranked = [r for r in rows if not r["error"]]
    shown = min(args.top, len(ranked))
    print(f"the {shown} image{'s' if shown != 1 else ''} the model is least sure of (margin = best minus runner-up "
          f"probability):")
    for row in ranked[:args.top]:
        print(f"  {row['rank']:>4}. {row['path']}: {row['label']} {row['probability']:.3f}, margin {row['margin']:.3f}")
    print(f"ranked {len(ranked)} image(s) at {speed:.0f} img/s, {len(rows) - len(ranked)} unreadable; wrote {out}")


if __name__ == "__main__":
    settings.run(main)
