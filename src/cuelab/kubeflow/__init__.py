"""The Kubeflow pipeline, shipped inside the package so `cuelab pipeline` works from any directory.

components/  one thin lightweight component per step (the images they run in: components.IMAGE,
             components.TRAIN_IMAGE)
options.py   ClusterOptions: what a cluster needs and kfp.local ignores (credentials from
             secrets and config maps, GPU scheduling, caching, retries); no kfp import
pipeline.py  the wiring, resources per step, and build_pipeline(options)
"""
