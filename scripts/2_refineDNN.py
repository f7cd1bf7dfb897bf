"""Step 2: prepare the DNN that featurizes the images.

- classifier 'svm': the pretrained backbone is used as it is (fast, no GPU needed); only model.json is written.
- classifier 'dnn' or 'svmDnnRefined': the backbone gets a new head for our classes and is fine-tuned with the
  rf_* parameters (by default its last 13 blocks, AdamW with warm-up and cosine decay, label smoothing,
  class-balanced sampling, dihedral augmentation), on CUDA with mixed precision when a GPU is there, else on
  the CPU. rf_valFraction of the training images are held out as a validation set, and the epoch that does
  best on it is kept; the test set is never read here. A checkpoint is written after each epoch, and a killed
  run resumes from it. Writes model.pt (state dict), model.json and refine_errors.png (training and validation
  error per epoch).
"""
import PARAMETERS
from libraries import dataset, distributed, layout, model_io, plots, provenance, refine, settings
from libraries.artifacts import load_json, save_figure
from libraries.backbones import BACKBONES, build_classifier, get_backbone
from libraries.errors import BadParameter
from libraries.tracking import Tracker


def main():
    P, _ = settings.parse(PARAMETERS, description=__doc__, backbone_names=BACKBONES)
    device = distributed.start(refine.resolve_device(P.rf_device))  # one process, unless torchrun started several
    params, paths = vars(P), layout.dataset_paths(P)
    provenance.check_chain(paths, params, upto="model")
    split = load_json(paths.split)
    spec = get_backbone(P.rf_pretrainedModel)
    refined = provenance.is_refined(P.classifier)
    meta = model_io.describe(P.rf_pretrainedModel, P.rf_inputResolution, P.rf_pretrainedWeights,
                             provenance.record("model", params, paths), labels=split["labels"] if refined else None)

    if distributed.world_size() > 1 and not refined:
        raise BadParameter(f"torchrun runs refinement on several processes, but classifier={P.classifier!r} refines "
                           f"nothing: set classifier='dnn' or 'svmDnnRefined', or run without torchrun")
    with Tracker.for_script(P, paths, "2_refineDNN", enabled=distributed.is_main()) as tracker:
        previous = model_io.up_to_date(paths, params)
        if previous:
            print(f"{paths.model_meta} is up to date for these parameters; nothing to do")
            for record in previous.get("history", []):  # this run's history gets the curves too
                tracker.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])
        elif not refined:
            print(f"classifier='svm': {spec.name} from {spec.weight_source} is used as it is at {meta['input_size']} px, "
                  f"without refinement; checking that its weights load")
            build_classifier(P.rf_pretrainedModel, 1, meta["input_size"], P.rf_pretrainedWeights)  # fails early
            model_io.save_fixed(paths.model_meta, meta)
            provenance.record_time(paths, "model", settings.seconds_so_far())
            print(f"wrote {paths.model_meta}")
        else:
            fine_tune(P, paths, split, meta, tracker, device)  # logs each epoch as it ends
        if refined:
            tracker.log_artifacts(paths.refine_plot)


def fine_tune(P, paths, split, meta, tracker, device):
    labels, size = split["labels"], meta["input_size"]
    refine.seed_everything(P.randomSeed)  # the new head's initial weights too
    model = build_classifier(P.rf_pretrainedModel, len(labels), size, P.rf_pretrainedWeights, P.rf_dropoutRate)
    config = refine.RefineConfig.from_parameters(vars(P), size)
    fit_rows, val_rows = dataset.validation_subset(split["train"], labels, P.rf_valFraction, P.randomSeed)
    print(f"refining {P.rf_pretrainedModel} at {size} px ({len(fit_rows)} training and {len(val_rows)} validation "
          f"images, {len(labels)} classes) for {P.rf_maxEpochs} epoch(s) on {device}"
          f"{' with mixed precision' if device.type == 'cuda' else ''}"
          + (f", in {distributed.world_size()} processes (torchrun; {P.rf_mbSize} images per process and step)"
             if distributed.world_size() > 1 else ""))
    if P.rf_augmentation == "dihedral":
        print("augmentation 'dihedral': random flips and quarter turns, for images with no natural up (like the demo's "
              "cells); for photos of things that have an up, set rf_augmentation='standard'")
    to_items = lambda rows: [(paths.images / rel, label) for rel, label in rows]  # noqa: E731
    log_epoch = lambda record: tracker.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])  # noqa: E731
    history, kept = refine.refine(model, to_items(fit_rows), to_items(val_rows), config, checkpoint_path=paths.checkpoint,
                                  config_key=provenance.step_key(vars(P), "model", paths), on_epoch=log_epoch)
    if not distributed.is_main():
        return  # the first process writes the model
    print(f"kept the weights of epoch {kept}" + (" (the best by validation error)" if val_rows else " (the last)"))
    save_figure(paths.refine_plot, plots.refine_errors(history, kept))
    model_io.save_refined(paths.model_meta, paths.model_weights, model,
                          {**meta, "history": history, "kept_epoch": kept, "validation": [rel for rel, _ in val_rows],
                           "world_size": distributed.world_size()})
    paths.checkpoint.unlink(missing_ok=True)
    provenance.record_time(paths, "model", settings.seconds_so_far())
    print(f"wrote {paths.model_weights}, {paths.model_meta} and {paths.refine_plot}")


if __name__ == "__main__":
    settings.run(main)
