"""The notebooks' interactive views (ipywidgets): a paged image grid to fix labels, and a result browser.

They only arrange widgets; the changes themselves are ``annotate``'s and the ordering is ``results``'s.
"""
from __future__ import annotations

import html
import io
from pathlib import Path

import ipywidgets as w
from PIL import Image

from . import annotate, results
from .artifacts import load_csv, load_json
from .images import jpeg_thumbnail, thumbnail_jpeg
from .layout import DatasetPaths


def thumbnail_bytes(path: Path, size: int = 160) -> bytes:
    """The image's thumbnail, or a grey square for a file that cannot be decoded."""
    thumbnail = thumbnail_jpeg(path, size)
    if thumbnail is None:
        out = io.BytesIO()
        Image.new("RGB", (size, size), (200, 200, 200)).save(out, "JPEG")
        thumbnail = out.getvalue()
    return thumbnail


class _AnnotatingView:
    """What the annotating views share: 'undo' reverses the latest change in the annotation log, then redraws."""

    def _undo(self, _=None):
        entry = annotate.undo_last(self.images_dir, self.split_path, self.log_path)
        self.status.value = f"undid: {entry['action']} of {html.escape(entry['path'])}" if entry else "nothing to undo"
        self.show(self.page)


class ImageBrowser(_AnnotatingView):
    """A paged grid of one subset's images with their labels; a dropdown relabels (the file moves), a button
    excludes, 'undo' reverses the latest change. Every change goes to the annotation log.

    Given ``suspects`` (``label_issues.read_current``), an "order" toggle shows the training images most likely
    mislabelled first, each with its given label and the one the model suggests."""

    def __init__(self, images_dir: Path, split_path: Path, log_path: Path, subset: str = "train", per_page: int = 12,
                 thumb_size: int = 140, suspects: list[dict] | None = None):
        self.images_dir, self.split_path, self.log_path = Path(images_dir), Path(split_path), Path(log_path)
        self.per_page, self.thumb_size, self.page = per_page, thumb_size, 0
        self.suspects = {r["path"]: (rank, r) for rank, r in enumerate(suspects or [])}
        self.order = w.ToggleButtons(options=["file order", "suspects first"] if suspects else ["file order"],
                                     value="suspects first" if suspects else "file order", description="order")
        self.order.observe(lambda _: self.show(0), names="value")
        self.subset = w.ToggleButtons(options=["train", "test"], value=subset, description="images")
        self.previous, self.next = w.Button(description="◀ previous"), w.Button(description="next ▶")
        self.undo = w.Button(description="undo last change", button_style="warning")
        self.position = w.Label()
        self.status = w.HTML()
        self.grid = w.GridBox(layout=w.Layout(grid_template_columns=f"repeat(4, {thumb_size + 20}px)"))
        self.subset.observe(lambda _: self.show(0), names="value")
        self.previous.on_click(lambda _: self.show(self.page - 1))
        self.next.on_click(lambda _: self.show(self.page + 1))
        self.undo.on_click(self._undo)
        self.widget = w.VBox([w.HBox([self.subset, self.order]), w.HBox([self.previous, self.next, self.position, self.undo]),
                              self.grid, self.status])
        self.show(0)

    def items(self) -> list:
        items = load_json(self.split_path)[self.subset.value]
        if self.order.value == "suspects first":  # suspects in their order, then the rest (e.g. relabelled ones)
            items = sorted(items, key=lambda item: self.suspects.get(item[0], (len(self.suspects), None))[0])
        return items

    def show(self, page: int) -> None:
        split = load_json(self.split_path)
        items = self.items()
        pages = max(1, -(-len(items) // self.per_page))
        self.page = min(max(page, 0), pages - 1)
        shown = items[self.page * self.per_page:(self.page + 1) * self.per_page]
        self.position.value = f"page {self.page + 1} of {pages} ({len(items)} images)"
        self.cards = [self._card(rel, split["labels"], split["labels"][label]) for rel, label in shown]
        self.grid.children = [card for card, _, _ in self.cards]

    def _card(self, rel: str, labels: list[str], label: str):
        image = w.Image(value=thumbnail_bytes(self.images_dir / rel, self.thumb_size), format="jpeg",
                        layout=w.Layout(width=f"{self.thumb_size}px"))
        dropdown = w.Dropdown(options=labels, value=label, layout=w.Layout(width=f"{self.thumb_size}px"))
        exclude = w.Button(description="exclude", layout=w.Layout(width=f"{self.thumb_size}px"))
        dropdown.observe(lambda change, rel=rel: self.relabel(rel, change["new"]), names="value")
        exclude.on_click(lambda _, rel=rel: self.exclude(rel))
        text = html.escape(Path(rel).name)
        if rel in self.suspects:
            r = self.suspects[rel][1]
            text += (f"<br>given <b>{html.escape(r['given_label'])}</b>, looks like <b>{html.escape(r['suggested_label'])}"
                     f"</b><br>quality {r['quality']:.3f}{' · label issue' if r['label_issue'] else ''}")
        name = w.HTML(f"<small>{text}</small>")
        return w.VBox([image, name, dropdown, exclude]), dropdown, exclude

    def relabel(self, rel: str, new_label: str) -> str:
        new_path = annotate.relabel(self.images_dir, self.split_path, self.log_path, rel, new_label)
        self.status.value = f"moved {rel} to {new_path}"
        self.show(self.page)
        return new_path

    def exclude(self, rel: str) -> str:
        new_path = annotate.exclude(self.images_dir, self.split_path, self.log_path, rel)
        self.status.value = f"excluded {rel} (now {annotate.EXCLUDED_DIR}/...: {new_path})"
        self.show(self.page)
        return new_path


class LabelQueue(_AnnotatingView):
    """The images ``scripts/toLabel.py`` ranked (``to_label.csv``), most worth labelling first, a page at a time; one
    button per class moves the image into that class folder (``annotate.label_new``, logged), 'undo' moves it back."""

    def __init__(self, to_label_csv: Path, images_dir: Path, split_path: Path, log_path: Path, per_page: int = 8,
                 thumb_size: int = 140):
        self.rows = [r for r in load_csv(to_label_csv) if not r["error"]]
        self.images_dir, self.split_path, self.log_path = Path(images_dir), Path(split_path), Path(log_path)
        self.labels = load_json(split_path)["labels"]
        self.per_page, self.thumb_size, self.page = per_page, thumb_size, 0
        self.previous, self.next = w.Button(description="◀ previous"), w.Button(description="next ▶")
        self.undo = w.Button(description="undo last change", button_style="warning")
        self.position, self.status = w.Label(), w.HTML()
        self.grid = w.GridBox(layout=w.Layout(grid_template_columns=f"repeat(4, {thumb_size + 20}px)"))
        self.previous.on_click(lambda _: self.show(self.page - 1))
        self.next.on_click(lambda _: self.show(self.page + 1))
        self.undo.on_click(self._undo)
        self.widget = w.VBox([w.HBox([self.previous, self.next, self.position, self.undo]), self.grid, self.status])
        self.show(0)

    def waiting(self) -> list[dict]:
        """The ranked images still in the unlabelled folder."""
        return [r for r in self.rows if Path(r["path"]).is_file()]

    def show(self, page: int) -> None:
        rows = self.waiting()
        pages = max(1, -(-len(rows) // self.per_page))
        self.page = min(max(page, 0), pages - 1)
        shown = rows[self.page * self.per_page:(self.page + 1) * self.per_page]
        self.position.value = f"page {self.page + 1} of {pages} ({len(rows)} images to label)"
        self.cards = [self._card(r) for r in shown]
        self.grid.children = [card for card, _ in self.cards]

    def _card(self, row: dict):
        image = w.Image(value=thumbnail_bytes(Path(row["path"]), self.thumb_size), format="jpeg",
                        layout=w.Layout(width=f"{self.thumb_size}px"))
        text = w.HTML(f"<small>#{row['rank']} {html.escape(Path(row['path']).name)}<br>model: {html.escape(row['label'])} "
                      f"{float(row['probability']):.2f}, margin {float(row['margin']):.2f}</small>")
        buttons = [w.Button(description=label, layout=w.Layout(width=f"{self.thumb_size}px")) for label in self.labels]
        for button, label in zip(buttons, self.labels):
            button.on_click(lambda _, path=row["path"], label=label: self.label(path, label))
        return w.VBox([image, text, *buttons]), buttons

    def label(self, path: str, label: str) -> str:
        new_path = annotate.label_new(self.images_dir, self.labels, self.log_path, Path(path), label)
        self.status.value = f"moved {html.escape(path)} to {html.escape(new_path)}"
        self.show(self.page)
        return new_path


class ResultBrowser:
    """Steps through the test images: the image, its true and predicted label, and a bar per class probability
    (the calibrated probabilities of script 5, which the service answers too)."""

    def __init__(self, paths: DatasetPaths, only_wrong: bool = False, worst_first: bool = True, size: int = 260,
                 params: dict | None = None, explainer=None):
        self.rows = results.load_for(paths, params)
        self.images_dir, self.size, self.index, self.explainer = paths.images, size, 0, explainer
        self.labels = list(self.rows[0]["probabilities"]) if self.rows else []
        self.only_wrong = w.Checkbox(value=only_wrong, description="wrong predictions only")
        self.worst_first = w.Checkbox(value=worst_first, description="worst mistakes first")
        # given an explain.Explainer: where the model looked, the class activation map of the predicted class
        self.cam = w.Checkbox(value=False, description="where the model looked", disabled=explainer is None)
        self.cam.observe(lambda _: self.show(self.index), names="value")
        self.previous, self.next = w.Button(description="◀ previous"), w.Button(description="next ▶")
        self.image = w.Image(format="jpeg", layout=w.Layout(width=f"{size}px"))
        self.text = w.HTML()
        self.bars = w.HTML()
        for box in (self.only_wrong, self.worst_first):
            box.observe(lambda _: self.show(0), names="value")
        self.previous.on_click(lambda _: self.show(self.index - 1))
        self.next.on_click(lambda _: self.show(self.index + 1))
        self.widget = w.VBox([w.HBox([self.only_wrong, self.worst_first, self.cam, self.previous, self.next]),
                              w.HBox([self.image, w.VBox([self.text, self.bars])])])
        self.show(0)

    def selection(self) -> list[dict]:
        return results.select(self.rows, self.only_wrong.value, self.worst_first.value)

    def show(self, index: int) -> None:
        rows = self.selection()
        if not rows:
            self.image.value, self.bars.value = b"", ""
            self.text.value = "<b>No image to show</b> (no wrong predictions?)"
            return
        self.index = min(max(index, 0), len(rows) - 1)
        row = rows[self.index]
        if self.cam.value and self.explainer is not None:
            from . import explain

            image = explain.overlays(self.explainer, [self.images_dir / row["path"]], [self.labels.index(row["predicted"])])[0]
            self.image.value = jpeg_thumbnail(image, self.size)
        else:
            self.image.value = thumbnail_bytes(self.images_dir / row["path"], self.size)
        verdict = "correct" if row["correct"] else "<span style='color:#b00020'>wrong</span>"
        e = html.escape
        self.text.value = (f"{self.index + 1} of {len(rows)}: <code>{e(row['path'])}</code><br>true: <b>{e(row['true'])}</b>, "
                           f"predicted: <b>{e(row['predicted'])}</b> (probability {100 * row['confidence']:.1f}%), {verdict}")
        self.bars.value = "".join(
            f"<div style='display:flex;align-items:center'><span style='width:9em'>{e(label)}</span>"
            f"<span style='background:#3b7dd8;height:.9em;width:{12 * p:.2f}em;margin:0 .4em'></span>{100 * p:.1f}%</div>"
            for label, p in row["probabilities"].items())
