"""``pipeline bench quality``: recall per transform, false matches, low-information pictures, speed.

The measurement the matching work of issue 11 is judged by. A hotline lists the member photos
the way hotlines do: plain ``imagehash.phash`` / ``imagehash.dhash`` (and ``pdqhash`` when the
pipeline knows :attr:`Algorithm.PDQ <pipeline.core.types.Algorithm>` and the package is
installed) over each original file, written as a CSV list file and loaded by the pipeline's own
parser into one list at the default settings. Never the pipeline's hashing: a list made with it
would hide every difference between the two.

Queries then take the production path, exactly as an upload does:
:func:`pipeline.hashprocess.hash_job` with the algorithms the worker would pick
(:func:`pipeline.verdicts.verdict_algorithms`), then :meth:`Matcher.match
<pipeline.core.matching.Matcher.match>` (given the job's ``views`` when it returns them, so the
orientation and region search is picked up without changing this file), then
:func:`pipeline.core.decision.decide`. A query is every :mod:`pipeline.bench.transforms`
transform of every member, JPEG-encoded at quality 92 as an upload would be (the identity
transform sends the listed file itself). Recall per algorithm counts a match of that algorithm
to the member's own entry; "any" counts the pipeline's decision (not ``allow``, with the
member's own entry among the matches behind it).

False matches: every non-member (from other packages than any member, see
:mod:`pipeline.bench.corpus`) goes through the same path, as-is and under a few transforms; any
match is false. Counted as distinct (non-member, entry) pairs per algorithm and overall, over
members x non-members unrelated pairs. Member queries that match *another* member's entry are
reported too. The low-information pictures must match nothing; their hashes' distances to the
members' and to each other are reported for the low-information gate.

Speed: images/s of 1920x1080 JPEGs on one pinned core, the hashing job with everything this
list switches on against today's path (guarded reduced decode + imagehash pHash + dHash, the
identity hashes only), measured interleaved in the same run.

Nothing is written to disk but the JSON of figures.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import Settings

#: JPEG quality a transformed copy is uploaded at.
UPLOAD_QUALITY = 92
#: The name of the benchmark's list (list files name their list).
LIST_NAME = "bench_quality"

#: (group, minimum recall %) from the issue's targets.
TARGETS: tuple[tuple[str, float], ...] = (
    ("benign edits", 99.5),
    ("mirror/flip/rotate 90/180/270", 97.0),
    ("pad 20% and letterbox", 95.0),
    ("chat screenshot", 85.0),
    ("crop 5%", 75.0),
    ("rotate 4 degrees", 80.0),
    ("crop 10%", 30.0),
)
MIN_PAIRS = 50_000
SPEED_TARGET = 0.6
DEFAULT_NON_MEMBER_TRANSFORMS = "identity,mirror,letterbox,chat_screenshot,meme_bars"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pipeline bench quality``."""
    parser.add_argument(
        "--corpus",
        choices=("debian", "skimage"),
        default="debian",
        help="debian: wallpapers of Debian packages + scikit-image photos (the measurement); "
        "skimage: scikit-image's 20 bundled photos only, split in two (a quick check) "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--members", type=int, default=100, help="listed photos (default %(default)s)"
    )
    parser.add_argument(
        "--non-members",
        type=int,
        default=500,
        help="unrelated photos that must not match (default %(default)s)",
    )
    parser.add_argument(
        "--transforms",
        default="",
        help="comma-separated transforms of the members (default: all; see "
        "pipeline/bench/transforms.py)",
    )
    parser.add_argument(
        "--non-member-transforms",
        default=DEFAULT_NON_MEMBER_TRANSFORMS,
        help="transforms each non-member is also queried under (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=11, help="picks photos and layouts")
    parser.add_argument(
        "--max-side",
        type=int,
        default=1280,
        help="longer side of the normalised originals, in pixels (default %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        help="time per path for the 1080p images/s comparison; 0 skips it (default %(default)s)",
    )


# -- the list, made the way a hotline makes it -------------------------------------------------


def pdq_available() -> bool:
    """Whether this pipeline has PDQ (``Algorithm.PDQ``) and ``pdqhash`` is installed."""
    from pipeline.core.types import Algorithm

    if "PDQ" not in Algorithm.__members__:
        return False
    return importlib.util.find_spec("pdqhash") is not None


def hotline_hashes(original: bytes, with_pdq: bool) -> dict[str, str]:
    """``{algorithm: hex}`` of a file as a hotline computes them: plain imagehash (and pdqhash)
    over the file as Pillow opens it, no reduced decode, no pipeline code."""
    import imagehash
    from PIL import Image

    hashes: dict[str, str] = {}
    with Image.open(io.BytesIO(original)) as image:
        hashes["phash"] = str(imagehash.phash(image))
        hashes["dhash"] = str(imagehash.dhash(image))
        if with_pdq:
            import numpy as np

            pdqhash = importlib.import_module("pdqhash")  # optional, untyped: PDQ lists only
            vector, _quality = pdqhash.compute(np.asarray(image.convert("RGB")))
            bits = "".join("1" if bit else "0" for bit in np.asarray(vector).ravel())
            hashes["pdq"] = f"{int(bits, 2):064x}"
    return hashes


def list_file(entries: Iterable[tuple[str, Mapping[str, str]]]) -> str:
    """A CSV list file (the pipeline's list format) of ``(entry id, {algorithm: hex})``."""
    import csv

    from pipeline.core.hashlist import CSV_FIELDS

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for label, hashes in entries:
        for algorithm, hex_value in hashes.items():
            writer.writerow(
                [LIST_NAME, f"{label}#{algorithm}", algorithm, hex_value, "other", "bench", ""]
            )
    return buffer.getvalue()


def entry_picture(entry_id: str) -> str:
    """The member an entry id names (``label#algorithm`` -> ``label``)."""
    return entry_id.rsplit("#", 1)[0]


# -- the pipeline's path -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the pipeline decided for one query: pictures matched per algorithm and overall."""

    by_algorithm: Mapping[str, frozenset[str]]
    decided: frozenset[str]
    distances: Mapping[str, int]


class Screen:
    """One list in a :class:`~pipeline.core.matching.Matcher` and the upload path to it."""

    def __init__(self, text: str, settings: Settings) -> None:
        from pipeline.core.hashlist import ListConfig, parse_csv
        from pipeline.core.matching import Matcher
        from pipeline.verdicts import verdict_algorithms

        parsed = parse_csv(text, only_list=LIST_NAME)
        if parsed.errors:
            raise ValueError(f"the pipeline refused list lines: {parsed.errors[:3]}")
        self.matcher = Matcher(index_kind=str(settings.index_kind))
        self.matcher.set_list(ListConfig.create(LIST_NAME))
        self.matcher.upsert(parsed.entries)
        self.entries = len(parsed.entries)
        self.algorithms = verdict_algorithms(self.matcher.algorithms_in_use())
        self.limits = settings.guard_limits()

    def hash(self, data: bytes) -> Any:
        """The hashing job of an upload (what runs in a worker's hashing process)."""
        from pipeline.hashprocess import hash_job

        return hash_job(data, self.limits, self.algorithms)

    def screen(self, data: bytes) -> Outcome:
        """Hash, match and decide one upload."""
        from pipeline.core.decision import decide
        from pipeline.core.types import Action

        result = self.hash(data)
        match: Callable[..., Sequence[Any]] = self.matcher.match
        views = getattr(result, "views", None)
        matches = match(result.hashes) if views is None else match(result.hashes, views=views)
        by_algorithm: dict[str, set[str]] = defaultdict(set)
        distances: dict[str, int] = {}
        for found in matches:
            picture = entry_picture(found.entry_id)
            by_algorithm[str(found.algorithm)].add(picture)
            key = f"{found.algorithm}:{picture}"
            distances[key] = min(distances.get(key, found.distance), found.distance)
        decision = decide(matches)
        decided = (
            frozenset(entry_picture(m.entry_id) for m in decision.matches)
            if decision.action is not Action.ALLOW
            else frozenset()
        )
        return Outcome(
            {alg: frozenset(pictures) for alg, pictures in by_algorithm.items()},
            decided,
            distances,
        )


def gated_as_listed(screen: Screen, original: bytes) -> bool:
    """Whether the low-information gate refuses a listed photo's own file (its whole view)."""
    views: Sequence[Any] = getattr(screen.hash(original), "views", ())
    return bool(views) and bool(views[0].low_information)


def upload_bytes(image: Any) -> bytes:
    """A transformed picture as an upload: JPEG quality 92."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=UPLOAD_QUALITY)
    return buffer.getvalue()


def seed_of(seed: int, label: str, transform: str) -> int:
    """A per-picture, per-transform seed that does not depend on Python's hash randomisation."""
    import zlib

    return zlib.crc32(f"{seed}:{label}:{transform}".encode())


# -- tallies ---------------------------------------------------------------------------------------


@dataclass
class Recall:
    """Hits of one transform's queries: per algorithm and by the pipeline's decision."""

    queries: int = 0
    by_algorithm: Counter[str] = field(default_factory=Counter)
    decided: int = 0
    other_members: int = 0  # queries that also matched another member's entry

    def percent(self, count: int) -> float:
        return 100.0 * count / self.queries if self.queries else float("nan")


@dataclass
class FalseMatches:
    """Distinct (query picture, entry picture) pairs that matched, per algorithm and overall."""

    pairs: dict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))
    decided: set[tuple[str, str]] = field(default_factory=set)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, query: str, transform: str, outcome: Outcome) -> None:
        for algorithm, pictures in outcome.by_algorithm.items():
            for picture in pictures:
                self.pairs[algorithm].add((query, picture))
                self.examples.append({
                    "query": query, "transform": transform, "entry": picture,
                    "algorithm": algorithm,
                    "distance": outcome.distances[f"{algorithm}:{picture}"],
                })  # fmt: skip
        for picture in outcome.decided:
            self.decided.add((query, picture))


def group_recall(
    recall: Mapping[str, Recall], groups: Mapping[str, str]
) -> dict[str, dict[str, float]]:
    """Recall by the pipeline's decision per target group: pooled over its transforms."""
    pooled: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, tally in recall.items():
        pooled[groups[name]][0] += tally.decided
        pooled[groups[name]][1] += tally.queries
    return {
        group: {"recall": 100.0 * hit / total if total else float("nan"), "queries": total}
        for group, (hit, total) in pooled.items()
    }


# -- low-information pictures ----------------------------------------------------------------


def hamming(a: str, b: str) -> int:
    """Bits that differ between two equal-length hex hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def low_information_report(
    pictures: Sequence[tuple[str, str, bytes]],
    screen: Screen,
    members: Mapping[str, Mapping[str, str]],
) -> dict[str, Any]:
    """Matches (any is a failure) and the hash distances the low-information gate is built on.

    For each picture: the pipeline's outcome, and its plain pHash/dHash (what a hotline would
    list for it) with the nearest member entry per algorithm. Then the distances between the
    pictures themselves (how tightly such patterns cluster)."""
    from pipeline.core.types import Algorithm

    rows = []
    hotline: list[dict[str, str]] = []
    for family, kind, data in pictures:
        outcome = screen.screen(data)
        plain = hotline_hashes(data, with_pdq=False)
        hotline.append(plain)
        pipeline_hashes = screen.hash(data).hashes
        nearest: dict[str, Any] = {}
        for algorithm in ("phash", "dhash"):
            ours = f"{pipeline_hashes[Algorithm(algorithm)]:016x}"
            best = min(
                ((hamming(ours, hashes[algorithm]), label) for label, hashes in members.items()),
                default=(None, None),
            )
            nearest[algorithm] = {"distance": best[0], "member": best[1], "hash": ours}
        rows.append({
            "family": family, "kind": kind, "plain_phash": plain["phash"],
            "plain_dhash": plain["dhash"], "nearest_member": nearest,
            "matched": sorted({p for ps in outcome.by_algorithm.values() for p in ps}),
            "matched_by": sorted(outcome.by_algorithm),
            "decided": sorted(outcome.decided),
        })  # fmt: skip
    between: dict[str, list[int]] = {"phash": [], "dhash": []}
    for i in range(len(hotline)):
        for j in range(i + 1, len(hotline)):
            for algorithm, distances in between.items():
                distances.append(hamming(hotline[i][algorithm], hotline[j][algorithm]))
    return {"pictures": rows, "pairwise_distances": between}


# -- speed ---------------------------------------------------------------------------------------


def speed(screen: Screen, settings: Settings, seconds: float) -> dict[str, Any]:
    """1080p JPEG images/s: today's pHash+dHash path vs the hashing job as this list has it."""
    import imagehash

    from pipeline.bench.hashing import make_uploads, measure
    from pipeline.core.guard import decode

    uploads = make_uploads(1920, 1080, "JPEG")
    limits = settings.guard_limits()

    def today(data: bytes) -> object:
        image = decode(data, limits).image
        return imagehash.phash(image), imagehash.dhash(image)

    def everything(data: bytes) -> object:
        return screen.hash(data)

    def everything_and_match(data: bytes) -> object:
        return screen.screen(data)

    paths: dict[str, Callable[[bytes], object]] = {
        "today: reduced decode + pHash + dHash": today,
        "hash job, everything on": everything,
        "hash job + match + decide": everything_and_match,
    }
    rates = measure(paths, uploads, seconds)
    base = rates["today: reduced decode + pHash + dHash"]
    return {
        "images_per_s": rates,
        "everything_vs_today": rates["hash job, everything on"] / base,
        "with_match_vs_today": rates["hash job + match + decide"] / base,
        "algorithms": [str(a) for a in screen.algorithms],
    }


# -- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Build the list, screen every query, print the tables and write JSON."""
    import numpy as np
    from tqdm import tqdm

    from pipeline.application.tables import format_table
    from pipeline.bench import corpus, transforms
    from pipeline.bench.report import write_json

    if hasattr(os, "sched_setaffinity"):  # one core, as the speed target is stated
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    started = time.perf_counter()
    try:
        member_transforms = transforms.select(args.transforms)
        non_member_transforms = transforms.select(args.non_member_transforms)
    except KeyError as exc:
        print(f"bench quality: {exc.args[0]}", file=sys.stderr)
        return 2
    found = corpus.survey(args.corpus, args.max_side, args.seed)
    if found.missing:
        print(
            f"note: {len(found.missing)} photo package(s) missing: {', '.join(found.missing)}\n"
            f"      install them for the full corpus: {found.apt_line()}",
            file=sys.stderr,
        )
    if not found.members or not found.non_members:
        print(
            "bench quality: no member or no non-member photos found; "
            f"run `{found.apt_line()}` or use --corpus skimage",
            file=sys.stderr,
        )
        return 2
    member_candidates = corpus.shuffled(found.members, args.seed)
    non_member_candidates = corpus.shuffled(found.non_members, args.seed + 1)
    blank: list[str] = []
    with_pdq = pdq_available()

    # The hotline's list: plain hashes of each original file.
    members: list[corpus.Picture] = []
    member_hashes: dict[str, dict[str, str]] = {}
    for picture in tqdm(
        corpus.load(member_candidates, args.members, args.max_side, blank),
        total=min(args.members, len(member_candidates)),
        desc="list members",
        unit="photo",
        leave=False,
    ):
        members.append(picture)
        member_hashes[picture.label] = hotline_hashes(picture.original, with_pdq)
    screen = Screen(list_file(member_hashes.items()), settings)
    # Listed photos the low-information gate refuses as they are listed (a stripe wallpaper):
    # the issue wants such pictures to match nothing, so their misses are reported apart.
    gated = [picture.label for picture in members if gated_as_listed(screen, picture.original)]
    missed_by_transform: dict[str, set[str]] = defaultdict(set)

    # Members under every transform.
    recall: dict[str, Recall] = {t.name: Recall() for t in member_transforms}
    cross = FalseMatches()
    with tqdm(
        total=len(members) * len(member_transforms), desc="members", unit="query", leave=False
    ) as bar:
        for picture in members:
            image = picture.image()
            for transform in member_transforms:
                if transform.name == "identity":
                    data = picture.original
                else:
                    seed = seed_of(args.seed, picture.label, transform.name)
                    data = upload_bytes(transform.apply(image, seed))
                outcome = screen.screen(data)
                tally = recall[transform.name]
                tally.queries += 1
                for algorithm, pictures in outcome.by_algorithm.items():
                    if picture.label in pictures:
                        tally.by_algorithm[algorithm] += 1
                tally.decided += picture.label in outcome.decided
                if picture.label not in outcome.decided:
                    missed_by_transform[transform.name].add(picture.label)
                others = {
                    alg: pictures - {picture.label}
                    for alg, pictures in outcome.by_algorithm.items()
                }
                if any(others.values()):
                    tally.other_members += 1
                    cross.add(
                        picture.label,
                        transform.name,
                        Outcome(
                            {a: p for a, p in others.items() if p},
                            outcome.decided - {picture.label},
                            outcome.distances,
                        ),
                    )
                bar.update()

    # Non-members: every match is false.
    false = FalseMatches()
    non_member_count = 0
    by_source: Counter[str] = Counter()
    with tqdm(
        total=min(args.non_members, len(non_member_candidates)) * len(non_member_transforms),
        desc="non-members",
        unit="query",
        leave=False,
    ) as bar:
        for picture in corpus.load(non_member_candidates, args.non_members, args.max_side, blank):
            non_member_count += 1
            by_source[picture.source] += 1
            image = picture.image()
            for transform in non_member_transforms:
                if transform.name == "identity":
                    data = picture.original
                else:
                    seed = seed_of(args.seed, picture.label, transform.name)
                    data = upload_bytes(transform.apply(image, seed))
                false.add(picture.label, transform.name, screen.screen(data))
                bar.update()

    # Low-information pictures: every match is a failure.
    low_pictures = [
        (family, kind, upload_bytes(image))
        for family, kind, image in corpus.low_information_pictures(seed=args.seed)
    ]
    low = low_information_report(low_pictures, screen, member_hashes)

    speed_results = speed(screen, settings, args.seconds) if args.seconds > 0 else None

    # -- report ----------------------------------------------------------------------------------
    algorithms = ["phash", "dhash", *(["pdq"] if with_pdq else [])]
    pairs = len(members) * non_member_count
    groups = {t.name: t.group for t in member_transforms}
    rows: list[list[Any]] = []
    for transform in member_transforms:
        tally = recall[transform.name]
        rows.append([
            transform.name, transform.group,
            *(tally.percent(tally.by_algorithm[a]) for a in algorithms),
            tally.percent(tally.decided), tally.queries, tally.other_members,
        ])  # fmt: skip
    headers = ["transform", "group", *(f"{a} %" for a in algorithms)]
    headers += ["any (decision) %", "queries", "other member hit"]
    print(f"recall of {len(members)} listed photos per transform (corpus {args.corpus}):")
    print(format_table(headers, rows))
    if not with_pdq:
        print("pdq: not measured (this pipeline has no Algorithm.PDQ, or pdqhash is missing)")

    by_group = group_recall(recall, groups)
    print("\ntargets (issue 11), recall by the pipeline's decision pooled per group:")
    target_lines = []
    for group, minimum in TARGETS:
        if group in by_group:
            value = by_group[group]["recall"]
            verdict = "met" if value >= minimum else "MISSED"
            target_lines.append({"group": group, "recall": value, "target": minimum})
            print(f"  {group:<30} {value:6.1f}%  (>= {minimum}%) {verdict}")
    if gated:
        print(
            f"  leaving out the {len(gated)} listed photo(s) the low-information gate refuses "
            f"as listed ({', '.join(gated)}):"
        )
        for group, _minimum in TARGETS:
            names = [t.name for t in member_transforms if t.group == group]
            if not names:
                continue
            queries = sum(recall[name].queries for name in names) - len(gated) * len(names)
            missed = sum(len(missed_by_transform[name] - set(gated)) for name in names)
            if queries > 0:
                print(f"    {group:<28} {100.0 * (queries - missed) / queries:6.1f}%")
    false_counts = {a: len(false.pairs.get(a, ())) for a in algorithms}
    print(
        f"\nfalse matches over {pairs:,} unrelated member x non-member pairs "
        f"({len(members)} x {non_member_count}; non-members queried as "
        f"{', '.join(t.name for t in non_member_transforms)}):"
    )
    for algorithm in algorithms:
        print(f"  {algorithm:<8} {false_counts[algorithm]}")
    print(f"  {'decision':<8} {len(false.decided)}  (target 0 over >= {MIN_PAIRS:,} pairs)")
    if blank:
        print(
            f"  ({len(blank)} pictures without detail of their own were left out of the photo "
            f"corpus: {', '.join(blank)})"
        )
    if len(members) < args.members or non_member_count < args.non_members:
        print(
            f"  note: the corpus has {len(members)} member and {non_member_count} non-member "
            f"photos of the {args.members} and {args.non_members} asked for"
        )
    if pairs < MIN_PAIRS:
        print(f"  note: {pairs:,} pairs is fewer than the target's {MIN_PAIRS:,}")
    for example in sorted(false.examples, key=lambda e: e["distance"])[:12]:
        print(
            f"    {example['query']} [{example['transform']}] ~ {example['entry']}: "
            f"{example['algorithm']} {example['distance']}"
        )
    cross_pairs = {(q, e) for pairs_ in cross.pairs.values() for q, e in pairs_}
    print(
        f"member queries that also matched another member's entry: "
        f"{sum(t.other_members for t in recall.values())} queries, "
        f"{len(cross_pairs)} distinct pairs (members can be related: same package)"
    )

    low_rows = []
    for row in low["pictures"]:
        near = row["nearest_member"]
        low_rows.append([
            row["family"], row["kind"], row["plain_phash"], row["plain_dhash"],
            near["phash"]["distance"], near["dhash"]["distance"],
            ",".join(row["matched_by"]) or "-",
        ])  # fmt: skip
    low_failures = sum(1 for row in low["pictures"] if row["matched"])
    print(
        f"\nlow-information pictures ({len(low_rows)}; any match is a failure: "
        f"{low_failures} matched):"
    )
    print(
        format_table(
            ["family", "kind", "pHash", "dHash", "pHash->member", "dHash->member", "matched by"],
            low_rows,
        )
    )
    for algorithm, distances in low["pairwise_distances"].items():
        values = np.array(distances)
        limit = 8 if algorithm == "phash" else 10
        print(
            f"  between them, {algorithm}: min {values.min()}, median {np.median(values):.0f}, "
            f"{int((values <= limit).sum())} of {values.size} pairs within {limit}"
        )

    if speed_results:
        print("\n1920x1080 JPEG, one core:")
        rates = speed_results["images_per_s"]
        base = rates["today: reduced decode + pHash + dHash"]
        print(
            format_table(
                ["path", "images/s", "x today"],
                [[path, rate, rate / base] for path, rate in rates.items()],
            )
        )
        ratio = speed_results["everything_vs_today"]
        verdict = "met" if ratio >= SPEED_TARGET else "MISSED"
        print(f"  everything on vs today: {ratio:.2f}x (>= {SPEED_TARGET}x) {verdict}")

    results = {
        "corpus": args.corpus,
        "seed": args.seed,
        "max_side": args.max_side,
        "upload_quality": UPLOAD_QUALITY,
        "algorithms": algorithms,
        "list_entries": screen.entries,
        "query_algorithms": [str(a) for a in screen.algorithms],
        "members": [p.label for p in members],
        "non_member_sources": dict(by_source),
        "missing_packages": found.missing,
        "blank_pictures_skipped": blank,
        "recall": {
            name: {
                "group": groups[name],
                "queries": tally.queries,
                **{f"{a}_percent": tally.percent(tally.by_algorithm[a]) for a in algorithms},
                "decision_percent": tally.percent(tally.decided),
                "other_member_hits": tally.other_members,
            }
            for name, tally in recall.items()
        },
        "targets": target_lines,
        "gated_members": gated,
        "false_matches": {
            "pairs": pairs,
            "non_members": non_member_count,
            "non_member_transforms": [t.name for t in non_member_transforms],
            "by_algorithm": false_counts,
            "decision": len(false.decided),
            "examples": sorted(false.examples, key=lambda e: e["distance"])[:200],
        },
        "member_cross_matches": {
            "queries": sum(t.other_members for t in recall.values()),
            "pairs": len(cross_pairs),
            "examples": sorted(cross.examples, key=lambda e: e["distance"])[:200],
        },
        "low_information": {**low, "failures": low_failures},
        "speed_1080p": speed_results,
        "seconds": time.perf_counter() - started,
    }
    written = write_json(args.json, "quality", results)
    print(f"\n{time.perf_counter() - started:.0f} s; wrote {written}")
    return 0
