"""A 2-D map of the images' features, for people to look at (not for any decision): PCA to at most 50
dimensions, then scikit-learn's t-SNE, seeded. Neighbours on the map are images the network finds alike."""
from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from .svm import l2_normalize


def embed(features: np.ndarray, random_state: int = 0) -> np.ndarray:
    """(N, 2) map coordinates of the (N, D) features (L2-normalised first, as the SVM sees them)."""
    x = l2_normalize(np.asarray(features, np.float32))
    n = len(x)
    if n < 4:
        return np.zeros((n, 2), np.float32)
    x = PCA(n_components=min(50, x.shape[1], n - 1), random_state=random_state).fit_transform(x)
    perplexity = float(min(30.0, (n - 1) / 3))
    return TSNE(perplexity=perplexity, init="pca", random_state=random_state).fit_transform(x).astype(np.float32)
