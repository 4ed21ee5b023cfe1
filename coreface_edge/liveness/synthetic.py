"""Synthetic presentations for measuring BPCER and APCER where no real recordings exist: a face
photo seen by the gate camera as a person (bona fide) or re-imaged as a print or a phone screen
held up to it (attacks), in the same scene and through the same camera.

The attacks imitate the cues a re-imaged face carries (a paper or phone border, a colour cast and
compressed contrast, moiré from the screen's pixel grid, glare, a tilt) but not the physics of
real prints and screens: an APCER measured on them says how these cues are caught, not how a
real attacker fares. A bona fide frame blends the photo into the scene with a soft oval edge:
a web photo holds too little around the face for the models' 2.7x and 4.0x context crops, and
a hard photo edge there is itself the cue of a held-up print. Both kinds then pass through
:func:`camera` (defocus, sensor noise, JPEG), so they differ only in how the face is presented.
Every image is deterministic in its seed.
"""

from __future__ import annotations

import cv2
import numpy as np

FRAME_W, FRAME_H = 640, 480
BACKGROUND = 110  # the grey scene when no real one is given
ATTACKS = ("print", "screen")


def colour_cast(image: np.ndarray, gains: tuple[float, float, float], low: float, high: float) -> np.ndarray:
    """Per-channel BGR gains and the contrast squeezed into ``[low, high]`` (ink on paper, a backlight)."""
    x = image.astype(np.float32) / 255.0 * (high - low) + low
    return np.clip(x * np.asarray(gains, np.float32), 0, 255)


def moire(image: np.ndarray, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Interference of the screen's pixel grid with the camera's: two beating sinusoid gratings."""
    h, w = image.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    pattern = np.zeros((h, w), np.float32)
    for _ in range(2):
        angle, freq = rng.uniform(0, np.pi), rng.uniform(0.08, 0.35)
        pattern += np.sin(2 * np.pi * freq * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    return image + amplitude / 2 * pattern[..., None]


def glare(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A specular highlight: a bright elliptical blob somewhere on the surface."""
    h, w = image.shape[:2]
    cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
    sy, sx = rng.uniform(0.1, 0.3) * h, rng.uniform(0.1, 0.4) * w
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    blob = np.exp(-(((y - cy) / sy) ** 2 + ((x - cx) / sx) ** 2) / 2)
    return image + strength * blob[..., None]


def mount(photo: np.ndarray, attack: str, rng: np.random.Generator) -> np.ndarray:
    """The photo on its carrier: white paper margin (print) or a black phone bezel (screen)."""
    h, w = photo.shape[:2]
    if attack == "print":
        m = int(rng.integers(6, 16))
        carrier = np.full((h + 2 * m, w + 2 * m, 3), rng.uniform(215, 245), np.float32)
        carrier[m : m + h, m : m + w] = photo
        return carrier
    side, top = int(rng.integers(4, 9)), int(rng.integers(18, 30))
    carrier = np.full((h + 2 * top, w + 2 * side, 3), rng.uniform(8, 30), np.float32)
    carrier[top : top + h, side : side + w] = photo
    return carrier


def scene_from(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random 4:3 window of a real camera frame, resized to 640x480: the scene a face is shown in."""
    h, w = frame.shape[:2]
    win_w, win_h = min(w, h * 4 // 3), min(h, w * 3 // 4)
    x0, y0 = int(rng.integers(0, w - win_w + 1)), int(rng.integers(0, h - win_h + 1))
    return cv2.resize(frame[y0 : y0 + win_h, x0 : x0 + win_w], (FRAME_W, FRAME_H), interpolation=cv2.INTER_AREA)


def _scene(background: np.ndarray | None) -> np.ndarray:
    if background is None:
        return np.full((FRAME_H, FRAME_W, 3), BACKGROUND, np.float32)
    if background.shape[:2] != (FRAME_H, FRAME_W):
        raise ValueError(f"background must be {FRAME_W}x{FRAME_H}, got {background.shape[1]}x{background.shape[0]}")
    return background.astype(np.float32)


def camera(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The gate camera's own imaging of a float frame: defocus, sensor noise, JPEG; uint8 BGR."""
    frame = cv2.GaussianBlur(frame, (0, 0), rng.uniform(0.4, 1.2))
    frame += rng.normal(0, rng.uniform(1.5, 4.0), frame.shape).astype(np.float32)
    ok, jpeg = cv2.imencode(".jpg", np.clip(frame, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 92))])
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


def present(carrier: np.ndarray, rng: np.random.Generator, height: int, background: np.ndarray | None = None) -> np.ndarray:
    """The carrier held up in a 640x480 frame of ``background`` (grey when None): scaled to
    ``height`` px, tilted (perspective), then imaged by :func:`camera`."""
    scale = height / carrier.shape[0]
    w, h = carrier.shape[1] * scale, float(height)
    x0, y0 = (FRAME_W - w) / 2 + rng.uniform(-60, 60), (FRAME_H - h) / 2 + rng.uniform(-30, 30)
    src = np.float32([[0, 0], [carrier.shape[1], 0], [carrier.shape[1], carrier.shape[0]], [0, carrier.shape[0]]])
    jitter = rng.uniform(-0.06, 0.06, (4, 2)) * (w, h)
    dst = np.float32([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]] + jitter)
    warp = cv2.getPerspectiveTransform(src, dst)
    mask = cv2.warpPerspective(np.ones(carrier.shape[:2], np.float32), warp, (FRAME_W, FRAME_H))[..., None]
    frame = _scene(background) * (1 - mask) + cv2.warpPerspective(carrier, warp, (FRAME_W, FRAME_H)) * mask
    return camera(frame, rng)


def _resized(photo: np.ndarray, photo_height: int) -> np.ndarray:
    width = min(round(photo.shape[1] * photo_height / photo.shape[0]), FRAME_W)
    interpolation = cv2.INTER_AREA if photo_height < photo.shape[0] else cv2.INTER_CUBIC
    return cv2.resize(photo, (width, photo_height), interpolation=interpolation)


def bona_fide_frame(photo: np.ndarray, seed: int, photo_height: int = 240, background: np.ndarray | None = None) -> np.ndarray:
    """A 640x480 uint8 BGR frame showing the person of ``photo`` in ``background`` (grey when None):
    the photo ``photo_height`` px tall, blended in with a soft oval edge, then imaged by :func:`camera`."""
    if photo_height > FRAME_H:
        raise ValueError(f"photo_height {photo_height}: must fit a {FRAME_H} px frame")
    rng = np.random.default_rng(seed)
    photo = _resized(photo, photo_height).astype(np.float32)
    h, w = photo.shape[:2]
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, h // 2), (int(w * 0.42), int(h * 0.47)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), h * 0.06)[..., None]
    x0 = int(np.clip((FRAME_W - w) // 2 + rng.integers(-60, 61), 0, FRAME_W - w))
    y0 = int(np.clip((FRAME_H - h) // 2 + rng.integers(-30, 31), 0, FRAME_H - h))
    frame = _scene(background)
    region = frame[y0 : y0 + h, x0 : x0 + w]
    frame[y0 : y0 + h, x0 : x0 + w] = region * (1 - mask) + photo * mask
    return camera(frame, rng)


def synthetic_attack(photo: np.ndarray, attack: str, seed: int, photo_height: int = 120, background: np.ndarray | None = None) -> np.ndarray:
    """A 640x480 uint8 BGR frame showing ``photo`` (a face photo) as a ``print`` or ``screen``
    attack held up in ``background`` (grey when None), the photo ``photo_height`` px tall."""
    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {ATTACKS}, got {attack!r}")
    if photo_height > FRAME_H - 80:
        raise ValueError(f"photo_height {photo_height}: the carrier must fit a {FRAME_H} px frame (at most {FRAME_H - 80})")
    rng = np.random.default_rng(seed)
    photo = _resized(photo, photo_height)
    if attack == "print":
        image = colour_cast(photo, tuple(rng.uniform([0.80, 0.92, 1.0], [0.92, 1.0, 1.08])), rng.uniform(20, 45), rng.uniform(200, 235))
    else:
        image = colour_cast(photo, tuple(rng.uniform([1.0, 0.95, 0.82], [1.12, 1.02, 0.95])), rng.uniform(10, 30), rng.uniform(235, 255))
        image = moire(image, rng, rng.uniform(10, 28))
    image = glare(image, rng, rng.uniform(40, 120))
    carrier = mount(np.clip(image, 0, 255), attack, rng)
    return present(carrier, rng, round(photo_height * carrier.shape[0] / photo.shape[0]), background)
