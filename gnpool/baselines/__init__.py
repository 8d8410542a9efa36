"""Other authors' learnable aggregations, for comparison with gnpool's own operators.

Plain-torch PyG aggregations built from the papers' definitions (none of the authors'
code is used), kept apart from gnpool's GNP and AttSets:

- :class:`LAFAggregation`: LAF (Pellegrini et al., IJCAI 2021);
- :class:`GenAggAggregation`: GenAgg's augmented f-mean with a learned invertible ``f``
  (Kortvelesy et al., NeurIPS 2023), and :class:`GenAggPowerAggregation`, its earlier
  parametric power-mean form;
- :func:`pyg_set_readout`: PyG's ``DeepSetsAggregation``, ``SetTransformerAggregation`` and
  ``VariancePreservingAggregation`` with their constructor arguments chosen.

Each learnable class lists its pooling parameters in ``pooling_parameter_names`` (for
optimiser groups). After :func:`gnpool.register` the names ``'laf'``, ``'genagg'`` and
``'genaggpower'`` resolve in PyG like its own aggregations.
"""

from . import bijections
from .genagg import GenAggAggregation
from .genagg_power import GenAggPowerAggregation
from .laf import LAFAggregation
from .pyg_readouts import SET_READOUTS, is_set_readout, pyg_set_readout

__all__ = [
    "SET_READOUTS", "GenAggAggregation", "GenAggPowerAggregation", "LAFAggregation",
    "bijections", "is_set_readout", "pyg_set_readout",
]
