"""Step 3: featurize every image of the split with the DNN of step 2.

Each image becomes its pooled penultimate vector (1280 numbers for EfficientNet-Lite0, 512 for ResNet-18/34,
2048 for ResNet-50). Vectors are cached by image content and model, so a rerun after adding images featurizes
only the new ones. With run_tta 'flip' or 'dihedral', each vector is the mean over 2 or 8 flipped and turned
views of the image (the exported model does the same). Writes features.npz (features, paths, labels, subset) and the ONNX featurizer it ran.
"""
import PARAMETERS
from libraries import featurize, layout, model_io, provenance, settings
from libraries.artifacts import load_json
from libraries.backbones import BACKBONES, view_count


def main():
    P, _ = settings.parse(PARAMETERS, description=__doc__, backbone_names=BACKBONES)
    params, paths = vars(P), layout.dataset_paths(P)
    provenance.check_chain(paths, params, upto="features")
    split = load_json(paths.split)
    meta = model_io.load_meta(paths.model_meta)
    rows = [(rel, label, "train") for rel, label in split["train"]] + [(rel, label, "test") for rel, label in split["test"]]
    key = model_io.feature_key(meta, P.run_tta)
    cache = featurize.FeatureCache(paths.feature_cache_dir(key))
    engine = featurize.make_engine(paths.model_meta, paths.featurizer_onnx, paths.featurizer_meta, P.run_engine, P.run_tta)

    views = view_count(P.run_tta)
    if P.run_tta == "dihedral" and meta["provenance"]["parameters"].get("rf_augmentation") == "standard":
        print("warning: run_tta='dihedral' averages turned and upside-down views, but this network was refined with "
              "rf_augmentation='standard' and never saw any; 'flip' suits it (on the demo, 'dihedral' cost such a "
              "model 5 points)")
    print(f"featurizing {len(rows)} images with {meta['backbone']} at {meta['input_size']} px, engine: {engine.name}"
          + (f", averaging {views} views per image (run_tta={P.run_tta!r})" if views > 1 else ""))
    features, kept, failures = featurize.featurize([paths.images / rel for rel, _, _ in rows], engine,
                                                   meta["input_size"], cache, batch_size=P.run_mbSize)
    for path, reason in failures:
        print(f"skipped unreadable image {path}: {reason}")
    kept_rows = [rows[i] for i in kept]
    featurize.save_features(paths.features, features, [r[0] for r in kept_rows], [r[1] for r in kept_rows],
                            [r[2] for r in kept_rows], key, provenance.record("features", params, paths),
                            shard_dir=paths.feature_shards, shard_above=P.run_shardAbove)
    provenance.record_time(paths, "features", settings.seconds_so_far())
    print(f"wrote {paths.features}: {features.shape[0]} vectors of {features.shape[1]} numbers"
          + (f" (in Parquet shards in {paths.feature_shards})" if features.shape[0] > P.run_shardAbove else "")
          + (f"; {len(failures)} image(s) skipped" if failures else ""))


if __name__ == "__main__":
    settings.run(main)
