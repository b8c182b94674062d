"""The experiments: the tasks, the backbone, training, analysis, reproduction and benchmarks.

gclab.experiments.data        the long-range task and the dense paint task (checksummed)
gclab.experiments.models      SmallResNet and ``receptive_field``
gclab.experiments.train       deterministic training loop
gclab.experiments.analysis    attention maps, query-independence, FLOPs, latency
gclab.experiments.reproduce   ``gclab reproduce``: the ablation table and the comparisons
gclab.experiments.bench       ``gclab bench``: the blocks against mmcv and timm

Nothing in :mod:`gclab.nn` or :mod:`gclab.numpy` imports from here.
"""
