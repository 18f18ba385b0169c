"""Real-music corpus (`musicgen fetch-real`): free game soundtracks from Debian packages.

At build time only, each package is fetched with `apt-get download` and unpacked with `dpkg -x`; its
`usr/share/doc/NAME/copyright` is read and the package is kept only if every licence named there is free. Its music
is decoded once (one process) to 32 kHz mono int16 `.npy` tracks, memory-mappable, and the corpus is split by whole
package: validation packages are held out entirely. `manifest.json` lists every package with its licence, split and
hours (for the model card) and every track. `RealCorpus` draws crops from one split of the cache.
"""
from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..audio import rms_db

SAMPLE_RATE = 32000


@dataclass(frozen=True)
class Source:
    package: str
    genre: str  # from the package description, for the manifest and the model card


SOURCES = (
    Source("wesnoth-1.16-music", "orchestral, celtic, fantasy"),
    Source("ufoai-music", "orchestral / electronic film-like score"),
    Source("warzone2100-music", "electronic, ambient, rock"),
    Source("nexuiz-music", "electronic, industrial, metal"),
    Source("hyperrogue-music", "ambient / orchestral"),
    Source("planetblupi-music-ogg", "light, playful"),
    Source("supertux-data", "upbeat game pop"),
    Source("fb-music-high", "Frozen-Bubble game music"),
)
# held out entirely: the most distinctive genre of the set (no other package is industrial / metal)
VALID_PACKAGES = ("nexuiz-music",)
AUDIO_SUFFIXES = (".ogg", ".oga", ".opus", ".flac", ".wav", ".mp3")
MIN_TRACK_SECONDS = 10.0  # shorter files are jingles or sound effects

# (pattern, name, free): checked on each `License:` field of a machine-readable copyright file, else on the whole text
_LICENCES = (
    (r"\bCC[- ]?BY[- ](SA[- ])?NC\b|non-?commercial", "non-commercial", False),
    (r"\bCC[- ]?BY[- ]ND\b|\bNo-?Deriv", "no-derivatives", False),
    (r"\bCC[- ]?BY[- ]SA\b|Attribution[- ]Share-?Alike", "CC-BY-SA", True),
    (r"\bCC[- ]?BY\b(?![- ](SA|NC|ND)\b)|Creative Commons Attribution(?![- ](Share|Non|No))", "CC-BY", True),
    (r"\bCC0\b|public[- ]domain", "public-domain", True),
    (r"\bLGPL|Lesser General Public", "LGPL", True),
    (r"\bA?GPL|GNU General Public", "GPL", True),
    (r"\bMIT\b|\bExpat\b", "MIT", True),
    (r"\bBSD\b", "BSD", True),
    (r"\bArtistic\b", "Artistic", True),
    (r"\bZlib\b", "Zlib", True),
    (r"\bOFL\b|Free Art Licen", "OFL/Free-Art", True),
    (r"\b(ISC|Apache|WTFPL|X11|BSL|Boost|GAP|FSFAP|FSFUL|MD5)\b|all-permissive", "permissive", True),
)


@dataclass(frozen=True)
class Licence:
    names: tuple[str, ...]
    free: bool
    reason: str


def read_licence(copyright_text: str) -> Licence:
    """The licences a Debian copyright file names and whether all of them are free (at least one must be known)."""
    fields = re.findall(r"^License:[ \t]*(\S.*)$", copyright_text, flags=re.M)
    machine_readable = copyright_text.lstrip().startswith("Format:") and fields
    texts = fields if machine_readable else [copyright_text]
    found: dict[str, bool] = {}
    unknown = []
    for text in texts:
        hits = [(name, free) for pattern, name, free in _LICENCES if re.search(pattern, text, flags=re.I)]
        found |= dict(hits)
        if not hits:
            unknown.append(text.strip())
    names = tuple(sorted(found))
    if not all(found.values()):
        return Licence(names, False, "not free: " + ", ".join(n for n, f in found.items() if not f))
    if not found or (machine_readable and unknown):
        return Licence(names, False, "unrecognised licence: " + (", ".join(unknown) or "none named"))
    return Licence(names, True, "free")


ARCHIVE_SUFFIXES = (".pk3", ".zip")  # game data archives (zip) that hold music


@dataclass(frozen=True)
class Track:
    """One audio file of an unpacked package, possibly a member of a zip archive in it."""
    path: Path
    member: str | None = None

    def name(self, tree: Path) -> str:
        parts = self.path.relative_to(tree).parts + (tuple(self.member.split("/")) if self.member else ())
        return "__".join(parts)


def music_files(tree: Path) -> list[Track]:
    """Audio files of an unpacked package, zip members included; where some lie under a folder (or archive) named
    like *music*, only those."""
    tracks = []
    for p in sorted(tree.rglob("*")):
        if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file():
            tracks.append(Track(p))
        elif p.suffix.lower() in ARCHIVE_SUFFIXES and p.is_file():
            with zipfile.ZipFile(p) as z:
                tracks += [Track(p, m) for m in sorted(z.namelist()) if m.lower().endswith(AUDIO_SUFFIXES)]

    def folders(t: Track) -> tuple[str, ...]:
        parts = t.path.relative_to(tree).parts
        return (parts if t.member else parts[:-1]) + tuple(t.member.split("/")[:-1] if t.member else ())

    music = [t for t in tracks if any("music" in part.lower() for part in folders(t))]
    return music or tracks


def decode(track: Track, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """An audio file as int16 mono [T] at `sample_rate` (channels averaged, soxr resampling)."""
    if track.member:
        with zipfile.ZipFile(track.path) as z:
            source = io.BytesIO(z.read(track.member))
    else:
        source = str(track.path)
    audio, sr = sf.read(source, dtype="float32", always_2d=True)  # [T, C]
    mono = audio.mean(axis=1)
    if sr != sample_rate:
        mono = soxr.resample(mono, sr, sample_rate, quality="HQ")
    return (np.clip(mono, -1.0, 1.0) * 32767).round().astype(np.int16)


def build_corpus(trees: dict[str, Path], out: Path, valid_packages=VALID_PACKAGES, info: dict | None = None) -> dict:
    """Licence-check, decode and split unpacked packages {name: tree} into `out` (tracks/ + manifest.json).
    `info` optionally adds per-package facts (version, section, genre); a `non-free` section is rejected too.
    Tracks already decoded are kept (a re-run only decodes what is missing)."""
    info = info or {}
    packages, tracks, rejected = [], [], []
    for name, tree in trees.items():
        extra = info.get(name, {})
        copyright_file = tree / "usr" / "share" / "doc" / name / "copyright"
        if not copyright_file.is_file():
            rejected.append({"package": name, "reason": f"no {copyright_file.relative_to(tree)}"})
            continue
        licence = read_licence(copyright_file.read_text(errors="replace"))
        if extra.get("section", "").startswith("non-free"):
            licence = Licence(licence.names, False, f"section {extra['section']}")
        if not licence.free:
            rejected.append({"package": name, "licence": list(licence.names), "reason": licence.reason})
            continue
        split = "valid" if name in valid_packages else "train"
        samples = 0
        for track in music_files(tree):
            npy = out / "tracks" / name / (track.name(tree).rsplit(".", 1)[0] + ".npy")
            if not npy.is_file():
                try:
                    audio = decode(track)
                except Exception as e:  # a file soundfile cannot read
                    print(f"skipped {track.name(tree)}: {e}", flush=True)
                    continue
                if len(audio) < MIN_TRACK_SECONDS * SAMPLE_RATE:
                    continue
                npy.parent.mkdir(parents=True, exist_ok=True)
                tmp = npy.with_suffix(".tmp.npy")
                np.save(tmp, audio)
                tmp.replace(npy)
            n = int(np.load(npy, mmap_mode="r").shape[0])
            tracks.append({"path": str(npy.relative_to(out)), "package": name, "split": split, "samples": n})
            samples += n
        if samples:
            packages.append({"package": name, **extra, "licence": list(licence.names), "split": split,
                             "tracks": sum(t["package"] == name for t in tracks),
                             "hours": round(samples / SAMPLE_RATE / 3600, 3)})
        else:
            rejected.append({"package": name, "reason": f"no decodable music of {MIN_TRACK_SECONDS:g} s or more"})
    splits = {p["split"] for p in packages}
    if splits != {"train", "valid"}:
        raise ValueError(f"the corpus needs training packages and held-out ones {list(valid_packages)}; got splits "
                         f"{sorted(splits)} (rejected: {rejected})")
    hours = {s: round(sum(p["hours"] for p in packages if p["split"] == s), 3) for s in ("train", "valid")}
    manifest = {"sample_rate": SAMPLE_RATE, "hours": hours, "held_out": sorted(p["package"] for p in packages
                                                                               if p["split"] == "valid"),
                "packages": packages, "rejected": rejected, "tracks": tracks}
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def fetch(package: str, folder: Path) -> tuple[Path, dict]:
    """`apt-get download` the package into folder/debs and `dpkg -x` it to folder/packages/NAME (both cached);
    returns the unpacked tree and {version, section} from the .deb's control file."""
    debs, tree = folder / "debs", folder / "packages" / package
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{package}_*.deb")):
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
    deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
    if not (tree / ".unpacked").is_file():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        subprocess.run(["dpkg", "-x", str(deb), str(tree)], check=True)
        (tree / ".unpacked").touch()
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Version", "Section"], check=True, capture_output=True,
                            text=True).stdout
    meta = dict(line.split(": ", 1) for line in fields.strip().splitlines() if ": " in line)
    return tree, {"version": meta.get("Version", ""), "section": meta.get("Section", "")}


class RealCorpus:
    """One split of a built cache: random crops (tracks drawn in proportion to their length) and fixed evaluation
    clips. Tracks are memory-mapped on first use, so worker processes share the page cache."""

    def __init__(self, folder: str | Path, split: str = "train"):
        self.folder = Path(folder)
        manifest = json.loads((self.folder / "manifest.json").read_text())
        self.tracks = [t for t in manifest["tracks"] if t["split"] == split]
        if not self.tracks:
            raise ValueError(f"{self.folder / 'manifest.json'} has no {split} tracks")
        lengths = np.array([t["samples"] for t in self.tracks], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self._arrays: dict[int, np.ndarray] = {}

    def track(self, i: int) -> np.ndarray:
        if i not in self._arrays:
            self._arrays[i] = np.load(self.folder / self.tracks[i]["path"], mmap_mode="r")
        return self._arrays[i]

    def crops(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        """n random crops, float32 [n, length] in [-1, 1]."""
        out = np.empty((n, length), dtype=np.float32)
        for j, i in enumerate(rng.choice(len(self.tracks), size=n, p=self.weights)):
            audio = self.track(int(i))
            start = int(rng.integers(0, max(1, len(audio) - length)))
            piece = audio[start:start + length]
            out[j] = np.pad(piece, (0, length - len(piece))) / 32768.0
        return out

    def loud_crop(self, rng: np.random.Generator, length: int, min_dbfs: float,
                  tracks: list[int] | None = None) -> tuple[int, int, np.ndarray]:
        """A random crop (track index, offset, float32 [length] in [-1, 1], zero-padded) louder than `min_dbfs`, from
        `tracks` (default: all) drawn in proportion to their length; quieter crops are redrawn."""
        tracks = list(range(len(self.tracks))) if tracks is None else tracks
        weights = self.weights[tracks] / self.weights[tracks].sum()
        while True:
            i = int(rng.choice(tracks, p=weights))
            audio = self.track(i)
            offset = int(rng.integers(0, max(1, len(audio) - length)))
            crop = audio[offset:offset + length].astype(np.float32) / 32768.0
            crop = np.pad(crop, (0, length - len(crop)))
            if rms_db(crop) >= min_dbfs:
                return i, offset, crop

    def clips(self, n: int, length: int, min_dbfs: float = -50.0) -> np.ndarray:
        """n fixed clips [n, length] spread evenly over the split (each moved on past near-silence)."""
        starts = np.linspace(0, sum(t["samples"] for t in self.tracks), n, endpoint=False)
        bounds = np.cumsum([0] + [t["samples"] for t in self.tracks])
        out = []
        for s in starts:
            i = int(np.searchsorted(bounds, s, side="right") - 1)
            audio, start = self.track(i), int(s - bounds[i])
            clip = None
            for offset in range(start, max(start + 1, len(audio) - length), length):
                clip = audio[offset:offset + length].astype(np.float32) / 32768.0
                if rms_db(clip) > min_dbfs:
                    break
            out.append(np.pad(clip, (0, length - len(clip))))
        return np.stack(out)


def _fetch_real(args: argparse.Namespace) -> None:
    folder = Path(args.out)
    trees, info = {}, {}
    genres = {s.package: s.genre for s in SOURCES}
    for package in args.packages:
        try:
            trees[package], info[package] = fetch(package, folder)
        except subprocess.CalledProcessError as e:
            print(f"skipped {package}: {e}", flush=True)
            continue
        info[package]["genre"] = genres.get(package, "")
        print(f"fetched {package} {info[package]['version']}", flush=True)
    manifest = build_corpus(trees, folder, tuple(args.valid), info)
    for p in manifest["packages"]:
        print(f"{p['split']:5s} {p['package']}: {p['hours']:.2f} h, {p['tracks']} tracks, {', '.join(p['licence'])}")
    for r in manifest["rejected"]:
        print(f"rejected {r['package']}: {r['reason']}")
    print(f"hours: train {manifest['hours']['train']:.2f}, valid {manifest['hours']['valid']:.2f} "
          f"(held out: {', '.join(manifest['held_out'])}); wrote {folder / 'manifest.json'}")


def add_cli(subparsers) -> None:
    f = subparsers.add_parser("fetch-real", help="build the real-music cache from free game soundtracks in Debian "
                                                 "packages (apt-get download + dpkg -x; run apt-get update first)")
    f.add_argument("--out", default="runs/real", help="cache folder (debs, unpacked packages, tracks, manifest)")
    f.add_argument("--packages", nargs="+", default=[s.package for s in SOURCES])
    f.add_argument("--valid", nargs="+", default=list(VALID_PACKAGES), help="packages held out for validation")
    f.set_defaults(func=_fetch_real)
