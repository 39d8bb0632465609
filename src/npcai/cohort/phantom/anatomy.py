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
RING_AMPLITUDE = (100.0, 80.0)     # amplitude = max(0, 100 + 80 * z_ring), capped at 360
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
        """In-plane spacing, rounded to 6 decimals so the DICOM text and NIfTI agree exactly."""
        return round(FOV_MM / self.size, 6)

    @property
    def slice_mm(self) -> float:
        return SLICE_MM

    def origin(self, z0: float) -> tuple[float, float, float]:
        """Patient-coordinate (LPS, mm) centre of the first voxel."""
        half = round((self.size - 1) / 2 * self.pixel_mm, 6)
        return (-half, -half, round(z0, 6))


@dataclass
class Patch:
    """An array placed in the volume: slices ``z0:z1`` and box ``y0:y1, x0:x1``.

    ``z0 is None`` means a 2-D in-plane array shared by every slice (static anatomy).
    """

    array: np.ndarray
    y0: int = 0
    x0: int = 0
    z0: int | None = None

    def view(self, volume: np.ndarray) -> np.ndarray:
        if self.z0 is None:
            h, w = self.array.shape
            return volume[:, self.y0:self.y0 + h, self.x0:self.x0 + w]
        d, h, w = self.array.shape
        return volume[self.z0:self.z0 + d, self.y0:self.y0 + h, self.x0:self.x0 + w]


@dataclass
class TissueModel:
    """One timepoint's anatomy: ordered tissue layers and additive texture terms.

    Static anatomy is stored in 2-D (identical on every slice) and the tumour and nodes as
    3-D patches in a bounding box, so a 256 px x 16 slice scan renders in a fraction of a
    second.
    """

    shape: tuple[int, int, int]
    layers: list[tuple[str, Patch]] = field(default_factory=list)     # (tissue, fraction)
    textures: list[tuple[str, Patch]] = field(default_factory=list)   # (sign key, field)
    labels: np.ndarray | None = None          # uint8 (z, y, x): 1 tumour, 2 nodes
    info: dict = field(default_factory=dict)


def _soft(signed_mm: np.ndarray, width_mm: float) -> np.ndarray:
    """Partial-volume fraction inside a shape from a signed distance (negative inside)."""
    x = np.clip(np.asarray(signed_mm, dtype=np.float32) / np.float32(width_mm), -30, 30)
    return 1.0 / (1.0 + np.exp(x))


def _ellipse_sd(X, Y, cx, cy, ax, ay, angle=0.0):
    """Approximate signed distance (mm) to an ellipse (negative inside)."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = X - cx, Y - cy
    u, v = c * dx + s * dy, -s * dx + c * dy
    rho = np.sqrt((u / ax) ** 2 + (v / ay) ** 2)
    return (rho - 1.0) * min(ax, ay)


def _smooth_noise(rng, shape, sigma_px: float) -> np.ndarray:
    """Unit-SD smooth random field, smoothed in-plane only."""
    sig = (0, sigma_px, sigma_px) if len(shape) == 3 else (sigma_px, sigma_px)
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=sig)
    sd = float(f.std()) or 1.0
    return f / sd


def _box(cx_mm: float, cy_mm: float, half_mm: float, coords: np.ndarray) -> tuple[int, int, int, int]:
    """Pixel box (y0, y1, x0, x1) covering a square of half-width ``half_mm`` around a point."""
    S = len(coords)
    px = float(coords[1] - coords[0])
    def lo_hi(c):
        lo = int(np.floor((c - half_mm - coords[0]) / px))
        hi = int(np.ceil((c + half_mm - coords[0]) / px)) + 1
        return max(0, lo), min(S, hi)
    y0, y1 = lo_hi(cy_mm)
    x0, x1 = lo_hi(cx_mm)
    return y0, y1, x0, x1


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

    shift = t_rng.normal(0, 1.5, 2) if post else np.zeros(2)
    xs = (np.arange(S, dtype=np.float32) - (S - 1) / 2) * px - np.float32(shift[0])
    ys = (np.arange(S, dtype=np.float32) - (S - 1) / 2) * px - np.float32(shift[1])
    X, Y = np.meshgrid(xs, ys)                                       # 2-D, mm
    zpos = (np.arange(Z) - (Z - 1) / 2) * SLICE_MM                   # mm from the volume centre

    model = TissueModel(shape=(Z, S, S))

    def add(tissue: str, frac: np.ndarray, y0: int = 0, x0: int = 0, z0: int | None = None):
        model.layers.append((tissue, Patch(frac.astype(np.float32, copy=False), y0, x0, z0)))

    # ---- static body (2-D): skin, fat, muscle, parotids, mandibular rami, vertebra, cord
    hx, hy = a_rng.uniform(66, 74), a_rng.uniform(82, 92)
    head = (np.sqrt((X / hx) ** 2 + ((Y - 6.0) / hy) ** 2) - 1.0) * (hx + hy) / 2
    add("skin", _soft(head, pv))
    add("fat", _soft(head + 2.5, pv))
    fat_t = a_rng.uniform(5, 9)
    add("muscle", _soft(head + 2.5 + fat_t, pv))
    for sd in (-1, 1):
        add("parotid", _soft(_ellipse_sd(X, Y, sd * 55, 20, 8, 15, sd * 0.3), pv))
        ram = _ellipse_sd(X, Y, sd * 46, -14, 6.5, 19, sd * -0.25)
        add("cortex", _soft(ram, pv))
        add("marrow", _soft(ram + 2.0, pv))
    vert = _ellipse_sd(X, Y, 0, 30, 16, 12)
    add("cortex", _soft(vert, pv))
    add("marrow", _soft(vert + 2.0, pv))
    add("csf", _soft(_ellipse_sd(X, Y, 0, 49, 8.5, 7.5), pv))
    add("cord", _soft(_ellipse_sd(X, Y, 0, 49, 5.0, 4.5), pv))
    # cerebellum-like folia far posterior (a distractor: random texture, no signal)
    cb = _soft(_ellipse_sd(X, Y, 0, 70, 34, 11), pv)
    add("cerebellum", cb)
    folia = np.cos(2 * np.pi * (Y / a_rng.uniform(3.5, 5.0)) + 0.4 * np.sin(X / 6.0))
    model.textures.append(("distractor", Patch((a_rng.uniform(30, 90) * folia * cb).astype(np.float32))))
    # airway and mucosa
    ay_c = a_rng.uniform(-24, -18)
    add("mucosa", _soft(_ellipse_sd(X, Y, 0, ay_c, 15, 8.5), pv))
    if post:   # treatment-related mucosal thickening (a distractor at post)
        add("mucosa", _soft(_ellipse_sd(X, Y, 0, ay_c, 17, 10.5), pv))
    airway = _soft(_ellipse_sd(X, Y, 0, ay_c, 12, 6), pv)
    add("airway", airway)
    body_texture = _smooth_noise(a_rng, (S, S), max(1.0, 2.0 / px)) * _soft(head, pv)
    model.textures.append(("body", Patch((12.0 * body_texture).astype(np.float32))))

    # ---- primary tumour: posterolateral nasopharyngeal wall (a 3-D patch in a box)
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
    rz = np.zeros(n_tum, dtype=np.float32)
    for k in range(n_tum):
        u = (k + 0.5) / n_tum * 2 - 1                                 # -1..1 along the tumour
        rz[k] = R * (0.55 + 0.45 * np.sqrt(max(0.0, 1 - u * u)))
    if post:
        f = float(np.clip(0.12 + 0.70 * patient["p_residual"] + t_rng.normal(0, 0.06), 0.08, 0.85))
        # at least 0.75 px radius: some pixel centre always falls inside (never an empty bed)
        rz = np.maximum(rz * f, 0.75 * px).astype(np.float32)
        model.info["residual_fraction"] = f
    outer = ring_band_outer_mm()
    r_max = R * (1 + sum(a for _, a, _ in harm) + lobe)
    y0, y1, x0, x1 = _box(cx + shift[0], cy + shift[1], r_max + outer + 3 * px + 2.0, xs + shift[0])
    Xb, Yb = X[y0:y1, x0:x1], Y[y0:y1, x0:x1]
    theta = np.arctan2(Yb - cy, Xb - cx)
    dist = np.sqrt((Xb - cx) ** 2 + (Yb - cy) ** 2)
    shape2d = 1.0 + sum(a * np.cos(k * theta + p) for k, a, p in harm)
    dtheta = np.angle(np.exp(1j * (theta - lobe_dir)))
    shape2d = (shape2d + lobe * np.exp(-(dtheta / 0.5) ** 2)).astype(np.float32)
    r_theta = rz[:, None, None] * shape2d[None]
    tumour_sd = dist[None] - r_theta                                  # (n_tum, h, w)
    tumour_mask = tumour_sd < 0
    zt = z_start
    add("residual" if post else "tumour", _soft(tumour_sd, pv), y0, x0, zt)

    # interior heterogeneity (z_core): smooth speckle inside the tumour
    bshape = tumour_sd.shape
    core_amp = max(0.0, CORE_AMPLITUDE[0] + CORE_AMPLITUDE[1] * patient["z_core"])
    speck = _smooth_noise(t_rng, bshape, max(0.6, 1.0 / px))
    core_field = core_amp * (speck + 0.4) * _soft(tumour_sd + 1.0, pv) * (0.5 if post else 1.0)
    model.textures.append(("core_sign", Patch(core_field.astype(np.float32), y0, x0, zt)))
    # necrotic core (treatment interaction), pre-treatment only, on slices with a big section
    if patient["necrosis"] and not post:
        nec_sd = np.where(rz[:, None, None] >= 0.7 * R, dist[None] - 0.45 * r_theta, 1e3)
        add("necrosis", _soft(nec_sd, pv), y0, x0, zt)

    # ---- cervical nodes (level II / retropharyngeal, lateral), each a patch
    n = int(patient["n_stage_num"])
    labels = np.zeros((Z, S, S), dtype=np.uint8)
    lo, hi = NODE_COUNT[n]
    count = int(a_rng.integers(lo, hi + 1)) if hi > 0 else 0
    node_amp = max(0.0, NODE_AMPLITUDE[0] + NODE_AMPLITUDE[1] * patient["z_node"])
    placed: list[tuple[float, float, float]] = []
    for i in range(count):
        for _ in range(20):
            nside = side if (i % 2 == 0) else -side
            nx, ny = nside * a_rng.uniform(36, 46), a_rng.uniform(0, 16)
            rn = a_rng.uniform(*NODE_RADIUS_MM[n])
            if all(np.hypot(nx - ox, ny - oy) > rn + orad + 2 for ox, oy, orad in placed):
                break
        kz = int(a_rng.integers(Z // 3, Z))
        placed.append((nx, ny, rn))
        rn_now = rn * (0.5 if post else 1.0)
        if rn_now < 2.5:
            continue
        half_z = max(rn_now * 1.4, SLICE_MM * 0.6)
        zprof = np.sqrt(np.clip(1 - ((zpos - zpos[kz]) / half_z) ** 2, 0, 1))
        zs = np.flatnonzero(zprof > 0)
        zprof = (0.55 + 0.45 * zprof[zs])[:, None, None]
        ny0, ny1, nx0, nx1 = _box(nx + shift[0], ny + shift[1], rn_now + 3 * px, xs + shift[0])
        nd = np.sqrt((X[ny0:ny1, nx0:nx1] - nx) ** 2 + (Y[ny0:ny1, nx0:nx1] - ny) ** 2)
        nsd = nd[None] - rn_now * zprof
        frac = _soft(nsd, pv)
        add("node", frac, ny0, nx0, int(zs[0]))
        nspeck = _smooth_noise(t_rng, frac.shape, max(0.6, 1.0 / px))
        model.textures.append(("node_sign", Patch((node_amp * (0.6 + 0.5 * nspeck) * frac
                                                   * (0.5 if post else 1.0)).astype(np.float32),
                                                  ny0, nx0, int(zs[0]))))
        sub = labels[zs[0]:zs[-1] + 1, ny0:ny1, nx0:nx1]
        sub[nsd < 0] = 2
    model.info["n_nodes"] = count

    # ---- peritumoural infiltration band (the strongest signal): 0 .. 9 mm outside the edge
    far = ndimage.distance_transform_edt(~tumour_mask, sampling=(1e4, px, px)).astype(np.float32)
    node_here = labels[zt:zt + n_tum, y0:y1, x0:x1] == 2
    ring_amp = min(360.0, max(0.0, RING_AMPLITUDE[0] + RING_AMPLITUDE[1] * patient["z_ring"]))
    if post:
        ring_amp *= 0.3 + 0.7 * model.info["residual_fraction"]
    n_sp = int(a_rng.integers(10, 18))
    stripes = 0.5 + 0.5 * np.cos(n_sp * theta + a_rng.uniform(0, 2 * np.pi) + 0.25 * dist / max(px, 1.0))
    speck2 = _smooth_noise(t_rng, bshape, max(0.5, 0.8 / px))
    pattern = np.clip(0.35 + 0.8 * stripes[None] ** 2 + 0.45 * speck2, 0, 1.6)
    band = (far > 0) & ~node_here
    band_w = band * _soft(far - outer, pv) * (1.0 - airway[y0:y1, x0:x1])[None] \
        * _soft(head[y0:y1, x0:x1] + 3.0, pv)[None]
    model.textures.append(("ring_sign", Patch((ring_amp * pattern * band_w).astype(np.float32), y0, x0, zt)))

    # ---- far-field distractor blobs (vessels/orbit-like, 2-D), away from tumour and band
    keep = np.ones((S, S), dtype=bool)
    keep[y0:y1, x0:x1] = ~(far.min(axis=0) <= outer + 8.0)
    keep &= ~(labels.max(axis=0) == 2)
    blobs = np.zeros((S, S), dtype=np.float32)
    for _ in range(int(a_rng.integers(3, 7))):
        bx, by = a_rng.uniform(-50, 50), a_rng.uniform(-70, 60)
        br = a_rng.uniform(2.0, 4.0)
        b0, b1, c0, c1 = _box(bx + shift[0], by + shift[1], br + 3 * px, xs + shift[0])
        d = np.sqrt((X[b0:b1, c0:c1] - bx) ** 2 + (Y[b0:b1, c0:c1] - by) ** 2) - br
        blobs[b0:b1, c0:c1] = np.maximum(blobs[b0:b1, c0:c1], _soft(d, pv))
    blobs *= keep * _soft(head + 10.0, pv)
    model.layers.insert(len([layer for layer in model.layers if layer[1].z0 is None]), ("blob", Patch(blobs)))

    labels[zt:zt + n_tum, y0:y1, x0:x1][tumour_mask] = 1
    model.labels = labels
    model.info.update(tumour_side=side, tumour_radius_mm=float(R), tumour_slices=int(n_tum),
                      tumour_first_slice=int(zt), ring_amplitude=float(ring_amp),
                      node_amplitude=float(node_amp if count else 0.0), core_amplitude=float(core_amp))
    return model


def to_intensities(model: TissueModel, sequence: str, *, centre_index: int, seed: int) -> np.ndarray:
    """Compose one sequence's image (float32, z y x, >= 0) from the tissue model.

    Adds the sequence's contrast, the centre's intensity scale, a smooth bias field and
    Rician noise (magnitude of complex Gaussian noise).
    """
    con = SEQUENCE_CONTRAST[sequence]
    scanner = CENTRE_SCANNER[centre_index % len(CENTRE_SCANNER)]
    rng = np.random.default_rng([seed, 17])
    Z, S, _ = model.shape
    plane = np.zeros((S, S), dtype=np.float32)
    static = [(t, p) for t, p in model.layers if p.z0 is None]
    local = [(t, p) for t, p in model.layers if p.z0 is not None]
    for tissue, p in static:
        v = plane[p.y0:p.y0 + p.array.shape[0], p.x0:p.x0 + p.array.shape[1]]
        v += p.array * (np.float32(con[tissue]) - v)
    for key, p in model.textures:
        if p.z0 is None:
            sign = 1.0 if key in ("distractor", "body") else con[key]
            v = plane[p.y0:p.y0 + p.array.shape[0], p.x0:p.x0 + p.array.shape[1]]
            v += np.float32(sign) * p.array
    img = np.repeat(plane[None], Z, axis=0)
    for tissue, p in local:
        v = p.view(img)
        v += p.array * (np.float32(con[tissue]) - v)
    for key, p in model.textures:
        if p.z0 is not None:
            v = p.view(img)
            v += np.float32(con[key]) * p.array
    u = np.linspace(-1, 1, S, dtype=np.float32)
    b = rng.normal(0, scanner["bias"], 4).astype(np.float32)
    bias = 1.0 + b[0] * u[None, :] + b[1] * u[:, None] + b[2] * (u[None, :] ** 2 + u[:, None] ** 2) \
        + b[3] * u[None, :] * u[:, None]
    np.clip(img, 0, None, out=img)
    img *= bias[None] * np.float32(scanner["scale"])
    sd = np.float32(scanner["noise"])
    n1 = rng.standard_normal(img.shape, dtype=np.float32)
    n1 *= sd
    img += n1
    np.square(img, out=img)
    n1 = rng.standard_normal(img.shape, dtype=np.float32)
    n1 *= sd
    np.square(n1, out=n1)
    img += n1
    return np.sqrt(img, out=img)
