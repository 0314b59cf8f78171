"""Sorter throughput on camera-sized photos, against a plain baseline and the machine's bound.

    python bench/sort_bench.py                      # 100 photos, model exports/default
    python bench/sort_bench.py --sizes 100,2000     # is the cost per photo flat as the inbox grows?

Photos: `--distinct` different 6000x4000 JPEGs (24 MP), each a photo from ../shared/data cropped to 3:2,
upscaled (bicubic) and overlaid with sensor-like noise (Gaussian, stronger in bright areas) so that it
weighs about 5 MB like a camera's (quality 92, 4:2:0). Larger inboxes reuse them: every file gets its own
JPEG comment, so no two files are byte-identical (the sorter would skip duplicates) while each still costs
a full decode. Every 10th photo has siblings: a fake `.CR2` (1 MB of random bytes, NOT a real RAW: the
JPEG is the primary and the RAW only travels with it) and an `.xmp` sidecar with a keyword to merge into.
Everything is generated once under bench/out/ (git-ignored) and hard-linked into a fresh inbox per trial.

Measured in the same run, trials interleaved, medians reported:
  (a) the sorter end to end in a subprocess (`sorter run INBOX --library LIB` when the sorter has a runner,
      else the classify pipeline over the inbox: scan, decode pool, batched onnxruntime); wall time of the
      whole process (start-up and model loading included) and its peak resident memory;
  (b) baseline: full-resolution Pillow decode, torchvision `Resize` + `CenterCrop` (what a plain script
      does), one photo at a time through onnxruntime (fp32 model, default session options except that
      idle threads do not spin); (b2) the same with the project's own full-resolution preprocessing
      (an integer box reduction before the resize: faster than a plain resize over 24 MP), for reference;
  (c) the bound: c1 = the sorter's decode path alone on all cores, c2 = onnxruntime alone on ready tensors
      at the sorter's batch size (same model and settings as (a)), ideal = 1 / (1/c1 + 1/c2).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sorter import decode  # noqa: E402
from sorter.card import find_model, read_card, verify_model  # noqa: E402
from sorter.classify import Classifier, cpu_count  # noqa: E402
from sorter.preprocess import preprocess  # noqa: E402

SHARED = Path(os.environ.get("BIRDSORT_SHARED", REPO.parent / "shared"))
OUT = REPO / "bench" / "out"
CAMERA = (6000, 4000)
SIBLING_EVERY = 10
XMP = """<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:subject><rdf:Bag><rdf:li>trip-{i}</rdf:li></rdf:Bag></dc:subject>
</rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>
"""


# --- photos -------------------------------------------------------------------------------------

def camera_jpeg(src: Path, seed: int, preview: tuple[int, int] | None = None) -> bytes:
    """A 6000x4000 camera-like JPEG made from a small photo: 3:2 crop, bicubic upscale, sensor noise.
    With `preview` (w, h), an MPO as Nikon, Sony or Fujifilm cameras write: the primary image plus an
    MPF "Large Thumbnail" frame of that size (quality 90)."""
    import io
    import struct

    im = Image.open(src).convert("RGB")
    w, h = im.size
    ch = min(h, w * 2 // 3)
    cw = ch * 3 // 2
    im = im.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))
    a = np.asarray(im.resize(CAMERA, Image.Resampling.BICUBIC), dtype=np.float32)
    rng = np.random.default_rng(seed)
    tile = rng.standard_normal((1000, 1000, 3), dtype=np.float32)  # tiled: cheap, and JPEG cannot tell
    off = rng.integers(0, 1000, 2)
    noise = np.roll(np.tile(tile, (4, 6, 1)), tuple(off), axis=(0, 1))
    a += noise * (2.0 + 0.3 * np.sqrt(a))  # read noise + shot noise (grows with signal)
    buf = io.BytesIO()
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if preview is None:
        im.save(buf, "JPEG", quality=92, subsampling="4:2:0")
        return buf.getvalue()
    small = im.resize(preview, Image.Resampling.LANCZOS)
    im.save(buf, "MPO", save_all=True, append_images=[small], quality=92, subsampling="4:2:0")
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as mp:  # Pillow writes MP type "Undefined"; cameras "Large Thumbnail"
        e = mp.mpinfo[0xB002][1]
    old = struct.pack("<LLLHH", 0, e["Size"], e["DataOffset"], 0, 0)
    return data.replace(old, struct.pack("<LLLHH", 0x010002, e["Size"], e["DataOffset"], 0, 0), 1)


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The same JPEG with a COM segment after SOI: different bytes, same pixels and decode cost."""
    body = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


def build_pool(n: int, distinct: int, preview: tuple[int, int] | None = None) -> Path:
    """bench/out/pool/: n distinct camera JPEGs (IMG_00000.JPG...), siblings for every 10th. Reused.
    With `preview`: bench/out/pool_mpf<W>x<H>/, the same photos with an embedded MPF preview."""
    tag = "" if preview is None else f"_mpf{preview[0]}x{preview[1]}"
    base_dir, pool = OUT / f"base{tag}", OUT / f"pool{tag}"
    manifest = pool / "manifest.json"
    if pool.is_dir() and (not manifest.is_file() or json.loads(manifest.read_text()) != {"distinct": distinct}):
        shutil.rmtree(pool)  # made from another set of distinct photos: start again
    base_dir.mkdir(parents=True, exist_ok=True)
    pool.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"distinct": distinct}))
    sources = sorted((SHARED / "data" / "birds10" / "val").glob("*/*.jpg"))
    if not sources:
        sys.exit(f"no photos under {SHARED / 'data'}: set BIRDSORT_SHARED")
    random.Random(0).shuffle(sources)
    t0 = time.perf_counter()
    for k in range(distinct):
        f = base_dir / f"base_{k:04d}.jpg"
        if not f.exists():
            tmp = f.with_suffix(".tmp")
            tmp.write_bytes(camera_jpeg(sources[k % len(sources)], k, preview))
            os.replace(tmp, f)
            print(f"\rgenerating camera JPEGs {k + 1}/{distinct}", end="", file=sys.stderr, flush=True)
    bases = [f.read_bytes() for f in sorted(base_dir.glob("base_*.jpg"))[:distinct]]
    rng = np.random.default_rng(1)
    for i in range(n):
        f = pool / f"IMG_{i:05d}.JPG"
        if f.exists():
            continue
        tmp = pool / f".IMG_{i:05d}.tmp"
        tmp.write_bytes(with_comment(bases[i % len(bases)], f"bench photo {i}"))
        os.replace(tmp, f)
        if i % SIBLING_EVERY == 0:
            (pool / f"IMG_{i:05d}.CR2").write_bytes(rng.bytes(1 << 20))
            (pool / f"IMG_{i:05d}.xmp").write_text(XMP.format(i=i), encoding="utf-8")
        if i % 50 == 0:
            print(f"\rwriting inbox pool {i + 1}/{n}", end="", file=sys.stderr, flush=True)
    print(f"\rphotos ready in {OUT} ({time.perf_counter() - t0:.0f} s)            ", file=sys.stderr)
    return pool


def photos(pool: Path, n: int) -> list[Path]:
    return [pool / f"IMG_{i:05d}.JPG" for i in range(n)]


def fresh_inbox(pool: Path, n: int, run_dir: Path) -> tuple[Path, Path]:
    """run_dir/inbox with the first n photos (and their siblings) hard-linked from the pool."""
    shutil.rmtree(run_dir, ignore_errors=True)
    inbox, lib = run_dir / "inbox", run_dir / "library"
    inbox.mkdir(parents=True)
    for i in range(n):
        for suffix in (".JPG", ".CR2", ".xmp"):
            f = pool / f"IMG_{i:05d}{suffix}"
            if f.exists():
                if suffix == ".xmp":
                    shutil.copy2(f, inbox / f.name)  # sidecars are merged into: never share them
                else:
                    os.link(f, inbox / f.name)
    return inbox, lib


# --- (a) end to end, in a subprocess --------------------------------------------------------------

def sorter_has_runner() -> bool:
    cli = REPO / "sorter" / "cli.py"
    return cli.is_file() and "def run" in cli.read_text(encoding="utf-8")


def run_a(args, card_path: Path, inbox: Path, lib: Path, runner: str) -> dict:
    if runner == "sorter":
        cmd = [sys.executable, "-m", "sorter.cli", "run", str(inbox), "--library", str(lib), "--model", str(card_path),
               "--batch-size", str(args.batch_size), "--device", "cpu", "--settle", "0", "--quiet"]
        settings = {k: getattr(args, k) for k in ("workers", "int8") if getattr(args, k) is not None}
        if settings:  # the sorter takes these from its config file
            cfg = OUT / "bench_config.toml"
            cfg.write_text("[sorter]\n" + "".join(f"{k} = {str(v).lower()}\n" for k, v in settings.items()))
            cmd += ["--config", str(cfg)]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child-classify", str(inbox),
               "--model", str(card_path), "--batch-size", str(args.batch_size)]
        for flag in ("workers", "threads", "pool", "int8"):
            if getattr(args, flag) is not None:
                cmd += [f"--{flag}", str(getattr(args, flag))]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = OUT / "run_a.log"
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        peak_mb = watch_memory(proc)
        wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"(a) failed ({' '.join(cmd)}):\n{text[-2000:]}")
    left = [p.name for p in inbox.iterdir() if p.suffix == ".JPG"] if runner == "sorter" else []
    if left:
        sys.exit(f"(a) left {len(left)} photos in the inbox:\n{text[-2000:]}")
    # the sorter's own timing (its summary line: "sorted N file(s) in G group(s) in X s"), without
    # interpreter start-up and imports
    m = re.search(r" in ([0-9.]+) s;", text)
    return {"wall": wall, "run_s": float(m.group(1)) if m else None, "peak_mb": peak_mb, "cpu_s": cpu_s,
            "stdout": text}


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _tree(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [q for c in (task / "children").read_text().split() for q in _tree(int(c))]
        except OSError:
            pass
    return out


def watch_memory(proc: subprocess.Popen, every: float = 0.02) -> float:
    """Wait for `proc`; return its peak resident memory in MB: the larger of its own high-water mark
    (VmHWM, which the kernel keeps exactly) and the largest sum of VmRSS over it and its descendants seen
    while polling (decode worker processes, if any). ru_maxrss is not used: after fork+exec it still counts
    the parent's pages."""
    hwm = tree = 0
    while proc.poll() is None:
        hwm = max(hwm, _status_kb(proc.pid, "VmHWM:"))
        tree = max(tree, sum(_status_kb(p, "VmRSS:") for p in _tree(proc.pid)))
        time.sleep(every)
    return max(hwm, tree) / 1024


def child_classify(args) -> None:
    """(a) before the sorter has a runner: scan the inbox, classify every photo, count the labels."""
    card = read_card(find_model(args.model))
    files = sorted(p for p in Path(args.child_classify).iterdir()
                   if p.suffix.lower() in (".jpg", ".jpeg") or (decode.is_raw(p) and not p.with_suffix(".JPG").exists()))
    kw = {k: getattr(args, k) for k in ("workers", "threads") if getattr(args, k) is not None}
    if args.pool:
        kw["pool"] = args.pool
    if args.int8 is not None:
        kw["int8"] = args.int8 == "true"
    with Classifier(card, device="cpu", batch_size=args.batch_size, **kw) as clf:
        n = sum(1 for p in clf.classify(files) if p.error is None)
    print(json.dumps({"classified": n, "files": len(files), "variant": clf.variant}))


# --- (b) baseline and (c) bound, in process -------------------------------------------------------

def plain_input(f: Path, resize: int, crop: int) -> np.ndarray:
    """What a plain script feeds the model: Pillow decodes the whole photo, torchvision resizes it
    (`Resize(resize)`: bilinear with antialiasing over all 24 MP) and centre-crops it."""
    from torchvision import transforms

    global _PLAIN
    if "_PLAIN" not in globals():
        _PLAIN = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop)])
    with Image.open(f) as img:
        return np.asarray(_PLAIN(img.convert("RGB")), dtype=np.uint8)


def run_b(model_path: Path, files: list[Path], resize: int, crop: int) -> dict:
    """The baselines, one photo at a time through onnxruntime (fp32 model): (b) plain (`plain_input`),
    (b2) full-resolution decode through the project's own preprocessing (its integer box reduction before
    the resize). Returns photos/s and CPU seconds per photo of each; and, not timed, for each photo:
    whether the sorter's draft path gives the same top-1 as the full decode, the largest difference
    between their softmax probabilities, and the full decode's top-1 probability."""
    import onnxruntime as ort

    from sorter.scores import softmax

    opts = ort.SessionOptions()  # defaults, except that idle threads sleep: spinning between single-photo
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # runs would only burn CPU
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    plain_input(files[0], resize, crop)  # import torchvision before the clock starts
    out: dict = {}
    for key, fn in (("b", plain_input), ("b2", lambda f, r, c: preprocess(f, r, c, draft=False))):
        logits = []
        t0, cpu0 = time.perf_counter(), time.process_time()
        for f in files:
            x = fn(f, resize, crop)
            logits.append(sess.run(None, {name: np.ascontiguousarray(x.transpose(2, 0, 1)[None])})[0][0])
        out[key] = len(files) / (time.perf_counter() - t0)
        out[key + "_cpu"] = (time.process_time() - cpu0) / len(files)
    drafts = np.stack([decode.load(f, resize, crop)[0] for f in files]).transpose(0, 3, 1, 2)
    pf, pd = softmax(np.stack(logits)), softmax(sess.run(None, {name: np.ascontiguousarray(drafts)})[0])
    out["compared"] = [(bool(a.argmax() == b.argmax()), float(np.abs(a - b).max()), float(a.max()))
                       for a, b in zip(pf, pd)]
    return out


def run_c1_serial(clf: Classifier, files: list[Path]) -> float:
    """The decode path on one core (no pool): with c1, shows how much parallel capacity the machine gave."""
    t0 = time.perf_counter()
    for f in files:
        decode.load(f, clf.card.resize, clf.card.crop)
    return len(files) / (time.perf_counter() - t0)


def run_c1(clf: Classifier, files: list[Path]) -> float:
    pool = clf._executor()
    resize, crop = clf.card.resize, clf.card.crop
    t0 = time.perf_counter()
    results = list(pool.map(decode.load, files, [resize] * len(files), [crop] * len(files)))
    dt = time.perf_counter() - t0
    assert all(a is not None for a, _ in results), [e for _, e in results if e][:1]
    return len(files) / dt


def run_c2(clf: Classifier, batch: np.ndarray, n_batches: int) -> float:
    """onnxruntime alone: `clf` is a Classifier with the sorter's model and batch size, and as many
    intra-op threads as there are cores (the best onnxruntime can do alone, whatever the sorter uses)."""
    clf.logits(batch)  # warm-up
    t0 = time.perf_counter()
    for _ in range(n_batches):
        clf.logits(batch)
    return n_batches * len(batch) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default", help="model name in exports/ or path to its .json/.onnx")
    ap.add_argument("--sizes", default="100", help="inbox sizes for (a), comma-separated (e.g. 100,2000)")
    ap.add_argument("--distinct", type=int, default=100, help="distinct generated photos (variants reuse them)")
    ap.add_argument("--trials", type=int, default=3, help="trials per measurement (medians reported)")
    ap.add_argument("--large-trials", type=int, default=1, help="trials of (a) for inbox sizes above 500")
    ap.add_argument("--sample", type=int, default=40, help="photos used for (b), (c1) and (c2)")
    ap.add_argument("--baseline-n", type=int, default=12, help="photos per (b) trial (slow)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--runner", choices=["auto", "sorter", "classify"], default="auto")
    ap.add_argument("--workers", type=int, default=None, help="(classify runner) decode workers")
    ap.add_argument("--threads", type=int, default=None, help="(classify runner) onnxruntime threads")
    ap.add_argument("--pool", choices=["thread", "process"], default=None)
    ap.add_argument("--int8", choices=["true", "false"], default=None, help="force the int8/fp32 model")
    ap.add_argument("--preview", default=None, metavar="WxH",
                    help="camera files with an embedded MPF preview of this size (e.g. 1616x1080, as Sony writes)")
    ap.add_argument("--json", type=Path, default=OUT / "results.json", help="where to write the figures")
    ap.add_argument("--child-classify", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_classify:
        return child_classify(args)

    card_path = find_model(args.model)
    card = read_card(card_path)
    sizes = [int(s) for s in args.sizes.split(",")]
    runner = args.runner if args.runner != "auto" else ("sorter" if sorter_has_runner() else "classify")
    free_gb = shutil.disk_usage(OUT.parent).free / 1e9
    if not (OUT / "pool" / f"IMG_{max(sizes) - 1:05d}.JPG").exists():
        print(f"disk free: {free_gb:.0f} GB; the photos need about {max(sizes) * 5.2 / 1000:.1f} GB", file=sys.stderr)
    preview = tuple(int(v) for v in args.preview.lower().split("x")) if args.preview else None
    if preview is not None and max(max(sizes), args.sample) > args.distinct:
        sys.exit("--preview builds only --distinct photos: use --sizes up to that")
    pool = build_pool(max(max(sizes), args.sample), args.distinct, preview)
    sample = photos(pool, args.sample)

    kw = {k: getattr(args, k) for k in ("workers", "threads", "pool") if getattr(args, k) is not None}
    if args.int8 is not None:
        kw["int8"] = args.int8 == "true"
    clf = Classifier(card, device="cpu", batch_size=args.batch_size, **kw)
    alone = Classifier(card, device="cpu", batch_size=args.batch_size, **{**kw, "threads": cpu_count()})
    batch = np.stack([decode.load(f, card.resize, card.crop)[0] for f in sample[: args.batch_size]])
    if len(batch) < args.batch_size:
        batch = np.concatenate([batch] * (args.batch_size // len(batch) + 1))[: args.batch_size]
    print(f"model {card_path} ({clf.variant}, {clf.model_path.name}); input {card.resize}->{card.crop}; "
          f"batch {args.batch_size}; decode {clf.pool_kind} x{clf.workers}; onnxruntime threads {clf.threads}; cores {cpu_count()}; runner {runner}",
          file=sys.stderr)

    res: dict[str, list[float]] = {"b": [], "b_cpu": [], "b2": [], "b2_cpu": [], "c1": [], "c1_serial": [], "c2": []}
    a_cpu: dict[int, list[float]] = {n: [] for n in sizes}  # CPU seconds per photo of (a), all threads
    agreement: list[tuple] = []  # per photo: (same top-1, max |p_draft - p_full|, p_full top-1)
    peak: dict[int, list[float]] = {n: [] for n in sizes}
    a: dict[int, list[float]] = {n: [] for n in sizes}
    a_run: dict[int, list[float]] = {n: [] for n in sizes}  # the sorter's own timing, without start-up
    run_dir = OUT / "run"
    for t in range(args.trials):
        # interleaved: every quantity sees the same machine load, trial by trial
        start = t * args.baseline_n
        bs = run_b(verify_model(card), [sample[(start + i) % len(sample)] for i in range(args.baseline_n)],
                   card.resize, card.crop)
        for k in ("b", "b_cpu", "b2", "b2_cpu"):
            res[k].append(bs[k])
        agreement += bs["compared"]
        res["c1"].append(run_c1(clf, sample))
        res["c1_serial"].append(run_c1_serial(clf, sample[: max(4, len(sample) // 4)]))
        res["c2"].append(run_c2(alone, batch, max(2, args.sample // args.batch_size)))
        for n in sizes:
            if n > 500 and t >= args.large_trials:
                continue
            inbox, lib = fresh_inbox(pool, n, run_dir)
            r = run_a(args, card_path, inbox, lib, runner)
            a[n].append(n / r["wall"])
            peak[n].append(r["peak_mb"])
            a_cpu[n].append(r["cpu_s"] / n)
            if r["run_s"]:
                a_run[n].append(n / r["run_s"])
        print(f"trial {t + 1}: b {res['b'][-1]:.2f}  c1 {res['c1'][-1]:.1f}  c2 {res['c2'][-1]:.1f}  "
              + "  ".join(f"a[{n}] {a[n][-1]:.2f}" for n in sizes if len(a[n]) == t + 1), file=sys.stderr)
    clf.close()
    shutil.rmtree(run_dir, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in res.items()}
    ideal = 1 / (1 / med["c1"] + 1 / med["c2"])
    report = {"model": str(card_path), "variant": clf.variant, "preview": args.preview, "input": [card.resize, card.crop],
              "batch_size": args.batch_size, "decode_pool": f"{clf.pool_kind} x{clf.workers}",
              "ort_threads": clf.threads, "runner": runner, "cores": cpu_count(), "trials": args.trials,
              **{k: v for k, v in med.items()}, "ideal": ideal, "a": {}}
    kind = f"with a {preview[0]}x{preview[1]} MPF preview each" if preview else "no embedded preview"
    print(f"\nphotos/s (median of {args.trials} trials; 6000x4000 JPEGs, about 5 MB each, {kind}; {cpu_count()} cores)")
    print(f"  (b) baseline, full decode, one at a time : {med['b']:7.2f}   CPU {1000 * med['b_cpu']:5.0f} ms/photo"
          "   (Pillow decode, torchvision Resize + CenterCrop)")
    print(f"  (b2) the same with the project's resize  : {med['b2']:7.2f}   CPU {1000 * med['b2_cpu']:5.0f} ms/photo"
          "   (full decode, box reduction, resize)")
    print(f"  (c1) sorter decode path alone, all cores : {med['c1']:7.2f}   "
          f"(one core: {med['c1_serial']:.2f}; parallel speed-up the machine gave: {med['c1'] / med['c1_serial']:.2f}x)")
    print(f"  (c2) onnxruntime alone, batch {args.batch_size:<3}       : {med['c2']:7.2f}   ({clf.variant})")
    print(f"  ideal 1/(1/c1 + 1/c2)                    : {ideal:7.2f}")
    same = sum(c[0] for c in agreement)
    sure = [c for c in agreement if c[2] >= 0.5]
    print(f"  draft path vs full decode (fp32 model): same top-1 on {same}/{len(agreement)} photos, on "
          f"{sum(c[0] for c in sure)}/{len(sure)} where the full decode's top-1 has p >= 0.5; "
          f"largest probability difference {max(c[1] for c in agreement):.3f}")
    report["draft_vs_full"] = {"same_top1": same, "photos": len(agreement),
                               "same_top1_confident": sum(c[0] for c in sure), "confident": len(sure),
                               "max_prob_diff": max(c[1] for c in agreement)}
    for n in sizes:
        an, cpu = statistics.median(a[n]), statistics.median(a_cpu[n])
        pk = max(peak[n])
        report["a"][n] = {"photos_s": an, "ms_per_photo": 1000 / an, "a_over_b": an / med["b"],
                          "a_over_b2": an / med["b2"],
                          "a_over_ideal": an / ideal, "peak_mb": pk, "cpu_ms_per_photo": 1000 * cpu,
                          "trials": len(a[n])}
        print(f"  (a) {runner} run, {n:>5} photos ({len(a[n])} trials) : {an:7.2f}   {1000 / an:6.1f} ms/photo   "
              f"a/b {an / med['b']:5.2f}   a/b2 {an / med['b2']:5.2f}   a/ideal {an / ideal:5.1%}   peak RSS {pk:5.0f} MB   "
              f"CPU {1000 * cpu:4.0f} ms/photo (b/a {med['b_cpu'] / cpu:.2f}x)")
        if a_run[n]:
            ar = statistics.median(a_run[n])
            report["a"][n].update({"run_photos_s": ar, "run_ms_per_photo": 1000 / ar})
            print(f"      without interpreter start-up (run's own clock): {ar:7.2f}   {1000 / ar:6.1f} ms/photo   "
                  f"a/b {ar / med['b']:5.2f}   a/ideal {ar / ideal:5.1%}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
