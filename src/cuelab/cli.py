"""`cuelab <step>`: the command line. Each command parses its arguments and calls the step's
function, the same one DVC, the Kubeflow components and the tests call."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import CuelabError

DEFAULT_PARAMS = "params.yaml"


def _params_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default=DEFAULT_PARAMS, type=Path,
                   help="the experiment (default: %(default)s)")


def cmd_factors(args: argparse.Namespace) -> None:
    from .factors import factors_table

    print(factors_table())


def cmd_params_check(args: argparse.Namespace) -> None:
    from .config import load_experiment
    from .describe import describe_experiment

    exp = load_experiment(args.file)
    print(describe_experiment(exp, source=str(args.file)))


def cmd_params_resolve(args: argparse.Namespace) -> None:
    from .steps import resolve

    written = resolve(args.file, args.out)
    print(f"{args.file}: wrote what each step reads, defaults filled in: "
          + ", ".join(str(p) for p in written))


def cmd_sample(args: argparse.Namespace) -> None:
    from .sampling import sample

    print(sample(args.params, args.out))


def cmd_render(args: argparse.Namespace) -> None:
    if args.contact_sheet:
        from .render.contact_sheet import contact_sheet

        print(contact_sheet(args.params, args.contact_sheet_out, workers=args.workers))
        return
    from .render import render

    print(render(args.params, args.scenes, args.out, workers=args.workers, shard=args.shard,
                 threads=args.threads))


def cmd_sensor(args: argparse.Namespace) -> None:
    if args.contact_sheet:
        from .sensor.contact_sheet import contact_sheet

        print(contact_sheet(args.params, args.renders, args.contact_sheet_out))
        return
    from .sensor import sensor

    print(sensor(args.params, args.scenes, args.renders, args.out))


def cmd_validate(args: argparse.Namespace) -> None:
    from .validate import validate

    print(validate(args.params, args.scenes, args.images, args.docs, args.summary))


def cmd_train(args: argparse.Namespace) -> None:
    from .train import train

    print(train(args.params, args.images, args.models, args.metrics, resume=args.resume))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluate import evaluate

    print(evaluate(args.params, args.scenes, args.images, args.models, args.out, args.metrics,
                   args.plots))


def cmd_report(args: argparse.Namespace) -> None:
    from .report import report

    print(report(args.params, args.evaluation, args.out, args.validation, args.train_metrics))


def cmd_pipeline(args: argparse.Namespace) -> None:
    from .pipeline import compile_pipeline, run_local, submit

    if args.action == "compile":
        print(f"wrote {compile_pipeline(args.out)}")
    elif args.action == "submit":
        if not args.host:
            raise CuelabError("submit needs --host URL, the address of Kubeflow Pipelines (e.g. "
                              "http://localhost:8080 after `kubectl port-forward -n kubeflow "
                              "svc/ml-pipeline-ui 8080:80`)")
        print(submit(args.host, args.params, args.experiment, args.run_name))
    else:
        print(run_local(args.params, args.workdir, args.dvc_remote))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cuelab", description="Which cues does my image classifier rely on?")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _experiment_commands(sub)
    _data_commands(sub)
    _model_commands(sub)
    _pipeline_command(sub)
    return parser


def _experiment_commands(sub) -> None:
    p = sub.add_parser("factors", help="list every factor: domain, default, what it does")
    p.set_defaults(func=cmd_factors)

    p = sub.add_parser("params", help="check an experiment file, or resolve what each step reads")
    psub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = psub.add_parser("check", help="validate and summarise an experiment file")
    c.add_argument("file", nargs="?", default=DEFAULT_PARAMS, type=Path)
    c.set_defaults(func=cmd_params_check)
    c = psub.add_parser("resolve", help="write each step's part of the experiment, defaults "
                        "filled in (what the DVC stages depend on)")
    c.add_argument("file", nargs="?", default=DEFAULT_PARAMS, type=Path)
    c.add_argument("--out", default="data/params", type=Path,
                   help="one <step>.json per step (default: %(default)s)")
    c.set_defaults(func=cmd_params_resolve)


def _data_commands(sub) -> None:
    p = sub.add_parser("sample", help="experiment -> scenes table (one row per image)")
    _params_arg(p)
    p.add_argument("--out", default="data/scenes.parquet", type=Path)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("render", help="scenes table -> clean renders + exact object masks")
    _params_arg(p)
    p.add_argument("--scenes", default="data/scenes.parquet", type=Path)
    p.add_argument("--out", default="data/renders", type=Path)
    p.add_argument("--workers", default=len(os.sched_getaffinity(0)), type=int,
                   help="worker processes, each with its own Blender (default: %(default)s)")
    p.add_argument("--threads", type=int,
                   help="Cycles CPU threads per worker (default: the cores shared out)")
    p.add_argument("--shard", default="0/1", metavar="I/N",
                   help="render only chunks I, I+N, ... (default: all)")
    _contact_sheet_args(p, "render every scene factor's levels side by side", "render")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("sensor", help="clean renders -> final images (the simulated camera)")
    _params_arg(p)
    p.add_argument("--scenes", default="data/scenes.parquet", type=Path)
    p.add_argument("--renders", default="data/renders", type=Path)
    p.add_argument("--out", default="data/images", type=Path)
    _contact_sheet_args(p, "one render through each sensor factor's levels", "sensor")
    p.set_defaults(func=cmd_sensor)

    p = sub.add_parser("validate", help="the data gate: Great Expectations over table and images")
    _params_arg(p)
    p.add_argument("--scenes", default="data/scenes.parquet", type=Path)
    p.add_argument("--images", default="data/images", type=Path)
    p.add_argument("--docs", default="reports/validation", type=Path,
                   help="where the Data Docs (HTML) go (default: %(default)s)")
    p.add_argument("--summary", default="metrics/validation.json", type=Path)
    p.set_defaults(func=cmd_validate)


def _contact_sheet_args(p: argparse.ArgumentParser, what: str, step: str) -> None:
    p.add_argument("--contact-sheet", action="store_true", help=f"instead: {what}")
    p.add_argument("--contact-sheet-out", default=f"reports/{step}_contact_sheet.png", type=Path)


def _model_commands(sub) -> None:
    p = sub.add_parser("train", help="dataset -> a CNN, tracked in MLflow (MLFLOW_TRACKING_URI, "
                       "default ./mlflow.db) and registered as cuelab-<experiment name>")
    _params_arg(p)
    p.add_argument("--images", default="data/images", type=Path)
    p.add_argument("--models", default="models", type=Path,
                   help="model.pt (weights) and model.json (config) (default: %(default)s)")
    p.add_argument("--metrics", default="metrics/train.json", type=Path)
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --models (written after every epoch)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="the model on every probe: sweeps, flip rates, cue "
                       "preferences, backgrounds, attribution")
    _params_arg(p)
    p.add_argument("--scenes", default="data/scenes.parquet", type=Path)
    p.add_argument("--images", default="data/images", type=Path)
    p.add_argument("--models", default="models", type=Path,
                   help="the trained model's folder (default: %(default)s)")
    p.add_argument("--out", default="reports/evaluation", type=Path,
                   help="results.json, figures, summary page (default: %(default)s)")
    p.add_argument("--metrics", default="metrics/evaluate.json", type=Path)
    p.add_argument("--plots", default="metrics/plots", type=Path,
                   help="plot data for `dvc plots` (default: %(default)s)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="the trace report: one self-contained HTML page, the "
                       "factors ranked with their evidence")
    _params_arg(p)
    p.add_argument("--evaluation", default="reports/evaluation", type=Path,
                   help="what `cuelab evaluate` wrote (default: %(default)s)")
    p.add_argument("--out", default="reports/trace_report.html", type=Path)
    p.add_argument("--validation", default="metrics/validation.json", type=Path,
                   help="the data gate's summary, shown if present (default: %(default)s)")
    p.add_argument("--train-metrics", default="metrics/train.json", type=Path,
                   help="training's summary, shown if present (default: %(default)s)")
    p.set_defaults(func=cmd_report)


def _pipeline_command(sub) -> None:
    p = sub.add_parser("pipeline",
                       help="the Kubeflow pipeline: compile, run it locally, or submit it")
    p.add_argument("action", choices=["compile", "run-local", "submit"])
    _params_arg(p)
    p.add_argument("--out", default="pipelines/cuelab_pipeline.yaml", type=Path,
                   help="compile: where the pipeline YAML goes (default: %(default)s)")
    p.add_argument("--workdir", default="runs/kfp-local", type=Path,
                   help="run-local: where kfp.local keeps its outputs (default: %(default)s)")
    p.add_argument("--dvc-remote", default="",
                   help="run-local: push the validated dataset to this DVC remote (folder or URL)")
    p.add_argument("--host", metavar="URL",
                   help="submit: the Kubeflow Pipelines UI or API, e.g. http://localhost:8080")
    p.add_argument("--experiment", metavar="NAME",
                   help="submit: the KFP experiment to run in (default: the params' name)")
    p.add_argument("--run-name", metavar="NAME", help="submit: the run's name (default: KFP's)")
    p.set_defaults(func=cmd_pipeline)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CuelabError as e:
        print(f"cuelab {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # `cuelab factors | head`
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
