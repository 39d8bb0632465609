"""Phantom patients: latent variables, clinical table, outcomes and their true probabilities.

Everything here is tabular (no images), so large cohorts can be simulated in milliseconds,
e.g. to test the clinical marginals. The image renderer (:mod:`.anatomy`) reads the latent
variables drawn here and plants them as visible features.

Latent variables (all independent draws, standard normal unless stated):

* ``z_ring``  - peritumoural infiltration; the strongest driver of local/regional progression
  (PFS/DFS log-hazard coefficient 1.80) and of residual tumour (logit coefficient 1.60).
* ``z_core``  - tumour interior heterogeneity; weaker (PFS 0.40, residual 0.50).
* ``z_node``  - nodal aggressiveness; drives distant metastasis (DM log-hazard 1.40, only
  for patients with nodes, N1-N3).
* ``necrosis`` (0/1, 25 % at T1 rising to 49 % at T4) - a visible dark necrotic core; the
  treatment interaction: IC+CCRT multiplies the local hazard by exp(-1.1) with necrosis and
  by exp(+0.30) without, and shifts the residual-tumour logit by -1.8 / +0.45.

T stage correlates 0.35 with ``z_ring`` and N stage 0.35 with ``z_node`` (bigger tumours
infiltrate more), and they carry small direct effects, so TNM is informative but weaker
than the image. Physicians choose IC+CCRT more often for advanced T/N (confounding):
``physician_choice`` is the regimen the physician chose from stage, ``treatment`` the one
received (the same for 92 %; the rest switched for toxicity or refusal). Times are months
from diagnosis; DFS counts from the end of treatment (2 months CCRT, 3 months IC+CCRT), with
the PFS events; DMFS events are distant metastases (death censors); ``distant_metastasis``
is the DMFS event; ``residual_tumour`` is drawn from ``p_residual`` under the received
regimen.

Documented clinical marginals (tested, 120+ patients): age mean 44-52 y (SD ~11, range
18-80), male 65-85 %, T1/T2/T3/T4 about 10/30/35/25 %, N0/N1/N2/N3 about 15/25/45/15 %,
EBV DNA undetectable (0) in about 18 %, otherwise log-normal with median ~1,000 copies/mL,
potential follow-up 36-96 months (administrative censoring) plus ~1 %/year loss to
follow-up, PFS events in 35-65 %, distant metastasis 12-35 %, residual tumour 15-45 %.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "T_PROBS", "N_PROBS", "MALE_FRACTION", "AGE_MEAN", "AGE_SD", "CENTRE_NAMES",
    "simulate_patients", "ajcc8_stage", "true_event_probability",
]

T_PROBS = (0.10, 0.30, 0.35, 0.25)
N_PROBS = (0.15, 0.25, 0.45, 0.15)
MALE_FRACTION = 0.74
AGE_MEAN, AGE_SD = 47.0, 11.0
CENTRE_NAMES = ("C1", "C2", "C3", "C4")
CENTRE_WEIGHTS = (0.4, 0.25, 0.2, 0.15)

# baseline hazards per month at the reference patient (all covariates 0)
BASE_HAZARD_LOCAL = 0.0075
BASE_HAZARD_DISTANT = 0.0030
BASE_HAZARD_OTHER_DEATH = 0.0008
POST_PROGRESSION_DEATH = 0.028          # median survival after progression ~25 months
FOLLOWUP_MONTHS = (36.0, 96.0)          # potential (administrative) follow-up, uniform
LOSS_TO_FOLLOWUP = 0.001                # per month
TREATMENT_MONTHS = {"CCRT": 2.0, "IC+CCRT": 3.0}   # DFS counts from the end of treatment

COEF_LOCAL = {"z_ring": 1.80, "z_core": 0.40, "t": 0.25, "n": 0.12, "ebv": 0.20, "age": 0.010}
COEF_DISTANT = {"z_node": 1.40, "z_ring": 0.30, "n": 0.40, "t": 0.10, "ebv": 0.20}
IC_LOCAL_LOG_HR = {1: -1.10, 0: 0.30}   # by necrosis
IC_DISTANT_LOG_HR = -0.25
COEF_RESIDUAL = {"intercept": -1.30, "z_ring": 1.60, "z_core": 0.50, "t": 0.35}
IC_RESIDUAL_LOGIT = {1: -1.80, 0: 0.45}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def ajcc8_stage(t: np.ndarray, n: np.ndarray) -> np.ndarray:
    """AJCC 8th edition overall stage (M0) from T (1-4) and N (0-3): I, II, III or IVA."""
    t, n = np.asarray(t), np.asarray(n)
    stage = np.full(t.shape, "III", dtype=object)
    stage[(t == 1) & (n == 0)] = "I"
    stage[((t <= 2) & (n == 1)) | ((t == 2) & (n == 0))] = "II"
    stage[(t == 4) | (n == 3)] = "IVA"
    return stage


def _ordinal(latent: np.ndarray, probs) -> np.ndarray:
    """Cut a standard-normal latent into categories 1..k with the given marginal probabilities."""
    from scipy.stats import norm

    cuts = norm.ppf(np.cumsum(probs)[:-1])
    return np.searchsorted(cuts, latent) + 1


def true_event_probability(log_hazard_total: np.ndarray, months: float | np.ndarray) -> np.ndarray:
    """P(event by ``months``) for an exponential time with hazard ``exp(log_hazard_total)``."""
    return 1.0 - np.exp(-np.exp(log_hazard_total) * months)


def _hazards(df: pd.DataFrame, ic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(local, distant) hazards per month under treatment indicator ``ic`` (1 = IC+CCRT)."""
    t_c = df["t_stage_num"].to_numpy() - 2.5
    n_c = df["n_stage_num"].to_numpy() - 1.5
    ebv_c = np.log10(df["ebv_dna"].to_numpy() + 1.0) - 3.0
    age_c = df["age"].to_numpy() - AGE_MEAN
    nec = df["necrosis"].to_numpy()
    lp_local = (COEF_LOCAL["z_ring"] * df["z_ring"] + COEF_LOCAL["z_core"] * df["z_core"]
                + COEF_LOCAL["t"] * t_c + COEF_LOCAL["n"] * n_c + COEF_LOCAL["ebv"] * ebv_c
                + COEF_LOCAL["age"] * age_c
                + ic * np.where(nec == 1, IC_LOCAL_LOG_HR[1], IC_LOCAL_LOG_HR[0])).to_numpy()
    lp_dist = (COEF_DISTANT["z_node"] * df["z_node"] * df["has_nodes"]
               + COEF_DISTANT["z_ring"] * df["z_ring"] + COEF_DISTANT["n"] * n_c
               + COEF_DISTANT["t"] * t_c + COEF_DISTANT["ebv"] * ebv_c
               + ic * IC_DISTANT_LOG_HR).to_numpy()
    return BASE_HAZARD_LOCAL * np.exp(lp_local), BASE_HAZARD_DISTANT * np.exp(lp_dist)


def _residual_logit(df: pd.DataFrame, ic: np.ndarray) -> np.ndarray:
    t_c = df["t_stage_num"].to_numpy() - 2.5
    nec = df["necrosis"].to_numpy()
    return (COEF_RESIDUAL["intercept"] + COEF_RESIDUAL["z_ring"] * df["z_ring"].to_numpy()
            + COEF_RESIDUAL["z_core"] * df["z_core"].to_numpy() + COEF_RESIDUAL["t"] * t_c
            + ic * np.where(nec == 1, IC_RESIDUAL_LOGIT[1], IC_RESIDUAL_LOGIT[0]))


def simulate_patients(n: int, *, seed: int = 0, centres: int = 2) -> pd.DataFrame:
    """Draw ``n`` phantom patients: latent variables, clinical columns, outcomes and truth.

    Returns one DataFrame (one row per patient, ``hospital_id`` first). The export's
    ``clinical.csv`` is the subset of columns a hospital would have; the rest goes to
    ``truth/patients.csv``. Deterministic given ``seed``.

    Examples:
        >>> df = simulate_patients(200, seed=0)
        >>> set(df["treatment"]) <= {"CCRT", "IC+CCRT"}
        True
    """
    rng = np.random.default_rng([seed, 1])
    df = pd.DataFrame(index=range(n))
    centre_w = np.asarray(CENTRE_WEIGHTS[:centres]) / np.sum(CENTRE_WEIGHTS[:centres])
    centre_idx = rng.choice(centres, size=n, p=centre_w)
    # hospital ids: a centre prefix and a 6-digit medical record number (unique)
    mrn = rng.choice(np.arange(100000, 999999), size=n, replace=False)
    prefixes = np.array(["ZS", "FS", "ZH", "GL"])[centre_idx]
    df["hospital_id"] = [f"{p}{m:06d}" for p, m in zip(prefixes, mrn)]
    df["centre"] = np.array(CENTRE_NAMES)[centre_idx]
    df["centre_index"] = centre_idx
    df["age"] = np.clip(np.round(rng.normal(AGE_MEAN, AGE_SD, n)), 18, 80).astype(int)
    df["sex"] = np.where(rng.random(n) < MALE_FRACTION, "M", "F")

    z_ring, z_core, z_node = rng.standard_normal((3, n))
    rho = 0.35
    t_num = _ordinal(rho * z_ring + np.sqrt(1 - rho**2) * rng.standard_normal(n), T_PROBS)
    n_num = _ordinal(rho * z_node + np.sqrt(1 - rho**2) * rng.standard_normal(n), N_PROBS) - 1
    df["z_ring"], df["z_core"], df["z_node"] = z_ring, z_core, z_node
    df["t_stage_num"], df["n_stage_num"] = t_num, n_num
    df["t_stage"] = [f"T{t}" for t in t_num]
    df["n_stage"] = [f"N{v}" for v in n_num]
    df["stage"] = ajcc8_stage(t_num, n_num)
    df["has_nodes"] = (n_num > 0).astype(int)
    df["necrosis"] = (rng.random(n) < 0.25 + 0.08 * (t_num - 1)).astype(int)

    log10_ebv = (2.9 + 0.35 * (t_num - 2.5) + 0.30 * (n_num - 1.5) + 0.30 * z_ring
                 + rng.normal(0, 0.9, n))
    undetectable = rng.random(n) < 0.18
    df["ebv_dna"] = np.where(undetectable, 0, np.round(10 ** log10_ebv)).astype(int)

    # treatment: physicians give induction chemotherapy to advanced disease (confounding)
    p_ic = _sigmoid(-0.2 + 1.0 * (t_num - 2.5) + 0.9 * (n_num - 1.5))
    choice_ic = (rng.random(n) < p_ic).astype(int)
    follows = rng.random(n) < 0.92            # 8 % receive the other regimen (toxicity, refusal)
    ic = np.where(follows, choice_ic, 1 - choice_ic)
    names = np.array(["CCRT", "IC+CCRT"])
    df["physician_choice"] = names[choice_ic]
    df["treatment"] = names[ic]

    # ---- true hazards under each treatment and the received one
    h_loc = {}
    h_dist = {}
    for k, flag in (("ccrt", 0), ("ic_ccrt", 1)):
        h_loc[k], h_dist[k] = _hazards(df, np.full(n, flag))
    h_bg = BASE_HAZARD_OTHER_DEATH * np.exp(0.05 * (df["age"].to_numpy() - AGE_MEAN))
    hl = np.where(ic == 1, h_loc["ic_ccrt"], h_loc["ccrt"])
    hd = np.where(ic == 1, h_dist["ic_ccrt"], h_dist["ccrt"])
    for k in ("ccrt", "ic_ccrt"):
        df[f"log_hazard_pfs_{k}"] = np.log(h_loc[k] + h_dist[k] + h_bg)
        df[f"dfs5_{k}"] = np.exp(-(h_loc[k] + h_dist[k] + h_bg) * 60.0)
    df["log_hazard_pfs"] = np.log(hl + hd + h_bg)
    df["log_hazard_dfs"] = df["log_hazard_pfs"]
    df["log_hazard_dmfs"] = np.log(hd)
    # OS is not proportional-hazards (death follows progression): its true risk score is the
    # log cumulative hazard of death at 60 months, -log S_os(60), which orders patients exactly.
    hp = hl + hd
    mu = POST_PROGRESSION_DEATH
    hp_ = np.where(np.abs(mu - hp) < 1e-6, hp * (1 - 1e-4), hp)
    t5 = 60.0
    s_cancer = np.exp(-hp_ * t5) + hp_ / (mu - hp_) * (np.exp(-hp_ * t5) - np.exp(-mu * t5))
    df["log_hazard_os"] = np.log(-np.log(np.clip(s_cancer, 1e-300, 1.0)) + h_bg * t5)

    # ---- residual tumour 3-6 months after RT
    for k, flag in (("ccrt", 0), ("ic_ccrt", 1)):
        df[f"p_residual_{k}"] = _sigmoid(_residual_logit(df, np.full(n, flag)))
    df["p_residual"] = np.where(ic == 1, df["p_residual_ic_ccrt"], df["p_residual_ccrt"])
    df["residual_tumour"] = (rng.random(n) < df["p_residual"]).astype(int)
    df["best_treatment"] = np.where(df["dfs5_ic_ccrt"] > df["dfs5_ccrt"], "IC+CCRT", "CCRT")
    df["best_treatment_residual"] = np.where(
        df["p_residual_ic_ccrt"] < df["p_residual_ccrt"], "IC+CCRT", "CCRT")

    # ---- event times (months from diagnosis)
    t_local = rng.exponential(1.0 / hl)
    t_dist = rng.exponential(1.0 / hd)
    t_other = rng.exponential(1.0 / h_bg)
    t_prog = np.minimum(t_local, t_dist)
    t_death = np.minimum(t_other, t_prog + rng.exponential(1.0 / POST_PROGRESSION_DEATH, n))
    follow = rng.uniform(*FOLLOWUP_MONTHS, n)
    lost = rng.exponential(1.0 / LOSS_TO_FOLLOWUP, n)
    censor = np.minimum(follow, lost)
    df["followup_potential_months"] = np.round(follow, 1)

    def observe(event_time, censor_time):
        time = np.minimum(event_time, censor_time)
        return np.maximum(np.round(time, 1), 0.1), (event_time <= censor_time).astype(int)

    pfs_time = np.minimum(t_prog, t_other)
    df["pfs_months"], df["pfs_event"] = observe(pfs_time, censor)
    shift = np.where(ic == 1, TREATMENT_MONTHS["IC+CCRT"], TREATMENT_MONTHS["CCRT"])
    dfs_m = np.maximum(df["pfs_months"].to_numpy() - shift, 0.1)
    df["dfs_months"], df["dfs_event"] = np.round(dfs_m, 1), df["pfs_event"].to_numpy()
    df["os_months"], df["os_event"] = observe(t_death, censor)
    dm_censor = np.minimum(censor, t_death)
    df["dmfs_months"], df["dmfs_event"] = observe(t_dist, dm_censor)
    df["distant_metastasis"] = df["dmfs_event"]
    # true probability of a DM observed within this patient's follow-up (censoring by death ignored)
    df["p_distant_metastasis"] = 1.0 - np.exp(-hd * censor)
    # true probability of the pfs-median label being 1 (progression or death by t*)
    from npcai.cohort.phantom.truth import pfs_median_labels

    _, t_star = pfs_median_labels(df["pfs_months"], df["pfs_event"])
    df["pfs_t_star_months"] = t_star
    df["p_pfs_median"] = true_event_probability(df["log_hazard_pfs"].to_numpy(), t_star)
    return df


CLINICAL_COLUMNS = [
    "hospital_id", "centre", "age", "sex", "t_stage", "n_stage", "stage", "ebv_dna",
    "treatment", "physician_choice", "pfs_months", "pfs_event", "dfs_months", "dfs_event",
    "os_months", "os_event", "dmfs_months", "dmfs_event", "distant_metastasis",
    "residual_tumour",
]
__all__.append("CLINICAL_COLUMNS")
