"""The command line's habits: --version, help on every option, `cuelab pipeline ACTION`,
suggestions for mistyped commands and options, shell completion, and `cuelab export` on the real
tiny dataset (an ImageFolder tree that gives back the exact pixels, and its factors.csv)."""

import argparse
import os
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import BIN, ROOT
from cuelab.cli import build_parser, main, walk
from cuelab.config import load_experiment
from cuelab.data import load_split
from cuelab.errors import CuelabError
from cuelab.export import export
from cuelab.factors import REGISTRY
from cuelab.scenes import read_scenes


def cuelab(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    return subprocess.run([BIN / "cuelab", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def error_line(argv: list[str], capsys) -> str:
    """What argparse says when it refuses `argv` (status 2), without the usage lines."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


# --- --version ----------------------------------------------------------------------------------

def test_version_is_the_installed_package_and_the_git_commit():
    r = cuelab("--version")
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"cuelab (\S+)(?: \(git ([0-9a-f]{40}(?:-dirty)?)\))?\n", r.stdout)
    assert m, r.stdout
    assert m.group(1) == version("cuelab")
    assert m.group(2), "the tests run from a git checkout: the commit should show"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    assert m.group(2).removesuffix("-dirty") == head


def test_version_shows_the_commit_an_image_was_built_from(monkeypatch, capsys):
    monkeypatch.setenv("CUELAB_GIT_COMMIT", "0123abc")
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"cuelab {version('cuelab')} (git 0123abc)\n"


# --- help ---------------------------------------------------------------------------------------

def test_every_option_positional_and_command_has_help():
    parsers = list(walk(build_parser()))
    assert len(parsers) > 15  # the walk reaches the nested commands: params check, pipeline ...
    for parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help and action.help != argparse.SUPPRESS, (
                f"`{parser.prog}`: {name} has no help")
            if isinstance(action, argparse._SubParsersAction):
                for listed in action._choices_actions:
                    assert listed.help, f"`{parser.prog} {listed.dest}` has no help"


RUN_OPTIONS = {"--render-shards": 2, "--dvc-remote": "", "--mlflow-tracking-uri": "",
               "--render-cache": ""}
CLUSTER_OPTIONS = {"--config-map": "cuelab-config", "--mlflow-secret": "cuelab-mlflow",
                   "--storage-secret": "cuelab-storage", "--accelerator": "nvidia.com/gpu",
                   "--gpus": 1, "--gpu-steps": "train", "--gpu-toleration": "nvidia.com/gpu",
                   "--gpu-node-selector": None, "--cache": "pure", "--retries": 2,
                   "--image-pull-policy": ""}
PIPELINE_OPTIONS = {
    "compile": {"--out": Path("pipelines/cuelab_pipeline.yaml"), "--study": False,
                **CLUSTER_OPTIONS},
    "run-local": {"--params": Path("params.yaml"), "--workdir": Path("runs/kfp-local"),
                  **RUN_OPTIONS, "--cache": False, "--verbose": False, "--quiet": False,
                  "--study": None, "--retries": 0},  # here a failure is reported at once
    "submit": {"--params": Path("params.yaml"), "--host": None, "--experiment": None,
               "--run-name": None, "--namespace": None, "--token": None, "--token-file": None,
               "--service-account": None, "--timeout": 10.0, **RUN_OPTIONS, **CLUSTER_OPTIONS},
}


@pytest.mark.parametrize("action", sorted(PIPELINE_OPTIONS))
def test_each_pipeline_action_has_only_its_own_options_with_the_old_defaults(action):
    parser = build_parser()
    sub = parser.commands().choices["pipeline"].commands().choices[action]
    options = {o for a in sub._actions for o in a.option_strings if o.startswith("--")}
    assert options == set(PIPELINE_OPTIONS[action]) | {"--help"}
    args = parser.parse_args(["pipeline", action])
    assert args.command == "pipeline" and args.action == action
    for option, default in PIPELINE_OPTIONS[action].items():
        assert getattr(args, sub._option_string_actions[option].dest) == default


@pytest.mark.parametrize("argv,expected", [  # as the README, the tests and benchmarks call it
    ("pipeline compile --out my-pipeline.yaml", {"out": Path("my-pipeline.yaml")}),
    ("pipeline run-local --params p.yaml --workdir w --dvc-remote /r",
     {"params": Path("p.yaml"), "workdir": Path("w"), "dvc_remote": "/r"}),
    ("pipeline submit --host http://localhost:8080 --params params.yaml --experiment "
     "shapes-vs-color --run-name rho-0.9",
     {"host": "http://localhost:8080", "params": Path("params.yaml"),
      "experiment": "shapes-vs-color", "run_name": "rho-0.9"}),
])
def test_existing_pipeline_invocations_still_parse(argv, expected):
    args = vars(build_parser().parse_args(argv.split()))
    assert {k: args[k] for k in expected} == expected


def test_every_documented_pipeline_call_names_an_action():
    actions = set(PIPELINE_OPTIONS)
    files = [ROOT / "README.md", ROOT / "Makefile", ROOT / "dvc.yaml"]
    for folder in ("benchmarks", "components", "docs", "pipelines", "src", "tests"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md")]
    words = set()
    for path in files:
        text = path.read_text()
        for call in (re.findall(r"cuelab pipeline ([a-z][a-z|-]*)", text)  # compile|run-local too
                     + re.findall(r'"cuelab", "pipeline", "([a-z-]+)"', text)):
            words.update(call.split("|"))
    assert {"compile", "run-local", "submit"} <= words  # the scan finds the calls
    assert words <= actions, words - actions


def test_pipeline_compile_runs_in_the_subcommand_form(tmp_path):
    out = tmp_path / "p.yaml"
    r = cuelab("pipeline", "compile", "--out", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"wrote {out}\n"
    assert "pipelineInfo:" in out.read_text()


# --- suggestions --------------------------------------------------------------------------------

def test_a_mistyped_command_gets_a_suggestion_from_the_real_cli():
    r = cuelab("trian")
    assert r.returncode == 2
    said = "cuelab: error: unknown command 'trian'; did you mean 'train'?"
    assert r.stderr.splitlines()[-1] == said
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("argv,said", [
    (["sampel"], "cuelab: error: unknown command 'sampel'; did you mean 'sample'?"),
    (["frobnicate"], "cuelab: error: unknown command 'frobnicate'; choose from factors, params, "
     "sample, render, sensor, validate, train, evaluate, report, pipeline, export, study, "
     "completion"),
    (["pipeline", "compil"],
     "cuelab pipeline: error: unknown command 'compil'; did you mean 'compile'?"),
    (["params", "chek"], "cuelab params: error: unknown command 'chek'; did you mean 'check'?"),
    (["train", "--imagse", "x"], "cuelab train: error: unknown option --imagse; did you mean "
     "--images?"),
    (["render", "--worksers=2"], "cuelab render: error: unknown option --worksers; did you mean "
     "--workers?"),
    (["train", "--epoch", "3"], "cuelab train: error: unknown option --epoch; cuelab train takes "
     "--cache, --images, --metrics, --models, --params, --resume"),  # nothing near: what there is
    (["pipeline", "compile", "--host", "h"], "cuelab pipeline compile: error: unknown option "
     "--host; cuelab pipeline compile takes --accelerator, --cache, --config-map, "
     "--gpu-node-selector, --gpu-steps, --gpu-toleration, --gpus, --image-pull-policy, "
     "--mlflow-secret, --out, --retries, --storage-secret, --study"),  # submit's, not compile's
    (["--verison"], "cuelab: error: unknown option --verison; did you mean --version?"),
    (["export", "--otu", "x", "--split", "test"],
     "cuelab export: error: unknown option --otu; did you mean --out?"),  # not "--out missing"
    (["pipeline", "--out", "x", "compile"], "cuelab pipeline: error: unknown option --out before "
     "the command; put it after the command it belongs to (compile): cuelab pipeline compile "
     "--out ..."),
    (["completion", "bsh"], "cuelab completion: error: argument shell: unknown choice 'bsh'; "
     "did you mean 'bash'?"),
    (["train", "stray"], "cuelab train: error: unrecognized arguments: stray"),
])
def test_mistakes_are_answered_with_the_nearest_real_name(argv, said, capsys):
    assert error_line(argv, capsys) == said


def test_unambiguous_prefixes_still_work():
    args = build_parser().parse_args(["train", "--metric", "m.json"])
    assert args.metrics == Path("m.json")


# --- completion ---------------------------------------------------------------------------------

def test_completion_scripts_name_the_commands():
    for shell in ("bash", "zsh", "tcsh"):
        r = cuelab("completion", shell)
        assert r.returncode == 0, r.stderr
        for word in ("export", "pipeline", "run-local", "--contact-sheet-out"):
            assert word in r.stdout, (shell, word)


@pytest.mark.skipif(not shutil.which("bash"), reason="needs bash")
def test_bash_completes_commands_options_and_paths(tmp_path):
    script = tmp_path / "cuelab.bash"
    script.write_text(cuelab("completion", "bash").stdout)
    (tmp_path / "params.yaml").touch()
    (tmp_path / "pa.txt").touch()
    (tmp_path / "other").touch()
    probe = f"""
        source {script}
        complete_line() {{
            COMP_WORDS=("$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
            COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}; COMPREPLY=()
            _shtab_cuelab; echo "${{COMPREPLY[*]}}"
        }}
        complete_line cuelab tr
        complete_line cuelab pipeline ""
        complete_line cuelab export --sp
        complete_line cuelab export --params pa
        complete_line cuelab completion ""
    """
    r = subprocess.run(["bash", "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["train", "compile run-local submit", "--split",
                                     "params.yaml pa.txt", "bash zsh tcsh"]


# --- export -------------------------------------------------------------------------------------

def read_png(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert bgr is not None and bgr.dtype == np.uint8, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def export_args(data: dict, out: Path, split: str = "test") -> list[str]:
    return ["export", "--params", str(data["params"]), "--images", str(data["images"]),
            "--scenes", str(data["scenes"]), "--split", split, "--out", str(out)]


@pytest.mark.slow
def test_export_writes_an_imagefolder_tree_with_exact_pixels_and_factors(tiny_dataset,
                                                                         tmp_path, capsys):
    out = tmp_path / "test"
    assert main(export_args(tiny_dataset, out)) == 0
    split = load_split(tiny_dataset["images"], "test")
    classes = load_experiment(tiny_dataset["params"]).classes
    names = [classes[k] for k in split.labels]
    n, k = len(split.image_ids), len(set(names))
    assert n == 6 and k > 1
    assert capsys.readouterr().out == (f"exported {n} images of split test ({k} classes) to "
                                       f"{out}; factors in {out / 'factors.csv'}\n")

    paths = [f"{c}/{i}.png" for c, i in zip(names, split.image_ids)]
    assert set(files_under(out)) == {"factors.csv", *paths}
    for path, image in zip(paths, split.images):
        assert np.array_equal(read_png(out / path), image), path  # lossless, RGB kept RGB

    csv = pd.read_csv(out / "factors.csv", float_precision="round_trip", keep_default_na=False)
    assert list(csv.columns) == ["path", "image_id", "label", "class", *REGISTRY]
    assert csv.path.tolist() == paths
    assert csv.image_id.tolist() == split.image_ids.tolist()
    assert csv.label.tolist() == split.labels.tolist() and csv["class"].tolist() == names
    table = read_scenes(tiny_dataset["scenes"]).set_index("image_id").loc[split.image_ids]
    for name in REGISTRY:  # every factor's value, exactly (floats round-trip)
        assert csv[name].tolist() == table[name].astype(object).tolist(), name
    assert (table.label.to_numpy() == split.labels).all()


@pytest.mark.slow
def test_a_plain_loader_reads_the_export(tiny_dataset, tmp_path):
    """What torchvision's ImageFolder does, by hand: classes are the sorted folder names."""
    out = tmp_path / "train"
    export(tiny_dataset["params"], tiny_dataset["images"], "train", out,
           scenes=tiny_dataset["scenes"], progress=False)
    folders = sorted(e.name for e in os.scandir(out) if e.is_dir())
    samples = []
    for index, folder in enumerate(folders):
        for root, _, files in os.walk(out / folder):
            samples += [(Path(root) / f, index) for f in sorted(files) if f.endswith(".png")]
    split = load_split(tiny_dataset["images"], "train")
    classes = load_experiment(tiny_dataset["params"]).classes
    stored = {i: (image, classes[k]) for i, image, k in zip(split.image_ids, split.images,
                                                            split.labels)}
    assert len(samples) == len(stored) == 30
    for path, index in samples:
        image, name = stored[path.stem]
        assert folders[index] == name
        assert np.array_equal(read_png(path), image)


@pytest.mark.slow
def test_export_is_deterministic_and_replaces_an_earlier_export(tiny_dataset, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        export(tiny_dataset["params"], tiny_dataset["images"], "val", out,
               scenes=tiny_dataset["scenes"], progress=False)
    assert files_under(a) == files_under(b)  # same bytes, PNGs and CSV
    (a / "stale.png").write_bytes(b"old")
    export(tiny_dataset["params"], tiny_dataset["images"], "val", a,
           scenes=tiny_dataset["scenes"], progress=False)  # an export: no --force needed
    assert files_under(a) == files_under(b)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


@pytest.mark.slow
def test_export_refuses_to_replace_what_it_did_not_write(tiny_dataset, tmp_path, capsys):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(export_args(tiny_dataset, other)) == 2
    err = capsys.readouterr().err
    assert f"cuelab export: error: --out {other}: a folder that is not empty" in err
    assert "--force" in err
    assert (other / "notes.txt").read_text() == "keep me"

    assert main(export_args(tiny_dataset, other) + ["--force"]) == 0
    assert not (other / "notes.txt").exists() and (other / "factors.csv").is_file()

    parent = tiny_dataset["images"].parent  # replacing it would delete the dataset
    before = files_under(tiny_dataset["images"])
    assert main(export_args(tiny_dataset, parent) + ["--force"]) == 2
    assert f"it holds --images {tiny_dataset['images']}" in capsys.readouterr().err
    assert files_under(tiny_dataset["images"]) == before


@pytest.mark.slow
def test_export_errors_name_the_split_or_file_and_what_would_do(tiny_dataset, tmp_path):
    out = tmp_path / "x"

    def run(split="test", **paths):
        given = {k: tiny_dataset[k] for k in ("params", "images", "scenes")} | paths
        export(given["params"], given["images"], split, out, scenes=given["scenes"],
               progress=False)

    with pytest.raises(CuelabError, match=r"split 'tset' is not in .*; it has: train, val, test"):
        run(split="tset")
    with pytest.raises(CuelabError, match=r"nope\.parquet: no scenes table there"):
        run(scenes=tmp_path / "nope.parquet")
    with pytest.raises(CuelabError, match=r"no dataset in .*nope \(index.parquet is missing\)"):
        run(images=tmp_path / "nope")

    table = read_scenes(tiny_dataset["scenes"])
    fewer = tmp_path / "fewer.parquet"
    table[table.image_id != "test-000002"].to_parquet(fewer)
    with pytest.raises(CuelabError, match=r"fewer\.parquet: no row for 1 image of split 'test'"
                       r" .*\(test-000002\); give the scenes table these images were made from"):
        run(scenes=fewer)
    relabelled = tmp_path / "relabelled.parquet"
    changed = table.copy()
    changed.loc[changed.image_id == "test-000001", "label"] += 1
    changed.to_parquet(relabelled)
    with pytest.raises(CuelabError, match=r"relabelled\.parquet: 1 image of split 'test' .* "
                       r"with another label there \(first: test-000001\)"):
        run(scenes=relabelled)
    assert not out.exists()


def _proc_status(folder: Path) -> dict[str, str]:
    """A process's /proc status fields and its command line; empty if it has gone."""
    try:
        fields = dict(line.split(":\t", 1) for line in
                      (folder / "status").read_text().splitlines() if ":\t" in line)
        fields["cmdline"] = (folder / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return {k: v.strip() for k, v in fields.items()}


def test_ctrl_c_is_a_short_message_and_status_130_not_a_traceback(tmp_path):
    """SIGINT to the process group (a terminal's Ctrl-C) while Blender renders: the step says it
    was interrupted, exits 130, and leaves only whole render chunks behind."""
    import signal
    import time

    from conftest import as_a_terminal_starts_it, tiny_experiment, write_params

    params = write_params(tmp_path / "params.yaml", tiny_experiment(
        # rendering still when the signal lands: at 32 px and 2 samples 4000 scenes took 6 s,
        # and a loaded machine let this test sleep through all of it after the first chunk
        splits={"train": 4000, "val": 6, "test": 6},
        render={"resolution": 64, "samples": 64, "device": "cpu", "chunk_size": 16}))
    scenes = tmp_path / "scenes.parquet"
    assert cuelab("sample", "--params", params, "--out", scenes, cwd=tmp_path).returncode == 0
    out = tmp_path / "renders"
    run = subprocess.Popen(as_a_terminal_starts_it(
                           [BIN / "cuelab", "render", "--params", params, "--scenes", scenes,
                            "--out", out, "--cache", "off"]), cwd=tmp_path, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           start_new_session=True)
    deadline = time.monotonic() + 120
    while not any(out.glob("*.npz")):  # rendering: a first chunk written
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.2)
    # Blender's workers ignore SIGINT (the step stops them): one raised inside Blender's own
    # Python callbacks would print Blender's traceback, whatever the step does after
    workers = [status for status in map(_proc_status, Path("/proc").glob("[0-9]*"))
               if status.get("PPid") == str(run.pid) and "resource_tracker" not in
               status["cmdline"]]
    assert workers and all(int(w["SigIgn"], 16) & 1 << signal.SIGINT - 1 for w in workers), \
        workers
    os.kill(run.pid, signal.SIGUSR1)  # where it is, for a hang's cause; it goes on
    time.sleep(0.5)
    os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err[-2000:]
    assert "cuelab render: interrupted" in err and "Traceback" not in err, err[-2000:]
    assert "(most recent call first)" in err and "cuelab/render" in err, err[-2000:]
    for chunk in out.glob("*.npz"):  # each one whole: it loads
        assert np.load(chunk).files, chunk
