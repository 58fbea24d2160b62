"""render: the scenes table -> clean renders + exact masks, one shard per task, then merged."""

from typing import List

from kfp import dsl

from cuelab.kubeflow.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def shard_indices(shards: int) -> List[int]:
    """[0, 1, ..., shards - 1]: the items of the rendering ParallelFor."""
    if shards < 1:
        raise ValueError(f"render_shards: got {shards}; at least 1")
    return list(range(shards))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def render(params_yaml: str, scenes: dsl.Input[dsl.Dataset], shard: int, shards: int,
           renders: dsl.Output[dsl.Dataset], render_cache: str = ""):
    """Render chunks shard, shard + shards, ... of the scenes table, taking what the shared
    render cache holds (render_cache: a folder every pod sees, e.g. a ReadWriteMany volume;
    empty: cuelab.render.cache.default_folder)."""
    from cuelab.config import experiment_from_yaml
    from cuelab.render import render as render_step

    summary = render_step(experiment_from_yaml(params_yaml, "params_yaml"), scenes.path,
                          renders.path, workers=1, shard=f"{shard}/{shards}", progress=False,
                          cache=render_cache or None)
    renders.metadata.update({"rendered": summary.rendered, "cached": summary.cached,
                             "chunks": summary.chunks})
    print(summary)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def merge_renders(params_yaml: str, scenes: dsl.Input[dsl.Dataset],
                  parts: dsl.Input[List[dsl.Dataset]], renders: dsl.Output[dsl.Dataset],
                  render_cache: str = ""):
    """Gather the shards' chunks into one render directory (and check it is complete)."""
    import shutil
    from pathlib import Path

    from cuelab.config import experiment_from_yaml
    from cuelab.render import render as render_step

    out = Path(renders.path)
    out.mkdir(parents=True, exist_ok=True)
    for part in parts:
        for f in Path(part.path).glob("chunk-*"):
            shutil.copy2(f, out / f.name)
    # the same step again: verifies every chunk and renders whatever a shard missed
    summary = render_step(experiment_from_yaml(params_yaml, "params_yaml"), scenes.path,
                          out, workers=1, progress=False, cache=render_cache or None)
    renders.metadata.update({"renders": summary.reused + summary.cached + summary.rendered,
                             "rendered_at_merge": summary.rendered})
    print(summary)
