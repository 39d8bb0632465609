"""Deep multi-task survival (study 004): Cox loss, the prognostic/predictive MIL network, its task.

Modules: :mod:`~npcai.survival.deep.losses` (Cox partial log-likelihood, Efron/Breslow ties),
:mod:`~npcai.survival.deep.network` (per-sequence SE-ResNet + attention MIL, shared trunk, heads
g(x) and f(x), log-hazard g + (T - 1/2) f), :mod:`~npcai.survival.deep.data` (time, event,
treatment targets and input checks), :mod:`~npcai.survival.deep.task` (:class:`SurvivalTask`
for the shared trainer).
"""
