"""Render the no-animal classifier's fresh test set from OpenMoji's npm package.

    .venv/bin/python scripts/render_openmoji.py openmoji-17.0.0.tgz dataset/openmoji

(the tarball: `npm pack openmoji@17.0.0`). Reads the package's emoji list and colour SVGs,
labels each emoji by the rule of dataset/openmoji/README.md, renders the chosen ones in
Chromium to 128 x 128 RGB PNG on white (as dataset/images holds its drawings), leaves out
any whose pixels equal a photo of dataset/images or an emoji rendered before, and writes
manifest.csv with dataset/images' columns (file,label,category,subcategory,source: the
emoji's group, subgroup, and file and name in the package). Nothing here is read by the
platform: the files it wrote are."""

import csv
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
ANIMAL_SUBGROUPS = {"animal-mammal", "animal-bird", "animal-amphibian", "animal-reptile",
                    "animal-marine", "animal-bug", "cat-face", "monkey-face"}  # fmt: skip
# In those subgroups, parts and traces of animals rather than an animal: left out.
NOT_AN_ANIMAL = {"paw prints", "pig nose", "feather", "wing", "spiral shell", "coral",
                 "spider web", "microbe", "oyster"}  # fmt: skip
# Outside them, pictures that show an animal or part of one, or that a moderator could
# call either way: left out too.
DOUBTFUL = {"horse racing", "carousel horse", "teddy bear", "fishing pole", "fried shrimp",
            "fish cake with swirl", "poultry leg", "nest with eggs", "honey pot", "mouse trap",
            "bone", "money with wings", "mahjong red dragon", "cut of meat", "egg",
            "cooking", "carp streamer", "piñata"}  # fmt: skip
LEFT_OUT_GROUPS = {"extras-openmoji", "extras-unicode", "flags", "component"}
LEFT_OUT_SUBGROUPS = {"person-fantasy"}  # mermaids, centaurs' kin: people or animals?
NO_ANIMAL_SAMPLE, SEED, SIZE = 300, 0, 128


def label(emoji: dict) -> str | None:
    """ "animal", "no_animal", or None for an emoji the rule leaves out."""
    if emoji["skintone"] or emoji["group"] in LEFT_OUT_GROUPS:
        return None
    if emoji["subgroups"] in LEFT_OUT_SUBGROUPS or emoji["annotation"] in DOUBTFUL:
        return None
    if emoji["subgroups"] in ANIMAL_SUBGROUPS:
        return None if emoji["annotation"] in NOT_AN_ANIMAL else "animal"
    return "no_animal"


def render(svgs: dict[str, bytes]) -> dict[str, np.ndarray]:
    """Each SVG drawn by Chromium at SIZE x SIZE on white, as RGB pixels."""
    import base64

    from playwright.sync_api import sync_playwright

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    drawn = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
        page = browser.new_page(viewport={"width": SIZE, "height": SIZE})
        for name, svg in svgs.items():
            source = "data:image/svg+xml;base64," + base64.b64encode(svg).decode()
            page.set_content(
                f'<body style="margin:0;background:#fff"><img src="{source}" '
                f'width="{SIZE}" height="{SIZE}" style="display:block"></body>'
            )
            page.wait_for_function("document.images[0].complete")
            shot = Image.open(io.BytesIO(page.screenshot(type="png"))).convert("RGB")
            drawn[name] = np.asarray(shot, dtype=np.uint8)
        browser.close()
    return drawn


def main(package: Path, output: Path) -> None:
    with tarfile.open(package) as tar:
        emojis = json.load(tar.extractfile("package/data/openmoji.json"))
        labelled = [(e, label(e)) for e in emojis]
        animals = [e for e, kind in labelled if kind == "animal"]
        others = [e for e, kind in labelled if kind == "no_animal"]
        rng = np.random.default_rng(SEED)
        chosen = [(e, "animal") for e in animals] + [
            (others[i], "no_animal")
            for i in sorted(rng.choice(len(others), NO_ANIMAL_SAMPLE, replace=False))
        ]
        svgs = {e["hexcode"]: tar.extractfile(f"package/color/svg/{e['hexcode']}.svg").read()
                for e, _ in chosen}  # fmt: skip
    drawn = render(svgs)
    seen = {
        hashlib.sha256(np.asarray(Image.open(p).convert("RGB")).tobytes()).digest()
        for p in (ROOT / "dataset/images").glob("*/*.png")
    }
    rows, duplicates = [], 0
    for emoji, kind in chosen:
        pixels = drawn[emoji["hexcode"]]
        digest = hashlib.sha256(pixels.tobytes()).digest()
        if digest in seen:
            duplicates += 1
            continue
        seen.add(digest)
        file = f"{kind}/{emoji['hexcode']}.png"
        (output / kind).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(output / file, optimize=True)
        source = f"openmoji-17.0.0 color/svg/{emoji['hexcode']}.svg: {emoji['annotation']}"
        rows.append([file, kind, emoji["group"], emoji["subgroups"], source])
    with open(output / "manifest.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["file", "label", "category", "subcategory", "source"])  # as images/
        writer.writerows(rows)
    counts = {kind: sum(row[1] == kind for row in rows) for kind in ("animal", "no_animal")}
    print(f"{len(rows)} emoji written {counts}; {duplicates} duplicates left out")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
