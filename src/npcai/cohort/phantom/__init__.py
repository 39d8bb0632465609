"""The phantom hospital export: synthetic NPC MRI with planted, known prognostic signal.

``generate_phantom(out)`` writes what a hospital hands over (DICOM MR series, ITK-SNAP-style
NIfTI contours, a clinical CSV) plus ``truth/`` with every patient's latent variables, true
hazards and probabilities, and the Bayes-optimal (oracle) metrics.

Geometry: 230 mm field of view over ``size`` px (0.90 mm/px at 256, 0.45 at 512), 5 mm
slices, orientation [1,0,0,0,1,0] (axial, LPS), origin at the centre of the FOV.

Planted signals (latent variables in :mod:`.clinical`, rendering in :mod:`.anatomy`):

1. **Peritumoural infiltration band (strongest; PFS/DFS, residual tumour).** Bright
   radial stripes and speckle (dark on T1) in a band from the tumour edge out to
   20 px at 512 px = 8.98 mm (10 px at 256, 2.5 px at 64), on every tumour slice. Amplitude
   ``max(0, 100 + 80 z_ring)`` T1c units (capped at 360) against noise SD 18-34, i.e. several
   noise SDs; ``z_ring`` has PFS log-HR 1.80 per SD and residual-tumour logit 1.60 per SD.
   Expanding the tumour mask by ~20 px@512 captures the band; 5 px catches a quarter of it,
   40/60 px add unrelated tissue (dilution).
2. **Tumour interior (weaker).** Speckle amplitude ``max(0, 45 + 20 z_core)``;
   ``z_core`` PFS log-HR 0.40, residual logit 0.50.
3. **Nodes (distant metastasis).** Node brightness/heterogeneity ``max(0, 80 + 55 z_node)``;
   DM log-HR 1.40 per SD of ``z_node`` (N1-N3 only), 0.30 for ``z_ring``.
4. **Treatment interaction.** A dark necrotic core (45 % of the radius, on slices where the
   section is >= 70 % of the maximum) in ~38 % of patients: IC+CCRT multiplies the local
   hazard by exp(-1.10) and the residual odds by exp(-1.80) when present, by exp(+0.30) /
   exp(+0.45) when absent. ``best_treatment`` in truth/ follows from it.
5. **Post-treatment residual tissue** (label 1 at ``post``): radius fraction
   ``0.12 + 0.70 p_residual + N(0, 0.06)`` (0.08-0.85) of the pre tumour; band amplitude scaled by
   ``0.3 + 0.7 x fraction``; nodes halve in radius.
6. **Distractors (no signal).** 3-6 bright blobs at least 8 mm beyond the band, a posterior
   cerebellum-like folia texture with random amplitude, mucosal thickening at post.
7. **Clinical.** T and N stage correlate 0.35 with ``z_ring`` / ``z_node`` and have small
   direct effects; EBV DNA and age act mildly. Physicians give IC+CCRT to advanced stages.

Oracle (120 patients, seed 0): pfs-median AUC ~0.88, distant metastasis ~0.80,
residual tumour ~0.86, PFS C-index ~0.83 (see ``truth/oracle.json``; each entry names
the truth column it scores with under ``"score"``).

``truth/patients.csv`` columns: ``hospital_id``, ``centre``, the latents (``z_ring``,
``z_core``, ``z_node``, ``necrosis``, ``has_nodes``, ``t_stage_num``, ``n_stage_num``), true
risks under the received treatment (``log_hazard_{pfs,dfs,os,dmfs}``, ``p_pfs_median`` with
``pfs_t_star_months``, ``p_distant_metastasis``, ``p_residual``), counterfactuals
(``log_hazard_pfs_{ccrt,ic_ccrt}``, ``dfs5_{ccrt,ic_ccrt}`` = 5-year DFS,
``p_residual_{ccrt,ic_ccrt}``), ``best_treatment`` (higher 5-year DFS),
``best_treatment_residual``, ``followup_potential_months``, and rendering facts per timepoint
(``pre_tumour_radius_mm``, ``pre_ring_amplitude``, ``pre_n_nodes``, ``post_residual_fraction``...).

Examples:
    >>> from npcai.cohort.phantom import generate_phantom
    >>> summary = generate_phantom("/tmp/export", patients=16, size=64, slices=4)  # doctest: +SKIP
"""
from npcai.cohort.phantom.clinical import CLINICAL_COLUMNS, simulate_patients
from npcai.cohort.phantom.generate import (PHANTOM_VERSION, SEQUENCES, generate_phantom,
                                           signal_description, summary_lines, summary_table,
                                           validate_parameters)
from npcai.cohort.phantom.truth import load_signal, load_truth, oracle_metrics, pfs_median_labels

__all__ = [
    "generate_phantom", "load_truth", "load_signal", "simulate_patients", "oracle_metrics",
    "pfs_median_labels", "summary_lines", "summary_table", "validate_parameters",
    "signal_description", "CLINICAL_COLUMNS", "PHANTOM_VERSION", "SEQUENCES",
]
