"""scikit-learn compatible estimators over :func:`unmix.factorize`.

``NMF`` and ``PCA`` are thin: ``fit`` calls :func:`unmix.factorize`; ``transform`` solves
for the maps of new pixels with the fitted endmembers held fixed (the same loss and
constraints on ``A``).  HyperSpy accepts them: ``s.decomposition(algorithm=NMF(...))``.
Orientation is scikit-learn's: ``X`` is (n_samples = pixels, n_features = channels),
``components_`` (k, channels) are the endmembers, ``transform(X)`` returns the maps.
"""

from __future__ import annotations

from typing import Any

import array_api_compat as aac
import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ._params import document_parameters
from .blocks import as_csr_rows, is_sparse
from .engine import PARAMETERS, OnlineNMF, factorize, fit_maps
from .result import Result

__all__ = ["ESTIMATOR_PARAMETERS", "NMF", "PCA"]

#: The parameters of :class:`NMF` besides ``n_components``: the rows of
#: :data:`unmix.engine.PARAMETERS` marked for the estimator, in the table's order.
ESTIMATOR_PARAMETERS = [name for name, row in PARAMETERS.items() if row.estimator]


class _Base(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared fit / transform / inverse_transform."""

    _preset: str | None = None

    def _validate(self, X: Any, reset: bool) -> Any:
        if is_sparse(X):  # SciPy or pydata sparse: CSR rows, never densified
            X = as_csr_rows(X)
            return validate_data(self, X, reset=reset, accept_sparse="csr", ensure_min_samples=1)
        if aac.is_array_api_obj(X) and not isinstance(X, np.ndarray):
            n_features = int(X.shape[1]) if X.ndim == 2 else None
            if reset:
                self.n_features_in_ = n_features
            elif n_features != self.n_features_in_:
                raise ValueError(
                    f"X has {n_features} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input."
                )
            return X
        return validate_data(
            self, X, reset=reset, dtype=[np.float64, np.float32], ensure_min_samples=1
        )

    def _options(self) -> dict[str, Any]:
        """The keywords of :func:`unmix.factorize`: the table's estimator rows."""
        opts = {name: getattr(self, name) for name in ESTIMATOR_PARAMETERS}
        if opts["regularizers"] is None or isinstance(opts["regularizers"], list):
            opts["regularizers"] = tuple(opts["regularizers"] or ())
        if opts["preset"] is None:
            opts["preset"] = self._preset
        return opts

    def fit(self, X: Any, y: Any = None) -> _Base:
        """Fit the factorization to ``X`` (pixels, channels)."""
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Any, y: Any = None) -> Any:
        """Fit and return the maps ``A`` (pixels, k) of the fit."""
        X = self._validate(X, reset=True)
        k = self.n_components if self.n_components is not None else min(X.shape)
        result = factorize(X, k, **self._options())
        self.__dict__.pop("online_", None)  # a batch fit replaces any online state
        self.result_ = result
        self.components_ = result.S
        self.n_components_ = int(result.S.shape[0])
        self.n_iter_ = result.n_iter
        self.reconstruction_err_ = float(np.sqrt(2.0 * max(result.history["fit"][-1], 0.0)))
        self.mean_ = result.mean
        return result.A

    def transform(self, X: Any) -> Any:
        """Maps of new pixels with the fitted endmembers fixed."""
        check_is_fitted(self, "components_")
        X = self._validate(X, reset=False)
        return self._maps(X, self.result_)

    def inverse_transform(self, X: Any) -> Any:
        """Spectra ``A @ S`` (plus the mean, when centered) of maps ``A`` (pixels, k)."""
        check_is_fitted(self, "components_")
        k = self.components_.shape[0]
        if getattr(X, "ndim", 2) != 2 or X.shape[1] != k:
            raise ValueError(
                f"inverse_transform takes maps (pixels, {k}) of this {k}-component model; "
                f"got shape {tuple(getattr(X, 'shape', ()))}."
            )
        Y = X @ self.components_
        return Y if self.mean_ is None else Y + self.mean_

    def _maps(self, X: Any, result: Result) -> Any:
        raise NotImplementedError

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


@document_parameters(PARAMETERS)
class NMF(_Base):
    """Non-negative (and otherwise constrained) matrix factorization estimator.

    Every parameter maps 1:1 to :func:`unmix.factorize` (see there for the objective).

    Parameters
    ----------
    n_components : int, optional
        Number of components ``k``; None means ``min(n_samples, n_features)``.
    {parameters}

    Attributes
    ----------
    components_ : array (k, n_features)
        Endmembers.
    result_ : Result
        The full result of the fit (history, timings, spec).
    reconstruction_err_ : float
        ``||X - A S||_F`` at the end of the fit (Frobenius loss).
    """

    def __init__(
        self,
        n_components: int | None = None,
        *,
        loss: Any = None,
        solver: str = "auto",
        constraints: Any = None,
        regularizers: Any = None,
        init: Any = None,
        max_iter: int | None = None,
        tol: float | None = None,
        n_restarts: int = 1,
        random_state: Any = None,
        preset: str | None = None,
        spatial_shape: Any = None,
        signal_shape: Any = None,
        solver_options: dict | None = None,
        compress: Any = "auto",
    ) -> None:
        self.n_components = n_components
        self.loss = loss
        self.solver = solver
        self.constraints = constraints
        self.regularizers = regularizers
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.n_restarts = n_restarts
        self.random_state = random_state
        self.preset = preset
        self.spatial_shape = spatial_shape
        self.signal_shape = signal_shape
        self.solver_options = solver_options
        self.compress = compress

    def partial_fit(self, X: Any, y: Any = None) -> NMF:
        """Update the endmembers with one batch of pixels ``X`` (pixels, channels).

        Online NMF (:class:`unmix.OnlineNMF`: sufficient statistics with a forgetting
        factor, Mairal et al. 2010): memory does not grow with the pixels streamed.  Uses
        ``n_components`` (None: the smaller side of the first batch), ``loss``,
        ``constraints``, ``regularizers`` and ``random_state``; the online options
        (``forget``, ``inner_max``, ``n_inner``) may be given in ``solver_options``.
        After it, ``components_`` are the current endmembers and :meth:`transform`
        solves maps against them.  A first call (or one after :meth:`fit`) starts a new
        online fit; :meth:`fit` starts over from the whole data.
        """
        first = not hasattr(self, "online_")
        X = self._validate(X, reset=first)
        if first:
            k = self.n_components if self.n_components is not None else min(X.shape)
            opts = dict(self.solver_options or {})
            self.online_ = OnlineNMF(
                k,
                loss=self.loss,
                constraints=self.constraints,
                regularizers=tuple(self.regularizers or ()),
                random_state=self.random_state,
                **opts,
            )
        A = self.online_.partial_fit(X)
        self.result_ = self.online_.result(A)
        self.components_ = self.online_.S
        self.n_components_ = int(self.online_.S.shape[0])
        self.n_iter_ = self.online_.n_batches
        self.reconstruction_err_ = float(np.sqrt(2.0 * self.online_.history["fit"][-1]))
        self.mean_ = None
        return self

    def _maps(self, X: Any, result: Result) -> Any:
        if hasattr(self, "online_"):
            return self.online_.transform(X)
        return fit_maps(X, result)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.input_tags.sparse = True  # SciPy / pydata sparse X, fitted on its nonzeros
        return tags


class PCA(_Base):
    """PCA through the same framework (centering + orthonormal endmembers, truncated SVD).

    ``transform(X) = (X - mean_) @ components_.T``.
    """

    _preset = "pca"

    def __init__(
        self,
        n_components: int | None = None,
        *,
        random_state: Any = None,
    ) -> None:
        self.n_components = n_components
        self.random_state = random_state

    def _options(self) -> dict[str, Any]:
        return {"preset": "pca", "random_state": self.random_state}

    def _validate(self, X: Any, reset: bool) -> Any:
        if is_sparse(X):
            raise TypeError(
                "PCA centers X, which would fill in every zero of sparse X; pass "
                "X.toarray(), or fit unmix.NMF (sparse-aware) or "
                "sklearn.decomposition.TruncatedSVD (no centering) on the sparse matrix."
            )
        return super()._validate(X, reset)

    def _maps(self, X: Any, result: Result) -> Any:
        return (X - self.mean_) @ self.components_.T
