"""Render one phantom scan: a head-and-neck axial MR volume and its label map.

The body is built from soft-edged shapes in millimetres (so anatomy keeps its physical size
at any matrix): skin, subcutaneous fat, muscle, parotids, mandibular rami, the clivus/C1
vertebra with cord and CSF, the nasopharyngeal airway with its mucosa, and a posterior
cerebellum-like folia texture. Onto it go the nasopharyngeal primary (size and invasion by
T stage), cervical nodes (number and size by N stage) and the planted signals (see the
package docstring). A volume is rendered once per timepoint as tissue fractions
(:class:`TissueModel`) and then turned into each sequence's intensities
(:func:`to_intensities`), so all sequences of a timepoint share the same anatomy and grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = ["Geometry", "TissueModel", "SEQUENCE_CONTRAST", "CENTRE_SCANNER",
           "RING_BAND_MM", "ring_band_outer_mm", "render_tissues", "to_intensities"]

FOV_MM = 230.0
SLICE_MM = 5.0


def ring_band_outer_mm() -> float:
    """Outer edge of the infiltration band: 20 px at a 512 px, 230 mm matrix (~9 mm)."""
    return 20.0 * FOV_MM / 512.0


RING_BAND_MM = (0.0, ring_band_outer_mm())

# tissue intensities per sequence (arbitrary scanner units before centre scaling)
SEQUENCE_CONTRAST: dict[str, dict[str, float]] = {
    "T1c": dict(skin=500, fat=820, muscle=380, airway=12, mucosa=640, marrow=640, cortex=40,
                cord=420, csf=120, parotid=600, cerebellum=470, blob=900, tumour=720,
                necrosis=230, node=620, residual=540, ring_sign=1.0, core_sign=1.0, node_sign=1.0),
    "T1": dict(skin=480, fat=850, muscle=360, airway=12, mucosa=420, marrow=700, cortex=40,
               cord=400, csf=110, parotid=640, cerebellum=430, blob=160, tumour=430,
               necrosis=330, node=410, residual=390, ring_sign=-0.7, core_sign=-0.6, node_sign=-0.6),
    "T2": dict(skin=300, fat=190, muscle=260, airway=12, mucosa=700, marrow=230, cortex=30,
               cord=520, csf=1100, parotid=450, cerebellum=600, blob=820, tumour=640,
               necrosis=950, node=700, residual=480, ring_sign=0.9, core_sign=0.8, node_sign=0.9),
}
SERIES_DESCRIPTION = {"T1c": "AX T1 C+", "T1": "AX T1", "T2": "AX T2 FS"}

# centre -> scanner: intensity scale, noise SD, bias-field strength, manufacturer, field
CENTRE_SCANNER = [
    dict(scale=1.00, noise=18.0, bias=0.06, manufacturer="SIEMENS", model="Magnetom Skyra", tesla=3.0),
    dict(scale=1.30, noise=30.0, bias=0.10, manufacturer="GE MEDICAL SYSTEMS", model="Signa HDxt", tesla=1.5),
    dict(scale=0.85, noise=22.0, bias=0.08, manufacturer="Philips Medical Systems", model="Achieva", tesla=3.0),
    dict(scale=1.15, noise=34.0, bias=0.12, manufacturer="TOSHIBA", model="Vantage Titan", tesla=1.5),
]

# planted-signal strengths (intensity units of T1c before centre scaling; noise SD ~18-34)
RING_AMPLITUDE = (90.0, 60.0)      # amplitude = max(0, 90 + 60 * z_ring), capped at 300
CORE_AMPLITUDE = (45.0, 20.0)      # interior heterogeneity = max(0, 45 + 20 * z_core)
NODE_AMPLITUDE = (80.0, 55.0)      # node brightness/heterogeneity = max(0, 80 + 55 * z_node)
TUMOUR_RADIUS_MM = {1: 9.0, 2: 12.0, 3: 15.0, 4: 19.0}
NODE_COUNT = {0: (0, 0), 1: (1, 2), 2: (2, 3), 3: (3, 5)}
NODE_RADIUS_MM = {0: (0, 0), 1: (4.0, 6.5), 2: (5.0, 8.0), 3: (7.0, 11.0)}


@dataclass
class Geometry:
    """The series grid: ``size`` x ``size`` pixels over a 230 mm FOV, ``slices`` x 5 mm."""

    size: int
    slices: int

    @property
    def pixel_mm(self) -> float:
        return FOV_MM / self.size

    @property
    def slice_mm(self) -> float:
        return SLICE_MM

    def origin(self, z0: float) -> tuple[float, float, float]:
        """Patient-coordinate (LPS, mm) centre of the first voxel."""
        half = (self.size - 1) / 2 * self.pixel_mm
        return (-half, -half, z0)


@dataclass
class TissueModel:
    """One timepoint's anatomy: ordered tissue layers and additive texture terms."""

    layers: list[tuple[str, np.ndarray]] = field(default_factory=list)   # (tissue, fraction)
    textures: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (sign key, field)
    labels: np.ndarray | None = None          # uint8 (z, y, x): 1 tumour, 2 nodes
    info: dict = field(default_factory=dict)


def _soft(signed_mm: np.ndarray, width_mm: float) -> np.ndarray:
    """Partial-volume fraction inside a shape from a signed distance (negative inside)."""
    return (1.0 / (1.0 + np.exp(np.clip(signed_mm / width_mm, -30, 30)))).astype(np.float32)


def _ellipse_sd(X, Y, cx, cy, ax, ay, angle=0.0):
    """Approximate signed distance (mm) to an ellipse (negative inside)."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = X - cx, Y - cy
    u, v = c * dx + s * dy, -s * dx + c * dy
    rho = np.sqrt((u / ax) ** 2 + (v / ay) ** 2)
    return (rho - 1.0) * min(ax, ay)


def _smooth_noise(rng, shape, sigma_px: float) -> np.ndarray:
    """Unit-SD smooth random field, smoothed in-plane only."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32),
                                sigma=(0, sigma_px, sigma_px))
    sd = float(f.std()) or 1.0
    return f / sd


def render_tissues(patient: dict, geom: Geometry, *, timepoint: str, seed: int) -> TissueModel:
    """Build the tissue model of one patient at one timepoint (pre or post).

    ``patient`` holds the latent variables and stages drawn by
    :func:`npcai.cohort.phantom.clinical.simulate_patients` plus ``anatomy_seed``.
    The same ``anatomy_seed`` gives the same body, tumour and nodes at both timepoints.
    """
    S, Z, px = geom.size, geom.slices, geom.pixel_mm
    pv = 0.45 * px                                    # partial-volume edge width
    a_rng = np.random.default_rng([int(patient["anatomy_seed"]), 7])   # shared by timepoints
    t_rng = np.random.default_rng([seed, 11 if timepoint == "pre" else 13])
    post = timepoint == "post"

    coords = (np.arange(S, dtype=np.float32) - (S - 1) / 2) * px
    shift = t_rng.normal(0, 1.5, 2) if post else np.zeros(2)
    Xs, Ys = np.meshgrid(coords - shift[0], coords - shift[1])
    X = np.broadcast_to(Xs, (Z, S, S))
    Y = np.broadcast_to(Ys, (Z, S, S))
    zpos = (np.arange(Z) - (Z - 1) / 2) * SLICE_MM               # mm from the volume centre
    zz = zpos[:, None, None]

    model = TissueModel()
    add = model.layers.append

    # ---- body: head outline tapering caudally, skin, fat, muscle
    hx, hy = a_rng.uniform(66, 74), a_rng.uniform(82, 92)
    taper = (1.0 - 0.004 * zz)                                     # caudal slices narrower
    rho_head = np.sqrt((X / (hx * taper)) ** 2 + ((Y - 6.0) / (hy * taper)) ** 2)
    mean_ax = (hx + hy) / 2
    head = (rho_head - 1.0) * mean_ax
    add(("skin", _soft(head, pv)))
    add(("fat", _soft(head + 2.5, pv)))
    fat_t = a_rng.uniform(5, 9)
    add(("muscle", _soft(head + 2.5 + fat_t, pv)))
    # parotids (posterolateral), mandibular rami (anterolateral), vertebra, cord
    for side in (-1, 1):
        add(("parotid", _soft(_ellipse_sd(X, Y, side * 48, 22, 11, 17, side * 0.3), pv)))
        ram = _ellipse_sd(X, Y, side * 46, -14, 6.5, 19, side * -0.25)
        add(("cortex", _soft(ram, pv)))
        add(("marrow", _soft(ram + 2.0, pv)))
    vert = _ellipse_sd(X, Y, 0, 30, 16, 12)
    add(("cortex", _soft(vert, pv)))
    add(("marrow", _soft(vert + 2.0, pv)))
    add(("csf", _soft(_ellipse_sd(X, Y, 0, 49, 8.5, 7.5), pv)))
    add(("cord", _soft(_ellipse_sd(X, Y, 0, 49, 5.0, 4.5), pv)))
    # cerebellum-like folia far posterior (a distractor: random texture, no signal)
    cb = _ellipse_sd(X, Y, 0, 70, 34, 11)
    add(("cerebellum", _soft(cb, pv)))
    folia = np.cos(2 * np.pi * (Y / a_rng.uniform(3.5, 5.0)) + 0.4 * np.sin(X / 6.0))
    model.textures.append(("distractor", (a_rng.uniform(30, 90) * folia * _soft(cb, pv)).astype(np.float32)))
    # airway and mucosa
    ay_c = a_rng.uniform(-24, -18)
    add(("mucosa", _soft(_ellipse_sd(X, Y, 0, ay_c, 15, 8.5), pv)))
    if post:   # treatment-related mucosal thickening (a distractor at post)
        add(("mucosa", _soft(_ellipse_sd(X, Y, 0, ay_c, 17, 10.5), pv)))
    airway = _soft(_ellipse_sd(X, Y, 0, ay_c, 12, 6), pv)
    add(("airway", airway))

    # ---- primary tumour: posterolateral nasopharyngeal wall
    t = int(patient["t_stage_num"])
    side = 1 if a_rng.random() < 0.5 else -1
    R = TUMOUR_RADIUS_MM[t] * a_rng.uniform(0.9, 1.1)
    cx, cy = side * a_rng.uniform(5, 9), ay_c + 6.0 + 0.6 * R
    harm = [(k, a_rng.uniform(0.03, 0.10 + 0.02 * t), a_rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)]
    lobe_dir = a_rng.uniform(0, 2 * np.pi)
    lobe = 0.08 * t                                                   # invasion lobe grows with T
    extent_mm = 2.2 * R                                               # cranio-caudal extent
    n_tum = int(np.clip(round(extent_mm / SLICE_MM), min(2, Z), max(2, Z - Z // 4)))
    z_start = int(np.clip(round((Z - n_tum) / 2 + a_rng.uniform(-1, 1) * Z / 8), 0, Z - n_tum))
    rz = np.zeros(Z, dtype=np.float32)
    for k in range(z_start, z_start + n_tum):
        u = (k - z_start + 0.5) / n_tum * 2 - 1                      # -1..1 along the tumour
        rz[k] = R * (0.55 + 0.45 * np.sqrt(max(0.0, 1 - u * u)))
    if post:
        f = float(np.clip(0.15 + 0.55 * patient["p_residual"] + t_rng.normal(0, 0.06), 0.10, 0.80))
        rz = np.where(rz > 0, np.maximum(rz * f, 1.6 * px), 0.0).astype(np.float32)
        model.info["residual_fraction"] = f
    theta = np.arctan2(Y - cy, X - cx)
    dist = np.sqrt((X - cx) ** 2 + (Y - cy) ** 2)
    shape = 1.0 + sum(a * np.cos(k * theta + p) for k, a, p in harm)
    shape = shape + lobe * np.exp(-((np.angle(np.exp(1j * (theta - lobe_dir)))) / 0.5) ** 2)
    r_theta = rz[:, None, None] * shape
    tumour_sd = np.where(rz[:, None, None] > 0, dist - r_theta, 1e3).astype(np.float32)
    tumour_mask = tumour_sd < 0
    add(("residual" if post else "tumour", _soft(tumour_sd, pv)))

    # interior heterogeneity (z_core): smooth speckle inside the tumour
    core_amp = max(0.0, CORE_AMPLITUDE[0] + CORE_AMPLITUDE[1] * patient["z_core"])
    speck = _smooth_noise(t_rng, (Z, S, S), max(0.6, 1.0 / px))
    core_field = core_amp * (speck + 0.4) * _soft(tumour_sd + 1.0, pv)
    model.textures.append(("core_sign", core_field.astype(np.float32) * (0.5 if post else 1.0)))
    # necrotic core (treatment interaction), pre-treatment only, on slices with a big section
    if patient["necrosis"] and not post:
        nec_sd = np.where(rz[:, None, None] >= 0.7 * R, dist - 0.45 * r_theta, 1e3)
        add(("necrosis", _soft(nec_sd.astype(np.float32), pv)))

    # ---- cervical nodes (level II / retropharyngeal, lateral)
    n = int(patient["n_stage_num"])
    node_mask = np.zeros((Z, S, S), dtype=bool)
    node_frac = np.zeros((Z, S, S), dtype=np.float32)
    lo, hi = NODE_COUNT[n]
    count = int(a_rng.integers(lo, hi + 1)) if hi > 0 else 0
    centres: list[tuple[float, float, int]] = []
    for i in range(count):
        for _ in range(20):
            nside = side if (i % 2 == 0) else -side
            nx, ny = nside * a_rng.uniform(36, 46), a_rng.uniform(0, 16)
            rn = a_rng.uniform(*NODE_RADIUS_MM[n])
            if all(np.hypot(nx - ox, ny - oy) > rn + orad + 2 for ox, oy, orad in
                   [(c[0], c[1], c[2]) for c in centres]):
                break
        kz = int(a_rng.integers(Z // 3, Z)) if Z > 2 else Z - 1
        centres.append((nx, ny, rn))
        rn_now = rn * (0.5 if post else 1.0)
        if rn_now < 2.5:
            continue
        half_z = max(rn_now * 1.4, SLICE_MM * 0.6)
        zprof = np.sqrt(np.clip(1 - ((zpos - zpos[kz]) / half_z) ** 2, 0, 1))
        zprof = np.where(zprof > 0, 0.55 + 0.45 * zprof, 0.0)[:, None, None]
        nsd = np.where(zprof > 0, np.sqrt((X - nx) ** 2 + (Y - ny) ** 2) - rn_now * zprof, 1e3)
        node_frac = np.maximum(node_frac, _soft(nsd.astype(np.float32), pv))
        node_mask |= nsd < 0
    model.info["n_nodes"] = count
    add(("node", node_frac))
    node_amp = max(0.0, NODE_AMPLITUDE[0] + NODE_AMPLITUDE[1] * patient["z_node"])
    if count:
        nspeck = _smooth_noise(t_rng, (Z, S, S), max(0.6, 1.0 / px))
        model.textures.append(("node_sign", (node_amp * (0.6 + 0.5 * nspeck) * node_frac
                                             * (0.5 if post else 1.0)).astype(np.float32)))

    # ---- far-field distractor blobs (vessels/orbit-like), kept away from tumour and band
    far = ndimage.distance_transform_edt(~tumour_mask, sampling=(1e4, px, px)) if tumour_mask.any() \
        else np.full((Z, S, S), 1e4)
    outer = ring_band_outer_mm()
    blobs = np.zeros((Z, S, S), dtype=np.float32)
    for _ in range(int(a_rng.integers(3, 7))):
        bx, by = a_rng.uniform(-50, 50), a_rng.uniform(-70, 60)
        br = a_rng.uniform(2.0, 4.0)
        blobs = np.maximum(blobs, _soft(np.sqrt((X - bx) ** 2 + (Y - by) ** 2) - br, pv))
    blobs *= (far > outer + 8.0) & ~node_mask
    blobs *= _soft(head + 10.0, pv)                                    # inside the body
    add(("blob", blobs))

    # ---- peritumoural infiltration band (the strongest signal): 0 .. 9 mm outside the edge
    ring_amp = min(300.0, max(0.0, RING_AMPLITUDE[0] + RING_AMPLITUDE[1] * patient["z_ring"]))
    if post:
        ring_amp *= 0.3 + 0.7 * model.info["residual_fraction"]
    n_sp = int(a_rng.integers(10, 18))
    stripes = 0.5 + 0.5 * np.cos(n_sp * theta + a_rng.uniform(0, 2 * np.pi) + 0.25 * (dist / max(px, 1.0)))
    speck2 = _smooth_noise(t_rng, (Z, S, S), max(0.5, 0.8 / px))
    pattern = np.clip(0.35 + 0.8 * stripes ** 2 + 0.45 * speck2, 0, 1.6)
    band = (far > 0) & (far <= outer) & ~node_mask
    band_w = band * _soft(far - outer, pv) * _soft(head + 3.0, pv) * (1.0 - airway)
    model.textures.append(("ring_sign", (ring_amp * pattern * band_w).astype(np.float32)))

    labels = np.zeros((Z, S, S), dtype=np.uint8)
    labels[node_mask] = 2
    labels[tumour_mask] = 1
    model.labels = labels
    model.info.update(tumour_side=side, tumour_radius_mm=float(R), tumour_slices=int(n_tum),
                      ring_amplitude=float(ring_amp), node_amplitude=float(node_amp if count else 0.0),
                      core_amplitude=float(core_amp))
    return model


def to_intensities(model: TissueModel, sequence: str, *, centre_index: int, seed: int) -> np.ndarray:
    """Compose one sequence's image (float32, z y x, >= 0) from the tissue model.

    Adds the sequence's contrast, the centre's intensity scale, a smooth bias field and
    Rician noise (magnitude of complex Gaussian noise).
    """
    con = SEQUENCE_CONTRAST[sequence]
    scanner = CENTRE_SCANNER[centre_index % len(CENTRE_SCANNER)]
    rng = np.random.default_rng([seed, 17])
    shape = model.layers[0][1].shape
    img = np.zeros(shape, dtype=np.float32)
    for tissue, frac in model.layers:
        img += frac * (np.float32(con[tissue]) - img)
    # gentle tissue texture so flat regions do not look synthetic
    body = model.layers[0][1]
    img += 12.0 * _smooth_noise(rng, shape, 2.0) * body
    for key, term in model.textures:
        sign = 1.0 if key == "distractor" else con[key]
        img += np.float32(sign) * term
    Z, S, _ = shape
    u = np.linspace(-1, 1, S, dtype=np.float32)
    b = rng.normal(0, scanner["bias"], 4)
    bias = 1.0 + b[0] * u[None, :] + b[1] * u[:, None] + b[2] * (u[None, :] ** 2 + u[:, None] ** 2) \
        + b[3] * u[None, :] * u[:, None]
    img = np.clip(img, 0, None) * bias[None] * scanner["scale"]
    sd = scanner["noise"]
    n1 = rng.standard_normal(shape, dtype=np.float32) * sd
    n2 = rng.standard_normal(shape, dtype=np.float32) * sd
    return np.sqrt((img + n1) ** 2 + n2 ** 2)
