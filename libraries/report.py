"""A self-contained HTML report of an evaluation (``report.html``): the metrics, the plots and the worst
mistakes with thumbnails, all images inlined, for people who do not use Jupyter. Everything taken from the
data (labels, paths, names) is HTML-escaped."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from . import duplicates, label_issues, results
from .artifacts import atomic_path, load_json
from .images import thumbnail_jpeg
from .layout import DatasetPaths
from .settings import elapsed


def png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _jpeg_uri(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def _thumbnail(paths: DatasetPaths, rel_path: str, caption: str, cam: bytes | None = None) -> str:
    thumbnail = thumbnail_jpeg(paths.images / rel_path)
    image = f'<img alt="{html.escape(rel_path)}" src="{_jpeg_uri(thumbnail)}">' if thumbnail else "<div>(unreadable)</div>"
    if cam:
        image += f'<img class="cam" alt="class activation map of {html.escape(rel_path)}" src="{_jpeg_uri(cam)}">'
    return f"<figure>{image}<figcaption><code>{breakable(rel_path)}</code><br>{caption}</figcaption></figure>"


def breakable(path: str) -> str:
    """``path`` escaped for HTML, with line-break chances after '/', '_', '-' and '.': a long path wraps between
    its parts, not in the middle of a word."""
    return "".join(f"{c}<wbr>" if c in "/_-." else c for c in html.escape(path, quote=False))


def current_suspects(paths: DatasetPaths, classifier: str) -> list[dict] | None:
    """The label suspects of this run: searched only on the pretrained network's features (classifier 'svm'), and
    only while ``suspects.csv`` is the file ``svm.json`` records."""
    return label_issues.read_current(paths.suspects, paths.svm_meta) if classifier == "svm" else None


def unreadable_count(paths: DatasetPaths) -> int:
    """How many files script 1 could not read and left out (``unreadable_images.tsv``)."""
    if not paths.image_report.is_file():
        return 0
    return max(0, len(paths.image_report.read_text(encoding="utf-8").splitlines()) - 1)


def health_counts(paths: DatasetPaths, classifier: str) -> dict:
    """The counts of unreadable files, near-duplicate groups, leaking groups and label issues (for metrics.json and
    MLflow)."""
    duplicates_found = load_json(paths.split).get("duplicates") or {}
    counts = {"unreadable_images": unreadable_count(paths)}
    counts.update({f"duplicate_{k}": duplicates_found[k] for k in ("groups", "leaking_groups", "conflicting_groups")
                   if k in duplicates_found})
    suspects = current_suspects(paths, classifier)
    if suspects:
        counts.update(label_issues.summary(suspects))
        counts["excluded_suspects"] = load_json(paths.svm_meta).get("excluded_suspects", 0)
    return counts


def _groups(paths: DatasetPaths, rows: list[dict], numbers: list[int]) -> str:
    parts = ['<div class="leaks">']
    for number in numbers:
        members = [r for r in rows if r["group"] == number]
        parts.append('<div class="gallery leak">' + "".join(
            _thumbnail(paths, r["path"], f'{html.escape(r["label"])}, <b>{html.escape(r["side"])}</b>') for r in members)
            + "</div>")
    return "".join(parts) + "</div>"


def data_health(paths: DatasetPaths, classifier: str, max_suspects: int = 12, max_leaks: int = 6) -> list[str]:
    """The report's "Data health" section: near-duplicates and leaks across the split, and the label suspects."""
    e = html.escape
    parts = ['<h2 id="data-health">Data health</h2>']
    unreadable = unreadable_count(paths)
    parts.append(f'<p id="unreadable">Unreadable files: <b>{unreadable}</b>' + (
        f" (left out of the split; each with its reason in <code>{e(paths.image_report.name)}</code>)." if unreadable
        else ": every file in the class folders could be read.") + "</p>")
    counts = load_json(paths.split).get("duplicates")
    if counts and paths.duplicates.is_file():
        rows = duplicates.read_csv(paths.duplicates)
        conflicts = counts.get("conflicting_groups", 0)
        parts.append(f'<p id="duplicates">Near-duplicates (dhash within {counts["max_distance"]} bits, alike in fine detail): '
                     f'<b>{counts["groups"]}</b> group(s) of {counts["images"]} images; <b>{counts["leaking_groups"]}</b> '
                     f"straddle train and test (leaks: the test set holds images the model has, in effect, seen); "
                     f"<b>{conflicts}</b> hold more than one class (label conflicts: the same picture under two "
                     f"labels). All of them are listed in <code>{e(paths.duplicates.name)}</code>.</p>")
        leaking = sorted({r["group"] for r in rows if r["leak"]})[:max_leaks]
        if leaking:
            parts.append(f"<p>The first {len(leaking)} leaking groups (class, side):</p>" + _groups(paths, rows, leaking))
        conflicting = sorted({r["group"] for r in rows if r["label_conflict"] and not r["leak"]})[:max_leaks]
        if conflicting:
            parts.append(f"<p>The first {len(conflicting)} other groups with a label conflict (class, side):</p>"
                         + _groups(paths, rows, conflicting))
    suspects = current_suspects(paths, classifier)
    if suspects is None:
        record = load_json(paths.svm_meta).get("suspects") if classifier == "svm" and paths.svm_meta.is_file() else None
        why = ("not searched: the refined network has learnt the training labels, wrong ones included. A run of "
               "scripts 2-5 with classifier=svm searches them with the pretrained network; its script 2 replaces "
               "the refined one, so run it with another DATA_DIR (a copy of the images) to keep both"
               if classifier != "svm"
               else f"not searched: {record['skipped']}" if record and record.get("skipped")
               else "not searched (svm_boFindSuspects=False)")
        parts.append(f'<p id="suspects">Label suspects: {e(why)}.</p>')
        return parts
    issues = [r for r in suspects if r["label_issue"]]
    excluded = load_json(paths.svm_meta).get("excluded_suspects", 0)
    parts.append(f'<p id="suspects">Label suspects: cleanlab calls <b>{len(issues)}</b> of the {len(suspects)} training '
                 f"images label issues (out-of-fold probabilities of the SVM); all training images are ranked in "
                 f"<code>{e(paths.suspects.name)}</code>. "
                 + (f"<b>The SVM was fit without these {excluded}</b> (svm_boExcludeSuspects); the test set is unchanged. "
                    if excluded else "")
                 + (f"The {min(max_suspects, len(issues))} most suspicious:</p>" if issues else "</p>"))
    parts.append('<div class="gallery">' + "".join(
        _thumbnail(paths, r["path"], f'given: <b>{e(r["given_label"])}</b><br>looks like: <b>{e(r["suggested_label"])}</b>'
                                     f'<br>quality&nbsp;{r["quality"]:.3f}') for r in issues[:max_suspects]) + "</div>")
    if paths.feature_map_plot.is_file():
        parts.append(f'<img class="plot" id="feature-map" alt="feature map" src="{png_uri(paths.feature_map_plot)}">')
    return parts


def _belongs(paths: DatasetPaths, plot: Path, metrics: dict) -> bool:
    """Whether a plot is of this evaluation's pipeline: the refinement plot only for a refined network, the SVM's
    only for an SVM (a plot left from another run is never shown)."""
    if plot == paths.refine_plot:
        return bool(metrics.get("refined"))
    if plot == paths.svm_plot:
        return metrics["classifier"] != "dnn"
    return True


def format_step_times(seconds: dict | None, classifier: str) -> str:
    """'1 split 2.1 s · 2 refinement 18 min 07 s · …': how long each script took to make the artifact this
    evaluation used (the SVM's only when there is one)."""
    names = {"split": "1 split", "model": "2 refinement" if classifier != "svm" else "2 network (fixed)",
             "features": "3 features", "svm": "4 SVM"}
    shown = [f'<span class="num">{names[step]} {elapsed(s)}</span>' for step, s in (seconds or {}).items()
             if step != "svm" or classifier != "dnn"]
    return " · ".join(shown) or "n/a"


def render(paths: DatasetPaths, max_mistakes: int = 24, cams: dict[str, bytes] | None = None) -> str:
    """The page; ``cams`` maps a test image's path to a JPEG of its class activation map (shown beside it)."""
    cams = cams or {}
    metrics = load_json(paths.metrics)
    rows = results.load_for(paths)
    mistakes = results.select(rows, only_wrong=True, worst_first=True)
    e = html.escape
    run = metrics.get("run", {})
    counts = run.get("images", {})
    summary = [("made", e(run.get("date", "n/a"))), ("code", e(run.get("code_version", "n/a"))),
               ("dataset", e(paths.dataset_name)),
               ("classifier", e(metrics["classifier"])), ("backbone", e(f"{metrics.get('backbone')} at {metrics.get('input_size')} px"
                                                                     + (", refined" if metrics.get("refined") else ", fixed"))),
               ("test-time augmentation", e(metrics.get("test_time_augmentation", "none"))),
               ("SVM C", "n/a" if metrics.get("svm_C") is None else f"{metrics['svm_C']:g}"),
               ("images: train / validation / test", " / ".join(
                   "none" if k == "validation" and counts.get(k) == 0 else str(counts.get(k, "n/a"))
                   for k in ("train", "validation", "test")) if counts else str(metrics["num_test_images"])),
               ("time per step", format_step_times(run.get("step_seconds"), metrics["classifier"])),
               ("overall accuracy", _pct(metrics["overall_accuracy"])),
               ("class-averaged accuracy", _pct(metrics["class_averaged_accuracy"])),
               ("macro AUC", _pct(metrics["macro_auc"])), ("micro AUC", _pct(metrics["micro_auc"]))]
    parts = [f"<h1>Evaluation of {e(paths.dataset_name)}</h1>", '<table id="summary">']
    parts += [f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in summary]
    links = [f'<a href="{e(path.name)}">{e(path.name)}</a> ({what})' for path, what in (
        (paths.test_predictions, "every test image's prediction"), (paths.suspects, "label suspects"),
        (paths.duplicates, "near-duplicate groups"), (paths.image_report, "unreadable files"))
        if path.is_file() and (path != paths.image_report or unreadable_count(paths))
        and (path != paths.suspects or current_suspects(paths, metrics["classifier"]) is not None)]
    parts += ["</table>"] + ([f'<p id="files">Beside this page: {"; ".join(links)}.</p>'] if links else [])
    parts += [f'<p id="score-scale">Every score in this report is a {e(metrics["score"])}: the probabilities '
              "of an image's classes sum to 1, and they are the same numbers the web service answers.</p>",
              "<h2>Per class</h2>", '<table id="per-class"><tr><th>class</th><th>n</th><th>recall (the per-class '
              "accuracy)</th><th>precision</th><th>F1</th><th>AUC</th></tr>"]
    for label in metrics["labels"]:
        parts.append(f"<tr><td>{e(label)}</td><td>{metrics['support'][label]}</td>"
                     f"<td>{_pct(metrics['recall'][label])}</td><td>{_pct(metrics['precision'][label])}</td>"
                     f"<td>{_pct(metrics['f1'][label])}</td><td>{_pct(metrics['auc'][label])}</td></tr>")
    parts.append("</table>")
    parts.append('<div class="plots">' + "".join(
        f'<figure class="plotbox"><h2>{e(title)}</h2><img class="plot" alt="{e(title)}" src="{png_uri(path)}"></figure>'
        for path, title in paths.plots() if path.is_file() and _belongs(paths, path, metrics)) + "</div>")
    shown = mistakes[:max_mistakes]
    parts.append(f"<h2>The worst mistakes ({len(shown)} of {len(mistakes)}, most confident first)</h2>" if shown
                 else "<h2>Mistakes</h2>")
    if cams:
        parts.append("<p>Beside each image, where the model looked: the class activation map of the predicted class "
                     "(red = most).</p>")
    parts.append('<div id="mistakes" class="gallery">' if shown else "<p>No mistakes on the test set.</p>")
    for row in shown:
        parts.append(_thumbnail(paths, row["path"], f'true: <b>{e(row["true"])}</b><br>predicted: <b>{e(row["predicted"])}</b> '
                                                    f'<span class="num">(probability&nbsp;{100 * row["confidence"]:.1f}%)</span>', cams.get(row["path"])))
    if shown:
        parts.append("</div>")
    parts += data_health(paths, metrics["classifier"])
    style = ("body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;margin:1rem 0;display:block;overflow-x:auto;max-width:100%}"
             "th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}.plot{width:100%;max-width:46rem;display:block}.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(34rem,100%),1fr));gap:1rem 2rem}.plots figure.plotbox{width:auto}"
             ".gallery{display:flex;flex-wrap:wrap;gap:1rem;margin:.5rem 0}.leaks{display:flex;flex-wrap:wrap;gap:1rem 2rem}.leak{border-left:3px solid #c33;padding-left:.5rem}figure{margin:0;width:170px;font-size:.8rem}figure:has(.cam){width:340px}.gallery img{width:160px;margin-right:4px}figcaption code{font-size:.72rem;overflow-wrap:anywhere}.num{white-space:nowrap}")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Evaluation of {e(paths.dataset_name)}</title>'
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def worst_mistakes(paths: DatasetPaths, max_mistakes: int = 24) -> list[dict]:
    """The mistakes the report shows, most confident first."""
    return results.select(results.load_for(paths), only_wrong=True, worst_first=True)[:max_mistakes]


def write(paths: DatasetPaths, max_mistakes: int = 24, cams: dict[str, bytes] | None = None) -> Path:
    with atomic_path(paths.report) as tmp:
        tmp.write_text(render(paths, max_mistakes, cams), encoding="utf-8")
    return paths.report
