"""What the no-animal classifier sees of a photo: the photo cropped to its drawing, and
dense SIFT descriptors of it. Plain numpy functions over batches of photos; every
constant is an argument, so that a fitted model holds the values it was fitted with
(`train.FisherVectorEncoder` keeps them as its parameters) and a later change of a default
here never changes what an old model computes."""

import numpy as np


def drawing_crop(photos: np.ndarray, ink: float = 0.95, max_zoom: float = 4.0) -> np.ndarray:
    """[0, 1] photos (N x S x S x 3) each cropped to the square around its drawing (the
    pixels darker than `ink` in some channel) and resized back to S x S (bilinear): a
    small drawing on a wide white page is seen at the scale of a large one. The square is
    at least 1 / `max_zoom` of the side (a dot is not blown up into a blur); what falls
    outside the photo is white; a blank photo is left as it is."""
    count, size = photos.shape[:2]
    darkest = np.minimum.reduce([photos[..., c] for c in range(photos.shape[-1])])
    inked = darkest < ink  # (numpy reduces a 3-long last axis slowly)
    place = np.arange(size, dtype=np.float64)

    def extent(marked):  # first and last marked row (or column); the whole photo if none
        blank = ~marked.any(axis=1)
        first = np.where(marked, place, size).min(axis=1)
        last = np.where(marked, place, -1.0).max(axis=1)
        return np.where(blank, 0.0, first), np.where(blank, size - 1.0, last)

    top, bottom = extent(inked.any(axis=2))
    left, right = extent(inked.any(axis=1))
    half = np.maximum(np.maximum(bottom - top, right - left), size / max_zoom - 1) / 2
    steps = np.linspace(-1.0, 1.0, size)
    rows = ((top + bottom) / 2)[:, None] + half[:, None] * steps  # N x S: where to sample
    columns = ((left + right) / 2)[:, None] + half[:, None] * steps
    # Bilinear: each output row mixes two rows of the photo padded with white (what falls
    # outside the photo is white), then each output column two of those columns (as rows
    # of the transposed photo: gathering rows is what numpy does fast).
    padded = np.ones((count, size + 2, size + 2, photos.shape[-1]), np.float32)
    padded[:, 1:-1, 1:-1] = photos
    n = np.arange(count)[:, None]
    for places in (rows, columns):
        low, share = _neighbours(places, size + 2)
        upper, lower = padded[n, low], padded[n, low + 1]
        padded = (upper + (lower - upper) * share[:, :, None, None]).transpose(0, 2, 1, 3)
        padded = np.ascontiguousarray(padded)
    return padded


def _neighbours(places: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per place on a padded axis (pixel i at i + 1), the index below it and how far
    towards the next one it lies."""
    places = np.clip(places + 1, 0, length - 1)
    low = np.minimum(np.floor(places).astype(int), length - 2)
    return low, (places - low).astype(np.float32)


def orientation_blocks(photos: np.ndarray, bins: int = 8, stride: int = 4) -> np.ndarray:
    """Per pixel of [0, 1] photos, the gradient of the colour channel where it is steepest
    (central differences), its magnitude shared between the two nearest of `bins` signed
    orientations, summed over blocks of `stride` x `stride` pixels: what SIFT's cells are
    made of (N x S/stride x S/stride x bins)."""
    count, size = photos.shape[:2]
    if size % stride:
        raise ValueError(f"blocks of {stride} px do not tile {size} px")
    dx, dy = np.zeros_like(photos), np.zeros_like(photos)
    dx[:, :, 1:-1] = photos[:, :, 2:] - photos[:, :, :-2]
    dy[:, 1:-1] = photos[:, 2:] - photos[:, :-2]
    squared = dx * dx + dy * dy
    steepest, gx, gy = squared[..., 0], dx[..., 0], dy[..., 0]
    for channel in range(1, photos.shape[-1]):  # the first steepest channel wins a tie
        steeper = squared[..., channel] > steepest
        steepest = np.where(steeper, squared[..., channel], steepest)
        gx = np.where(steeper, dx[..., channel], gx)
        gy = np.where(steeper, dy[..., channel], gy)
    dx, dy, magnitude = gx, gy, np.sqrt(steepest)
    angle = np.mod(np.arctan2(dy, dx), 2 * np.pi) * bins / (2 * np.pi)
    low = np.floor(angle)
    share = angle - low
    low = low.astype(np.int64) % bins
    # Each pixel's two votes added into its block's bins, in one bincount.
    n, row, column = np.indices(low.shape, sparse=True)
    block = ((n * (size // stride) + row // stride) * (size // stride) + column // stride) * bins
    sums = np.bincount(
        np.concatenate([(block + low).ravel(), (block + (low + 1) % bins).ravel()]),
        np.concatenate([((1 - share) * magnitude).ravel(), (share * magnitude).ravel()]),
        minlength=count * (size // stride) ** 2 * bins,
    )
    return sums.reshape(count, size // stride, size // stride, bins)


def dense_sift(
    blocks: np.ndarray, cell: int, stride: int = 4, grid: int = 4, clip: float = 0.2,
    blank: float = 0.02,
) -> np.ndarray:  # fmt: skip
    """SIFT descriptors (Lowe) on a dense grid, every `stride` pixels, from the photos'
    `orientation_blocks`: the votes averaged over a `grid` x `grid` block of square cells
    of `cell` pixels, normalized, clipped at `clip`, normalized again and square-rooted
    (RootSIFT after an L2 norm). A patch of white background (gradient energy under
    `blank`) gets the zero vector: no descriptor. Returns N x places x (grid² · bins),
    places row by row."""
    count, side, _, bins = blocks.shape
    if cell % stride:
        raise ValueError(f"cells of {cell} px are not made of blocks of {stride} px")
    span = cell // stride  # blocks per cell side: a cell's sum from a running sum
    running = np.zeros((count, side + 1, side + 1, bins))
    running[:, 1:, 1:] = blocks.cumsum(1).cumsum(2)
    cells = (
        running[:, span:, span:] - running[:, :-span, span:]
        - running[:, span:, :-span] + running[:, :-span, :-span]
    ) / (cell * cell)  # fmt: skip
    cells = np.maximum(cells, 0).astype(np.float32)  # no negative sums from rounding
    places = cells.shape[1] - (grid - 1) * span  # per side
    descriptors = np.concatenate(
        [cells[:, i * span : i * span + places, j * span : j * span + places]
         for i in range(grid) for j in range(grid)],
        axis=-1,
    ).reshape(count, places * places, grid * grid * bins)  # fmt: skip
    energy = np.linalg.norm(descriptors, axis=-1, keepdims=True)
    unit = np.minimum(descriptors / (energy + 1e-8), clip)
    unit /= np.maximum(np.linalg.norm(unit, axis=-1, keepdims=True), 1e-8)
    np.sqrt(unit, out=unit)
    unit *= energy > blank
    return unit


def grid_places(count: int) -> np.ndarray:
    """(row, column) in [-0.5, 0.5] of each of `count` descriptors on a square grid, row
    by row: where on the photo a descriptor lies, as the Fisher vectors' mixture sees it."""
    side = round(np.sqrt(count))
    rows, columns = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    places = np.stack([rows.ravel(), columns.ravel()], -1) / max(side - 1, 1) - 0.5
    return places.astype(np.float32)
