"""scikit-learn's ``GradientBoostingClassifier()`` (default settings), refitted fast, bit for bit.

DCI (Eastwood & Williams, ICLR 2018) and downstream_gbt (Locatello et al., ICML 2019) fit one
``GradientBoostingClassifier()`` per factor: 100 stages of depth-3 regression trees, one tree per
class per stage (11,300 trees for dSprites' factors on 10,000 rows). Most of sklearn's time goes
into sorting every feature at every node of every tree. This package is a numba port of sklearn
1.9's algorithm, operation for operation, so every split, raw score and prediction is the one
sklearn computes (tests/test_metrics_gbt.py compares with sklearn itself); only how a node's
samples get sorted differs. Split as sklearn splits it:

- `sort`: introsort (sklearn/utils/_sorting.pyx), run only where tied values make its order
  matter, and the per-fit bookkeeping that decides where;
- `tree`: the best splitter, the MSE criterion and the depth-first builder (sklearn/tree);
- `boosting`: gradient, leaf line search, raw-score updates and the fit (sklearn/ensemble/_gb.py);
- `backend`: where the port applies, and which back-end fitted (`fit_counts`).
"""

from benchmark.metrics.gbt.backend import (
    PORT,
    applies,
    available,
    backend_label,
    fit_counts,
    record_fit,
    reset_fit_counts,
)
from benchmark.metrics.gbt.boosting import fit_gbt, np_sum
from benchmark.metrics.gbt.sort import introsort3_partial

__all__ = ["PORT", "applies", "available", "backend_label", "fit_counts", "fit_gbt",
           "introsort3_partial", "np_sum", "record_fit", "reset_fit_counts"]
