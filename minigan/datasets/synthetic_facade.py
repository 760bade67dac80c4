"""Procedurally generated facades: CMP-style 12-class label maps and photo-like renderings.

With no facade data on disk, pix2pix trains on these so that a newcomer sees the whole pipeline.
A building is a list of rectangles in image fractions (floors x columns of windows with sills,
blinds, mouldings, balconies; cornices, pillars, deco, a shop band and doors at street level),
painted class by class with array slicing; the photo gives each class a colour and texture, then
adds window reflections, shadows under what juts out, a lighting gradient and grain. Each example
is a pure function of (seed, index): the same on every run, and the same building at every size.
"""
import numpy as np

from .facade import NUM_CLASSES, check_options, colorize, crop_flip, onehot, split_indices

# class indices 0..11 (CMP label k is k - 1)
BACKGROUND, FACADE, WINDOW, DOOR, CORNICE, SILL, BALCONY, BLIND, DECO, MOLDING, PILLAR, SHOP = range(12)

WALLS = np.array([(.85, .80, .70), (.92, .88, .78), (.75, .72, .68), (.80, .65, .45), (.85, .70, .65),
                  (.70, .75, .70), (.60, .55, .50), (.94, .94, .92), (.65, .40, .32)], np.float32)
BLINDS = np.array([(.86, .85, .80), (.55, .40, .25), (.30, .45, .30), (.60, .60, .58)], np.float32)
DOORS = np.array([(.30, .18, .10), (.15, .20, .15), (.20, .20, .22), (.45, .30, .20)], np.float32)


def layout(rng):
    """One random building: rectangles (class, y0, y1, x0, x1) in drawing order, and its outline."""
    u = rng.uniform
    rects = []

    def add(c, y0, y1, x0, x1):
        rects.append((c, y0, y1, x0, x1))

    xl = 0.0 if rng.random() < 0.5 else u(0.02, 0.15)
    xr = 1.0 if rng.random() < 0.5 else u(0.85, 0.98)
    yt, yb = u(0.02, 0.2), (1.0 if rng.random() < 0.6 else u(0.9, 0.97))
    add(FACADE, yt, yb, xl, xr)
    ch = u(0.015, 0.04) if rng.random() < 0.8 else 0.0           # roof cornice
    n_up, g = int(rng.integers(2, 6)), u(1.1, 1.5)                 # upper floors; ground floor height / fh
    fh = (yb - yt - ch) / (n_up + g)
    top, gtop = yt + ch, yt + ch + n_up * fh                       # first upper floor, ground floor
    n_col = int(rng.integers(3, 8))
    margin = u(0.0, 0.06) * (xr - xl)
    cw = (xr - xl - 2 * margin) / n_col
    col = lambda c, a, b: (xl + margin + (c + a) * cw, xl + margin + (c + b) * cw)  # noqa: E731

    if rng.random() < 0.3:                                         # pillars on the column lines
        pw, y0 = u(0.06, 0.14) * cw, gtop - int(rng.integers(0, n_up + 1)) * fh
        for c in range(n_col + 1):
            add(PILLAR, y0, yb, *col(c, -pw / cw / 2, pw / cw / 2))
    if ch:
        add(CORNICE, yt, yt + ch, xl, xr)
    p_cornice = 0.5 if rng.random() < 0.5 else 0.0
    for f in range(1, n_up + 1):                                   # bands on floor lines
        if rng.random() < (0.7 if f == n_up else p_cornice):
            y = top + f * fh
            add(CORNICE, y - u(0.03, 0.07) * fh, y, xl, xr)

    wx0 = u(0.18, 0.35)
    wx1, wy0, wy1 = 1 - wx0 + u(-0.03, 0.03), u(0.15, 0.35), u(0.72, 0.88)
    has_molding, has_deco, has_sill = rng.random() < 0.5, rng.random() < 0.4, rng.random() < 0.8
    p_blind, blind_style = (u(0.2, 0.7) if rng.random() < 0.6 else 0.0), int(rng.integers(3))
    p_balcony, wide_balcony = (0.6 if rng.random() < 0.4 else 0.0), rng.random() < 0.3
    mh, sh, e = u(0.04, 0.09) * fh, u(0.03, 0.06) * fh, u(0.02, 0.06) * cw
    for f in range(n_up):
        y0, y1 = top + (f + wy0) * fh, top + (f + wy1) * fh
        balcony = rng.random() < p_balcony
        if balcony and wide_balcony:
            add(BALCONY, y1 - u(0.2, 0.3) * fh, y1 + 0.02 * fh, *col(0, wx0 - 0.1, n_col - 1 + wx1 + 0.1))
        for c in range(n_col):
            if rng.random() < 0.04:                                # a blind wall now and then
                continue
            x0, x1 = col(c, wx0, wx1)
            if has_molding:
                add(MOLDING, y0 - 0.02 * fh - mh, y0 - 0.02 * fh, x0 - e, x1 + e)
            if has_deco:
                d0 = top + (f + 0.04) * fh
                d1 = y0 - (0.03 * fh + mh if has_molding else 0.03 * fh)
                if d1 - d0 > 0.03 * fh:
                    add(DECO, d0, d1, *col(c, 0.5 - 0.12, 0.5 + 0.12))
            add(WINDOW, y0, y1, x0, x1)
            if rng.random() < p_blind:
                if blind_style == 0:                               # roller blind, pulled part way
                    add(BLIND, y0, y0 + u(0.15, 1.0) * (y1 - y0), x0, x1)
                elif blind_style == 1:                             # open shutters inside the frame
                    add(BLIND, y0, y1, x0, x0 + 0.22 * (x1 - x0))
                    add(BLIND, y0, y1, x1 - 0.22 * (x1 - x0), x1)
                else:
                    add(BLIND, y0, y1, x0, x1)
            if has_sill:
                add(SILL, y1, y1 + sh, x0 - e, x1 + e)
            if balcony and not wide_balcony:
                add(BALCONY, y1 - u(0.2, 0.35) * fh, y1 + 0.02 * fh, x0 - 2 * e, x1 + 2 * e)

    gh = yb - gtop
    doors = set(rng.choice(n_col, size=1 + (rng.random() < 0.2), replace=False).tolist())
    shop = rng.random() < 0.6
    for c in range(n_col):
        if c in doors:
            w = u(0.35, 0.6)
            add(DOOR, gtop + u(0.2, 0.4) * gh, yb, *col(c, 0.5 - w / 2, 0.5 + w / 2))
        elif shop:
            add(SHOP, gtop + u(0.15, 0.3) * gh, yb, *col(c, 0.08, 0.92))
        else:
            add(WINDOW, gtop + wy0 * gh, gtop + wy1 * gh, *col(c, wx0, wx1))
            if has_sill:
                add(SILL, gtop + wy1 * gh, gtop + wy1 * gh + sh, *col(c, wx0 - e / cw, wx1 + e / cw))
    # a black corner where the rectified photo did not reach, as in many CMP photos
    wedge = (int(rng.integers(4)), u(0.1, 0.35), u(0.1, 0.5)) if rng.random() < 0.35 else None
    return np.array(rects, np.float64), dict(xl=xl, xr=xr, yt=yt, yb=yb, gtop=gtop, wedge=wedge)


def to_pixels(rects, h, w):
    """Rectangle fractions -> integer slices, every rectangle at least one pixel each way."""
    f = np.clip(rects[:, 1:], 0.0, 1.0) * np.array([h, h, w, w])
    p = np.rint(f).astype(np.int64)
    p[:, 0], p[:, 2] = np.minimum(p[:, 0], h - 1), np.minimum(p[:, 2], w - 1)
    p[:, 1], p[:, 3] = np.maximum(p[:, 1], p[:, 0] + 1), np.maximum(p[:, 3], p[:, 2] + 1)
    return np.column_stack([rects[:, 0].astype(np.int64), p])


def wedge_mask(wedge, h, w):
    """The triangle x/a + y/b < 1 in one corner of an (h, w) image, or None."""
    if wedge is None:
        return None
    corner, a, b = wedge
    y, x = np.linspace(0, 1, h)[:, None], np.linspace(0, 1, w)[None, :]
    if corner & 1:
        x = 1 - x
    if corner & 2:
        y = 1 - y
    return x / a + y / b < 1


def paint(pixels, h, w, wedge=None):
    """Class map (h, w), indices 0..11, of pixel rectangles painted in order."""
    classes = np.zeros((h, w), np.uint8)
    for c, y0, y1, x0, x1 in pixels:
        classes[y0:y1, x0:x1] = c
    if wedge is not None:
        classes[wedge] = BACKGROUND
    return classes


def smooth_noise(rng, h, w, cells):
    """Bilinearly upsampled Gaussian noise on a cells x cells grid: blotches of plaster and light."""
    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    t = np.linspace(0, cells, h, dtype=np.float32)
    s = np.linspace(0, cells, w, dtype=np.float32)
    i, j = np.minimum(t.astype(int), cells - 1), np.minimum(s.astype(int), cells - 1)
    ti, sj = (t - i)[:, None], (s - j)[None, :]
    rows = grid[i] * (1 - ti) + grid[i + 1] * ti                   # (h, cells + 1)
    return rows[:, j] * (1 - sj) + rows[:, j + 1] * sj


def shifted(mask, dy, dx):
    """mask moved down by dy and right by dx pixels (zeros enter)."""
    out = np.zeros_like(mask)
    out[dy:, dx:] = mask[:mask.shape[0] - dy, :mask.shape[1] - dx]
    return out


def render(pixels, classes, outline, rng):
    """A photo (3, h, w) float32 in [0, 1] of the building whose class map is `classes`."""
    # channels first: broadcasting a (3,) colour over (h, w, 3) runs 3-long inner loops, 10x slower
    h, w = classes.shape
    u = rng.uniform
    f32 = np.float32
    wall = WALLS[rng.integers(len(WALLS))] + u(-0.05, 0.05, 3).astype(f32)
    light = f32([0.95, 0.94, 0.90]) if rng.random() < 0.7 else wall * 0.6
    trim = wall + (light - wall) * u(0.3, 0.8)
    sky, haze = f32([0.45, 0.60, 0.85]) + u(-0.1, 0.1, 3).astype(f32), f32([0.85, 0.87, 0.90])
    glass = f32([0.10, 0.12, 0.15]) * u(0.8, 1.3)
    # one colour per material: the 12 classes, then neighbours, street, black wedge, window frames
    neighbour, street, black, frame = range(NUM_CLASSES, NUM_CLASSES + 4)
    color = np.empty((NUM_CLASSES + 4, 3), f32)
    color[[FACADE, CORNICE, SILL, DECO, MOLDING, PILLAR]] = [wall, trim, trim, trim * 0.95, trim,
                                                             (wall + trim) / 2]
    color[WINDOW], color[SHOP], color[BACKGROUND] = glass, glass * 1.6 + 0.05, sky
    color[BLIND] = BLINDS[rng.integers(len(BLINDS))]
    color[DOOR] = DOORS[rng.integers(len(DOORS))]
    color[BALCONY] = trim * 0.9 if rng.random() < 0.4 else f32([0.15, 0.15, 0.16])
    color[neighbour:] = [WALLS[rng.integers(len(WALLS))] * 0.8, (0.33, 0.33, 0.34), (0.02, 0.02, 0.02),
                         light * 0.9 if rng.random() < 0.7 else color[DOOR]]

    y = np.linspace(0, 1, h, dtype=f32)[:, None]
    x = np.linspace(0, 1, w, dtype=f32)[None, :]
    bg = classes == BACKGROUND
    side = ((x < outline["xl"]) | (x >= outline["xr"])) & (y >= outline["yt"] + u(0, 0.1))
    material = np.where(bg & side, neighbour, classes)
    material[bg & (y >= outline["yb"])] = street
    wedge = wedge_mask(outline["wedge"], h, w)
    if wedge is not None:
        material[wedge] = black
    # window frames (a mullion and a transom) and the shadow of the recess under the lintel
    shade = np.ones((h, w), f32)
    t = max(1, w // 128)
    for c, y0, y1, x0, x1 in pixels[pixels[:, 0] == WINDOW]:
        xm, ym = (x0 + x1) // 2 - t // 2, y0 + (y1 - y0) // 3
        for bar in (material[y0:y1, xm:xm + t], material[ym:ym + t, x0:x1]):
            bar[bar == WINDOW] = frame                              # not over blinds
        shade[y0:y0 + 2 * t, x0:x1] = 0.6
    img = np.take(color.T, material, axis=1)                       # (3, h, w)
    col = lambda v: np.asarray(v, f32)[:, None, None]  # noqa: E731

    # the sky fades to haze at the horizon; glass reflects it in broad diagonal streaks,
    # sin(a x + b y + p) = sin(a x) cos(b y + p) + cos(a x) sin(b y + p): two outer products
    is_sky = (material == BACKGROUND).astype(f32)
    is_glass = ((material == WINDOW) | (material == SHOP)).astype(f32)
    ax, by = 2 * np.pi * u(0.5, 2) * x, 2 * np.pi * u(1, 3) * y + u(0, 2 * np.pi)
    streak = 0.5 + 0.5 * (np.sin(ax) * np.cos(by) + np.cos(ax) * np.sin(by))
    img += (is_sky * y ** 0.7) * col(haze - sky) + (is_glass * streak * u(0.15, 0.35)) * col(sky)

    # shade: one (h, w) factor for slats on blinds, planks on doors, and light from the upper left,
    # under which what juts out casts a shadow down and right and is lit on its top edge
    slat = ((np.arange(h) // max(1, h // 96)) % 2 == 0)[:, None]
    plank = ((np.arange(w) // max(1, w // 64)) % 3 == 0)[None, :]
    juts = np.zeros(NUM_CLASSES, bool)
    juts[[CORNICE, SILL, BALCONY, DECO, MOLDING]] = True
    jut = juts[classes]
    shadow = np.zeros_like(jut)
    for d in range(1, max(1, h // 80) + 1):
        shadow |= shifted(jut, d, d // 2)
    shade -= (0.15 * ((classes == BLIND) & slat) + 0.2 * ((classes == DOOR) & plank)
              + 0.35 * (shadow & ~jut & ~bg) - 0.15 * (jut & ~shifted(jut, 1, 0)))
    shade *= 1 + u(-0.3, 0.3) * (x - 0.5) + u(-0.3, 0.1) * (y - 0.5)
    # texture: plaster blotches, less on glass, plus fine grain (uniform bytes: cheap to draw)
    grain = np.frombuffer(rng.bytes(h * w), np.uint8).reshape(h, w).astype(f32) * f32(0.08 / 255)
    grain += smooth_noise(rng, h, w, 6) * (0.04 - 0.028 * is_glass) - f32(0.04)
    img += grain
    img *= shade * col(u(0.92, 1.08, 3))                           # and a white balance
    return np.clip(img, 0, 1, out=img)


def make_facade(seed, size):
    """(classes (size, size) uint8 0..11, photo (3, size, size) float32 in [0, 1]) of one building."""
    rng = np.random.default_rng(seed)
    rects, outline = layout(rng)                                   # drawn first: same at every size
    pixels = to_pixels(rects, size, size)
    classes = paint(pixels, size, size, wedge_mask(outline["wedge"], size, size))
    return classes, render(pixels, classes, outline, rng)


class SyntheticFacadeDataset:
    """Generated facades with FacadeDataset's interface: (x, y) = (labels, photo) for BtoA."""

    def __init__(self, n=400, size=256, split="train", direction="BtoA", labels="color", seed=0):
        check_options(direction, labels)
        self.n, self.size, self.split, self.seed = n, size, split, seed
        self.direction, self.labels = direction, labels
        self.indices = split_indices(n, split)                     # the last 10% validate, as real data
        self.load_size = size * 286 // 256
        n_label = NUM_CLASSES if labels == "onehot" else 3
        self.in_channels, self.out_channels = (n_label, 3) if direction == "BtoA" else (3, n_label)

    def __len__(self):
        return len(self.indices)

    def describe(self):
        """One line for the log: what is being read."""
        return (f"synthetic facades: {len(self)} {self.split} buildings generated from seed {self.seed} "
                f"({self.direction}, {self.labels} labels)")

    def get_example(self, i, rng=None):
        """(x, y) of building i; training buildings get a crop and flip from `rng` (default: fixed by i)."""
        side = self.load_size if self.split == "train" else self.size
        classes, photo = make_facade([self.seed, self.indices[i]], side)
        if self.split == "train":
            rng = rng if rng is not None else np.random.default_rng([self.seed, i, 1])
            classes, photo = crop_flip([classes, photo.transpose(1, 2, 0)], self.size, rng)
            photo = photo.transpose(2, 0, 1)
        photo, classes = np.ascontiguousarray(photo) * 2 - 1, np.ascontiguousarray(classes)
        label = onehot(classes) if self.labels == "onehot" else colorize(classes)
        return (label, photo) if self.direction == "BtoA" else (photo, label)

    def __getitem__(self, i):
        return self.get_example(i)
