"""`cuelab <step>`: the command line. Each command parses its arguments and calls the step's
function, the same one DVC, the Kubeflow components and the tests call."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import faulthandler
import signal
import sys
from pathlib import Path

from .cores import usable_cores
from .errors import CuelabError, Interrupted

DEFAULT_PARAMS = "params.yaml"


class Parser(argparse.ArgumentParser):
    """argparse that answers a mistyped command or option with the nearest real one (Python
    3.11's argparse suggests nothing): `cuelab trian` -> "did you mean 'train'?". Subcommand
    parsers are of this class too (add_subparsers makes them like their parent)."""

    def parse_known_args(self, args=None, namespace=None):
        self.given = sys.argv[1:] if args is None else list(args)  # for error(), below
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:  # argparse hands them up to the top; the command that got them says so
            self.chosen(namespace).reject(extras)
        return namespace

    def error(self, message):
        # `cuelab --verison`, `cuelab export --otu X` or `cuelab pipeline --out X compile`
        # would say that a command or --out is missing, or that X is no command: the unknown
        # option is the real mistake
        given = getattr(self, "given", [])
        unknown = [o for o in map(self.unknown_option, given) if o]
        if unknown and (message.startswith("the following arguments are required")
                        or self.unknown_option(given[0])):
            message = self.unknown_option_message(unknown[0])
        super().error(message)

    def _check_value(self, action, value):
        # argparse's check of a choice, naming the nearest one (this is its hook, if private)
        if action.choices is None or value in action.choices:
            return
        choices = [str(c) for c in action.choices]
        near = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"choose from {', '.join(choices)}"
        if action is self.commands():
            raise argparse.ArgumentError(None, f"unknown command {value!r}; {hint}")
        raise argparse.ArgumentError(action, f"unknown choice {value!r}; {hint}")

    def commands(self) -> argparse.Action | None:
        """This parser's subcommands (`cuelab COMMAND`, `cuelab pipeline ACTION`), if any."""
        return next((a for a in self._actions if isinstance(a, argparse._SubParsersAction)),
                    None)

    def chosen(self, namespace: argparse.Namespace) -> Parser:
        """The (sub)command parser that parsed the end of the command line."""
        parser = self
        while (commands := parser.commands()) is not None:
            name = getattr(namespace, commands.dest, None)
            if name not in commands.choices:
                break
            parser = commands.choices[name]
        return parser

    def reject(self, extras: list[str]) -> None:
        unknown = [o for o in map(self.unknown_option, extras) if o]
        self.error(self.unknown_option_message(unknown[0]) if unknown
                   else f"unrecognized arguments: {' '.join(extras)}")

    def unknown_option(self, arg: str) -> str | None:
        """The long option `arg` names, if this parser has no such option."""
        name = arg.split("=", 1)[0]
        if not name.startswith("--") or name == "--":
            return None
        known = self._option_string_actions
        if name in known or (self.allow_abbrev and any(o.startswith(name) for o in known)):
            return None  # argparse takes an unambiguous prefix: --metric for --metrics
        return name

    def unknown_option_message(self, name: str) -> str:
        options = [o for o in self._option_string_actions if o.startswith("--")]
        # compared without the dashes, which every long option shares: --host is not --out
        near = difflib.get_close_matches(name[2:], [o[2:] for o in options], n=1)
        if near:
            return f"unknown option {name}; did you mean --{near[0]}?"
        commands = self.commands()
        owners = [c for c, p in (commands.choices.items() if commands else [])
                  if name in p._option_string_actions]
        if owners:  # `cuelab pipeline --out X compile`: options go after their command
            return (f"unknown option {name} before the command; put it after the command "
                    f"it belongs to ({', '.join(owners)}): {self.prog} {owners[0]} {name} ...")
        listed = sorted(o for o in options if o != "--help")
        return f"unknown option {name}; {self.prog} takes {', '.join(listed)}"


class _Version(argparse.Action):
    """--version, worked out only when asked (it runs git)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())  # on stdout, as argparse's own --version
        parser.exit()


def version_text() -> str:
    """'cuelab 0.1.0 (git <commit>)': the installed package and, where known, the code's commit."""
    from importlib.metadata import PackageNotFoundError, version

    from .tracking import git_commit

    try:
        text = f"cuelab {version('cuelab')}"
    except PackageNotFoundError:  # run from a source tree that was never installed
        text = "cuelab (not installed)"
    commit = git_commit()
    return f"{text} (git {commit})" if commit else text


def walk(parser: Parser):
    """The parser and every (sub)command parser under it."""
    yield parser
    commands = parser.commands()
    for sub in (commands.choices.values() if commands else []):
        yield from walk(sub)


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
                 threads=args.threads, cache=args.cache))


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

    print(train(args.params, args.images, args.models, args.metrics, resume=args.resume,
                cache=args.cache))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluate import evaluate

    print(evaluate(args.params, args.scenes, args.images, args.models, args.out, args.metrics,
                   args.plots))


def cmd_report(args: argparse.Namespace) -> None:
    from .report import report

    print(report(args.params, args.evaluation, args.out, args.validation, args.train_metrics))


PIPELINE_YAML = Path("pipelines/cuelab_pipeline.yaml")


def cmd_pipeline(args: argparse.Namespace) -> None:
    from .pipeline import compile_pipeline, run_local, submit

    if args.action == "compile":
        out = args.out
        if args.study and out == PIPELINE_YAML:
            out = out.with_name("cuelab_study_pipeline.yaml")
        print(f"wrote {compile_pipeline(out, _cluster_options(args), study=args.study)}")
    elif args.action == "submit":
        if not args.host:
            raise CuelabError("submit needs --host URL, the address of Kubeflow Pipelines (e.g. "
                              "http://localhost:8080 after `kubectl port-forward -n kubeflow "
                              "svc/ml-pipeline-ui 8080:80`)")
        print(submit(args.host, args.params, args.experiment, args.run_name, args.timeout,
                     namespace=args.namespace, token=args.token, token_file=args.token_file,
                     render_shards=args.render_shards, dvc_remote=args.dvc_remote,
                     mlflow_tracking_uri=args.mlflow_tracking_uri,
                     service_account=args.service_account, options=_cluster_options(args),
                     render_cache=args.render_cache))
    elif args.study:
        from .pipeline import run_study_local

        print(run_study_local(args.study, args.workdir, render_cache=args.render_cache,
                              mlflow_tracking_uri=args.mlflow_tracking_uri, cache=args.cache,
                              verbose=args.verbose, progress=not args.quiet,
                              retries=args.retries))
    else:
        print(run_local(args.params, args.workdir, args.dvc_remote,
                        render_shards=args.render_shards,
                        mlflow_tracking_uri=args.mlflow_tracking_uri, cache=args.cache,
                        verbose=args.verbose, progress=not args.quiet,
                        render_cache=args.render_cache, retries=args.retries))


def _cluster_options(args: argparse.Namespace):
    from .pipeline import ClusterOptions, parse_node_selector

    return ClusterOptions(
        config_map=args.config_map, mlflow_secret=args.mlflow_secret,
        storage_secret=args.storage_secret, accelerator=args.accelerator,
        accelerator_count=args.gpus, gpu_steps=tuple(s for s in args.gpu_steps.split(",") if s),
        gpu_toleration=args.gpu_toleration,
        gpu_node_selector=parse_node_selector(args.gpu_node_selector or []),
        cache=args.cache_policy, retries=args.retries,
        image_pull_policy=args.image_pull_policy)


def cmd_export(args: argparse.Namespace) -> None:
    from .export import export

    print(export(args.params, args.images, args.split, args.out, scenes=args.scenes,
                 force=args.force))


def cmd_completion(args: argparse.Namespace) -> None:
    import shtab

    parser = build_parser()
    for p in walk(parser):
        for action in p._actions:
            if action.type is Path:  # every path option completes files and folders
                action.complete = shtab.FILE
    print(shtab.complete(parser, shell=args.shell))


def build_parser() -> Parser:
    parser = Parser(prog="cuelab", description="Which cues does my image classifier rely on?")
    parser.add_argument("--version", action=_Version,
                        help="print cuelab's version (and the git commit of its code) and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="`cuelab COMMAND -h` tells more")
    _experiment_commands(sub)
    _data_commands(sub)
    _model_commands(sub)
    _pipeline_command(sub)
    _export_command(sub)
    _study_command(sub)
    _completion_command(sub)
    return parser


def _experiment_commands(sub) -> None:
    p = sub.add_parser("factors", help="list every factor: domain, default, what it does")
    p.set_defaults(func=cmd_factors)

    p = sub.add_parser("params", help="check an experiment file, or resolve what each step reads")
    psub = p.add_subparsers(dest="action", required=True, metavar="ACTION",
                            help="check or resolve")
    c = psub.add_parser("check", help="validate and summarise an experiment file")
    c.add_argument("file", nargs="?", default=DEFAULT_PARAMS, type=Path,
                   help="the experiment file (default: %(default)s)")
    c.set_defaults(func=cmd_params_check)
    c = psub.add_parser("resolve", help="write each step's part of the experiment, defaults "
                        "filled in (what the DVC stages depend on)")
    c.add_argument("file", nargs="?", default=DEFAULT_PARAMS, type=Path,
                   help="the experiment file (default: %(default)s)")
    c.add_argument("--out", default="data/params", type=Path,
                   help="one <step>.json per step (default: %(default)s)")
    c.set_defaults(func=cmd_params_resolve)


def _data_commands(sub) -> None:
    p = sub.add_parser("sample", help="experiment -> scenes table (one row per image)")
    _params_arg(p)
    p.add_argument("--out", default="data/scenes.parquet", type=Path,
                   help="the scenes table to write (default: %(default)s)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("render", help="scenes table -> clean renders + exact object masks")
    _params_arg(p)
    p.add_argument("--scenes", default="data/scenes.parquet", type=Path,
                   help="the scenes table (default: %(default)s)")
    p.add_argument("--out", default="data/renders", type=Path,
                   help="where the clean renders and masks go (default: %(default)s)")
    p.add_argument("--workers", default=usable_cores(), type=int,
                   help="worker processes, each with its own Blender (default: %(default)s)")
    p.add_argument("--threads", type=int,
                   help="Cycles CPU threads per worker (default: the cores shared out)")
    p.add_argument("--shard", default="0/1", metavar="I/N",
                   help="render only chunks I, I+N, ... (default: all)")
    p.add_argument("--cache", metavar="DIR|off",
                   help="the shared render cache: renders any run made, taken by render_id "
                        "(default: $CUELAB_RENDER_CACHE, else .cuelab/render-cache in the DVC "
                        "project, else none)")
    _contact_sheet_args(p, "render every scene factor's levels side by side", "render")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("sensor", help="clean renders -> final images (the simulated camera)")
    _params_arg(p)
    p.add_argument("--scenes", default="data/scenes.parquet", type=Path,
                   help="the scenes table (default: %(default)s)")
    p.add_argument("--renders", default="data/renders", type=Path,
                   help="what `cuelab render` wrote (default: %(default)s)")
    p.add_argument("--out", default="data/images", type=Path,
                   help="where the dataset goes (default: %(default)s)")
    _contact_sheet_args(p, "one render through each sensor factor's levels", "sensor")
    p.set_defaults(func=cmd_sensor)

    p = sub.add_parser("validate", help="the data gate: Great Expectations over table and images")
    _params_arg(p)
    p.add_argument("--scenes", default="data/scenes.parquet", type=Path,
                   help="the scenes table (default: %(default)s)")
    p.add_argument("--images", default="data/images", type=Path,
                   help="the dataset: final images and their index (default: %(default)s)")
    p.add_argument("--docs", default="reports/validation", type=Path,
                   help="where the Data Docs (HTML) go (default: %(default)s)")
    p.add_argument("--summary", default="metrics/validation.json", type=Path,
                   help="the gate's verdict, as DVC metrics (default: %(default)s)")
    p.set_defaults(func=cmd_validate)


def _contact_sheet_args(p: argparse.ArgumentParser, what: str, step: str) -> None:
    p.add_argument("--contact-sheet", action="store_true", help=f"instead: {what}")
    p.add_argument("--contact-sheet-out", default=f"reports/{step}_contact_sheet.png", type=Path,
                   help="with --contact-sheet: the picture to write (default: %(default)s)")


def _model_commands(sub) -> None:
    p = sub.add_parser("train", help="dataset -> a CNN, tracked in MLflow (MLFLOW_TRACKING_URI, "
                       "default ./mlflow.db) and registered as cuelab-<experiment name>")
    _params_arg(p)
    p.add_argument("--images", default="data/images", type=Path,
                   help="the dataset: final images and their index (default: %(default)s)")
    p.add_argument("--models", default="models", type=Path,
                   help="model.pt (weights) and model.json (config) (default: %(default)s)")
    p.add_argument("--metrics", default="metrics/train.json", type=Path,
                   help="training's summary, as DVC metrics (default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --models (written after every epoch)")
    p.add_argument("--cache", metavar="DIR|off",
                   help="the shared model cache: replicates any run trained, taken when their "
                        "settings, data and seed are the same (default: $CUELAB_MODEL_CACHE, "
                        "else .cuelab/model-cache in the DVC project)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="the model on every probe: sweeps, flip rates, cue "
                       "preferences, backgrounds, attribution")
    _params_arg(p)
    p.add_argument("--scenes", default="data/scenes.parquet", type=Path,
                   help="the scenes table (default: %(default)s)")
    p.add_argument("--images", default="data/images", type=Path,
                   help="the dataset: final images and their index (default: %(default)s)")
    p.add_argument("--models", default="models", type=Path,
                   help="the trained model's folder (default: %(default)s)")
    p.add_argument("--out", default="reports/evaluation", type=Path,
                   help="results.json, figures, summary page (default: %(default)s)")
    p.add_argument("--metrics", default="metrics/evaluate.json", type=Path,
                   help="the headline measures, as DVC metrics (default: %(default)s)")
    p.add_argument("--plots", default="metrics/plots", type=Path,
                   help="plot data for `dvc plots` (default: %(default)s)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="the trace report: one self-contained HTML page, the "
                       "factors ranked with their evidence")
    _params_arg(p)
    p.add_argument("--evaluation", default="reports/evaluation", type=Path,
                   help="what `cuelab evaluate` wrote (default: %(default)s)")
    p.add_argument("--out", default="reports/trace_report.html", type=Path,
                   help="the page to write (default: %(default)s)")
    p.add_argument("--validation", default="metrics/validation.json", type=Path,
                   help="the data gate's summary, shown if present (default: %(default)s)")
    p.add_argument("--train-metrics", default="metrics/train.json", type=Path,
                   help="training's summary, shown if present (default: %(default)s)")
    p.set_defaults(func=cmd_report)


def _pipeline_command(sub) -> None:
    p = sub.add_parser("pipeline",
                       help="the Kubeflow pipeline: compile, run it locally, or submit it")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION",
                               help="`cuelab pipeline ACTION -h` tells more")
    c = actions.add_parser("compile", help="write the pipeline's YAML (to upload in the "
                           "Kubeflow UI)")
    c.add_argument("--out", type=Path, default=PIPELINE_YAML,
                   help="where the pipeline YAML goes (default: %(default)s, with --study "
                   "pipelines/cuelab_study_pipeline.yaml)")
    c.add_argument("--study", action="store_true",
                   help="the study pipeline: a study's variants fanned out, renders shared")
    _cluster_args(c)
    c.set_defaults(func=cmd_pipeline)

    c = actions.add_parser("run-local", help="run the whole pipeline here with kfp.local")
    _params_arg(c)
    c.add_argument("--workdir", default="runs/kfp-local", type=Path,
                   help="where kfp.local keeps its outputs (default: %(default)s)")
    _run_args(c)
    c.add_argument("--cache", action="store_true",
                   help="reuse kfp.local's cached results of earlier runs")
    c.add_argument("--verbose", action="store_true",
                   help="kfp.local's whole log on the terminal, not only in the log file")
    c.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
    c.add_argument("--retries", type=int, default=0,
                   help="retries of render, train and evaluate after a failure, with the "
                   "cluster's backoff (default: %(default)s: a failure is reported at once)")
    c.add_argument("--study", type=Path, metavar="FILE",
                   help="run the study pipeline for this study file (studies/<name>.yaml; its "
                   "base is the params) instead of one experiment")
    c.set_defaults(func=cmd_pipeline)

    c = actions.add_parser("submit", help="compile, upload and start a run on Kubeflow Pipelines")
    _params_arg(c)
    c.add_argument("--host", metavar="URL",
                   help="the Kubeflow Pipelines UI or API, e.g. http://localhost:8080")
    c.add_argument("--experiment", metavar="NAME",
                   help="the KFP experiment to run in (default: the params' name)")
    c.add_argument("--run-name", metavar="NAME", help="the run's name (default: KFP's)")
    c.add_argument("--namespace", metavar="NS",
                   help="the Kubeflow profile namespace (needed on a multi-user Kubeflow)")
    c.add_argument("--token", help="a bearer token for the KFP API (default: "
                   "$KF_PIPELINES_TOKEN)")
    c.add_argument("--token-file", type=Path, help="a file holding a service-account token "
                   "(default: $KF_PIPELINES_SA_TOKEN_PATH)")
    c.add_argument("--service-account", metavar="NAME",
                   help="the Kubernetes service account the run's pods use")
    c.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for the KFP API (default: %(default)s)")
    _run_args(c)
    _cluster_args(c)
    c.set_defaults(func=cmd_pipeline)


def _run_args(p: argparse.ArgumentParser) -> None:
    """The pipeline's own parameters, beside the experiment."""
    p.add_argument("--render-shards", type=int, default=2,
                   help="render in this many parallel shards (default: %(default)s)")
    p.add_argument("--dvc-remote", default="",
                   help="push the validated dataset to this DVC remote (folder or URL)")
    p.add_argument("--mlflow-tracking-uri", default="", metavar="URI",
                   help="where training and evaluation log (default: a SQLite store in the run)")
    p.add_argument("--render-cache", default="", metavar="DIR",
                   help="the shared render cache, a folder every render step sees (default: "
                   "none on a cluster; here the DVC project's; with --study WORKDIR/render-cache)")


def _cluster_args(p: argparse.ArgumentParser) -> None:
    """The cluster side of the compiled pipeline (cuelab.pipeline.ClusterOptions)."""
    p.add_argument("--config-map", default="cuelab-config",
                   help="ConfigMap whose keys become the steps' environment ('' for none)")
    p.add_argument("--mlflow-secret", default="cuelab-mlflow",
                   help="Secret with MLflow's URI and credentials ('' for none)")
    p.add_argument("--storage-secret", default="cuelab-storage",
                   help="Secret with the object store's credentials ('' for none)")
    p.add_argument("--accelerator", default="nvidia.com/gpu",
                   help="the GPU resource to request ('' for no GPU)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per GPU step (default: 1)")
    p.add_argument("--gpu-steps", default="train",
                   help="comma-separated steps that get a GPU (default: train)")
    p.add_argument("--gpu-toleration", default="nvidia.com/gpu",
                   help="a taint key GPU steps tolerate ('' for none)")
    p.add_argument("--gpu-node-selector", action="append", metavar="LABEL=VALUE",
                   help="a node label GPU steps must run on (repeatable)")
    p.add_argument("--cache", dest="cache_policy", default="pure",
                   choices=["pure", "all", "none"],
                   help="which steps KFP may cache: pure (all but those with side effects), "
                   "all or none (default: pure)")
    p.add_argument("--retries", type=int, default=2,
                   help="retries, with backoff, of render, train, evaluate and the push")
    p.add_argument("--image-pull-policy", default="",
                   choices=["", "Always", "IfNotPresent", "Never"],
                   help="for every step (default: the cluster's)")


def _export_command(sub) -> None:
    p = sub.add_parser("export", help="one split as an ImageFolder tree (<class>/<image_id>.png) "
                       "with every image's factors in factors.csv")
    _params_arg(p)  # the class names
    p.add_argument("--images", default="data/images", type=Path,
                   help="the dataset (default: %(default)s)")
    p.add_argument("--split", required=True,
                   help="the split (or probe group) to export: train, val, test, ... as the "
                   "dataset holds them")
    p.add_argument("--scenes", default="data/scenes.parquet", type=Path,
                   help="the scenes table the factors come from (default: %(default)s)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="the folder to write; an earlier export there is replaced")
    p.add_argument("--force", action="store_true",
                   help="replace --out even if it holds something other than an export")
    p.set_defaults(func=cmd_export)


def cmd_study(args: argparse.Namespace) -> None:
    from .study import load_study, plan_text

    study = load_study(args.study)
    if args.action == "check":
        print(plan_text(study))
    elif args.action == "run":
        from .study_run import run_study

        print(run_study(study, args.runs, jobs=args.jobs, force=args.force))
    elif args.action == "report":
        from .study_report import study_report

        runs = args.runs or Path("runs") / study.name
        print(study_report(study, runs, args.out))
        if args.mlflow:
            from .study_tracking import log_study

            print(log_study(study, runs, [args.out, *sorted(args.out.parent.glob(
                f"{args.out.stem}-*.csv"))]))


def _study_command(sub) -> None:
    p = sub.add_parser("study", help="a grid of experiments x replicates (studies/<name>.yaml): "
                       "check its plan, compare its variants")
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION",
                            help="check, run or report")
    c = ssub.add_parser("check", help="validate a study file and print its plan: variants, "
                        "models, images, renders after sharing, estimated time")
    c.add_argument("study", type=Path, help="the study file (studies/<name>.yaml)")
    c.set_defaults(func=cmd_study)
    c = ssub.add_parser("run", help="run every variant as a queued DVC experiment of this "
                        "project, then gather their results into --runs")
    c.add_argument("study", type=Path, help="the study file (studies/<name>.yaml); its base "
                   "must be the project's params.yaml")
    c.add_argument("--runs", type=Path, metavar="DIR",
                   help="where each variant's results go, DIR/<variant>/evaluation/results.json "
                   "(default: runs/<study name> in the project)")
    c.add_argument("-j", "--jobs", type=int, default=1,
                   help="DVC queue workers, each running one variant at a time (default: "
                   "%(default)s: the steps already use every core)")
    c.add_argument("--force", action="store_true",
                   help="run again the variants that already have an experiment for this commit")
    c.set_defaults(func=cmd_study)
    c = ssub.add_parser("report", help="one page comparing the finished variants: each "
                        "measure against each axis, crossovers with their intervals; CSV "
                        "tables beside it")
    c.add_argument("study", type=Path, help="the study file (studies/<name>.yaml)")
    c.add_argument("--runs", type=Path, metavar="DIR",
                   help="one folder per variant holding evaluation/results.json (default: "
                   "runs/<study name>)")
    c.add_argument("--out", type=Path, default=Path("reports/study.html"),
                   help="the page to write; the CSV tables go beside it (default: "
                   "%(default)s)")
    c.add_argument("--mlflow", action="store_true",
                   help="also log the study to MLflow (MLFLOW_TRACKING_URI, else the project's "
                   "mlflow.db): a parent run, a child per variant with its values and measures "
                   "(`study run` does this itself)")
    c.set_defaults(func=cmd_study)


def _completion_command(sub) -> None:
    p = sub.add_parser("completion", help="print a shell completion script: "
                       "`eval \"$(cuelab completion bash)\"` in ~/.bashrc")
    p.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="the shell it is for")
    p.set_defaults(func=cmd_completion)


def main(argv: list[str] | None = None) -> int:
    # `kill -USR1 <pid>` prints where a step is, to stderr (a hang's cause); not on Windows
    with contextlib.suppress(AttributeError, ValueError, OSError):
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except Interrupted as e:
        print(f"cuelab {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except CuelabError as e:
        print(f"cuelab {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # Ctrl-C: every output is written under a temporary name first
        print(f"cuelab {args.command}: interrupted; no output was left half-written",
              file=sys.stderr)
        return Interrupted.exit_code
    except BrokenPipeError:  # `cuelab factors | head`
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
