"""Hyperparameters of one benchmark run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class HParams:
    """Model and training settings (defaults: a small version of Xu et al.'s setup).

    Attributes:
        hidden: width of every hidden layer and of the pooled features.
        layers: message-passing layers (graph and node tasks).
        mlp_layers: linear layers of each message MLP.
        node_mlp_layers: layers of the node MLP before the readout (0: none).
        output_layers: layers of the output head (last one linear).
        encoder_layers, decoder_layers: DeepSets encoder and decoder depth.
        last_activation: message MLPs, node MLP and set encoder end in a ReLU, so the
            poolings see non-negative inputs (Xu et al.); ``False`` ends them linearly,
            ``"softplus"`` in a softplus (strictly positive inputs, no dead channel;
            :class:`gnpool.models.MLP`).
        epochs, batch_size, lr, weight_decay: Adam on the MSE loss.
        lr_step, lr_gamma: multiply the learning rate by ``lr_gamma`` every ``lr_step``
            epochs (Xu et al.: 50, 0.5); ``lr_step = 0`` keeps it constant.
        pool_lr: learning rate of the pooling parameters (GNP's p and q, PowerMean's p,
            Softmax's t, LAF's exponents and weights, GenAgg's alpha, beta and f), which
            get no weight decay; ``None`` uses ``lr``.
        pool_split: share of the training samples, the largest ones, whose batches
            train only the pooling parameters, alternating batch by batch with those of
            the other samples, which train only the rest of the model: the pooling is
            chosen by how the model does on sizes it was not fitted on (0: every
            parameter learns from every batch).
        snap: share of the epochs, at the end, trained with every GNP channel that is near
            sum, mean, max or min fixed exactly at it (kept only if validation agrees; see
            :func:`gnpool.bench.train.fit`); 0 never snaps.
        snap_tolerance: largest distance at which a GNP channel snaps: relative output
            error on the validation inputs, or with ``snap_parts`` or ``pool_prior``
            Euclidean distance of a part's ``(p_unit, beta)`` to a classic point.
        snap_parts: snap each part of each GNP by its parameters
            (:func:`gnpool.training.snap_parts_`) instead of whole channels by their output
            (:func:`gnpool.training.snap_to_classic`); a part at ``p_unit`` +-1 with a
            size exponent of a few hundredths is then fixed at exactly max or min.
        pool_prior: weight of :func:`gnpool.training.classic_prior` in the loss (relative
            to the batch's MSE), raised linearly from 0 to this value until the snap epoch
            (or the last one); with ``snap``, each part of each GNP within
            ``snap_tolerance`` of a classic point in ``(p_unit, beta)`` is then fixed at it
            (:func:`gnpool.training.snap_parts_`) instead of the snap by output distance;
            0: no prior.
        pool_prior_start: share of the epochs before the snap epoch (or the last one)
            trained without the prior, which then rises linearly; 0 starts the rise at
            the first epoch.
        snap_search: with ``snap`` (and without ``pool_prior``), choose each GNP's
            pooling at the snap epoch by validation instead of by distance: module by
            module, the learned pooling and sum, mean, max and min are each trained this
            many epochs, and the classic one with the lowest validation loss is kept unless
            the learned one's is lower by more than 5% (:func:`gnpool.bench.train.snap_search`);
            0: snap by distance.
        retrain: search, then retrain (0: off): the model first trains this share of
            ``epochs`` (up to 4 times as many) as configured (the search), then each part
            of each learnable GNP is set to its nearest classic point
            (:func:`gnpool.training.snap_parts_`, within ``retrain_tolerance``), every
            pooling parameter is frozen, the other weights start again from the run's
            initialisation and train all ``epochs`` (the retrain, through
            :func:`gnpool.training.transfer_pooling_`); the retrained model is kept unless
            its validation loss is more than 5% above the searched one's
            (:func:`gnpool.bench.train.search_and_retrain`). The run trains
            ``max(1, round(retrain * epochs)) + epochs`` epochs in all, ``epochs`` more
            with ``retrain_select_activation`` (the search's own snap, ``snap``, falls
            within its share); a model without a learnable pooling has nothing to search
            and trains ``epochs`` once.
        retrain_tolerance: largest distance in ``(p_unit, beta)`` at which a part is set
            to a classic point before the retrain; ``None``: every part is.
        retrain_last_activation: ``last_activation`` of the retrained model (``True``,
            ``False`` or ``"softplus"``); ``None``: that of the search.
        retrain_select_activation: retrain twice from the same search, with message
            MLPs, node MLP and set encoder ending as ``retrain_last_activation`` says and
            ending the other way (ReLU-ended if that is linear or softplus, linear-ended
            if it is ReLU), and keep the retrained model with the lower validation loss
            (the loss ``select_on`` names; the first on a tie; then the ``SNAP_SLACK``
            rule against the search as usual). The run
            trains ``epochs`` more epochs; with ``select_channels`` only the model as
            configured retrains twice, the one with a pooling per channel once (not at
            all with ``select_channels_retrain=False``). Each
            GNP's record gets ``retrain.last_activation``: both retrains' validation
            losses (``val_mse_<ending>``) and the lower one (``"kept"``: ``"linear"``,
            ``"relu"`` or ``"softplus"``, the retrain compared with the search;
            ``retrain.kept`` says whether it beat the search).
        conjugate_margin: with ``retrain_conjugates``, a conjugate's retrain competes only
            where its validation loss is below ``1 / conjugate_margin`` of the plain
            ReLU-ended retrain's (>= 1; 1: always;
            :func:`gnpool.training.choose_model`). Tuning stage 36 adopted 2.
        retrain_first_ending: with ``retrain_select_activation``, ``False`` leaves out
            the model as configured's first retrain, the one ending as
            ``retrain_last_activation`` says (linear-ended in the profiles): it retrains
            only the other way (ReLU-ended) and at the conjugates; the model with a
            pooling per channel still retrains once, as ``retrain_last_activation`` says
            (unless ``select_channels_retrain=False``). One training fewer per run
            (tuning stage 35; ``--drops``).
        retrain_conjugates: with ``retrain_select_activation``, also retrain the model
            as configured (not the one with a pooling per channel) ReLU-ended with the
            searched pooling's sign conjugates: each non-empty set of its GNP modules
            that the conjugation changes (max and min trade places,
            :meth:`gnpool.GNPAggregation.conjugate_`), conjugated together
            (:func:`gnpool.bench.train.conjugate_sets`; ``2 ** n - 1`` retrains for
            ``n`` such modules, at most 3). They compete as ReLU-ended retrains
            (``"relu-conjugate-<k>"`` in the run's ``candidates``, ``select_relu_margin``
            applies); each GNP's ``retrain`` record lists the sets (``conjugates``, in
            the order of the retrains) and says whether the kept retrain conjugated that
            GNP (``conjugated``, a bool). A model with more than 3 learnable GNP modules
            raises ``ValueError`` before training.
        retrain_classic_r2: with ``retrain_conjugates``, where the lowest validation MSE of
            the model as configured's retrains (the plain ones and the conjugates') leaves
            its validation R^2 (as ``search_refit_r2`` reads it) below this value (or NaN),
            and the search left a GNP module with a channel that is not exactly the max or
            the min of its input (e.g. a sum or a mean), the model retrains ReLU-ended once
            more for each plan of :func:`gnpool.training.classic_end_plans`: every
            assignment of max or min to those modules, the others as searched or conjugated
            (``2 ** n`` retrains for ``n`` learnable GNP modules). They compete as the
            conjugates' retrains do (``"relu-classic-<k>"`` in the run's ``candidates``;
            ``conjugate_margin`` and ``select_relu_margin`` apply); each GNP's ``retrain``
            record gets the R^2 (``classic_r2``), the plans (``classic_ends``) and what the
            kept plan did to that GNP (``classic_end``: ``"max"``, ``"min"``,
            ``"conjugate"`` or ``"searched"``; ``None`` unless a classic-end retrain was
            kept). ``None``: never (<= 1); the profiles set 0.9 (tuning stage 38). A search
            that leaves, on ``shortest_path``, one GNP at the mean gives conjugates that
            cannot reach min-min or min-max; its retrains then fit badly (tuning stage 37:
            R^2 0.62 and 0.78).
        retrain_heading: a part that ends the search still nearest the classic point
            nearest its start, but at least this far from its start in ``(p_unit,
            beta)``, is set to the classic point it was heading for (the one within 45
            degrees of its displacement) instead of back to that start; ``None``: every
            part goes to its nearest classic point.
        retrain_heading_exponent: with ``retrain_heading``, a part heads only for max or
            min (a displacement along ``p_unit``); one heading for sum (along ``beta``,
            the size exponent) goes to its nearest classic point.
        retrain_whole: after heading (``retrain_heading``) and before the part-wise
            setting, set each live channel of each learnable GNP to the classic pooling
            of its whole input (sum, mean, max or min of ``x``, both parts together)
            whose output is nearest its own on the validation inputs it receives
            (:func:`gnpool.training.snap_to_classic` with no tolerance; a channel that
            is 0 on every input is left to the part-wise setting, within
            ``retrain_tolerance``). Every GNP then computes one of the four poolings the
            fixed configurations choose from, instead of a mix of two parts (the max of
            the positive part minus the mean of the negative one).
        retrain_mirror: after the part-wise setting, set each part of each learnable GNP
            that received no input in the search (the negative part of a channel fed only
            non-negative values, by a softplus- or ReLU-ended MLP, on the training split)
            to the mirror of its other part's classic point
            (:func:`gnpool.training.mirror_idle_parts_`): the channel then computes that
            pooling of its whole input (``[min, max]``, the min of ``x``) in a retrain
            with linear-ended MLPs, instead of the min of the positive part minus the
            never-trained initial pooling (the mean) of the negative one.
        gnp_per_channel: every GNP gets one pooling per channel (``channels`` =
            ``hidden``, the width of its input) whatever ``gnp_kwargs`` and the
            configuration say.
        select_channels: train a model with a learnable GNP twice from the run's seed,
            as configured and with ``gnp_per_channel``, and keep the one with the lower
            validation loss (the loss ``select_on`` names; the shared one on a tie); the
            run trains both models' epochs. Each GNP's record says which was kept and
            both validation MSEs over the whole split.
        select_channels_retrain: with ``select_channels`` and ``retrain``, ``False``
            leaves out the retrain of the model with one pooling per channel: its search
            is its only model (``"per_channel/search"``; the search trains as with the
            retrain, to the bit). One training fewer per run (tuning stage 40).
        select_on: the validation loss that chooses among a run's trained models (the
            retrain's two MLP endings, the retrain against its search, one pooling per
            GNP against one per channel; :func:`gnpool.bench.train.choose_model`):
            ``"val"`` the MSE over the whole validation split, ``"val_large"`` the MSE over
            the share :data:`gnpool.bench.train.LARGE_SHARE` of its targets whose samples
            are largest, a size shift inside the training distribution. The epoch a model
            keeps is chosen on the whole validation split either way.
        search_refit_r2: with ``retrain``, a search whose validation R^2 (``1 -``
            validation MSE ``/`` variance of the validation targets, per output channel
            and averaged) is below this value trains again from the same initialisation
            with ReLU-ended MLPs, and the search with the lower validation MSE goes on to
            the retrain (``None``: never; <= 1; no effect where ``last_activation`` is
            ``True`` already). A search that fitted nothing, stuck at predicting the mean,
            has R^2 near 0 and leaves the retrain no pooling to start from.
        select_relu_margin: with ``retrain_select_activation``, the ReLU-ended retrain
            (the fixed configurations' model family, Xu et al.'s) is kept unless another
            model's loss is below ``1 / select_relu_margin`` of its own (>= 1; 1: the
            lowest loss wins; :func:`gnpool.bench.train.choose_model` ``relu_margin``).
        gnp_share_aggr: a model whose aggregation is ``"gnp"`` has one GNP module, one set
            of pooling parameters, for all its message-passing layers
            (:class:`gnpool.models.MessageMLPGNN` ``share_aggr``), as a fixed
            configuration has one aggregation for every layer; the readout keeps its own.
        gnp_kwargs: keyword arguments of every :class:`~gnpool.GNPAggregation`
            (``p``, ``q``, ``p_neg``, ``q_neg``, ``p_min``, ``p_max``).
        gnp_readout_kwargs: merged over ``gnp_kwargs`` for a GNP readout or set pooling.
        gnp_negative_share: share of each GNP's channels whose exponents ``p`` and
            ``p_neg`` start negative (same magnitude). The sign of an exponent never
            changes in training, and only a negative one can become min on non-negative
            inputs.
        gnp_p_spread: if set, the channels' initial ``|p|`` run geometrically from the
            initial ``|p|`` to this value (within each sign), so that every GNP starts
            as a bank of poolings from sum- or mean-like to max- or min-like.
        eval_batch_size: batch size of evaluation.
        factorized_messages: graph and node tasks compute each message MLP's first linear
            layer per node instead of per edge (:class:`gnpool.models.MessageMLPConv`
            ``factorized``): the same model up to float rounding, with a training step
            1.3x to 1.5x as fast on the standard profile's ``shortest_path`` and
            ``max_degree`` (``python experiments/bench_message_mlp.py``). ``False``, the
            per-edge form, is what the runs stored before it were made with, so that they
            repeat; the standard profile sets it.
        flush_denormal: train and evaluate with subnormal floats (magnitudes below
            ``torch.finfo(dtype).tiny``, 1.2e-38 in float32) flushed to zero on the CPU
            (:func:`gnpool.bench.train.flush_denormal`, :func:`torch.set_flush_denormal`;
            on the calling thread only: with more than one torch thread the others keep
            them, and a warning says so).
            Arithmetic on them takes the processor's slow path, and a trained model can
            meet them anywhere in its forward and backward: a training epoch of
            the standard profile's ``shortest_path`` search model took 1.7x as long
            unflushed (``python experiments/bench_denormal.py``). Values that small
            count as 0.
        size_bins: bins of the test sizes the per-size MAPE is reported in.

    Every value is checked against its field's type and range when an ``HParams`` is
    made (``ValueError`` naming the field, the value and what is expected), so a bad
    setting fails before anything trains. An int given for a float setting is stored as
    that float, so ``retrain=1`` and ``retrain=1.0`` identify the same runs.
    """

    hidden: int = 64
    layers: int = 2
    mlp_layers: int = 2
    node_mlp_layers: int = 0
    output_layers: int = 1
    encoder_layers: int = 2
    decoder_layers: int = 1
    last_activation: bool | Literal["softplus"] = True
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 1e-5
    lr_step: int = 0
    lr_gamma: float = 0.5
    pool_lr: float | None = None
    pool_split: float = 0.0
    snap: float = 0.0
    snap_tolerance: float = 0.1
    snap_parts: bool = False
    pool_prior: float = 0.0
    pool_prior_start: float = 0.0
    snap_search: int = 0
    retrain: float = 0.0
    retrain_tolerance: float | None = None
    retrain_last_activation: bool | Literal["softplus"] | None = None
    retrain_select_activation: bool = False
    retrain_first_ending: bool = True
    retrain_conjugates: bool = False
    conjugate_margin: float = 1.0
    retrain_classic_r2: float | None = None
    retrain_heading: float | None = None
    retrain_heading_exponent: bool = False
    retrain_whole: bool = False
    retrain_mirror: bool = False
    gnp_per_channel: bool = False
    select_channels: bool = False
    select_channels_retrain: bool = True
    select_on: Literal["val", "val_large"] = "val"
    select_relu_margin: float = 1.0
    search_refit_r2: float | None = None
    gnp_share_aggr: bool = False
    gnp_kwargs: dict[str, Any] = field(default_factory=dict)
    gnp_readout_kwargs: dict[str, Any] = field(default_factory=dict)
    gnp_negative_share: float = 0.0
    gnp_p_spread: float | None = None
    eval_batch_size: int = 256
    flush_denormal: bool = False
    factorized_messages: bool = False
    size_bins: int = 5

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            check_value(f.name, value, hints[f.name])
            # An int given for a float setting (--set retrain=1) is stored as the float, so
            # that it identifies the same runs as 1.0 (HParams.key).
            if (isinstance(value, int) and not isinstance(value, bool)
                    and _accepts_float(hints[f.name])):
                object.__setattr__(self, f.name, float(value))
        if self.snap_search and not self.snap:
            raise ValueError(f"hyperparameter snap_search={self.snap_search} needs snap > 0 "
                             "(the share of the epochs after the choice), got snap=0")
        if self.snap_search and (self.pool_prior or self.snap_parts):
            raise ValueError(f"hyperparameters snap_search={self.snap_search} and pool_prior="
                             f"{self.pool_prior}, snap_parts={self.snap_parts} exclude each "
                             "other (the prior and snap_parts snap part-wise); keep one")
        given = [f"{name}={getattr(self, name)!r}"
                 for name in ("retrain_tolerance", "retrain_last_activation",
                              "retrain_heading")
                 if getattr(self, name) is not None]
        if not self.retrain and given:
            raise ValueError(f"hyperparameters {', '.join(given)} apply only with retrain > 0 "
                             "(the share of the epochs spent searching), got retrain=0")
        if self.retrain_conjugates and not self.retrain_select_activation:
            raise ValueError("hyperparameter retrain_conjugates=True applies only with "
                             "retrain_select_activation=True (the conjugates' ReLU-ended "
                             "retrains compete with the run's ReLU-ended retrain), got "
                             "retrain_select_activation=False")
        if self.conjugate_margin != 1 and not self.retrain_conjugates:
            raise ValueError(f"hyperparameter conjugate_margin={self.conjugate_margin} "
                             "applies only with retrain_conjugates=True, got "
                             "retrain_conjugates=False")
        if self.retrain_classic_r2 is not None and not self.retrain_conjugates:
            raise ValueError(f"hyperparameter retrain_classic_r2={self.retrain_classic_r2!r} "
                             "applies only with retrain_conjugates=True (its retrains extend "
                             "the conjugates'), got retrain_conjugates=False")
        if not self.retrain_first_ending and not self.retrain_select_activation:
            raise ValueError("hyperparameter retrain_first_ending=False applies only with "
                             "retrain_select_activation=True (it leaves out the first of its "
                             "two retrains), got retrain_select_activation=False")
        if self.retrain_select_activation and not self.retrain:
            raise ValueError("hyperparameter retrain_select_activation=True applies only with "
                             "retrain > 0 (the share of the epochs spent searching), got "
                             "retrain=0")
        if self.search_refit_r2 is not None and not self.retrain:
            raise ValueError(f"hyperparameter search_refit_r2={self.search_refit_r2!r} "
                             "applies only with retrain > 0 (the share of the epochs spent "
                             "searching), got retrain=0")
        for name in ("retrain_whole", "retrain_mirror"):
            if getattr(self, name) and not self.retrain:
                raise ValueError(f"hyperparameter {name}=True applies only with retrain > 0 "
                                 "(the share of the epochs spent searching), got retrain=0")
        if not self.select_channels_retrain and not (self.select_channels and self.retrain):
            raise ValueError("hyperparameter select_channels_retrain=False applies only with "
                             "select_channels=True and retrain > 0 (it leaves out the "
                             "retrain of the model with one pooling per channel), got "
                             f"select_channels={self.select_channels}, "
                             f"retrain={self.retrain}; set select_channels_retrain=true as "
                             "well to leave either out")
        if self.select_channels and self.gnp_per_channel:
            raise ValueError("hyperparameters select_channels=True and gnp_per_channel=True "
                             "exclude each other (select_channels trains the model with and "
                             "without gnp_per_channel); keep one")
        if self.select_on != "val" and not (self.retrain or self.select_channels):
            raise ValueError(f"hyperparameter select_on={self.select_on!r} applies only with "
                             "retrain > 0 or select_channels=True (a run with one model has "
                             "nothing to choose), got retrain=0 and select_channels=False")
        if self.select_relu_margin != 1.0 and not self.retrain_select_activation:
            raise ValueError(f"hyperparameter select_relu_margin={self.select_relu_margin!r} "
                             "applies only with retrain_select_activation=True (the run's "
                             "only ReLU-ended retrain), got retrain_select_activation=False")
        if self.retrain_heading_exponent and self.retrain_heading is None:
            raise ValueError("hyperparameter retrain_heading_exponent=True applies only with "
                             "retrain_heading (the travel that makes a part head), got "
                             "retrain_heading=None")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> dict[str, Any]:
        """:meth:`to_dict` without the settings added after 0.2 that hold their default:
        what identifies a run, so that runs stored before a setting existed stay valid."""
        out = self.to_dict()
        for name, default in ADDED_AFTER_0_2.items():
            if out[name] == default:
                del out[name]
        return out

    def updated(self, values: Mapping[str, Any]) -> HParams:
        """A copy with ``values`` applied (unknown names raise ``ValueError``)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"hyperparameters {unknown} are unknown; expected some of "
                             f"{', '.join(sorted(known))}")
        return dataclasses.replace(self, **dict(values))


#: Settings added after 0.2 and their defaults (left out of :meth:`HParams.key` at them).
ADDED_AFTER_0_2: dict[str, Any] = {"snap_tolerance": 0.1, "snap_parts": False,
                                   "pool_prior": 0.0,
                                   "pool_prior_start": 0.0, "snap_search": 0,
                                   "retrain": 0.0, "retrain_tolerance": None,
                                   "retrain_last_activation": None,
                                   "retrain_heading": None,
                                   "retrain_heading_exponent": False,
                                   "retrain_whole": False, "gnp_per_channel": False,
                                   "select_channels": False,
                                   "retrain_select_activation": False,
                                   "gnp_share_aggr": False, "retrain_mirror": False,
                                   "select_on": "val", "select_relu_margin": 1.0,
                                   "retrain_conjugates": False, "flush_denormal": False,
                                   "search_refit_r2": None, "retrain_first_ending": True,
                                   "conjugate_margin": 1.0, "retrain_classic_r2": None,
                                   "select_channels_retrain": True,
                                   "factorized_messages": False}

# Allowed ranges beyond the type: (test, what it means).
_POSITIVE: tuple[Callable[[Any], bool], str] = (lambda v: v > 0, "> 0")
_AT_LEAST_1: tuple[Callable[[Any], bool], str] = (lambda v: v >= 1, ">= 1")
_AT_LEAST_0: tuple[Callable[[Any], bool], str] = (lambda v: v >= 0, ">= 0")
_SHARE: tuple[Callable[[Any], bool], str] = (lambda v: 0 <= v < 1, "in [0, 1)")
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "hidden": _AT_LEAST_1, "layers": _AT_LEAST_1, "mlp_layers": _AT_LEAST_1,
    "node_mlp_layers": _AT_LEAST_0, "output_layers": _AT_LEAST_1,
    "encoder_layers": _AT_LEAST_1, "decoder_layers": _AT_LEAST_1, "epochs": _AT_LEAST_1,
    "batch_size": _AT_LEAST_1, "lr": _POSITIVE, "weight_decay": _AT_LEAST_0,
    "lr_step": _AT_LEAST_0, "lr_gamma": _POSITIVE, "pool_lr": _POSITIVE,
    "pool_split": _SHARE, "snap": _SHARE, "pool_prior": _AT_LEAST_0,
    "snap_tolerance": _AT_LEAST_0,
    "pool_prior_start": _SHARE,
    "snap_search": _AT_LEAST_0, "retrain": (lambda v: 0 <= v <= 4, "in [0, 4]"),
    "retrain_tolerance": _AT_LEAST_0, "retrain_heading": _AT_LEAST_0,
    "gnp_negative_share": (lambda v: 0 <= v <= 1, "in [0, 1]"), "gnp_p_spread": _POSITIVE,
    "eval_batch_size": _AT_LEAST_1, "size_bins": _AT_LEAST_1,
    "select_relu_margin": _AT_LEAST_1, "conjugate_margin": _AT_LEAST_1,
    "search_refit_r2": (lambda v: v <= 1, "<= 1"),
    "retrain_classic_r2": (lambda v: v <= 1, "<= 1"),
}


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in typing.get_args(hint))
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    if origin is dict or hint is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return True


def _expected(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_expected(arg) for arg in typing.get_args(hint))
    names = {bool: "true or false", int: "an int", float: "a finite number",
             type(None): "null"}
    if hint in names:
        return names[hint]
    if origin is typing.Literal:
        return " or ".join(json.dumps(arg) for arg in typing.get_args(hint))
    return "a JSON object with string keys" if origin is dict or hint is dict else str(hint)


def _accepts_float(hint: Any) -> bool:
    # float, or float | None, but not a type that also takes ints as ints.
    args = typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType,
                                                                 typing.Union) else (hint,)
    return float in args and int not in args


def check_value(name: str, value: Any, hint: Any) -> None:
    """Raise ``ValueError`` unless ``value`` has the type ``hint`` and lies in the range
    of hyperparameter ``name``."""
    if not _matches(value, hint):
        raise ValueError(f"hyperparameter {name} must be {_expected(hint)}, got {value!r} "
                         f"({type(value).__name__})")
    rule = RANGES.get(name)
    if rule is not None and value is not None and not rule[0](value):
        raise ValueError(f"hyperparameter {name} must be {rule[1]}, got {value!r}")


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true, null, {...}), else text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items: list[str] | None, check: bool = False) -> dict[str, Any]:
    """``["epochs=5", "gnp_kwargs={\\"p_max\\": 50}"]`` -> ``{"epochs": 5, ...}``.

    With ``check`` every key must be a field of :class:`HParams` and every value of its
    type and range (``ValueError`` naming the ``--set`` item otherwise).
    """
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(HParams) if check else {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set value {item!r} is invalid; expected KEY=VALUE")
        out[key] = parse_value(value)
        if check:
            if key not in hints:
                raise ValueError(f"--set {item!r}: {key!r} is not a hyperparameter; expected "
                                 f"one of {', '.join(hints)}")
            try:
                check_value(key, out[key], hints[key])
            except ValueError as err:
                raise ValueError(f"--set {item!r}: {err}") from None
    return out


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-ready object."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
