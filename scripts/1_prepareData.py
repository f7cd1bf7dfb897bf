"""Step 1: split each class's images into a training and a test set.

Reads DATA_DIR/images/<datasetName>/<class>/ (and dedicatedTestImages.tsv there, if present, which fixes the
test set). Checks that every image decodes; unreadable files are listed in unreadable_images.tsv and left out.
Finds groups of near-duplicate images (dhash within dup_maxDistance bits, alike in fine detail) and keeps each group on one side of the
split (dup_boKeepTogether); a group with members on both sides is a leak, listed in duplicates.csv and counted.
Writes split.json: the labels, and the train and test images with their label ids.

The split is stable: run again after adding images, and every image keeps its side while the new ones are
split in the ratioTrainTest ratio; removing images moves no other. A new split is made when ratioTrainTest,
imagesSplitBy or randomSeed change, or with --new-split.
"""
import PARAMETERS
from libraries import dataset, duplicates, layout, provenance, settings
from libraries.artifacts import atomic_path, load_json, save_json


def add_arguments(parser):
    parser.add_argument("--new-split", action="store_true", help="split afresh instead of keeping the sides of images "
                                                                  "that the current split.json already has")


def main():
    P, args = settings.parse(PARAMETERS, description=__doc__, add_arguments=add_arguments)
    paths = layout.dataset_paths(P)
    classes, warnings = dataset.find_classes(paths.images)
    for warning in warnings:
        print(f"warning: {warning}")
    all_files = [f for files in classes.values() for f in files]
    good, bad = dataset.check_images(all_files)
    with atomic_path(paths.image_report) as tmp:
        tmp.write_text("path\treason\n" + "".join(f"{p}\t{reason}\n" for p, reason in bad), encoding="utf-8")
    for path, reason in bad:
        print(f"skipped unreadable image {path}: {reason}")
    if bad:
        print(f"{len(bad)} unreadable file(s) listed in {paths.image_report}")
    good = set(good)
    classes = {label: [f for f in files if f in good] for label, files in classes.items()}
    classes = {label: files for label, files in classes.items() if files}
    if len(classes) < 2:
        raise dataset.DatasetError(f"fewer than two classes in {paths.images} have a readable image; a classifier needs two")

    dedicated = None
    if paths.dedicated_test.is_file():
        dedicated, warnings = dataset.read_dedicated_test(paths.dedicated_test, paths.images)
        for warning in warnings:
            print(f"warning: {warning}")
        print(f"test set: the {len(dedicated)} images listed in {paths.dedicated_test}")
    groups, _ = duplicates.find(sorted(good), P.dup_maxDistance)
    previous = load_json(paths.split) if paths.split.is_file() and not args.new_split else None
    split, warnings = dataset.make_split(classes, paths.images, P.ratioTrainTest, P.randomSeed, P.imagesSplitBy,
                                         dedicated, previous=previous, together=groups if P.dup_boKeepTogether else ())
    for warning in warnings:
        print(f"warning: {warning}")
    if previous is not None:
        print(dataset.changes_summary(split))
    del split["changes"]  # split.json holds the split alone, so an unchanged split is the same file, bit for bit
    rows = duplicates.report_rows([[p.relative_to(paths.images).as_posix() for p in g] for g in groups], split)
    duplicates.write_csv(paths.duplicates, rows)
    split["duplicates"] = {**duplicates.summary(rows), "max_distance": P.dup_maxDistance,
                           "kept_together": P.dup_boKeepTogether, "file": paths.duplicates.name}
    split["provenance"] = provenance.record("split", vars(P), paths)
    save_json(paths.split, split)
    provenance.record_time(paths, "split", settings.seconds_so_far())
    print(dataset.count_table(split))
    print(duplicates.describe(rows, P.dup_maxDistance, dedicated is not None, P.dup_boKeepTogether))
    print(f"wrote {paths.split} and {paths.duplicates}")


if __name__ == "__main__":
    settings.run(main)
