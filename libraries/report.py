"""A self-contained HTML report of an evaluation (``report.html``): the metrics, the plots and the worst
mistakes with thumbnails, all images inlined, for people who do not use Jupyter. Everything taken from the
data (labels, paths, names) is HTML-escaped."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from . import results
from .artifacts import atomic_path, load_json
from .images import thumbnail_jpeg
from .layout import DatasetPaths


def png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def render(paths: DatasetPaths, max_mistakes: int = 24) -> str:
    metrics = load_json(paths.metrics)
    rows = results.load_for(paths)
    mistakes = results.select(rows, only_wrong=True, worst_first=True)
    e = html.escape
    summary = [("classifier", e(metrics["classifier"])), ("backbone", e(f"{metrics.get('backbone')} at {metrics.get('input_size')} px"
                                                                     + (", refined" if metrics.get("refined") else ", fixed"))),
               ("test-time augmentation", e(metrics.get("test_time_augmentation", "none"))),
               ("SVM C", "n/a" if metrics.get("svm_C") is None else f"{metrics['svm_C']:g}"),
               ("test images", str(metrics["num_test_images"])),
               ("overall accuracy", _pct(metrics["overall_accuracy"])),
               ("class-averaged accuracy", _pct(metrics["class_averaged_accuracy"])),
               ("macro AUC", _pct(metrics["macro_auc"])), ("micro AUC", _pct(metrics["micro_auc"]))]
    parts = [f"<h1>Evaluation of {e(paths.dataset_name)}</h1>", '<table id="summary">']
    parts += [f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in summary]
    parts += ["</table>", f'<p id="score-scale">Every score in this report is a {e(metrics["score"])}: the probabilities '
              "of an image's classes sum to 1, and they are the same numbers the web service answers.</p>",
              "<h2>Per class</h2>", '<table id="per-class"><tr><th>class</th><th>n</th><th>accuracy (recall)</th>'
              "<th>precision</th><th>recall</th><th>F1</th><th>AUC</th></tr>"]
    for label in metrics["labels"]:
        parts.append(f"<tr><td>{e(label)}</td><td>{metrics['support'][label]}</td>"
                     f"<td>{_pct(metrics['per_class_accuracy'][label])}</td><td>{_pct(metrics['precision'][label])}</td>"
                     f"<td>{_pct(metrics['recall'][label])}</td><td>{_pct(metrics['f1'][label])}</td>"
                     f"<td>{_pct(metrics['auc'][label])}</td></tr>")
    parts.append("</table>")
    for path, title in paths.plots():
        if path.is_file():
            parts.append(f'<h2>{e(title)}</h2><img class="plot" alt="{e(title)}" src="{png_uri(path)}">')
    shown = mistakes[:max_mistakes]
    parts.append(f"<h2>The worst mistakes ({len(shown)} of {len(mistakes)}, most confident first)</h2>")
    parts.append('<div id="mistakes">' if shown else "<p>No mistakes on the test set.</p>")
    for row in shown:
        thumbnail = thumbnail_jpeg(paths.images / row["path"])
        image = (f'<img alt="{e(row["path"])}" src="data:image/jpeg;base64,{base64.b64encode(thumbnail).decode()}">'
                 if thumbnail else "<div>(unreadable)</div>")
        parts.append(f'<figure>{image}<figcaption><code>{e(row["path"])}</code><br>true: <b>{e(row["true"])}</b><br>'
                     f'predicted: <b>{e(row["predicted"])}</b> (probability&nbsp;{100 * row["confidence"]:.1f}%)'
                     f"</figcaption></figure>")
    if shown:
        parts.append("</div>")
    style = ("body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;margin:1rem 0}"
             "th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}.plot{max-width:46rem;display:block}"
             "#mistakes{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0;width:170px;font-size:.8rem}figcaption code{overflow-wrap:anywhere}")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Evaluation of {e(paths.dataset_name)}</title>'
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def write(paths: DatasetPaths, max_mistakes: int = 24) -> Path:
    with atomic_path(paths.report) as tmp:
        tmp.write_text(render(paths, max_mistakes), encoding="utf-8")
    return paths.report
