"""Every parameter of the pipeline, in one place.

Any script overrides any of them from the command line with ``--set name=value``, where value is a
Python literal (a bare word is a string), e.g.
    python scripts/4_trainSVM.py --set datasetName=solar --set svm_CVals='[0.1, 1]'
"""
import os
from pathlib import Path

# ---- General ----------------------------------------------------------------------------------
DATA_DIR: str = os.environ.get("DATA_DIR", str(Path(__file__).resolve().parent / "data"))  # root of images/ and proc/; set DATA_DIR in the environment
datasetName: str = "elpvSolarCells"  # folder DATA_DIR/images/<datasetName>/<class>/; "elpvSolarCells" is the demo, "fashionTexture" the original URL list
classifier: str = "svm"  # 'svm' (fixed DNN + SVM), 'dnn' (refined DNN's own softmax) or 'svmDnnRefined' (SVM on refined DNN features)
ratioTrainTest: float = 0.75  # fraction of each class's images used for training; the rest is the test set
imagesSplitBy: str = "filename"  # 'filename' (split single images) or 'subdir' (whole subfolders of a class go to one side)
randomSeed: int = 0  # seed of the train/test split, the refinement and the SVM's cross-validation
dup_maxDistance: int = 10  # near-duplicates: images whose dhash (16 x 16 = 256 bits) differ in at most this many bits (0: identical hashes only; libraries/duplicates.py says how far copies land)
dup_boKeepTogether: bool = True  # script 1 keeps each group of near-duplicates on one side of the split (a dedicatedTestImages.tsv stays as it is: its leaks are reported)

# ---- Download (script 0) ----------------------------------------------------------------------
dl_urlsFile: str | None = None  # 'label<TAB>url' list; None means resources/<datasetName>Urls.tsv
dl_maxImageSize: int = 1000  # downloaded images are shrunk so their longest side is at most this many pixels
dl_boRemoveDuplicates: bool = False  # after downloading, delete all but one of each group of images with identical dhash (re-saved copies)
dl_numWorkers: int = 16  # concurrent downloads
dl_timeoutSec: float = 10.0  # timeout of each HTTP connect and read, in seconds
dl_maxRetries: int = 3  # retries per URL, with exponential backoff, on connection errors and 5xx/429 answers

# ---- Refinement (script 2) --------------------------------------------------------------------
rf_pretrainedModel: str = "efficientnet_lite0"  # backbone: 'efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2' (all offline), 'resnet18', 'resnet34' or 'resnet50'
rf_pretrainedWeights: str | None = None  # optional local ImageNet weights file (.pth state dict); needed for ResNets when offline
rf_inputResolution: int | None = None  # width and height, in pixels, of the images the DNN sees; None: the backbone's own (Lite0 224, Lite1 240, Lite2 260, ResNets 224)
rf_valFraction: float = 0.15  # fraction of each class's training images held out to watch refinement and keep its best epoch (the test set is never seen before script 5); 0 keeps the last epoch
rf_dropoutRate: float = 0.2  # dropout rate before the new classification layer
rf_mbSize: int = 32  # minibatch size during refinement
rf_maxEpochs: int = 20  # number of refinement epochs (about 55 s each for the demo's 2,100 training cells on 2 CPU cores)
rf_maxTrainImages: int | None = None  # at most this many training images per epoch; None means all
rf_optimizer: str = "adamw"  # 'adamw' (decoupled weight decay rf_l2RegWeight) or 'sgd' (momentum rf_momentumPerMb, L2 weight decay rf_l2RegWeight; the original sample's, with rf_learningRate about 0.02 and rf_l2RegWeight 0.0005)
rf_learningRate: float = 0.001  # peak learning rate: it warms up over the first epoch, then follows a cosine down to zero at the last step
rf_lrPerMb: list | None = None  # instead of that schedule, one learning rate per epoch (per epoch, despite the sample's name), the last value repeating, e.g. [0.01] * 20 + [0.001] * 20
rf_momentumPerMb: float = 0.9  # SGD momentum (rf_optimizer='sgd' only)
rf_l2RegWeight: float = 0.05  # weight decay: decoupled for AdamW (0.05), L2 regularisation for SGD (0.0005 there)
rf_labelSmoothing: float = 0.1  # label smoothing of the training loss: targets of 1 - x for the class and x spread over all classes
rf_trainLastBlocks: int | None = 13  # train only the backbone's last N blocks (Lite0 has 18: stem, 16 MBConv blocks, last convolution), keeping the others and their batch-norm statistics as pretrained; None trains all
rf_boFreezeWeights: bool = False  # train only the new classification layer, keep the whole backbone fixed (the same as rf_trainLastBlocks=0)
rf_augmentation: str = "dihedral"  # training augmentation: 'dihedral' (crop, colour jitter, flips and quarter turns: for images with no natural up, like the demo's cells, textures, micrographs) or 'standard' (crop, horizontal flip, colour jitter: for photos of things that have an up)
rf_boBalanceTrainingSet: bool = True  # sample the training images so that each class is seen equally often (False: as they come)
rf_device: str = "auto"  # 'auto' (CUDA with mixed precision when a GPU is there, else CPU), 'cuda' or 'cpu'
rf_frozenInOnnxruntime: bool = False  # on the CPU, run the frozen first blocks (all but rf_trainLastBlocks) in onnxruntime: the same to about 1e-4, training 1.13-1.18x the images per second (benchmarks/refine.py); not the default, as its seed-0 runs on ELPV scored under 86% class-averaged (README)
rf_numWorkers: int | None = None  # image-loading processes during refinement; None: one fewer than the CPU cores (at least 1, at most 8), so that loading does not take a core from training

# ---- Featurization and SVM (scripts 3 and 4) --------------------------------------------------
run_mbSize: int = 64  # minibatch size when featurizing images
run_tta: str = "flip"  # test-time augmentation: 'none', 'flip' (mean of the image and its mirror image) or 'dihedral' (mean of its 8 flips and quarter turns, for images with no natural up); the exported model does the same, at 2x or 8x the cost
run_shardAbove: int = 500_000  # with more images than this, script 3 writes the vectors as Parquet shards (features_parquet/) beside features.npz
run_engine: str = "auto"  # 'auto' (CUDA torch on a GPU, else onnxruntime), 'onnxruntime', 'torch', or 'ray' (Ray Data: RAY_ADDRESS's cluster, else a local one)
svm_boL2Normalize: bool = True  # L2-normalise the DNN features before the SVM
svm_CVals: list = [1e-4, 1e-3, 1e-2, 0.1, 1, 10, 100]  # SVM regularisation values C to try
svm_cvFolds: int = 5  # folds of the stratified cross-validation (on the training split) that chooses C
svm_boFindSuspects: bool = True  # classifier 'svm': rank the training images by how likely their label is wrong (cleanlab on out-of-fold probabilities) into suspects.csv, with a 2-D map of the features (feature_map.png)
svm_boExcludeSuspects: bool = False  # classifier 'svm': fit the SVM without the training images that cleanlab calls label issues (the test set stays as it is)

# ---- Run history (MLflow) ---------------------------------------------------------------------
track_boMlflow: bool = True  # log parameters, metrics and plots of scripts 2, 4 and 5 to MLflow; False turns it off
track_uri: str | None = None  # MLflow tracking URI; None: $MLFLOW_TRACKING_URI if set, else SQLite under DATA_DIR/mlruns/
