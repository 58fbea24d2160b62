"""version_dataset: push the validated dataset to a DVC remote, so cluster runs are versioned too."""

from kfp import dsl

from cuelab.kubeflow.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def version_dataset(images: dsl.Input[dsl.Dataset], dvc_remote: str,
                    pointer: dsl.Output[dsl.Artifact]):
    """`dvc add --to-remote`: the dataset goes to `dvc_remote`; `pointer` is its .dvc file
    (commit it to a checkout and `dvc pull` gets this exact dataset)."""
    from cuelab.versioning import push_dataset

    pushed = push_dataset(images.path, dvc_remote, pointer.path)
    pointer.metadata.update({"md5": pushed.md5, "remote": pushed.remote, "files": pushed.files})
    print(pushed)
