"""``sian bench``: inference and training speed of SIAN against PReNet, in one run on the same inputs.

Speed on a shared machine drifts, so the figure that matters is the *ratio* SIAN/PReNet measured in
the same run: after a warm-up the models are timed in turns, the order reversed every turn (SIAN,
PReNet, PReNet, SIAN, ...) so neither always runs on the other's warm cache, and each turn gives one
paired ratio. The reported ratio is the median of those per-turn ratios with its quartiles: a burst of
load from another process spoils one turn's pair, not one model's median. FLOPs
(torch.utils.flop_counter) and peak memory come from one extra run in a fresh subprocess per
measurement (RSS never shrinks, so one process each is the honest attribution).

On a GPU (``device="cuda"``) an inference is what ``sian derain`` does with a decoded image: the float32
image moves to the GPU, is derained and comes back, so each timed run ends when the result is on the host;
a training step ends with a device synchronisation. Peak memory is then the GPU's (PyTorch's allocator
peak) beside the process's RSS.
"""

from __future__ import annotations

import collections
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from ._allocator import freed_memory_kept
from ._native import convlstm_library, dog_library, pyramid_library
from .inference import derain_tensor, resolve_device
from .models import create_model
from .precision import cpu_features, cpu_name, resolve_precision

__all__ = [
    "BenchRow",
    "check_precisions",
    "default_path",
    "default_path_markdown",
    "inference_workload",
    "interleaved_times",
    "measure_footprint",
    "operation_counts",
    "parse_size",
    "run_benchmark",
    "training_workload",
    "turn_ratios",
]  # fmt: skip


@dataclass
class BenchRow:
    kind: str  # inference | training
    model: str
    size: str  # WxH (inference) or BxPxP (training)
    precision: str  # fp32 | bf16 | fp16: autocast of the forward pass (sian.precision)
    seconds: float  # median per image (inference) or per step (training)
    megapixels_per_second: float
    gflops: float  # FLOPs (2 x multiply-adds) of one forward (inference) or one step (training)
    gflops_per_second: float
    peak_rss_mb: float
    turn_seconds: list[float]  # every timed run, in turn order (paired with the other models' runs)
    device: str = "cpu"  # cpu | cuda
    peak_gpu_mb: float | None = None  # PyTorch's peak GPU allocation (CUDA rows only)


def _count_flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


class _OperationCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def operation_counts(fn) -> collections.Counter[str]:
    """The PyTorch operations that ``fn()`` dispatches, by name. On a GPU each one costs a kernel launch and
    Python's dispatch whatever its size, so a model of many small operations is bound by their count. A
    dispatch mode sees PyTorch's operations only: SIAN's fused CPU DoG kernel stays out of it, as on a GPU.

    Examples:
        >>> operation_counts(lambda: torch.ones(3).mul(2).sum())
        Counter({'ones': 1, 'mul': 1, 'sum': 1})
    """
    with _OperationCounter() as counter:
        fn()
    return counter.counts


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    Linux's ``VmHWM`` belongs to the process image; ``getrusage``'s ``ru_maxrss`` would also carry the
    peak of the parent that forked it (kept across exec), which inflates a child's figure.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def inference_workload(model_name: str, width: int, height: int, precision: str = "fp32", device: str = "cpu"):
    """A callable that derains one random ``width x height`` image the way ``sian derain`` does, with the
    forward pass in ``precision`` (autocast, :mod:`sian.precision`), on ``device``; the image starts and
    ends on the host."""
    torch.manual_seed(0)
    model = create_model(model_name).eval().to(torch.device(device), memory_format=torch.channels_last)
    image = torch.rand(1, 3, height, width)
    return lambda: derain_tensor(model, image, memory_budget=None, precision=precision).cpu()


def training_workload(model_name: str, batch: int, patch: int, precision: str = "fp32", device: str = "cpu"):
    """A callable that runs one training step (forward, stage loss, backward, Adam) on random patches,
    with the trainer's own forward-and-loss function (:func:`sian.training.trainer.forward_loss`) and, for
    fp16, its gradient scaler."""
    from .training.trainer import forward_loss

    torch.manual_seed(0)
    where = torch.device(device)
    model = create_model(model_name).train().to(where)
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    rainy, clean = (torch.rand(batch, 3, patch, patch).to(where) for _ in range(2))
    choice = resolve_precision(precision, where)
    scaler = torch.amp.GradScaler(where.type, enabled=choice.precision == "fp16")

    def step():
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(forward_loss(model, rainy, clean, "ssim", choice)[1]).backward()
        scaler.step(optimizer)
        scaler.update()
        if where.type == "cuda":
            torch.cuda.synchronize(where)  # the step is done when the GPU is

    return step


def _workload(spec: dict):
    spec = dict(spec)
    kind = spec.pop("kind")
    return inference_workload(**spec) if kind == "inference" else training_workload(**spec)


def measure_footprint(spec: dict) -> tuple[float, float, float | None]:
    """``(GFLOP, peak RSS in MB, peak GPU memory in MB or None)`` of one run of a workload; call in a fresh
    process for a clean RSS."""
    fn = _workload(spec)
    flops = _count_flops(fn)
    on_gpu = spec.get("device", "cpu").startswith("cuda")
    return flops / 1e9, _peak_rss_mb(), torch.cuda.max_memory_allocated() / 1e6 if on_gpu else None


def _isolated_footprint(spec: dict) -> tuple[float, float, float | None]:
    code = (
        "import json, sys; from sian._allocator import keep_freed_memory; keep_freed_memory(); "
        "from sian.benchmark import measure_footprint; "
        "print('BENCH ' + json.dumps(measure_footprint(json.loads(sys.argv[1]))))"
    )
    result = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark {spec} failed:\n{result.stderr}")
    line = next(x for x in result.stdout.splitlines() if x.startswith("BENCH "))
    return tuple(json.loads(line[len("BENCH ") :]))


def interleaved_times(workloads: dict[str, object], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of every run of each workload, timed in turns whose order reverses every turn
    (A, B, B, A, A, B, ...), so drift and cache warmth hit all alike. `sian bench` and the
    benchmarks time with it."""
    for fn in workloads.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in workloads}
    order = list(workloads)
    for _ in range(repeats):
        for name in order:
            start = time.perf_counter()
            workloads[name]()
            times[name].append(time.perf_counter() - start)
        order.reverse()
    return times


def turn_ratios(a: BenchRow, b: BenchRow) -> dict[str, float]:
    """Median and quartiles of the per-turn time ratios ``a/b`` (rows of the same kind and size)."""
    ratios = [x / y for x, y in zip(a.turn_seconds, b.turn_seconds, strict=True)]
    if len(ratios) == 1:
        return {"median": ratios[0], "q1": ratios[0], "q3": ratios[0], "turns": 1}
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return {"median": median, "q1": q1, "q3": q3, "turns": len(ratios)}


def parse_size(text: str) -> tuple[int, int]:
    """``"481x321"`` -> ``(481, 321)`` (width, height).

    Examples:
        >>> parse_size("1280X720")
        (1280, 720)
    """
    try:
        width, height = (int(value) for value in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 481x321, got {text!r}") from None
    return width, height


def check_precisions(device: torch.device, train: tuple[str, ...], infer: tuple[str, ...]) -> None:
    """Refuse, before anything is timed, a precision the device cannot run as itself: fp16 only on a GPU (a CPU
    runs fp16 autocast emulated, which would time the emulation); ``auto`` for inference only."""
    reduced = ("bf16", "fp16") if device.type == "cuda" else ("bf16",)
    for option, values, allowed in (("--train-precision", train, ("fp32", *reduced)),
                                    ("--precision", infer, ("fp32", *reduced, "auto"))):  # fmt: skip
        bad = [p for p in values if p not in allowed]
        if bad:
            on = f" on {device.type}" + (" (fp16 needs --device cuda)" if bad[0] == "fp16" else "")
            raise ValueError(f"{option} takes {' or '.join(allowed)}{on}, got {bad[0]!r}")


def run_benchmark(
    sizes: list[tuple[int, int]], train_batch: int = 4, train_patch: int = 120, repeats: int = 5,
    models: tuple[str, ...] = ("sian", "prenet"), warmup: int = 1,
    train_precisions: tuple[str, ...] = ("fp32", "bf16"), infer_precisions: tuple[str, ...] = ("fp32",),
    device: str | torch.device | None = "cpu",
) -> tuple[list[BenchRow], dict]:  # fmt: skip
    """Inference at every size (in each of ``infer_precisions``) and training throughput (in each of
    ``train_precisions``) for every model on ``device`` (``None`` or ``"auto"``: CUDA when available), timed
    in turns in this process; FLOPs and peak memory from one isolated run each. Returns the rows and a
    machine description (CPU, its bf16 features, the GPU if one ran, and what ``auto`` picks on the device).

    ``auto`` among ``infer_precisions`` is resolved first (the rows say what ran, the machine says why), and
    a precision is measured once however often it is named: ``fp32`` and ``auto`` on a CPU without native
    bf16 give one row per model and size. ``fp16`` needs a CUDA device (``ValueError`` elsewhere).

    Runs with the process's allocator setting for every row alike (``sian bench``, like every command, keeps
    freed memory: :mod:`sian._allocator`); the machine description says which."""
    allocator = freed_memory_kept()
    where = resolve_device(device)
    auto = resolve_precision("auto", where)
    for precision in (*infer_precisions, *train_precisions):
        resolve_precision(precision, where)  # an impossible request fails before anything is timed
    infer = dict.fromkeys(auto.precision if p == "auto" else p for p in infer_precisions)
    on = {"device": str(where)}
    groups = [("inference", f"{w}x{h}", w * h, {"width": w, "height": h, "precision": p, **on}, p)
              for w, h in sizes for p in infer]  # fmt: skip
    pixels = train_batch * train_patch * train_patch
    for precision in train_precisions:
        args = {"batch": train_batch, "patch": train_patch, "precision": precision, **on}
        groups.append(("training", f"{train_batch}x{train_patch}x{train_patch}", pixels, args, precision))
    rows = []
    for kind, size, pixel_count, args, precision in groups:
        specs = {name: {"kind": kind, "model_name": name, **args} for name in models}
        times = interleaved_times({n: _workload(spec) for n, spec in specs.items()}, warmup, repeats)
        for name in models:
            gflops, peak, peak_gpu = _isolated_footprint(specs[name])
            seconds = statistics.median(times[name])
            rows.append(BenchRow(kind, name, size, precision, seconds, pixel_count / seconds / 1e6, gflops,
                                 gflops / seconds, peak, times[name], where.type, peak_gpu))  # fmt: skip
    machine = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "repeats": repeats,
        "cpu_features": cpu_features(),
        "allocator_keeps_freed_memory": allocator,
        "auto_precision": f"{auto.precision} ({auto.reason})",
        "fused_dog": dog_library() is not None,
        "compiled_convlstm": convlstm_library() is not None,
        "compiled_pyramid": pyramid_library() is not None,
        "device": where.type,
    }
    if where.type == "cuda":
        major, minor = torch.cuda.get_device_capability(where)
        machine["gpu"] = f"{torch.cuda.get_device_name(where)} (compute capability {major}.{minor})"
        machine["cuda"] = torch.version.cuda
    return rows, machine


def _native_path(compiled: bool | None, kernel: str, short: str, gpu: bool) -> str:
    """How a part with a compiled CPU kernel ran: ``kernel`` where it was built (``compiled``, the machine's
    record), PyTorch operations where it was not, and always on a GPU, where ``short`` (the kernel) does not run."""
    if gpu:
        return f"PyTorch operations on the GPU ({short} is the CPU's)."
    if compiled is None:
        return "not recorded."
    return f"{kernel}." if compiled else "PyTorch operations (no C compiler, or SIAN_NATIVE=0)."


def to_markdown(rows: list[BenchRow], machine: dict, models: tuple[str, str] = ("sian", "prenet")) -> str:
    features = machine.get("cpu_features", {})
    gpu = machine.get("gpu")  # set by run_benchmark for a CUDA run: its rows carry peak GPU memory
    dog = _native_path(machine.get("fused_dog"), "the fused compiled kernel (sian/_native/dog.c)", "the fused kernel",
                       bool(gpu))  # fmt: skip
    lstm = _native_path(machine.get("compiled_convlstm"), "one compiled pass (sian/_native/convlstm.c)",
                        "the compiled pass", bool(gpu))  # fmt: skip
    pyramid = _native_path(machine.get("compiled_pyramid"), "one compiled pass each (sian/_native/pyramid.c)",
                           "the compiled pass", bool(gpu))  # fmt: skip
    lines = [
        f"Measured {machine['date']} on {machine['cpu']} ({machine['threads']} threads), "
        f"torch {machine['torch']}, Python {machine['python']}; models timed in turns (order reversed "
        f"every turn), median of {machine.get('repeats', '?')} runs after a warm-up.",
        "",
    ]
    if gpu:
        lines += [f"Ran on the GPU: {gpu}, CUDA {machine.get('cuda')}; each inference moves the image to the GPU "
                  "and the result back, as `sian derain` does.", ""]  # fmt: skip
    lines += [
        f"CPU features: {', '.join(k for k, v in features.items() if v) or 'none of note'}"
        f" (absent: {', '.join(k for k, v in features.items() if not v) or 'none'}); "
        f"`--precision auto` picks {machine.get('auto_precision', '?')}.",
        "",
        f"SIAN's DoG pyramid (inference): {dog}",
        "",
        f"The ConvLSTM update (inference, both models): {lstm}",
        "",
        f"SIAN's attention step and coarse-to-fine fusion inputs (inference): {pyramid}",
        "",
        "| kind | model | size | precision | s | MP/s | GFLOP | GFLOP/s | peak RSS (MB) |"
        + (" peak GPU (MB) |" if gpu else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if gpu else ""),
    ]
    for r in rows:
        gpu_cell = "" if not gpu else f" {r.peak_gpu_mb:.0f} |" if r.peak_gpu_mb is not None else " |"
        lines.append(f"| {r.kind} | {r.model} | {r.size} | {r.precision} | {r.seconds:.3f} | "
                     f"{r.megapixels_per_second:.4f} | {r.gflops:.1f} | {r.gflops_per_second:.1f} | "
                     f"{r.peak_rss_mb:.0f} |{gpu_cell}")  # fmt: skip
    lines.append("")
    a, b = models
    for key in dict.fromkeys((r.kind, r.size, r.precision) for r in rows):
        pair = {r.model: r for r in rows if (r.kind, r.size, r.precision) == key}
        if a in pair and b in pair:
            r = turn_ratios(pair[a], pair[b])
            flop_ratio = pair[a].gflops / pair[b].gflops
            median_ratio = pair[a].seconds / pair[b].seconds
            lines.append(f"- {key[0]} {key[1]} {key[2]}: time ratio {a}/{b} = {r['median']:.2f} "
                         f"(median of {r['turns']} per-turn ratios, quartiles {r['q1']:.2f}-{r['q3']:.2f}; "
                         f"ratio of medians {median_ratio:.2f}; FLOP ratio {flop_ratio:.2f})")  # fmt: skip
    # Speed-up of each reduced precision over fp32, same model, kind and size, same run (ratio of medians).
    for kind, size in dict.fromkeys((r.kind, r.size) for r in rows):
        for model in models:
            by_precision = {r.precision: r for r in rows if (r.kind, r.size, r.model) == (kind, size, model)}
            for reduced in ("bf16", "fp16"):
                if "fp32" in by_precision and reduced in by_precision:
                    speedup = by_precision["fp32"].seconds / by_precision[reduced].seconds
                    what = "step rate" if kind == "training" else "image rate"
                    lines.append(f"- {kind} {size} {model}: {reduced} {what} {speedup:.2f}x fp32's (ratio of medians)")
    return "\n".join(lines) + "\n"


def rows_to_dict(rows: list[BenchRow], machine: dict) -> dict:
    """The machine description and every row, ready for JSON (``sian bench --json``)."""
    return {"machine": machine, "rows": [asdict(r) for r in rows]}


def _authors_model(code: Path, weights: Path) -> torch.nn.Module:
    """The authors' own SIAN (class ``RPDNet`` of ``code/rpdnet.py``, their release) with their weights."""
    import importlib.util

    from .convert import read_checkpoint

    source = Path(code) / "rpdnet.py"
    if not source.is_file():
        raise FileNotFoundError(f"--authors-code: no rpdnet.py in {code} (the authors' models/ folder)")
    spec = importlib.util.spec_from_file_location("authors_rpdnet", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.RPDNet()
    model.load_state_dict(read_checkpoint(weights))
    return model.eval()


def default_path(
    width: int = 481,
    height: int = 321,
    images: int = 20,
    authors_code: str | Path | None = None,
    authors_weights: str | Path | None = None,
) -> dict:
    """What a user waits for on the default path (``sian derain`` / :class:`sian.Pipeline` with their defaults):

    - ``one_shot_seconds``: a fresh process runs ``sian derain`` on one ``width x height`` image, start-up
      included (the process's wall time);
    - ``images_per_second``: one pipeline derains ``images`` same-size images after a warm-up image;
    - with ``authors_code`` (a folder holding the authors' ``rpdnet.py``) and ``authors_weights`` (their
      checkpoint), ``authors_seconds``: their model's time per image on the same images, in turns with ours
      (their code as released: eager, fp32, no autograd), and ``speedup``, their time over ours.

    The images are seeded noise: the time does not depend on the content.
    """
    import tempfile

    import numpy as np

    from .inference import Pipeline

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(images + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        from .io import write_image

        source = write_image(Path(tmp) / "rainy.png", frames[0])
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "sian", "--quiet", "derain", str(source), "-o", f"{tmp}/out"],
                             capture_output=True, text=True)  # fmt: skip
        one_shot = time.perf_counter() - start
        if run.returncode:
            raise RuntimeError(f"sian derain failed: {run.stderr.strip()[-2000:]}")
    pipeline = Pipeline()
    theirs = None
    if authors_code is not None:
        if authors_weights is None:
            raise ValueError("--authors-code needs the authors' weights (--authors-weights)")
        theirs = _authors_model(Path(authors_code), Path(authors_weights))
    pipeline(frames[0])  # warm-up: caches, kernels, allocator
    if theirs is not None:
        with torch.inference_mode():
            theirs(torch.from_numpy(frames[0]).permute(2, 0, 1)[None].float() / 255)
    ours_seconds, their_seconds = 0.0, 0.0
    for frame in frames[1:]:  # in turns, so that the machine's noise falls on both alike
        start = time.perf_counter()
        pipeline(frame)
        ours_seconds += time.perf_counter() - start
        if theirs is not None:
            start = time.perf_counter()
            with torch.inference_mode():
                theirs(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255)[-1].clamp(0, 1)
            their_seconds += time.perf_counter() - start
    result = {"size": f"{width}x{height}", "images": images, "one_shot_seconds": one_shot,
              "images_per_second": images / ours_seconds if images else None,
              "seconds_per_image": ours_seconds / images if images else None,
              "pipeline": pipeline.describe()}  # fmt: skip
    if theirs is not None and images:
        result["authors_seconds"] = their_seconds / images
        result["speedup"] = their_seconds / ours_seconds
    return result


def default_path_markdown(result: dict) -> str:
    """The default path's figures as Markdown lines (:func:`default_path`)."""
    lines = [f"Default path ({result['pipeline']}), {result['size']}:", "",
             "- one-shot (a fresh `sian derain` of one image, start-up included): "
             f"{result['one_shot_seconds']:.2f} s"]  # fmt: skip
    if result["images"]:
        lines.append(f"- throughput over {result['images']} images in one process: {result['images_per_second']:.3f} "
                     f"images/s ({result['seconds_per_image']:.3f} s per image)")  # fmt: skip
    if "authors_seconds" in result:
        lines.append(f"- the authors' code on the same images, in turns: {result['authors_seconds']:.3f} s per image; "
                     f"ours is **{result['speedup']:.2f}x** as fast")  # fmt: skip
    return "\n".join(lines) + "\n"
