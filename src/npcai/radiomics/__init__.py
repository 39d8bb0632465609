"""Handcrafted radiomics baseline: IBSI-style features on the ROI cache, and a penalised
logistic model that produces an ordinary run folder.

Radiomics papers on NPC compare the deep model against handcrafted features with a
penalised model; this package answers "does the deep model beat that?" on the same
patients and the same split (paired DeLong with ``npcai compare``).

Feature package: **pyradiomics-bhklab** (``import radiomics``), the maintained build of
PyRadiomics (the IBSI-benchmarked reference implementation: first order, shape, GLCM, GLRLM,
GLSZM, GLDM, NGTDM). Why this one, as checked on Python 3.11 with numpy 2.x:

* ``pyradiomics`` 3.1.0 (2023) has no wheel for Python 3.11 and its sdist does not build
  against numpy 2;
* ``pyradiomics-bhklab`` 3.1.4 builds from its sdist (one small C extension; a C compiler is
  needed) against numpy 2 and SimpleITK 2.5, adds only PyWavelets, pykwalify and docopt, and
  changes no pinned package;
* ``mirp`` 2.7 installs, but requires pandas >= 3 (npcai runs on pandas 2) and ITK (~100 MB).

Modules, one concern each:

``regions``    which pixels of an ROI slice the features describe (what the network saw).
``extractor``  the pyradiomics settings and one 2D slice's feature vector.
``table``      the on-disk feature table ``COHORT/roi/.radiomics/NAME/`` (the only reader/writer).
``model``      standardisation, feature selection and the elastic-net logistic model.
``train``      ``npcai radiomics train``: a run folder through :mod:`npcai.runs`
               (one split, a reused split, or K folds).
``cli``        ``npcai radiomics extract|train``.
"""
from __future__ import annotations

__all__ = ["PACKAGE"]

#: the distribution that provides ``import radiomics``
PACKAGE = "pyradiomics-bhklab"
