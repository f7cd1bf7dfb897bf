"""Run the pipeline (scripts 1-5) over a grid of parameters and print a ranked table.

    python scripts/sweep.py --grid rf_pretrainedModel=efficientnet_lite0,resnet18 --grid classifier=svm,dnn [--set ...]

Each grid point is one tracked MLflow run; features are reused from the cache when only SVM parameters change.
The ranking uses the cross-validated accuracy on the training split only; the test accuracy is shown, never
used to choose. Each point's output goes to DATA_DIR/proc/<datasetName>/sweep/point<N>.log.
"""
import subprocess
import sys
from pathlib import Path

import PARAMETERS
from libraries import layout, settings, sweep
from libraries.artifacts import atomic_path, load_json

SCRIPTS = ["1_prepareData.py", "2_refineDNN.py", "3_runDNN.py", "4_trainSVM.py", "5_evaluate.py"]
HERE = Path(__file__).resolve().parent


def add_arguments(parser):
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                        help="a parameter and the values to try; repeatable, the grid is their product")


def main():
    P, args = settings.parse(PARAMETERS, description=__doc__, add_arguments=add_arguments)
    paths = layout.dataset_paths(P)
    defaults, _ = settings.module_parameters(PARAMETERS)
    grid = sweep.parse_grid(args.grid, defaults)
    if not grid:
        raise settings.UserError("give at least one --grid name=value1,value2")
    common = [a for item in args.set for a in ("--set", item)]
    all_points = sweep.points(grid)
    for point in all_points:  # check every point before the first run starts
        settings.load(PARAMETERS, args.set + [f"{k}={v!r}" for k, v in point.items()])
    paths.sweep.mkdir(parents=True, exist_ok=True)
    rows = []
    for number, point in enumerate(all_points, 1):
        print(f"[{number}/{len(all_points)}] " + ", ".join(f"{k}={v!r}" for k, v in point.items()), flush=True)
        rows.append(run_point(point, common, paths.sweep_log(number)))
    names = list(grid)
    ranked = sweep.rank(rows)
    print()
    print(sweep.table(ranked, names))
    best = next((r for r in ranked if r.get("cv_accuracy") is not None), None)
    if best:
        print("\nbest by cross-validated accuracy on the training split: "
              + ", ".join(f"{k}={v!r}" for k, v in best["point"].items())
              + f" ({100 * best['cv_accuracy']:.2f}%); test accuracy is shown for information only")
    with atomic_path(paths.sweep_results) as tmp:
        tmp.write_text(sweep.table(ranked, names) + "\n", encoding="utf-8")


def run_point(point, common, log_path):
    row = {"point": point, "status": "ok"}
    sets = common + sweep.as_set_arguments(point)
    values = settings.load(PARAMETERS, sweep.set_values(sets))
    paths = layout.dataset_paths(values)
    run_file = paths.mlflow_run
    run_file.unlink(missing_ok=True)  # so that a point whose tracking failed shows no other point's run
    with open(log_path, "w", encoding="utf-8") as log:
        for script in SCRIPTS:
            done = subprocess.run([sys.executable, str(HERE / script)] + sets, stdout=log, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                row["status"] = "failed"
                print(f"  {script} failed (exit {done.returncode}); see {log_path}")
                return row
    metrics = load_json(paths.metrics)
    row["test_accuracy"] = metrics["overall_accuracy"]
    row["class_averaged"] = metrics["class_averaged_accuracy"]
    if values.classifier != "dnn":
        row["cv_accuracy"] = max(r["cv_accuracy"] for r in load_json(paths.svm_meta)["cv_table"])
    row["run_id"] = load_json(run_file)["run_id"] if values.track_boMlflow and run_file.is_file() else None
    print(f"  CV accuracy {row.get('cv_accuracy', float('nan')):.4f}, test accuracy {row['test_accuracy']:.4f}")
    return row


if __name__ == "__main__":
    settings.run(main)
