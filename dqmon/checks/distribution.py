"""Distribution drift of one column against a reference: PSI, KS, chi-square, unseen categories.

Without `by:` the current values come from the batch's fused query (sorted finite values of
the column); with `by:` one group-by gives each segment's values, and each segment is compared
to its own reference. The check reports its worst segment; segment names stay in details,
never in labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from dqmon.batch import MicroBatch
from dqmon.checks.base import Check, CheckContext
from dqmon.checks.reference import RollingReference, thin
from dqmon.checks.registry import register
from dqmon.checks.stats import bin_counts, chi_square, ks_pvalue, ks_statistic, psi, quantile_edges
from dqmon.config.checks import DistributionSpec
from dqmon.results import CheckResult, Status
from dqmon.tables import read_table

ALL = "__all__"


def _is_categorical(dtype: pl.DataType) -> bool:
    return dtype in (pl.String, pl.Categorical, pl.Boolean) or isinstance(dtype, pl.Enum)


@register
class DistributionCheck(Check[DistributionSpec]):
    kind = "distribution"
    spec_type = DistributionSpec

    def __init__(self, spec: DistributionSpec, name: str, ctx: CheckContext) -> None:
        super().__init__(spec, name, ctx)
        self.rolling: RollingReference | None = None
        self.fixed: dict[str, np.ndarray[Any, Any]] | None = None
        # numeric or categorical, fixed by the first batch (or the spec) so a retyped column is an error
        self._mode: bool | None = spec.categorical
        # a fixed reference's PSI edges and counts, computed once per segment (not every batch)
        self._fixed_bins: dict[int, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
        if spec.reference.rolling is not None:
            self.rolling = RollingReference(
                spec.reference, ctx.store, self.state_key("reference"), spec.max_segments
            )

    # ------------------------------------------------------------------ batch values
    def _categorical(self, dtype: pl.DataType) -> bool:
        return self.spec.categorical if self.spec.categorical is not None else _is_categorical(dtype)

    def aggregations(self, schema: pl.Schema) -> Sequence[pl.Expr]:
        column = self.spec.column
        if self.spec.by is not None or column not in schema or self._categorical(schema[column]):
            return ()
        if not schema[column].is_numeric():
            return ()
        x = pl.col(column).cast(pl.Float64)
        return [x.filter(x.is_finite()).sort().implode().alias("sorted")]

    def _current(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> dict[str, np.ndarray[Any, Any]]:
        column, by = self.spec.column, self.spec.by
        df = batch.df
        categorical = self._categorical(df.schema[column])
        if by is None and "sorted" in aggregates:
            values = aggregates["sorted"]
            return {ALL: values.to_numpy() if values is not None else np.array([])}
        if not categorical and not df.schema[column].is_numeric():
            raise TypeError(
                f"column {column!r} is {df.schema[column]}; numeric metrics need numbers "
                "(set categorical: true to compare categories)"
            )
        value = pl.col(column).cast(pl.String) if categorical else pl.col(column).cast(pl.Float64)
        keep = value.is_not_null() if categorical else value.is_finite()
        if by is None:
            return {ALL: df.select(value.filter(keep).sort()).to_series().to_numpy()}
        if by not in df.columns:
            raise KeyError(f"segment column {by!r} missing from the batch")
        grouped = (
            df.lazy()
            .select(pl.col(by).cast(pl.String).alias("segment"), value.alias("v"))
            .filter(pl.col("v").is_not_null())
            .group_by("segment")
            .agg(pl.col("v").sort())
            .head(self.spec.max_segments)
            .collect(engine="in-memory")
        )
        out = {}
        for segment, values in zip(grouped["segment"].to_list(), grouped["v"].to_list(), strict=True):
            array = np.asarray(values)
            if not categorical:
                array = array[np.isfinite(array)]
            out[str(segment)] = array
        return out

    # ------------------------------------------------------------------ reference
    def _load_fixed(self, categorical: bool) -> dict[str, np.ndarray[Any, Any]]:
        if self.fixed is None:
            assert self.spec.reference.file is not None
            frame = read_table(self.ctx.base_dir / self.spec.reference.file)
            value = pl.col(self.spec.column).cast(pl.String if categorical else pl.Float64).drop_nulls()
            if not categorical:
                value = value.filter(value.is_finite())
            if self.spec.by is None:
                values = frame.select(value).to_series().to_numpy()
                self.fixed = {ALL: np.sort(thin(values, self.spec.reference.max_rows))}
            else:
                grouped = frame.group_by(pl.col(self.spec.by).cast(pl.String)).agg(value)
                self.fixed = {
                    str(seg): np.sort(thin(np.asarray(vals), self.spec.reference.max_rows))
                    for seg, vals in grouped.iter_rows()
                }
        return self.fixed

    def _reference(self, segment: str, now: float, categorical: bool) -> np.ndarray[Any, Any]:
        if self.rolling is not None:
            return np.sort(self.rolling.sample(segment, now))
        return self._load_fixed(categorical).get(segment, np.array([]))

    # ------------------------------------------------------------------ judgement
    def _score(
        self, reference: np.ndarray[Any, Any], current: np.ndarray[Any, Any], categorical: bool
    ) -> tuple[float, dict[str, Any]]:
        metric = self.spec.metric
        if categorical:
            ref_cats, ref_counts = np.unique(reference, return_counts=True)
            cur_cats, cur_counts = np.unique(current, return_counts=True)
            cats = np.union1d(ref_cats, cur_cats)
            r = np.zeros(cats.size)
            c = np.zeros(cats.size)
            r[np.searchsorted(cats, ref_cats)] = ref_counts
            c[np.searchsorted(cats, cur_cats)] = cur_counts
            unseen = c[r == 0].sum() / c.sum()
            details: dict[str, Any] = {"unseen_share": round(float(unseen), 6)}
            unseen_names = cats[(r == 0) & (c > 0)][:10].tolist()
            if unseen_names:
                details["unseen_examples"] = [str(x) for x in unseen_names]
            if metric == "unseen":
                return float(unseen), details
            if metric == "chi2":
                statistic, p = chi_square(r, c)
                details["p_value"] = p
                details["statistic"] = statistic
                return statistic / c.sum(), details
            if metric == "ks":
                raise ValueError("ks needs a numeric column")
            return psi(r, c), details
        if metric in ("unseen", "chi2"):
            raise ValueError(f"{metric} needs a categorical column")
        if metric == "ks":
            d = ks_statistic(reference, current)
            return d, {"p_value": ks_pvalue(d, reference.size, current.size)}
        edges, ref_counts = self._reference_bins(reference)
        cur_counts = bin_counts(current, edges, is_sorted=True)  # numeric current values arrive sorted
        return psi(ref_counts, cur_counts), {"bins": int(edges.size + 1)}

    def _reference_bins(
        self, reference: np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Quantile edges and counts of a sorted reference; cached while the same array is used
        (a fixed reference keeps its arrays; a rolling one is a new array every batch)."""
        cached = self._fixed_bins.get(id(reference)) if self.fixed is not None else None
        if cached is not None:
            return cached
        edges = quantile_edges(reference, self.spec.bins)
        bins = (edges, bin_counts(reference, edges, is_sorted=True))
        if self.fixed is not None and any(reference is ref for ref in self.fixed.values()):
            self._fixed_bins[id(reference)] = bins
        return bins

    def finish(self, batch: MicroBatch, aggregates: Mapping[str, Any]) -> list[CheckResult]:
        threshold = f"<= {self.spec.max:g}"
        if self.spec.column not in batch.df.columns:
            if batch.rows_decoded == 0:
                return [self.result(Status.OK, None, threshold, "empty batch")]
            return [self.result(self.violation, None, threshold, f"column {self.spec.column!r} missing")]
        dtype = batch.df.schema[self.spec.column]
        categorical = self._categorical(dtype)
        if dtype == pl.Null:
            return [self.result(Status.OK, None, threshold, f"column {self.spec.column!r} is all null")]
        if self._mode is None:
            self._mode = categorical
        if categorical != self._mode or (categorical and self.spec.metric == "ks"):
            return [
                self.error(
                    f"column {self.spec.column!r} is {dtype}; this check compares "
                    f"{'categories' if self._mode else 'numeric values'} and {self.spec.metric} "
                    f"needs {'a numeric' if self.spec.metric == 'ks' else 'the same kind of'} column"
                )
            ]
        if not categorical and self.spec.metric in ("unseen", "chi2"):
            return [
                self.error(f"{self.spec.metric} needs a categorical column; {self.spec.column!r} is {dtype}")
            ]
        now = self.ctx.clock().timestamp()
        current = self._current(batch, aggregates)
        scores: dict[str, float] = {}
        extra: dict[str, dict[str, Any]] = {}
        skipped = 0
        for segment, values in current.items():
            reference = self._reference(segment, now, categorical)
            if values.size < self.spec.min_rows or reference.size < self.spec.min_rows:
                skipped += 1
            else:
                scores[segment], extra[segment] = self._score(reference, values, categorical)
            if self.rolling is not None:
                self.rolling.add(segment, values, now, is_sorted=not categorical)
        if not scores:
            return [
                self.result(
                    Status.OK,
                    None,
                    threshold,
                    f"insufficient data (min_rows {self.spec.min_rows}) in {skipped} segment(s)",
                    details={"skipped_segments": skipped},
                )
            ]
        worst = max(scores, key=lambda s: scores[s] if np.isfinite(scores[s]) else -1.0)
        value = scores[worst]
        ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
        details: dict[str, Any] = {
            "metric": self.spec.metric,
            "segments": len(scores),
            "skipped_segments": skipped,
            **extra[worst],
        }
        if self.spec.by is not None:
            details["worst_segments"] = {s: round(v, 6) for s, v in ranked[:5]}
        where = f" in {self.spec.by}={worst}" if self.spec.by is not None else ""
        if value > self.spec.max:
            breaching = sum(1 for v in scores.values() if v > self.spec.max)
            message = (
                f"{self.spec.metric} of {self.spec.column} is {value:.3f}{where}, above {self.spec.max:g}"
                + (f" ({breaching} segments)" if self.spec.by is not None else "")
            )
            return [self.result(self.violation, value, threshold, message, details=details)]
        return [
            self.result(
                Status.OK,
                value,
                threshold,
                f"{self.spec.metric} of {self.spec.column} is {value:.3f}{where}",
                details=details,
            )
        ]
