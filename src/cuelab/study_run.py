"""`cuelab study run`: a study's variants as DVC experiments, their results gathered for the
study report.

Each variant becomes one queued DVC experiment of the project's own pipeline (dvc.yaml), named
after the variant, its values set on params.yaml with `-S` (`dvc exp run --queue -n <variant>
-S ++key=value ...`, Hydra's `++`: set the key, adding it where params.yaml lacks it); then
`dvc exp run --run-all -j N` runs the queue with N workers. When they are done, each
experiment's reports/evaluation/results.json and reports/trace_report.html (DVC outputs, in the
DVC cache) are read at the experiment's commit (`dvc.api.DVCFileSystem(rev=...)`) and copied to
<runs>/<variant>/evaluation/results.json and <runs>/<variant>/trace_report.html, where `cuelab
study report` reads them.

Why queued experiments, not a matrix stage (`foreach`/`matrix` in dvc.yaml): a variant is the
whole pipeline with other params (sample, render, sensor, validate, train, evaluate, report),
and a matrix would have to repeat every stage per variant and write the study into dvc.yaml; a
DVC experiment is exactly "this pipeline with these params", so each variant is an ordinary
experiment: `dvc exp show` compares them with the rest, `dvc exp apply <variant>` brings one
back, each is named after its values, and its MLflow runs land in the project's store as every
queued experiment's do (`cuelab.tracking.project_root`). Each variant is its own MLflow
experiment (its params' name is the variant's name) and registers its own model.

Why -j: each queue worker runs one variant's pipeline at a time, in its own temporary copy of the
project; the render and train steps already use every core, so on a 2-core machine one worker
(the default) is fastest; more help where a variant leaves cores or a GPU idle.

Renders are shared through the render cache (`cuelab.render.cache`): before the queue starts, every
distinct scene of the study's variants is rendered once into the project's .cuelab/render-cache
(`cuelab.study.study_scenes`; what an earlier run left there is not drawn again); each variant's
render stage then runs, in its temporary copy, and takes every render from there (DVC_ROOT points
it at the project). If the queue's workers
cannot start, `dvc exp run --run-all` waits for them; `dvc queue status` tells.

When the results are gathered, the study report is written beside them (<runs>/study.html and
its CSV tables) and the study is logged to the project's MLflow store (`study_tracking`).

A variant whose experiment already exists for this commit (the same name, the same baseline) is
not queued again, only gathered: `--force` runs it again. So Ctrl-C stops the study (the queue's
running variants killed, its queued ones removed: DVC alone would go on in the background), and
running it again picks up where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .atomic import write_bytes
from .config import experiment_from_yaml
from .errors import CuelabError, ExperimentError, Interrupted
from .study import Study, Variant

PARAMS = "params.yaml"
STOP_TIMEOUT = 60.0  # seconds for a `dvc queue` command that only reads or edits the queue
RESULTS = "reports/evaluation/results.json"
TRACE = "reports/trace_report.html"


def _dvc_command(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of `dvc <args>`: this environment's dvc."""
    dvc = Path(sys.executable).with_name("dvc")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    if dvc.exists():  # the queue starts its workers as plain `dvc`, found on PATH: this one
        env["PATH"] = os.pathsep.join([str(dvc.parent), env.get("PATH", "")])
    return [str(dvc) if dvc.exists() else "dvc", *args], env


def _dvc(args: list[str], cwd: Path, check: bool = True,
         timeout: float | None = None) -> subprocess.CompletedProcess:
    """`dvc <args>` in cwd; `timeout`: seconds, then it is killed (subprocess.TimeoutExpired)."""
    cmd, env = _dvc_command(args)
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and done.returncode != 0:
        raise CuelabError(f"`dvc {' '.join(args)}` failed: "
                          + (done.stderr.strip() or done.stdout.strip())[-2000:])
    return done


def _git(args: list[str], cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise CuelabError(f"`git {' '.join(args)}` failed in {cwd}: {done.stderr.strip()}")
    return done.stdout.strip()


def hydra_value(v: Any) -> str:
    """A value as Hydra's override grammar reads it back (strings always quoted)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(hydra_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{hydra_value(str(k))}:{hydra_value(x)}"
                              for k, x in v.items()) + "}"
    raise CuelabError(f"a study value of type {type(v).__name__} ({v!r}) cannot be set on "
                      "params.yaml")


def overrides(study: Study, variant: Variant) -> list[str]:
    """The `-S` arguments that make params.yaml this variant."""
    sets = {**study.spec.set, **variant.values, "train.replicates": study.spec.replicates,
            "name": variant.name, **({"seed": variant.experiment.seed} if variant.draw else {})}
    args = []
    for key, value in sets.items():
        args += ["-S", f"++{key}={hydra_value(value)}"]
    return args


@dataclasses.dataclass
class RunSummary:
    runs: Path
    queued: list[str]
    reused: list[str]
    gathered: list[str]
    failed: list[str]
    note: str = ""
    report: str = ""    # what the study report and MLflow said
    rendered: str = ""  # what was rendered into the cache before the queue started
    retried: list[str] = dataclasses.field(default_factory=list)  # failed with N workers, run alone

    def __str__(self) -> str:
        lines = [self.rendered] if self.rendered else []
        lines += [f"study: {len(self.queued)} variants run as DVC experiments"
                 + (f", {len(self.reused)} already run for this commit (gathered again; "
                    "--force runs them again)" if self.reused else "")]
        if self.retried:
            lines.append(f"{len(self.retried)} failed beside another worker and ran again "
                         f"alone: {', '.join(self.retried)}")
        lines.append(f"gathered {len(self.gathered)} variants' results into {self.runs}")
        if self.report:
            lines.append(self.report)
        if self.failed:
            lines.append("failed (no experiment with results): " + ", ".join(self.failed)
                         + "; `dvc queue logs <name>` tells why" + self.note)
        return "\n".join(lines)


def run_study(study: Study, runs: str | Path | None = None, jobs: int = 1,
              force: bool = False) -> RunSummary:
    root = _project(study)
    runs = Path(runs) if runs is not None else root / "runs" / study.name
    if jobs < 1:
        raise CuelabError(f"--jobs: got {jobs}; at least 1 queue worker")
    head = _git(["rev-parse", "HEAD"], root)
    existing = _experiments(root, head)
    queued, reused = [], []
    for v in study.variants():
        if v.name in existing and not force:
            reused.append(v.name)
            continue
        _queue(study, v, root, force)
        queued.append(v.name)
    note = rendered = ""
    retried: list[str] = []
    if queued:
        try:
            rendered = _render_first(study, root)
            said = _run_queue(root, head, jobs, queued)
            if jobs > 1:  # DVC's workers share .dvc/cache/runs, and one can trip on another's
                # write of the same stage's entry (ENOENT on its temporary file): run alone
                done = _experiments(root, head)
                retried = [n for n in queued if n not in done]
                if retried:
                    _dvc(["queue", "remove", *retried], root, check=False,
                         timeout=STOP_TIMEOUT)
                    for v in study.variants():
                        if v.name in retried:
                            _queue(study, v, root, force)
                    said = _run_queue(root, head, 1, retried)
        except KeyboardInterrupt:
            raise _stop(study, root, head) from None
        if said:
            note = f" (dvc said: {said[-500:]})"
    existing = _experiments(root, head)
    gathered, failed = [], []
    for v in study.variants():
        rev = existing.get(v.name)
        if rev is None:
            failed.append(v.name)
            continue
        _gather(root, rev, v, runs / v.name)
        gathered.append(v.name)
    report = _report_and_log(study, runs, root) if gathered else ""
    return RunSummary(runs, queued, reused, gathered, failed, note, report, rendered, retried)


def _queue(study: Study, variant: Variant, root: Path, force: bool) -> None:
    _dvc(["exp", "run", "--queue", "-n", variant.name, *(["--force"] if force else []),
          *overrides(study, variant)], root)


def _run_queue(root: Path, head: str, jobs: int, names: list[str], grace: float = 60.0) -> str:
    """`dvc exp run --run-all -j N`, waited for; returns what DVC said if it failed. With more
    than one worker DVC can hang after the last variant: a worker told to shut down when the
    queue is empty misses the message (the first worker, which cleans the queue's broker when it
    stops, can remove it first), and `--run-all` waits for it for ever. So once none of `names`
    is queued or running, DVC has `grace` seconds to finish; then the queue is ended
    (`_end_queue`): every variant has its result by then."""
    import tempfile
    import time

    cmd, env = _dvc_command(["exp", "run", "--run-all", "-j", str(jobs)])
    with tempfile.TemporaryFile() as said, subprocess.Popen(
            cmd, cwd=root, env=env, stdout=said, stderr=subprocess.STDOUT) as run:
        before = _experiments(root, head)  # --force: a variant's earlier experiment
        settled = None           # when the last of `names` left the queue
        asked = time.monotonic()  # `dvc queue status` costs a second of CPU: once a minute
        while run.poll() is None:
            time.sleep(2)
            if settled is None:  # every variant a new experiment (cheap), or none left (failed)
                now = _experiments(root, head)
                if all(now.get(n, before.get(n)) != before.get(n) for n in names):
                    settled = time.monotonic()
                elif time.monotonic() - asked > 60:
                    asked = time.monotonic()
                    settled = None if _pending(root, names) else asked
            elif time.monotonic() - settled > grace and run.poll() is None:
                _end_queue(root)
                run.wait()
                return ""  # every variant is done: what they left is gathered as always
        said.seek(0)
        return said.read().decode(errors="replace").strip()[-2000:] if run.returncode else ""


def _pending(root: Path, names: list[str]) -> bool:
    """Might any of `names` still run? Yes unless every one of them is listed by `dvc queue
    status` and every row of theirs has ended (Success or Failed): a table it cannot read, or a
    state it does not know, must not end a running study."""
    try:
        said = _dvc(["queue", "status"], root, check=False, timeout=STOP_TIMEOUT).stdout
    except subprocess.TimeoutExpired:
        return True
    rows = [r for r in (line.split() for line in said.splitlines())
            if len(r) >= 3 and r[1] in names]
    return {r[1] for r in rows} != set(names) or \
        any(r[-1] not in ("Success", "Failed") for r in rows)


def _stop(study: Study, root: Path, head: str) -> Interrupted:
    """Ctrl-C before or while the queue runs. DVC leaves its queue workers (daemons) running the
    variants in the background, and variants queued but not started stay queued for the next
    `dvc exp run --run-all`; a researcher who stops a study means it to stop. So the running
    variants are killed, the queued ones removed. The finished ones stay experiments of this
    commit, which the next `cuelab study run` gathers instead of running again. Each step is
    bounded: a stop must not hang on DVC (what it leaves queued, the next run removes or runs)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        _dvc(["queue", "remove", "--queued"], root, check=False, timeout=STOP_TIMEOUT)
    _end_queue(root)
    existing = _experiments(root, head)
    finished = [v.name for v in study.variants() if v.name in existing]
    return Interrupted(
        f"interrupted: the study's queue is stopped (its running variants killed, the queued "
        f"ones removed); {len(finished)} of {len(study.variants())} variants finished"
        f"{' (' + ', '.join(finished) + ')' if finished else ''} and are kept as DVC "
        f"experiments: `cuelab study run {study.path}` again gathers them and runs the rest")


def _end_queue(root: Path, patience: float = 10.0) -> None:
    """End the project's queue: its workers and `--run-all` (in the project, by their command
    lines) and every process in a variant's temporary copy (.dvc/tmp/exps/: a run and its
    stage). `dvc queue stop --kill` does not: tried here, a variant's stage went on alone, and
    once the workers too. Linux (/proc); SIGTERM, then SIGKILL to those still there after
    `patience` seconds."""
    import signal
    import time

    def ours() -> list[int]:
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                cwd = Path(os.readlink(proc / "cwd"))
                line = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue  # ended, or not ours to see
            queue = cwd == root and any(a in line for a in (b"queue-worker", b"--run-all"))
            if int(proc.name) != os.getpid() and (
                    queue or cwd.is_relative_to(root / ".dvc" / "tmp" / "exps")):
                found.append(int(proc.name))
        return found

    deadline = time.monotonic() + patience
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in ours():
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        while ours() and time.monotonic() < deadline:
            time.sleep(0.5)


def _render_first(study: Study, root: Path) -> str:
    """Every distinct scene of the study, rendered once into the project's render cache before
    the queue starts: each variant's render stage then takes its renders from there, however
    many queue workers run at once (two variants rendering the same new scene side by side
    would each draw it)."""
    import tempfile

    from .cores import usable_cores
    from .render import render
    from .render.cache import default_folder
    from .study import study_scenes

    folder = default_folder(root / "data" / "renders")
    if folder is None:
        return "no render cache (CUELAB_RENDER_CACHE=off): each variant renders its own scenes"
    table = study_scenes(study)
    with tempfile.TemporaryDirectory() as tmp:
        done = render(study.base, table, Path(tmp) / "renders", cache=folder,
                      workers=usable_cores())
    return (f"rendered {done.rendered} of the study's {len(table)} distinct scenes into the "
            f"render cache {folder} ({done.cached} were there) in {done.seconds:.0f} s")


def _report_and_log(study: Study, runs: Path, root: Path) -> str:
    """The study report beside the variants (<runs>/study.html and its tables), and the study
    in the project's MLflow store (a parent run, a child per variant: `study_tracking`)."""
    from .study_report import study_report
    from .study_tracking import log_study
    from .tracking import DEFAULT_DB

    said = [study_report(study, runs, runs / "study.html")]
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / DEFAULT_DB}"
    try:
        said.append(log_study(study, runs, sorted(runs.glob("study*.*")), uri))
    except CuelabError as e:  # the results are gathered and reported: say it, keep them
        said.append(f"the study was not logged to MLflow: {e}")
    return "\n".join(said)


def _project(study: Study) -> Path:
    """The DVC project whose params.yaml is the study's base."""
    base = study.base_path.resolve()
    root = base.parent
    if base.name != PARAMS or not (root / ".dvc").is_dir() or not (root / "dvc.yaml").is_file():
        raise CuelabError(f"{study.path}: base: got {str(study.spec.base)!r}; `cuelab study "
                          f"run` runs the variants as DVC experiments, which vary the "
                          f"project's {PARAMS}: the base must be the params.yaml beside "
                          f"dvc.yaml and .dvc/ ({base} is not)")
    try:
        _git(["rev-parse", "HEAD"], root)
    except CuelabError:
        raise CuelabError(f"{root}: DVC experiments need a git repository with a commit "
                          "(git init; git add -A; git commit)") from None
    return root


def _experiments(root: Path, baseline: str) -> dict[str, str]:
    """The DVC experiments of this baseline commit: name -> commit."""
    prefix = f"refs/exps/{baseline[:2]}/{baseline[2:]}/"
    out = _git(["for-each-ref", "--format=%(refname) %(objectname)", prefix], root)
    found = {}
    for line in filter(None, out.splitlines()):
        ref, sha = line.split()
        found[ref[len(prefix):]] = sha
    return found


def _gather(root: Path, rev: str, variant: Variant, folder: Path) -> None:
    """The experiment's results.json and trace report into folder, after checking that the
    experiment ran with the variant's params."""
    from dvc.api import DVCFileSystem

    fs = DVCFileSystem(str(root), rev=rev)
    params = fs.read_text(PARAMS)
    try:
        ran = experiment_from_yaml(params, f"{PARAMS} of experiment {variant.name}")
    except ExperimentError as e:
        raise CuelabError(f"experiment {variant.name} ({rev[:7]}) ran with params that are "
                          f"not the variant's: {e}") from None
    if ran.model_dump() != variant.experiment.model_dump():
        differ = _differences(ran.model_dump(), variant.experiment.model_dump())
        raise CuelabError(f"experiment {variant.name} ({rev[:7]}) ran with other params than "
                          f"the study's variant ({', '.join(differ[:5])}): the base params.yaml "
                          "changed since it ran? `cuelab study run --force` runs it again")
    if not fs.exists(RESULTS):
        raise CuelabError(f"experiment {variant.name} ({rev[:7]}) has no {RESULTS}")
    write_bytes(folder / PARAMS, params.encode())
    if fs.exists(TRACE):
        write_bytes(folder / "trace_report.html", fs.read_bytes(TRACE))
    write_bytes(folder / "evaluation" / "results.json", fs.read_bytes(RESULTS))


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in dict.fromkeys([*a, *b])
                for d in _differences(a.get(k), b.get(k), f"{path}.{k}".lstrip("."))]
    return [] if json.dumps(a, default=str) == json.dumps(b, default=str) else [path]

