"""Step 0: get the images of ``datasetName`` into DATA_DIR/images/<datasetName>/<label>/.

- datasetName 'elpvSolarCells' (the demo): installs the ELPV solar cells from the PyPI package elpv-dataset,
  as classes 'functional' and 'defective', with the paper's 75/25 split in dedicatedTestImages.tsv.
- any other datasetName: downloads the 'label<TAB>url' list dl_urlsFile (default resources/<datasetName>Urls.tsv),
  and writes a report of what failed and why to DATA_DIR/proc/<datasetName>/download_report.tsv.
"""
import sys
from pathlib import Path

import PARAMETERS
from libraries import download, elpv, layout, settings
from libraries.artifacts import atomic_path
from libraries.errors import MissingArtifact, UserError

REPO = Path(__file__).resolve().parent.parent


def main():
    P, _ = settings.parse(PARAMETERS, description=__doc__)
    paths = layout.dataset_paths(P)
    if P.datasetName == "elpvSolarCells":
        counts = elpv.install(paths.images, seed=P.randomSeed)
        print(f"ELPV solar cells in {paths.images}: {counts['functional']} functional, {counts['defective']} defective; "
              f"{counts['test']} of them listed in {paths.dedicated_test.name} as the test set")
        return

    url_list = Path(P.dl_urlsFile) if P.dl_urlsFile else REPO / "resources" / f"{P.datasetName}Urls.tsv"
    if not url_list.is_file() and not P.dl_urlsFile and paths.images.is_dir():
        print(f"{paths.images} holds the images and there is no URL list {url_list}: nothing to download")
        return
    if not url_list.is_file() and not P.dl_urlsFile:
        found = sorted(d.name for d in paths.images.parent.glob("*") if d.is_dir() and not d.name.startswith("."))
        raise MissingArtifact(f"{paths.images} does not exist, and there is no URL list {url_list} to download it "
                              f"from: " + (f"the datasets in {paths.images.parent} are {', '.join(found)}; pick one with "
                                           f"--set datasetName=..., or " if found else "")
                              + "copy one folder of images per class there, or set dl_urlsFile to a 'label<TAB>url' file")
    items, problems = download.read_url_list(url_list)
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    if not items:
        raise UserError(f"{url_list} holds no usable 'label<TAB>url' line")
    print(f"{len(items)} URLs in {len(set(l for l, _ in items))} classes from {url_list} -> {paths.images}")
    results = download.download_all(items, paths.images, workers=P.dl_numWorkers, timeout=P.dl_timeoutSec,
                                     retries=P.dl_maxRetries, max_side=P.dl_maxImageSize)
    removed = download.remove_near_duplicates(paths.images) if P.dl_boRemoveDuplicates else None

    with atomic_path(paths.download_report) as tmp:
        rows = ["status\treason\tlabel\turl\tdetail"]
        rows += [f"{r.status}\t{r.reason}\t{r.label}\t{r.url}\t{r.path}" for r in sorted(results, key=lambda r: r.url)]
        tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")
    print(download.summarize(results, None if removed is None else len(removed)))
    print(f"report: {paths.download_report}")
    if not any(r.status in ("downloaded", "skipped") for r in results):
        raise UserError("no image could be downloaded: check the network connection and the URLs in the report")


if __name__ == "__main__":
    settings.run(main)
