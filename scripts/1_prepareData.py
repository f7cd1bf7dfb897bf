"""Step 1: split each class's images into a training and a test set.

Reads DATA_DIR/images/<datasetName>/<class>/ (and dedicatedTestImages.tsv there, if present, which fixes the
test set). Checks that every image decodes; unreadable files are listed in unreadable_images.tsv and left out.
Writes split.json (train and test images with their label ids) and labels.json (the label of each id).
"""
import PARAMETERS
from libraries import dataset, settings
from libraries.artifacts import atomic_path, save_json

P, _ = settings.parse(PARAMETERS, description=__doc__)
paths = settings.dataset_paths(P)


def main():
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
    split, warnings = dataset.make_split(classes, paths.images, P.ratioTrainTest, P.randomSeed, P.imagesSplitBy, dedicated)
    for warning in warnings:
        print(f"warning: {warning}")
    save_json(paths.split, split)
    save_json(paths.labels, split["labels"])
    print(dataset.count_table(split))
    print(f"wrote {paths.split} and {paths.labels}")


settings.run(main)
